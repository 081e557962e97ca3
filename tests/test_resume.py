"""Exact resume: a run killed at any step, under any budget, and run again ends bitwise equal to an uninterrupted one.

The kill points are drawn from a seeded generator and recorded here, so a failure names the step to replay. The
subprocess tests kill with SIGKILL from inside a training step (a term that kills its own process at step K),
which is the worst instant: after the last checkpoint, with a partial epoch in memory.
"""

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xdistill.data import ArrayDataset
from xdistill.engine import distill
from xdistill.methods import Method
from xdistill.models import build_model

PYTHON = sys.executable

KILL_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import numpy as np, torch
    from xdistill.data import ArrayDataset
    from xdistill.engine import distill
    from xdistill.methods import Method
    from xdistill.models import build_model

    work, kill_at, options = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])

    class KillAt(Method):  # SIGKILLs its own process when training step `kill_at` begins
        needs_teacher = False
        def transform(self, batch, state):
            if state.index == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return batch

    rng = np.random.default_rng(0)
    y = np.arange(100) % 3
    x = (rng.normal(size=(100, 2, 24)) + y[:, None, None]).astype(np.float32)
    data = ArrayDataset(x, y, ["a", "b", "c"], "blobs")
    torch.manual_seed(5)
    teacher = build_model("fcn1d", 2, 3, width=0.25)
    torch.manual_seed(0)
    student = build_model("fcn1d", 2, 3, width=0.25)
    methods = options.pop("methods")
    result = distill(teacher, student, data, methods + [KillAt()], work_dir=work, progress=False, **options)
    print(json.dumps({"epochs_trained": len(result.epoch_seconds), "epochs_run": result.metrics["epochs_run"]}))
