"""RESULTS.md's generated sections, from the per-seed summaries committed under ``results/``.

A study's summary (``results/<edition>/<study>.json``: per student, per metric, one value per seed, plus how it
was run) is what ``benchmarks/reproduce.py`` writes beside its run root. This script turns each into a Markdown
block — mean ± std per student, and for every student against the study's baseline the paired difference with
its 95% confidence interval, the two-sided paired t-test p, Holm's adjustment over the study's comparisons, and,
where a difference is not significant after the adjustment, the smallest difference the study could have
detected (80% power, α = 0.05) — and writes it between the markers of that study in RESULTS.md:

    <!-- generated from results/fourth/subdistill-0-2-6.json: do not edit; benchmarks/results_tables.py -->
    ...
    <!-- end of generated block -->

Run ``.venv/bin/python benchmarks/results_tables.py`` to rewrite the blocks, ``--check`` to fail (exit 1) when
RESULTS.md differs from what the committed summaries give (``tests/test_results_tables.py`` does).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from pathlib import Path
from typing import Any

import results_figure
import yaml
from verdicts import _p, cuts, exploratory, holm, render_plan, withdrawn

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "RESULTS.md"
BLOCK = re.compile(
    r"(<!-- generated from (?P<source>\S+): do not edit; benchmarks/results_tables.py -->\n)"
    r"(?P<body>.*?)"
    r"(<!-- end of generated block -->)",
    re.S,
)
#: the metrics compared with the baseline, with their labels (a study's summary may have fewer)
TESTED = {
    "student_accuracy_all": "accuracy, whole test split",
    "agreement": "agreement with the teacher",
    "rationale_iou_teacher": "rationale IoU with the teacher's",
    "rationale_precision": "rationale precision vs planted evidence",
    "saliency_spearman": "alignment, own explainer",
    "saliency_spearman@integrated_gradients#2": "alignment, IG 32 steps",
    "saliency_spearman@integrated_gradients": "alignment, IG 32 steps",
    "saliency_spearman@saliency": "alignment, gradient saliency",
    "saliency_spearman@occlusion": "alignment, occlusion",
    "topk_focus": "top-k focus",
    "flip_auc_student_teacher_order": "deletion AUC, teacher's order",
}
#: labels of the metrics a study may add to those (its summary's ``also_tested``)
LABELS = {
    **TESTED,
    "logit_spearman": "logit Spearman with the teacher",
    "topk_focus_ratio": "top-k focus ratio (inside / outside the teacher's top k)",
    "student_accuracy_flipped": "accuracy where the cue names a wrong class",
    "student_accuracy_none": "accuracy without the cue",
    "cue_reliance": "cue reliance (flipped predictions that follow the cue)",
}
ALPHA = 0.05


def t_quantile(probability: float, dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(probability, dof))


def paired(a: list[float], b: list[float], alpha: float = ALPHA) -> dict[str, float]:
    """``a - b`` over seeds: mean, 95% CI, two-sided paired t-test p, smallest difference detectable at ``alpha``."""
    from scipy.stats import ttest_rel

    differences = [x - y for x, y in zip(a, b)]
    n = len(differences)
    mean = statistics.fmean(differences)
    spread = statistics.stdev(differences) if n > 1 else float("nan")
    error = spread / math.sqrt(n)
    half = t_quantile(1 - ALPHA / 2, n - 1) * error
    detectable = (t_quantile(1 - alpha / 2, n - 1) + t_quantile(0.8, n - 1)) * error
    p = float(ttest_rel(a, b).pvalue) if spread > 0 else (1.0 if mean == 0 else 0.0)
    return {"mean": mean, "low": mean - half, "high": mean + half, "p": p, "detectable": detectable, "n": n}


def _fmt(values: list[float]) -> str:
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def usable(summary: dict[str, Any], name: str, metric: str) -> bool:
    """Whether ``name`` has ``metric`` on every seed (a metric a study leaves blank is not compared)."""
    values = summary["students"].get(name, {}).get(metric, [])
    return len(values) == len(summary["seeds"]) and all(v == v for v in values)


def comparisons(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Every paired comparison of a study, Holm-adjusted over all of them: each student against the baseline on
    each metric both have, then each combined student against each of its parts (the summary's ``pairs``)."""
    students, baseline = summary["students"], summary.get("baseline")
    against = [(name, baseline) for name in students if baseline and name != baseline]
    pairs = against + [(name, reference) for name, reference in summary.get("pairs", [])]
    rows = [
        {"student": name, "reference": reference, "metric": metric}
        for name, reference in pairs
        for metric in metrics_of(summary)
        if usable(summary, name, metric) and usable(summary, reference, metric)
    ]
    for row in rows:  # detectable at the study's Bonferroni α (α / comparisons), the α its Holm p is read at first
        a, b = students[row["student"]][row["metric"]], students[row["reference"]][row["metric"]]
        row.update(paired(a, b, ALPHA / max(1, len(rows))))
    for row, p_holm in zip(rows, holm([row["p"] for row in rows])):
        row["p_holm"] = p_holm
        row["verdict"] = ("higher" if row["mean"] > 0 else "lower") if p_holm < ALPHA else "not distinguishable"
    return rows


