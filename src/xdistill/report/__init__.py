"""The study report: a self-contained HTML page, a Markdown summary and a JSON of every figure."""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import figures

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
    if isinstance(value, dict):
        return f"{value['mean']:.3f} ± {value['std']:.3f}"
    if key == "student_params":
        return f"{int(value):,}"
    if key in ("compression", "speedup_b1", "speedup_b64"):
        return f"{value:.1f}x"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def load_results(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from ..recipe import Recipe
    from ..study import safe_name

    recipe = Recipe.model_validate(json.loads((run_dir / "recipe.json").read_text()))
    results = []
    for student in recipe.expanded_students():
        path = run_dir / "evaluation" / f"{safe_name(student.name)}.json"
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: run the evaluate stage first (xdistill run or xdistill evaluate)"
            )
        results.append(json.loads(path.read_text()))
    return {"recipe": recipe, "run_dir": str(run_dir)}, results


def build_report(run_dir: str | Path) -> Path:
    """Write report.html, report.md and figures.json into ``run_dir/report``; return the HTML path."""
    from ..study import safe_name

    run_dir = Path(run_dir)
    meta, results = load_results(run_dir)
    recipe = meta["recipe"]
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, bytes] = {"metrics": figures.metric_bars(results)}
    example_files = [run_dir / "evaluation" / f"{safe_name(r['student'])}.npz" for r in results]
    if all(p.exists() for p in example_files):
        loaded = [np.load(p, allow_pickle=False) for p in example_files]
        class_names = results[0].get("class_names") or [str(i) for i in range(int(loaded[0]["y"].max()) + 1)]
        images["saliency"] = figures.saliency_examples(
            loaded[0]["x"],
            loaded[0]["teacher"],
            {r["student"]: d["student"] for r, d in zip(results, loaded)},
            class_names,
            loaded[0]["y"],
        )
    sweeps = _sweeps(recipe, results)
    for base, (option, points) in sweeps.items():
        images[f"sweep_{base}"] = figures.sweep_curve(option, points)
    teacher_accuracy = results[0]["teacher_accuracy"]
    summary = {
        "recipe": recipe.name,
        "dataset": recipe.dataset.name,
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "teacher": {
            "model": recipe.teacher.label,
            "accuracy": teacher_accuracy,
            "params": results[0].get("teacher_params"),
        },
        "evaluation": json.loads(recipe.evaluation.model_dump_json()),
        "splits": SPLITS,
        "students": results,
        "sweeps": {
            base: {"option": option, "points": [{"value": v, **r} for v, r in points]}
            for base, (option, points) in sweeps.items()
        },
    }
    (out / "figures.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "report.md").write_text(_markdown(summary))
    (out / "report.html").write_text(_html(summary, images))
    for name, data in images.items():
        (out / f"{name}.png").write_bytes(data)
    return out / "report.html"


def _sweeps(recipe, results: list[dict[str, Any]]) -> dict[str, tuple[str, list]]:
    by_name = {r["student"]: r for r in results}
    sweeps = {}
    for student in recipe.students:
        if student.sweep:
            points = [(v, by_name[f"{student.name}[{student.sweep.option}={v}]"]) for v in student.sweep.values]
            sweeps[student.name] = (student.sweep.option, points)
    return sweeps


def _table_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = [label for _, label in COLUMNS]
    first = summary["students"][0] if summary["students"] else {}
    rows = [
        [
            "teacher",
            f"{summary['teacher']['accuracy']:.3f}",
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
        rows.append([_cell(k, r.get(k, "")) for k, _ in COLUMNS])
    return header, rows


def _markdown(summary: dict[str, Any]) -> str:
    header, rows = _table_rows(summary)
    ev = summary["evaluation"]
    lines = [
        f"# {summary['recipe']} — {summary['dataset']}",
        "",
        f"Generated {summary['generated']}. Alignment: {ev['explainer']} attributions reduced to {ev['parts']} parts, "
        f"k={ev['k']}, explained class = {ev['target']}; per held-out sample, mean ± std. {SPLITS}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
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


def _html(summary: dict[str, Any], images: dict[str, bytes]) -> str:
    header, rows = _table_rows(summary)
    ev = summary["evaluation"]
    esc = html.escape

    def img(name: str, alt: str) -> str:
        data = base64.b64encode(images[name]).decode()
        return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'

    table = "<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead><tbody>"
    table += "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows) + "</tbody></table>"
    sections = [f"<h2>Results</h2>{table}", f"<h2>Metrics per student</h2>{img('metrics', 'metric bar charts')}"]
    if "saliency" in images:
        sections.append(
            f"<h2>Teacher vs student saliency on held-out samples</h2>{img('saliency', 'saliency examples')}"
        )
    for base, sweep in summary["sweeps"].items():
        sections.append(
            f"<h2>Alignment vs {esc(sweep['option'])} ({esc(base)})</h2>{img('sweep_' + base, 'sweep curve')}"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(summary["recipe"])} — xdistill report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; white-space: nowrap; }}
th:first-child, td:first-child {{ text-align: left; }}
thead {{ background: #f0f0f0; }}
img {{ max-width: 100%; }}
.meta {{ color: #555; font-size: 0.9rem; }}
</style></head><body>
<h1>{esc(summary["recipe"])} — {esc(summary["dataset"])}</h1>
<p class="meta">Generated {esc(summary["generated"])}. Teacher {esc(summary["teacher"]["model"])}, accuracy
{summary["teacher"]["accuracy"]:.3f}. Alignment uses {esc(ev["explainer"])} attributions reduced to {esc(ev["parts"])}
parts (k={ev["k"]}), explaining the {esc(ev["target"])} class; every figure is a mean ± std over held-out samples.
{esc(SPLITS)}</p>
{"".join(sections)}
</body></html>
"""
