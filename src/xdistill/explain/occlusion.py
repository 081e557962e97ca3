"""Occlusion (Zeiler & Fergus 2014); on time series this is temporal saliency.

Each window of the input is replaced by a baseline; a feature's attribution is the mean,
over the windows that cover it, of ``f(x)[target] - f(x_occluded)[target]``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from ._common import Target, check_input, default_rows, eval_mode, resolve_target, select
from .registry import EXPLAINERS


def _as_shape(value: int | Sequence[int], feature_shape: tuple[int, ...], name: str, fill: int) -> tuple[int, ...]:
    """An int applies to every dim after the channel dim; the channel dim gets ``fill``."""
    if isinstance(value, int):
        if len(feature_shape) == 1:
            return (value,)
        return (fill,) + (value,) * (len(feature_shape) - 1)
    value = tuple(int(v) for v in value)
    if len(value) != len(feature_shape):
        raise ValueError(f"{name} {value} must have one entry per non-batch dim of x {feature_shape}")
    return value


def _starts(size: int, window: int, stride: int) -> list[int]:
    """Window start positions; a last window is aligned to the end if stride leaves a gap."""
    if not 1 <= window <= size:
        raise ValueError(f"window {window} must be between 1 and the dim size {size}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] + window < size:
        starts.append(size - window)
    return starts


def window_masks(feature_shape: tuple[int, ...], window: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    """All occlusion masks, shape (n_windows, *feature_shape), 1 inside each window."""
    per_dim = [_starts(n, w, s) for n, w, s in zip(feature_shape, window, stride)]
    positions = list(itertools.product(*per_dim))
    masks = torch.zeros((len(positions),) + feature_shape)
    for i, pos in enumerate(positions):
        masks[(i,) + tuple(slice(p, p + w) for p, w in zip(pos, window))] = 1.0
    return masks


@EXPLAINERS.register("occlusion")
def occlusion(
    model: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    window: int | Sequence[int] = 5,
    stride: int | Sequence[int] = 1,
    baseline: torch.Tensor | float = 0.0,
    chunk_size: int | None = None,
    differentiable: bool = False,
) -> torch.Tensor:
    """Sliding-window occlusion attributions shaped like ``x``.

    ``window``/``stride``: an int covers every channel and slides over the remaining dims
    (timesteps of a (B, C, T) series, pixels of a (B, C, H, W) image); a tuple gives one
    entry per non-batch dim, as in Captum. ``chunk_size`` bounds rows per forward pass
    (default: the library's choice for the device, ``default_rows``).
    Integer inputs (token ids) are occluded by replacing them with ``baseline`` (e.g. the
    padding id 0); their attributions are float32.
    """
    check_input(x, allow_integer=True)
    feature_shape = tuple(x.shape[1:])
    window_t = _as_shape(window, feature_shape, "window", feature_shape[0])
    stride_t = _as_shape(stride, feature_shape, "stride", 1)
    out_dtype = x.dtype if x.is_floating_point() else torch.float32
    masks = window_masks(feature_shape, window_t, stride_t).to(device=x.device, dtype=out_dtype)
    counts = masks.sum(0)
    baseline = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)
    batch = x.shape[0]
    per_chunk = max(1, (chunk_size or default_rows(x.device)) // batch)
    total = torch.zeros(x.shape, dtype=out_dtype, device=x.device)
    with eval_mode(model):
        target = resolve_target(model, x, target)
        with torch.enable_grad() if differentiable else torch.no_grad():
            reference = select(model(x), target)
            for start in range(0, masks.shape[0], per_chunk):
                m = masks[start : start + per_chunk].unsqueeze(1)
                k = m.shape[0]
                occluded = torch.where(m > 0, baseline.unsqueeze(0), x.unsqueeze(0))
                out = select(model(occluded.reshape((k * batch,) + feature_shape)), target)
                drop = reference.unsqueeze(0) - out.reshape(k, batch)
                total = total + (drop.T @ m.reshape(k, -1)).reshape(x.shape)
    return total / counts
