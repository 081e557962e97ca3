import csv

import pytest
import torch

from xdistill.checkpoint import load_tree, load_weights
from xdistill.data import load_dataset
from xdistill.engine import distill, train_teacher
from xdistill.methods import Batch, Step, Term, build_terms, soft_kl, term_from_spec
from xdistill.metrics import AlignmentConfig, evaluate_pair, predict
from xdistill.models import build_model
from xdistill.training import train_classifier

FAST = dict(batch_size=16, lr=3e-3, progress=False, loggers=())


@pytest.fixture(scope="module")
def gunpoint():
    return load_dataset("ucr:GunPoint")


@pytest.fixture(scope="module")
def teacher(gunpoint):
    torch.manual_seed(0)
    model = build_model("fcn1d", 1, 2, width=0.5)
    train_classifier(model, gunpoint.train, epochs=60, lr=3e-3, batch_size=16)
    return model


def student():
    torch.manual_seed(0)
    return build_model("fcn1d", 1, 2, width=0.125)


@pytest.mark.slow
def test_tsd_student_aligns_with_teacher_better_than_a_student_alone(gunpoint, teacher, tmp_path):
    """Same budget, seed and initialisation: only the loss differs."""
    train, test = gunpoint
    config = AlignmentConfig("occlusion", {"window": 10, "stride": 10}, "window", {"size": 10}, k=3)
    alone = distill(teacher, student(), train, ["ce"], steps=300, seed=0, work_dir=tmp_path / "ce", **FAST).student
    tsd = distill(
        teacher,
        student(),
        train,
        ["ce", {"name": "tsd", "perturbations": 20, "window": 10}],
        steps=300,
        seed=0,
        work_dir=tmp_path / "tsd",
        **FAST,
    ).student
    r_alone = evaluate_pair(teacher, alone, test.x, test.y, config, cost=False)
    r_tsd = evaluate_pair(teacher, tsd, test.x, test.y, config, cost=False)
    assert r_tsd["saliency_spearman"].mean > r_alone["saliency_spearman"].mean + 0.15
    assert r_tsd["topk_focus"].mean > r_alone["topk_focus"].mean
    assert r_tsd["student_accuracy"] > 0.65


def test_losses_are_finite_and_decrease(gunpoint, teacher, tmp_path):
    distill(
        teacher,
        student(),
        gunpoint.train,
        ["ce", {"name": "tsd", "window": 10, "weight": 2.0}],
        epochs=12,
        seed=0,
        work_dir=tmp_path,
        batch_size=16,
        lr=3e-3,
        progress=False,
        loggers=("csv",),
    )
    rows = list(csv.DictReader(open(next(tmp_path.glob("logs/version_*/metrics.csv")))))
    epochs = [r for r in rows if r.get("train/loss")]
    for row in epochs:  # each term logged raw and weighted; the loss is their weighted sum
        assert float(row["train/tsd_weighted"]) == pytest.approx(2.0 * float(row["train/tsd"]), rel=1e-6)
        assert float(row["train/loss"]) == pytest.approx(
            float(row["train/ce"]) + float(row["train/tsd_weighted"]), rel=1e-6
        )
    for term in ("train/loss", "train/ce", "train/tsd"):
        values = [float(r[term]) for r in epochs]
        assert all(torch.isfinite(torch.tensor(values))), term
        assert sum(values[-3:]) < sum(values[:3]), term


def test_checkpoint_is_safetensors_without_teacher_and_resume_continues(gunpoint, teacher, tmp_path):
    first = distill(teacher, student(), gunpoint.train, ["hinton"], epochs=2, seed=0, work_dir=tmp_path, **FAST)
    last = tmp_path / "checkpoints" / "last.safetensors"
    tree = load_tree(last)
    first_epoch = tree["epoch"]
    assert all(not k.startswith("teacher") for k in tree["state_dict"])
    assert any(k.startswith("student.") for k in tree["state_dict"])
    assert len(first.epoch_seconds) == 2
    resumed = distill(teacher, student(), gunpoint.train, ["hinton"], epochs=4, seed=0, work_dir=tmp_path, **FAST)
    assert len(resumed.epoch_seconds) == 2  # epochs 3 and 4 only
    assert load_tree(last)["epoch"] == first_epoch + 2
    reloaded = load_weights(build_model("fcn1d", 1, 2, width=0.125), tmp_path / "student.safetensors")
    assert torch.allclose(predict(reloaded, gunpoint.test.x), predict(resumed.student, gunpoint.test.x))


