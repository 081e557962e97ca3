import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xdistill.hooks import FeatureHooks
from xdistill.methods import (
    PRESETS,
    TERMS,
    AttentionTransfer,
    Batch,
    FitNets,
    KnowledgeDistillation,
    PrepareContext,
    Step,
    build_method,
    build_terms,
    gradient_saliency,
    occlusion_saliency,
    overlay,
)
from xdistill.methods.tsd import DISTANCES
from xdistill.models import build_model
from xdistill.registry import UnknownNameError


def make_step(student_logits, teacher_logits, y):
    batch = Batch(torch.zeros(len(y), 1), y, torch.arange(len(y)))
    return Step(batch, nn.Identity(), nn.Identity(), student_logits, teacher_logits)


def test_registry_has_every_term_and_preset():
    assert {
        "ce",
        "kd",
        "ig_overlay",
        "tsd",
        "fitnets",
        "attention_transfer",
        "subdistill",
        "rationale_selection",
        "rationale_kl",
        "rationale_prediction_kl",
    } <= set(TERMS.names())
    assert {"hinton", "kd_ig", "tsd_published", "subdistill_published", "rationale", "rekd"} <= set(PRESETS.names())
    with pytest.raises(UnknownNameError, match="tsd"):
        build_method("tsdd")


def test_kd_is_t2_kl_alone_and_ce_the_only_cross_entropy():
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0]])
    y = torch.tensor([0])
    step = make_step(s, t, y)
    ps = torch.softmax(s / 2, 1)[0]
    pt = torch.softmax(t / 2, 1)[0]
    kl = float((pt * (pt / ps).log()).sum())
    assert KnowledgeDistillation(temperature=2.0).loss(step).item() == pytest.approx(4 * kl, rel=1e-6)
    assert build_method("ce").loss(step).item() == pytest.approx(math.log(1 + math.exp(-1.0)))


def test_hinton_preset_is_the_weighted_sum_of_ce_and_kd():
    terms = build_terms([{"name": "hinton", "alpha": 0.25, "temperature": 2.0}])
    assert [(t.name, t.weight) for t in terms] == [("ce", 0.75), ("kd", 0.25)] and terms[1].temperature == 2.0
    assert [(t.name, t.weight) for t in build_terms(["hinton"])] == [("ce", pytest.approx(0.1)), ("kd", 0.9)]
    with pytest.raises(ValueError, match="alpha"):
        build_terms([{"name": "hinton", "alpha": 1.5}])


@pytest.mark.parametrize(
    "spec, hint",
    [
        ({"name": "kd", "alpha": 0.5}, "hinton"),
        ({"name": "kd", "preset": "ig_overlay"}, "kd_ig"),
        ({"name": "tsd", "lam": 1.0}, "weight"),
        ({"name": "ig_overlay", "alpha": 0.0}, "kd_ig"),
        ({"name": "attention_transfer", "layers": {"a": "b"}, "beta": 100}, "weight"),
        ({"name": "subdistill", "layers": {"a": "b"}, "layer_weight": 100}, "weight"),
    ],
)
def test_old_spellings_are_refused_with_a_hint(spec, hint):
    with pytest.raises(ValueError, match=f"is gone;.*{hint}"):
        build_terms(["ce", spec])


def test_a_list_without_a_term_that_fits_the_outputs_is_refused():
    with pytest.raises(ValueError, match="add ce"):
        build_terms([{"name": "tsd", "window": 4}])
    with pytest.raises(ValueError, match="no loss term"):
        build_terms(["ig_overlay"])
    with pytest.raises(ValueError, match="takes no weight"):
        build_terms(["ce", {"name": "ig_overlay", "weight": 2}])
    assert [t.name for t in build_terms(["ce", {"name": "kd", "weight": 0}])] == ["ce"]  # weight 0: dropped


def test_overlay_formula():
    x = torch.full((1, 1, 4), 0.2)
    maps = torch.tensor([[[-2.0, 1.0, 0.0, 3.0]]])
    out = overlay(x, maps, torch.tensor([2.0]))
    powered = torch.tensor([4.0, 1.0, 0.0, 9.0])
    assert torch.allclose(out[0, 0], 0.1 + 0.5 * powered / 9.0)


def test_overlay_sums_channels_and_blends_in_raw_image_space():
    torch.manual_seed(0)
    raw = torch.rand(2, 3, 4, 4)
    mean, std = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    maps = torch.randn(2, 3, 4, 4)
    exponent = torch.tensor([1.0, 1.5])
    out = overlay((raw - mean) / std, maps, exponent, mean, std)
    summed = maps.abs().sum(1, keepdim=True) ** exponent.view(2, 1, 1, 1)  # one H x W map per image
    low = summed.flatten(1).min(1).values.view(2, 1, 1, 1)
    high = summed.flatten(1).max(1).values.view(2, 1, 1, 1)
    expected_raw = 0.5 * raw + 0.5 * (summed - low) / (high - low)  # broadcast to every channel
    assert torch.allclose(out * std + mean, expected_raw, atol=1e-6)


