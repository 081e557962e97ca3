"""Randomness and batch statistics that do not depend on how a batch is split across processes.

A method's random draws are keyed by (seed, optimiser step, dataset index): the same sample in the
same step draws the same numbers whether its batch runs in one process or is cut into N slices
(DDP), and a resumed run draws what an uninterrupted one would. ``global_sum`` sums a tensor over
every process (differentiably), so a statistic of the whole batch — e.g. TSD's normaliser — is the
one a single process would compute.
"""

from __future__ import annotations

import torch


def _key(seed: int, step: int, index: int) -> int:
    """A 63-bit seed from three integers (Python's tuple hash of ints is the same in every process)."""
    return hash((seed, step, index)) & 0x7FFF_FFFF_FFFF_FFFF


class SampleStreams:
    """One random stream per sample of a batch, keyed by (seed, step, dataset index).

    ``streams(n)`` returns (B, n) uniforms in [0, 1); successive calls continue each stream.
    """

    def __init__(self, index: torch.Tensor, seed: int, step: int) -> None:
        self.device = index.device
        self.generators = [torch.Generator().manual_seed(_key(seed, step, i)) for i in index.tolist()]

    def __call__(self, n: int) -> torch.Tensor:
        if not self.generators:
            return torch.empty(0, n, device=self.device)
        return torch.stack([torch.rand(n, generator=g) for g in self.generators]).to(self.device)


def world_size() -> int:
    """Processes in the current ``torch.distributed`` group (1 when not distributed)."""
    distributed = torch.distributed
    if distributed.is_available() and distributed.is_initialized():
        return distributed.get_world_size()
    return 1


def global_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over every process; gradients flow back to each process's share."""
    if world_size() == 1:
        return t
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t)