def test_teacher_logit_cache_is_used_only_for_deterministic_transforms(gunpoint, teacher, tmp_path):
    kd = distill(
        teacher, student(), gunpoint.train, ["hinton"], epochs=1, work_dir=tmp_path / "a", checkpoint=False, **FAST
    )
    assert kd.used_logit_cache
    no_cache = distill(
        teacher,
        student(),
        gunpoint.train,
        ["hinton"],
        epochs=1,
        work_dir=tmp_path / "b",
        checkpoint=False,
        teacher_logit_cache=False,
        **FAST,
    )
    assert not no_cache.used_logit_cache
    # cached and uncached runs train the same student (same seed, same teacher outputs)
    assert torch.allclose(predict(kd.student, gunpoint.test.x), predict(no_cache.student, gunpoint.test.x), atol=1e-4)
    overlay = distill(
        teacher,
        student(),
        gunpoint.train,
        [{"name": "kd_ig", "n_steps": 4}],
        epochs=1,
        work_dir=tmp_path / "c",
        checkpoint=False,
        **FAST,
    )
    assert not overlay.used_logit_cache
    augmented = distill(
        teacher,
        student(),
        gunpoint.train,
        ["hinton"],
        epochs=1,
        work_dir=tmp_path / "d",
        checkpoint=False,
        augment=[{"name": "jitter", "sigma": 0.05}],
        **FAST,
    )
    assert not augmented.used_logit_cache  # the input changes every epoch


def test_feature_methods_train(gunpoint, teacher, tmp_path):
    for method in (
        {"name": "fitnets", "layers": {"features.1": "features.1"}},
        {"name": "attention_transfer", "layers": [["features.2", "features.2"]]},
    ):
        result = distill(
            teacher,
            student(),
            gunpoint.train,
            ["hinton", method],
            epochs=2,
            work_dir=tmp_path / method["name"],
            checkpoint=False,
            **FAST,
        )
        assert all(torch.isfinite(torch.tensor(v)) for v in result.metrics.values())
        assert method["name"] in result.metrics.__repr__()


def test_terms_compose_kd_and_tsd_with_weights(gunpoint, teacher, tmp_path):
    result = distill(
        teacher,
        student(),
        gunpoint.train,
        [
            "ce",
            {"name": "kd", "weight": 0.5, "temperature": 4},
            {"name": "tsd", "weight": 1, "perturbations": 5, "window": 10},
        ],
        epochs=2,
        work_dir=tmp_path,
        checkpoint=False,
        **FAST,
    )
    m = result.metrics
    assert {"train/ce", "train/kd", "train/tsd"} <= set(m)
    assert m["train/kd_weighted"] == pytest.approx(0.5 * m["train/kd"])
    assert m["train/loss"] == pytest.approx(m["train/ce"] + 0.5 * m["train/kd"] + m["train/tsd"], rel=1e-6)


def test_a_zero_weight_term_trains_exactly_as_without_it(gunpoint, teacher, tmp_path):
    a = distill(teacher, student(), gunpoint.train, ["ce"], epochs=2, work_dir=tmp_path / "a", checkpoint=False, **FAST)
    b = distill(
        teacher,
        student(),
        gunpoint.train,
        ["ce", {"name": "kd", "weight": 0}],
        epochs=2,
        work_dir=tmp_path / "b",
        checkpoint=False,
        **FAST,
    )
    for (name, x), y in zip(a.student.state_dict().items(), b.student.state_dict().values()):
        assert torch.equal(x, y), name


def test_train_teacher_and_validation_metrics(gunpoint, tmp_path):
    result = train_teacher(student(), gunpoint.train, val=gunpoint.test, epochs=3, work_dir=tmp_path, **FAST)
    assert 0.0 <= result.metrics["val/acc"] <= 1.0 and "train/ce" in result.metrics
    assert (tmp_path / "student.safetensors").exists()
    # what a study records of the fit keeps the validation loss (teachers are chosen among seeds on it)
    from xdistill.study.training import fit_info

    assert fit_info(result)["val_loss"] == result.metrics["val/loss"] > 0


def test_a_student_handed_over_in_eval_mode_still_trains(gunpoint, tmp_path):
    """Lightning keeps eval-mode sub-modules in eval mode; BatchNorm would then never train."""
    torch.manual_seed(0)
    model = build_model("fcn1d", 1, 2, width=0.5).eval()
    train_teacher(model, gunpoint.train, epochs=60, seed=0, work_dir=tmp_path, checkpoint=False, **FAST)
    assert model.features[0][2].running_mean.abs().sum() > 0  # BN statistics were updated
    from xdistill.metrics import accuracy

    assert accuracy(predict(model, gunpoint.test.x), gunpoint.test.y) > 0.9


