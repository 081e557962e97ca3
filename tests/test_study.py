import json
import shutil
import subprocess
import sys

import pytest
import yaml

from xdistill.recipe import default_recipe_path

SMALL = yaml.safe_load(default_recipe_path().read_text())
SMALL["teacher"]["train"] = {"steps": 40}
SMALL["training"] = {"steps": 12}
SMALL["students"][2]["methods"][1].update(perturbations=8, bank=16)
SMALL["evaluation"]["max_samples"] = 40
SMALL["evaluation"]["examples"] = 2
SMALL["students"].append(
    {
        "name": "sweep",
        "model": "fcn1d",
        "options": {"width": 0.125},
        "methods": ["hinton"],
        "sweep": {"option": "alpha", "values": [0.0, 0.9]},
    }
)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "xdistill", *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    recipe = root / "small.yaml"
    recipe.write_text(yaml.safe_dump(SMALL))
    out = root / "run"
    # do it in pieces, as an interrupted user would: the teacher, one student, then the rest
    assert cli("teach", str(recipe), "--out", str(out), "--quiet").returncode == 0
    first = cli("distill", str(recipe), "--out", str(out), "--quiet", "--student", "alone")
    assert first.returncode == 0, first.stderr
    stages = json.loads((out / "stages.json").read_text())
    assert set(stages) == {"teacher", "student:alone"}
    result = cli("run", str(recipe), "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    return recipe, out, stages


def test_run_writes_everything_and_skips_finished_stages(finished_run):
    recipe, out, early = finished_run
    stages = json.loads((out / "stages.json").read_text())
    assert stages["teacher"] == early["teacher"] and stages["student:alone"] == early["student:alone"]
    students = ["alone", "kd", "tsd", "sweep[alpha=0.0]", "sweep[alpha=0.9]"]
    assert {f"evaluate:{s}" for s in students} <= set(stages)
    for name in (
        "recipe.json",
        "environment.json",
        "log.txt",
        "teacher/teacher.safetensors",
        "students/tsd/student.safetensors",
        "report/report.html",
        "report/report.md",
        "report/figures.json",
    ):
        assert (out / name).exists(), name
    env = json.loads((out / "environment.json").read_text())
    assert env["versions"]["torch"].startswith("2.13.0") and env["seed"] == 0
    figures = json.loads((out / "report" / "figures.json").read_text())
    assert [s["student"] for s in figures["students"]] == students
    assert figures["sweeps"]["sweep"]["option"] == "alpha" and len(figures["sweeps"]["sweep"]["points"]) == 2
    for student in figures["students"]:
        for key in (
            "student_accuracy",
            "agreement",
            "logit_spearman",
            "saliency_spearman",
            "topk_focus",
            "student_params",
            "compression",
            "speedup_b1",
            "speedup_b64",
        ):
            assert key in student
    md = (out / "report" / "report.md").read_text()
    assert "| tsd |" in md and "Sweep of alpha" in md
    # a second run does nothing but the report
    again = cli("run", str(recipe), "--out", str(out))
    assert again.returncode == 0 and "student" not in again.stderr.replace("students", "")


def test_html_is_self_contained(finished_run):
    _, out, _ = finished_run
    page = (out / "report" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3  # bars, saliency examples, sweep curve
    assert 'src="http' not in page and "<link" not in page


def test_a_changed_recipe_is_refused_in_the_same_run_dir(finished_run, tmp_path):
    recipe, out, _ = finished_run
    changed = dict(SMALL, seed=1)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    result = cli("run", str(path), "--out", str(out), "--quiet")
    assert result.returncode == 2 and "holds a different recipe" in result.stderr


def test_report_command_rebuilds_from_a_run_dir(finished_run):
    _, out, _ = finished_run
    result = cli("report", str(out))
    assert result.returncode == 0 and "report.html" in result.stdout
    assert cli("report", str(out / "nope")).returncode == 2


def test_explain_precomputes_one_ig_store_that_students_share_and_training_reuses(tmp_path):
    ig = {"model": "fcn1d", "options": {"width": 0.125}}
    data = dict(
        SMALL,
        students=[
            dict(ig, name="ig", methods=[{"name": "kd_ig", "n_steps": 4}]),
            dict(ig, name="ig_more", methods=[{"name": "kd_ig", "n_steps": 4, "p": 0.5}]),
            dict(ig, name="ig_finer", methods=[{"name": "kd_ig", "n_steps": 8}]),
        ],
        training={"steps": 6, "val_fraction": 0.2, "monitor": "val_loss"},
    )
    path = tmp_path / "ig.yaml"
    path.write_text(yaml.safe_dump(data))
    result = cli("explain", str(path), "--out", str(tmp_path / "run"), "--quiet")
    assert result.returncode == 0, result.stderr
    stores = sorted((tmp_path / "run" / "attributions").glob("ig_store-*"))
    assert len(stores) == 2  # p differs (same store); n_steps differs (its own store)
    for store in stores:
        manifest = json.loads((store / "manifest.json").read_text())
        assert manifest["n_samples"] == 40 and manifest["done"] == [0]  # the 80% distill() trains on
    written = {store: (store / "maps.npy").stat().st_mtime_ns for store in stores}
    result = cli("distill", str(path), "--out", str(tmp_path / "run"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert sorted((tmp_path / "run" / "attributions").glob("ig_store-*")) == stores
    assert {store: (store / "maps.npy").stat().st_mtime_ns for store in stores} == written  # nothing recomputed


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(finished_run, tmp_path):
    _, out, _ = finished_run
    shot = out / "report" / "screenshot.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1280,2400",
            (out / "report" / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 50_000
    from PIL import Image

    image = Image.open(shot).convert("L")
    # the page is not blank: a good share of its pixels are not white
    import numpy as np

    dark = int((np.asarray(image) < 200).sum())
    assert dark / (image.width * image.height) > 0.02


def test_accuracy_is_also_measured_on_the_whole_test_split_when_max_samples_limits_the_rest(finished_run, tmp_path):
    from xdistill.metrics import accuracy, predict
    from xdistill.recipe import parse_recipe
    from xdistill.study import Study

    recipe, out, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns(".lock"))
    study = Study(parse_recipe(yaml.safe_load(recipe.read_text())), copy, progress=False)
    try:
        spec = next(s for s in study.recipe.expanded_students() if s.name == "kd")
        _, test = study.student_splits
        assert len(test) > SMALL["evaluation"]["max_samples"]
        expected = accuracy(predict(study.student(spec), test.x), test.y)
        path = copy / "evaluation" / "kd.json"
        written = json.loads(path.read_text())
        assert written["test_samples_all"] == len(test)
        assert written["student_accuracy_all"] == pytest.approx(expected, abs=1e-12)
        assert written["teacher_accuracy_all"] == pytest.approx(
            accuracy(predict(study.student_teacher(), test.x), test.y), abs=1e-12
        )
    finally:
        study.lock.release()


def test_the_teacher_side_of_the_evaluation_is_computed_once_and_reused(finished_run, tmp_path, monkeypatch):
    """A later `evaluate --student X` reuses evaluation/teacher_side; a changed setting recomputes it."""
    import xdistill.metrics as metrics
    from xdistill.recipe import parse_recipe
    from xdistill.study import Study

    recipe, out, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns(".lock"))
    assert (copy / "evaluation" / "teacher_side.npz").exists()
    written = json.loads((copy / "evaluation" / "kd.json").read_text())
    (copy / "evaluation" / "kd.json").unlink()
    calls = []
    original = metrics.compute_teacher_side
    monkeypatch.setattr(metrics, "compute_teacher_side", lambda *a, **k: calls.append(1) or original(*a, **k))
    study = Study(parse_recipe(yaml.safe_load(recipe.read_text())), copy, progress=False)
    try:
        spec = next(s for s in study.recipe.expanded_students() if s.name == "kd")
        again = study.evaluate(spec)
        assert calls == []  # read back, not recomputed
        for key in ("saliency_spearman", "agreement", "flip_auc_teacher", "flip_auc_student_teacher_order"):
            assert again[key] == written[key]
    finally:
        study.lock.release()
    from xdistill.metrics import TeacherSide

    # the side is keyed by teacher fingerprint, test samples and settings: another key does not load it
    key = json.loads((copy / "evaluation" / "teacher_side.json").read_text())["key"]
    assert TeacherSide.load(copy / "evaluation" / "teacher_side", key) is not None
    assert TeacherSide.load(copy / "evaluation" / "teacher_side", {**key, "samples": key["samples"] - 1}) is None
    assert TeacherSide.load(copy / "evaluation" / "teacher_side", {**key, "teacher": "0" * 16}) is None
