"""A study grows: adding, changing or removing a student, or changing the evaluation, redoes only the stages whose
own inputs changed; a change to what the teacher depends on is refused, naming the fields."""

import subprocess
import sys

import pytest
import yaml

from xdistill.files import read_json
from xdistill.recipe import default_recipe_path

SMALL = yaml.safe_load(default_recipe_path().read_text())
SMALL.pop("seeds")
SMALL["teacher"]["train"] = {"steps": 40}
SMALL["training"] = {"steps": 12}
SMALL["students"] = SMALL["students"][:2]  # alone, kd
SMALL["evaluation"].update(max_samples=20, also=[])


def run(tmp_path, data, *extra):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(data))
    return subprocess.run(
        [sys.executable, "-m", "xdistill", "run", str(recipe), "--out", str(tmp_path / "run"), *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_adding_and_changing_students_redoes_only_their_stages(tmp_path):
    assert run(tmp_path, SMALL).returncode == 0
    out = tmp_path / "run"
    first = read_json(out / "stages.json")
    teacher_bytes = (out / "teacher" / "teacher.safetensors").read_bytes()
    alone_bytes = (out / "students" / "alone" / "student.safetensors").read_bytes()

    grown = yaml.safe_load(yaml.safe_dump(SMALL))
    grown["students"][1]["options"]["width"] = 0.25  # kd changed
    grown["students"].append(dict(SMALL["students"][1], name="kd_wide", options={"width": 0.5}))  # one added
    grown["evaluation"]["k"] = 4
    done = run(tmp_path, grown)
    assert done.returncode == 0, done.stderr
    assert "the recipe changed in evaluation.k, students.kd.options.width, students.kd_wide" in done.stderr
    stages = read_json(out / "stages.json")
    assert stages["teacher"] == first["teacher"] and stages["student:alone"] == first["student:alone"]
    assert (out / "teacher" / "teacher.safetensors").read_bytes() == teacher_bytes  # not retrained
    assert (out / "students" / "alone" / "student.safetensors").read_bytes() == alone_bytes
    assert stages["student:kd"] != first["student:kd"] and "student:kd_wide" in stages
    assert "student alone: kept (finished earlier)" in done.stderr  # only kd and kd_wide trained
    assert "student alone: fcn1d" not in done.stderr and "student kd: fcn1d" in done.stderr
    figures = read_json(out / "report" / "figures.json")
    assert [s["student"] for s in figures["students"]] == ["alone", "kd", "kd_wide"]
    assert figures["evaluation"]["k"] == 4 and all(s["student_params"] > 0 for s in figures["students"])
    kd = read_json(out / "evaluation" / "kd.json")
    assert kd["student_params"] > read_json(out / "evaluation" / "alone.json")["student_params"]  # the new width


@pytest.mark.slow
def test_a_change_the_teacher_depends_on_is_refused_naming_the_fields(tmp_path):
    assert run(tmp_path, SMALL).returncode == 0
    other = yaml.safe_load(yaml.safe_dump(SMALL))
    other["teacher"]["train"]["steps"] = 50
    other["dataset"]["max_train"] = 40
    refused = run(tmp_path, other)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "differs in dataset.max_train, teacher.train.steps" in refused.stderr and "--restart" in refused.stderr
    assert run(tmp_path, other, "--restart").returncode == 0