def test_models_are_handed_back_without_hooks_and_with_grad_flags(gunpoint, teacher, tmp_path):
    s = student()
    distill(
        teacher,
        s,
        gunpoint.train,
        ["hinton", {"name": "fitnets", "layers": {"features.1": "features.1"}}],
        epochs=1,
        work_dir=tmp_path,
        checkpoint=False,
        **FAST,
    )
    assert not any(m._forward_hooks for m in s.modules()) and not any(m._forward_hooks for m in teacher.modules())
    assert all(p.requires_grad for p in teacher.parameters())


class Spy(Term):
    """Records what the losses see (adds nothing to the objective: weight 0 is dropped, so it returns 0 × CE)."""

    name = "spy"
    fits_outputs = False

    def __init__(self) -> None:
        super().__init__()
        self.seen = []

    def loss(self, step):
        self.seen.append(
            (step.batch.x.detach().clone(), step.batch.index.clone(), step.teacher_clean_logits, step.teacher_logits)
        )
        return step.student_logits.sum() * 0.0


def test_kd_ig_targets_the_teacher_on_the_clean_image_computed_once(gunpoint, teacher, tmp_path):
    """nordlinglab/ModelCompression-IntegratedGradients precomputes the teacher's logits on the clean images and
    uses them as the KD target; the overlay changes only what the student sees."""
    spy = Spy()
    terms = build_terms([{"name": "kd_ig", "p": 1.0, "n_steps": 4}]) + [spy]
    assert [t.name for t in terms] == ["ce", "kd", "ig_overlay", "spy"] and terms[1].needs_clean_teacher_logits
    result = distill(
        teacher, student(), gunpoint.train, terms, epochs=1, val_fraction=0, work_dir=tmp_path, checkpoint=False, **FAST
    )
    assert not result.used_logit_cache  # the input changes (the overlay), so no cache for transformed inputs
    x, index, clean, _ = spy.seen[0]
    with torch.no_grad():
        on_clean = teacher.eval()(gunpoint.train.x[index])
    assert torch.allclose(clean, on_clean, atol=1e-5)  # the clean image's logits
    assert not torch.allclose(x, gunpoint.train.x[index])  # while the student saw overlaid images (p = 1)
    kd = terms[1]
    expected = soft_kl(torch.zeros_like(clean), clean, 2.5)
    step = Step(
        Batch(x, gunpoint.train.y[index], index), None, None, torch.zeros_like(clean), None, teacher_clean_logits=clean
    )
    assert kd.loss(step).item() == pytest.approx(expected.item())


def test_learnable_parts_of_terms_are_reported_and_train(gunpoint, teacher, tmp_path):
    fitnets = term_from_spec({"name": "fitnets", "layers": {"features.1": "features.1"}})
    assert fitnets.extra_parameters() == []  # built in prepare, from the feature shapes
    result = distill(
        teacher, student(), gunpoint.train, ["hinton", fitnets], epochs=1, work_dir=tmp_path, checkpoint=False, **FAST
    )
    extra = fitnets.extra_parameters()
    assert extra and result.extra_parameters == sum(p.numel() for p in extra)


def test_every_epoch_draws_a_new_order_of_the_whole_training_set(gunpoint, tmp_path):
    """Lightning reaches the order through ``batch_sampler.sampler.set_epoch``; a batch sampler that kept its
    own epoch counter was never told the epoch and repeated the first order every epoch."""

    class Orders(Term):
        name, fits_outputs, needs_teacher = "orders", False, False

        def __init__(self) -> None:
            super().__init__()
            self.seen = []

        def loss(self, step):
            self.seen.append(step.batch.index.tolist())
            return step.student_logits.sum() * 0.0

    spy = Orders()
    distill(
        None,
        student(),
        gunpoint.train,
        ["ce", spy],
        epochs=3,
        val_fraction=0,
        work_dir=tmp_path,
        checkpoint=False,
        **FAST,
    )
    per_epoch = len(spy.seen) // 3
    epochs = [sum(spy.seen[i * per_epoch : (i + 1) * per_epoch], []) for i in range(3)]
    assert all(sorted(e) == list(range(len(gunpoint.train))) for e in epochs)  # each sample once per epoch
    assert epochs[0] != epochs[1] != epochs[2]


