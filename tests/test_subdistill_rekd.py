import math
from statistics import fmean

import pytest
import torch
import torch.nn.functional as F

from xdistill.data import load_dataset
from xdistill.engine import distill
from xdistill.methods import Batch, Step, StepState, SubDistill, build_terms, estimate_subspace
from xdistill.methods.rekd import gumbel_temperature
from xdistill.methods.subdistill import as_vectors, coordinates
from xdistill.metrics import accuracy, predict
from xdistill.models import build_model, build_rationale_model
from xdistill.subtask import ClassSubset, subtask_data
from xdistill.training import train_classifier

FAST = dict(batch_size=32, lr=3e-3, progress=False, loggers=(), checkpoint=False)


# ---- SubDistill ---------------------------------------------------------------------------------


def planted(n=3000, dim=24, rank=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, rank, generator=g))
    z = torch.randn(n, rank, generator=g) * torch.tensor([6.0, 4.0, 3.0])[:rank]
    return z @ basis.T + 0.3 * torch.randn(n, dim, generator=g) + 1.5, basis


def principal_cosines(a, b):
    return torch.linalg.svdvals(a.T.double() @ b.double())


def test_subspace_recovery_of_a_planted_low_rank_component():
    x, basis = planted()
    found = estimate_subspace(x)  # k from explained variance
    assert found.k == 3
    assert principal_cosines(basis, found.basis).min() > 0.999
    assert torch.allclose(found.mean, torch.full((24,), 1.5, dtype=torch.float64), atol=0.1)


def test_relevance_weights_pick_the_relevant_subspace():
    """Two planted components; weighting samples by relevance to one of them recovers that one."""
    g = torch.Generator().manual_seed(1)
    dim = 16
    basis, _ = torch.linalg.qr(torch.randn(dim, 2, generator=g))
    relevant, irrelevant = basis[:, :1], basis[:, 1:]
    a = torch.randn(4000, 1, generator=g)
    b = torch.randn(4000, 1, generator=g) * 1.5  # the larger, irrelevant direction (variance 2.25 vs 1)
    x = a @ relevant.T + b @ irrelevant.T + 0.05 * torch.randn(4000, dim, generator=g)
    plain = estimate_subspace(x, k=1)
    weighted = estimate_subspace(x, weights=a.squeeze(1).abs() ** 4, k=1)  # weighted variance: E[a^6]/E[a^4] = 5
    assert principal_cosines(irrelevant, plain.basis).item() > 0.99
    assert principal_cosines(relevant, weighted.basis).item() > 0.9


def test_shrinkage_keeps_a_rank_deficient_covariance_finite_and_bad_k_is_clear():
    x = torch.randn(5, 40)  # fewer samples than dimensions
    found = estimate_subspace(x, k=3, shrinkage=0.1)
    assert torch.isfinite(found.basis).all() and found.eigenvalues.min() > 0
    assert torch.allclose(found.basis.T @ found.basis, torch.eye(3, dtype=torch.float64), atol=1e-8)
    with pytest.raises(ValueError, match="k must be between 1 and the layer width 40"):
        estimate_subspace(x, k=41)


def test_as_vectors_and_coordinates():
    f = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    v = as_vectors(f)
    assert v.shape == (8, 3) and torch.equal(v[1], f[0, :, 1])
    basis = torch.eye(3)[:, :2]
    assert torch.equal(coordinates(f, torch.zeros(3), basis), f[:, :2])


def test_subtask_data_and_class_subset():
    train, _ = load_dataset("digits")
    sub = subtask_data(train, [8, 3])
    assert sub.class_names == ["8", "3"] and set(sub.y.tolist()) == {0, 1}
    assert len(sub) == int(((train.y == 8) | (train.y == 3)).sum())
    model = build_model("cnn", 1, 10, width=0.25).eval()
    wrapped = ClassSubset(model, [8, 3])
    assert torch.equal(wrapped(sub.x[:4]), model(sub.x[:4])[:, [8, 3]])
    assert wrapped.get_submodule("features.0") is model.features[0]
    with pytest.raises(ValueError, match="not classes of digits"):
        subtask_data(train, [3, 12])


