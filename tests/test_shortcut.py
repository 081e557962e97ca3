"""The shortcut benchmark: generated data with a spurious cue, a teacher trained where the cue means nothing, the
explanation-matching term, and the explainer-free evaluation (flipped / no-cue accuracy, cue reliance)."""

import numpy as np
import pytest
import torch
from torch import nn

from xdistill.data import load_dataset
from xdistill.methods import build_term
from xdistill.methods.base import Batch, Step
from xdistill.metrics.shortcut import cue_mass, shortcut_metrics


def test_the_cue_agrees_with_the_label_as_often_as_asked_and_the_variants_move_it():
    train, test = load_dataset("shortcut_series", n_train=2000, n_test=500, cue_agreement=0.9)
    agree = float((train.shortcut.cue_class == train.y).double().mean())
    assert abs(agree - 0.9) < 0.03
    flipped_x, flipped_cue = test.shortcut.variants["flipped"]
    none_x, none_cue = test.shortcut.variants["none"]
    assert (flipped_cue != test.y).all() and (none_cue == -1).all()
    cue = test.shortcut.cue_mask.bool()
    # outside the cue, the three test variants are the same series; inside it, only the iid one has the spike
    assert torch.equal(test.x[:, 0][~cue], none_x[:, 0][~cue])
    assert torch.allclose((test.x[:, 0][cue] - none_x[:, 0][cue]).abs(), torch.tensor(2.0))  # the cue: ±2 there
    assert test.rationale is not None and (test.rationale.sum(1) == 16).all()  # the evidence: the 16-step motif
    part = test.subset(np.arange(10))
    assert part.shortcut.variants["flipped"][0].shape[0] == 10
    assert torch.equal(part.shortcut.cue_class, test.shortcut.cue_class[:10])


def test_an_uninformative_cue_leaves_the_evidence_where_it_was():
    """The teacher's data (agreement 1/K) and the students' (0.95) share every series but the cue."""
    teacher, _ = load_dataset("shortcut_series", n_train=400, cue_agreement=0.25)
    students, _ = load_dataset("shortcut_series", n_train=400, cue_agreement=0.95)
    assert torch.equal(teacher.y, students.y) and torch.equal(teacher.rationale, students.rationale)
    outside = ~(teacher.shortcut.cue_mask.bool() | students.shortcut.cue_mask.bool())
    assert torch.equal(teacher.x[:, 0][outside], students.x[:, 0][outside])
    informative = float((teacher.shortcut.cue_class == teacher.y).double().mean())
    assert abs(informative - 0.25) < 0.06


class CueReader(nn.Module):
    """Scores each class by how well the cue's steps match its pattern: relies on the shortcut only."""

    def __init__(self, classes=4, width=3, start=2):
        super().__init__()
        from xdistill.data.shortcut import cue_patterns

        self.patterns = torch.as_tensor(cue_patterns(classes, width), dtype=torch.float32)
        self.start, self.width = start, width

    def forward(self, x):
        return x[:, 0, self.start : self.start + self.width] @ self.patterns.T


def test_a_model_that_reads_the_cue_follows_it_everywhere_and_the_metrics_say_so():
    _, test = load_dataset("shortcut_series", n_train=10, n_test=300, cue_agreement=1.0)
    reader = CueReader()
    metrics = shortcut_metrics(reader, reader, test)
    # (a motif at a random place may overlap the cue's steps: a few samples read otherwise)
    assert metrics["student_accuracy_flipped"] < 0.02 and metrics["cue_reliance"] > 0.98
    assert metrics["teacher_cue_reliance"] > 0.98 and metrics["student_accuracy_none"] < 0.5
    assert shortcut_metrics(reader, reader, load_dataset("synthetic_series", n_test=20)[1]) == {}


def test_attribution_mass_on_the_cue_and_on_the_evidence():
    attributions = torch.zeros(2, 1, 10)
    attributions[:, 0, 1] = 3.0  # on the cue
    attributions[:, 0, 6] = -1.0  # on the evidence
    cue, evidence = torch.zeros(2, 10), torch.zeros(2, 10)
    cue[:, 1], evidence[:, 5:8] = 1, 1
    assert cue_mass(attributions, cue, evidence) == {"attribution_on_cue": 0.75, "attribution_on_evidence": 0.25}


