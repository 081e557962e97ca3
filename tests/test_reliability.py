"""Nothing lost, nothing silent: runs really killed (SIGKILL, Ctrl-C) and resumed, locks, bad input refused."""

import io
import json
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from xdistill.checkpoint import CheckpointError, load_tree, load_weights
from xdistill.data import ArrayDataset
from xdistill.engine import distill
from xdistill.files import LockedError
from xdistill.methods import Method
from xdistill.models import build_model
from xdistill.recipe import default_recipe_path
from xdistill.store import AttributionStore, CorruptStoreError

PYTHON = sys.executable

TRAIN_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np, torch
    from xdistill.data import ArrayDataset
    from xdistill.engine import distill
    from xdistill.methods import Method
    from xdistill.models import build_model

    class Slow(Method):  # the user's own code: makes each step take a moment, so a kill lands mid-run
        needs_teacher = False
        def on_step(self, step, total):
            time.sleep(0.01)

    rng = np.random.default_rng(0)
    y = np.arange(96) % 3
    x = rng.normal(size=(96, 2, 24)) + y[:, None, None]
    data = ArrayDataset(x, y, ["a", "b", "c"], "blobs")
    torch.manual_seed(0)
    model = build_model("fcn1d", 2, 3, width=0.25)
    result = distill(None, model, data, ["ce", Slow()], epochs=int(sys.argv[2]), batch_size=8, lr=3e-3,
                     checkpoint_seconds=0, work_dir=sys.argv[1], progress=False, loggers=())
    print(json.dumps({"epochs_trained": len(result.epoch_seconds)}))
""")


def wait_for(condition, timeout: float = 120.0, process: subprocess.Popen | None = None) -> None:
    start = time.time()
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended before the condition held: {process.stderr.read()}")
        if time.time() - start > timeout:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def checkpointed_epochs(path: Path) -> int:
    try:
        return load_tree(path)["epoch"] + 1
    except (CheckpointError, FileNotFoundError, KeyError):
        return 0


@pytest.mark.slow
def test_distill_killed_mid_training_resumes_from_the_last_epoch_and_ends_as_an_uninterrupted_run(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    epochs = 8
    whole = subprocess.run(
        [PYTHON, str(script), str(tmp_path / "whole"), str(epochs)], capture_output=True, text=True, timeout=600
    )
    assert whole.returncode == 0, whole.stderr
    assert json.loads(whole.stdout.splitlines()[-1])["epochs_trained"] == epochs

    work = tmp_path / "killed"
    process = subprocess.Popen(
        [PYTHON, str(script), str(work), str(epochs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    last = work / "checkpoints" / "last.safetensors"
    wait_for(lambda: checkpointed_epochs(last) >= 3, process=process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    from xdistill.engine import resume_checkpoint

    # the checkpoint a resume picks (a kill between the two renames leaves last missing and next complete)
    done = checkpointed_epochs(resume_checkpoint(work / "checkpoints"))
    assert 3 <= done < epochs
    again = subprocess.run([PYTHON, str(script), str(work), str(epochs)], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.splitlines()[-1])["epochs_trained"] == epochs - done  # only what was missing
    model_a, model_b = build_model("fcn1d", 2, 3, width=0.25), build_model("fcn1d", 2, 3, width=0.25)
    load_weights(model_a, tmp_path / "whole" / "student.safetensors")
    load_weights(model_b, work / "student.safetensors")
    for (name, a), (_, b) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path):
    data = ArrayDataset(np.random.default_rng(0).normal(size=(40, 1, 16)), np.arange(40) % 2, ["a", "b"], "d")
    torch.manual_seed(0)
    distill(
        None,
        build_model("fcn1d", 1, 2, width=0.125),
        data,
        ["ce"],
        epochs=3,
        work_dir=tmp_path,
        progress=False,
        loggers=(),
        checkpoint_seconds=0,
    )
    last = tmp_path / "checkpoints" / "last.safetensors"
    last.write_bytes(last.read_bytes()[:100])  # cut off, as a kill during a copy would leave it
    with pytest.raises(CheckpointError, match=r"last.safetensors is damaged \(truncated or corrupt"):
        load_tree(last)
    result = distill(
        None,
        build_model("fcn1d", 1, 2, width=0.125),
        data,
        ["ce"],
        epochs=4,
        work_dir=tmp_path,
        progress=False,
        loggers=(),
        checkpoint_seconds=0,
    )
    assert len(result.epoch_seconds) == 2  # resumed from previous.safetensors (epoch 2), trained epochs 3 and 4
    weights = tmp_path / "student.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])
    with pytest.raises(CheckpointError, match=r"student.safetensors is damaged \(truncated or corrupt"):
        load_weights(build_model("fcn1d", 1, 2, width=0.125), weights)


STORE_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    from xdistill.store import AttributionStore
    calls = []
    def explain_chunk(start, end):
        calls.append(start)
        time.sleep(0.15)
        return torch.arange(start, end, dtype=torch.float32)[:, None].repeat(1, 3) * 0.5
    store = AttributionStore.create(sys.argv[1], {"teacher": "t"}, 40, (3,), chunk_size=4)
    store.compute(explain_chunk, progress=False)
    print(len(calls))
""")


