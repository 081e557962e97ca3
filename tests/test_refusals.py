"""Every recipe and data mistake is refused before work starts: exit 2, one line naming the field or file,
nothing trained, nothing left in the run directory; anything else is exit 1 with the traceback in log.txt."""

import io
import json
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xdistill.cli import main
from xdistill.recipe import default_recipe_path

BASE = yaml.safe_load(default_recipe_path().read_text())
BASE.pop("seeds")  # one run
BASE["seed"] = 0
BASE["teacher"]["train"] = {"steps": 5}
BASE["training"] = {"steps": 5}
BASE["students"][2]["methods"][1].update(perturbations=4, bank=None)
BASE["evaluation"]["max_samples"] = 10


def cli(*args: str) -> tuple[int, str]:
    stderr, stdout = io.StringIO(), io.StringIO()
    with redirect_stderr(stderr), redirect_stdout(stdout):
        code = main(list(args))
    return code, stderr.getvalue()


def run_recipe(tmp_path: Path, data, out: Path | None = None, command: str = "run") -> tuple[int, str, Path]:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    out = out or tmp_path / "run"
    code, message = cli(command, str(recipe), "--out", str(out), "--quiet")
    return code, message, out


def changed(change):
    data = json.loads(json.dumps(BASE))
    change(data)
    return data


FITNETS = {"name": "fitnets", "layers": {"nope.1": "features.1"}}


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda d: d["evaluation"].update(explainer_options={"windw": 5}),
            r"^evaluation.explainer_options: unknown option 'windw'; accepted: .*window",
        ),
        (
            lambda d: d["evaluation"].update(part_options={"sise": 5}),
            r"^evaluation.part_options: unknown option 'sise'; accepted: size",
        ),
        (
            lambda d: d["evaluation"].update(explainer_options={"window": "five"}),
            r"^evaluation.explainer_options: option 'window': 'five' is not a valid int",
        ),
        (lambda d: d["evaluation"].update(k=500), r"^evaluation.k: 500 is more than the 15 window parts"),
        (
            lambda d: d["students"][1].update(methods=["hinton", FITNETS]),
            r"^students\[1\].methods: fitnets: student layer: no module at path 'nope.1'",
        ),
        (
            lambda d: d["students"][2]["methods"][1].update(window=500),
            r"^students\[2\].methods: tsd: window 500 must be shorter than the series \(150 steps\)",
        ),
        (lambda d: d.update(precision="bf17"), r"^precision: .*unknown precision 'bf17'"),
        (
            lambda d: d["students"][0].update(options={"widht": 0.125}),
            r"^students\[0\].options: unknown option 'widht'; accepted: width, activation$",
        ),
        (
            lambda d: d["teacher"].update(options={"width": "half"}),
            r"^teacher.options: option 'width': 'half' is not a valid float",
        ),
        (
            lambda d: d["students"][2]["methods"][1].update(perturbations="many"),
            r"^students\[2\].methods\[1\]: tsd option 'perturbations': 'many' is not a valid int",
        ),
        (
            lambda d: d.update(training={"steps": 40, "epochs": 3}),
            r"^training: .*give either steps \(40\) or epochs \(3\)",
        ),
        (
            lambda d: d.update(training={"steps": 5, "patience": 5, "monitor": "val_loss"}),
            r"^students\[0\].train: patience needs a validation split",
        ),  # only once the series defaults apply
        (
            lambda d: d["students"][0].update(train={"augment": [{"name": "rotate"}]}),
            r"^students\[0\].train: .*unknown augmentation 'rotate'",
        ),
        (
            lambda d: d["evaluation"].update(
                also=[
                    {
                        "explainer": d["evaluation"]["explainer"],
                        "explainer_options": d["evaluation"]["explainer_options"],
                    }
                ]
            ),
            r"^evaluation.also\[0\]: \w+ with these options repeats evaluation.explainer, so it would be measured twice",
        ),
        (
            lambda d: d["evaluation"].update(also=[{"explainer": "saliency"}, {"explainer": "saliency"}]),
            r"^evaluation.also\[1\]: saliency with these options repeats evaluation.also\[0\]",
        ),
        (
            lambda d: d["students"][1].update(methods=["ce", "hinton"]),
            r"^students\[1\].methods: term 'ce' appears once written directly and once inside preset 'hinton', so it "
            r"would train twice; .*\{name: ce, weight: w, again: true\}",
        ),
        (
            lambda d: d["students"][2].update(methods=["ce", {"name": "tsd_published", "perturbations": 4}]),
            r"^students\[2\].methods: term 'ce' appears once written directly and once inside preset 'tsd_published'",
        ),
        (
            lambda d: d["students"][0].update(methods=["ce", {"name": "ce", "weight": 0.5}]),
            r"^students\[0\].methods: term 'ce' appears twice, written directly",
        ),
        (lambda d: d["dataset"].update(name="ucr:NoSuchSet"), r"^dataset.name: "),
        (lambda d: d["teacher"].update(options={"widht": 0.5}), r"^teacher.options: "),
        (lambda d: d["teacher"].update(weights="missing.safetensors"), r"^teacher.weights: "),
    ],
)
def test_each_mistake_is_refused_before_work_with_one_line_and_nothing_left(tmp_path, change, message):
    started = time.perf_counter()
    code, stderr, out = run_recipe(tmp_path, changed(change))
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    import re

    assert re.search(message, stderr.removeprefix("xdistill: error: ")), stderr
    assert not out.exists()  # nothing written: the corrected recipe runs into the same directory
    assert time.perf_counter() - started < 10


