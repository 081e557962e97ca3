"""Randomness and batch statistics that do not depend on how a batch is split across processes.

A term's random draws are keyed by (seed, salt, optimiser step, dataset index): the same sample in
the same step draws the same numbers whether its batch runs in one process or is cut into N
slices (DDP), and a resumed run draws what an uninterrupted one would. The generator is
counter-based (SplitMix64 over a per-sample key and a counter), computed with int64 tensor
arithmetic on the batch's device: one vectorised call per draw, no ``torch.Generator`` per sample,
and the same numbers on every Python version and machine (no ``hash()``).

``global_sum`` (from ``xdistill.distributed``) sums a tensor over every process (differentiably), so a
statistic of the whole batch — e.g. TSD's normaliser — is the one a single process would compute.
"""

from __future__ import annotations

import torch

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _signed(value: int) -> int:
    """A 64-bit unsigned constant as the int64 with the same bits."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


_C1, _C2, _GAMMA = _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB), _signed(_GOLDEN)


def _shr(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (torch's ``>>`` is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on int64 tensors (wrapping arithmetic), bit-exact with the reference."""
    z = x + _GAMMA
    z = (z ^ _shr(z, 30)) * _C1
    z = (z ^ _shr(z, 27)) * _C2
    return z ^ _shr(z, 31)


def mix(*parts: int) -> int:
    """A 64-bit key from integers, stable across processes, machines and Python versions."""
    key = torch.zeros((), dtype=torch.int64)
    for part in parts:
        key = splitmix64(key ^ _signed(int(part)))
    return int(key)


class SampleStreams:
    """One random stream per sample of a batch, keyed by (seed, step, dataset index) [and a salt].

    ``streams(n)`` returns (B, n) uniforms in [0, 1) (float32, 24 random bits each) on the index's
    device; successive calls continue each stream.
    """

    def __init__(self, index: torch.Tensor, seed: int, step: int, salt: int = 0) -> None:
        self.device = index.device
        base = mix(seed, salt, step)
        self.keys = splitmix64(index.to(torch.int64) ^ base)  # (B,)
        self.counter = 0

    def __call__(self, n: int) -> torch.Tensor:
        counters = torch.arange(self.counter, self.counter + n, device=self.device, dtype=torch.int64)
        self.counter += n
        bits = splitmix64(self.keys[:, None] + counters[None, :] * _GAMMA)
        return _shr(bits, 40).to(torch.float32) * (1.0 / (1 << 24))
