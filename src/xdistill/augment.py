"""Training-data augmentation, applied per batch on the training device by the engine.

Each augmentation is registered by name and draws from the engine's per-sample streams keyed by
(seed, step, dataset index), so a run is reproducible, a resumed run draws what an uninterrupted
one would, and N processes draw what one would. ``TrainConfig.augment`` lists them, e.g.
``[{name: random_crop, padding: 4}, {name: hflip}]`` (the standard CIFAR protocol) or
``[{name: jitter, sigma: 0.03}, {name: scaling, sigma: 0.1}]`` for series (Um et al. 2017).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .registry import Registry

Uniform = Callable[[int], torch.Tensor]  # n -> (B, n) uniforms in [0, 1)


class Augmentation:
    """Base class: ``__call__(x, uniform) -> x`` with the same shape, drawing only from ``uniform``."""

    def bind(self, data_info: dict[str, Any]) -> None:
        """Learn what it needs about the training data (its ``info``) before the first batch; default: nothing."""

    def __call__(self, x: torch.Tensor, uniform: Uniform) -> torch.Tensor:
        raise NotImplementedError


AUGMENTATIONS: Registry[Callable[..., Augmentation]] = Registry("augmentation")


def _normal(uniform: Uniform, n: int) -> torch.Tensor:
    """(B, n) standard normals by Box-Muller from 2n uniforms."""
    u = uniform(2 * n)
    radius = torch.sqrt(-2.0 * torch.log1p(-u[:, :n]))  # 1 - u in (0, 1]: no log(0)
    return radius * torch.cos(2.0 * math.pi * u[:, n:])


@AUGMENTATIONS.register("random_crop")
class RandomCrop(Augmentation):
    """Pad every spatial (or the time) axis by ``padding`` and crop back at a random offset per sample.

    The padding is black in the raw image, as torchvision's ``RandomCrop`` pads before ``Normalize``: on
    standardised images (``info["pixel_mean"]``/``["pixel_std"]``) each channel is filled with
    ``-mean / std``, elsewhere with 0; ``fill`` (one value, or one per channel, in the model's input space)
    overrides it."""

    def __init__(self, padding: int = 4, fill: float | list[float] | None = None) -> None:
        if int(padding) != padding or padding < 1:
            raise ValueError(f"padding must be a positive integer, got {padding!r}")
        self.padding = int(padding)
        self.fill: list[float] | None = None if fill is None else _as_list(fill)
        self.data_fill: list[float] = [0.0]

    def bind(self, data_info: dict[str, Any]) -> None:
        mean, std = data_info.get("pixel_mean"), data_info.get("pixel_std")
        if mean is not None and std is not None:
            self.data_fill = [-m / s for m, s in zip(_as_list(mean), _as_list(std), strict=True)]

    def __call__(self, x: torch.Tensor, uniform: Uniform) -> torch.Tensor:
        p, dims = self.padding, x.ndim - 2
        if dims not in (1, 2):
            raise ValueError(f"random_crop needs (B, C, T) or (B, C, H, W) inputs, got {tuple(x.shape)}")
        fill = self.fill if self.fill is not None else self.data_fill
        if len(fill) not in (1, x.shape[1]):
            raise ValueError(f"random_crop fill has {len(fill)} values for {x.shape[1]} channels: give 1 or one each")
        offsets = (uniform(dims).to(x.device) * (2 * p + 1)).long().clamp_max(2 * p)  # (B, dims) in [0, 2p]
        value = torch.tensor(fill, dtype=x.dtype, device=x.device).view((1, -1) + (1,) * dims)
        padded = value.expand((x.shape[0], x.shape[1]) + tuple(n + 2 * p for n in x.shape[2:])).clone()
        padded[(slice(None), slice(None)) + (slice(p, -p),) * dims] = x
        batch = torch.arange(x.shape[0], device=x.device)
        if dims == 1:
            steps = offsets[:, :1] + torch.arange(x.shape[-1], device=x.device)  # (B, T)
            return padded[batch[:, None], :, steps].transpose(1, 2)
        rows = offsets[:, 0:1] + torch.arange(x.shape[-2], device=x.device)  # (B, H)
        cols = offsets[:, 1:2] + torch.arange(x.shape[-1], device=x.device)  # (B, W)
        out = padded[batch[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
        return out.permute(0, 3, 1, 2).contiguous()


@AUGMENTATIONS.register("hflip")
class HorizontalFlip(Augmentation):
    """Reverse the last axis (image width, or time) with probability ``p`` per sample."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, x: torch.Tensor, uniform: Uniform) -> torch.Tensor:
        flip = (uniform(1)[:, 0] < self.p).to(x.device).view((-1,) + (1,) * (x.ndim - 1))
        return torch.where(flip, x.flip(-1), x)


@AUGMENTATIONS.register("jitter")
class Jitter(Augmentation):
    """Add Gaussian noise of standard deviation ``sigma`` to every value."""

    def __init__(self, sigma: float = 0.03) -> None:
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.sigma = sigma

    def __call__(self, x: torch.Tensor, uniform: Uniform) -> torch.Tensor:
        noise = _normal(uniform, x[0].numel()).to(x).view_as(x)
        return x + self.sigma * noise


@AUGMENTATIONS.register("scaling")
class Scaling(Augmentation):
    """Multiply every channel of a sample by its own factor drawn from N(1, sigma²)."""

    def __init__(self, sigma: float = 0.1) -> None:
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.sigma = sigma

    def __call__(self, x: torch.Tensor, uniform: Uniform) -> torch.Tensor:
        factors = 1.0 + self.sigma * _normal(uniform, x.shape[1]).to(x)
        return x * factors.view(x.shape[:2] + (1,) * (x.ndim - 2))


def _as_list(value: float | Sequence[float]) -> list[float]:
    return [float(value)] if isinstance(value, int | float) else [float(v) for v in value]


def build_augmentations(specs: Sequence[str | dict[str, Any]]) -> list[Augmentation]:
    """``["hflip", {"name": "random_crop", "padding": 4}]`` -> augmentation objects (a bad one: ``ValueError``)."""
    built = []
    for i, spec in enumerate(specs):
        name, options = (
            (spec, {}) if isinstance(spec, str) else (spec.get("name"), {k: v for k, v in spec.items() if k != "name"})
        )
        if not isinstance(name, str):
            raise ValueError(f"augment[{i}]: give a name, e.g. {{name: hflip}}")
        try:
            built.append(AUGMENTATIONS.get(name)(**options))
        except TypeError as error:
            raise ValueError(f"augment[{i}] ({name}): {str(error).replace('__init__() ', '')}") from None
        except (LookupError, ValueError) as error:
            raise ValueError(f"augment[{i}] ({name}): {error}") from None
    return built


AUGMENT_SALT = 0x415547  # "AUG": keeps augmentation draws apart from the terms' at the same seed


def apply_augmentations(
    augmentations: Sequence[Augmentation], x: torch.Tensor, streams_for: Callable[[int], Uniform]
) -> torch.Tensor:
    """Apply each augmentation in order; augmentation ``i`` draws from ``streams_for(salt_i)``."""
    for i, augmentation in enumerate(augmentations):
        x = augmentation(x, streams_for(AUGMENT_SALT + i))
    return x
