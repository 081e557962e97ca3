"""benchmarks/plan_power.py: the power functions against statsmodels and a simulation, and the committed plan's
seeds and budgets against what its pilot data give."""

import math

import numpy as np
import pytest
from conftest import load_benchmark

power = load_benchmark("plan_power")


@pytest.mark.parametrize("n, effect, sd, alpha", [(5, 0.1, 0.05, 0.05), (12, 0.03, 0.06, 0.025), (30, 0.2, 0.5, 0.01)])
def test_t_power_equals_statsmodels(n, effect, sd, alpha):
    from statsmodels.stats.power import TTestPower

    reference = TTestPower().power(effect_size=effect / sd, nobs=n, alpha=alpha, alternative="two-sided")
    assert math.isclose(power.t_power(n, effect, sd, alpha), reference, abs_tol=1e-9)


@pytest.mark.parametrize("n, true, margin, sd", [(8, 0.0, 0.05, 0.04), (20, 0.01, 0.05, 0.06), (6, -0.005, 0.02, 0.01)])
def test_tost_power_matches_a_simulation(n, true, margin, sd):
    rng = np.random.default_rng(0)
    from scipy.stats import t

    d = rng.normal(true, sd, size=(40_000, n))
    mean, se = d.mean(1), d.std(1, ddof=1) / math.sqrt(n)
    critical = t.ppf(0.95, n - 1)
    simulated = float(np.mean(((mean + margin) / se > critical) & ((mean - margin) / se < -critical)))
    assert abs(power.tost_power(n, true, margin, sd, 0.05) - simulated) < 0.01


def test_the_conservative_sd_is_the_upper_80_percent_bound():
    from scipy.stats import chi2

    rng = np.random.default_rng(1)
    samples = rng.normal(0, 1.0, size=(40_000, 5)).std(1, ddof=1)
    bounds = np.array([power.sd_upper(s, 5, 0.8) for s in samples[:4000]])
    assert abs(np.mean(bounds >= 1.0) - 0.8) < 0.02  # covers the true SD 80% of the time
    assert math.isclose(power.sd_upper(2.0, 5), 2.0 * math.sqrt(4 / chi2.ppf(0.2, 4)))


def test_seeds_are_the_smallest_n_reaching_the_target():
    n = power.smallest_n(lambda k: power.t_power(k, 0.1, 0.1, 0.05), 0.8, 2)
    assert power.t_power(n, 0.1, 0.1, 0.05) >= 0.8 > power.t_power(n - 1, 0.1, 0.1, 0.05)


def test_the_committed_plan_matches_its_pilot_data():
    import yaml

    plan = yaml.safe_load(power.PLAN.read_text())
    assert power.planned(plan) == plan, "results/plan.yaml is stale: run benchmarks/plan_power.py --write"
    for claim in plan["claims"]:
        if claim.get("power"):
            assert claim["primary"] == {**claim["family"][0], "direction": claim["primary"]["direction"]}
