"""RESULTS.md's generated blocks equal what the committed per-seed summaries give; the statistics behind them."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from results_tables import BLOCK, comparisons, holm, paired, render  # noqa: E402


def test_results_md_equals_what_the_committed_summaries_give():
    done = subprocess.run(
        [sys.executable, "benchmarks/results_tables.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    sources = [m["source"].partition("#")[0] for m in BLOCK.finditer((ROOT / "RESULTS.md").read_text())]
    assert sources and all((ROOT / s).exists() for s in sources)


def test_results_md_reads_in_five_minutes_and_every_verdict_opens_with_one_of_four_words():
    text = (ROOT / "RESULTS.md").read_text()
    assert len(text.splitlines()) <= 400
    glance = next(m["body"] for m in BLOCK.finditer(text) if m["source"] == "results/plan.yaml")
    rows = [line.split(" | ") for line in glance.splitlines()[2:]]
    assert len(rows) >= 10
    words = ("**holds**", "**opposite**", "**equivalent**", "**inconclusive**")
    assert all(row[1].startswith(words) for row in rows), [row[1][:30] for row in rows]


@pytest.mark.parametrize("damaged", ["docs/summary.json", "results/fourth/subdistill-0-2-6.md"])
def test_check_covers_the_figures_data_and_the_detail_pages(tmp_path, damaged):
    import shutil

    copy = tmp_path / "repo"
    for part in ("benchmarks", "results", "docs", "RESULTS.md"):
        (shutil.copytree if (ROOT / part).is_dir() else shutil.copyfile)(ROOT / part, copy / part)
    script = copy / "benchmarks" / "results_tables.py"
    ok = subprocess.run([sys.executable, str(script), "--check"], cwd=copy, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    target = copy / damaged
    target.write_text(target.read_text().replace("0.", "0,", 1))
    stale = subprocess.run([sys.executable, str(script), "--check"], cwd=copy, capture_output=True, text=True)
    assert stale.returncode == 1 and damaged in stale.stderr


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


def _study(**students: list[float]) -> dict:
    return {
        "seeds": [0, 1, 2, 3, 4],
        "baseline": "tsd",
        "teacher_accuracy_all": [1.0] * 5,
        "students": {name: {"saliency_spearman": values} for name, values in students.items()},
    }


def test_combined_students_are_compared_with_each_part_inside_one_holm_family():
    summary = _study(
        tsd=[0.60, 0.62, 0.61, 0.63, 0.59],
        kd=[0.20, 0.25, 0.22, 0.21, 0.24],
        kd_tsd=[0.61, 0.60, 0.64, 0.62, 0.60],
    )
    summary["pairs"] = [["kd_tsd", "kd"]]
    rows = comparisons(summary)
    assert [(r["student"], r["reference"]) for r in rows] == [("kd", "tsd"), ("kd_tsd", "tsd"), ("kd_tsd", "kd")]
    assert rows[2]["mean"] == pytest.approx(0.390) and rows[2]["verdict"] == "higher"
    assert rows[2]["p_holm"] == pytest.approx(holm([r["p"] for r in rows])[2])
    assert "| kd_tsd vs kd | alignment, own explainer | +0.390" in render(summary)


def test_a_metric_blank_on_some_seed_is_not_compared():
    summary = _study(tsd=[0.6, 0.62, 0.61, 0.63, 0.59], kd=[0.2, 0.25, 0.22, 0.21, 0.24])
    summary["students"]["tsd"]["rationale_precision"] = [float("nan")] * 5
    summary["students"]["kd"]["rationale_precision"] = [0.9] * 5
    assert [r["metric"] for r in comparisons(summary)] == ["saliency_spearman"]


def test_the_teacher_candidates_table_counts_the_seeds_that_learn_and_names_the_choice():
    row = {"set": "GunPoint", "epochs_run": 100, "best_epoch": 50}
    source = {
        "command": "tsd_teacher_seeds.py",
        "date": "2026-12-05",
        "code": "main",
        "machine": "2-core CPU",
        "teachers": [
            {**row, "seed": 0, "learns": True, "train_acc": 0.98, "val_acc": 1.0, "val_loss": 0.05, "test_acc": 0.95},
            {**row, "seed": 1, "learns": False, "train_acc": 0.5, "val_acc": 0.5, "val_loss": 0.69, "test_acc": 0.5},
            {**row, "seed": 2, "learns": True, "train_acc": 1.0, "val_acc": 1.0, "val_loss": 0.01, "test_acc": 0.93},
        ],
    }
    line = next(line for line in render(source).splitlines() if line.startswith("| GunPoint"))
    assert "2 of 3 (seeds 0, 2: training 0.980–1.000, test 0.930–0.950" in line
    assert "seed 2: validation accuracy 1.000, loss 0.01; test 0.930" in line


def test_the_cost_table_and_the_figure_come_from_the_committed_summaries_alone(tmp_path, monkeypatch):
    import results_tables

    summary = json.loads((ROOT / "results/fourth/subdistill-0-2-6.json").read_text())
    summary["fits"] = {
        "teacher": {"seconds": [60.0, 80.0], "epoch_seconds": [4.0, 4.0]},
        "student:kd": {"seconds": [30.0, 30.0], "epoch_seconds": [1.0, 1.0]},
        "student:subdistill": {"seconds": [90.0, 90.0], "epoch_seconds": [3.0, 2.0]},
    }
    (tmp_path / "results" / "fourth").mkdir(parents=True)
    (tmp_path / "results" / "fourth" / "subdistill-0-2-6.json").write_text(json.dumps(summary))
    table = results_tables.render_costs(tmp_path / "results" / "fourth")
    assert "| subdistill-0-2-6 | 5 | 6.3 | teacher | 70 | – |" in table  # (140 + 60 + 180) s = 6.3 min
    assert "|  |  |  | subdistill | 90 | 2.50x |" in table and "|  |  |  | kd | 30 | 1.00x (baseline) |" in table
    monkeypatch.setattr(results_tables, "ROOT", tmp_path)
    figure, data = results_tables.draw_figures()
    assert figure == tmp_path / "docs" / "summary.png" and figure.read_bytes()[:4] == b"\x89PNG"
    points = json.loads(data.read_text())["subdistill-0-2-6"]
    assert [s["student"] for s in points["students"]] == list(summary["students"])


def test_a_study_without_a_baseline_compares_its_pairs_on_the_metrics_it_adds():
    summary = {
        "seeds": [0, 1, 2, 3, 4],
        "baseline": None,
        "teacher_accuracy_all": [0.99] * 5,
        "also_tested": ["logit_spearman"],
        "pairs": [["small[alpha=0.5]", "small[alpha=0.0]"]],
        "students": {
            "small[alpha=0.0]": {"logit_spearman": [0.64, 0.66, 0.62, 0.65, 0.63]},
            "small[alpha=0.5]": {"logit_spearman": [0.70, 0.69, 0.67, 0.71, 0.66]},
        },
    }
    (row,) = comparisons(summary)
    assert (row["student"], row["reference"], row["metric"]) == (
        "small[alpha=0.5]",
        "small[alpha=0.0]",
        "logit_spearman",
    )
    text = render(summary)
    assert "Each pair `a vs b`" in text and "| small[alpha=0.5] vs small[alpha=0.0] | logit Spearman" in text


def test_the_own_explainer_measured_again_is_one_column_and_one_comparison(monkeypatch):
    import results_tables

    own = [0.61, 0.63, 0.60, 0.62, 0.64]
    summary = {
        **_study(tsd=[0.5, 0.52, 0.49, 0.51, 0.5], kd=own),
        "explainer_agreement": {"ig vs ig#2": [1.0] * 5, "ig vs saliency": [0.5] * 5, "ig#2 vs saliency": [0.5] * 5},
    }
    summary["baseline"] = "kd"
    for row in summary["students"].values():
        row["saliency_spearman@ig#2"] = list(row["saliency_spearman"])  # the same explainer, the same values
        row["saliency_spearman@saliency"] = [v - 0.1 for v in row["saliency_spearman"]]
    summary["also_tested"] = ["saliency_spearman@ig#2"]
    monkeypatch.setitem(results_tables.LABELS, "saliency_spearman@ig#2", "alignment, IG again")
    metrics = [row["metric"] for row in comparisons(summary)]
    text = render(summary)
    assert metrics == ["saliency_spearman", "saliency_spearman@saliency"]
    assert "alignment, IG again" not in text and "ig#2" not in text and "ig vs saliency 0.500" in text
    summary["students"]["tsd"]["saliency_spearman@ig#2"][0] += 0.01  # differs on one seed: a measurement of its own
    assert "saliency_spearman@ig#2" in [row["metric"] for row in comparisons(summary)]


def test_the_cost_table_of_a_study_without_a_baseline_is_relative_to_its_first_student(tmp_path):
    from results_tables import render_costs

    summary = {
        "seeds": [0, 1],
        "baseline": None,
        "students": {"small[alpha=0.0]": {}, "small[alpha=0.5]": {}},
        "fits": {
            "teacher": {"seconds": [10.0, 10.0], "epoch_seconds": [1.0, 1.0]},
            "student:small[alpha=0.0]": {"seconds": [4.0, 4.0], "epoch_seconds": [2.0, 2.0]},
            "student:small[alpha=0.5]": {"seconds": [5.0, 5.0], "epoch_seconds": [3.0, 3.0]},
        },
    }
    (tmp_path / "grid.json").write_text(json.dumps(summary))
    table = render_costs(tmp_path)
    assert "| small[alpha=0.0] | 4 | 1.00x (reference) |" in table and "| small[alpha=0.5] | 5 | 1.50x |" in table


def test_a_study_does_not_measure_its_own_explainer_twice():
    from reproduce import INDEPENDENT, further_explainers

    ig32 = {"explainer": "integrated_gradients", "explainer_options": {"n_steps": 32}}
    assert further_explainers(ig32, INDEPENDENT) == [{"explainer": "saliency"}]
    ig16 = {"explainer": "integrated_gradients", "explainer_options": {"n_steps": 16}}
    assert further_explainers(ig16, INDEPENDENT) == INDEPENDENT  # other settings: another measurement


def test_subdistill_is_compared_with_each_layerwise_arm_it_ran_beside():
    from reproduce import PAIRS

    pairs = PAIRS["subdistill-0-2-6"]
    assert pairs(["kd", "fitnets", "attention_transfer", "subdistill"], "kd") == [
        ["subdistill", "fitnets"],
        ["subdistill", "attention_transfer"],
    ]
    assert pairs(["kd", "subdistill"], "kd") == []  # no layer-wise arm in the run: KD is the only reference
