import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xdistill.recipe import RecipeError, default_recipe_path, load_recipe, parse_recipe

RECIPES = sorted(Path(default_recipe_path()).parent.glob("*.yaml"))
BASE = yaml.safe_load(default_recipe_path().read_text())
BASE.pop("seeds")  # one run


def broken(change):
    data = copy.deepcopy(BASE)
    change(data)
    return data


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.students and recipe.expanded_students()


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d.update(studnets=[]), r"^studnets: unknown key"),
        (lambda d: d["teacher"].update(model="resnet99"), r"^teacher.model: unknown model 'resnet99'; known: .*fcn1d"),
        (
            lambda d: d["students"][2]["methods"][1].update(name="tsdd"),
            r"^students\[2\].methods\[1\]: unknown term 'tsdd'",
        ),
        (
            lambda d: d["students"][2]["methods"][1].update(windw=3),
            r"^students\[2\].methods\[1\]: unknown tsd option 'windw'; accepted: perturbations, window",
        ),
        (
            lambda d: d["students"][2]["methods"][1].update(window=0),
            r"^students\[2\].methods\[1\]: window must be >= 1",
        ),
        (lambda d: d["training"].update(epochs="many"), r"^training.epochs: Input should be a valid integer"),
        (lambda d: d["training"].update(epochs=0), r"^training.epochs: Input should be greater than or equal to 1"),
        (lambda d: d["dataset"].update(name="imagenet"), r"^dataset.name: unknown dataset 'imagenet'"),
        (lambda d: d["students"][1].update(name="alone"), r"^students: .*repeated: alone"),
        (lambda d: d["evaluation"].update(explainer="lime"), r"^evaluation.explainer: unknown explainer 'lime'"),
        (lambda d: d.pop("teacher"), r"^teacher: Field required"),
        (
            lambda d: d.update(hardware={"devices": "two"}),
            r"^hardware.devices: give a whole number of processes >= 1, or 'auto'; got 'two'$",
        ),
        (lambda d: d.update(hardware={"process_timeout": 0}), r"^hardware.process_timeout: Input should be greater"),
    ],
)
def test_bad_recipes_name_the_field(change, message):
    with pytest.raises(RecipeError, match=message):
        parse_recipe(broken(change))


def test_sweep_expands_into_one_student_per_value():
    recipe = load_recipe(default_recipe_path().parent / "where_models_look.yaml")
    names = [s.name for s in recipe.expanded_students()]
    assert "small[alpha=0.0]" in names and len(names) == 9
    first = recipe.expanded_students()[1]
    assert first.methods[0] == {"name": "hinton", "alpha": 0.5}


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "xdistill", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_cli_reports_recipe_errors_in_one_line_with_exit_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(broken(lambda d: d["students"][0].update(model="nope"))))
    result = _cli("run", str(path), "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "xdistill: error: students[0].model: unknown model 'nope'; known: " + result.stderr.split("known: ")[1].strip()
    ]
    path.write_text("name: [unclosed")
    result = _cli("run", str(path))
    assert result.returncode == 2 and "not valid YAML" in result.stderr
    assert _cli("run", str(tmp_path / "missing.yaml")).returncode == 2


def test_shape_and_class_mismatches_are_clear(tmp_path):
    # an image model on a time-series set
    path = tmp_path / "shape.yaml"
    path.write_text(yaml.safe_dump(broken(lambda d: d["students"][0].update(model="resnet20"))))
    result = _cli("run", str(path), "--out", str(tmp_path / "a"), "--quiet")
    assert (
        result.returncode == 2 and "students[0]: model 'resnet20' cannot take inputs shaped (1, 150)" in result.stderr
    )
    # teacher weights for another number of classes
    from xdistill.checkpoint import save_weights
    from xdistill.models import build_model

    weights = tmp_path / "teacher.safetensors"
    save_weights(build_model("fcn1d", 1, 5, width=0.5), weights)
    path.write_text(yaml.safe_dump(broken(lambda d: d["teacher"].update(weights=str(weights)))))
    result = _cli("run", str(path), "--out", str(tmp_path / "b"), "--quiet")
    assert (
        result.returncode == 2 and "teacher.weights:" in result.stderr and "does not fit model 'fcn1d'" in result.stderr
    )
