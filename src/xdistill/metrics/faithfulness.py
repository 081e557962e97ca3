"""Pixel flipping (deletion curves): does a model rely on the parts an explanation ranks first?

The parts of an input (windows of a series, patches or pixels of an image) are removed —
set to a baseline — in the order of a relevance ranking, most relevant first, and the
explained logit is tracked. A faithful ranking makes the logit fall fast: a small area
under the curve. Flipping the *student* in the *teacher's* order asks whether the student
relies on what the teacher relies on (SubDistill's XAI evaluation, arXiv 2601.05913).
"""

from __future__ import annotations

import torch
from torch import nn

from ..explain import eval_mode


def part_index(shape: tuple[int, ...], kind: str, **options) -> tuple[torch.Tensor, int]:
    """For one input of ``shape`` (C, T) or (C, H, W): the part number of every time step / pixel, and the count.

    Numbering matches :mod:`xdistill.parts` (``window``: ``t // size``; ``patch``: row-major grid;
    ``timestep`` / ``pixel``: one part per step / pixel).
    """
    if kind in ("window", "timestep") and len(shape) == 2:
        size = options.get("size", 5) if kind == "window" else 1
        index = torch.arange(shape[1]) // size
        return index, int(index.max()) + 1
    if kind in ("patch", "pixel") and len(shape) == 3:
        height, width = shape[1:]
        gh, gw = (height, width) if kind == "pixel" else _grid(options.get("grid", 4))
        rows, cols = torch.arange(height) * gh // height, torch.arange(width) * gw // width
        return rows[:, None] * gw + cols[None, :], gh * gw
    raise ValueError(
        f"pixel flipping supports window/timestep parts of (C, T) series and patch/pixel parts of "
        f"(C, H, W) images; got parts {kind!r} for inputs shaped {shape}"
    )


def _grid(grid: int | tuple[int, int]) -> tuple[int, int]:
    return (grid, grid) if isinstance(grid, int) else (int(grid[0]), int(grid[1]))


def deletion_curve(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    relevance: torch.Tensor,
    parts: torch.Tensor,
    steps: int | None = None,
    baseline: float = 0.0,
) -> torch.Tensor:
    """(B, points) explained logit after removing the 0, n_1, n_2, ... most relevant parts.

    ``relevance`` (B, n_parts) ranks the parts (ties broken by part number); ``parts`` maps
    every step/pixel to its part (from :func:`part_index`). ``steps=None`` removes parts one
    at a time; otherwise ``steps`` evenly spaced removal counts from 0 to all parts.
    """
    n_parts = relevance.shape[1]
    counts = torch.arange(n_parts + 1) if steps is None else torch.linspace(0, n_parts, steps + 1).round().long()
    order = relevance.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n_parts).expand_as(order))  # rank[b, p]: position of part p
    element_rank = rank[:, parts.reshape(-1)].reshape((x.shape[0], 1) + tuple(parts.shape))  # (B, 1, ...)
    curve = []
    with eval_mode(model), torch.no_grad():
        for count in counts.tolist():
            removed = torch.where(element_rank < count, torch.as_tensor(baseline, dtype=x.dtype), x)
            curve.append(model(removed).gather(1, target[:, None]).squeeze(1))
    return torch.stack(curve, 1)


def curve_area(curve: torch.Tensor) -> torch.Tensor:
    """Per-sample area under a deletion curve on [0, 1] (trapezoid rule); smaller = more faithful."""
    return ((curve[:, 1:] + curve[:, :-1]) / 2).mean(1)


def pixel_flipping(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    relevance: torch.Tensor,
    kind: str,
    part_options: dict | None = None,
    steps: int | None = 20,
    baseline: float = 0.0,
) -> torch.Tensor:
    """Per-sample deletion AUC of ``model`` when flipping parts in the order of ``relevance`` (B, n_parts)."""
    parts, n_parts = part_index(tuple(x.shape[1:]), kind, **(part_options or {}))
    if relevance.shape[1] != n_parts:
        raise ValueError(
            f"relevance has {relevance.shape[1]} parts but {kind} parts of {tuple(x.shape[1:])} are {n_parts}"
        )
    steps = None if steps is None or steps >= n_parts else steps
    return curve_area(deletion_curve(model, x, target, relevance, parts, steps, baseline))
