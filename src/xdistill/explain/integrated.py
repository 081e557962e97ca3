"""Integrated Gradients (Sundararajan et al. 2017), chunked and optionally differentiable."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..registry import Registry
from ._common import Target, check_input, default_rows, eval_mode, input_gradient, resolve_target
from .registry import EXPLAINERS

Rule = Callable[[int], tuple[np.ndarray, np.ndarray]]
RULES: Registry[Rule] = Registry("integration rule")


@RULES.register("riemann_left")
def _left(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(n) / n, np.full(n, 1.0 / n)


@RULES.register("riemann_right")
def _right(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(1, n + 1) / n, np.full(n, 1.0 / n)


@RULES.register("riemann_middle")
def _middle(n: int) -> tuple[np.ndarray, np.ndarray]:
    return (np.arange(n) + 0.5) / n, np.full(n, 1.0 / n)


@RULES.register("riemann_trapezoid")
def _trapezoid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Trapezoid rule with weights summing to 1 (Captum's sum to (n-1)/n)."""
    if n < 2:
        raise ValueError("riemann_trapezoid needs n_steps >= 2")
    weights = np.full(n, 1.0 / (n - 1))
    weights[[0, -1]] /= 2
    return np.linspace(0.0, 1.0, n), weights


@RULES.register("gauss_legendre")
def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return 0.5 * (nodes + 1.0), 0.5 * weights


def integration_points(rule: str, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(alphas, weights)`` on [0, 1] for an integration rule."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    return RULES.get(rule)(n_steps)


@EXPLAINERS.register("integrated_gradients")
def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    baseline: torch.Tensor | float | None = None,
    n_steps: int = 50,
    rule: str = "gauss_legendre",
    chunk_size: int | None = None,
    differentiable: bool = False,
) -> torch.Tensor:
    """Integrated Gradients of the target logit, shaped like ``x``.

    ``baseline``: zeros (default), a scalar, or a tensor broadcastable to ``x``.
    ``chunk_size``: most interpolated inputs per forward pass (at least one step of the
    whole batch), so memory stays bounded whatever ``n_steps`` is; default: the library's
    choice for the device (``default_rows``: 256 on a CPU, 4096 on an accelerator).
    ``differentiable=True`` keeps the autograd graph (``create_graph``) in every chunk so
    a loss on the attributions backpropagates to the model parameters (and to ``x`` when it
    requires grad).
    """
    check_input(x)
    alphas_np, weights_np = integration_points(rule, n_steps)
    if baseline is None:
        baseline = torch.zeros_like(x)
    baseline = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)
    if not differentiable:
        x, baseline = x.detach(), baseline.detach()
    alphas = torch.as_tensor(alphas_np, dtype=x.dtype, device=x.device)
    weights = torch.as_tensor(weights_np, dtype=x.dtype, device=x.device)
    batch, feature_shape = x.shape[0], tuple(x.shape[1:])
    trailing = (1,) * x.ndim
    delta = x - baseline
    steps_per_chunk = max(1, (chunk_size or default_rows(x.device, cpu=256)) // batch)

    total = torch.zeros_like(x)
    with eval_mode(model):
        target = resolve_target(model, x, target)
        for start in range(0, n_steps, steps_per_chunk):
            a = alphas[start : start + steps_per_chunk]
            w = weights[start : start + steps_per_chunk]
            k = a.shape[0]
            path = baseline.unsqueeze(0) + a.view((k,) + trailing) * delta.unsqueeze(0)
            path = path.reshape((k * batch,) + feature_shape)
            if not differentiable:
                path.requires_grad_(True)
            grad = input_gradient(model, path, target, differentiable)
            grad = grad.reshape((k, batch) + feature_shape)
            total = total + torch.tensordot(w, grad, dims=([0], [0]))
    return delta * total
