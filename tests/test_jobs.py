"""A study's numbers do not depend on the machine's core count, and seeds run side by side (``--jobs``) give the
numbers they give one after another."""

import os
import subprocess
import sys

import pytest
import torch
import yaml

from xdistill.files import read_json
from xdistill.recipe import default_recipe_path

RECIPE = yaml.safe_load(default_recipe_path().read_text())
RECIPE["seeds"] = [0, 1]
RECIPE["teacher"]["train"] = {"steps": 30}
RECIPE["training"] = {"steps": 10}
RECIPE["students"] = RECIPE["students"][:2]  # alone, kd
RECIPE["evaluation"].update(max_samples=30, examples=1)


def run(recipe, out, *extra, threads: int):
    """The command line in a process whose torch would use ``threads`` threads by itself."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return subprocess.run(
        [sys.executable, "-m", "xdistill", "run", str(recipe), "--out", str(out), "--quiet", *extra],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


def figures(out, seed, student):
    result = read_json(out / f"seed-{seed}" / "evaluation" / f"{student}.json")
    return {k: v for k, v in result.items() if "latency" not in k and "speedup" not in k}  # (timings differ)


@pytest.mark.slow
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores to show that the core count does not matter")
def test_one_after_another_at_one_thread_equals_side_by_side_at_two(tmp_path):
    recipe = tmp_path / "small.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    alone = run(recipe, tmp_path / "in-order", threads=1)
    assert alone.returncode == 0, alone.stderr[-2000:]
    both = run(recipe, tmp_path / "side-by-side", "--jobs", "2", threads=2)
    assert both.returncode == 0, both.stderr[-2000:]
    assert "seed 0: started" in both.stdout and "seed 1: done" in both.stdout
    assert (tmp_path / "side-by-side" / "report" / "report.html").exists()
    for seed in (0, 1):
        for student in ("alone", "kd"):
            assert figures(tmp_path / "in-order", seed, student) == figures(tmp_path / "side-by-side", seed, student)
        from safetensors.torch import load_file

        first = load_file(tmp_path / "in-order" / f"seed-{seed}" / "students" / "kd" / "student.safetensors")
        second = load_file(tmp_path / "side-by-side" / f"seed-{seed}" / "students" / "kd" / "student.safetensors")
        assert all(torch.equal(first[k], second[k]) for k in first)  # bitwise


def test_a_seed_outside_the_list_is_one_line_exit_2(tmp_path):
    recipe = tmp_path / "small.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    done = run(recipe, tmp_path / "run", "--seed", "7", threads=1)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--seed 7: not a seed of the recipe; its seeds are [0, 1]" in done.stderr


def test_threads_are_validated_before_any_work(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml.safe_dump({**RECIPE, "hardware": {"threads": 0}}))
    done = run(recipe, tmp_path / "run", threads=1)
    assert done.returncode == 2 and "hardware.threads" in done.stderr and "'all'" in done.stderr
    assert not (tmp_path / "run").exists()


def test_a_seed_that_fails_in_its_process_is_named_in_one_line(tmp_path):
    """A mistake only the models reveal (a layer path) surfaces in each seed's process: the parent names the
    seeds and the mistake in one line and exits 2, as a run of one seed would."""
    broken = yaml.safe_load(yaml.safe_dump(RECIPE))
    broken["students"][1]["methods"] = ["ce", {"name": "fitnets", "layers": {"nope": "nope"}}]
    recipe = tmp_path / "broken.yaml"
    recipe.write_text(yaml.safe_dump(broken))
    done = run(recipe, tmp_path / "run", "--jobs", "2", threads=1)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "seed(s) 0, 1 failed" in done.stderr and "fitnets" in done.stderr
