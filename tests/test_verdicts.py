"""benchmarks/verdicts.py: the plan's verdict rule on summaries whose outcome is known by construction."""

import math

import numpy as np
import pytest
from conftest import load_benchmark

verdicts = load_benchmark("verdicts")


def claim(direction="higher", sesoi=0.05, family=1):
    contrasts = [{"metric": "m", "arm": "a", "comparator": "b"}] + [
        {"metric": f"m{i}", "arm": "a", "comparator": "b"} for i in range(1, family)
    ]
    return {
        "id": "c",
        "alpha": 0.05,
        "sesoi": sesoi,
        "study": {"summary": "s"},
        "primary": {**contrasts[0], "direction": direction},
        "family": contrasts,
    }


def summary(differences, others=None):
    base = [0.5] * len(differences)
    students = {"a": {"m": [b + d for b, d in zip(base, differences)]}, "b": {"m": base}}
    for i, values in enumerate(others or [], start=1):
        students["a"][f"m{i}"], students["b"][f"m{i}"] = [b + d for b, d in zip(base, values)], base
    return {"students": students, "seeds": list(range(len(differences)))}


SHIFTED = (np.random.default_rng(0).normal(0, 1, 10) * 0.01).tolist()


@pytest.mark.parametrize(
    "shift, direction, expected",
    [(0.1, "higher", "holds"), (0.1, "lower", "opposite"), (-0.1, "higher", "opposite"), (0.0, "higher", "equivalent")],
)
def test_each_verdict_word_where_the_data_say_it(shift, direction, expected):
    result = verdicts.judge(claim(direction), summary([shift + d for d in SHIFTED]))
    assert result["verdict"] == expected and result["n"] == 10


def test_noisy_small_differences_are_inconclusive_with_the_seeds_they_would_need():
    noisy = (np.random.default_rng(1).normal(0.03, 0.2, 5)).tolist()
    result = verdicts.judge(claim(), summary(noisy))
    assert result["verdict"] == "inconclusive" and result["needed"] > 5


def test_holm_within_the_family_and_the_adjusted_interval():
    values = [0.04 + d for d in SHIFTED]
    alone = verdicts.judge(claim(), summary(values))
    with_others = verdicts.judge(claim(family=3), summary(values, [SHIFTED, SHIFTED]))
    assert with_others["rows"][0]["p_holm"] >= alone["rows"][0]["p_holm"]
    low, high = with_others["rows"][0]["ci"]
    from scipy.stats import t

    half = t.ppf(1 - 0.05 / 3 / 2, 9) * np.std(values, ddof=1) / math.sqrt(10)
    assert math.isclose(high - low, 2 * half)  # the Bonferroni-adjusted (1 - α/m) interval


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03, 0.2]
    assert np.allclose(verdicts.holm(p), multipletests(p, method="holm")[1])


def test_equivalence_needs_the_whole_90_percent_interval_inside_the_margin():
    wide = [0.0 + 5 * d for d in SHIFTED]  # mean near 0 but SD 0.05: the 90% CI crosses ±0.02
    assert verdicts.judge(claim(sesoi=0.02), summary(wide))["verdict"] == "inconclusive"
