"""RESULTS.md's generated blocks equal what the committed per-seed summaries give; the statistics behind them."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from results_tables import BLOCK, holm, paired, render  # noqa: E402


def test_results_md_equals_what_the_committed_summaries_give():
    done = subprocess.run(
        [sys.executable, "benchmarks/results_tables.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    sources = [m["source"] for m in BLOCK.finditer((ROOT / "RESULTS.md").read_text())]
    assert sources and all((ROOT / s).exists() for s in sources)


def test_a_changed_summary_changes_the_block():
    summary = json.loads((ROOT / "results/fourth/subdistill-0-2-6.json").read_text())
    before = render(summary)
    summary["students"]["subdistill"]["student_accuracy_all"][0] += 0.01
    assert render(summary) != before


def test_holm_matches_its_definition():
    # p sorted: 0.01, 0.02, 0.04 (m = 3): 0.03, max(0.03, 0.04) = 0.04, max(0.04, 0.04) = 0.04
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_the_paired_interval_and_p_agree_with_scipy():
    from scipy.stats import t, ttest_rel

    a, b = [0.80, 0.82, 0.81, 0.79, 0.83], [0.75, 0.78, 0.74, 0.76, 0.77]
    result = paired(a, b)
    d = [x - y for x, y in zip(a, b)]
    mean, sd = sum(d) / 5, (sum((v - sum(d) / 5) ** 2 for v in d) / 4) ** 0.5
    assert result["mean"] == pytest.approx(mean)
    assert result["high"] - result["mean"] == pytest.approx(t.ppf(0.975, 4) * sd / math.sqrt(5))
    assert result["p"] == pytest.approx(ttest_rel(a, b).pvalue)
    assert result["low"] > 0  # a clear difference: the interval excludes 0


def test_ten_seeds_also_report_each_half_as_a_run_of_its_own():
    """The between-run spread: the same comparison on seeds 0-4 and 5-9 separately, each its own paired test."""
    gains = [0.10, 0.12, 0.08, 0.11, 0.09, 0.30, 0.25, 0.28, 0.35, 0.27]
    base = [0.5 + 0.01 * i for i in range(10)]
    summary = {
        "seeds": list(range(10)),
        "baseline": "no_kd",
        "teacher_accuracy_all": [1.0] * 10,
        "students": {
            "no_kd": {"saliency_spearman@saliency": base},
            "tsd": {"saliency_spearman@saliency": [b + g for b, g in zip(base, gains)]},
        },
    }
    text = render(summary)
    assert "Between runs: each difference on seeds 0–4 and on seeds 5–9 alone" in text
    row = next(line for line in text.splitlines() if line.startswith("| tsd | alignment, gradient saliency | +0.100"))
    second = paired(summary["students"]["tsd"]["saliency_spearman@saliency"][5:], base[5:])
    assert f"{second['mean']:+.3f}" == "+0.290" and "+0.290" in row
    assert "Between runs" not in render({**summary, "seeds": list(range(9))})  # fewer than 10 seeds: no halves
