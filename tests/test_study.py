import json
import shutil
import subprocess
import sys

import pytest
import yaml

from xdistill.files import read_json
from xdistill.recipe import RecipeError, default_recipe_path

SMALL = yaml.safe_load(default_recipe_path().read_text())
SMALL.pop("seeds")  # one seed: the several-seed layout has its own test
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
    stages = read_json(out / "stages.json")
    assert set(stages) == {"teacher", "student:alone"}
    result = cli("run", str(recipe), "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    return recipe, out, stages


@pytest.mark.slow
def test_run_writes_everything_and_skips_finished_stages(finished_run):
    recipe, out, early = finished_run
    stages = read_json(out / "stages.json")
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
    env = read_json(out / "environment.json")
    assert env["versions"]["torch"].startswith("2.13.0") and env["seed"] == 0
    figures = read_json(out / "report" / "figures.json")
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
    # a second run does nothing but the report, and says that every stage was kept
    again = cli("run", str(recipe), "--out", str(out))
    assert again.returncode == 0 and "teacher: kept (finished earlier)" in again.stderr
    lines = [line for line in again.stderr.splitlines() if "student " in line]
    assert lines and all(line.endswith(": kept (finished earlier)") for line in lines), lines


@pytest.mark.slow
def test_html_is_self_contained(finished_run):
    _, out, _ = finished_run
    page = (out / "report" / "report.html").read_text()
    # six metric panels, one figure per saliency example (2), the sweep curve
    assert page.count("data:image/png;base64,") == 6 + SMALL["evaluation"]["examples"] + 1
    assert 'src="http' not in page and "<link" not in page and "<script src" not in page
    assert 'id="explorer-data"' in page  # the explorer's data is in the page itself


@pytest.mark.slow
def test_a_changed_recipe_is_refused_in_the_same_run_dir(finished_run, tmp_path):
    recipe, out, _ = finished_run
    changed = dict(SMALL, seed=1)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    result = cli("run", str(path), "--out", str(out), "--quiet")
    assert result.returncode == 2 and "holds a recipe that differs in seed: its teacher" in result.stderr


@pytest.mark.slow
def test_report_command_rebuilds_from_a_run_dir(finished_run):
    _, out, _ = finished_run
    result = cli("report", str(out))
    assert result.returncode == 0 and "report.html" in result.stdout
    assert cli("report", str(out / "nope")).returncode == 2


@pytest.mark.slow
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
        manifest = read_json(store / "manifest.json")
        assert manifest["n_samples"] == 40 and manifest["done"] == [0]  # the 80% distill() trains on
    written = {store: (store / "maps.npy").stat().st_mtime_ns for store in stores}
    result = cli("distill", str(path), "--out", str(tmp_path / "run"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert sorted((tmp_path / "run" / "attributions").glob("ig_store-*")) == stores
    assert {store: (store / "maps.npy").stat().st_mtime_ns for store in stores} == written  # nothing recomputed


@pytest.mark.slow
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
        written = read_json(path)
        assert written["test_samples_all"] == len(test)
        assert written["student_accuracy_all"] == pytest.approx(expected, abs=1e-12)
        assert written["teacher_accuracy_all"] == pytest.approx(
            accuracy(predict(study.student_teacher(), test.x), test.y), abs=1e-12
        )
    finally:
        study.lock.release()


@pytest.mark.slow
def test_the_teacher_side_of_the_evaluation_is_computed_once_and_reused(finished_run, tmp_path, monkeypatch):
    """A later `evaluate --student X` reuses evaluation/teacher_side; a changed setting recomputes it."""
    import xdistill.metrics as metrics
    from xdistill.recipe import parse_recipe
    from xdistill.study import Study

    recipe, out, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns(".lock"))
    assert (copy / "evaluation" / "teacher_side.npz").exists()
    written = read_json(copy / "evaluation" / "kd.json")
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
    key = read_json(copy / "evaluation" / "teacher_side.json")["key"]
    assert TeacherSide.load(copy / "evaluation" / "teacher_side", key) is not None
    assert TeacherSide.load(copy / "evaluation" / "teacher_side", {**key, "samples": key["samples"] - 1}) is None
    assert TeacherSide.load(copy / "evaluation" / "teacher_side", {**key, "teacher": "0" * 16}) is None


@pytest.mark.slow
def test_a_recipe_with_seeds_runs_each_and_reports_mean_std_and_paired_verdicts(tmp_path):
    """`seeds: [0, 1]`: one run directory per seed, then one report whose figures are mean ± std over the seeds
    and whose verdict uses a paired t-test over them."""
    data = json.loads(json.dumps(SMALL))
    data["seeds"] = [0, 1]
    data["students"] = data["students"][:2]  # alone, kd
    data["evaluation"].update(max_samples=20, examples=1)
    recipe = tmp_path / "seeds.yaml"
    recipe.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"
    done = cli("run", str(recipe), "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    figures = read_json(out / "report" / "figures.json")
    assert figures["seeds"] == [0, 1] and figures["spread"] == "seeds"
    per_seed = [read_json(out / f"seed-{s}" / "evaluation" / "kd.json") for s in (0, 1)]
    kd = next(r for r in figures["students"] if r["student"] == "kd")
    means = [r["saliency_spearman"]["mean"] for r in per_seed]
    assert kd["saliency_spearman"]["mean"] == pytest.approx(sum(means) / 2)
    assert kd["saliency_spearman"]["std"] == pytest.approx(abs(means[0] - means[1]) / 2**0.5)
    assert kd["student_params"] == per_seed[0]["student_params"]  # the same on every seed: kept as it is
    verdict = next(v for v in figures["verdicts"] if v["metric"] == "saliency_spearman")
    assert "paired t-test over 2 seeds" in verdict["evidence"]
    text = (out / "report" / "report.md").read_text()
    assert text.splitlines()[2].startswith("**Decision: ") and "mean ± std over seeds" in text
    assert "Per metric, over 2 seeds (0, 1):" in text and figures["decision"]["rule"].startswith("Rule: ")
    assert cli("report", str(out)).returncode == 0  # the report command rebuilds it from the run directory


def test_the_report_leads_with_a_verdict_and_draws_the_tables_spread(tmp_path):
    """On generated results: the verdict names the best student and whether its lead exceeds 2 standard
    errors; the best cells are bold; the bar chart's error bars are the table's std and its axis zoomed."""
    from unittest import mock

    from xdistill.report import ReportMeta, build_report
    from xdistill.report import figures as report_figures

    def result(name, accuracy, saliency, std):
        return {
            "student": name,
            "student_accuracy": accuracy,
            "teacher_accuracy": 0.99,
            "agreement": {"mean": accuracy, "std": 0.1, "n": 400},
            "logit_spearman": {"mean": 0.5, "std": 0.2, "n": 400},
            "saliency_spearman": {"mean": saliency, "std": std, "n": 400},
            "topk_focus": {"mean": 0.5, "std": 0.2, "n": 400},
            "student_auc_pr": 0.9,
            "student_params": 100,
            "teacher_params": 1000,
            "compression": 10.0,
            "speedup_b1": 2.0,
            "speedup_b64": 3.0,
            "flip_auc_student_teacher_order": {"mean": 0.2, "std": 0.1, "n": 400},
        }

    results = [result("alone", 0.960, 0.50, 0.3), result("tsd", 0.980, 0.70, 0.3), result("kd", 0.975, 0.69, 0.3)]
    meta = ReportMeta(
        "generated", "synthetic", "fcn1d", {"explainer": "occlusion", "parts": "window", "k": 3, "target": "teacher"}
    )
    bars = []
    real_bar = report_figures._pyplot().Axes.bar

    def spy(ax, x, height, *args, **kwargs):
        bars.append((list(height), list(kwargs["yerr"]), ax))
        return real_bar(ax, x, height, *args, **kwargs)

    with mock.patch.object(report_figures._pyplot().Axes, "bar", spy):
        build_report(tmp_path, meta, results)
    summary = read_json(tmp_path / "figures.json")
    verdicts = {v["metric"]: v for v in summary["verdicts"]}
    # saliency: tsd leads kd by 0.01, 2 s.e. = 2 * sqrt(2) * 0.3 / 20 = 0.042 -> within the spread
    assert verdicts["saliency_spearman"]["best"] == "tsd" and verdicts["saliency_spearman"]["runner_up"] == "kd"
    assert not verdicts["saliency_spearman"]["decided"]
    assert verdicts["flip_auc_student_teacher_order"]["runner_up"] is not None  # lower is better: drawn and judged
    markdown = (tmp_path / "report.md").read_text()
    assert "saliency Spearman: tsd and kd cannot be told apart (0.010 apart, within the spread" in markdown
    assert "**0.700 ± 0.300**" not in markdown  # a lead within the spread is not emphasised
    assert 'class="best"' not in (tmp_path / "report.html").read_text()
    accuracy_heights, accuracy_errors, accuracy_axis = bars[0]
    assert accuracy_heights == [0.96, 0.98, 0.975] and accuracy_errors == [0.0, 0.0, 0.0]
    low, high = accuracy_axis.get_ylim()
    assert low > 0.9 and high <= 1.02  # zoomed to the data: 0.96 vs 0.98 is visible
    saliency_heights, saliency_errors, _ = bars[3]
    assert saliency_errors == [0.3, 0.3, 0.3]  # the table's ± std, not a standard error
    assert len(bars) == 6  # deletion AUC has a panel
    assert "axis cut: starts at" in accuracy_axis.get_title()  # a zoomed axis says where it starts


def test_a_run_directory_recorded_before_a_recipe_field_existed_is_still_the_same_recipe(tmp_path):
    """A field added to recipes later (at its default) must not make every existing run directory 'another
    recipe': the recorded recipe is read with today's defaults before it is compared."""
    from xdistill.files import read_json, write_json
    from xdistill.recipe import parse_recipe
    from xdistill.study import Study

    data = yaml.safe_load(default_recipe_path().read_text())
    data.pop("seeds")
    recipe = parse_recipe(data)
    study = Study(recipe, tmp_path / "run", progress=False)
    study.commit()
    study.discard()
    recorded = read_json(tmp_path / "run" / "recipe.json")
    recorded.pop("imports")  # as a run directory written before `imports` existed
    write_json(tmp_path / "run" / "recipe.json", recorded)
    Study(recipe, tmp_path / "run", progress=False).discard()  # not refused
    recorded["dataset"]["name"] = "ucr:ArrowHead"
    write_json(tmp_path / "run" / "recipe.json", recorded)
    with pytest.raises(RecipeError, match="differs in dataset.name"):
        Study(recipe, tmp_path / "run", progress=False)
