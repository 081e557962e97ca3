"""Every file xdistill reads back is checked: truncated, bit-flipped or zeroed, it is refused in one line naming the
file (and how to rebuild it) or computed again — never used silently."""

import json
import logging
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from xdistill.checkpoint import CheckpointError, load_tree, load_weights, save_tree, save_weights
from xdistill.data import ArrayDataset
from xdistill.engine import distill
from xdistill.files import DamagedFileError, read_json, read_npz, write_json, write_npz
from xdistill.models import build_model
from xdistill.recipe import default_recipe_path
from xdistill.store import AttributionStore

PYTHON = sys.executable


def data_offset(path: Path) -> int:
    """Where a safetensors file's tensor bytes start (after the 8-byte length and the JSON header)."""
    return 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]


def damage(path: Path, how: str, at: int | None = None) -> None:
    """Truncate ``path`` to half, flip one bit (at byte ``at``, default the middle) or zero every byte."""
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "flip":
        position = len(data) // 2 if at is None else at
        data[position] ^= 0x10
        path.write_bytes(bytes(data))
    elif how == "zero":
        path.write_bytes(bytes(len(data)))
    else:
        raise ValueError(how)


DAMAGES = ["truncate", "flip", "zero"]


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_weights_are_refused_naming_the_file(tmp_path, how):
    model = build_model("fcn1d", 1, 2, width=0.25)
    path = tmp_path / "teacher.safetensors"
    save_weights(model, path)
    offset = data_offset(path)
    damage(path, how, at=offset + (path.stat().st_size - offset) // 2)  # a flip lands in the tensor bytes
    with pytest.raises(CheckpointError, match=r"teacher.safetensors is damaged \(") as caught:
        load_weights(build_model("fcn1d", 1, 2, width=0.25), path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_checkpoint_is_refused(tmp_path, how):
    path = tmp_path / "last.safetensors"
    save_tree({"state_dict": {"w": torch.arange(1000.0)}, "epoch": 3}, path)
    offset = data_offset(path)
    damage(path, how, at=offset + 2000)
    with pytest.raises(CheckpointError, match="last.safetensors is damaged"):
        load_tree(path)


def test_weights_without_a_hash_from_elsewhere_still_load(tmp_path):
    from safetensors.torch import save_file

    model = build_model("fcn1d", 1, 2, width=0.25)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "theirs.safetensors"))
    load_weights(build_model("fcn1d", 1, 2, width=0.25), tmp_path / "theirs.safetensors")


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_json_is_refused_naming_the_file_and_the_fix(tmp_path, how):
    path = tmp_path / "stages.json"
    write_json(path, {"teacher": {"seconds": 12.5, "epochs_run": 40}, "student:kd": {"seconds": 3.25}})
    assert read_json(path) == {"teacher": {"seconds": 12.5, "epochs_run": 40}, "student:kd": {"seconds": 3.25}}
    text = path.read_text()
    if how == "flip":  # a digit changed: still valid JSON, caught by the hash only
        path.write_text(text.replace("12.5", "17.5"))
    else:
        damage(path, how)
    with pytest.raises(DamagedFileError, match=r"stages.json is damaged \(.*\); delete it and run"):
        read_json(path)


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_npz_is_refused(tmp_path, how):
    path = tmp_path / "student.npz"
    write_npz(path, {"x": np.arange(4000, dtype=np.float32), "y": np.arange(10)})
    damage(path, how, at=1000)  # inside x's bytes: only the zip CRC-32 notices
    with pytest.raises(DamagedFileError, match="student.npz is damaged"):
        read_npz(path)


def _store(root: Path) -> AttributionStore:
    return AttributionStore(root, {"teacher": "t"}, 40, (3,), chunk_size=4)


def _truth(start: int, end: int) -> torch.Tensor:
    return torch.arange(start, end, dtype=torch.float32)[:, None].repeat(1, 3) * 0.5


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_attribution_store_is_computed_again_where_it_is_damaged(tmp_path, how, caplog):
    _store(tmp_path).compute(_truth, progress=False)
    maps = tmp_path / "maps.npy"
    header = maps.stat().st_size - 40 * 3 * 4
    damage(maps, how, at=header + 5 * 3 * 4 + 1)  # a flip lands in sample 5: chunk 1
    calls: list[int] = []

    def again(start: int, end: int) -> torch.Tensor:
        calls.append(start)
        return _truth(start, end)

    with caplog.at_level(logging.WARNING, logger="xdistill"):
        store = _store(tmp_path)
        store.compute(again, progress=False)
    assert "maps.npy" in caplog.text
    assert calls == ([4] if how == "flip" else list(range(0, 40, 4)))  # only what was damaged
    assert torch.equal(store[torch.arange(40)], _truth(0, 40))


