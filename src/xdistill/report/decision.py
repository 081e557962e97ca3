"""The report's decision: which student to ship, by a stated rule, with warnings for weak students.

Accuracy first: the candidates are the students whose accuracy cannot be told apart from the most accurate
one's. Reasons second: among the candidates, a student is picked when its alignment with the teacher is
ahead of every other candidate's under at least one of the study's explainers and behind none. Otherwise the
decision says that no student can be told apart, and names the smallest candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .verdict import compare, mean_of, value_of

RULE = (
    "Rule: the candidates are the students whose accuracy cannot be told apart from the most accurate student's; "
    "among them, one is picked when its alignment with the teacher (saliency Spearman) is ahead of every other "
    "candidate's under at least one of the study's explainers and behind none. Told apart = a paired t-test over "
    "seeds, p < 0.05 (one seed: a gap beyond two standard errors of the per-sample spread), uncorrected for the "
    "several comparisons."
)
#: a student more than this far below the teacher's accuracy gets a warning
WEAK_GAP = 0.05
DELETION_AUC = (
    "Deletion AUC is the mean of the student's explained logit (a logit, not a probability) while the teacher's "
    "most relevant parts are removed first; logits can be negative, so the area can be below zero. Lower = the "
    "student relies more on what the teacher relies on: compare students with each other, not with zero."
)


@dataclass
class Decision:
    """The answer at the top of a report: the student picked (None: none can be told apart) and why."""

    pick: str | None
    headline: str
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rule: str = RULE


def alignment_keys(results: list[dict[str, Any]], main_explainer: str) -> dict[str, str]:
    """Result key -> explainer name, for every explainer the study measured alignment under (the main one first)."""
    keys = {"saliency_spearman": main_explainer}
    for label in list(results[0].get("explainers", {}))[1:]:
        keys[f"saliency_spearman@{label}"] = label
    return {k: v for k, v in keys.items() if _present(results, k)}


def _present(results: list[dict[str, Any]], key: str) -> bool:
    try:
        return all(value_of(r, key) is not None for r in results)
    except KeyError:
        return False


def decide(
    results: list[dict[str, Any]],
    per_seed: dict[str, list[dict[str, Any]]] | None,
    teacher_accuracy: float,
    main_explainer: str,
    n_classes: int | None = None,
) -> Decision | None:
    """The decision over ``results`` (one evaluation dict per student, aggregated over seeds when ``per_seed``)."""
    results = [r for r in results if "student_accuracy" in r]
    if not results:
        return None
    warnings = weak_students(results, teacher_accuracy, n_classes)
    best = max(results, key=lambda r: mean_of(r["student_accuracy"]))
    candidates, reasons = [best], []
    for other in results:
        if other is best:
            continue
        lead, told_apart, evidence = compare(best, other, "student_accuracy", per_seed)
        if told_apart:
            reasons.append(f"{other['student']} is less accurate than {best['student']} by {lead:.3f} ({evidence}).")
        else:
            candidates.append(other)
    names = [c["student"] for c in candidates]
    if len(candidates) == 1:
        why = "the only student" if len(results) == 1 else "more accurate than every other student"
        return Decision(best["student"], f"Ship {best['student']}: {why}.", reasons, warnings)
    reasons.append(f"Accuracy cannot tell {_join(names)} apart.")
    keys = alignment_keys(candidates, main_explainer)
    leaders = {key: _leader(candidates, key, per_seed) for key in keys}
    for key, (leader, evidence) in leaders.items():
        if leader is not None:
            reasons.append(
                f"Under {keys[key]}, {leader} aligns with the teacher ahead of every other candidate ({evidence})."
            )
    winners = {leader for leader, _ in leaders.values() if leader is not None}
    by_name = {c["student"]: c for c in candidates}
    behind = {w for w in winners if any(_ahead_of(c, by_name[w], key, per_seed) for c in candidates for key in keys)}
    picks = winners - behind
    explainers = ", ".join(keys.values())
    if len(picks) == 1 and not behind:
        pick = picks.pop()
        return Decision(
            pick, f"Ship {pick}: as accurate as the best, and it reasons most like the teacher.", reasons, warnings
        )
    cost = _on_cost(candidates)
    if winners:
        headline = (
            f"No student can be told apart: the explainers disagree on who aligns best ({_join(sorted(winners))}); "
            f"choose on cost — {cost}."
        )
    else:
        headline = (
            f"No student can be told apart: {_join(names)} are as accurate as each other, and none aligns with the "
            f"teacher ahead of every other under {explainers}; choose on cost — {cost}."
        )
    return Decision(None, headline, reasons, warnings)


def _leader(
    candidates: list[dict[str, Any]], key: str, per_seed: dict[str, list[dict[str, Any]]] | None
) -> tuple[str | None, str]:
    """The candidate ahead of every other on ``key`` (told apart from each), else None."""
    top = max(candidates, key=lambda r: mean_of(value_of(r, key)))
    evidence = []
    for other in candidates:
        if other is top:
            continue
        lead, told_apart, why = compare(top, other, key, per_seed)
        if not told_apart or lead <= 0:
            return None, ""
        evidence.append(f"{lead:+.3f} over {other['student']}, {why}")
    return top["student"], "; ".join(evidence)


def _ahead_of(a: dict[str, Any], b: dict[str, Any], key: str, per_seed: dict[str, list[dict[str, Any]]] | None) -> bool:
    """Whether ``a`` is told apart from ``b`` on ``key``, ahead."""
    if a is b:
        return False
    lead, told_apart, _ = compare(a, b, key, per_seed)
    return told_apart and lead > 0


def _on_cost(candidates: list[dict[str, Any]]) -> str:
    """The smallest candidate by parameters, or that they are all the same size."""
    sizes = {c["student"]: mean_of(c.get("student_params", float("nan"))) for c in candidates}
    if len(set(sizes.values())) == 1:
        return f"all have {int(next(iter(sizes.values()))):,} parameters" if sizes else "no size is known"
    smallest = min(sizes, key=lambda name: sizes[name])
    return f"the smallest candidate is {smallest} ({int(sizes[smallest]):,} parameters)"


def weak_students(results: list[dict[str, Any]], teacher_accuracy: float, n_classes: int | None) -> list[str]:
    """A warning for every student far below the teacher (or at chance): its alignment describes a weak model."""
    out = []
    chance = 1 / n_classes if n_classes else None
    for r in results:
        accuracy = mean_of(r["student_accuracy"])
        gap = teacher_accuracy - accuracy
        if chance is not None and accuracy <= chance + 0.05:
            out.append(
                f"{r['student']} is at chance level ({accuracy:.3f}; chance {chance:.3f}): it learned nothing, "
                "so its alignment figures mean nothing."
            )
        elif gap > WEAK_GAP:
            out.append(
                f"{r['student']} reaches {accuracy:.3f}, {100 * gap:.1f} points below the teacher's "
                f"{teacher_accuracy:.3f}: it may be undertrained (see its training curve) or too small, and its "
                "alignment describes a weak model."
            )
    return out


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
