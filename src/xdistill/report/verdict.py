"""Which student is best on each metric, and whether its lead exceeds the spread.

With one seed, a metric's spread is its per-sample spread on the test split: the lead counts when it
exceeds twice the standard error of the difference of two means (accuracy: the binomial standard
error). With several seeds, each student's figure is a mean over seeds and the lead is tested with a
paired t-test over seeds (p < 0.05).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: (result key, label, higher is better)
VERDICT_METRICS = [
    ("student_accuracy", "accuracy", True),
    ("agreement", "agreement with the teacher", True),
    ("saliency_spearman", "saliency Spearman", True),
    ("topk_focus", "top-k focus", True),
    ("flip_auc_student_teacher_order", "deletion AUC in the teacher's order", False),
]


@dataclass
class Verdict:
    metric: str
    label: str
    best: str
    runner_up: str | None
    lead: float
    decided: bool
    evidence: str

    def sentence(self) -> str:
        if self.runner_up is None:
            return f"{self.label}: {self.best} (the only student)."
        if self.lead == 0:
            return f"{self.label}: {self.best} and {self.runner_up} tie ({self.evidence})."
        if not self.decided:
            return (
                f"{self.label}: {self.best} and {self.runner_up} cannot be told apart "
                f"({abs(self.lead):.3f} apart, within the spread; {self.evidence})."
            )
        return f"{self.label}: {self.best} ahead of {self.runner_up} by {abs(self.lead):.3f} ({self.evidence})."


def mean_of(value: Any) -> float:
    """A figure's mean: a summary's ``mean``, or the number itself."""
    return float(value["mean"]) if isinstance(value, dict) else float(value)


def _standard_error(value: Any, n_samples: int) -> float:
    """Standard error of a per-sample mean; for a scalar accuracy the binomial one."""
    if isinstance(value, dict):
        return float(value["std"]) / math.sqrt(max(1, int(value["n"])))
    p = float(value)
    return math.sqrt(max(p * (1 - p), 0.0) / max(1, n_samples))


def value_of(result: dict[str, Any], key: str) -> Any:
    """A result's figure by key; ``saliency_spearman@<explainer>`` reads the alignment under a further explainer."""
    metric, _, explainer = key.partition("@")
    if explainer:
        return result["explainers"][explainer][metric]
    return result[key]


def compare(
    a: dict[str, Any], b: dict[str, Any], key: str, per_seed: dict[str, list[dict[str, Any]]] | None = None
) -> tuple[float, bool, str]:
    """``a``'s lead over ``b`` on ``key`` (a minus b), whether it exceeds the spread, and the evidence: a paired
    t-test over seeds (p < 0.05) when the study ran several, else two standard errors of the per-sample spread."""
    lead = mean_of(value_of(a, key)) - mean_of(value_of(b, key))
    if per_seed and len(per_seed.get(a["student"], [])) > 1:
        xs = [mean_of(value_of(r, key)) for r in per_seed[a["student"]]]
        ys = [mean_of(value_of(r, key)) for r in per_seed[b["student"]]]
        p = paired_p_value(xs, ys)
        return lead, p < 0.05, f"paired t-test over {len(xs)} seeds, p = {p:.3g}"
    se = math.hypot(_standard_error(value_of(a, key), _samples(a)), _standard_error(value_of(b, key), _samples(b)))
    return (
        lead,
        abs(lead) > 2 * se,
        f"one seed: 2 standard errors of the per-sample spread = {2 * se:.3f}",
    )


def verdicts(results: list[dict[str, Any]], per_seed: dict[str, list[dict[str, Any]]] | None = None) -> list[Verdict]:
    """One verdict per metric present in every result. ``per_seed``: each student's results of every seed
    (same seed order for every student), when the study ran several."""
    out = []
    for key, label, higher in VERDICT_METRICS:
        if not results or any(key not in r for r in results):
            continue
        sign = 1.0 if higher else -1.0
        ranked = sorted(results, key=lambda r: sign * mean_of(r[key]), reverse=True)
        best = ranked[0]
        if len(ranked) == 1:
            out.append(Verdict(key, label, best["student"], None, 0.0, False, ""))
            continue
        second = ranked[1]
        lead, decided, evidence = compare(best, second, key, per_seed)
        out.append(Verdict(key, label, best["student"], second["student"], lead, decided, evidence))
    return out


def _samples(result: dict[str, Any]) -> int:
    """Test samples behind a result (read from any per-sample summary)."""
    for value in result.values():
        if isinstance(value, dict) and "n" in value:
            return int(value["n"])
    return 1


def paired_p_value(a: list[float], b: list[float]) -> float:
    """Two-sided paired t-test p-value. Differences that do not vary give 1.0 when they are zero (no lead)
    and 0.0 otherwise (the same lead on every seed)."""
    from scipy import stats

    differences = [x - y for x, y in zip(a, b)]
    if len(differences) < 2:
        return 1.0
    if max(differences) == min(differences):
        return 1.0 if differences[0] == 0 else 0.0
    return float(stats.ttest_rel(a, b).pvalue)


def aggregate(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """One student's results over seeds: per-sample summaries and varying numbers become mean ± std over seeds
    (nested tables too, e.g. alignment per explainer); numbers equal on every seed and text are kept."""
    return {key: _over_seeds([r.get(key) for r in per_seed]) for key in per_seed[0]}


def _over_seeds(values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, dict) and "mean" in first:
        means = [float(v["mean"]) for v in values if isinstance(v, dict)]
        return {"mean": _avg(means), "std": _std(means), "n": len(means), "over": "seeds"}
    if isinstance(first, dict):
        return {k: _over_seeds([v.get(k) if isinstance(v, dict) else None for v in values]) for k in first}
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric and len({float(v) for v in values}) > 1:
        numbers = [float(v) for v in values]
        return {"mean": _avg(numbers), "std": _std(numbers), "n": len(numbers), "over": "seeds"}
    return first


def _avg(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _std(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    if len(finite) < 2:
        return 0.0
    mean = sum(finite) / len(finite)
    return math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
