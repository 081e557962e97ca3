"""The shortcut block of a report: when the students' evaluations carry the shortcut benchmark's figures
(``xdistill/metrics/shortcut.py``: accuracy where the spurious cue lies or is gone, and how often predictions follow
the lying cue), a small table per student, mean ± std over seeds, and one sentence saying what it means."""

from __future__ import annotations

from typing import Any

from .tables import cell

#: (the student's key, the teacher's key, the column's label)
COLUMNS = [
    ("student_accuracy_flipped", "teacher_accuracy_flipped", "right, cue lies"),
    ("student_accuracy_none", "teacher_accuracy_none", "right, no cue"),
    ("cue_reliance", "teacher_cue_reliance", "follows lying cue"),
]

MEANING = (
    "The shortcut test: the training data carry a spurious cue that agrees with the label; in the test split the "
    "cue points to a wrong class in every sample (“cue lies”) or is removed (“no cue”). A student that reasons like "
    "its teacher, which learned where the cue carries no information, stays right when the spurious cue lies: high "
    "accuracy when the cue lies (“right, cue lies”), and a low share of predictions that follow the lying cue."
)


def shortcut_table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """Header and rows (the teacher first, then each student), or None when no student has the figures."""
    students = [r for r in summary["students"] if any(key in r for key, _, _ in COLUMNS)]
    if not students:
        return None
    header = ["model"] + [label for _, _, label in COLUMNS]
    first = students[0]
    rows = [["teacher"] + [cell("a", first.get(teacher, "")) for _, teacher, _ in COLUMNS]]
    rows += [[r["student"]] + [cell("a", r.get(key, "")) for key, _, _ in COLUMNS] for r in students]
    return header, rows
