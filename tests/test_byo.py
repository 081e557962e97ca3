"""Bring your own data and models: file loaders (incl. corrupt files), import-path models, TorchScript teachers, audit."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from xdistill.data import load_dataset
from xdistill.models import build_model
from xdistill.training import train_classifier

PYTHON = sys.executable


def cli(*args, cwd=None):
    return subprocess.run([PYTHON, "-m", "xdistill", *args], capture_output=True, text=True, timeout=900, cwd=cwd)


# ---- files ---------------------------------------------------------------------------------------------------------


def test_npz_series_images_and_clear_errors(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "series.npz"
    np.savez(
        path,
        x_train=rng.normal(size=(10, 30)),
        y_train=np.arange(10) % 2,
        x_test=rng.normal(size=(4, 30)),
        y_test=np.array([0, 1, 1, 0]),
    )
    train, test = load_dataset(f"npz:{path}")
    assert train.input_shape == (1, 30) and test.y.tolist() == [0, 1, 1, 0] and train.class_names == ["0", "1"]
    assert torch.allclose(train.x.mean(-1), torch.zeros(1), atol=1e-5)  # univariate: per-series z-normalised
    multi = tmp_path / "multi.npz"
    np.savez(
        multi,
        x_train=rng.normal(size=(6, 3, 20)) * [[[1.0], [10.0], [100.0]]],
        y_train=np.arange(6) % 3,
        x_test=rng.normal(size=(3, 3, 20)),
        y_test=np.arange(3),
    )
    train, _ = load_dataset(f"npz:{multi}")
    assert train.info["normalize"] == "channel" and train.input_shape == (3, 20)
    images = tmp_path / "images.npz"
    np.savez(
        images,
        x_train=rng.random((8, 1, 6, 6)),
        y_train=np.arange(8) % 2,
        x_test=rng.random((2, 1, 6, 6)),
        y_test=np.array([1, 0]),
    )
    train, _ = load_dataset(f"npz:{images}")
    assert train.input_shape == (1, 6, 6) and abs(float(train.x.mean())) < 1e-5 and "pixel_mean" in train.info
    gray, _ = load_dataset(f"npz:{images}", kind="image")  # (N, C, H, W) stays, (N, H, W) would gain a channel
    assert gray.input_shape == (1, 6, 6)

    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=rng.normal(size=(4, 5)), y_train=np.arange(4), x_test=rng.normal(size=(2, 5)))
    with pytest.raises(ValueError, match=r"lacks the array\(s\) y_test"):
        load_dataset(f"npz:{bad}")
    np.savez(
        bad,
        x_train=rng.normal(size=(4, 5)),
        y_train=np.array(["a", "b", "a", "b"]),
        x_test=rng.normal(size=(2, 5)),
        y_test=np.array(["a", "b"]),
    )
    with pytest.raises(ValueError, match="y_train must hold integer class numbers"):
        load_dataset(f"npz:{bad}")
    np.savez(
        bad, x_train=rng.normal(size=(4, 5)), y_train=np.arange(3), x_test=rng.normal(size=(2, 5)), y_test=np.arange(2)
    )
    with pytest.raises(ValueError, match="x_train/y_train have 4/3 samples"):
        load_dataset(f"npz:{bad}")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="is truncated or not an .npz file|not a readable .npz|is not an .npz archive"):
        load_dataset(f"npz:{path}")
    with pytest.raises(FileNotFoundError, match="npz file .*missing.npz does not exist"):
        load_dataset(f"npz:{tmp_path / 'missing.npz'}")


TS = """@problemName tiny
@timeStamps false
@missing false
@univariate true
@equalLength true
@seriesLength 4
@classLabel true up down
@data
{rows}
"""


def test_ts_and_arff_files_through_aeon(tmp_path):
    rows = ["1,2,3,4:up", "4,3,2,1:down", "0,1,2,3:up", "3,2,1,0:down"]
    (tmp_path / "tiny_TRAIN.ts").write_text(TS.format(rows="\n".join(rows)))
    (tmp_path / "tiny_TEST.ts").write_text(TS.format(rows="\n".join(rows[:2])))
    train, test = load_dataset(f"ts:{tmp_path / 'tiny_TRAIN.ts'}")
    assert train.input_shape == (1, 4) and sorted(train.class_names) == ["down", "up"] and len(test) == 2
    (tmp_path / "tiny_TEST.ts").write_text(TS.format(rows="1,2,3:up\n4,3,x,1:down"))
    with pytest.raises(ValueError, match="tiny_TEST.ts could not be read as a .ts file"):
        load_dataset(f"ts:{tmp_path / 'tiny_TRAIN.ts'}")
    arff = (
        "@relation tiny\n"
        + "".join(f"@attribute t{i} numeric\n" for i in range(4))
        + "@attribute target {up,down}\n@data\n"
        + "\n".join(r.replace(":", ",") for r in rows)
        + "\n"
    )
    (tmp_path / "tiny_TRAIN.arff").write_text(arff)
    (tmp_path / "tiny_TEST.arff").write_text(arff)
    train, _ = load_dataset(f"arff:{tmp_path / 'tiny_TRAIN.arff'}")
    assert len(train) == 4 and train.input_shape == (1, 4)


def test_csv_one_series_per_row(tmp_path):
    (tmp_path / "train.csv").write_text("t0,t1,t2,label\n1,2,3,cat\n3,2,1,dog\n1,1,2,cat\n")
    (tmp_path / "test.csv").write_text("t0,t1,t2,label\n2,2,3,dog\n")
    train, test = load_dataset(f"csv:{tmp_path / 'train.csv'}", normalize="none")
    assert train.class_names == ["cat", "dog"] and train.x[1, 0].tolist() == [3.0, 2.0, 1.0] and test.y.tolist() == [1]
    with pytest.raises(ValueError, match="has no column 'kind'"):
        load_dataset(f"csv:{tmp_path / 'train.csv'}", label_column="kind")
    (tmp_path / "test.csv").write_text("t0,t1,t2,label\n2,oops,3,dog\n")
    with pytest.raises(ValueError, match="test.csv line 2: a non-numeric value"):
        load_dataset(f"csv:{tmp_path / 'train.csv'}")


# ---- models ------------------------------------------------------------------------------------------------------

USER_MODULE = textwrap.dedent("""
    import torch
    from torch import nn

    class TinyNet(nn.Module):
        def __init__(self, in_channels, num_classes, hidden=8):
            super().__init__()
            self.features = nn.Sequential(nn.Conv1d(in_channels, hidden, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1))
            self.head = nn.Linear(hidden, num_classes)

        def forward(self, x):
            return self.head(self.features(x).flatten(1))
