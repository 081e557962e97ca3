"""The study report: a self-contained HTML page, a Markdown summary and a JSON of every figure."""

from __future__ import annotations

import base64
import dataclasses
import html
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import atomic_write, write_json
from . import figures
from .decision import DELETION_AUC, decide, in_words
from .verdict import mean_of, verdicts

COLUMNS = [
    ("student", "student"),
    ("student_accuracy", "accuracy"),
    ("agreement", "agreement"),
    ("logit_spearman", "logit Spearman"),
    ("saliency_spearman", "saliency Spearman"),
    ("topk_focus", "top-k focus"),
    ("student_auc_pr", "AUC-PR"),
    ("flip_auc_student_teacher_order", "deletion AUC (teacher's order)"),
    ("student_params", "params"),
    ("compression", "compression"),
    ("speedup_b1", "speed-up b1"),
    ("speedup_b64", "speed-up b64"),
]


SPLITS = (
    "Every figure is measured on the test split, which no model saw in training or model selection; "
    "each model's best epoch was chosen on the training data alone (a validation part held out from it, or "
    "the training loss). "
    "Deletion AUC: the student's explained logit while the teacher's most relevant parts are removed "
    "(lower = it relies on what the teacher relies on)."
)


def _cell(key: str, value: Any) -> str:
    if value is None or value == "":  # a figure this student's evaluation does not have
        return ""
    if isinstance(value, dict) and key in ("compression", "speedup_b1", "speedup_b64"):
        return f"{value['mean']:.1f}x ± {value['std']:.1f}"
    if isinstance(value, dict):
        return f"{value['mean']:.3f} ± {value['std']:.3f}"
    if key == "student_params":
        return f"{int(value):,}"
    if key in ("compression", "speedup_b1", "speedup_b64"):
        return f"{value:.1f}x"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


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
    images: dict[str, bytes] = {f"metric_{k}": png for k, png in figures.metric_panels(results, over).items()}
    if examples is not None:
        shots = figures.saliency_examples(
            examples["x"], examples["teacher"], examples["students"], examples["class_names"], examples["y"]
        )
        images.update({f"saliency_{i}": png for i, png in enumerate(shots)})
    sweeps = {
        base: (option, [(v, by_name(results, f"{base}[{option}={v}]")) for v in values])
        for base, option, values in meta.sweeps
    }
    for base, (option, points) in sweeps.items():
        images[f"sweep_{base}"] = figures.sweep_curve(option, points)
    teacher_accuracy = mean_of(results[0]["teacher_accuracy"]) if results else math.nan
    found = verdicts(results, per_seed)
    class_names = results[0].get("class_names") if results else None
    decision = decide(
        results, per_seed, teacher_accuracy, meta.evaluation["explainer"], len(class_names) if class_names else None
    )
    summary = {
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
        "splits": SPLITS,
        "decision": dataclasses.asdict(decision) if decision else None,
        "verdicts": [{**dataclasses.asdict(v), "sentence": v.sentence()} for v in found],
        "examples_seed": examples.get("seed") if examples else None,
        "students": results,
        "sweeps": {
            base: {"option": option, "points": [{"value": v, **r} for v, r in points]}
            for base, (option, points) in sweeps.items()
        },
    }
    write_json(out / "figures.json", summary)  # every file written atomically: a cut-off write leaves the old one
    atomic_write(out / "report.md", _markdown(summary).encode("utf-8"))
    atomic_write(out / "report.html", _html(summary, images, explorer).encode("utf-8"))
    for stale in out.glob("*.png"):  # figures of an earlier report (e.g. a student since removed)
        if stale.stem not in images:
            stale.unlink()
    for name, data in images.items():
        atomic_write(out / f"{name}.png", data)
    return out / "report.html"


