"""Shared helpers for explainers: eval mode, target selection, chunking."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

Target = None | int | torch.Tensor


def default_rows(device: torch.device | str, cpu: int = 128) -> int:
    """Rows per forward pass when the library sizes the chunks: cache-sized on a CPU (measured by
    ``benchmarks/evaluation_speed.py`` and ``benchmarks/tsd_speed.py``: 128–256 rows run 1.3–1.7x
    faster than 1024–2048), large enough to fill an accelerator elsewhere."""
    return cpu if torch.device(device).type == "cpu" else 4096


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every sub-module in eval mode; restore each module's own flag on exit."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, was_training in flags:
            module.training = was_training


def resolve_target(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """Return a (B,) long tensor of class indices; ``None`` means the predicted class."""
    batch = x.shape[0]
    if target is None:
        with torch.no_grad():
            return model(x).argmax(dim=1)
    if isinstance(target, int):
        return torch.full((batch,), target, dtype=torch.long, device=x.device)
    target = torch.as_tensor(target, device=x.device).long().reshape(-1)
    if target.numel() == 1:
        return target.expand(batch).clone()
    if target.numel() != batch:
        raise ValueError(
            f"target has {target.numel()} entries but x has batch size {batch}; "
            "pass one class index per sample, a single int, or None for the predicted class"
        )
    return target


def select(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pick ``logits[i, target[i]]`` for a batch whose rows may repeat the targets."""
    if logits.ndim != 2:
        raise ValueError(f"model output must be (batch, classes), got shape {tuple(logits.shape)}")
    repeats = logits.shape[0] // target.shape[0]
    return logits.gather(1, target.repeat(repeats).unsqueeze(1)).squeeze(1)


def check_input(x: torch.Tensor, allow_integer: bool = False) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"x must be batched (batch, ...), got shape {tuple(x.shape)}")
    if not x.is_floating_point() and not allow_integer:
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")


def input_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor, differentiable: bool) -> torch.Tensor:
    """Gradient of the selected logits w.r.t. ``x`` (x may be a batch of repeated inputs)."""
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = select(model(x), target)
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=differentiable)
    return grad