""")

# 100 samples, 20% validation: 80 train, batch 16 -> 5 steps an epoch
BUDGETS = {
    # a steps budget ending mid-epoch (12 epochs and 1 step), a per-step schedule, the default 20% validation split
    "steps_mid_epoch": dict(
        methods=["ce"], steps=61, batch_size=16, lr=3e-3, warmup=0.1, schedule="cosine", checkpoint_seconds=0
    ),
    # a steps budget ending on an epoch boundary, with patience and a step-counted multistep schedule
    "steps_epoch_end": dict(
        methods=["ce"],
        steps=60,
        batch_size=16,
        lr=3e-3,
        patience=4,
        schedule="multistep",
        milestones=[20, 45],
        schedule_interval="step",
        checkpoint_seconds=0,
    ),
    # TSD (keyed random draws, the teacher's forward) under an epochs budget with augmentation-free series
    "epochs_tsd": dict(
        methods=["ce", {"name": "tsd", "perturbations": 5, "window": 4}],
        epochs=7,
        batch_size=16,
        lr=3e-3,
        checkpoint_seconds=0,
    ),
}


def kill_steps(seed: int, total: int, fixed: list[int], drawn: int) -> list[int]:
    """``fixed`` kill steps and ``drawn`` more from ``np.random.default_rng(seed)`` among the other steps."""
    others = np.setdiff1d(np.arange(1, total + 1), fixed)
    return sorted(fixed + np.random.default_rng(seed).choice(others, drawn, replace=False).tolist())


#: kill steps per budget: the first step, the first step of the last (partial) epoch, the last step, and seeded draws
KILLS = {
    "steps_mid_epoch": kill_steps(32, 61, [1, 61], 2),  # [1, 11, 52, 61]
    "steps_epoch_end": kill_steps(33, 60, [3], 1),
    "epochs_tsd": kill_steps(34, 35, [18], 1),
}


def run_script(script: Path, work: Path, kill_at: int, options: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, str(script), str(work), str(kill_at), json.dumps(options)], capture_output=True, text=True, timeout=600
    )


def weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("budget", sorted(BUDGETS))
def test_killed_at_seeded_random_steps_and_rerun_ends_bitwise_equal(tmp_path, budget):
    script = tmp_path / "train.py"
    script.write_text(KILL_SCRIPT)
    options = BUDGETS[budget]
    whole = run_script(script, tmp_path / "whole", 0, options)
    assert whole.returncode == 0, whole.stderr
    reference = weights(tmp_path / "whole" / "student.safetensors")
    for kill_at in KILLS[budget]:
        work = tmp_path / f"killed-{kill_at}"
        killed = run_script(script, work, kill_at, options)
        assert killed.returncode == -signal.SIGKILL, f"step {kill_at} was never reached: {killed.stderr[-500:]}"
        again = run_script(script, work, 0, options)
        assert again.returncode == 0, again.stderr
        difference = max_difference(reference, weights(work / "student.safetensors"))
        assert difference == 0.0, f"{budget}: killed at step {kill_at}, resumed to max |dw| = {difference}"
        logged = (work / "logs").rglob("metrics.csv")
        for log in logged:  # the resumed log continues the step counter: no epoch replayed, no step shifted
            rows = [line.split(",")[:2] for line in log.read_text().splitlines()[1:]]
            epochs = [int(epoch) for epoch, _ in rows]
            assert epochs == sorted(set(epochs)), f"an epoch was logged twice after the kill at {kill_at}: {epochs}"


class CrashAt(Method):
    """Raises at the start of training step ``step``: the on-disk state is what a kill there would leave."""

    needs_teacher = False

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def transform(self, batch, state):
        if state.index == self.step:
            raise RuntimeError(f"crash at step {self.step}")
        return batch


def _train(work: Path, steps: int, batch_size: int, crash_at: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(1)
    y = np.arange(37) % 2
    x = (rng.normal(size=(37, 1, 12)) + y[:, None, None]).astype(np.float32)
    torch.manual_seed(0)
    student = build_model("fcn1d", 1, 2, width=0.125)
    methods: list = ["ce"] + ([CrashAt(crash_at)] if crash_at else [])
    result = distill(
        None,
        student,
        ArrayDataset(x, y, ["a", "b"], "tiny"),
        methods,
        steps=steps,
        batch_size=batch_size,
        lr=1e-2,
        val_fraction=0,
        monitor="train_loss",
        checkpoint_seconds=0,
        work_dir=str(work),
        progress=False,
        loggers=(),
    )
    return {k: v.clone() for k, v in result.student.state_dict().items()}


@settings(max_examples=8, deadline=None, derandomize=True)
@given(
    steps=st.integers(min_value=2, max_value=14),
    batch_size=st.sampled_from([4, 7, 16, 37]),
    kill_fraction=st.floats(min_value=0.0, max_value=1.0),
)
def test_property_any_budget_batch_size_and_kill_step_resumes_exactly(
    tmp_path_factory, steps, batch_size, kill_fraction
):
    root = tmp_path_factory.mktemp("property")
    crash_at = 1 + int(kill_fraction * (steps - 1))
    reference = _train(root / "whole", steps, batch_size)
    with pytest.raises(RuntimeError, match="crash at step"):
        _train(root / "crashed", steps, batch_size, crash_at)
    resumed = _train(root / "crashed", steps, batch_size)
    difference = max_difference(reference, resumed)
    assert difference == 0.0, f"steps {steps}, batch {batch_size}, crash at {crash_at}: max |dw| = {difference}"


def test_a_steps_budget_runs_exactly_that_many_optimiser_steps(tmp_path):
    """The budget is enforced by the engine (not Lightning's max_steps): the last epoch is cut at the budget."""
    seen: list[int] = []

    class Count(Method):
        needs_teacher = False

        def transform(self, batch, state):
            seen.append(state.index)
            return batch

    rng = np.random.default_rng(0)
    y = np.arange(30) % 2
    data = ArrayDataset(rng.normal(size=(30, 1, 8)).astype(np.float32), y, ["a", "b"], "d")
    result = distill(
        None,
        build_model("fcn1d", 1, 2, width=0.125),
        data,
        ["ce", Count()],
        steps=9,
        batch_size=8,
        val_fraction=0,
        monitor="train_loss",
        work_dir=str(tmp_path),
        progress=False,
        loggers=(),
    )
    assert seen == list(range(1, 10))  # 4 batches an epoch: 2 full epochs and 1 step of the third
    assert result.metrics["epochs_run"] == 3


# -- through the command line, on a recipe -------------------------------------------------------------------------

KILLABLE_MODEL = textwrap.dedent("""
    import os, signal, time
    from torch import nn
    from xdistill.models import build_model

    calls = [0]

    class KillableFCN(nn.Module):
        \"\"\"fcn1d; SIGKILLs its process at the KILL_AT-th training-mode forward of this process (teacher and student
        counted together), sleeping SLEEP seconds per training forward.\"\"\"

        def __init__(self, in_channels, num_classes, width=0.25):
            super().__init__()
            self.net = build_model("fcn1d", in_channels, num_classes, width=width)

        def forward(self, x):
            if self.training:
                calls[0] += 1
                if calls[0] == int(os.environ.get("KILL_AT", "0")):
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(float(os.environ.get("SLEEP", "0")))
            return self.net(x)
""")


def killable_recipe(tmp_path: Path, teacher_steps: int, student_steps: int, training: dict) -> Path:
    import yaml

    from xdistill.recipe import default_recipe_path

    (tmp_path / "killable.py").write_text(KILLABLE_MODEL)
    data = yaml.safe_load(default_recipe_path().read_text())
    data.pop("seeds")
    data["teacher"] = {"model": "killable:KillableFCN", "options": {"width": 0.25}, "train": {"steps": teacher_steps}}
    data["training"] = {"steps": student_steps, **training}
    data["students"] = [
        {"name": "kd", "model": "killable:KillableFCN", "options": {"width": 0.125}, "methods": ["hinton"]}
    ]
    data["evaluation"] = {"explainer": "saliency", "max_samples": 10, "examples": 0, "flip_steps": 0}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(recipe: Path, out: Path, kill_at: int = 0, sleep: float = 0.0) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "KILL_AT": str(kill_at), "SLEEP": str(sleep)}
    return subprocess.run(
        [PYTHON, "-m", "xdistill", "run", str(recipe), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=recipe.parent,
    )


def assert_same_run(a: Path, b: Path, note: str) -> None:
    for part in ("teacher/teacher.safetensors", "students/kd/student.safetensors"):
        difference = max_difference(weights(a / part), weights(b / part))
        assert difference == 0.0, f"{note}: {part} max |dw| = {difference}"


@pytest.mark.slow
def test_a_study_killed_at_seeded_training_steps_resumes_bitwise_through_the_cli(tmp_path):
    """GunPoint: 50 training series, batch 16 -> 4 steps an epoch; the teacher's 30 steps and the student's 21
    both end mid-epoch. Kills land at training forwards 1..51 of the process (teacher 1-30, student 31-51)."""
    recipe = killable_recipe(tmp_path, 30, 21, {"checkpoint_seconds": 0})
    whole = run_cli(recipe, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    kills = kill_steps(35, 51, [2, 29, 31, 50], 2)  # teacher's first epoch and last partial one, the student's
    for kill_at in kills:
        out = tmp_path / f"killed-{kill_at}"
        killed = run_cli(recipe, out, kill_at)
        assert killed.returncode == -signal.SIGKILL, f"forward {kill_at} never came: {killed.stderr[-400:]}"
        again = run_cli(recipe, out)
        assert again.returncode == 0, again.stderr
        assert_same_run(tmp_path / "whole", out, f"killed at training forward {kill_at}")


@pytest.mark.slow
def test_a_study_killed_after_a_checkpoint_at_default_settings_resumes_bitwise(tmp_path):
    """Default checkpoint settings (every epoch, at most one per 10 s): the teacher sleeps 0.15 s a step, so its
    100 steps (25 epochs) take about 15 s; killed at step 90, after the first timed checkpoint, it resumes from
    it (not from scratch) and ends as an uninterrupted run."""
    recipe = killable_recipe(tmp_path, 100, 5, {})
    whole = run_cli(recipe, tmp_path / "whole", sleep=0.15)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "killed"
    killed = run_cli(recipe, out, kill_at=90, sleep=0.15)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-400:]
    from xdistill.checkpoint import load_tree

    resumed_from = load_tree(out / "teacher" / "checkpoints" / "last.safetensors")["epoch"] + 1
    assert 0 < resumed_from < 25
    again = run_cli(recipe, out, sleep=0.15)
    assert again.returncode == 0, again.stderr
    assert_same_run(tmp_path / "whole", out, "killed at teacher step 90")
