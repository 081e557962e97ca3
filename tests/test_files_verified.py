"""Every file a study writes and reads back is verified: the per-sample CSV against its npz, environment.json by its
content hash (and it keeps every command), the training logs the report draws against the hashes stages.json
recorded; a failed write leaves no partial file and a rerun removes those an interrupted one left; the log says what
a rerun kept and what it computed again."""

import errno
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from xdistill.files import atomic_write, read_json, remove_stale_partials, write_json
from xdistill.recipe import default_recipe_path, load_recipe
from xdistill.study.ledger import RunLedger

PYTHON = sys.executable


# -- a failed write, stale partial files ----------------------------------------------------------------------------


def _full_disk(monkeypatch, where: str) -> None:
    """The next write fails as on a full disk: half the bytes written, then ENOSPC (or the rename fails)."""
    if where == "write":
        real = Path.write_bytes

        def write_bytes(self, data):
            real(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device", str(self))

        monkeypatch.setattr(Path, "write_bytes", write_bytes)
    else:

        def replace(source, target):
            raise OSError(errno.ENOSPC, "No space left on device", str(target))

        monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("where", ["write", "replace"])
def test_a_write_that_fails_leaves_no_partial_file_and_the_old_file_as_it_was(tmp_path, monkeypatch, where):
    path = tmp_path / "stages.json"
    write_json(path, {"teacher": {"seconds": 1.5}})
    before = path.read_bytes()
    _full_disk(monkeypatch, where)
    with pytest.raises(OSError) as caught:
        write_json(path, {"teacher": {"seconds": 1.5}, "student:kd": {"seconds": 2.5}})
    assert caught.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stages.json"]  # no stages.json.<pid>.part
    assert path.read_bytes() == before


def test_an_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    real = Path.write_bytes

    def interrupted(self, data):  # Ctrl-C halfway through the write
        real(self, data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "figures.json", b"{}")
    assert list(tmp_path.iterdir()) == []


def _dead_pid() -> int:
    return int(subprocess.run([PYTHON, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)


def test_stale_partial_files_are_removed_and_a_live_writers_is_kept(tmp_path):
    live = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(60)"])
    try:
        stale = [
            tmp_path / "evaluation" / f"kd.json.{_dead_pid()}.part",  # atomic_write's, its writer gone
            tmp_path / "teacher" / "checkpoints" / "last.safetensors.part",  # the checkpoint writer's
            tmp_path / f"recipe.json.{os.getpid()}.part",  # this process's own: it writes nothing while it looks
        ]
        kept = tmp_path / "attributions" / f"maps.npy.{live.pid}.part"  # another live process is writing it
        for path in [*stale, kept]:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"half")
        assert sorted(remove_stale_partials(tmp_path)) == sorted(stale)
        assert kept.exists() and not any(path.exists() for path in stale)
    finally:
        live.kill()
        live.wait()


# -- a recipe that grows by losing a student ------------------------------------------------------------------------


def _recipe(tmp_path: Path, students: list[dict], name: str = "recipe.yaml") -> Path:
    data = yaml.safe_load(default_recipe_path().read_text())
    data.pop("seeds")
    data["students"] = students
    data["evaluation"] = {"explainer": "saliency", "max_samples": 10, "examples": 0, "flip_steps": 0}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _commit(recipe: Path, out: Path) -> None:
    ledger = RunLedger(load_recipe(recipe), out, progress=False)
    ledger.commit()
    assert ledger.lock is not None
    ledger.lock.release()


def test_a_student_removed_from_the_recipe_is_announced_as_removed_not_as_redone(tmp_path):
    kd = {"name": "kd", "model": "fcn1d", "options": {"width": 0.125}, "methods": ["hinton"]}
    alone = {"name": "alone", "model": "fcn1d", "options": {"width": 0.125}, "methods": ["ce"]}
    out = tmp_path / "run"
    _commit(_recipe(tmp_path, [alone, kd]), out)
    finished = {stage: {"seconds": 1.0} for stage in ("teacher", "student:alone", "student:kd")}
    write_json(out / "stages.json", {**finished, "evaluate:alone": {}, "evaluate:kd": {}})

    _commit(_recipe(tmp_path, [alone], "smaller.yaml"), out)
    line = (out / "log.txt").read_text().splitlines()[-1]
    assert "the recipe changed in students.kd: finished stages are kept, nothing finished is redone" in line
    assert "redone:" not in line and "removed: student(s) kd" in line
    assert set(read_json(out / "stages.json")) == {"teacher", "student:alone", "evaluate:alone"}

    _commit(_recipe(tmp_path, [dict(alone, options={"width": 0.25})], "wider.yaml"), out)
    line = (out / "log.txt").read_text().splitlines()[-1]
    assert line.endswith("finished stages are kept; redone: evaluate:alone, student:alone")


# -- whole studies, through the command line -------------------------------------------------------------------------


def tiny_recipe(folder: Path) -> Path:
    data = yaml.safe_load(default_recipe_path().read_text())
    data.pop("seeds")
    data["teacher"] = {"model": "fcn1d", "options": {"width": 0.25}, "train": {"steps": 30}}
    data["training"] = {"steps": 21}
    data["students"] = [{"name": "small", "model": "fcn1d", "options": {"width": 0.125}, "methods": ["hinton"]}]
    data["evaluation"] = {"explainer": "saliency", "max_samples": 10, "examples": 0, "flip_steps": 0}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "xdistill", *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """(recipe, run directory) of one finished tiny study; a test works on its own copy (:func:`copy`)."""
    folder = tmp_path_factory.mktemp("finished")
    recipe = tiny_recipe(folder)
    done = cli("run", recipe, "--out", folder / "run", "--quiet")
    assert done.returncode == 0, done.stderr
    return recipe, folder / "run"


def copy(finished: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    recipe, run = finished
    shutil.copytree(run, tmp_path / "run")
    return recipe, tmp_path / "run"


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


SAMPLES = Path("evaluation") / "small.samples.csv"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_a_damaged_samples_csv_is_noticed_and_written_again_to_its_exact_bytes(finished, tmp_path, how):
    recipe, out = copy(finished, tmp_path)
    csv = out / SAMPLES
    original = csv.read_bytes()
    if how == "flip":
        flip(csv, original.index(b"\n1,") + 12)  # a digit of sample 1's values: still a valid CSV
    else:
        truncate(csv)
    again = cli("run", recipe, "--out", out, "--quiet")
    assert again.returncode == 0, again.stderr
    assert csv.read_bytes() == original
    said = "evaluation of small: kept; small.samples.csv written again from its npz (its bytes do not match"
    assert said in again.stderr and said in (out / "log.txt").read_text()  # shown even under --quiet
    assert "small.samples.csv" in (out / "report" / "report.html").read_text()  # linked again


@pytest.mark.slow
def test_the_report_command_neither_links_a_damaged_csv_nor_draws_a_damaged_training_log(finished, tmp_path):
    _, out = copy(finished, tmp_path)
    flip(out / SAMPLES, 200)
    log = out / "students" / "small" / "logs" / "version_0" / "metrics.csv"
    text = log.read_text()
    log.write_text(text.replace(text.splitlines()[2], text.splitlines()[2].replace("0.", "1.", 1)))  # a value changed
    done = cli("report", out)
    assert done.returncode == 0, done.stderr
    assert f"{out / SAMPLES} is not linked from the report (its bytes do not match small.samples.npz" in done.stderr
    assert f"{log} is damaged (its bytes do not match the hash stages.json recorded for it)" in done.stderr
    page = (out / "report" / "report.html").read_text()
    assert "small.samples.csv" not in page
    assert '"teacher":{"epoch"' in page.replace(" ", "") and '"small":{"epoch"' not in page.replace(" ", "")


@pytest.mark.slow
def test_a_damaged_samples_npz_and_teacher_side_are_computed_again(finished, tmp_path):
    recipe, out = copy(finished, tmp_path)
    original = (out / SAMPLES).read_bytes()
    flip(out / "evaluation" / "small.samples.npz", 300)
    side = out / "evaluation" / "teacher_side.json"
    side.write_text(side.read_text().replace('"cost"', '"cosT"'))
    again = cli("run", recipe, "--out", out, "--quiet")
    assert again.returncode == 0, again.stderr
    log = (out / "log.txt").read_text()
    for said in (
        "evaluation of small: recomputed (small.samples.npz was damaged: not a readable npz archive",
        "evaluation of the teacher: recomputed (teacher_side.json was damaged: its content does not match the hash",
    ):
        assert said in log and said in again.stderr
    assert (out / SAMPLES).read_bytes() == original  # the same evaluation, to the byte


@pytest.mark.slow
def test_a_rerun_records_its_command_removes_stale_partial_files_and_says_what_it_kept(finished, tmp_path):
    recipe, out = copy(finished, tmp_path)
    stale = [out / "evaluation" / f"small.json.{_dead_pid()}.part", out / "teacher" / "checkpoints" / "last.part"]
    for path in stale:
        path.write_bytes(b"half a file")
    again = cli("run", recipe, "--out", out, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert not list(out.rglob("*.part"))
    log = (out / "log.txt").read_text()
    assert "removed 2 partial file(s) that interrupted writes left: evaluation/small.json." in log
    assert "evaluation of small: kept (finished earlier)" in log and "evaluation of small: kept" in again.stderr

    environment = read_json(out / "environment.json")
    first, second = environment["commands"]
    assert first["argv"][1:] == ["run", str(recipe), "--out", str(finished[1]), "--quiet"]
    assert second["argv"][1:] == ["run", str(recipe), "--out", str(out)] and second["cwd"] == str(tmp_path)
    assert datetime.fromisoformat(first["time"]) <= datetime.fromisoformat(second["time"])
    assert second["xdistill"] and second["code"].startswith(("git ", "xdistill "))
    assert environment["argv"] == second["argv"] and environment["versions"]["torch"]  # the latest run's, as before


@pytest.mark.slow
def test_a_damaged_environment_json_is_kept_aside_and_the_record_starts_anew(finished, tmp_path):
    recipe, out = copy(finished, tmp_path)
    environment = out / "environment.json"
    environment.write_text(environment.read_text().replace('"seed": 0', '"seed": 7'))  # valid JSON, wrong hash
    damaged = environment.read_bytes()
    again = cli("run", recipe, "--out", out, "--quiet")
    assert again.returncode == 0, again.stderr
    warned = [line for line in again.stderr.splitlines() if "environment.json" in line]
    assert len(warned) == 1 and f"{environment} is damaged (its content does not match the hash" in warned[0]
    assert "kept aside as environment.json.damaged" in warned[0]
    assert (out / "environment.json.damaged").read_bytes() == damaged
    assert len(read_json(environment)["commands"]) == 1  # this run's
