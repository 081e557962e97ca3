"""benchmarks/reproduce.py: adding seeds to a finished study reruns nothing that is already done."""

import json

import yaml
from conftest import load_benchmark

from xdistill.recipe import default_recipe_path


def tiny_recipe() -> dict:
    data = yaml.safe_load(default_recipe_path().read_text())
    data.pop("seeds")  # one run
    data["teacher"]["train"] = {"steps": 30}
    data["training"] = {"steps": 10}
    data["students"] = data["students"][:2]  # alone, kd
    data["evaluation"].update(max_samples=30, examples=1)
    return data


def test_more_seeds_reuse_the_finished_ones_and_pair_the_new_ones(tmp_path):
    reproduce = load_benchmark("reproduce")
    first = reproduce.run_seeds("tiny", tiny_recipe(), [0], tmp_path)
    seed0 = tmp_path / "tiny" / "seed0"
    stages = (seed0 / "stages.json").read_text()
    weights = {p: p.stat().st_mtime_ns for p in seed0.rglob("*.safetensors")}
    finals = {"teacher/teacher.safetensors", "students/alone/student.safetensors", "students/kd/student.safetensors"}
    assert finals <= {str(p.relative_to(seed0)) for p in weights}  # (and their checkpoints)

    both = reproduce.run_seeds("tiny", tiny_recipe(), [0, 1], tmp_path)
    assert (seed0 / "stages.json").read_text() == stages  # nothing of seed 0 was redone
    assert {p: p.stat().st_mtime_ns for p in seed0.rglob("*.safetensors")} == weights
    assert json.loads((tmp_path / "tiny" / "seed1" / "stages.json").read_text()).keys() >= {"teacher", "student:kd"}
    for name in ("alone", "kd"):
        row, earlier = both["students"][name], first["students"][name]
        assert len(row["student_accuracy"]) == 2
        assert row["student_accuracy"][0] == earlier["student_accuracy"][0]  # read back, not retrained
    assert len(both["teacher_accuracy"]) == 2
    text = reproduce.table("tiny", both, [0, 1], baseline="alone")
    kd_line = next(line for line in text.splitlines() if line.startswith("| kd "))
    assert "seeds [0, 1]" in text and kd_line.count("|") > 10


def test_students_named_by_a_sweep_members_expanded_name_keep_only_those_values():
    reproduce = load_benchmark("reproduce")
    students = [
        {"name": "no_kd", "methods": ["ce"]},
        {"name": "kd", "methods": ["hinton"]},
        {"name": "tsd", "methods": [{"name": "tsd_published"}], "sweep": {"option": "lam", "values": [0.5, 1.0, 10.0]}},
    ]
    kept = reproduce.kept_students(students, ["no_kd", "tsd[lam=1.0]"])
    assert [s["name"] for s in kept] == ["no_kd", "tsd"] and kept[1]["sweep"]["values"] == [1.0]
    assert reproduce.kept_students(students, ["tsd[lam=3.0]"]) == []
