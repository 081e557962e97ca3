"""The Markdown tables ``benchmarks/reproduce.py`` writes after each study (mean ± std over seeds, paired p)."""

from __future__ import annotations

import statistics
from typing import Any

from reproduce_studies import COMBINED

COLUMNS = [
    ("student_accuracy", "accuracy"),
    ("student_accuracy_all", "accuracy, whole test split"),
    ("student_auc_pr", "AUC-PR"),
    ("agreement", "agreement"),
    ("logit_spearman", "logit Spearman"),
    ("saliency_spearman", "saliency Spearman"),
    ("topk_focus", "top-k focus"),
    ("topk_focus_ratio", "top-k in/out ratio"),
    ("flip_auc_student_teacher_order", "deletion AUC (teacher order)"),
    ("rationale_precision", "rationale precision"),
    ("rationale_recall", "rationale recall"),
    ("rationale_iou_teacher", "rationale IoU with teacher"),
    ("student_accuracy_flipped", "accuracy, cue flipped"),
    ("student_accuracy_none", "accuracy, no cue"),
    ("cue_reliance", "cue reliance"),
]
#: paired over seeds against the study's baseline student (where the study has the column; also every
#: ``saliency_spearman@<explainer>`` column of the further explainers)
TESTED = ("student_accuracy", "student_accuracy_all", "saliency_spearman")


def fmt(values: list[float]) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "–"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {std:.3f}"


def paired_p(a: list[float], b: list[float]) -> float:
    """Two-sided paired t-test over seeds (nan when undefined, e.g. identical values)."""
    from scipy.stats import ttest_rel

    if len(a) < 2:
        return float("nan")
    return float(ttest_rel(a, b).pvalue)