def test_a_bit_flipped_last_checkpoint_is_skipped_for_the_previous_one_and_the_run_ends_as_an_uninterrupted_one(
    tmp_path, caplog
):
    data = ArrayDataset(np.random.default_rng(0).normal(size=(40, 1, 16)), np.arange(40) % 2, ["a", "b"], "d")

    def run(work: Path, epochs: int):
        torch.manual_seed(0)
        return distill(
            None,
            build_model("fcn1d", 1, 2, width=0.125),
            data,
            ["ce"],
            epochs=epochs,
            work_dir=work,
            progress=False,
            loggers=(),
            checkpoint_seconds=0,
        )

    whole = run(tmp_path / "whole", 5)
    run(tmp_path / "cut", 3)
    last = tmp_path / "cut" / "checkpoints" / "last.safetensors"
    offset = data_offset(last)
    damage(last, "flip", at=offset + (last.stat().st_size - offset) // 2)
    with caplog.at_level(logging.WARNING, logger="xdistill"):
        resumed = run(tmp_path / "cut", 5)
    assert "last.safetensors is damaged (its tensors do not match" in caplog.text
    assert "resuming from previous.safetensors instead" in caplog.text
    assert len(resumed.epoch_seconds) == 3  # from the end of epoch 2: epochs 3, 4 and 5
    for (name, a), b in zip(whole.student.state_dict().items(), resumed.student.state_dict().values()):
        assert torch.equal(a, b), name


# -- a whole study, through the command line ----------------------------------------------------------------------


def tiny_recipe(tmp_path: Path) -> Path:
    data = yaml.safe_load(default_recipe_path().read_text())
    data.pop("seeds")
    data["teacher"]["options"] = {"width": 0.25}
    data["teacher"]["train"] = {"steps": 30}
    data["training"] = {"steps": 21}
    data["students"] = [{"name": "small", "model": "fcn1d", "options": {"width": 0.125}, "methods": ["hinton"]}]
    data["evaluation"].pop("also")
    data["evaluation"]["max_samples"] = 20
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "xdistill", *args], capture_output=True, text=True, timeout=600)


def tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v.clone() for k, v in load_file(str(path)).items()}  # (load_file maps the file: copy before damaging)


@pytest.mark.slow
def test_a_study_recomputes_damaged_weights_and_evaluations_and_refuses_damaged_records_in_one_line(tmp_path):
    recipe, out = tiny_recipe(tmp_path), tmp_path / "run"
    first = cli("run", str(recipe), "--out", str(out), "--quiet")
    assert first.returncode == 0, first.stderr
    teacher, student = out / "teacher" / "teacher.safetensors", out / "students" / "small" / "student.safetensors"
    evaluation = out / "evaluation" / "small.json"
    kept = {path: tensors(path) for path in (teacher, student)}
    figures = read_json(evaluation)

    # 64 random bytes written into the teacher's tensors, one bit flipped in the student's, the evaluation cut off
    data = bytearray(teacher.read_bytes())
    offset = data_offset(teacher)
    data[offset + 100 : offset + 164] = np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8).tobytes()
    teacher.write_bytes(bytes(data))
    damage(student, "flip", at=data_offset(student) + 40)
    damage(evaluation, "truncate")
    again = cli("run", str(recipe), "--out", str(out), "--quiet")
    assert again.returncode == 0, again.stderr
    assert "teacher: recomputed (teacher.safetensors was damaged: its tensors do not match" in again.stderr
    assert "student.safetensors was damaged" in again.stderr
    for path, before in kept.items():  # computed again from the stage's checkpoints: the same weights
        after = tensors(path)
        assert after.keys() == before.keys()
        assert all(torch.equal(before[k], after[k]) for k in before), path
    timed = ("latency", "speedup", "seconds")  # measured wall-clock figures differ from run to run

    def untimed(result: dict) -> dict:
        return {k: v for k, v in result.items() if not any(word in k for word in timed)}

    assert untimed(read_json(evaluation)) == untimed(figures)

    for name, fix in (("stages.json", "delete it and run the same command again"), ("recipe.json", "delete it")):
        path = out / name
        original = path.read_bytes()
        damage(path, "truncate")
        refused = cli("run", str(recipe), "--out", str(out), "--quiet")
        assert refused.returncode == 2, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and f"{name} is damaged" in lines[0] and fix in lines[0], refused.stderr
        path.write_bytes(original)

    binary = tmp_path / "recipe.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    refused = cli("run", str(binary), "--out", str(tmp_path / "other"))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert json.loads(json.dumps(read_json(out / "stages.json")))  # the record is intact and readable again
