"""benchmarks/gpu.py, the one command for a lent GPU, runs end to end on the CPU at a tiny budget: it cannot rot."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_command_runs_every_part_at_a_tiny_budget(tmp_path):
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu.py", "--tiny", "--device", "cpu", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["placement"]["placement"]["returncode"] == 0, report["placement"]
    assert all(report["precision"][family]["finite"] for family in ("series", "images", "tokens")), report["precision"]
    overhead = report["throughput"]["engine_vs_plain_loop"]["settings"]
    assert {"ce", "ce+val"} <= set(overhead) and all(s["ratio_median"] > 0 for s in overhead.values())
    assert [case["case"] for case in report["throughput"]["integrated_gradients"]]
    kdig = report["kdig"]
    assert kdig["returncode"] == 0, kdig
    assert set(kdig["seeds"]["0"]) == {"kd_ig_p_0.0", "kd_ig_p_0.1"}
    assert all(0 <= s["accuracy"] <= 1 for s in kdig["seeds"]["0"].values())
