"""`xdistill export` writes a trained student that loads elsewhere, and audit's mistakes say what to change."""

import json
import shlex
import subprocess
import sys

import pytest
import torch
import yaml

from xdistill.recipe import RecipeError, default_recipe_path

SMALL = yaml.safe_load(default_recipe_path().read_text())
SMALL.pop("seeds")
SMALL["teacher"]["train"] = {"steps": 40}
SMALL["training"] = {"steps": 12}
SMALL["students"] = SMALL["students"][1:2]  # kd
SMALL["evaluation"].update(max_samples=20, also=[])


def cli(*args):
    return subprocess.run([sys.executable, "-m", "xdistill", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    (root / "recipe.yaml").write_text(yaml.safe_dump(SMALL))
    done = cli("run", str(root / "recipe.yaml"), "--out", str(root / "run"), "--quiet")
    assert done.returncode == 0, done.stderr
    return root / "run"


def student_logits(run, x):
    from xdistill.checkpoint import load_weights
    from xdistill.models import build_model

    torch.manual_seed(0)
    model = build_model("fcn1d", 1, 2, **SMALL["students"][0]["options"])
    return load_weights(model, run / "students" / "kd" / "student.safetensors").eval()(x)


@pytest.mark.slow
def test_a_pt2_export_gives_the_students_logits_and_audits_as_printed(run, tmp_path):
    from xdistill.data import load_dataset
    from xdistill.models.user import load_exported

    done = cli("export", str(run), "--student", "kd")
    assert done.returncode == 0, done.stderr
    path = run / "export" / "kd.pt2"
    assert f"kd: {path}" in done.stdout and "checked: torch.export program" in done.stdout
    _, test = load_dataset("ucr:GunPoint")
    x = test.x[:7]  # a batch size it was not exported with
    with torch.no_grad():
        assert torch.allclose(load_exported(path)(x), student_logits(run, x), atol=1e-5)
    teacher = ["--teacher", "fcn1d", "--teacher-options", '{"width": 0.5}']
    teacher += ["--teacher-weights", str(run / "teacher" / "teacher.safetensors")]
    data = ["--data", "ucr:GunPoint", "--out", str(tmp_path / "a")]
    refused = cli("audit", *teacher, "--student", str(path), *data)  # normalised data fed to a program that
    assert refused.returncode == 2 and "applies the study's preprocessing to raw inputs itself" in refused.stderr
    raw = ["--data-options", '{"normalize": "none"}']  # normalises itself: refused, saying what to pass
    audit = cli("audit", *teacher, "--student", str(path), *data, *raw)
    assert audit.returncode == 0, audit.stderr


@pytest.mark.slow
def test_a_safetensors_export_loads_with_the_command_it_prints(run, tmp_path):
    done = cli(
        "export", str(run), "--student", "kd", "--format", "safetensors", "--out", str(tmp_path / "kd.safetensors")
    )
    assert done.returncode == 0, done.stderr
    meta = json.loads((tmp_path / "kd.json").read_text())
    assert meta["model"] == "fcn1d" and meta["num_classes"] == 2
    printed = next(line for line in done.stdout.splitlines() if line.startswith("load: xdistill audit"))
    words = shlex.split(printed.removeprefix("load: xdistill "))
    teacher = ["--teacher", "fcn1d", "--teacher-options", '{"width": 0.5}']
    teacher += ["--teacher-weights", str(run / "teacher" / "teacher.safetensors")]
    audit = cli(*words, *teacher, "--data", "ucr:GunPoint", "--out", str(tmp_path / "a"))
    assert audit.returncode == 0, audit.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["--student", "nope"], "--student: 'nope' is not a student of"),
        (
            ["--student", "kd", "--format", "zip"],
            "--format: 'zip' is not a format; choose one of onnx, pt2, safetensors",
        ),
        (["--student", "kd", "--seed", "3"], "--seed: "),
    ],
)
def test_export_mistakes_are_one_line(run, args, message):
    done = cli("export", str(run), *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_weights_for_another_class_count_are_named_as_such(tmp_path):
    from xdistill.checkpoint import save_weights
    from xdistill.models import build_model
    from xdistill.models.factory import ModelError, model_for_data

    save_weights(build_model("fcn1d", 1, 2, width=0.25), tmp_path / "two.safetensors")
    x = torch.randn(2, 1, 50)
    with pytest.raises(ModelError, match="is a 'fcn1d' with 2 output classes, but the data has 3"):
        model_for_data("fcn1d", x, 3, options={"width": 0.25}, weights=str(tmp_path / "two.safetensors"))
    with pytest.raises(ModelError) as error:  # other options: every differing tensor counted, a few named
        model_for_data("fcn1d", x, 2, options={"width": 0.5}, weights=str(tmp_path / "two.safetensors"))
    assert "16 differently shaped (features.0.1.weight (32, 1, 8) vs (64, 1, 8)" in str(error.value)
    assert "and 13 more" in str(error.value) and "give the options it was trained with" in str(error.value)


def test_a_pt2_given_other_data_blames_the_data_not_the_batch(tmp_path):
    from xdistill.models import build_model
    from xdistill.models.user import load_exported

    model = build_model("fcn1d", 1, 2, width=0.125).eval()
    x = torch.randn(4, 1, 150)
    dynamic = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(dynamic, str(tmp_path / "dynamic.pt2"))
    torch.export.save(torch.export.export(model, (x,)), str(tmp_path / "fixed.pt2"))
    with pytest.raises(ValueError, match=r"takes inputs shaped \(batch, 1, 150\); this data gives \(3, 1, 100\)"):
        load_exported(tmp_path / "dynamic.pt2")(torch.randn(3, 1, 100))
    with pytest.raises(ValueError, match="exported for batches of exactly 4; got 3. Export it with a dynamic batch"):
        load_exported(tmp_path / "fixed.pt2")(torch.randn(3, 1, 150))


def test_a_missing_label_column_shows_a_few_columns_and_both_spellings(tmp_path):
    from xdistill.data import load_dataset

    header = ",".join(f"t{i}" for i in range(128)) + ",label"
    row = ",".join("1" for _ in range(128)) + ",a"
    (tmp_path / "train.csv").write_text(f"{header}\n{row}\n")
    (tmp_path / "test.csv").write_text(f"{header}\n{row}\n")
    with pytest.raises(ValueError) as error:
        load_dataset(f"csv:{tmp_path / 'train.csv'}", label_column="kind")
    text = str(error.value)
    assert "its columns: t0, t1, t2, t3, t4, ... (129 columns)" in text and "t100" not in text
    assert "dataset: {options: {label_column: NAME}}" in text and '--data-options \'{"label_column": "NAME"}\'' in text


@pytest.mark.parametrize(
    "shape, parts, advice",
    [((1, 28, 28), "window", "use pixel or patch"), ((1, 150), "patch", "use timestep or window")],
)
def test_parts_that_do_not_fit_the_inputs_are_refused_before_any_work(shape, parts, advice):
    from xdistill.recipe import check_k

    with pytest.raises(RecipeError, match=f"evaluation.parts: '{parts}' parts are for .*{advice}"):
        check_k(5, shape, parts, {})


@pytest.fixture(scope="module")
def raw_image_run(tmp_path_factory):
    """A study on raw 0-255 images (the loader standardises them with the training set's channel statistics)."""
    import numpy as np

    root = tmp_path_factory.mktemp("raw-images")
    rng = np.random.default_rng(0)
    y = np.arange(96) % 2
    x = rng.integers(0, 256, size=(96, 3, 8, 8)).astype(np.float32)
    x[y == 1, 0, 2:6, 2:6] = np.clip(x[y == 1, 0, 2:6, 2:6] + 120, 0, 255)  # class 1: a brighter red square
    np.savez(root / "raw.npz", x_train=x[:64], y_train=y[:64], x_test=x[64:], y_test=y[64:])
    recipe = {
        "name": "raw-images",
        "dataset": {"name": "npz:raw.npz"},
        "teacher": {"model": "cnn", "options": {"width": 0.25, "depth": 1}, "train": {"steps": 30}},
        "training": {"steps": 10},
        "students": [{"name": "kd", "model": "cnn", "options": {"width": 0.125, "depth": 1}, "methods": ["hinton"]}],
        "evaluation": {
            "explainer": "saliency",
            "parts": "patch",
            "part_options": {"grid": 2},
            "k": 2,
            "max_samples": 8,
        },
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    done = cli("run", str(root / "recipe.yaml"), "--out", str(root / "run"), "--quiet")
    assert done.returncode == 0, done.stderr
    return root


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_an_export_fed_the_raw_test_split_predicts_as_the_runs_student(raw_image_run, fmt):
    """The normalisation the student saw is inside the exported program: raw images in, the run's predictions out."""
    from xdistill.checkpoint import load_weights
    from xdistill.data import load_dataset
    from xdistill.models import build_model
    from xdistill.models.user import load_exported

    if fmt == "onnx":
        pytest.importorskip("onnxscript", reason="ONNX export needs onnx and onnxscript")
        onnxruntime = pytest.importorskip("onnxruntime", reason="running the ONNX file needs onnxruntime")
    run, data = raw_image_run / "run", str(raw_image_run / "raw.npz")
    done = cli("export", str(run), "--student", "kd", "--format", fmt)
    assert done.returncode == 0, done.stderr
    assert "raw inputs: image standardisation inside" in done.stdout
    path = run / "export" / f"kd.{fmt}"
    _, seen = load_dataset(f"npz:{data}")  # standardised, as the study gave it to the student
    _, raw = load_dataset(f"npz:{data}", normalize=False)
    assert raw.x.max() > 100  # really the raw 0-255 values
    student = build_model("cnn", 3, 2, width=0.125, depth=1)
    student = load_weights(student, run / "students" / "kd" / "student.safetensors").eval()
    with torch.no_grad():
        expected = student(seen.x)
        if fmt == "pt2":
            exported = load_exported(path)(raw.x)
        else:
            session = onnxruntime.InferenceSession(str(path))
            exported = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: raw.x.numpy()})[0])
    assert (exported.argmax(1) == expected.argmax(1)).all()  # every raw test sample predicted as the run's student
    assert torch.allclose(exported, expected, atol=1e-4)
    if (path.parent / f"{path.name}.data").exists():  # ONNX keeps large weights beside the file: the CLI says so
        assert f"{path.name}.data" in done.stdout


def test_onnx_without_its_packages_names_the_extra(monkeypatch, tmp_path):
    import sys

    from xdistill.errors import UserError
    from xdistill.export import write_onnx

    monkeypatch.setitem(sys.modules, "onnx", None)  # (an import of a None entry raises ImportError)
    with pytest.raises(UserError, match=r"pip install 'xdistill\[onnx\]'"):
        write_onnx(torch.nn.Linear(3, 2), torch.zeros(4, 3), tmp_path / "m.onnx")
