"""Seeds and CPU-hours for each claim of ``results/plan.yaml``, computed from the pilot data before any
confirmatory run.

For each claim: the pilot is a committed fourth-edition summary; its paired differences (arm − comparator, per
seed) on the primary metric give the pilot mean and SD. The SD used for planning is conservative: the upper
bound of its one-sided 80% confidence interval, ``s·sqrt((n−1) / χ²_{0.2, n−1})``. The α is the claim's α split
over its family (Holm's first step: α/m). Two designs can settle a claim, and the plan takes the cheaper:

- **difference** (verdict *holds* or *opposite*): the two-sided paired t-test's power (noncentral t) to detect
  ``max(|pilot mean|, sesoi)``;
- **equivalence** (verdict *equivalent*): TOST's power with margin ±sesoi when the true difference is the pilot
  mean (the usual approximation: both one-sided tests' powers from noncentral t's, their overlap ignored).

``seeds`` is the smallest n ≥ ``min_seeds`` reaching 80% power (``rules.power``). A claim whose seeds exceed the
cap, or whose budget does not fit in what is left of the total cap after the cheaper claims, is marked
``over cap`` and reads "inconclusive — n ≈ N needed". Budget = pilot seconds per seed of the teacher and the arms
that run (fit time × ``rules.overhead`` for evaluation and start-up, × a claim's ``epochs_factor`` when it runs a
longer budget than its pilot), × seeds.

    .venv/bin/python benchmarks/plan_power.py            # print the table
    .venv/bin/python benchmarks/plan_power.py --write    # write seeds, budget and the power block into the plan
    .venv/bin/python benchmarks/plan_power.py --check    # exit 1 when the plan's numbers differ from the pilot's

``tests/test_plan_power.py`` checks the power functions against statsmodels and a simulation.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "results" / "plan.yaml"
LARGEST = 2000


# -- power ---------------------------------------------------------------------------------------------------------
def sd_upper(sd: float, n: int, level: float = 0.8) -> float:
    """The upper bound of the one-sided ``level`` confidence interval of a normal SD estimated from n values."""
    from scipy.stats import chi2

    return sd * math.sqrt((n - 1) / chi2.ppf(1 - level, n - 1))


def t_power(n: int, effect: float, sd: float, alpha: float) -> float:
    """Power of the two-sided paired (one-sample) t-test at ``alpha`` with n pairs, true mean ``effect``."""
    from scipy.stats import nct, t

    if sd == 0:
        return 1.0 if effect != 0 else alpha
    df, shift = n - 1, effect / (sd / math.sqrt(n))
    critical = t.ppf(1 - alpha / 2, df)
    return float(nct.sf(critical, df, shift) + nct.cdf(-critical, df, shift))


def tost_power(n: int, true: float, margin: float, sd: float, alpha: float) -> float:
    """Power of TOST (two one-sided paired t-tests at ``alpha``, equivalence bounds ±margin) when the true mean
    difference is ``true``: P(lower test rejects) − P(upper test fails), from noncentral t's (0 when negative)."""
    from scipy.stats import nct, t

    if abs(true) >= margin:
        return 0.0
    if sd == 0:
        return 1.0
    df, se = n - 1, sd / math.sqrt(n)
    critical = t.ppf(1 - alpha, df)
    lower = nct.sf(critical, df, (true + margin) / se)  # H0: d <= -margin rejected
    upper_fails = nct.sf(-critical, df, (true - margin) / se)  # H0: d >= +margin not rejected
    return max(0.0, float(lower - upper_fails))


def smallest_n(power, target: float, floor: int) -> int:
    """The smallest n >= floor with power(n) >= target (``LARGEST + 1`` when none up to LARGEST)."""
    for n in range(max(floor, 2), LARGEST + 1):
        if power(n) >= target:
            return n
    return LARGEST + 1


# -- the pilot -----------------------------------------------------------------------------------------------------
def summary_key(metric: str, explainer: str | None, own: str | None) -> str:
    """The key of a metric in a study summary: the own explainer's alignment is plain, another's is ``m@explainer``."""
    if explainer is None or explainer == own:
        return metric
    return f"{metric}@{explainer}"


def pilot_differences(claim: dict[str, Any]) -> list[float]:
    primary, study = claim["primary"], claim["study"]
    data = json.loads((ROOT / claim["pilot"]).read_text())
    key = summary_key(primary["metric"], primary.get("explainer"), study.get("own_explainer"))
    arm, comparator = data["students"][primary["arm"]][key], data["students"][primary["comparator"]][key]
    return [a - b for a, b in zip(arm, comparator)]


