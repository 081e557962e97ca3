"""Exact resume with the bundled recipes' own students: a real ``xdistill run`` is SIGKILLed right after the first
checkpoint of the teacher and of every student in turn (each a term with state of its own: TSD's teacher bank, the
IG store, SubDistill's basis, REKD's annealed temperature, FitNets' and AT's regressors, augmentation streams), run
again after each kill, and ends with weights and evaluation bitwise equal to an uninterrupted run's; its log says
which fit resumed from where, and each resumed fit's curve covers every epoch once.

The studies (``benchmarks/kill_harness.py``, which also kills them at random times) keep each recipe's students,
terms and term options as shipped (a ``bank:``, ``K``, ``lam``, ``p``, layers) at budgets of tens of steps.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import load_benchmark

harness = load_benchmark("kill_harness")


def kill_after_first_checkpoint(recipe: Path, out: Path, work: Path) -> bool:
    """Run until ``work``'s first checkpoint appears, then SIGKILL; False when the run ended first."""
    checkpoint = work / "checkpoints" / "last.safetensors"
    process = subprocess.Popen(
        harness.command(recipe, out), cwd=recipe.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 900
    while not checkpoint.exists():
        if process.poll() is not None:
            assert process.returncode == 0, (process.stderr.read() if process.stderr else "")[-2000:]
            return False
        assert time.time() < deadline, f"no checkpoint in {work} after 900 s"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    if process.stderr is not None:
        process.stderr.close()
    return True


def epochs_logged(work: Path) -> list[int]:
    """The epochs of the newest CSV log of a fit (a resumed fit writes a new version, starting from epoch 1)."""
    logs = sorted(work.glob("logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    rows = [line.split(",") for line in logs[-1].read_text().splitlines()]
    column = rows[0].index("epoch")
    return [int(float(row[column])) for row in rows[1:] if row[column]]


@pytest.mark.slow
@pytest.mark.parametrize("study", sorted(harness.STUDIES))
def test_killed_after_each_first_checkpoint_and_rerun_ends_bitwise_equal(tmp_path, study):
    if study in harness.NEEDS_FASHION and not harness.FASHION.exists():
        pytest.skip("needs the Debian package dataset-fashion-mnist")
    data = harness.STUDIES[study]()
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(data))
    names = [s["name"] for s in data["students"]]
    harness.run_to_end(recipe, tmp_path / "whole")

    out = tmp_path / "killed"
    works = harness.fits(out, names)
    killed = [work.name for work in works if kill_after_first_checkpoint(recipe, out, work)]
    assert len(killed) == len(works), f"only {killed} were killed: a budget ends before its first checkpoint"
    harness.run_to_end(recipe, out)

    differ = harness.differences(tmp_path / "whole", out, names)
    assert not differ, f"{study}: {differ[:5]} differ after the kills"
    log = (out / "log.txt").read_text()
    for work in works:
        who = "teacher" if work.name == "teacher" else f"student {work.name}"
        assert f"{who}: resumed from epoch " in log, f"the log never says that {who} resumed"
        epochs = epochs_logged(work)  # the resumed fit's curve covers every epoch, once
        whole = epochs_logged(tmp_path / "whole" / work.relative_to(out))
        assert epochs == list(range(len(epochs))) and len(epochs) == len(whole), (who, epochs, whole)