@pytest.mark.slow
def test_subdistill_trains_on_a_digits_subtask(tmp_path):
    train, test = load_dataset("digits")
    torch.manual_seed(0)
    teacher = build_model("cnn", 1, 10, width=0.5)
    train_classifier(teacher, train, epochs=6, lr=3e-3, batch_size=32)
    classes = [3, 5, 8]
    sub_train, sub_test = subtask_data(train, classes), subtask_data(test, classes)
    torch.manual_seed(0)
    student = build_model("cnn", 1, 3, width=0.125)
    method = SubDistill({"features.4": "features.4"}, basis="pca", variance=0.9)
    result = distill(
        ClassSubset(teacher, classes),
        student,
        sub_train,
        ["hinton", method],
        epochs=6,
        work_dir=tmp_path,
        **{**FAST, "loggers": ("csv",)},
    )
    space = method.subspaces["features.4"]
    assert 1 <= space.k < 32 and method.regressors[0].weight.shape[:2] == (space.k, 8)
    import csv

    rows = [
        r for r in csv.DictReader(open(next(tmp_path.glob("logs/version_*/metrics.csv")))) if r.get("train/subdistill")
    ]
    values = [float(r["train/subdistill"]) for r in rows]
    assert values[-1] < values[0]
    assert accuracy(predict(result.student, sub_test.x), sub_test.y) > 0.8


# ---- REKD ---------------------------------------------------------------------------------------


def test_rationale_model_masks_parts_and_keeps_gradients():
    torch.manual_seed(0)
    model = build_rationale_model(1, 3, "window", 4, "fcn1d", {"width": 0.1})
    x = torch.randn(5, 1, 18)
    out = model.forward_structured(x)
    logits = out.logits
    assert logits.shape == (5, 3) and out.mask.shape == (5, 5)  # ceil(18 / 4)
    assert out.selector_logits.shape == (5, 5, 2)  # (drop, keep) logits per part
    assert set(out.mask.detach().unique().tolist()) <= {0.0, 1.0}  # exactly 0/1 forward
    expanded = model.expand(out.mask, x)
    assert expanded.shape == (5, 1, 18) and torch.equal(expanded[:, 0, 4:8], out.mask[:, 1:2].expand(5, 4))
    logits.sum().backward()
    assert model.selector.body[0].weight.grad.abs().sum() > 0  # straight-through: gradients reach the selector
    model.eval()
    with torch.no_grad():
        out = model.forward_structured(x)
    assert torch.equal(out.mask, (torch.softmax(out.selector_logits, -1)[..., 1] >= 0.5).float())
    assert out.log_probs is None and torch.equal(model(x), out.logits)  # evaluation: deterministic


def test_straight_through_mask_is_hard_forward_and_soft_backward():
    from xdistill.models.rationale import hard_gumbel_softmax

    torch.manual_seed(0)
    logits = torch.randn(4, 6, 2, requires_grad=True)
    torch.manual_seed(1)
    sample, log_probs = hard_gumbel_softmax(logits, 0.7)
    assert torch.equal(sample.detach(), F.one_hot(sample.detach().argmax(-1), 2).float())
    weights = torch.randn(4, 6, 2)
    (sample * weights).sum().backward()
    torch.manual_seed(1)  # the same noise: the gradient is that of the soft sample
    soft_logits = logits.detach().clone().requires_grad_(True)
    noise = -torch.log(-torch.log(torch.rand(4, 6, 2) + 1e-20) + 1e-20)
    (torch.softmax((soft_logits + noise) / 0.7, -1) * weights).sum().backward()
    assert torch.allclose(logits.grad, soft_logits.grad, atol=1e-6)
    assert torch.allclose(log_probs, torch.log_softmax((logits.detach() + noise) / 0.7, -1), atol=1e-6)


def test_patch_and_token_rationale_models():
    image_model = build_rationale_model(1, 4, "patch", 4, "cnn", {"width": 0.25})
    x = torch.randn(2, 1, 16, 16)
    assert image_model.forward_structured(x).mask.shape == (2, 16)
    text_model = build_rationale_model(1, 2, "token", 1, "textcnn", {"width": 0.25}, vocab_size=50)
    tokens = torch.randint(0, 50, (3, 12)).float()
    assert text_model(tokens).shape == (3, 2) and text_model.forward_structured(tokens).mask.shape == (3, 12)