def test_occlusion_saliency_matches_the_explainer_and_one_forward():
    torch.manual_seed(0)
    model = build_model("fcn1d", 2, 3, width=0.1, activation="tanh").eval()
    x = torch.randn(4, 2, 30)
    target = torch.tensor([0, 1, 2, 0])
    from xdistill.explain import occlusion

    ours = occlusion_saliency(model, x, target, window=5, differentiable=False)
    ref = occlusion(model, x, target, window=5, stride=5)[:, 0, ::5]  # constant within each window
    assert ours.shape == (4, 6) and torch.allclose(ours, ref, atol=1e-5)
    calls = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    occlusion_saliency(model, x, target, window=5)
    handle.remove()
    assert calls == [4 * 7]  # clean + 6 occluded copies in a single pass


@pytest.mark.parametrize("fn", [occlusion_saliency, gradient_saliency])
def test_student_saliency_is_differentiable(fn):
    torch.manual_seed(0)
    model = build_model("fcn1d", 1, 2, width=0.1)
    model.train()
    sal = fn(model, torch.randn(3, 1, 20), torch.tensor([0, 1, 0]), window=4)
    assert sal.requires_grad and sal.shape == (3, 5)
    sal.pow(2).sum().backward()
    assert model.features[0][1].weight.grad.abs().sum() > 0
    assert model.training  # restored


@pytest.mark.parametrize("name", ["cosine", "mse", "kl"])
def test_saliency_distances_are_zero_for_equal_and_positive_otherwise(name):
    a = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    b = torch.tensor([[3.0, 2.0, 1.0], [2.0, 0.5, -1.0]])
    distance = DISTANCES.get(name)
    assert distance(a, a, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distance(a, b, 1.0).item() > 0.1


def test_feature_hooks_capture_and_remove():
    model = build_model("fcn1d", 1, 2, width=0.1)
    with FeatureHooks(model, ["features.0", "features.2"]) as hooks:
        model(torch.randn(2, 1, 16))
        assert hooks.features["features.0"].shape[:2] == (2, 13)
    assert not model.features[0]._forward_hooks
    with pytest.raises(ValueError, match="module paths"):
        FeatureHooks(model, ["features.9"])


def _context(teacher, student, x):
    return PrepareContext(teacher, student, x, torch.zeros(len(x), dtype=torch.long), "fp")


def test_fitnets_builds_regressors_and_reaches_zero_when_matching():
    torch.manual_seed(0)
    teacher = build_model("fcn1d", 1, 2, width=0.2)
    student = build_model("fcn1d", 1, 2, width=0.1)
    method = FitNets({"features.1": "features.1"})
    method.prepare(_context(teacher, student, torch.randn(4, 1, 16)))
    assert tuple(method.regressors[0].weight.shape) == (51, 26, 1)
    x = torch.randn(8, 1, 16)
    with FeatureHooks(student, ["features.1"]) as sh, FeatureHooks(teacher, ["features.1"]) as th:
        student(x), teacher(x)
        step = Step(
            Batch(x, torch.zeros(8).long(), torch.arange(8)), student, teacher, None, None, sh.features, th.features
        )
        loss = method.loss(step)
    manual = F.mse_loss(method.regressors[0](sh.features["features.1"]), th.features["features.1"])
    assert loss.item() == pytest.approx(manual.item())


def test_attention_transfer_by_hand_and_spatial_mismatch():
    method = AttentionTransfer({"s": "t"})
    fs = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])  # attention (1, 0, 0, 0)
    ft = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]])  # attention (0, 1, 0, 0)
    step = Step(
        Batch(fs, torch.zeros(1).long(), torch.arange(1)),
        nn.Identity(),
        nn.Identity(),
        None,
        None,
        {"s": fs},
        {"t": ft},
    )
    # 1/2 * mean((e1 - e2)^2) = 1/2 * 2/4
    assert method.loss(step).item() == pytest.approx(0.25)
    big = torch.rand(2, 3, 8, 8)
    small = torch.rand(2, 5, 4, 4)
    step = Step(
        Batch(big, torch.zeros(2).long(), torch.arange(2)),
        nn.Identity(),
        nn.Identity(),
        None,
        None,
        {"s": big},
        {"t": small},
    )
    assert torch.isfinite(method.loss(step))


def test_hinton_preset_total_equals_the_earlier_kd_method():
    """The earlier ``kd`` method: ``(1-a)·CE + a·T²·KL(p_t^T ‖ p_s^T)``, by hand, on one batch."""
    torch.manual_seed(0)
    s, t, y = torch.randn(6, 4), torch.randn(6, 4), torch.randint(0, 4, (6,))
    step = make_step(s, t, y)
    terms = build_terms([{"name": "hinton", "alpha": 0.7, "temperature": 3.0}])
    total = sum(term.weight * term.loss(step) for term in terms)
    log_ps, p_t = torch.log_softmax(s / 3, 1), torch.softmax(t / 3, 1)
    earlier = 0.3 * F.cross_entropy(s, y) + 0.7 * 9 * (p_t * (p_t.log() - log_ps)).sum(1).mean()
    assert total.item() == pytest.approx(earlier.item(), rel=1e-6)