def by_name(results: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for result in results:
        if result["student"] == name:
            return result
    raise KeyError(f"no evaluation of student {name!r}")


def _best_students(summary: dict[str, Any]) -> dict[str, str]:
    """Result key -> the student the verdict tells apart as best (its cell is highlighted); none where the lead is
    within the spread."""
    return {v["metric"]: v["best"] for v in summary["verdicts"] if v["runner_up"] is not None and v["decided"]}


def _explainer_table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str]] | None:
    """Saliency Spearman per student under each explainer, and how the explainers agree on the teacher."""
    students = [r for r in summary["students"] if "explainers" in r]
    if not students:
        return None
    labels = list(students[0]["explainers"])
    header = ["student"] + [f"saliency Spearman, {in_words(label)}" for label in labels]
    rows = [
        [r["student"]] + [_cell("a", r["explainers"][label]["saliency_spearman"]) for label in labels] for r in students
    ]
    agreement = [
        f"{' vs '.join(map(in_words, pair.split(' vs ')))}: {_cell('a', value)}"
        for pair, value in students[0]["teacher_explainer_agreement"].items()
    ]
    return header, rows, agreement


def _verdict_lines(summary: dict[str, Any]) -> list[str]:
    if not summary["verdicts"]:
        return []
    seeds = summary["seeds"]
    head = (
        f"Per metric, over {len(seeds)} seeds ({', '.join(map(str, seeds))}):"
        if seeds
        else "Per metric (one seed; the spread is the per-sample spread on the test split):"
    )
    return [head] + [v["sentence"] for v in summary["verdicts"]]


def _has_deletion_auc(summary: dict[str, Any]) -> bool:
    return any("flip_auc_student_teacher_order" in r for r in summary["students"])