def test_a_fit_that_restores_its_best_epoch_reports_that_epochs_figures(gunpoint, tmp_path):
    """The figures a fit returns describe the restored model (its validation loss recomputed from the weights),
    not the last epoch's; the last epoch's stay under last_epoch/ (teacher selection among seeds read them)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = build_model("fcn1d", 1, 2, width=0.25)
    result = train_teacher(
        model, gunpoint.train, epochs=40, val_fraction=0.3, monitor="val_acc", patience=3, work_dir=tmp_path, **FAST
    )
    m = result.metrics
    assert m["best_epoch"] < m["epochs_run"]  # stopped after epochs that did not improve: the last is not the best
    assert m["val/loss"] != m["last_epoch/val/loss"]
    with torch.no_grad():
        logits = result.student.eval()(result.val_data.x)
    recomputed = float(F.cross_entropy(logits, result.val_data.y))
    assert abs(recomputed - m["val/loss"]) < 1e-5


def test_the_progress_bar_counts_epochs_from_one_and_shows_no_version(tmp_path, monkeypatch):
    """The bar says "Epoch 58/58" where the log says "best epoch 58 of 58", and shows the exact epoch figures."""
    import types

    from xdistill.engine.callbacks import epoch_description, progress_bar

    monkeypatch.setattr("xdistill.progress.on_terminal", lambda: True)

    assert epoch_description(57, 58) == "Epoch 58/58" and epoch_description(0, None) == "Epoch 1"
    bar = progress_bar()
    module = types.SimpleNamespace(epoch_metrics={"train/loss": 0.123456, "val/acc": 0.9, "train/ce": 1.0})
    assert bar.get_metrics(None, module) == {"loss": "0.1235", "val/acc": "0.9"}


def test_a_steps_budget_ending_inside_an_epoch_draws_its_last_epoch_as_full(gunpoint, teacher, tmp_path, monkeypatch):
    """50 series at batch 16 are 4 batches an epoch; 6 steps end the second epoch after 2: its bar counts 2, not 4
    (was "2/4 • 0.00it/s" left unfinished)."""
    from lightning.pytorch.callbacks import Callback

    import xdistill.engine.fit as fit

    monkeypatch.setattr("xdistill.progress.on_terminal", lambda: True)
    totals = []

    class Spy(Callback):
        def on_train_epoch_end(self, trainer, module):
            bar = trainer.progress_bar_callback
            totals.append((bar.total_train_batches, trainer.fit_loop.epoch_loop.batch_progress.current.completed))

    real = fit._callbacks
    monkeypatch.setattr(fit, "_callbacks", lambda *a, **k: (lambda c, b: (c + [Spy()], b))(*real(*a, **k)))
    options = dict(FAST, progress=True, val_fraction=0.0)
    distill(teacher, student(), gunpoint.train, ["ce"], steps=6, seed=0, work_dir=tmp_path, **options)
    assert totals == [(4, 4), (2, 2)]


def test_progress_goes_to_a_log_file_as_paced_lines(gunpoint, teacher, tmp_path, monkeypatch, capsys):
    """stderr not a terminal (pytest captures it): one line per tenth of the steps, none redrawn."""
    monkeypatch.setattr("xdistill.progress.TENTH_SECONDS", 0.0)
    options = dict(FAST, progress=True, val_fraction=0.0)
    distill(teacher, student(), gunpoint.train, ["ce"], steps=40, seed=0, work_dir=tmp_path / "run", **options)
    lines = [line for line in capsys.readouterr().err.splitlines() if "training run:" in line]
    percents = [int(line.split("training run: ")[1].split("%")[0]) for line in lines]
    assert percents == list(range(10, 101, 10)), lines
    assert "epoch 10/10" in lines[-1] and "loss " in lines[-1] and "\r" not in "".join(lines)


def test_the_pacer_prints_at_tenths_and_after_a_silence(monkeypatch):
    from xdistill import progress

    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    pacer = progress.Pacer(100, seconds=30)
    clock[0] = 1.0
    assert not pacer.due(15)  # a tenth crossed, but 1 s after the start: short work stays quiet
    clock[0] = 6.0
    assert pacer.due(16) and not pacer.due(19)
    clock[0] = 40.0
    assert pacer.due(19)  # 34 s of silence
    clock[0] = 46.0
    assert pacer.due(20) and "20% (20/100)" in pacer.line(20, "x")