def _linear(weight):
    model = nn.Sequential(nn.Flatten(), nn.Linear(weight.shape[1], weight.shape[0], bias=False)).double()
    model[1].weight.data = weight.clone()
    return model


def test_explanation_matching_by_default_is_the_total_variation_between_gradient_x_input_maps():
    torch.manual_seed(0)
    x, y = torch.randn(5, 1, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])
    teacher_w, student_w = torch.randn(3, 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    teacher, student = _linear(teacher_w), _linear(student_w)
    term = build_term("explanation_matching")
    step = Step(Batch(x, y, torch.arange(5)), student, teacher, student(x), teacher(x).detach())
    loss = term.loss(step)
    # by hand: a linear model's gradient x input for class c is x * W[c]; |.| normalised per sample; TV distance
    s = (x[:, 0] * student_w[y]).abs()
    t = (x[:, 0] * teacher_w[y]).abs()
    expected = 0.5 * (s / s.sum(1, keepdim=True) - t / t.sum(1, keepdim=True)).abs().sum(1).mean()
    assert torch.allclose(loss, expected, atol=1e-12)
    grad = torch.autograd.grad(loss, student[1].weight)[0]
    assert grad.abs().sum() > 0  # the loss trains the student (through its input gradient: double backward)
    same = Step(Batch(x, y, torch.arange(5)), teacher, teacher, teacher(x), teacher(x).detach())
    assert term.loss(same).abs() < 1e-12


OFFICIAL = {"target": "teacher_or_other", "distance": "geo_l1", "multiscale": True}


def test_explanation_matching_with_the_official_options_is_the_multiscale_geo_l1_on_signed_maps():
    """By hand, on linear models (gradient x input for class c is x * W[c]): maps of length 32 and their 2x-pooled
    copies (16, 8), each pair at L1 / (sqrt(mean|S|) sqrt(mean|T|)), averaged over the three scales."""
    from xdistill.methods.base import StepState

    torch.manual_seed(1)
    x, y = torch.randn(6, 2, 16, dtype=torch.float64), torch.randint(0, 4, (6,))
    teacher_w, student_w = torch.randn(4, 32, dtype=torch.float64), torch.randn(4, 32, dtype=torch.float64)
    teacher, student = _linear(teacher_w), _linear(student_w)
    term = build_term("explanation_matching", **OFFICIAL)
    step = Step(
        Batch(x, y, torch.arange(6)), student, teacher, student(x), teacher(x).detach(), state=StepState(3, 9, 0)
    )
    target = term._targets(step)
    s, t = x * student_w[target].reshape(6, 2, 16), x * teacher_w[target].reshape(6, 2, 16)
    expected = 0.0
    for size in (16, 8):  # (B, 2, 16) and one pooled copy; 8 // 2 = 4 < 8 stops the pyramid
        ps, pt = torch.nn.functional.adaptive_avg_pool1d(s, size), torch.nn.functional.adaptive_avg_pool1d(t, size)
        scale = ps.abs().mean((1, 2)).sqrt() * pt.abs().mean((1, 2)).sqrt()
        expected = expected + ((ps - pt).abs().mean((1, 2)) / scale).mean() / 2
    assert torch.allclose(term.loss(step), expected, atol=1e-12)
    same = Step(
        Batch(x, y, torch.arange(6)), teacher, teacher, teacher(x), teacher(x).detach(), state=StepState(3, 9, 0)
    )
    assert term.loss(same).abs() < 1e-12
    doubled = _linear(2 * teacher_w)  # S = 2T: |2 - 1| / sqrt(2) at every scale
    twice = Step(
        Batch(x, y, torch.arange(6)), doubled, teacher, doubled(x), teacher(x).detach(), state=StepState(3, 9, 0)
    )
    assert torch.allclose(term.loss(twice), torch.tensor(2**-0.5, dtype=torch.float64), atol=1e-12)


def test_the_official_target_is_the_teachers_class_half_of_the_time_and_a_random_other_class_else():
    from xdistill.methods.base import StepState

    logits = torch.randn(4000, 5)
    predicted = logits.argmax(1)
    x, index = torch.zeros(4000, 1, 3), torch.arange(4000)
    term = build_term("explanation_matching", **OFFICIAL)

    def targets(step_index):
        step = Step(
            Batch(x, predicted, index), nn.Identity(), nn.Identity(), logits, logits, state=StepState(step_index, 9, 7)
        )
        return term._targets(step)

    first = targets(1)
    share = float((first == predicted).double().mean())
    assert abs(share - 0.5) < 0.03  # the other half never names the teacher's class
    others = first[first != predicted]
    counts = torch.bincount((others - predicted[first != predicted]) % 5, minlength=5)
    assert counts[0] == 0 and (counts[1:].double() / counts[1:].sum() - 0.25).abs().max() < 0.04
    assert torch.equal(first, targets(1)) and not torch.equal(first, targets(2))  # keyed on (seed, step, sample)


def test_explanation_matching_refuses_token_inputs():
    term = build_term("explanation_matching")
    with pytest.raises(ValueError, match="needs real-valued inputs"):
        term.check(nn.Identity(), nn.Identity(), torch.zeros(2, 5, dtype=torch.long))


#: the small budgets of the sanity test, per recipe (text: the teacher as shipped, the student a third of it)
SMALL = {
    "shortcut_series": ({"steps": 400}, {"steps": 200}),
    "shortcut_text": ({"epochs": 30, "batch_size": 32, "lr": 0.002}, {"epochs": 20, "batch_size": 32, "lr": 0.002}),
}


def _recipe(tmp_path, change=None, students=("alone",), name="shortcut_series"):
    import yaml

    from xdistill.recipe import default_recipe_path

    data = yaml.safe_load((default_recipe_path().parent / f"{name}.yaml").read_text())
    data["teacher"]["train"], data["training"] = SMALL[name]
    data["students"] = [s for s in data["students"] if s["name"] in students]
    if change:
        change(data)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(recipe, out):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "xdistill", "run", str(recipe), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=recipe.parent,
    )