def test_gumbel_temperature_anneals_every_100_steps():
    assert gumbel_temperature(0, 1000) == 5.0
    assert gumbel_temperature(99, 1000) == 5.0 and gumbel_temperature(100, 1000) < 5.0  # updated every 100 steps
    assert gumbel_temperature(500, 1000) == pytest.approx(5.0 * (0.1 / 5.0) ** 0.5)
    assert gumbel_temperature(1000, 1000) == pytest.approx(0.1) and gumbel_temperature(1234, 1000) == pytest.approx(0.1)


def official_tau(step: int, total: int, tau: float = 5.0, final: float = 0.1, every: int = 100) -> float:
    """JiayiDai/REKD ``run/learn.py``: ``if step % 100 == 0: tau = max(init * exp(-rate * step), final)``."""
    current = tau
    for s in range(1, step + 1):
        if s % every == 0:
            current = max(tau * math.exp(-math.log(tau / final) / total * s), final)
    return current


@pytest.mark.parametrize("total", [730, 1050, 1000, 99])
def test_gumbel_temperature_is_updated_only_on_multiples_of_100_as_the_official_code(total):
    for step in sorted({1, 99, 100, 101, total // 2, total - 1, total}):
        assert gumbel_temperature(step, total) == pytest.approx(official_tau(step, total), rel=1e-12), step
    assert gumbel_temperature(1050, 1050) == pytest.approx(0.1205, abs=5e-5)  # not the final 0.1


def rationale_step(student, teacher, terms, x, y, index, state):
    """What the engine hands the losses: structured forwards with the terms' forward options."""
    batch = Batch(x, y, index)
    options = {}
    for term in terms:
        options.update(term.forward_options(state, batch))
    out = student.forward_structured(x, **options)
    with torch.no_grad():
        t_out = teacher.forward_structured(x)
    return Step(
        batch, student, teacher, out.logits, t_out.logits, state=state, student_output=out, teacher_output=t_out
    )


def test_rekd_preset_terms_by_hand():
    from xdistill.methods.rekd import _TEACHER_NOISE_SALT

    torch.manual_seed(0)
    student = build_rationale_model(1, 2, "window", 4, "fcn1d", {"width": 0.1})
    teacher = build_rationale_model(1, 2, "window", 4, "fcn1d", {"width": 0.2}).eval()
    x, y, index = torch.randn(3, 1, 16), torch.tensor([0, 1, 0]), torch.arange(3)
    terms = build_terms(
        [
            {
                "name": "rekd",
                "ratio": 0.25,
                "select_lambda": 0.3,
                "alpha_re": 0.4,
                "kd_r_lambda": 0.2,
                "tau_init": 2.0,
                "tau_final": 2.0,
            }
        ]
    )
    assert [(t.name, round(t.weight, 12)) for t in terms] == [
        ("ce", 0.4),
        ("rationale_selection", 0.12),
        ("gumbel_anneal", 1.0),
        ("rationale_kl", 0.12),
        ("rationale_prediction_kl", 0.6),
    ]
    state = StepState(7, 100, 0)
    step = rationale_step(student.train(), teacher, terms, x, y, index, state)
    raw = {t.name: t.loss(step) for t in terms if t.has_loss}
    z, s_logits = step.student_output.mask, step.student_logits
    assert step.student_output.temperature == 2.0
    assert raw["ce"].item() == pytest.approx(F.cross_entropy(s_logits, y).item(), rel=1e-6)
    assert raw["rationale_selection"].item() == pytest.approx((z.sum(1).mean().item() - 0.25 * 4) ** 2, rel=1e-6)
    u = state.streams(index, _TEACHER_NOISE_SALT)(8).reshape(3, 4, 2)  # the teacher's selection noise
    log_q_t = torch.log_softmax(
        (step.teacher_output.selector_logits - torch.log(-torch.log(u + 1e-20) + 1e-20)) / 2.0, -1
    )
    kl_r = (log_q_t.exp() * (log_q_t - step.student_output.log_probs)).sum() / 3
    assert raw["rationale_kl"].item() == pytest.approx(kl_r.item(), rel=1e-5)
    with torch.no_grad():  # the prediction term: the teacher's predictor on the *student's* mask
        t_on_s = teacher.predictor(x * z.repeat_interleave(4, 1)[:, None, :])
    log_p_t = torch.log_softmax(t_on_s / 2.0, -1)
    kl_y = (log_p_t.exp() * (log_p_t - torch.log_softmax(s_logits / 2.0, -1))).sum() / 3
    assert raw["rationale_prediction_kl"].item() == pytest.approx(4.0 * kl_y.item(), rel=1e-5)
    assert not torch.allclose(t_on_s, step.teacher_logits)  # (it differs from the teacher on its own mask)
    # the preset's objective is the published REKD total: α·RE + (1−α)·(λ_r·KL_r + τ²·KL_y)
    total = sum(t.weight * raw[t.name] for t in terms if t.has_loss)
    re = F.cross_entropy(s_logits, y) + 0.3 * (z.sum(1).mean() - 1.0) ** 2
    assert total.item() == pytest.approx((0.4 * re + 0.6 * (0.2 * kl_r + 4.0 * kl_y)).item(), rel=1e-5)
    only = [t.name for t in build_terms([{"name": "rekd", "distil": "prediction"}])]
    assert "rationale_kl" not in only and "rationale_prediction_kl" in only
    assert [t.name for t in build_terms(["rationale"])] == ["ce", "rationale_selection", "gumbel_anneal"]


def test_rekd_gumbel_masks_are_keyed_by_sample_and_step_not_by_batch():
    """The noise behind the student's mask and the teacher's noised selection comes from per-sample
    streams keyed by (seed, step, index): a batch cut in two (as DDP cuts it) draws the same masks."""
    from xdistill.methods.rekd import _NOISE_SALT

    torch.manual_seed(0)
    student = build_rationale_model(1, 2, "window", 4, "fcn1d", {"width": 0.125}).train()
    teacher = build_rationale_model(1, 2, "window", 4, "fcn1d", {"width": 0.25}).eval()
    x, y, index = torch.randn(8, 1, 20), torch.arange(8) % 2, torch.arange(10, 18)
    terms = build_terms([{"name": "rekd", "ratio": 0.25}])
    kl_term = next(t for t in terms if t.name == "rationale_kl")

    def draw(step_number, parts):
        masks, log_probs, teacher_kl = [], [], []
        for part in parts:
            step = rationale_step(
                student, teacher, terms, x[part], y[part], index[part], StepState(step_number, 100, 3)
            )
            masks.append(step.student_output.mask)
            log_probs.append(step.student_output.log_probs)
            teacher_kl.append(kl_term.loss(step))
        return torch.cat(masks), torch.cat(log_probs), teacher_kl

    whole_mask, whole_log_probs, whole_kl = draw(5, [slice(0, 8)])
    half_mask, half_log_probs, half_kl = draw(5, [slice(0, 4), slice(4, 8)])
    assert torch.equal(whole_mask, half_mask) and torch.allclose(whole_log_probs, half_log_probs, atol=1e-6)
    assert whole_kl[0].item() == pytest.approx((half_kl[0].item() + half_kl[1].item()) / 2, rel=1e-5)
    next_mask, next_log_probs, _ = draw(6, [slice(0, 8)])  # a new step draws new noise
    assert not torch.allclose(whole_log_probs, next_log_probs)
    # the student's noise is the stream's first draw (B, parts·2)
    u = StepState(5, 100, 3).streams(index, _NOISE_SALT)(10).reshape(8, 5, 2)
    noised = (student.selector(x) - torch.log(-torch.log(u + 1e-20) + 1e-20)) / 5.0
    assert torch.allclose(torch.log_softmax(noised, -1), whole_log_probs, atol=1e-5)


def _eval_mask(model, x):
    model.eval()
    with torch.no_grad():
        return model.forward_structured(x).mask > 0.5


def _mask_iou(model, other, data):
    a, b = _eval_mask(model, data.x), _eval_mask(other, data.x)
    return ((a & b).sum(1).float() / (a | b).sum(1).clamp(min=1).float()).mean().item()


def _gt_iou(model, data):
    sel = _eval_mask(model, data.x)
    size = model.selector.part_size
    gt = F.max_pool1d(data.rationale[:, None], size, size, ceil_mode=True)[:, 0] > 0.5
    return ((sel & gt).sum(1).float() / (sel | gt).sum(1).clamp(min=1).float()).mean().item()


@pytest.mark.slow
def test_rekd_student_beats_a_rationale_student_without_teacher(tmp_path):
    """Generated series with known rationales; same student, seed and budget, with and without the teacher."""
    train, test = load_dataset("synthetic_series", n_train=600, n_test=300)
    torch.manual_seed(0)
    teacher = build_rationale_model(1, 4, "window", 8, "fcn1d", {"width": 0.25})
    distill(None, teacher, train, [{"name": "rationale", "ratio": 0.2}], epochs=30, work_dir=tmp_path / "t", **FAST)
    assert accuracy(predict(teacher, test.x), test.y) > 0.6

    def student():
        torch.manual_seed(0)
        return build_rationale_model(1, 4, "window", 8, "fcn1d", {"width": 0.125}, selector_width=0.5)

    # one seed is a coin toss at this budget, so the claims are checked over four training seeds
    accuracy_gain, disagreement_rekd, disagreement_alone = [], [], []
    for seed in range(4):
        alone = distill(
            teacher,
            student(),
            train,
            [{"name": "rationale", "ratio": 0.2}],
            epochs=20,
            seed=seed,
            work_dir=tmp_path / f"re{seed}",
            **FAST,
        ).student
        rekd = distill(
            teacher,
            student(),
            train,
            [{"name": "rekd", "ratio": 0.2}],
            epochs=20,
            seed=seed,
            work_dir=tmp_path / f"rekd{seed}",
            **FAST,
        ).student
        accuracy_gain.append(accuracy(predict(rekd, test.x), test.y) - accuracy(predict(alone, test.x), test.y))
        disagreement_rekd.append(1 - _mask_iou(rekd, teacher, test))
        disagreement_alone.append(1 - _mask_iou(alone, teacher, test))
    # REKD keeps every student's rationale close to the teacher's (mask IoU >= 0.8 on every seed) and learns
    # faster on the same budget. Students alone often find the teacher's rationale too (the motif is the
    # ground truth) but not always: measured with the keyed SplitMix64 draws over seeds 0-7, disagreement with
    # the teacher REKD 0.10-0.17 vs alone 0.10-0.61 (means 0.143 vs 0.209, REKD lower on 6 of 8), accuracy
    # gain +0.054; on seeds 0-3 alone the means are 0.150 vs 0.139, so "REKD's mean below 0.75 x alone's",
    # which held with the previous generator (0.125 vs 0.26), is a coin toss and is not asserted.
    assert max(disagreement_rekd) < 0.2  # measured: 0.162 at most on seeds 0-3 (0.167 on 0-7)
    assert fmean(accuracy_gain) > 0.03  # measured: +0.057


def test_text_rationale_model_finds_the_key_phrase(tmp_path):
    train, test = load_dataset("synthetic_text", n_train=600, n_test=200)
    assert train.x.dtype == torch.long and train.rationale.shape == train.x.shape
    torch.manual_seed(0)
    model = build_rationale_model(1, 3, "token", 1, "textcnn", {"width": 0.5}, vocab_size=200)
    distill(None, model, train, [{"name": "rationale", "ratio": 0.15}], epochs=15, work_dir=tmp_path, **FAST)
    assert accuracy(predict(model, test.x), test.y) > 0.9
    selected = _eval_mask(model, test.x)
    gt = test.rationale > 0.5
    precision = (selected & gt).sum().item() / max(1, selected.sum().item())
    assert precision > 3 * gt.float().mean().item()  # the kept tokens are mostly the phrase, far above chance


def test_bert_predictor_from_a_config_masks_token_embeddings():
    pytest.importorskip("transformers")
    config = {
        "vocab_size": 60,
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 32,
    }
    torch.manual_seed(0)
    model = build_rationale_model(1, 2, "token", 1, "bert", {"config": config}, vocab_size=60)
    tokens = torch.randint(1, 60, (3, 10))
    logits = model(tokens)
    assert logits.shape == (3, 2)
    logits.sum().backward()
    assert model.selector.embedding.weight.grad.abs().sum() > 0  # gradients reach the selector through the mask
    predictor = model.predictor.eval()
    keep = torch.ones(3, 10)
    keep[:, 4] = 0
    changed = tokens.clone()
    changed[:, 4] = 7
    with torch.no_grad():  # a masked token cannot change the prediction
        assert torch.allclose(predictor(tokens, keep), predictor(changed, keep), atol=1e-5)
    with pytest.raises(ValueError, match="pretrained= .* or config="):
        build_model("bert", 1, 2)
