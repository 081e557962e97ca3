"""SubDistill as published (arXiv 2601.05913) and pixel flipping, against hand computations."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xdistill.data import load_dataset
from xdistill.engine import distill
from xdistill.methods import build_method, build_terms
from xdistill.methods.base import Batch, PrepareContext, Step
from xdistill.methods.subdistill import (
    Centering,
    Rotation,
    SubDistillPCA,
    SubDistillPRCA,
    estimate_subspace,
    prca_basis,
    subspace_layer_loss,
)
from xdistill.metrics import AlignmentConfig, accuracy, evaluate_pair, predict
from xdistill.metrics.faithfulness import curve_area, deletion_curve, part_index, pixel_flipping
from xdistill.models import build_model
from xdistill.subtask import ClassSubset, subtask_data
from xdistill.training import train_classifier


def relevance_case(n: int = 4000, seed: int = 0):
    """Direction 0: large variance, irrelevant to the margin; direction 1: small variance, all the relevance."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([5.0, 1.0, 0.3], dtype=torch.float64)
    a = a - a.mean(0)
    # margin m(a) = a_1 + 0.5 a_1^2  ->  c = dm/da = (0, 1 + a_1, 0)
    c = torch.zeros_like(a)
    c[:, 1] = 1 + a[:, 1]
    return a, c