def test_a_teacher_dataset_unlike_the_studys_is_refused_in_one_line(tmp_path):
    recipe = _recipe(tmp_path, lambda d: d["teacher"]["dataset"]["options"].update(length=64))
    done = _run(recipe, tmp_path / "run")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert (
        done.stderr.startswith("xdistill: error: teacher.dataset: its inputs (1, 64)")
        and not (tmp_path / "run").exists()
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["shortcut_series", "shortcut_text"])
def test_the_shortcut_recipe_shows_the_shortcut_a_student_alone_takes_and_the_teacher_ignores(tmp_path, name):
    """Sanity at a small budget (``SMALL``): the student trained alone on the transfer set falls at least 20 points
    when the cue lies; the teacher, which learnt where the cue means nothing, stays within 5 points of its accuracy
    where the cue agrees."""
    import json

    recipe = _recipe(tmp_path, name=name)
    done = _run(recipe, tmp_path / "run")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "run" / "evaluation" / "alone.json").read_text())
    assert result["student_accuracy_all"] - result["student_accuracy_flipped"] >= 0.20, result
    assert abs(result["teacher_accuracy_all"] - result["teacher_accuracy_flipped"]) <= 0.05, result
    assert result["cue_reliance"] > 3 * result["teacher_cue_reliance"] and "student_accuracy_none" in result


@pytest.mark.parametrize(
    "name, options",
    [("shortcut_images", {}), ("shortcut_text", {}), ("coloured_fashion_mnist", {"max_train": 300, "max_test": 100})],
)
def test_every_family_plants_its_cue_where_its_mask_says_and_the_variants_move_only_the_cue(name, options):
    from pathlib import Path

    if name == "coloured_fashion_mnist" and not Path("/usr/share/datasets/fashion-mnist").exists():
        pytest.skip("needs the Debian package dataset-fashion-mnist")
    train, test = load_dataset(name, cue_agreement=0.9, **options)
    assert abs(float((train.shortcut.cue_class == train.y).double().mean()) - 0.9) < 0.06
    flipped, flipped_cue = test.shortcut.variants["flipped"]
    none, none_cue = test.shortcut.variants["none"]
    assert (flipped_cue != test.y).all() and (none_cue == -1).all() and flipped.shape == test.x.shape
    if name == "coloured_fashion_mnist":  # the colour is the cue: same garment, other tint (its channels' ratios)
        assert not torch.equal(flipped, test.x) and torch.equal(test.y, test.y)
        return
    cue = test.shortcut.cue_mask.bool()
    x, f, z = (v.reshape(len(v), *cue.shape[1:]) if v.ndim > cue.ndim else v for v in (test.x, flipped, none))
    assert torch.equal(x[~cue], f[~cue]) and torch.equal(x[~cue], z[~cue])  # elsewhere the same inputs
    moved = (x != f).reshape(len(x), -1).any(1)
    assert moved.float().mean() > 0.9  # the flipped cue differs from the iid one wherever they name other classes


