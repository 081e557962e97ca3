"""Training that converges honestly: validation split, best-epoch selection, normalisation, TrainConfig."""

import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xdistill.config import TrainConfig, resolve
from xdistill.data import ArrayDataset, load_dataset
from xdistill.data.dataset import validation_split
from xdistill.engine import distill
from xdistill.methods import Method
from xdistill.models import build_model
from xdistill.recipe import RecipeError, parse_recipe

QUIET = dict(progress=False, loggers=())


def blobs(n: int = 120, classes: int = 3, seed: int = 0, noise_labels: float = 0.0) -> ArrayDataset:
    """Gaussian blobs as (N, 2, 16) series; optionally a share of labels shuffled (to make overfitting)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, 2, 16)) + y[:, None, None] * 0.8
    if noise_labels:
        flip = rng.random(n) < noise_labels
        y = np.where(flip, rng.integers(0, classes, n), y)
    return ArrayDataset(x, y, [str(c) for c in range(classes)], "blobs")


class RecordInputs(Method):
    """Remembers every training input row it sees (a spy; adds no loss)."""

    needs_teacher = False

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def transform(self, batch, state):
        self.seen.append(batch.x.detach().clone())
        return batch


def rows(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x.reshape(len(x), -1)}


def test_validation_split_is_stratified_seeded_and_disjoint():
    data = blobs(100, classes=4)
    train, val = validation_split(data, 0.2, seed=3)
    assert len(val) == 20 and len(train) == 80
    assert torch.bincount(val.y, minlength=4).tolist() == [5, 5, 5, 5]
    assert not rows(train.x) & rows(val.x)
    again, _ = validation_split(data, 0.2, seed=3)
    assert torch.equal(again.x, train.x)
    other, _ = validation_split(data, 0.2, seed=4)
    assert not torch.equal(other.x, train.x)
    lonely = ArrayDataset(torch.randn(5, 1, 4), torch.tensor([0, 0, 0, 0, 1]), ["a", "b"], "lonely")
    kept, _ = validation_split(lonely, 0.5)
    assert 1 in kept.y.tolist()  # a one-sample class is never moved out of training


def test_training_never_sees_the_test_split_and_selection_uses_only_the_validation_part(tmp_path):
    data = blobs(150)
    train, test = data.subset(range(100)), data.subset(range(100, 150))
    spy = RecordInputs()
    seen_by_forward: list[torch.Tensor] = []
    torch.manual_seed(0)
    student = build_model("fcn1d", 2, 3, width=0.125)
    student.register_forward_pre_hook(lambda module, args: seen_by_forward.append(args[0].detach().clone()))
    distill(None, student, train, [spy, "ce"], epochs=3, batch_size=16, val_fraction=0.2, work_dir=tmp_path, **QUIET)
    trained_on = rows(torch.cat(spy.seen))
    forwarded = rows(torch.cat(seen_by_forward))
    fit_part, val_part = validation_split(train, 0.2, seed=0)
    assert trained_on == rows(fit_part.x)  # every fit sample, nothing else, is trained on
    assert not trained_on & rows(val_part.x)  # the validation part is held out
    assert rows(val_part.x) <= forwarded  # ... and used for selection
    assert not forwarded & rows(test.x)  # the test split is never touched


def test_early_stopping_restores_the_best_epoch(tmp_path):
    data = blobs(90, noise_labels=0.5, seed=1)  # noisy labels: the validation loss rises once it memorises
    torch.manual_seed(0)
    student = build_model("fcn1d", 2, 3, width=0.25)
    result = distill(
        None,
        student,
        data,
        ["ce"],
        epochs=60,
        batch_size=8,
        lr=1e-2,
        patience=5,
        schedule="constant",
        work_dir=tmp_path,
        progress=False,
        loggers=("csv",),
    )
    logged = [r for r in csv.DictReader(open(next(tmp_path.glob("logs/version_*/metrics.csv")))) if r.get("val/loss")]
    losses = [float(r["val/loss"]) for r in logged]
    best = int(np.argmin(losses))
    assert len(losses) < 60, "early stopping never triggered"
    assert len(losses) - 1 - best == 5  # stopped exactly `patience` epochs after the best one
    assert result.metrics["best_epoch"] == best + 1
    _, val = validation_split(data, 0.2, seed=0)
    with torch.no_grad():
        restored = F.cross_entropy(student.eval()(val.x), val.y).item()
    assert restored == pytest.approx(losses[best], rel=1e-4)
    assert restored < losses[-1]


def test_univariate_ucr_sets_are_normalised_per_series():
    train, test = load_dataset("ucr:ItalyPowerDemand")
    assert train.info["normalize"] == "series"
    for x in (train.x, test.x):
        assert torch.allclose(x.mean(-1), torch.zeros(1), atol=1e-4)
        assert torch.allclose(x.std(-1, unbiased=False), torch.ones(1), atol=1e-3)


def test_multivariate_sets_use_training_channel_statistics_and_keep_relative_scale():
    raw_train, raw_test = load_dataset("ucr:BasicMotions", normalize="none")
    train, test = load_dataset("ucr:BasicMotions")
    assert train.info["normalize"] == "channel"
    mean = raw_train.x.double().mean((0, 2), keepdim=True)
    std = raw_train.x.double().std((0, 2), keepdim=True, unbiased=False)
    assert torch.allclose(train.x.double().mean((0, 2)), torch.zeros(6, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(train.x.double().std((0, 2), unbiased=False), torch.ones(6, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(test.x.double(), (raw_test.x.double() - mean) / std, atol=1e-4)  # test uses train stats
    per_series_std = train.x.std(-1)
    assert per_series_std.max() / per_series_std.min() > 10  # not squashed one series at a time


def test_variable_length_multivariate_normalisation_keeps_padding_at_zero():
    train, _ = load_dataset("ucr:JapaneseVowels")
    lengths = train.info["lengths"]
    short = int(np.argmin(lengths))
    assert torch.all(train.x[short, :, lengths[short] :] == 0)


def test_resampling_to_a_fixed_length_is_linear_interpolation():
    raw, _ = load_dataset("ucr:GunPoint", normalize="none")
    short, _ = load_dataset("ucr:GunPoint", normalize="none", length=100)
    assert short.input_shape == (1, 100)
    grid = np.linspace(0, 1, 100)
    expected = np.interp(grid, np.linspace(0, 1, raw.x.shape[-1]), raw.x[7, 0].numpy())
    assert np.allclose(short.x[7, 0].numpy(), expected, atol=1e-5)


def test_non_finite_inputs_are_refused_with_count_and_first_index():
    x = torch.randn(6, 1, 8)
    x[2, 0, 3] = float("nan")
    x[4, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"2 sample\(s\) hold NaN or infinite values \(first at index 2\)"):
        ArrayDataset(x, torch.zeros(6), ["a"], "bad")


def test_train_config_is_what_recipes_and_distill_both_use(tmp_path):
    recipe = parse_recipe(
        {
            "dataset": {"name": "ucr:GunPoint"},
            "teacher": {"model": "fcn1d", "train": {"steps": 10, "patience": 3}},
            "students": [{"name": "s", "model": "fcn1d", "methods": ["hinton"], "train": {"lr": 0.01}}],
            "training": {"batch_size": 8},
        }
    )
    assert isinstance(recipe.teacher.train, TrainConfig) and recipe.teacher.train.patience == 3
    merged = resolve(recipe.students[0].train, "series", "student")
    assert merged.lr == 0.01 and merged.steps == 3000  # family default kept for the unset budget
    assert resolve(TrainConfig(epochs=7), "series", "teacher").epoch_budget(5) == 7
    with pytest.raises(
        RecipeError,
        match=r"^training.patience: Value error, patience needs a validation split|"
        r"^training: patience needs a validation split",
    ):
        parse_recipe(
            {
                "dataset": {"name": "ucr:GunPoint"},
                "teacher": {"model": "fcn1d"},
                "students": [{"name": "s", "model": "fcn1d", "methods": ["ce"]}],
                "training": {"patience": 3, "val_fraction": 0},
            }
        )
    with pytest.raises(TypeError, match="unknown option"):
        distill(None, build_model("fcn1d", 1, 2), blobs(10, 2), ["ce"], epoch=3, work_dir=tmp_path, **QUIET)
    with pytest.raises(ValueError, match="^lr: Input should be greater than 0"):
        distill(None, build_model("fcn1d", 2, 2), blobs(10, 2), ["ce"], lr=0, work_dir=tmp_path, **QUIET)


def test_mismatched_class_counts_are_refused(tmp_path):
    data = blobs(30, classes=3)
    with pytest.raises(ValueError, match="the teacher outputs 5 classes but blobs has 3"):
        distill(
            build_model("fcn1d", 2, 5),
            build_model("fcn1d", 2, 3),
            data,
            ["hinton"],
            epochs=1,
            work_dir=tmp_path,
            **QUIET,
        )
