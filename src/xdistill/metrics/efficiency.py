"""Model cost: parameters, compression, FLOPs (torch's flop counter), latency."""

from __future__ import annotations

import time

import torch
from torch import nn

from ..explain import eval_mode


def parameter_count(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def compression_ratio(teacher: nn.Module, student: nn.Module) -> float:
    """Teacher parameters divided by student parameters."""
    return parameter_count(teacher) / parameter_count(student)


def flops(model: nn.Module, example: torch.Tensor) -> int:
    """FLOPs of one forward pass on ``example`` (a batch), counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with eval_mode(model), torch.no_grad(), counter:
        model(example)
    return int(counter.get_total_flops())


def latency(model: nn.Module, example: torch.Tensor, repeats: int = 20, warmup: int = 3) -> float:
    """Median seconds per forward pass of ``example`` (eval mode, no grad)."""
    times = []
    with eval_mode(model), torch.no_grad():
        for i in range(warmup + repeats):
            if example.is_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(example)
            if example.is_cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]