def chunks_done(manifest: Path) -> int:
    """How many chunks a store's manifest records as finished (0 while it is missing or being replaced)."""
    try:
        return len(json.loads(manifest.read_text())["done"])
    except (FileNotFoundError, ValueError):
        return 0


def test_precompute_killed_mid_store_keeps_finished_chunks(tmp_path):
    script = tmp_path / "store.py"
    script.write_text(STORE_SCRIPT)
    root = tmp_path / "store"
    process = subprocess.Popen(
        [PYTHON, str(script), str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    manifest = root / "manifest.json"
    wait_for(lambda: chunks_done(manifest) >= 3, process=process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = chunks_done(manifest)
    assert 3 <= done < 10
    again = subprocess.run([PYTHON, str(script), str(root)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert int(again.stdout.strip()) == 10 - done  # only the missing chunks were computed
    store = AttributionStore(root, {"teacher": "t"}, 40, (3,), chunk_size=4)
    assert np.array_equal(store.maps(), np.arange(40, dtype=np.float32)[:, None].repeat(3, 1) * 0.5)


def test_a_store_being_filled_by_another_process_is_refused(tmp_path):
    script = tmp_path / "store.py"
    script.write_text(STORE_SCRIPT)
    root = tmp_path / "store"
    process = subprocess.Popen(
        [PYTHON, str(script), str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(lambda: chunks_done(root / "manifest.json") >= 1, process=process)  # inside compute, lock held
    try:
        store = AttributionStore.create(root, {"teacher": "t"}, 40, (3,), chunk_size=4)
        with pytest.raises(
            LockedError, match=rf"attribution store .* in use by another xdistill process \(pid {process.pid}\)"
        ):
            store.compute(lambda s, e: torch.zeros(e - s, 3), progress=False)
        with pytest.raises(LockedError, match="in use by another xdistill process"):
            AttributionStore.create(root, {"teacher": "t"}, 40, (3,), chunk_size=4, overwrite=True)
        assert (root / "maps.npy").exists()  # nothing deleted under the running process
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    store = AttributionStore.create(root, {"teacher": "t"}, 40, (3,), chunk_size=4)  # the dead holder's lock is stale
    store.compute(lambda s, e: torch.arange(s, e, dtype=torch.float32)[:, None].repeat(1, 3) * 0.5, progress=False)
    assert np.array_equal(store.maps(), np.arange(40, dtype=np.float32)[:, None].repeat(3, 1) * 0.5)


def test_a_corrupt_store_is_one_clear_error(tmp_path):
    store = AttributionStore.create(tmp_path, {"t": 1}, 8, (2,), chunk_size=4)
    store.compute(lambda s, e: torch.zeros(e - s, 2), progress=False)
    (tmp_path / "manifest.json").write_text('{"identity": ')
    with pytest.raises(CorruptStoreError, match=r"manifest.json is truncated or corrupt .* delete the folder"):
        AttributionStore(tmp_path, {"t": 1}, 8, (2,), chunk_size=4)


def small_recipe(tmp_path: Path, student_steps: int = 400) -> Path:
    data = yaml.safe_load(default_recipe_path().read_text())
    data.pop("seeds")  # one run
    data["teacher"]["train"] = {"steps": 30}
    data["training"] = {"steps": student_steps, "checkpoint_seconds": 0}
    data["students"] = [
        {
            "name": "slow",
            "model": "fcn1d",
            "options": {"width": 0.125},
            "methods": ["ce", {"name": "tsd", "perturbations": 30, "window": 10}],
        }
    ]
    data["evaluation"]["max_samples"] = 20
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "xdistill", *args], capture_output=True, text=True, timeout=900, **kwargs)


@pytest.mark.slow
def test_study_killed_mid_student_resumes_it_and_refuses_a_concurrent_run(tmp_path):
    recipe, out = small_recipe(tmp_path), tmp_path / "run"
    process = subprocess.Popen(
        [PYTHON, "-m", "xdistill", "run", str(recipe), "--out", str(out), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = out / "students" / "slow" / "checkpoints" / "last.safetensors"
    wait_for(lambda: checkpointed_epochs(last) >= 2, process=process)
    second = cli("run", str(recipe), "--out", str(out), "--quiet")  # launched while the first is running
    assert second.returncode == 2  # a busy run directory is a user situation
    assert second.stderr.count("\n") == 1 and f"in use by another xdistill process (pid {process.pid})" in second.stderr
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = checkpointed_epochs(last)
    again = cli("run", str(recipe), "--out", str(out), "--quiet")  # the dead run's lock is stale: taken over
    assert again.returncode == 0, again.stderr
    stages = json.loads((out / "stages.json").read_text())
    total = stages["student:slow"]["epochs_run"]
    assert len(stages["student:slow"]["epoch_seconds"]) == total - done  # continued, not restarted
    assert "teacher: training" not in (out / "log.txt").read_text().split("student slow")[-1]


def test_ctrl_c_says_where_it_stopped_and_exits_130(tmp_path):
    recipe, out = small_recipe(tmp_path, student_steps=3000), tmp_path / "run"
    # as from a terminal: a suite started in the background (`pytest &`) passes SIGINT on as ignored
    process = subprocess.Popen(
        [PYTHON, "-m", "xdistill", "run", str(recipe), "--out", str(out), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    last = out / "students" / "slow" / "checkpoints" / "last.safetensors"
    wait_for(lambda: checkpointed_epochs(last) >= 1, process=process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(
        "xdistill: interrupted while training the student slow (epochs finished and checkpointed: "
    )
    assert lines[0].endswith("run the same command again to resume")


class Explode(Method):
    needs_teacher = False

    name = "bad"

    def loss(self, step):
        return step.student_logits.sum() * float("inf")


def test_a_non_finite_loss_stops_with_the_term_and_epoch(tmp_path):
    data = ArrayDataset(np.random.default_rng(0).normal(size=(20, 1, 8)), np.arange(20) % 2, ["a", "b"], "d")
    with pytest.raises(FloatingPointError, match=r"loss term 'bad' became (inf|-inf|nan) in epoch 1"):
        distill(
            None,
            build_model("fcn1d", 1, 2, width=0.125),
            data,
            ["ce", Explode()],
            epochs=2,
            work_dir=tmp_path,
            progress=False,
            loggers=(),
            checkpoint=False,
        )


def test_bad_data_is_refused_where_it_enters(tmp_path):
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\), got 0..5"):
        ArrayDataset(torch.randn(4, 1, 3), torch.tensor([0, 1, 5, 0]), ["a", "b"], "d")
    empty = ArrayDataset(torch.randn(0, 1, 3), torch.zeros(0), ["a", "b"], "empty")
    with pytest.raises(ValueError, match="the training set is empty"):
        distill(
            None,
            build_model("fcn1d", 1, 2),
            empty,
            ["ce"],
            epochs=1,
            val_fraction=0,
            work_dir=tmp_path,
            progress=False,
            loggers=(),
        )


# ---- malformed recipes, generated -------------------------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

BASE = yaml.safe_load(default_recipe_path().read_text())
BASE.pop("seeds")  # one run


def _paths(node, prefix=()):
    """Every (path, value) of the recipe tree."""
    yield prefix, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, prefix + (i,))


PATHS = [p for p, _ in _paths(BASE) if p]
NAMES = [
    p
    for p, v in _paths(BASE)
    if p
    and p[-1] in ("model", "name")
    and isinstance(v, str)
    and p != ("name",)
    and "students" in p[:1] + ("students",)
    and p[0] != "name"
]
NUMBERS = [
    p
    for p, v in _paths(BASE)
    if isinstance(v, (int, float))
    and not isinstance(v, bool)
    and p[-1] in ("width", "steps", "k", "window", "perturbations", "size", "stride", "examples")
]


def _set(tree, path, value):
    node = tree
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


@st.composite
def malformed(draw):
    tree = json.loads(json.dumps(BASE))
    kind = draw(st.sampled_from(["unknown_key", "wrong_type", "unknown_name", "out_of_range", "not_a_mapping"]))
    if kind == "unknown_key":
        containers = [
            p
            for p, v in _paths(tree)
            if isinstance(v, dict)
            and "options" not in p
            and "part_options" not in p
            and "explainer_options" not in p
            and not (p and p[-1] == "options")
        ]
        path = draw(st.sampled_from(containers))
        node = tree
        for key in path:
            node = node[key]
        if isinstance(node, dict) and "name" in node and path and path[-2:-1] == ("methods",):
            node["zz_" + draw(st.text("abcdefgh", min_size=1, max_size=6))] = 1  # an unknown method option
        else:
            node["zz_" + draw(st.text("abcdefgh", min_size=1, max_size=6))] = draw(st.integers())
    elif kind == "wrong_type":
        path = draw(
            st.sampled_from(
                [
                    ("students",),
                    ("teacher",),
                    ("dataset",),
                    ("evaluation",),
                    ("training",),
                    ("teacher", "model"),
                    ("dataset", "name"),
                    ("students", 0, "methods"),
                ]
            )
        )
        _set(
            tree,
            path,
            draw(
                st.one_of(
                    st.integers(),
                    st.just([]) if path != ("students",) else st.just(7),
                    st.just({"zz": 1}) if path[-1] in ("model", "name") else st.just(3.5),
                )
            ),
        )
    elif kind == "unknown_name":
        path = draw(
            st.sampled_from(
                [
                    ("teacher", "model"),
                    ("dataset", "name"),
                    ("students", 1, "model"),
                    ("evaluation", "explainer"),
                    ("evaluation", "parts"),
                ]
            )
        )
        _set(tree, path, "zz" + draw(st.text("abcdefghij", min_size=1, max_size=8)))
    elif kind == "out_of_range":
        path = draw(st.sampled_from([("training", "steps"), ("evaluation", "k"), ("evaluation", "examples")]))
        _set(tree, path, draw(st.integers(max_value=-1)))
    else:
        return draw(st.sampled_from(["- just\n- a list\n", "42\n", "{unclosed: [\n", "name: [1, 2\n"]))
    return yaml.safe_dump(tree)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=malformed())
def test_malformed_recipes_always_exit_2_with_one_line_and_write_nothing(tmp_path, text):
    from xdistill.cli import main

    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text)
    out = tmp_path / f"out{abs(hash(text))}"
    stderr, stdout = io.StringIO(), io.StringIO()
    with redirect_stderr(stderr), redirect_stdout(stdout):
        code = main(["run", str(recipe), "--out", str(out), "--quiet"])
    message = stderr.getvalue()
    assert code == 2, message
    assert message.startswith("xdistill: error: ") and message.count("\n") == 1, message
    assert "Traceback" not in message and not out.exists()
