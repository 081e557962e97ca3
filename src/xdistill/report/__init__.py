"""The study report: a self-contained HTML page (``report/page.py``), a Markdown summary (``report/markdown.py``) and
a JSON of every figure; the words and tables they share are in ``report/tables.py``."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import atomic_write, write_json
from . import figures
from .decision import decide
from .markdown import markdown
from .page import html_page
from .tables import COLUMNS, SPLITS, short_name, splits_text
from .verdict import mean_of, verdicts

__all__ = ["COLUMNS", "SPLITS", "ReportMeta", "build_report", "by_name", "short_name"]


@dataclass
class ReportMeta:
    """What a report says about its run besides the results: names, the evaluation settings, sweeps, seeds."""

    name: str
    dataset: str
    teacher: str
    evaluation: dict[str, Any]
    #: (student base name, swept option, values): its students are named ``base[option=value]``
    sweeps: list[tuple[str, str, list[Any]]] = field(default_factory=list)
    #: the seeds a several-seed study ran (empty: one run)
    seeds: list[int] = field(default_factory=list)
    #: whether this run trained the models (a study: it knows what they saw) or only compares them (audit)
    trained_here: bool = True
    #: how the inputs were normalised, in words (audit says it; None: not stated)
    inputs: str | None = None


def build_report(
    out: str | Path,
    meta: ReportMeta,
    results: list[dict[str, Any]],
    examples: dict[str, Any] | None = None,
    per_seed: dict[str, list[dict[str, Any]]] | None = None,
    explorer: dict[str, Any] | None = None,
) -> Path:
    """Write report.html, report.md and figures.json into ``out``; return the HTML path.

    ``results``: one evaluation dict per student (over several seeds: aggregated, mean ± std over seeds,
    with each seed's dicts in ``per_seed``). ``examples``: ``x``, ``y``, ``class_names``, the
    teacher's and each student's attribution maps for the saliency figure, and the ``seed`` they come from.
    ``explorer``: the sample explorer's data (:func:`xdistill.report.explorer.explorer_data`).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    over = "seeds" if meta.seeds else "test samples"
    sweeps = {
        base: (option, [(v, by_name(results, f"{base}[{option}={v}]")) for v in values])
        for base, option, values in meta.sweeps
    }
    images = _images(results, over, examples, sweeps)
    summary = _summary(meta, results, per_seed, over, sweeps, examples.get("seed") if examples else None)
    write_json(out / "figures.json", summary)  # every file written atomically: a cut-off write leaves the old one
    atomic_write(out / "report.md", markdown(summary).encode("utf-8"))
    atomic_write(out / "report.html", html_page(summary, images, explorer).encode("utf-8"))
    for stale in out.glob("*.png"):  # figures of an earlier report (e.g. a student since removed)
        if stale.stem not in images:
            stale.unlink()
    for name, data in images.items():
        atomic_write(out / f"{name}.png", data)
    return out / "report.html"


def _images(
    results: list[dict[str, Any]], over: str, examples: dict[str, Any] | None, sweeps: dict[str, Any]
) -> dict[str, bytes]:
    """The report's figures as PNG, by name: a panel per metric, the saliency examples, a curve per sweep."""
    images: dict[str, bytes] = {f"metric_{k}": png for k, png in figures.metric_panels(results, over).items()}
    if examples is not None:
        shots = figures.saliency_examples(
            examples["x"], examples["teacher"], examples["students"], examples["class_names"], examples["y"]
        )
        images.update({f"saliency_{i}": png for i, png in enumerate(shots)})
    for base, (option, points) in sweeps.items():
        images[f"sweep_{base}"] = figures.sweep_curve(option, points)
    return images


def _summary(
    meta: ReportMeta,
    results: list[dict[str, Any]],
    per_seed: dict[str, list[dict[str, Any]]] | None,
    over: str,
    sweeps: dict[str, Any],
    examples_seed: int | None,
) -> dict[str, Any]:
    """Everything the page and the summary show (``figures.json``): the decision, the verdicts, every figure."""
    teacher_accuracy = mean_of(results[0]["teacher_accuracy"]) if results else math.nan
    class_names = results[0].get("class_names") if results else None
    decision = decide(
        results, per_seed, teacher_accuracy, meta.evaluation["explainer"], len(class_names) if class_names else None
    )
    return {
        "recipe": meta.name,
        "dataset": meta.dataset,
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "teacher": {
            "model": meta.teacher,
            "accuracy": teacher_accuracy,
            #: mean ± std over seeds (None: one seed, or the same on every seed)
            "accuracy_over_seeds": results[0]["teacher_accuracy"]
            if results and isinstance(results[0]["teacher_accuracy"], dict)
            else None,
            "params": results[0].get("teacher_params") if results else None,
        },
        "evaluation": meta.evaluation,
        "seeds": meta.seeds,
        "spread": over,
        "splits": splits_text(meta.trained_here),
        **({"inputs": meta.inputs} if meta.inputs is not None else {}),
        "decision": dataclasses.asdict(decision) if decision else None,
        "verdicts": [{**dataclasses.asdict(v), "sentence": v.sentence()} for v in verdicts(results, per_seed)],
        "examples_seed": examples_seed,
        "students": results,
        "sweeps": {
            base: {"option": option, "points": [{"value": v, **r} for v, r in points]}
            for base, (option, points) in sweeps.items()
        },
    }


def by_name(results: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for result in results:
        if result["student"] == name:
            return result
    raise KeyError(f"no evaluation of student {name!r}")