def test_a_refusal_in_an_existing_directory_leaves_it_as_it_was_and_the_corrected_recipe_is_accepted(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, _ = run_recipe(tmp_path, changed(lambda d: d["teacher"].update(options={"widht": 0.5})), out)
    assert code == 2 and sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    code, stderr, _ = run_recipe(tmp_path, BASE, out, command="teach")
    assert code == 0, stderr
    assert (out / "teacher" / "teacher.safetensors").exists()


def test_a_duplicate_yaml_key_is_refused_naming_both_lines(tmp_path):
    text = yaml.safe_dump(BASE) + "seed: 3\n"
    code, stderr, out = run_recipe(tmp_path, text)
    assert code == 2 and "seed: given twice" in stderr and not out.exists(), stderr


def test_a_busy_run_directory_is_exit_2(tmp_path):
    from xdistill.files import DirectoryLock

    out = tmp_path / "run"
    with DirectoryLock(out, "run directory"):
        code, stderr, _ = run_recipe(tmp_path, BASE, out)
    assert code == 2 and "is in use by another xdistill process" in stderr, stderr


def test_an_internal_error_is_exit_1_with_the_traceback_in_the_log(tmp_path, monkeypatch):
    from xdistill.study import Study

    def broken(self, *args, **kwargs):
        raise KeyError("a bug of ours")

    monkeypatch.setattr(Study, "teacher", broken)
    code, stderr, out = run_recipe(tmp_path, BASE)
    assert code == 1 and stderr.count("\n") == 1 and f"details in {out / 'log.txt'}" in stderr, stderr
    assert "Traceback" in (out / "log.txt").read_text() and "a bug of ours" in (out / "log.txt").read_text()
    code, stderr = cli("--debug", "run", str(tmp_path / "recipe.yaml"), "--out", str(out), "--quiet")
    assert code == 1 and "Traceback" in stderr


# ---- data files -------------------------------------------------------------------------------------------------


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("label,t0,t1,t2,t3\n" + "\n".join(rows) + "\n")
    return path


def written(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def series_npz(path: Path, **overrides) -> Path:
    rng = np.random.default_rng(0)
    arrays = dict(
        x_train=rng.normal(size=(6, 12)),
        y_train=np.arange(6) % 2,
        x_test=rng.normal(size=(4, 12)),
        y_test=np.arange(4) % 2,
    )
    arrays.update(overrides)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda d: f"csv:{write_csv(d / 'a_TRAIN.csv', ['a,1,2,,4', 'b,1,2,3,4'])}",
            r"a_TRAIN.csv line 2, column 't2': an empty cell inside the series",
        ),
        (
            lambda d: f"csv:{write_csv(d / 'b_TRAIN.csv', ['a,1,2,3,4,5', 'b,1,2,3,4'])}",
            r"b_TRAIN.csv line 2: 6 cells but the header names 5 columns",
        ),
        (
            lambda d: f"npz:{series_npz(d / 'e.npz', x_train=np.zeros((0, 12)), y_train=np.zeros(0, int))}",
            r"x_train holds no samples|x_train/y_train",
        ),
        (lambda d: f"ts:{written(d / 'z_TRAIN.ts', b'')}", r"z_TRAIN.ts is empty \(0 bytes\)"),
        (lambda d: f"npz:{(d / 'folder.npz').mkdir() or d / 'folder.npz'}", r"folder.npz is a directory"),
        (lambda d: f"npz:{written(d / 'r.npz', np.random.default_rng(0).bytes(300))}", r"r.npz is not an .npz archive"),
        (
            lambda d: f"npz:{series_npz(d / 'one.npz', y_train=np.zeros(6, int), y_test=np.zeros(4, int))}",
            r"the training data has 1 class; distillation needs at least 2",
        ),
        (
            lambda d: (
                f"npz:{series_npz(d / 'nan.npz', x_test=np.where(np.arange(48).reshape(4, 12) == 30, np.nan, 0.0))}"
            ),
            r"1 test sample\(s\) hold NaN or infinite values \(first: test sample 2\)",
        ),
    ],
)
def test_data_files_that_cannot_be_read_faithfully_are_refused_naming_the_file(tmp_path, make, message):
    import re
    import warnings

    spec = make(tmp_path)
    data = changed(lambda d: d.update(dataset={"name": spec}))
    if spec.startswith("csv:"):
        (tmp_path / Path(spec[4:]).name.replace("TRAIN", "TEST")).write_text(
            "label,t0,t1,t2,t3\na,1,2,3,4\nb,1,2,3,4\n"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning before the refusal
        code, stderr, out = run_recipe(tmp_path, data)
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert re.search(message, stderr), stderr
    assert "allow_pickle" not in stderr and not out.exists()


# ---- fuzzing nested options ----------------------------------------------------------------------------------------

NESTED = [
    ("evaluation", "explainer_options"),
    ("evaluation", "part_options"),
    ("students", 2, "methods", 1),
    ("students", 1, "methods", 1),
    ("students", 0, "train"),
    ("teacher", "train"),
]


@st.composite
def nested_mistake(draw):
    data = json.loads(json.dumps(BASE))
    data["students"][1]["methods"] = ["ce", {"name": "kd", "weight": 0.9}]
    path = draw(st.sampled_from(NESTED))
    node = data
    for key in path[:-1]:
        node = node[key]
    target = node.setdefault(path[-1], {}) if isinstance(node, dict) else node[path[-1]]
    if draw(st.booleans()):  # an unknown option name
        target["zz_" + draw(st.text("abcdefgh", min_size=1, max_size=6))] = draw(st.integers(0, 5))
    else:  # a known option with a value of the wrong type
        known = {"explainer_options": "window", "part_options": "size", "train": "batch_size"}.get(path[-1])
        if known is None:
            known = "perturbations" if target.get("name") == "tsd" else "temperature"
        target[known] = draw(
            st.sampled_from(["many", {"a": 1}])
        )  # invalid for every annotation (a list may be a tuple)
    return data


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=nested_mistake())
def test_nested_option_mistakes_are_refused_up_front(tmp_path, data):
    out = tmp_path / f"out{abs(hash(json.dumps(data, sort_keys=True)))}"
    code, stderr, _ = run_recipe(tmp_path, data, out)
    assert code == 2 and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert not out.exists()


