"""Statistics of the global batch under ``torch.distributed``: what one process would compute on the whole batch.

``global_sum`` sums a tensor over every process, differentiably (the gradient of a sum is the sum of the
gradients, so every process's share gets the gradient one process would give it). ``global_batch_statistics``
makes a model's BatchNorm layers normalise with the mean and variance of the global batch while training
(torch's ``SyncBatchNorm`` runs on GPUs only; this runs wherever the process group does, gloo included).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

#: this process's place in the last multi-process fit it joined: (rank, world size), or None; kept after the
#: process group is gone (Lightning clears WORLD_SIZE on teardown) so an error can name the rank that was lost
LAST_GROUP: list[tuple[int, int]] = []


def remember_group(rank: int, world: int) -> None:
    """Record this process's rank and the world size of the fit it is in (see :data:`LAST_GROUP`)."""
    LAST_GROUP[:] = [(rank, world)]


def world_size() -> int:
    """Processes in the current ``torch.distributed`` group (1 when not distributed)."""
    distributed = torch.distributed
    if distributed.is_available() and distributed.is_initialized():
        return distributed.get_world_size()
    return 1


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; its backward sums the incoming gradients over processes too."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = tensor.clone(memory_format=torch.contiguous_format)
        torch.distributed.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone(memory_format=torch.contiguous_format)
        torch.distributed.all_reduce(grad)
        return grad


def global_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over every process; gradients flow back to each process's share."""
    if world_size() == 1:
        return t
    return _AllReduceSum.apply(t)


class _GlobalStatistics:
    """Mixed into a BatchNorm class: in training mode under several processes, normalise with the statistics
    of the global batch (and track them in the running buffers exactly as one process would)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        bn: _BatchNorm = self  # type: ignore[assignment]
        if not (bn.training and world_size() > 1 and (bn.track_running_stats or bn.running_mean is None)):
            return super().forward(input)  # type: ignore[misc]
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        count = global_sum(input.new_tensor(float(input.numel() // input.shape[1])))
        mean = global_sum(input.sum(dims)) / count
        centred = input - mean.reshape(shape)
        var = global_sum((centred * centred).sum(dims)) / count
        out = centred * torch.rsqrt(var.reshape(shape) + bn.eps)
        if bn.affine:
            out = out * bn.weight.reshape(shape) + bn.bias.reshape(shape)
        if bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None:
            with torch.no_grad():
                assert bn.num_batches_tracked is not None
                bn.num_batches_tracked.add_(1)
                factor = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                unbiased = var.detach() * count / (count - 1).clamp(min=1.0)
                bn.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                bn.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        return out


_GLOBAL_CLASSES: dict[type, type] = {}


def _global_class(cls: type) -> type:
    if cls not in _GLOBAL_CLASSES:
        name = f"Global{cls.__name__}"
        _GLOBAL_CLASSES[cls] = type(name, (_GlobalStatistics, cls), {"__module__": __name__})
        globals().setdefault(name, _GLOBAL_CLASSES[cls])  # found by name if a spawned process unpickles it
    return _GLOBAL_CLASSES[cls]


@contextmanager
def global_batch_statistics(model: nn.Module, enabled: bool = True) -> Iterator[int]:
    """Inside, ``model``'s BatchNorm layers use the global batch's statistics when training under several
    processes; yields how many layers it switched. The layers keep their parameters, buffers and state-dict keys
    and get their own class back on exit."""
    switched = []
    if enabled:
        for module in model.modules():
            if isinstance(module, _BatchNorm) and not isinstance(module, _GlobalStatistics):
                switched.append((module, type(module)))
                module.__class__ = _global_class(type(module))
    try:
        yield len(switched)
    finally:
        for module, cls in switched:
            module.__class__ = cls
