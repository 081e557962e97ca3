"""The verdict rule of ``results/plan.yaml``, applied to a claim's confirmatory summary.

For each contrast of a claim's family: the paired differences arm − comparator over the summary's seeds, their
mean, the two-sided paired t-test p, and Holm's adjustment within the family (the claim's own contrasts only).
The primary contrast then reads:

- **holds**: Holm-adjusted p < α and the difference in the claimed direction;
- **opposite**: Holm-adjusted p < α and the difference against it;
- **equivalent**: TOST at α: the (1 − 2α) CI of the difference lies inside ±sesoi;
- **inconclusive**: otherwise, with the seeds the observed SD would need (``plan_power``'s rule, at this SD).

The CI printed beside a verdict is adjusted: Bonferroni's (1 − α/m) interval for a family of m contrasts (the
interval that matches Holm's first step); the equivalence test uses its own (1 − 2α) interval. Secondary
contrasts are exploratory: estimate, CI and p, no verdict word.
"""

from __future__ import annotations

import math
import statistics
from typing import Any


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def summary_key(contrast: dict[str, Any], own: str | None) -> str:
    """The contrast's key in a study summary (``plan_power.summary_key``, which the plan's pilot reads too)."""
    from plan_power import summary_key as key

    return key(contrast["metric"], contrast.get("explainer"), own)


def differences(summary: dict[str, Any], contrast: dict[str, Any], own: str | None) -> list[float]:
    key = summary_key(contrast, own)
    students = summary["students"]
    arm, comparator = students[contrast["arm"]][key], students[contrast["comparator"]][key]
    return [a - b for a, b in zip(arm, comparator)]