def test_audit_options_are_checked_before_any_model_is_loaded(tmp_path):
    code, stderr = cli(
        "audit",
        "--teacher",
        "fcn1d",
        "--student",
        "fcn1d",
        "--data",
        "ucr:GunPoint",
        "--teacher-weights",
        "nowhere.safetensors",
        "--student-weights",
        "nowhere.safetensors",
        "--explainer",
        "occlusion",
        "--explainer-options",
        '{"windw": 5}',
        "--out",
        str(tmp_path / "a"),
    )
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert "--explainer-options: unknown option 'windw'" in stderr and not (tmp_path / "a").exists()


@st.composite
def corrupt_csv(draw):
    """A small CSV of series with one corruption the reader must refuse: an empty cell inside a series, a word,
    a row with more cells than the header, or a single class."""
    rows = [
        [str(label), *[f"{v:.2f}" for v in draw(st.lists(st.floats(-3, 3), min_size=5, max_size=5))]]
        for label in ("a", "b", "a", "b")
    ]
    kind = draw(st.sampled_from(["gap", "word", "extra", "one_class"]))
    row = draw(st.integers(0, 3))
    if kind == "gap":
        rows[row][draw(st.integers(1, 4))] = ""  # (the last cell stays: the gap is inside the series)
    elif kind == "word":
        rows[row][draw(st.integers(1, 5))] = draw(st.sampled_from(["x", "n/a", "1,2"]))
    elif kind == "extra":
        rows[row].append("1.0")
    else:
        rows = [["a", *r[1:]] for r in rows]
    return "label,t0,t1,t2,t3,t4\n" + "\n".join(",".join(r) for r in rows) + "\n"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=corrupt_csv())
def test_corrupt_csv_files_are_refused_naming_the_file(tmp_path, text):
    name = f"d{abs(hash(text))}"
    (tmp_path / f"{name}_TRAIN.csv").write_text(text)
    (tmp_path / f"{name}_TEST.csv").write_text("label,t0,t1,t2,t3,t4\na,1,2,3,4,5\nb,1,2,3,4,5\n")
    data = changed(lambda d: d.update(dataset={"name": f"csv:{tmp_path / f'{name}_TRAIN.csv'}"}))
    out = tmp_path / f"out-{name}"
    code, stderr, _ = run_recipe(tmp_path, data, out)
    assert code == 2 and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert f"{name}_TRAIN" in stderr, stderr  # the file (or its dataset name, csv:<stem>)
    assert not out.exists()


def test_a_term_repeated_on_purpose_with_again_trains_both(tmp_path):
    from xdistill.methods import Objective

    objective = Objective.build(["hinton", {"name": "ce", "weight": 0.4, "again": True}])
    assert objective.names == ["ce", "kd", "ce#2"] and [t.weight for t in objective.losses][2] == 0.4