def table(
    title: str,
    summary: dict[str, Any],
    seeds: list[int],
    note: str = "",
    baseline: str | None = None,
    classes: int | None = None,
) -> str:
    teacher = summary["teacher_accuracy"]
    teacher_all = [v for v in summary.get("teacher_accuracy_all", []) if v == v]
    whole = f" (whole test split {fmt(teacher_all)})" if teacher_all else ""
    lines = [
        f"### {title}",
        "",
        note,
        "",
        f"Teacher accuracy {fmt(teacher)}{whole}; mean ± std over seeds {seeds} of per-seed means"
        + (f"; p = paired t-test over seeds against `{baseline}`" if baseline else "")
        + ".",
        "",
    ]
    if classes and statistics.fmean(teacher) < 1.0 / classes + 0.1:
        lines += [
            f"**Collapsed teacher: accuracy {statistics.fmean(teacher):.3f} is near chance (1/{classes}); "
            "the distillation rows below measure nothing.**",
            "",
        ]
    rows = summary["students"].values()
    whole_differs = any(
        a != s
        for row in rows  # the whole-split column only where it is not the sample's
        for a, s in zip(row.get("student_accuracy_all", []), row["student_accuracy"])
        if a == a
    )
    columns = [(k, label) for k, label in COLUMNS if k != "student_accuracy_all" or whole_differs]
    columns += [(k, f"saliency Spearman under {k.partition('@')[2]}") for k in further_keys(summary["students"])]
    tested = [k for k, _ in columns if k in TESTED or k.startswith("saliency_spearman@")] if baseline else []
    tests = [f"p ({label})" for key, label in columns if key in tested]
    lines += [
        "| student | "
        + " | ".join(label for _, label in columns)
        + " | "
        + "".join(f"{t} | " for t in tests)
        + "compression |",
        "|---|" + "---|" * (len(columns) + len(tests) + 1),
    ]
    if summary.get("explainer_agreement"):
        lines[-2:-2] = [
            "The explainers on the teacher itself (per-sample Spearman between its maps, mean ± std over seeds): "
            + "; ".join(f"{pair} {fmt(values)}" for pair, values in summary["explainer_agreement"].items())
            + ".",
            "",
        ]
    for name, row in summary["students"].items():
        cells = [fmt(row.get(k, [])) for k, _ in columns]
        if baseline:
            base = summary["students"][baseline]
            cells += ["" if name == baseline else f"{paired_p(row[k], base[k]):.3f}" for k in tested]
        cells += [f"{statistics.fmean(row['compression']):.1f}x"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: how the further explainers' labels read in the compact table (``#2``: the second of that name in a study)
EXPLAINER_LABELS = {
    "integrated_gradients": "IG, 32 steps",
    "integrated_gradients#2": "IG, 32 steps",
    "saliency": "gradient saliency",
    "occlusion": "occlusion",
}


def further_keys(students: dict[str, dict[str, list[float]]]) -> list[str]:
    """The ``saliency_spearman@<explainer>`` columns of the further explainers, sorted."""
    return sorted({k for row in students.values() for k in row if k.startswith("saliency_spearman@")})


def explainer_label(key: str) -> str:
    """How a further explainer's column reads (``saliency_spearman@saliency`` -> "gradient saliency")."""
    explainer = key.partition("@")[2]
    return EXPLAINER_LABELS.get(explainer, explainer)


def accuracy_key(students: dict[str, dict[str, list[float]]]) -> str:
    """Accuracy on the whole test split where the study measured it, else on the evaluation sample."""
    whole = any(v == v for row in students.values() for v in row.get("student_accuracy_all", []))
    return "student_accuracy_all" if whole else "student_accuracy"


def explainer_table(summary: dict[str, Any], baseline: str | None, own: str) -> str:
    """The compact table RESULTS.md quotes: accuracy and alignment under every explainer, each with its paired p."""
    students = summary["students"]
    further = further_keys(students)
    if not further:
        return ""
    accuracy = accuracy_key(students)
    whole = ", whole test split" if accuracy == "student_accuracy_all" else ""
    keys = [(accuracy, "accuracy" + whole), ("saliency_spearman", f"{own} (own)")]
    keys += [(k, "under " + explainer_label(k)) for k in further]
    header = "| student | " + " | ".join(f"{label} | p" if baseline else label for _, label in keys)
    lines = [header + " | deletion AUC, teacher's order |", "|---|" + "---|" * (len(keys) * (2 if baseline else 1) + 1)]
    for name, row in students.items():
        cells = []
        for key, _ in keys:
            cells.append(fmt(row.get(key, [])))
            if baseline:
                base = students[baseline]
                p = paired_p(row[key], base[key])
                cells.append("" if name == baseline else f"{p:.3f}" if p == p else "–")
        cells.append(fmt(row.get("flip_auc_student_teacher_order", [])))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _p(a: list[float], b: list[float]) -> str:
    p = paired_p(a, b)
    return "identical" if p != p else "p<0.001" if p < 0.001 else f"p={p:.3f}"


def combination_table(summary: dict[str, Any], own: str = "own explainer") -> str:
    """Each combined student against each of the students it combines: difference of means, paired p."""
    students = summary["students"]
    keys = [(accuracy_key(students), "accuracy"), ("saliency_spearman", own)]
    keys += [(k, explainer_label(k)) for k in further_keys(students)]
    lines = [
        "Combined against each part (difference of means over seeds, paired t-test p):",
        "",
        "| combined vs part | " + " | ".join(label for _, label in keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for combined, parts in COMBINED.items():
        for part in parts:
            if combined not in students or part not in students:
                continue
            a, b = students[combined], students[part]
            cells = [f"{statistics.fmean(a[k]) - statistics.fmean(b[k]):+.3f} ({_p(a[k], b[k])})" for k, _ in keys]
            lines.append(f"| {combined} vs {part} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


POSTER_ALPHA = {0.0: "1.0 (no KD)", 0.5: "0.5", 0.9: "0.1"}  # kd alpha -> the poster's CE weight


def where_tables(summary: dict[str, Any]) -> str:
    """The poster's layout: rows = student sizes, columns = its alpha (CE weight); p = paired t-test
    over seeds against the same size without KD."""
    students = summary["students"]
    sizes = list(dict.fromkeys(name.split("[")[0] for name in students))
    out = []
    for key, label in (
        ("logit_spearman", "Logit Spearman"),
        ("saliency_spearman", "Part-importance Spearman"),
        ("topk_focus_ratio", "Top-5 focus (mass inside / outside the teacher's top-5)"),
        ("student_accuracy", "Accuracy"),
    ):
        out += [
            f"**{label}** (poster alpha = CE weight; p against no KD)",
            "",
            "| student | " + " | ".join(f"alpha {a}" for a in POSTER_ALPHA.values()) + " |",
            "|---|" + "---|" * len(POSTER_ALPHA),
        ]
        for size in sizes:
            base = students.get(f"{size}[alpha=0.0]")
            cells = []
            for kd_alpha in POSTER_ALPHA:
                row = students.get(f"{size}[alpha={kd_alpha}]")
                if row is None:
                    cells.append("–")
                    continue
                p = "" if kd_alpha == 0.0 or base is None else f" (p={paired_p(row[key], base[key]):.3f})"
                cells.append(fmt(row[key]) + p)
            out.append(f"| {size} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out) + "\n"