def pilot_seconds(claim: dict[str, Any], rules: dict[str, Any]) -> float:
    """CPU seconds per seed: the pilot's fit seconds of the teacher and the arms that run, with the overheads."""
    study = claim["study"]
    if "seconds_per_seed" in study:
        return float(study["seconds_per_seed"])
    fits = json.loads((ROOT / claim["pilot"]).read_text())["fits"]

    def mean(name: str) -> float:
        values = [v for v in fits.get(name, {}).get("seconds", []) if v is not None]
        return statistics.fmean(values) if values else 0.0

    students = sum(mean(f"student:{arm}") for arm in study["arms"]) * float(study.get("epochs_factor", 1.0))
    return (mean("teacher") + students) * float(rules["overhead"])


def power_block(claim: dict[str, Any], rules: dict[str, Any]) -> dict[str, Any]:
    """The claim's planning figures from its pilot."""
    differences = pilot_differences(claim)
    n = len(differences)
    mean, sd = statistics.fmean(differences), statistics.stdev(differences)
    conservative = sd_upper(sd, n, rules["sd_level"])
    alpha = claim["alpha"] / len(claim["family"])
    sesoi, target, floor = claim["sesoi"], rules["power"], rules["min_seeds"]
    effect = max(abs(mean), sesoi)
    n_difference = smallest_n(lambda k: t_power(k, effect, conservative, alpha), target, floor)
    n_equivalence = smallest_n(lambda k: tost_power(k, mean, sesoi, conservative, alpha), target, floor)
    # a tie goes to the outcome the pilot points at: equivalence when its mean lies inside ±sesoi
    equivalence_first = n_equivalence < n_difference or (n_equivalence == n_difference and abs(mean) < sesoi)
    design = "equivalence" if equivalence_first else "difference"
    return {
        "pilot_n": n,
        "pilot_mean": round(mean, 4),
        "pilot_sd": round(sd, 4),
        "sd_planned": round(conservative, 4),
        "alpha_adjusted": round(alpha, 4),
        "n_difference": n_difference,
        "n_equivalence": n_equivalence,
        "design": design,
    }


def planned(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan with every claim's ``power``, ``seeds``, ``budget`` and ``status`` filled from its pilot; within
    the total cap, claims are funded cheapest first (a study shared by claims is paid once)."""
    rules = plan["rules"]
    out = json.loads(json.dumps(plan))
    for claim in out["claims"]:
        if "pilot" not in claim:
            claim.update(seeds=None, budget=None, status="not planned: " + claim["no_pilot"])
            continue
        claim["power"] = power_block(claim, rules)
        needed = min(claim["power"]["n_difference"], claim["power"]["n_equivalence"])
        claim["seeds"] = needed
        claim["budget"] = round(needed * pilot_seconds(claim, rules) / 3600, 2)
    funded: dict[str, float] = {}  # study -> the CPU-hours already committed to it
    spent = 0.0
    for claim in sorted((c for c in out["claims"] if c.get("power")), key=lambda c: c["budget"]):
        name, seeds = claim["study"]["summary"], claim["seeds"]
        extra = max(0.0, claim["budget"] - funded.get(name, 0.0))
        if seeds > rules["max_seeds"]:
            claim["status"] = f"over cap: inconclusive — n ≈ {seeds} needed (cap {rules['max_seeds']} seeds)"
        elif spent + extra > rules["cpu_hours"]:
            claim["status"] = f"over cap: inconclusive — n ≈ {seeds} needed ({claim['budget']} CPU-hours left unfunded)"
        else:
            claim["status"] = "planned"
            spent += extra
            funded[name] = max(funded.get(name, 0.0), claim["budget"])
    out["total_cpu_hours"] = round(spent, 2)
    return out


def rows(plan: dict[str, Any]) -> list[str]:
    lines = [
        f"{'claim':28s} {'pilot Δ':>8s} {'SD→plan':>13s} {'α adj':>6s} {'n diff':>6s} {'n eq':>6s} "
        f"{'seeds':>5s} {'h':>6s}  status"
    ]
    for c in plan["claims"]:
        p = c.get("power")
        if not p:
            lines.append(f"{c['id']:28s} {c['status']}")
            continue
        lines.append(
            f"{c['id']:28s} {p['pilot_mean']:+8.3f} {p['pilot_sd']:6.3f}→{p['sd_planned']:6.3f} {p['alpha_adjusted']:6.3f} "
            f"{p['n_difference']:6d} {p['n_equivalence']:6d} {c['seeds']:5d} {c['budget']:6.2f}  {c['status']}"
        )
    lines.append(f"total funded: {plan['total_cpu_hours']} CPU-hours (cap {plan['rules']['cpu_hours']})")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default=str(PLAN))
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the computed figures into the plan")
    mode.add_argument("--check", action="store_true", help="exit 1 when the plan's figures differ from the pilot's")
    args = parser.parse_args()
    path = Path(args.plan)
    plan = yaml.safe_load(path.read_text())
    result = planned(plan)
    print("\n".join(rows(result)))
    if args.write:
        path.write_text(yaml.safe_dump(result, sort_keys=False, allow_unicode=True, width=110))
    if args.check and result != plan:
        print(f"{path}: its seeds/budget/power differ from what the pilot data give; run with --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
