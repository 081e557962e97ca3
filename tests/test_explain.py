import pytest
import torch
from torch import nn

from xdistill import explain as xe
from xdistill.registry import UnknownNameError


def completeness_gap(model, x, attributions, target, baseline):
    with torch.no_grad():
        fx = model(x).gather(1, target[:, None]).squeeze(1)
        fb = model(baseline).gather(1, target[:, None]).squeeze(1)
    return attributions.flatten(1).sum(1) - (fx - fb), fx - fb


# ---- axioms ---------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["gauss_legendre", "riemann_middle", "riemann_trapezoid"])
def test_ig_completeness_on_nonlinear_path(conv_net, series, rule):
    target = torch.tensor([0, 1, 2, 0])
    baseline = torch.full_like(series, 0.3)
    attr = xe.integrated_gradients(conv_net, series, target, baseline=baseline, n_steps=64, rule=rule)
    gap, total = completeness_gap(conv_net, series, attr, target, baseline)
    # the path must really be non-linear, otherwise the test is degenerate
    assert total.abs().min() > 1e-2
    assert gap.abs().max() < 1e-3 * total.abs().max()


def test_ig_riemann_error_shrinks_with_steps(conv_net, series):
    target = torch.tensor([1, 1, 1, 1])
    gaps = []
    for n in (4, 16, 64):
        attr = xe.integrated_gradients(conv_net, series, target, n_steps=n, rule="riemann_left")
        gaps.append(completeness_gap(conv_net, series, attr, target, torch.zeros_like(series))[0].abs().max())
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] > 0  # left Riemann on a curved path is not exact


def test_saliency_equals_autograd(conv_net, series):
    target = torch.tensor([2, 0, 1, 1])
    x = series.clone().requires_grad_(True)
    conv_net(x).gather(1, target[:, None]).sum().backward()
    assert torch.allclose(xe.saliency(conv_net, series, target), x.grad, rtol=0, atol=1e-12)
    assert torch.allclose(xe.input_x_gradient(conv_net, series, target), series * x.grad, atol=1e-12)


def test_occlusion_exact_on_linear_model():
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 20, 4)).double()
    x = torch.randn(5, 3, 20, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 3, 0])
    w = linear[1].weight.reshape(4, 3, 20)[target]
    # window 1 over time, all channels: the drop is the sum over channels of w*x at that timestep
    attr = xe.occlusion(linear, x, target, window=1)
    expected = (w * x).sum(1, keepdim=True).expand_as(x)
    assert torch.allclose(attr, expected, atol=1e-12)
    # windows of 4: each timestep gets the mean over the windows that cover it
    attr4 = xe.occlusion(linear, x, target, window=4, stride=2)
    per_t = (w * x).sum(1)
    starts = list(range(0, 17, 2))
    manual = torch.zeros(5, 20, dtype=torch.float64)
    counts = torch.zeros(20, dtype=torch.float64)
    for s in starts:
        manual[:, s : s + 4] += per_t[:, s : s + 4].sum(1, keepdim=True)
        counts[s : s + 4] += 1
    assert torch.allclose(attr4[:, 0], manual / counts, atol=1e-12)


def test_smoothgrad_of_linear_model_is_the_weight():
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(10, 3)).double()
    x = torch.randn(4, 1, 10, dtype=torch.float64)
    attr = xe.smoothgrad(linear, x, 1, n_samples=7, noise_level=0.5)
    assert torch.allclose(attr, linear[1].weight[1].reshape(1, 1, 10).expand_as(x), atol=1e-12)


def test_smoothgrad_without_noise_is_saliency(conv_net, series):
    attr = xe.smoothgrad(conv_net, series, 0, n_samples=3, noise_level=0.0)
    assert torch.allclose(attr, xe.saliency(conv_net, series, 0), atol=1e-12)


# ---- contract ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(xe.EXPLAINERS))
def test_contract_shape_and_train_flag_restored(conv_net, series, method):
    conv_net.train()
    conv_net[1].eval()  # a mixed state must come back exactly
    out = xe.explain(conv_net, series, None, method=method)
    assert out.shape == series.shape
    assert torch.isfinite(out).all()
    assert conv_net.training and not conv_net[1].training and conv_net[0].training


def test_batchnorm_runs_in_eval_mode():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(1, 4, 3), nn.BatchNorm1d(4), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8, 2))
    net[1].running_mean.fill_(0.5)
    net.train()
    x = torch.randn(6, 1, 10)
    full = xe.saliency(net, x, 0)
    single = xe.saliency(net, x[:1], 0)
    assert torch.allclose(full[:1], single, atol=1e-6)  # no batch statistics leak in
    assert net.training


def test_unknown_method_lists_known():
    with pytest.raises(UnknownNameError, match="integrated_gradients"):
        xe.explain(nn.Linear(2, 2), torch.zeros(1, 2), 0, method="nope")


def test_bad_target_size_is_a_clear_error(conv_net, series):
    with pytest.raises(ValueError, match="one class index per sample"):
        xe.saliency(conv_net, series, torch.tensor([0, 1]))


def test_target_none_is_predicted_class(conv_net, series):
    pred = conv_net(series).argmax(1)
    assert torch.equal(xe.saliency(conv_net, series, None), xe.saliency(conv_net, series, pred))


# ---- chunking and differentiability --------------------------------------------------------


def test_ig_chunking_does_not_change_result(conv_net, series):
    full = xe.integrated_gradients(conv_net, series, 1, n_steps=20, chunk_size=10_000)
    chunked = xe.integrated_gradients(conv_net, series, 1, n_steps=20, chunk_size=4)  # 1 step a chunk
    uneven = xe.integrated_gradients(conv_net, series, 1, n_steps=20, chunk_size=4 * 7)
    assert torch.allclose(full, chunked, atol=1e-12) and torch.allclose(full, uneven, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [10_000, 8])
@pytest.mark.parametrize("method", ["integrated_gradients", "saliency", "smoothgrad", "occlusion", "input_x_gradient"])
def test_differentiable_mode_gives_parameter_gradients(conv_net, series, method, chunk_size):
    options = {"chunk_size": chunk_size} if method in ("integrated_gradients", "smoothgrad", "occlusion") else {}
    attr = xe.explain(conv_net, series, 0, method=method, differentiable=True, **options)
    assert attr.requires_grad
    attr.pow(2).sum().backward()
    # every parameter but the last bias (which shifts all logits and so no attribution) gets a gradient
    params = list(conv_net.parameters())[:-1]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_differentiable_ig_gradient_matches_finite_difference(conv_net, series):
    """The parameter gradient through chunked IG is the true derivative of the IG map."""

    def loss():
        return xe.integrated_gradients(conv_net, series, 0, n_steps=8, chunk_size=8, differentiable=True).sum()

    first = conv_net[0].bias
    first.grad = None
    loss().backward()
    eps = 1e-6
    with torch.no_grad():
        first[0] += eps
        up = loss().item()
        first[0] -= 2 * eps
        down = loss().item()
        first[0] += eps
    assert abs(first.grad[0].item() - (up - down) / (2 * eps)) < 1e-5 * max(1.0, abs(up))


def test_non_differentiable_mode_returns_detached(conv_net, series):
    assert not xe.integrated_gradients(conv_net, series, 0, n_steps=4).requires_grad


# ---- agreement with Captum -----------------------------------------------------------------
