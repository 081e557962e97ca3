"""Our explainers against Captum's, the reference implementation (the only tests that need captum)."""

import pytest
import torch
from torch import nn

from xdistill import explain as xe

captum_attr = pytest.importorskip("captum.attr")


def _rel_close(a, b, rtol=1e-5):
    return (a - b).abs().max() <= rtol * b.abs().max()


@pytest.mark.parametrize(
    "ours,theirs",
    [
        ("gauss_legendre", "gausslegendre"),
        ("riemann_middle", "riemann_middle"),
        ("riemann_left", "riemann_left"),
        ("riemann_right", "riemann_right"),
    ],
)
def test_ig_agrees_with_captum(conv_net, series, ours, theirs):
    target = torch.tensor([0, 2, 1, 0])
    baseline = torch.randn_like(series) * 0.1
    mine = xe.integrated_gradients(conv_net, series, target, baseline=baseline, n_steps=30, rule=ours, chunk_size=16)
    ref = captum_attr.IntegratedGradients(conv_net).attribute(
        series, baselines=baseline, target=target, n_steps=30, method=theirs
    )
    assert _rel_close(mine, ref)


def test_ig_trapezoid_differs_from_captum_by_their_weight_sum(conv_net, series):
    n = 30
    mine = xe.integrated_gradients(conv_net, series, 1, n_steps=n, rule="riemann_trapezoid")
    ref = captum_attr.IntegratedGradients(conv_net).attribute(series, target=1, n_steps=n, method="riemann_trapezoid")
    assert _rel_close(mine, ref * n / (n - 1))


def test_saliency_and_input_x_gradient_agree_with_captum(conv_net, series):
    assert _rel_close(
        xe.saliency(conv_net, series, 1, absolute=True), captum_attr.Saliency(conv_net).attribute(series, target=1)
    )
    assert _rel_close(
        xe.input_x_gradient(conv_net, series, 1), captum_attr.InputXGradient(conv_net).attribute(series, target=1)
    )


@pytest.mark.parametrize("window,stride", [((2, 4), (1, 2)), ((1, 3), (1, 3)), ((2, 1), (1, 1))])
def test_occlusion_agrees_with_captum(conv_net, series, window, stride):
    target = torch.tensor([0, 2, 1, 0])
    mine = xe.occlusion(conv_net, series, target, window=window, stride=stride, baseline=0.1, chunk_size=8)
    ref = captum_attr.Occlusion(conv_net).attribute(
        series, sliding_window_shapes=window, strides=stride, baselines=0.1, target=target
    )
    assert _rel_close(mine, ref)


def test_occlusion_on_images_agrees_with_captum():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    mine = xe.occlusion(net, x, 3, window=2, stride=2)
    ref = captum_attr.Occlusion(net).attribute(x, sliding_window_shapes=(3, 2, 2), strides=(1, 2, 2), target=3)
    assert _rel_close(mine, ref)


def test_smoothgrad_agrees_with_captum_noise_tunnel_given_the_same_noise(conv_net, series):
    """Same seed, same draws: our SmoothGrad equals Captum's NoiseTunnel(Saliency) mean."""
    n, level = 5, 0.2
    flat = series.reshape(4, -1)
    sigma = (level * (flat.max(1).values - flat.min(1).values)).reshape(4, 1, 1)
    gen = torch.Generator().manual_seed(3)
    noise = torch.randn((n,) + tuple(series.shape), generator=gen, dtype=series.dtype)
    # mean of plain gradients on the same noisy inputs, computed with Captum's Saliency
    sal = captum_attr.Saliency(conv_net)
    ref = torch.stack([sal.attribute(series + noise[i] * sigma, target=2, abs=False) for i in range(n)]).mean(0)
    mine = xe.smoothgrad(conv_net, series, 2, n_samples=n, noise_level=level, seed=3)
    assert _rel_close(mine, ref)
