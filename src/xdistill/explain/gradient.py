"""Gradient-based explainers: saliency, input x gradient, SmoothGrad."""

from __future__ import annotations

import torch
from torch import nn

from ._common import Target, check_input, eval_mode, input_gradient, resolve_target
from .registry import EXPLAINERS


@EXPLAINERS.register("saliency")
def saliency(
    model: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    absolute: bool = False,
    differentiable: bool = False,
) -> torch.Tensor:
    """Gradient of the target logit w.r.t. the input (Simonyan et al. 2014)."""
    check_input(x)
    with eval_mode(model):
        target = resolve_target(model, x, target)
        grad = input_gradient(model, x, target, differentiable)
    return grad.abs() if absolute else grad


@EXPLAINERS.register("input_x_gradient")
def input_x_gradient(
    model: nn.Module, x: torch.Tensor, target: Target = None, *, differentiable: bool = False
) -> torch.Tensor:
    """Input times gradient (Shrikumar et al. 2016)."""
    return x * saliency(model, x, target, differentiable=differentiable)


@EXPLAINERS.register("smoothgrad")
def smoothgrad(
    model: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    n_samples: int = 25,
    noise_level: float = 0.15,
    squared: bool = False,
    chunk_size: int = 512,
    seed: int | None = 0,
    differentiable: bool = False,
) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): mean gradient over noisy copies of the input.

    The noise std is ``noise_level * (max(x_i) - min(x_i))`` per sample, as in the paper.
    ``squared=True`` averages squared gradients (SmoothGrad-Squared).
    """
    check_input(x)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    batch = x.shape[0]
    flat = x.detach().reshape(batch, -1)
    sigma = noise_level * (flat.max(1).values - flat.min(1).values)
    sigma = sigma.reshape((batch,) + (1,) * (x.ndim - 1))
    generator = None
    if seed is not None:
        generator = torch.Generator(device=x.device).manual_seed(seed)
    per_chunk = max(1, chunk_size // batch)
    total = torch.zeros_like(x)
    with eval_mode(model):
        target = resolve_target(model, x, target)
        done = 0
        while done < n_samples:
            k = min(per_chunk, n_samples - done)
            noise = torch.randn((k,) + tuple(x.shape), generator=generator, device=x.device, dtype=x.dtype)
            noisy = (x.unsqueeze(0) + noise * sigma.unsqueeze(0)).reshape((k * batch,) + tuple(x.shape[1:]))
            grad = input_gradient(model, noisy, target, differentiable).reshape((k,) + tuple(x.shape))
            total = total + (grad.pow(2) if squared else grad).sum(0)
            done += k
    return total / n_samples
