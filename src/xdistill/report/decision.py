"""The report's decision: which student to ship, by a stated rule, in plain words, with warnings for weak ones.

Accuracy first: the candidates are the students level with the most accurate one (the gap is within the spread).
Reasons second: among the candidates, the one whose explanations are closer to the teacher's under at least one of
the study's explainers, and further under none, is picked. When the candidates are level on both, a stated
fallback order still names one: fewest parameters, then clearly faster inference, then the simplest objective
(one that needs no teacher first), then the highest mean accuracy. When every student is far below the teacher,
the decision says that none is ready to ship before naming the least bad. In a shortcut study the accuracy compared
is the accuracy where the spurious cue lies (``metrics/shortcut.py``): a student right only while the cue agrees with
the label is not level with one that follows the evidence.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .verdict import compare, mean_of, value_of

RULE = (
    "Rule: the candidates are the students whose accuracy is level with the most accurate student's (the gap is "
    "within the spread); among them, the one whose explanations are closer to the teacher's (saliency Spearman) "
    "under at least one of the study's explainers, and further under none, is picked. Level candidates are picked "
    "by fewest parameters, then fewest operations per sample (faster inference), then the simplest objective (no teacher "
    "needed first), then the highest mean accuracy. A gap counts when a paired t-test over seeds gives p < 0.05 "
    "(one seed: a gap beyond two standard errors of the per-sample spread), uncorrected for the several "
    "comparisons. When every student is more than 5 points below the teacher (or at chance), none is ready."
)
SHORTCUT_RULE = (
    " In a shortcut study (the evaluation has accuracy where a spurious cue lies) that accuracy replaces plain "
    "accuracy in the rule: a student right only while the cue agrees with the label is not a candidate."
)
#: a student more than this far below the teacher's accuracy gets a warning
WEAK_GAP = 0.05
#: terms and presets that train without a teacher
TEACHER_FREE = {"ce", "rationale", "rationale_selection", "gumbel_anneal"}
#: explainer registry names in words
EXPLAINER_WORDS = {
    "integrated_gradients": "integrated gradients",
    "saliency": "gradient saliency",
    "input_x_gradient": "input × gradient",
    "smoothgrad": "SmoothGrad",
}
DELETION_AUC = (
    "Deletion AUC is the mean of the student's explained logit (a logit, not a probability) while the teacher's "
    "most relevant parts are removed first; logits can be negative, so the area can be below zero. Lower = the "
    "student relies more on what the teacher relies on: compare students with each other, not with zero."
)


@dataclass
class Decision:
    """The answer at the top of a report: the student picked (None: none is ready to ship) and why."""

    pick: str | None
    headline: str
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rule: str = RULE
    #: when no student is ready to ship: the one the rule would pick otherwise
    least_bad: str | None = None


@dataclass(frozen=True)
class Measure:
    """The accuracy the decision compares: its result key and how sentences name it."""

    key: str = "student_accuracy"
    #: appended to "accurate" / "accuracy" in sentences
    where: str = ""

    @property
    def words(self) -> str:
        return f"accuracy{self.where}"


PLAIN = Measure()
WHERE_CUE_LIES = Measure("student_accuracy_flipped", " where the cue lies")


def in_words(explainer: str) -> str:
    """An explainer's name as prose: ``integrated_gradients`` -> "integrated gradients"."""
    base, _, rest = explainer.partition("@")
    return EXPLAINER_WORDS.get(base, base.replace("_", " ")) + (f" ({rest})" if rest else "")


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
    measure = WHERE_CUE_LIES if all(WHERE_CUE_LIES.key in r for r in results) else PLAIN
    rule = RULE + (SHORTCUT_RULE if measure is WHERE_CUE_LIES else "")
    pick, why, reasons = _pick(results, per_seed, main_explainer, measure)
    unfit = [r for r in results if _unfit(r, teacher_accuracy, n_classes)]
    if len(unfit) < len(results):
        return Decision(pick, f"Ship {pick}: {why}.", reasons, warnings, rule)
    gaps = [100 * (teacher_accuracy - mean_of(r["student_accuracy"])) for r in results]
    spread = f"{min(gaps):.0f}–{max(gaps):.0f}" if round(min(gaps)) != round(max(gaps)) else f"{min(gaps):.0f}"
    headline = (
        f"None of the students is ready to ship: every student is {spread} points below the teacher's accuracy "
        f"({teacher_accuracy:.3f}). The least bad is {pick}: {why}."
    )
    return Decision(None, headline, reasons, warnings, rule, least_bad=pick)