def interval(values: list[float], confidence: float) -> tuple[float, float]:
    """The two-sided ``confidence`` t interval of the mean of ``values``."""
    from scipy.stats import t

    n, mean = len(values), statistics.fmean(values)
    half = t.ppf(1 - (1 - confidence) / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return mean - half, mean + half


def t_test(values: list[float]) -> float:
    from scipy.stats import ttest_1samp

    if statistics.stdev(values) == 0:
        return 1.0 if statistics.fmean(values) == 0 else 0.0
    return float(ttest_1samp(values, 0.0).pvalue)


def judge(claim: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """The claim's verdict and every contrast's figures, from its confirmatory summary."""
    from plan_power import smallest_n, t_power, tost_power

    own, alpha, sesoi = claim["study"].get("own_explainer"), float(claim["alpha"]), float(claim["sesoi"])
    family = claim["family"]
    planned = claim.get("seeds") or len(summary["seeds"])  # a run shared with a claim that needs more seeds:
    rows = []  # this claim reads its own planned number, the first seeds, as the plan fixed it
    for contrast in family:
        values = differences(summary, contrast, own)[:planned]
        rows.append({"contrast": contrast, "values": values, "mean": statistics.fmean(values), "p": t_test(values)})
    for row, adjusted in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = adjusted
        row["ci"] = interval(row["values"], 1 - alpha / len(family))
    primary = rows[0]
    sign = 1 if claim["primary"]["direction"] == "higher" else -1
    low, high = interval(primary["values"], 1 - 2 * alpha)
    n = len(primary["values"])
    if primary["p_holm"] < alpha:
        verdict = "holds" if sign * primary["mean"] > 0 else "opposite"
    elif -sesoi < low and high < sesoi:
        verdict = "equivalent"
    else:
        verdict = "inconclusive"
    out = {"verdict": verdict, "n": n, "rows": rows, "tost_ci": (low, high), "needed": None}
    if verdict == "inconclusive":
        sd, mean, a = statistics.stdev(primary["values"]), primary["mean"], alpha / len(family)
        out["needed"] = min(
            smallest_n(lambda k: t_power(k, max(abs(mean), sesoi), sd, a), 0.8, 2),
            smallest_n(lambda k: tost_power(k, mean, sesoi, sd, a), 0.8, 2),
        )
    return out


CONFIRMATORY = "results/fifth"


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _label(contrast: dict[str, Any]) -> str:
    what = contrast["metric"] + (f" ({contrast['explainer']})" if contrast.get("explainer") else "")
    return f"{contrast['arm']} vs {contrast['comparator']}, {what}"


def verdict_cell(claim: dict[str, Any], root: Any) -> tuple[str, str, str, str]:
    """(verdict, primary estimate, n, cuts) of one claim: judged from its confirmatory summary when it has
    landed, else what the plan says of it."""
    status = str(claim.get("status", ""))
    if status.startswith("over cap"):  # "over cap: inconclusive — n ≈ N needed (...)": the pilot's figures beside it
        power = claim["power"]
        estimate = f"pilot (fourth edition): {power['pilot_mean']:+.3f}, SD {power['pilot_sd']:.3f}; not re-run"
        word, _, why = status.split(": ", 1)[1].partition(" — ")
        return f"**{word}** — {why}", estimate, f"{power['pilot_n']} (pilot)", "–"
    if status != "planned":
        return f"**inconclusive** — not run: {status.split(': ', 1)[-1]}", "–", "–", "–"
    path = root / CONFIRMATORY / f"{claim['study']['summary']}.json"
    if not path.exists():
        planned = f"{claim['seeds']} seeds planned, about {claim['budget']} CPU-hours"
        return f"**inconclusive** — pending: its confirmatory runs are under way ({planned})", "–", "–", "–"
    import json

    summary = json.loads(path.read_text())
    result = judge(claim, summary)
    primary = result["rows"][0]
    low, high = primary["ci"]
    m = len(claim["family"])
    estimate = (
        f"{_label(primary['contrast'])}: {primary['mean']:+.3f} [{low:+.3f}, {high:+.3f}] "
        f"({100 * (1 - claim['alpha'] / m):.1f}% CI), Holm p {_p(primary['p_holm'])}"
    )
    word = f"**{result['verdict']}**"
    if result["verdict"] == "equivalent":
        tl, th = result["tost_ci"]
        estimate += f"; 90% CI [{tl:+.3f}, {th:+.3f}] inside ±{claim['sesoi']}"
    if result["verdict"] == "inconclusive":
        word += f" — n ≈ {result['needed']} needed"
    cuts = "; ".join(summary.get("cuts", [])) or "–"
    return word, estimate, str(result["n"]), cuts


def render_plan(plan: dict[str, Any], root: Any) -> str:
    """The at-a-glance table of RESULTS.md: per claim of the plan, its verdict word, the primary estimate with its
    adjusted CI, n and the study's cuts."""
    lines = ["| claim | verdict | primary estimate [adjusted CI] | n | cuts |", "|---|---|---|---|---|"]
    for claim in plan["claims"]:
        word, estimate, n, cuts = verdict_cell(claim, root)
        lines.append(f"| {claim['statement']} (`{claim['id']}`) | {word} | {estimate} | {n} | {cuts} |")
    return "\n".join(lines) + "\n"


def exploratory(plan: dict[str, Any], root: Any) -> str:
    """The secondary contrasts of every judged claim: estimate, adjusted CI and Holm p, no verdict word."""
    import json

    lines = ["| claim | contrast | difference [adjusted CI] | Holm p | n |", "|---|---|---|---|---|"]
    for claim in plan["claims"]:
        path = root / CONFIRMATORY / f"{claim.get('study', {}).get('summary')}.json"
        if claim.get("status") != "planned" or not path.exists():
            continue
        result = judge(claim, json.loads(path.read_text()))
        for row in result["rows"][1:]:
            low, high = row["ci"]
            lines.append(
                f"| `{claim['id']}` | {_label(row['contrast'])} | {row['mean']:+.3f} [{low:+.3f}, {high:+.3f}] | "
                f"{_p(row['p_holm'])} | {len(row['values'])} |"
            )
    return "\n".join(lines) + "\n"


def _claims(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in plan["claims"]}


def cuts(plan: dict[str, Any], root: Any) -> str:
    """Every cut of the studies the plan's claims read (from the confirmatory summary once it has landed, else from
    the pilot's), one row per study."""
    import json

    lines = ["| study | claims | cuts (what differs from the paper's own setting) |", "|---|---|---|"]
    seen: dict[str, list[str]] = {}
    for claim in plan["claims"]:
        if "study" in claim:
            seen.setdefault(claim["study"]["summary"], []).append(claim)
    for name, claims in seen.items():
        confirmatory = root / CONFIRMATORY / f"{name}.json"
        pilot = claims[0].get("pilot")
        if confirmatory.exists():
            listed, extra = json.loads(confirmatory.read_text()).get("cuts", []), []
        elif pilot:
            listed = json.loads((root / pilot).read_text()).get("cuts", [])
            rerun = any(c.get("status") == "planned" for c in claims)
            extra = [
                "(the pilot's cuts; the confirmatory run's replace them when it lands)"
                if rerun
                else "(the pilot's cuts; not re-run: over the cap)"
            ]
        else:
            listed, extra = [], ["(no run yet)"]
        ids = ", ".join(f"`{c['id']}`" for c in claims)
        lines.append(f"| {name} | {ids} | {'; '.join(listed + extra) or '–'} |")
    return "\n".join(lines) + "\n"


def withdrawn(plan: dict[str, Any], root: Any) -> str:
    """The withdrawn and corrected sentences (``results/withdrawn.yaml``), each beside the current verdict of the
    plan's claim that replaces it, computed here (never typed), so the table cannot contradict the glance table."""
    import yaml

    rows = yaml.safe_load((root / "results" / "withdrawn.yaml").read_text())["withdrawn"]
    claims = _claims(plan)
    lines = ["| earlier sentence | edition | why withdrawn | now |", "|---|---|---|---|"]
    for row in rows:
        now = "–"
        if row.get("claim"):
            if row["claim"] not in claims:
                raise ValueError(f"results/withdrawn.yaml names claim {row['claim']!r}, which the plan does not have")
            now = f"`{row['claim']}`: {verdict_cell(claims[row['claim']], root)[0]}"
        lines.append(f"| {row['earlier']} | {row['edition']} | {row['why']} | {now} |")
    return "\n".join(lines) + "\n"
