"""The report's words and tables, shared by its HTML page and its Markdown summary: the results table's columns and
cells, the per-metric verdict lines, the alignment under each explainer, what the splits mean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .decision import in_words

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

DELETION = (
    "Deletion AUC: the student's explained logit while the teacher's most relevant parts are removed "
    "(lower = it relies on what the teacher relies on)."
)

#: what a study's report says about the splits (it trained the models, so it knows)
SPLITS = (
    "Every figure is measured on the test split, which no model saw in training or model selection; "
    "each model's best epoch was chosen on the training data alone (a validation part held out from it, or "
    "the training loss). " + DELETION
)

#: what an audit's report says instead: it did not train the models, so it cannot say what they saw
AUDIT_SPLITS = (
    "Every figure is measured on the test split of the data given; audit compares two trained models it did not "
    "train, so whether either saw these samples in training is not known here. " + DELETION
)


def splits_text(trained_here: bool) -> str:
    return SPLITS if trained_here else AUDIT_SPLITS


def cell(key: str, value: Any) -> str:
    """One table cell: mean ± std, a parameter count, a ratio, a number or text; empty for a missing figure."""
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


def best_students(summary: dict[str, Any]) -> dict[str, str]:
    """Result key -> the student the verdict tells apart as best (its cell is highlighted); none where the lead is
    within the spread."""
    return {v["metric"]: v["best"] for v in summary["verdicts"] if v["runner_up"] is not None and v["decided"]}


def explainer_table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str]] | None:
    """Saliency Spearman per student under each explainer, and how the explainers agree on the teacher."""
    students = [r for r in summary["students"] if "explainers" in r]
    if not students:
        return None
    labels = list(students[0]["explainers"])
    header = ["student"] + [f"saliency Spearman, {in_words(label)}" for label in labels]
    rows = [
        [r["student"]] + [cell("a", r["explainers"][label]["saliency_spearman"]) for label in labels] for r in students
    ]
    agreement = [
        f"{' vs '.join(map(in_words, pair.split(' vs ')))}: {cell('a', value)}"
        for pair, value in students[0]["teacher_explainer_agreement"].items()
    ]
    return header, rows, agreement


def verdict_lines(summary: dict[str, Any]) -> list[str]:
    if not summary["verdicts"]:
        return []
    seeds = summary["seeds"]
    head = (
        f"Per metric, over {len(seeds)} seeds ({', '.join(map(str, seeds))}):"
        if seeds
        else "Per metric (one seed; the spread is the per-sample spread on the test split):"
    )
    return [head] + [v["sentence"] for v in summary["verdicts"]]


def has_deletion_auc(summary: dict[str, Any]) -> bool:
    return any("flip_auc_student_teacher_order" in r for r in summary["students"])


def table_rows(summary: dict[str, Any], mark: Any = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows; ``mark(text)`` highlights the best student's cell of each verdict metric."""
    header = [label for _, label in COLUMNS]
    first = summary["students"][0] if summary["students"] else {}
    best = best_students(summary)
    mark = mark or (lambda text: text)
    rows = [
        [
            "teacher",
            teacher_accuracy(summary),
            "",
            "",
            "",
            "",
            cell("a", first.get("teacher_auc_pr", "")),
            cell("a", first.get("flip_auc_teacher", "")),
            f"{int(summary['teacher']['params'] or 0):,}",
            "1.0x",
            "1.0x",
            "1.0x",
        ]
    ]
    for r in summary["students"]:
        rows.append(
            [mark(cell(k, r.get(k, ""))) if best.get(k) == r["student"] else cell(k, r.get(k, "")) for k, _ in COLUMNS]
        )
    return header, rows


def teacher_accuracy(summary: dict[str, Any]) -> str:
    """The teacher's accuracy as the students' is shown: mean ± std over seeds when it varies."""
    teacher = summary["teacher"]
    return cell("accuracy", teacher.get("accuracy_over_seeds") or teacher["accuracy"])


def short_name(dataset: str) -> str:
    """A data set's name for a title: a file spec (``csv:/a/deep/folder/x_train.csv``) keeps its file name only."""
    kind, sep, rest = dataset.partition(":")
    if "/" not in rest and "\\" not in rest:
        return dataset
    return kind + sep + Path(rest.replace("\\", "/")).name


def settings_line(summary: dict[str, Any]) -> str:
    """How the figures were made: the explainer, parts, k, the explained class, the spread, the inputs."""
    ev = summary["evaluation"]
    inputs = f" Inputs: {summary['inputs']}." if summary.get("inputs") else ""
    return (
        f"Alignment uses {in_words(ev['explainer'])} attributions reduced to {ev['parts']} parts (k={ev['k']}), "
        f"explaining the {ev['target']} class; every figure is a mean ± std over {summary['spread']}.{inputs}"
    )