""")


def small_recipe(teacher: dict, student_model: str, student_options: dict) -> dict:
    return {
        "name": "byo",
        "dataset": {"name": "ucr:GunPoint"},
        "teacher": teacher,
        "training": {"steps": 30, "checkpoint_seconds": 0},
        "students": [{"name": "kd", "model": student_model, "options": student_options, "methods": ["hinton"]}],
        "evaluation": {
            "explainer": "saliency",
            "parts": "window",
            "part_options": {"size": 10},
            "k": 3,
            "max_samples": 20,
            "examples": 0,
        },
    }


def _write_images(root, split, counts, size=(6, 5), mode="L", seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, count in counts.items():
        folder = root / split / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shape = (size[0], size[1]) + ((3,) if mode == "RGB" else ())
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / f"{i}.png")


@pytest.mark.slow
def test_image_folders_per_class_and_clear_errors(tmp_path):
    from PIL import Image

    root = tmp_path / "pets"
    _write_images(root, "train", {"cat": 3, "dog": 2})
    _write_images(root, "test", {"dog": 2})  # the test split may lack a class
    raw, raw_test = load_dataset(f"images:{root}", normalize=False)
    assert raw.class_names == ["cat", "dog"] and raw.y.tolist() == [0, 0, 0, 1, 1] and raw_test.y.tolist() == [1, 1]
    assert raw.input_shape == (1, 6, 5)
    first = np.asarray(Image.open(root / "train" / "cat" / "0.png"), dtype=np.float32) / 255
    assert np.allclose(raw.x[0, 0].numpy(), first)  # pixels as written, scaled to [0, 1]
    train, _ = load_dataset(f"images:{root}")
    assert abs(float(train.x.mean())) < 1e-5 and "pixel_mean" in train.info

    _write_images(root, "train", {"bird": 1}, mode="RGB", seed=1)  # one colour image: every image becomes RGB
    train, _ = load_dataset(f"images:{root}", normalize=False)
    assert train.input_shape == (3, 6, 5) and train.class_names == ["bird", "cat", "dog"]
    _write_images(root, "train", {"bird": 1}, size=(9, 9), mode="RGB", seed=2)  # overwrites bird/0.png, larger
    with pytest.raises(ValueError, match=r"cat/0.png is 5x6 pixels but .*bird/0.png is 9x9; pass size=\[H, W\]"):
        load_dataset(f"images:{root}")
    resized, _ = load_dataset(f"images:{root}", size=[4, 4])
    assert resized.input_shape == (3, 4, 4)

    (root / "train" / "cat" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ValueError, match=r"cat/1.png could not be read as an image"):
        load_dataset(f"images:{root}", size=[4, 4])
    _write_images(root, "test", {"cow": 1})
    with pytest.raises(ValueError, match=r"class folder\(s\) \['cow'\] that the training folder lacks"):
        load_dataset(f"images:{root}", size=[4, 4])
    with pytest.raises(FileNotFoundError, match="needs train/<class>/ and test/<class>/"):
        load_dataset(f"images:{tmp_path / 'nowhere'}")
    bad = cli("demo", "--dataset", f"images:{tmp_path / 'nowhere'}")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr, bad.stderr

    clean = tmp_path / "clean"
    _write_images(clean, "train", {"a": 4, "b": 4}, size=(8, 8))
    _write_images(clean, "test", {"a": 2, "b": 2}, size=(8, 8), seed=3)
    torch.manual_seed(0)
    from xdistill.checkpoint import save_weights

    save_weights(build_model("cnn", 1, 2, width=0.25), tmp_path / "cnn.safetensors")
    done = cli(
        "audit",
        "--teacher",
        "cnn",
        "--teacher-options",
        '{"width": 0.25}',
        "--teacher-weights",
        str(tmp_path / "cnn.safetensors"),
        "--student",
        "cnn",
        "--student-options",
        '{"width": 0.25}',
        "--student-weights",
        str(tmp_path / "cnn.safetensors"),
        "--data",
        f"images:{clean}",
        "--explainer",
        "saliency",
        "--parts",
        "pixel",
        "--out",
        str(tmp_path / "audit"),
    )
    assert done.returncode == 0, done.stderr
    audit = json.loads((tmp_path / "audit" / "evaluation" / "student.json").read_text())
    assert audit["agreement"]["mean"] == 1.0 and audit["saliency_spearman"]["mean"] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.slow
def test_a_user_module_next_to_the_recipe_is_used_by_import_path(tmp_path):
    (tmp_path / "mynets.py").write_text(USER_MODULE)
    recipe = small_recipe(
        {"model": "mynets:TinyNet", "options": {"hidden": 16}, "train": {"steps": 30}}, "mynets:TinyNet", {"hidden": 4}
    )
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    done = cli("run", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "run"), "--quiet", cwd="/")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "run" / "evaluation" / "kd.json").read_text())
    assert result["model"] == "mynets:TinyNet" and result["student_params"] < result["teacher_params"]
    recipe["students"][0]["model"] = "mynets:Nope"
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    bad = cli("run", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "run2"), cwd="/")
    assert bad.returncode == 2 and "students[0].model: module 'mynets' has no attribute 'Nope'" in bad.stderr


def test_relative_files_in_a_recipe_are_found_next_to_it(tmp_path, monkeypatch):
    from xdistill.recipe import load_recipe

    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "data.npz").write_bytes(b"")
    (folder / "t.safetensors").write_bytes(b"")
    recipe = yaml.safe_load((Path(__file__).parents[1] / "src/xdistill/recipes/default.yaml").read_text())
    recipe["dataset"] = {"name": "npz:data.npz"}
    recipe["teacher"]["weights"] = "t.safetensors"
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    monkeypatch.chdir(tmp_path)  # elsewhere: the files are found next to the recipe
    loaded = load_recipe(folder / "recipe.yaml")
    assert loaded.dataset.name == f"npz:{folder / 'data.npz'}" and loaded.teacher.weights == str(
        folder / "t.safetensors"
    )
    recipe["dataset"] = {"name": "npz:elsewhere.npz"}  # not next to the recipe: left as given (working directory)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert load_recipe(folder / "recipe.yaml").dataset.name == "npz:elsewhere.npz"


def export_pt2(model, example, path):
    """A torch.export program with a dynamic batch dimension, as a user would save one."""
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},)), str(path))
    return path


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory):
    """The same trained teacher as a torch.export program (.pt2) and as TorchScript (.pt)."""
    train, _ = load_dataset("ucr:GunPoint")
    torch.manual_seed(0)
    teacher = build_model("fcn1d", 1, 2, width=0.25)
    train_classifier(teacher, train, epochs=30, lr=3e-3, batch_size=16)
    folder = tmp_path_factory.mktemp("files")
    torch.jit.trace(teacher.eval(), train.x[:2]).save(str(folder / "teacher.pt"))
    export_pt2(teacher, train.x[:2], folder / "teacher.pt2")
    return {"pt2": folder / "teacher.pt2", "torchscript": folder / "teacher.pt", "model": teacher}


@pytest.fixture
def scripted_teacher(teacher_files):
    return teacher_files["torchscript"]


@pytest.mark.slow
def test_an_exported_pt2_teacher_is_distilled_and_audited_beside_a_pt2_student(tmp_path, teacher_files):
    from xdistill.checkpoint import load_weights
    from xdistill.models.user import load_model_file

    train, _ = load_dataset("ucr:GunPoint")
    exported = load_model_file(teacher_files["pt2"])
    with torch.no_grad():  # the program computes what the model did, for any batch size
        assert torch.allclose(exported(train.x[:7]), teacher_files["model"].eval()(train.x[:7]), atol=1e-5)
    recipe = small_recipe({"file": str(teacher_files["pt2"])}, "fcn1d", {"width": 0.125})
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    done = cli("run", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "run"), "--quiet")
    assert done.returncode == 0, done.stderr
    figures = json.loads((tmp_path / "run" / "report" / "figures.json").read_text())
    assert figures["teacher"]["model"] == "file:teacher.pt2"
    kd = json.loads((tmp_path / "run" / "evaluation" / "kd.json").read_text())
    _, test = load_dataset("ucr:GunPoint")
    with torch.no_grad():  # the study evaluated the program: the original model's accuracy on the same samples
        original = teacher_files["model"](test.x).argmax(1).eq(test.y).float().mean().item()
    assert kd["teacher_accuracy_all"] == pytest.approx(original, abs=1e-6)  # float32 mean vs exact ratio
    student = load_weights(
        build_model("fcn1d", 1, 2, width=0.125), tmp_path / "run" / "students" / "kd" / "student.safetensors"
    )
    export_pt2(student, train.x[:2], tmp_path / "student.pt2")
    audit = cli(
        "audit",
        "--teacher",
        str(teacher_files["pt2"]),
        "--student",
        str(tmp_path / "student.pt2"),
        "--data",
        "ucr:GunPoint",
        "--explainer",
        "saliency",
        "--parts",
        "window",
        "--part-options",
        '{"size": 10}',
        "--max-samples",
        "30",
        "--out",
        str(tmp_path / "audit"),
    )
    assert audit.returncode == 0, audit.stderr
    audited = json.loads((tmp_path / "audit" / "report" / "figures.json").read_text())["students"][0]
    assert 0.5 <= audited["agreement"]["mean"] <= 1 and kd["agreement"]["mean"] >= 0.5
    # a program exported for one batch size only is refused with the fix, not a traceback
    torch.export.save(torch.export.export(teacher_files["model"].eval(), (train.x[:2],)), str(tmp_path / "static.pt2"))
    recipe = small_recipe({"file": str(tmp_path / "static.pt2")}, "fcn1d", {"width": 0.125})
    (tmp_path / "static.yaml").write_text(yaml.safe_dump(recipe))
    static = cli("run", str(tmp_path / "static.yaml"), "--out", str(tmp_path / "static"), "--quiet")
    assert static.returncode == 2 and "dynamic batch dimension" in static.stderr, static.stderr


@pytest.mark.slow
def test_a_torchscript_teacher_is_distilled_with_kd_and_audited(tmp_path, scripted_teacher):
    recipe = small_recipe({"torchscript": str(scripted_teacher)}, "fcn1d", {"width": 0.125})
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    done = cli("run", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "run"), "--quiet")
    assert done.returncode == 0, done.stderr
    student_weights = tmp_path / "run" / "students" / "kd" / "student.safetensors"
    audit = cli(
        "audit",
        "--teacher",
        str(scripted_teacher),
        "--student",
        "fcn1d",
        "--student-weights",
        str(student_weights),
        "--student-options",
        '{"width": 0.125}',
        "--data",
        "ucr:GunPoint",
        "--explainer",
        "saliency",
        "--parts",
        "window",
        "--part-options",
        '{"size": 10}',
        "--max-samples",
        "30",
        "--out",
        str(tmp_path / "audit"),
    )
    assert audit.returncode == 0, audit.stderr
    figures = json.loads((tmp_path / "audit" / "report" / "figures.json").read_text())
    assert figures["teacher"]["model"] == "file:teacher.pt"
    assert 0 <= figures["students"][0]["agreement"]["mean"] <= 1
    assert (tmp_path / "audit" / "report" / "report.html").exists()
    missing = cli(
        "audit",
        "--teacher",
        str(scripted_teacher),
        "--student",
        "fcn1d",
        "--data",
        "ucr:GunPoint",
        "--out",
        str(tmp_path / "a2"),
    )
    assert missing.returncode == 2 and "--student-weights: give the trained weights" in missing.stderr


def test_the_audit_of_a_model_against_itself_is_perfect(tmp_path, scripted_teacher):
    done = cli(
        "audit",
        "--teacher",
        str(scripted_teacher),
        "--student",
        str(scripted_teacher),
        "--data",
        "ucr:GunPoint",
        "--explainer",
        "integrated_gradients",
        "--explainer-options",
        '{"n_steps": 8}',
        "--parts",
        "window",
        "--part-options",
        '{"size": 10}',
        "--max-samples",
        "25",
        "--out",
        str(tmp_path / "self"),
    )
    assert done.returncode == 0, done.stderr
    r = json.loads((tmp_path / "self" / "evaluation" / "student.json").read_text())
    for key in ("agreement", "logit_spearman", "saliency_spearman", "topk_iou", "cosine"):
        assert r[key]["mean"] == pytest.approx(1.0, abs=1e-6), key
    assert r["kl"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert r["flip_auc_student_teacher_order"]["mean"] == pytest.approx(r["flip_auc_teacher"]["mean"])
    # the audit says how it normalised the inputs, and claims nothing about the training it did not see
    assert "inputs z-normalised by default, each series on its own (normalize: auto" in done.stdout
    summary = (tmp_path / "self" / "report" / "report.md").read_text()
    assert (
        "inputs z-normalised by default" in summary and "audit compares two trained models it did not train" in summary
    )
    assert "training data alone" not in summary
    assert json.loads((tmp_path / "self" / "audit.json").read_text())["inputs"].startswith("inputs z-normalised")