def _pick(
    results: list[dict[str, Any]],
    per_seed: dict[str, list[dict[str, Any]]] | None,
    main_explainer: str,
    measure: Measure = PLAIN,
) -> tuple[str, str, list[str]]:
    """The student the rule picks, why (a clause), and the reasons behind it."""
    best = max(results, key=lambda r: mean_of(r[measure.key]))
    candidates, reasons = [best], []
    for other in results:
        if other is best:
            continue
        lead, clear, evidence = compare(best, other, measure.key, per_seed)
        if clear:
            reasons.append(
                f"{other['student']} is less accurate{measure.where} than {best['student']} by {lead:.3f} ({evidence})."
            )
        else:
            candidates.append(other)
    names = [c["student"] for c in candidates]
    if len(candidates) == 1:
        if len(results) == 1:
            return best["student"], "the only student", reasons
        return (
            best["student"],
            f"more accurate{measure.where} than every other student ({_p_values(reasons)})",
            reasons,
        )
    reasons.append(f"{_join(names)} are level on {measure.words} (the gaps are within the spread).")
    keys = alignment_keys(candidates, main_explainer)
    leaders = {key: _leader(candidates, key, per_seed) for key in keys}
    for key, (leader, evidence) in leaders.items():
        if leader is not None:
            reasons.append(
                f"Under {in_words(keys[key])}, {leader}'s explanations are closer to the teacher's than every other "
                f"candidate's ({evidence})."
            )
    winners = sorted({leader for leader, _ in leaders.values() if leader is not None})
    by_name = {c["student"]: c for c in candidates}
    behind = {w for w in winners if any(_ahead_of(c, by_name[w], key, per_seed) for c in candidates for key in keys)}
    if len(winners) == 1 and not behind:
        pick = winners[0]
        led = [in_words(keys[k]) for k, (leader, _) in leaders.items() if leader == pick]
        evidence = "; ".join(e for leader, e in leaders.values() if leader == pick)
        others = _join([n for n in names if n != pick])
        return (
            pick,
            f"as accurate as {others}{measure.where}, and its explanations are the closest to the teacher's under "
            f"{_join(led)} ({_p_values([evidence])})",
            reasons,
        )
    pool = [by_name[w] for w in winners] if winners else candidates
    pick, because = _fallback(pool, measure)
    others = _join([n for n in names if n != pick])
    if winners:
        head = (
            f"level with {others} on {measure.words}; the explainers disagree on whose explanations are closest to the "
            f"teacher's ({_join(winners)})"
        )
    else:
        explainers = _join([in_words(e) for e in keys.values()], "or")
        head = f"as accurate as {others}{measure.where}, and none explains more like the teacher under {explainers}"
    reasons.append(
        f"Candidates level on {measure.words} and explanations are picked in a fixed order: fewest parameters, then "
        "fewest operations per sample, then the simplest objective (no teacher needed first), then the highest mean "
        f"{measure.words}."
    )
    return pick, f"{head}; {because}", reasons