def _table_rows(summary: dict[str, Any], mark: Any = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows; ``mark(text)`` highlights the best student's cell of each verdict metric."""
    header = [label for _, label in COLUMNS]
    first = summary["students"][0] if summary["students"] else {}
    best = _best_students(summary)
    mark = mark or (lambda text: text)
    rows = [
        [
            "teacher",
            _teacher_accuracy(summary),
            "",
            "",
            "",
            "",
            _cell("a", first.get("teacher_auc_pr", "")),
            _cell("a", first.get("flip_auc_teacher", "")),
            f"{int(summary['teacher']['params'] or 0):,}",
            "1.0x",
            "1.0x",
            "1.0x",
        ]
    ]
    for r in summary["students"]:
        rows.append(
            [
                mark(_cell(k, r.get(k, ""))) if best.get(k) == r["student"] else _cell(k, r.get(k, ""))
                for k, _ in COLUMNS
            ]
        )
    return header, rows


def _teacher_accuracy(summary: dict[str, Any]) -> str:
    """The teacher's accuracy as the students' is shown: mean ± std over seeds when it varies."""
    teacher = summary["teacher"]
    return _cell("accuracy", teacher.get("accuracy_over_seeds") or teacher["accuracy"])


def short_name(dataset: str) -> str:
    """A data set's name for a title: a file spec (``csv:/a/deep/folder/x_train.csv``) keeps its file name only."""
    kind, sep, rest = dataset.partition(":")
    if "/" not in rest and "\\" not in rest:
        return dataset
    return kind + sep + Path(rest.replace("\\", "/")).name


def _html_table(header: list[str], rows: list[list[str]], columns: list[int]) -> str:
    """A table of the given columns, in a box that scrolls on a narrow screen (the page itself never widens)."""
    esc = html.escape
    table = "<table><thead><tr>" + "".join(f"<th>{esc(header[i])}</th>" for i in columns) + "</tr></thead><tbody>"
    table += "".join("<tr>" + "".join(_td(row[i]) for i in columns) + "</tr>" for row in rows) + "</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _markdown(summary: dict[str, Any]) -> str:
    header, rows = _table_rows(summary, lambda text: f"**{text}**")
    ev = summary["evaluation"]
    lines = [f"# {summary['recipe']} — {short_name(summary['dataset'])}", ""]
    decision = summary.get("decision")
    if decision:
        lines += [f"**Decision: {decision['headline']}**", ""]
        lines += [f"- {reason}" for reason in decision["reasons"]]
        lines += [f"- **Warning:** {warning}" for warning in decision["warnings"]]
        lines += ["", f"_{decision['rule']}_", ""]
    lines += [
        *[f"- {line}" if i else line for i, line in enumerate(_verdict_lines(summary))],
        "",
        f"Generated {summary['generated']}. Data set {summary['dataset']}. Alignment: {in_words(ev['explainer'])} "
        f"attributions reduced to {ev['parts']} parts, "
        f"k={ev['k']}, explained class = {ev['target']}; mean ± std over {summary['spread']}. {SPLITS}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "Bold: a lead the per-metric verdict tells apart from the runner-up."]
    if _has_deletion_auc(summary):
        lines += ["", DELETION_AUC]
    explainers = _explainer_table(summary)
    if explainers is not None:
        header2, rows2, agreement = explainers
        lines += [
            "",
            "## Alignment under each explainer",
            "",
            "The teacher's own maps under each pair of explainers (per-sample Spearman, the context for "
            "what an alignment number can mean): " + "; ".join(agreement) + ".",
            "",
            "| " + " | ".join(header2) + " |",
            "|" + "---|" * len(header2),
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows2]
    for base, sweep in summary["sweeps"].items():
        lines += [
            "",
            f"## Sweep of {sweep['option']} ({base})",
            "",
            f"| {sweep['option']} | accuracy | logit Spearman | saliency Spearman | top-k focus |",
            "|---|---|---|---|---|",
        ]
        for p in sweep["points"]:
            lines.append(
                f"| {p['value']} | {_cell('a', p['student_accuracy'])} | {_cell('a', p['logit_spearman'])} | "
                f"{_cell('a', p['saliency_spearman'])} | {_cell('a', p['topk_focus'])} |"
            )
    return "\n".join(lines) + "\n"


def _td(cell: str) -> str:
    """A table cell; cells marked best (a leading NUL) are bold."""
    if cell.startswith("\x00"):
        return f'<td class="best"><strong>{html.escape(cell[1:])}</strong></td>'
    return f"<td>{html.escape(cell)}</td>"


STYLE = """\
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.5rem; text-align: right; white-space: nowrap; }
th { white-space: normal; vertical-align: bottom; min-width: 4.5rem; }
.scroll table { margin-bottom: 0.6rem; }
h1, .meta, li, p { overflow-wrap: anywhere; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f0f0f0; }
img { max-width: 100%; }
.meta { color: #555; font-size: 0.9rem; }
td.best { background: #e8f4e8; }
.verdict { background: #f7f7f2; border-left: 4px solid #6a6; padding: 0.2rem 1rem; }
.verdict .headline { font-size: 1.1rem; }
.warning { background: #fff3e0; border-left: 4px solid #e65100; padding: 0.3rem 0.6rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(280px, 1fr)); gap: 0.5rem; }
figure { margin: 0; }
.controls { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 0.5rem 0; }
.explorer { display: grid; grid-template-columns: minmax(0, 1.15fr) minmax(0, 1fr); gap: 1rem; }
@media (max-width: 800px) { .explorer { grid-template-columns: minmax(0, 1fr); } }
.samples { max-height: 24rem; overflow-y: auto; }
#explorer-table tr { cursor: pointer; }
#explorer-table th, #explorer-table td { min-width: 0; padding: 0.25rem 0.35rem; }
#explorer-table tr.picked { background: #fde9c8; }
.strip-label { font-size: 0.8rem; color: #444; }
.images { display: flex; flex-wrap: wrap; gap: 0.5rem; }
.images canvas { width: 120px; image-rendering: pixelated; }
svg text { fill: #444; }
"""


def _html(summary: dict[str, Any], images: dict[str, bytes], explorer: dict[str, Any] | None = None) -> str:
    esc = html.escape
    header, rows = _table_rows(summary, lambda text: f"\x00{text}")
    ev = summary["evaluation"]

    def img(name: str, alt: str) -> str:
        data = base64.b64encode(images[name]).decode()
        return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'

    split = [label for _, label in COLUMNS].index("params")  # accuracy and alignment, then size and speed
    table = _html_table(header, rows, list(range(split))) + _html_table(header, rows, [0, *range(split, len(header))])
    lines = _verdict_lines(summary)
    verdict = (
        f'<p class="meta">{esc(lines[0])}</p><ul>' + "".join(f"<li>{esc(line)}</li>" for line in lines[1:]) + "</ul>"
        if lines
        else ""
    )
    sections = []
    decision = summary.get("decision")
    if decision:
        warnings = "".join(f'<p class="warning"><strong>Warning:</strong> {esc(w)}</p>' for w in decision["warnings"])
        reasons = "".join(f"<li>{esc(r)}</li>" for r in decision["reasons"])
        sections.append(
            f'<div class="verdict" id="decision" data-pick="{esc(decision["pick"] or "")}"><p class="headline"><strong>{esc(decision["headline"])}</strong></p>'
            f'<ul>{reasons}</ul>{warnings}<p class="meta">{esc(decision["rule"])}</p></div>'
        )
    deletion = f'<p class="meta">{esc(DELETION_AUC)}</p>' if _has_deletion_auc(summary) else ""
    spread = f"error bars: ± std over {summary['spread']}, as in the table"
    panels = "".join(
        f"<figure>{img(name, name.removeprefix('metric_') + ' per student')}</figure>"
        for name in images
        if name.startswith("metric_")
    )
    sections += [
        f"<h2>Per metric</h2>{verdict}",
        f'<h2>Results</h2>{table}<p class="meta">Bold: a lead the per-metric verdict tells apart from the runner-up '
        f"(none where it cannot).</p>{deletion}",
        f'<h2>Metrics per student</h2><p class="meta">{esc(spread)}</p><div class="grid">{panels}</div>',
    ]
    explainers = _explainer_table(summary)
    if explainers is not None:
        header2, rows2, agreement = explainers
        table2 = _html_table(header2, rows2, list(range(len(header2))))
        sections.append(
            '<h2>Alignment under each explainer</h2><p class="meta">The teacher\'s own maps under each pair of '
            f"explainers (per-sample Spearman): {esc('; '.join(agreement))}.</p>{table2}"
        )
    shots = [name for name in images if name.startswith("saliency_")]
    if shots:
        seed = summary.get("examples_seed")
        where = f"seed {seed}'s" if seed is not None else "the"
        sections.append(
            "<h2>Teacher vs student saliency on held-out samples</h2>"
            f'<p class="meta">The first {len(shots)} test samples (by their order in the test split, not chosen) with '
            f"{where} models, under {esc(in_words(ev['explainer']))}; the explorer below shows any sample.</p>"
            f'<div class="grid">{"".join(f"<figure>{img(n, n)}</figure>" for n in shots)}</div>'
        )
    for base, sweep in summary["sweeps"].items():
        sections.append(
            f"<h2>Alignment vs {esc(sweep['option'])} ({esc(base)})</h2>{img('sweep_' + base, 'sweep curve')}"
        )
    if explorer is not None:
        from .explorer import embed

        sections.append(embed(explorer))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(summary["recipe"])} — {esc(short_name(summary["dataset"]))} — xdistill report</title>
<style>
{STYLE}</style></head><body>
<h1>{esc(summary["recipe"])} — {esc(short_name(summary["dataset"]))}</h1>
{sections[0] if decision else ""}
<p class="meta">Generated {esc(summary["generated"])}. Data set {esc(summary["dataset"])}.
Teacher {esc(summary["teacher"]["model"])}, accuracy {esc(_teacher_accuracy(summary))}. Alignment uses {esc(in_words(ev["explainer"]))} attributions reduced to {esc(ev["parts"])}
parts (k={ev["k"]}), explaining the {esc(ev["target"])} class; every figure is a mean ± std over {esc(summary["spread"])}.
{esc(SPLITS)}</p>
{"".join(sections[1:] if decision else sections)}
</body></html>
"""