def test_the_text_phrase_names_its_class_at_the_stated_purity_and_the_cue_token_sits_first():
    train, _ = load_dataset("shortcut_text", cue_agreement=1.0, purity=0.8, n_train=2000, n_test=10)
    phrase = train.x[train.rationale.bool()].reshape(len(train.x), 3)
    word_class = (phrase - 1) // 3  # ids 1..9: class c's words are 1 + 3c .. 3 + 3c, in order
    assert ((phrase - 1) % 3 == torch.arange(3)).all()  # each word sits at its place in the phrase
    assert abs(float((word_class == train.y[:, None]).double().mean()) - 0.8) < 0.02
    assert (train.x[:, 0] == 10 + train.y).all()  # the cue token (ids 10..12) names the label at agreement 1.0
    with pytest.raises(ValueError, match="purity must be in"):
        load_dataset("shortcut_text", purity=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["shortcut_images", "shortcut_text", "shortcut_coloured_fashion_mnist"])
def test_each_shortcut_recipe_runs_and_reports_flipped_accuracy_and_cue_reliance(tmp_path, recipe):
    import json
    from pathlib import Path

    import yaml

    from xdistill.recipe import default_recipe_path

    if "fashion" in recipe and not Path("/usr/share/datasets/fashion-mnist").exists():
        pytest.skip("needs the Debian package dataset-fashion-mnist")
    data = yaml.safe_load((default_recipe_path().parent / f"{recipe}.yaml").read_text())
    data["teacher"]["train"] = {"steps": 30}
    data["training"] = {"steps": 10}
    for spec in (data["dataset"], data["teacher"]["dataset"]):
        if "max_train" in spec["options"]:
            spec["options"].update(max_train=300, max_test=100)
    data["evaluation"]["max_samples"] = 20
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(data))
    done = _run(tmp_path / "recipe.yaml", tmp_path / "run")
    assert done.returncode == 0, done.stderr[-2000:]
    for student in data["students"]:
        result = json.loads((tmp_path / "run" / "evaluation" / f"{student['name']}.json").read_text())
        assert {"student_accuracy_flipped", "student_accuracy_none", "cue_reliance"} <= set(result), student["name"]
        assert any(key.startswith("attribution_on_cue@") for key in result), student["name"]


def test_each_explainer_reports_where_a_model_that_reads_the_cue_puts_its_attribution():
    from xdistill.metrics import AlignmentConfig
    from xdistill.metrics.shortcut import explainer_masses

    _, test = load_dataset("shortcut_series", n_train=10, n_test=40)
    config = AlignmentConfig(
        "saliency",
        {},
        "window",
        {"size": 4},
        3,
        "label",
        also=[{"explainer": "occlusion", "explainer_options": {"window": 1}}],
    )
    reader = CueReader()
    masses = explainer_masses(reader, reader, test, config, limit=40)
    assert masses["attribution_on_cue@saliency"] == pytest.approx(1.0)  # its gradient lives on the cue's steps
    assert masses["teacher_attribution_on_cue@occlusion"] == pytest.approx(1.0, abs=1e-6)
    assert masses["attribution_on_evidence@saliency"] < 0.2  # only where a motif overlaps the cue


def test_explanation_matching_alone_is_a_student_only_at_the_official_distance():
    from xdistill.methods.base import build_terms

    official = [{"name": "explanation_matching", **OFFICIAL}]
    assert [t.name for t in build_terms(official)] == ["explanation_matching"]  # the official student
    with pytest.raises(ValueError, match="no term that fits the student's outputs"):
        build_terms(["explanation_matching"])
