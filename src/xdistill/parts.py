"""Reduce an attribution map to one importance value per part.

Every reducer takes a batched map and returns ``(B, n_parts)``. ``signed=False`` (the
default) sums absolute attributions, ``signed=True`` keeps signs so that positive and
negative evidence cancel within a part.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .registry import Registry

PartReducer = Callable[..., torch.Tensor]
PARTS: Registry[PartReducer] = Registry("part kind")


def _values(attr: torch.Tensor, signed: bool) -> torch.Tensor:
    return attr if signed else attr.abs()


def _need_ndim(attr: torch.Tensor, ndim: int, layout: str) -> None:
    if attr.ndim != ndim:
        raise ValueError(f"expected attributions shaped {layout}, got {tuple(attr.shape)}")


@PARTS.register("timestep")
def timestep_importance(attr: torch.Tensor, signed: bool = False) -> torch.Tensor:
    """(B, C, T) or (B, T) -> (B, T): summed over channels."""
    values = _values(attr, signed)
    return values if values.ndim == 2 else values.flatten(1, -2).sum(1)


@PARTS.register("window")
def window_importance(attr: torch.Tensor, size: int = 5, signed: bool = False) -> torch.Tensor:
    """(B, C, T) or (B, T) -> (B, ceil(T / size)): sums over non-overlapping windows."""
    if size < 1:
        raise ValueError(f"window size must be >= 1, got {size}")
    per_step = timestep_importance(attr, signed)
    pad = (-per_step.shape[1]) % size
    return F.pad(per_step, (0, pad)).reshape(per_step.shape[0], -1, size).sum(2)


@PARTS.register("pixel")
def pixel_importance(attr: torch.Tensor, signed: bool = False) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W): summed over channels."""
    _need_ndim(attr, 4, "(B, C, H, W)")
    return _values(attr, signed).sum(1).flatten(1)


@PARTS.register("patch")
def patch_importance(attr: torch.Tensor, grid: int | tuple[int, int] = 4, signed: bool = False) -> torch.Tensor:
    """(B, C, H, W) -> (B, gh*gw): sums over a grid of patches, numbered row-major.

    Pixel row ``r`` belongs to patch row ``r * gh // H`` (columns alike), so every pixel
    lands in exactly one patch even when the grid does not divide the image.
    """
    _need_ndim(attr, 4, "(B, C, H, W)")
    gh, gw = (grid, grid) if isinstance(grid, int) else grid
    height, width = attr.shape[-2:]
    if not (1 <= gh <= height and 1 <= gw <= width):
        raise ValueError(f"grid {(gh, gw)} must be between 1 and the image size {(height, width)}")
    rows = torch.arange(height, device=attr.device) * gh // height
    cols = torch.arange(width, device=attr.device) * gw // width
    patch_of_pixel = (rows[:, None] * gw + cols[None, :]).flatten()
    assignment = F.one_hot(patch_of_pixel, gh * gw).to(attr.dtype)
    return pixel_importance(attr, signed) @ assignment


@PARTS.register("token")
def token_importance(attr: torch.Tensor, signed: bool = False) -> torch.Tensor:
    """(B, L, D) token-embedding attributions -> (B, L): summed over the embedding dim."""
    _need_ndim(attr, 3, "(B, L, D)")
    return _values(attr, signed).sum(2)


@PARTS.register("feature")
def feature_importance(attr: torch.Tensor, signed: bool = False) -> torch.Tensor:
    """Any shape -> (B, prod(rest)): every input element is a part."""
    return _values(attr, signed).flatten(1)


def to_parts(attr: torch.Tensor, kind: str, **options) -> torch.Tensor:
    """Reduce ``attr`` with the reducer registered as ``kind``."""
    return PARTS.get(kind)(attr, **options)