def metrics_of(summary: dict[str, Any]) -> list[str]:
    """The metrics a study is compared on: the defaults, then those its summary adds (``also_tested``), less a
    further explainer that repeats the study's own (same values for every student: one measurement, counted once
    in the correction)."""
    repeated = {f"saliency_spearman@{label}" for label in repeats_of_own(summary)}
    return [m for m in [*TESTED, *summary.get("also_tested", [])] if m not in repeated]


def repeats_of_own(summary: dict[str, Any]) -> set[str]:
    """The labels of further explainers whose alignment equals the study's own explainer's for every student and
    seed (the own explainer measured again with the same settings)."""
    students = summary["students"].values()
    return {
        key.removeprefix("saliency_spearman@")
        for key in next(iter(students), {})
        if key.startswith("saliency_spearman@")
        and all(row.get(key) == row.get("saliency_spearman") for row in students)
    }


def render(source: dict[str, Any]) -> str:
    """The Markdown block of one committed file, by what it holds (a study's students, the teacher candidates,
    the at-a-glance rows)."""
    return next(draw(source) for key, draw in RENDERERS.items() if key in source)


def render_study(summary: dict[str, Any]) -> str:
    """A study's block: mean ± std per student, then every comparison with its CI, p, Holm's p and verdict."""
    students, baseline = summary["students"], summary.get("baseline")
    metrics = [m for m in metrics_of(summary) if usable(summary, baseline or next(iter(students)), m)]
    lines = [
        f"Seeds {summary['seeds']} (n = {len(summary['seeds'])}); mean ± std over seeds; teacher accuracy on the "
        f"{summary.get('teacher_split', 'whole test split')} {_fmt(summary['teacher_accuracy_all'])}.",
        "",
        "| student | " + " | ".join(LABELS[m] for m in metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for name, row in students.items():
        lines.append(
            f"| {name} | " + " | ".join(_fmt(row[m]) if usable(summary, name, m) else "–" for m in metrics) + " |"
        )
    rows = comparisons(summary)
    parts = ", and each pair `a vs b` (a − b)" if summary.get("pairs") else ""
    against = f"Against `{baseline}` (student − {baseline}){parts}" if baseline else "Each pair `a vs b` (a − b)"
    lines += [
        "",
        f"{against}, paired over seeds: the difference with its 95% confidence interval (**unadjusted**), the "
        f"t-test's p, Holm's adjustment over the study's {len(rows)} comparisons, and the smallest difference the "
        f"study could have detected at that adjusted level (80% power, α = 0.05 / {len(rows)}, two-sided). "
        "Descriptive: the claims' verdicts come from `results/plan.yaml` on confirmatory runs (RESULTS.md).",
        "",
        "| student | metric | difference [95% CI, unadjusted] | p | p, Holm | detectable at α/m |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {_who(row, baseline)} | {LABELS[row['metric']]} | {row['mean']:+.3f} [{row['low']:+.3f}, "
            f"{row['high']:+.3f}] | {_p(row['p'])} | {_p(row['p_holm'])} | {row['detectable']:.3f} |"
        )
    lines += halves(summary, [(row["student"], row["reference"], row["metric"]) for row in rows])
    if baseline and "student_accuracy_all" in metrics:
        accuracy = {name: row["student_accuracy_all"] for name, row in students.items()}
        below = [
            f"`{name}` on {sum(x < y for x, y in zip(values, accuracy[baseline]))} of {len(values)}"
            for name, values in accuracy.items()
            if name != baseline
        ]
        lines += ["", f"Seed by seed, below `{baseline}` in accuracy: {', '.join(below)} seeds."]
    lines += _fits(summary) + _agreement(summary)
    if summary.get("cuts"):
        lines += ["", "Cut from the paper's setting: " + "; ".join(summary["cuts"]) + "."]
    if summary.get("teacher_candidates"):
        lines += ["", "The teacher candidates (one teacher for every seed, chosen on validation loss):", ""]
        lines += teacher_table(summary["teacher_candidates"])
    return "\n".join(lines) + "\n"


def _range(values: list[float], digits: int) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "–"
    low, high = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return low if low == high else f"{low}–{high}"


def _fits(summary: dict[str, Any]) -> list[str]:
    """How each model's fit ended, over seeds: the restored best epoch, the epochs run, and the restored model's
    eval-mode accuracy on its training split and its validation split (– where it had none)."""
    fits = summary.get("fits") or {}
    if not fits:
        return []
    lines = [
        "",
        "Fits over seeds (min–max): the restored epoch, the epochs run, the restored model's eval-mode accuracy on "
        "the training data it fit and on its validation split.",
        "",
        "| model | restored epoch | epochs run | training accuracy | validation accuracy |",
        "|---|---|---|---|---|",
    ]
    for stage, fit in fits.items():
        lines.append(
            f"| {stage.removeprefix('student:')} | {_range(fit['best_epoch'], 0)} | {_range(fit['epochs_run'], 0)} "
            f"| {_range(fit['train_acc'], 3)} | {_range(fit['val_acc'], 3)} |"
        )
    return lines


def _agreement(summary: dict[str, Any]) -> list[str]:
    """How far the explainers agree with each other on the teacher itself: the context of an alignment figure."""
    repeated = repeats_of_own(summary)
    pairs = {
        pair: values
        for pair, values in (summary.get("explainer_agreement") or {}).items()
        if not repeated & set(pair.split(" vs "))
    }
    if not pairs:
        return []
    said = ", ".join(f"{pair} {_fmt(values)}" for pair, values in pairs.items())
    return ["", f"The explainers on the teacher itself (per-sample Spearman between its own maps): {said}."]


def _who(row: dict[str, Any], baseline: str | None) -> str:
    return row["student"] if row["reference"] == baseline else f"{row['student']} vs {row['reference']}"


def teacher_table(candidates: list[dict[str, Any]]) -> list[str]:
    """The Markdown rows of the teacher candidates (test accuracy shown, never used to choose)."""
    lines = [
        "| teacher seed | epochs run | best epoch | train accuracy | validation accuracy | validation loss | "
        "test accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in candidates:
        mark = " (chosen)" if c.get("chosen") else ""
        lines.append(
            f"| {c['seed']}{mark} | {c['epochs_run']:.0f} | {c['best_epoch']:.0f} | {c['train_acc']:.3f} | "
            f"{c['val_acc']:.3f} | {c['val_loss']:.4f} | {c['test_acc']:.3f} |"
        )
    return lines


def render_teachers(source: dict[str, Any]) -> str:
    """``tsd_teacher_seeds.py``'s rows: per set, which seeds learn and the one chosen on validation loss."""
    rows = source["teachers"]
    lines = [
        f"`{source['command']}` ({source['date']}, {source['code']}, {source['machine']}).",
        "",
        "| set | seeds that learn (eval-mode training accuracy ≥ 0.9) | the others | chosen on validation loss |",
        "|---|---|---|---|",
    ]
    for name in dict.fromkeys(row["set"] for row in rows):
        mine = [row for row in rows if row["set"] == name]
        learn = [row for row in mine if row["learns"]]
        rest = [row for row in mine if not row["learns"]]
        chosen = min(mine, key=lambda row: row["val_loss"])
        lines.append(
            f"| {name} | {len(learn)} of {len(mine)}{_seeds(learn)} | {len(rest)}{_seeds(rest)} | seed "
            f"{chosen['seed']}: validation accuracy {chosen['val_acc']:.3f}, loss {chosen['val_loss']:.2g}; "
            f"test {chosen['test_acc']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def _seeds(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""

    def spread(key: str) -> str:
        return f"{min(r[key] for r in rows):.3f}–{max(r[key] for r in rows):.3f}"

    return (
        f" (seeds {', '.join(str(r['seed']) for r in rows)}: training {spread('train_acc')}, "
        f"test {spread('test_acc')}, epochs run {min(r['epochs_run'] for r in rows):.0f}–"
        f"{max(r['epochs_run'] for r in rows):.0f})"
    )


def render_costs(folder: Path) -> str:
    """The cost of every study summarised in ``folder`` whose fits kept their seconds: per model, the wall
    seconds of a fit and its mean epoch time as a ratio of the baseline student's (same study, same data; a study
    without a baseline, its first student's)."""
    from summary import mean_std

    lines = [
        "| study | seeds | training, all seeds and models (min) | model | seconds per fit | epoch time / baseline's |",
        "|---|---|---|---|---|---|",
    ]
    for path in sorted(folder.glob("*.json")):
        summary = json.loads(path.read_text())
        fits = summary.get("fits") or {}
        if "students" not in summary or not all("seconds" in fit for fit in fits.values()):
            continue
        epoch = {stage.removeprefix("student:"): mean_std(fit["epoch_seconds"])[0] for stage, fit in fits.items()}
        total = sum(v for fit in fits.values() for v in fit["seconds"] if v == v) / 60
        reference = summary.get("baseline") or next(iter(summary["students"]))  # else the first student
        for i, (stage, fit) in enumerate(fits.items()):
            who = stage.removeprefix("student:")
            ratio = "–" if who == "teacher" else f"{epoch[who] / epoch[reference]:.2f}x"
            ratio += (" (baseline)" if summary.get("baseline") else " (reference)") if who == reference else ""
            study = [path.stem, str(len(summary["seeds"])), f"{total:.1f}"] if i == 0 else ["", "", ""]
            lines.append("| " + " | ".join([*study, who, f"{mean_std(fit['seconds'])[0]:.0f}", ratio]) + " |")
    return "\n".join(lines) + "\n"


RENDERERS = {"students": render_study, "teachers": render_teachers}
#: the plan's generated blocks: ``results/plan.yaml`` (the verdicts), ``results/plan.yaml#exploratory`` (and #cuts,
#: #withdrawn)
PLAN_PARTS = {"verdicts": render_plan, "exploratory": exploratory, "cuts": cuts, "withdrawn": withdrawn}


def halves(summary: dict[str, Any], compared: list[tuple[str, str, str]]) -> list[str]:
    """With 10 seeds or more: each difference on the first and the second half of the seeds, as two independent
    runs of the study would give it — the between-run spread beside the within-run p."""
    seeds = summary["seeds"]
    if len(seeds) < 10:
        return []
    half = len(seeds) // 2
    students, baseline = summary["students"], summary.get("baseline")
    first, second = seeds[:half], seeds[half:]
    lines = [
        "",
        f"Between runs: each difference on seeds {first[0]}–{first[-1]} and on seeds {second[0]}–{second[-1]} "
        "alone, as two independent runs of the study would measure it (mean [95% CI], p).",
        "",
        f"| student | metric | seeds {first[0]}–{first[-1]} | seeds {second[0]}–{second[-1]} |",
        "|---|---|---|---|",
    ]
    for name, reference, metric in compared:
        cells = []
        for part in (slice(0, half), slice(half, None)):
            test = paired(students[name][metric][part], students[reference][metric][part])
            cells.append(f"{test['mean']:+.3f} [{test['low']:+.3f}, {test['high']:+.3f}], p {_p(test['p'])}")
        who = _who({"student": name, "reference": reference}, baseline)
        lines.append(f"| {who} | {LABELS[metric]} | {cells[0]} | {cells[1]} |")
    return lines


def rewrite(text: str) -> str:
    """``text`` with every generated block rendered again from its source."""

    def block(match: re.Match) -> str:
        name, _, part = match["source"].partition("#")
        source = ROOT / name
        if source.is_dir():
            body = render_costs(source)
        elif source.suffix == ".yaml":  # the plan: its verdicts, or (#exploratory) its secondary contrasts
            body = PLAN_PARTS[part or "verdicts"](yaml.safe_load(source.read_text()), ROOT)
        else:
            body = render(json.loads(source.read_text()))
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(block, text)


def draw_figures() -> list[Path]:
    """``docs/summary.png`` and ``docs/summary.json`` (``results_figure.py``), under this module's ROOT."""
    return results_figure.draw(ROOT)


def details() -> dict[Path, str]:
    """Per committed study summary, its detail page (``results/<edition>/<study>.md``): how it was run, its cuts,
    and the tables RESULTS.md used to carry."""
    out = {}
    for path in sorted((ROOT / "results").glob("*/*.json")):
        summary = json.loads(path.read_text())
        if not any(key in summary for key in RENDERERS):
            continue
        title = summary.get("study", path.stem)
        lines = [f"# {title}", "", f"Generated by `benchmarks/results_tables.py` from `{path.relative_to(ROOT)}`.", ""]
        for key in ("command", "date", "code", "machine"):
            if key in summary:
                lines.append(f"- {key}: `{summary[key]}`" if key == "command" else f"- {key}: {summary[key]}")
        cuts = summary.get("cuts", [])
        if cuts:
            lines += ["- cuts: " + "; ".join(cuts)]
        out[path.with_suffix(".md")] = "\n".join(lines) + "\n\n" + render(summary)
    for folder in sorted(p for p in (ROOT / "results").iterdir() if p.is_dir()):
        header = (
            f"# The cost of the {folder.name} edition's studies\n\nGenerated by `benchmarks/results_tables.py`.\n\n"
        )
        out[folder / "costs.md"] = header + render_costs(folder)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when RESULTS.md differs from its sources")
    args = parser.parse_args()
    text = RESULTS.read_text()
    fresh = rewrite(text)
    pages = details()
    if args.check:
        stale = [str(p.relative_to(ROOT)) for p, body in pages.items() if not p.exists() or p.read_text() != body]
        if fresh != text:
            stale.insert(0, "RESULTS.md")
        data = ROOT / "docs" / "summary.json"
        if not data.exists() or data.read_text() != results_figure.figure_data(ROOT):
            stale.append("docs/summary.json")
        if stale:
            print(
                f"{', '.join(stale)} differ from what results/ gives: run benchmarks/results_tables.py", file=sys.stderr
            )
            return 1
        print(
            f"RESULTS.md: {len(BLOCK.findall(text))} generated block(s), {len(pages)} detail pages and the figure's data up to date"
        )
        return 0
    RESULTS.write_text(fresh)
    for path, body in pages.items():
        path.write_text(body)
    print(f"RESULTS.md: {len(BLOCK.findall(text))} generated block(s) rewritten; {len(pages)} detail pages")
    for path in draw_figures():
        print(f"drew {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