def _fallback(pool: list[dict[str, Any]], measure: Measure = PLAIN) -> tuple[str, str]:
    """Among level candidates: fewest parameters, then fewest operations per sample (faster inference, counted, not
    timed: timings vary from run to run), then the simplest objective, then the highest mean accuracy. Returns the
    name and the clause that says why."""
    said: list[str] = []
    for key, what in (("student_params", "parameters"), ("student_flops", "operations per sample")):
        values = {c["student"]: mean_of(c.get(key, math.nan)) for c in pool}
        if any(math.isnan(v) for v in values.values()):
            continue
        least = min(values.values())
        if list(values.values()).count(least) == 1:
            name = min(values, key=lambda n: values[n])
            same = f"{_all(pool)} have {_join(said)}, but " if said else ""
            return name, f"{same}{name} has the fewest {what} ({int(least):,})"
        pool = [c for c in pool if values[c["student"]] == least]
        said.append(f"{int(least):,} {what}")
    costs = {c["student"]: _objective_cost(c.get("methods")) for c in pool}
    simplest = min(costs.values())
    same = f"{_all(pool)} have {_join(said)}, so " if said else ""
    if list(costs.values()).count(simplest) == 1:
        name = min(costs, key=lambda n: costs[n])
        simpler = "it trains without a teacher" if simplest[0] == 0 else "it has the fewest terms"
        return name, f"{same}{name} wins as the simplest objective: {simpler}"
    name = max(pool, key=lambda c: mean_of(c[measure.key]))["student"]
    return name, f"{same}{name} wins on the highest mean {measure.words}, among equally simple objectives"


def _all(pool: list[dict[str, Any]]) -> str:
    return "both" if len(pool) == 2 else "all"


def _objective_cost(methods: Any) -> tuple[int, int]:
    """(needs a teacher, number of terms): lower is simpler; unknown objectives rank last."""
    if not isinstance(methods, list) or not methods:
        return (2, 0)
    names = [m if isinstance(m, str) else str(m.get("name", "")) for m in methods]
    return (0 if all(n in TEACHER_FREE for n in names) else 1, len(names))


def _p_values(evidence: list[str]) -> str:
    """The p-values quoted in ``evidence`` as one short parenthesis: "p = 0.007" or "p ≤ 0.03"."""
    found = [float(p) for e in evidence for p in re.findall(r"p = ([0-9.eE+-]+)", e)]
    if not found:
        return "beyond two standard errors" if any("standard errors" in e for e in evidence) else "see below"
    return f"p = {found[0]:.2g}" if len(found) == 1 else f"p ≤ {max(found):.2g}"


def _leader(
    candidates: list[dict[str, Any]], key: str, per_seed: dict[str, list[dict[str, Any]]] | None
) -> tuple[str | None, str]:
    """The candidate ahead of every other on ``key`` (beyond the spread of each), else None."""
    top = max(candidates, key=lambda r: mean_of(value_of(r, key)))
    evidence = []
    for other in candidates:
        if other is top:
            continue
        lead, clear, why = compare(top, other, key, per_seed)
        if not clear or lead <= 0:
            return None, ""
        evidence.append(f"{lead:+.3f} over {other['student']}, {why}")
    return top["student"], "; ".join(evidence)


def _ahead_of(a: dict[str, Any], b: dict[str, Any], key: str, per_seed: dict[str, list[dict[str, Any]]] | None) -> bool:
    """Whether ``a`` is ahead of ``b`` on ``key`` beyond the spread."""
    if a is b:
        return False
    lead, clear, _ = compare(a, b, key, per_seed)
    return clear and lead > 0


def _unfit(result: dict[str, Any], teacher_accuracy: float, n_classes: int | None) -> bool:
    """Far below the teacher, or at chance: the warnings of :func:`weak_students`."""
    accuracy = mean_of(result["student_accuracy"])
    at_chance = n_classes is not None and accuracy <= 1 / n_classes + 0.05
    return at_chance or teacher_accuracy - accuracy > WEAK_GAP


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


def _join(names: list[str], word: str = "and") -> str:
    if not names:
        return "no other student"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" {word} " + names[-1]