def test_prca_puts_the_relevant_direction_first_where_pca_puts_the_large_variance_one():
    a, c = relevance_case()
    basis, sigma = prca_basis(a, c)
    assert basis[:, 0].abs().argmax() == 1 and basis[:, 0].abs().max() > 0.99
    assert estimate_subspace(a, k=1, shrinkage=0).basis[:, 0].abs().argmax() == 0  # PCA would choose direction 0
    # by hand, in numpy
    A, C, n = a.numpy(), c.numpy(), len(a)
    sa, sc, sac = A.T @ A / n, C.T @ C / n, A.T @ C / n
    m = sac + sac.T + 2 * np.sqrt(np.trace(sc) / np.trace(sa)) * sa + 2 * np.sqrt(np.trace(sa) / np.trace(sc)) * sc
    values, vectors = np.linalg.eigh(m)
    vectors = vectors[:, np.argsort(-values)]
    vectors = vectors * np.where(((A @ vectors) > 0).mean(0) > 0.5, 1.0, -1.0)
    assert np.allclose(basis.numpy(), vectors, atol=1e-10)
    assert torch.allclose(basis.T @ basis, torch.eye(3, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(sigma, torch.tensor(np.diag(vectors.T @ sa @ vectors)), atol=1e-10)
    assert (((a @ basis) > 0).double().mean(0) > 0.5).all()  # sign-fixed


@pytest.mark.parametrize("shape", [(4, 2, 5), (3, 2, 4, 4)])
def test_centering_is_the_official_batch_norm_without_affine_in_both_modes(shape):
    """p16i/subdistill ``Centering2D``: ``F.batch_norm(x, running_mean, ones, None, None, training, momentum, eps)``;
    training divides by the batch standard deviation too (despite its comment), evaluation by √(1 + eps)."""
    torch.manual_seed(0)
    centre = Centering(2, momentum=0.5).double()
    x = torch.randn(*shape, dtype=torch.float64) * torch.tensor([2.0, 0.5], dtype=torch.float64).view(
        1, 2, *[1] * (len(shape) - 2)
    ) + torch.tensor([3.0, -1.0], dtype=torch.float64).view(1, 2, *[1] * (len(shape) - 2))
    dims = (0,) + tuple(range(2, len(shape)))
    view = (1, 2) + (1,) * (len(shape) - 2)
    mean, var = x.mean(dims), x.var(dims, unbiased=False)
    out = centre.train()(x)
    assert torch.allclose(out, (x - mean.view(view)) / torch.sqrt(var.view(view) + 1e-5), atol=1e-12)
    assert torch.allclose(centre.running_mean, 0.5 * mean, atol=1e-12)
    assert torch.allclose(centre.eval()(x), (x - centre.running_mean.view(view)) / (1 + 1e-5) ** 0.5, atol=1e-12)
    # the old mean-only centring differs by far more than rounding (the issue measured 84% on the layer term)
    assert (out - (x - mean.view(view))).abs().max() > 0.1


def test_rotation_stays_orthogonal_after_optimisation():
    torch.manual_seed(0)
    rotation = Rotation(5)
    optimiser = torch.optim.Adam(rotation.parameters(), lr=0.05)
    x, target = torch.randn(16, 5, 7), torch.randn(16, 5, 7)
    first = None
    for _ in range(50):
        loss = F.mse_loss(rotation(x), target)
        first = first if first is not None else loss.item()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    r = rotation.matrix
    assert torch.allclose(r @ r.T, torch.eye(5), atol=1e-5)
    assert loss.item() < first


def digits_subtask():
    train, test = load_dataset("digits")
    torch.manual_seed(0)
    teacher = build_model("cnn", 1, 10, width=0.5)
    train_classifier(teacher, train, epochs=8, lr=3e-3, batch_size=32)
    classes = [3, 5, 8]
    return ClassSubset(teacher, classes).eval(), subtask_data(train, classes), subtask_data(test, classes)


@pytest.fixture(scope="module")
def subtask():
    return digits_subtask()


@pytest.mark.slow
def test_layer_loss_is_zero_when_the_student_equals_the_rotated_target_and_matches_the_formula(subtask):
    teacher, train, _ = subtask
    torch.manual_seed(0)
    student = build_model("cnn", 1, 3, width=0.125)
    method = build_method("subdistill", layers={"features.4": "features.4", "features.1": "features.1"})
    assert isinstance(method, SubDistillPRCA)
    method.prepare(PrepareContext(teacher, student, train.x, train.y, "fp"))
    method.eval()
    from xdistill.hooks import FeatureHooks

    x = train.x[:6]
    with FeatureHooks(teacher, ["features.4", "features.1"]) as hooks, torch.no_grad():
        t_logits = teacher(x)
        t_feats = dict(hooks.features)
    rotations = dict(zip([t for _, t in method.pairs], method.rotations))
    student_feats = {}
    for s, t in method.pairs:
        target = method.target(t_feats[t], t)
        # s_raw = √(1+eps) Rᵀ t: R · Centering(s_raw) = t in evaluation mode with the running mean at zero
        scaled = (1 + 1e-5) ** 0.5 * (rotations[t].matrix.T @ target.flatten(2))
        student_feats[s] = scaled.reshape(target.shape).detach()
    step = Step(
        Batch(x, train.y[:6], torch.arange(6)), student, teacher, t_logits.clone(), t_logits, student_feats, t_feats
    )
    assert method.loss(step).abs() < 1e-9
    # a perturbed student: the published normalisation, by hand
    noisy = {s: f + 0.1 * torch.randn_like(f) for s, f in student_feats.items()}
    term = method.loss(Step(step.batch, student, teacher, t_logits, t_logits, noisy, t_feats))
    expected = 0.0
    for s, t in method.pairs:
        basis, sigma = method.bases[t]
        k = noisy[s].shape[1]
        diff = rotations[t](noisy[s] / (1 + 1e-5) ** 0.5) - method.target(t_feats[t], t)
        h_w = diff[0, 0].numel()
        expected += ((diff**2).sum((1, 2, 3)) / h_w).mean() / sigma[:k].sum()
    assert torch.allclose(term.double(), expected.double(), rtol=1e-5)
    # the preset's objective: 1 · τ² KL (τ = 4) + 100 · the layer term, no CE
    preset = build_terms([{"name": "subdistill_published", "layers": {"features.4": "features.4"}}])
    assert [(t.name, t.weight) for t in preset] == [("kd", 1.0), ("subdistill", 100.0)] and preset[0].temperature == 4.0


@pytest.mark.slow
def test_subdistill_trains_series_and_images_with_several_layer_pairs(subtask, tmp_path):
    teacher, train, test = subtask
    torch.manual_seed(0)
    student = build_model("cnn", 1, 3, width=0.125)
    method = {"name": "subdistill_published", "layers": {"features.1": "features.1", "features.4": "features.4"}}
    result = distill(
        teacher,
        student,
        train,
        [method],
        steps=400,
        batch_size=32,
        lr=3e-3,
        work_dir=tmp_path / "img",
        progress=False,
        loggers=(),
    )
    assert accuracy(predict(result.student, test.x), test.y) > 0.85
    # 1D feature maps: FCN teacher/student on GunPoint, every time step is a position
    gp_train, _ = load_dataset("ucr:GunPoint")
    torch.manual_seed(0)
    fcn_teacher = build_model("fcn1d", 1, 2, width=0.25)
    train_classifier(fcn_teacher, gp_train, epochs=20, lr=3e-3, batch_size=16)
    series_method = build_method("subdistill", layers={"features.2": "features.2"})
    torch.manual_seed(0)
    distill(
        fcn_teacher,
        build_model("fcn1d", 1, 2, width=0.125),
        gp_train,
        ["kd", series_method],
        epochs=2,
        batch_size=16,
        work_dir=tmp_path / "series",
        progress=False,
        loggers=(),
    )
    basis, sigma = series_method.bases["features.2"]
    assert basis.shape == (32, 32) and series_method.rotations[0].matrix.shape == (16, 16)


def test_pca_variant_stays_available():
    assert isinstance(build_method("subdistill", layers={"a": "b"}, basis="pca"), SubDistillPCA)
    with pytest.raises(LookupError, match="unknown subdistill basis"):
        build_method("subdistill", layers={"a": "b"}, basis="ica")


# ---- pixel flipping ---------------------------------------------------------------------------------------


class Linear1d(nn.Module):
    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.weights = weights

    def forward(self, x):
        return torch.stack([(x[:, 0] * self.weights).sum(1), -(x[:, 0] * self.weights).sum(1)], 1)


def test_pixel_flipping_of_a_linear_model_by_hand():
    w = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    model = Linear1d(w)
    x = torch.ones(1, 1, 6)
    parts, n = part_index((1, 6), "window", size=2)  # windows {0,1}, {2,3}, {4,5} with logit shares 3, 7, 11
    assert n == 3 and parts.tolist() == [0, 0, 1, 1, 2, 2]
    relevance = torch.tensor([[3.0, 7.0, 11.0]])
    curve = deletion_curve(model, x, torch.tensor([0]), relevance, parts)
    assert curve.tolist() == [[21.0, 10.0, 3.0, 0.0]]  # remove 11, then 7, then 3
    assert curve_area(curve).item() == pytest.approx(((21 + 10) / 2 + (10 + 3) / 2 + (3 + 0) / 2) / 3)
    worst = pixel_flipping(model, x, torch.tensor([0]), -relevance, "window", {"size": 2}, steps=None)
    best = pixel_flipping(model, x, torch.tensor([0]), relevance, "window", {"size": 2}, steps=None)
    assert best < worst  # the right ranking deletes evidence faster
    grid, count = part_index((1, 4, 4), "patch", grid=2)
    assert count == 4 and grid.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]


@pytest.mark.slow
def test_evaluation_reports_flipping_aucs(subtask):
    teacher, _, test = subtask
    config = AlignmentConfig("saliency", {}, "patch", {"grid": 4}, k=3)
    result = evaluate_pair(teacher, teacher, test.x[:20], test.y[:20], config, cost=False)
    assert result["flip_auc_student_teacher_order"].mean == pytest.approx(result["flip_auc_teacher"].mean)
    assert result["flip_auc_student"].n == 20


class TwoMaps(nn.Module):
    """A tiny CNN whose hooked map ``body`` has side ``side`` (a student at 8 beside a teacher at 4)."""

    def __init__(self, channels: int, side: int, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(side))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def official_layer_term(student_map, teacher_map, mean, basis, sigma_sum, rotation, eps=1e-5):
    """A hand-written loop of the official order (interface.py Policy.forward): align the spatial sizes by
    adaptive average pooling, then Centering2D (train-mode batch_norm without affine), then the rotation; the
    teacher side U_kᵀ(a − μ); Σ (s − t)² over channels and positions / positions, batch mean, / Σσ."""
    side = min(teacher_map.shape[-1], student_map.shape[-1])  # the larger map pooled to the smaller one's size
    pooled = F.adaptive_avg_pool2d(student_map, (side, side))
    teacher_map = F.adaptive_avg_pool2d(teacher_map, (side, side))
    batch_mean = pooled.mean((0, 2, 3), keepdim=True)
    batch_var = pooled.var((0, 2, 3), unbiased=False, keepdim=True)
    centred = (pooled - batch_mean) / torch.sqrt(batch_var + eps)
    rotated = torch.einsum("ij,bjhw->bihw", rotation, centred)
    target = torch.einsum("ck,bchw->bkhw", basis, teacher_map - mean[None, :, None, None])
    total = 0.0
    for b in range(student_map.shape[0]):
        total = total + ((rotated[b] - target[b]) ** 2).sum() / (side * side)
    return total / student_map.shape[0] / sigma_sum


@pytest.mark.parametrize("teacher_side, student_side", [(4, 8), (8, 4)])
def test_subdistill_pools_the_larger_map_before_centring_as_the_official_policy_in_float64(teacher_side, student_side):
    """Both branches of the official align_spatial_dimensions: the student's map larger (pooled, then centred) and
    the teacher's larger (pooled to the student's size before its projection)."""
    torch.manual_seed(0)
    x = torch.randn(40, 1, 8, 8, dtype=torch.float64)
    y = torch.arange(40) % 3
    teacher, student = TwoMaps(6, teacher_side).double().eval(), TwoMaps(4, student_side).double()
    term = build_method("subdistill", layers={"body": "body"})
    term.prepare(PrepareContext(teacher, student, x, y, "fp"))
    term.train()
    from xdistill.hooks import FeatureHooks

    batch = x[:12]
    with FeatureHooks(teacher, ["body"]) as t_hooks, torch.no_grad():
        t_logits = teacher(batch)
        t_map = t_hooks.features["body"]
    with FeatureHooks(student, ["body"]) as s_hooks:
        s_logits = student(batch)
        s_map = s_hooks.features["body"]
    step = Step(
        Batch(batch, y[:12], torch.arange(12)), student, teacher, s_logits, t_logits, {"body": s_map}, {"body": t_map}
    )
    loss = term.loss(step)
    assert loss.dtype == torch.float64  # buffers, centring and rotation follow the float64 student
    mean, basis, sigma_sum = (getattr(term, f"subspace_{what}_body") for what in ("mean", "basis", "sigma_sum"))
    rotation = term.rotations[0].matrix
    expected = official_layer_term(s_map, t_map, mean, basis, sigma_sum, rotation)
    assert torch.allclose(loss, expected, rtol=1e-10, atol=0)
    # the gradient the student gets equals the official order's too
    grad = torch.autograd.grad(loss, s_map, retain_graph=True)[0]
    expected_grad = torch.autograd.grad(expected, s_map, retain_graph=True)[0]
    assert torch.allclose(grad, expected_grad, rtol=1e-9, atol=1e-14)
    if student_side > teacher_side:  # centring the full map first (the order before this change) is another loss
        centre_first = term.rotations[0](term.centering[0](s_map))
        other = subspace_layer_loss(centre_first, term.target(t_map, "body"), sigma_sum)
        assert not torch.allclose(other, expected, rtol=1e-3)


def test_subdistill_trains_a_float64_student(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(48, 1, 8, 8, dtype=torch.float64)
    y = torch.arange(48) % 3
    teacher, student = TwoMaps(6, 4).double().eval(), TwoMaps(4, 8).double()
    from xdistill.data import ArrayDataset

    data = ArrayDataset(x.numpy(), y.numpy(), ["a", "b", "c"], "blocks")
    result = distill(
        teacher,
        student,
        data,
        [{"name": "subdistill_published", "layers": {"body": "body"}}],
        steps=3,
        batch_size=16,
        precision="64-true",
        work_dir=tmp_path,
        progress=False,
        loggers=(),
    )
    assert next(result.student.parameters()).dtype == torch.float64
