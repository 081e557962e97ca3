"""Building blocks shared by the model families."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..registry import Registry

ACTIVATIONS: Registry[Callable[[], nn.Module]] = Registry("activation")
ACTIVATIONS.register("relu")(lambda: nn.ReLU(inplace=True))
ACTIVATIONS.register("gelu")(nn.GELU)
ACTIVATIONS.register("softplus")(lambda: nn.Softplus(beta=10.0))  # smooth ReLU: non-zero second derivative
ACTIVATIONS.register("tanh")(nn.Tanh)

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def activation(name: str) -> nn.Module:
    return ACTIVATIONS.get(name)()


def scaled(channels: int, width: float) -> int:
    """Channels times a width multiplier, at least 1."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return max(1, int(round(channels * width)))


def build_model(name: str, in_channels: int, num_classes: int, **options) -> nn.Module:
    """Build the architecture registered as ``name`` (or the user's ``package.module:Class``); ``options`` are
    its size knobs."""
    if in_channels < 1 or num_classes < 2:
        raise ValueError(f"in_channels must be >= 1 and num_classes >= 2, got {in_channels} and {num_classes}")
    from .user import build_user_model, is_import_path

    if is_import_path(name):  # the user's own model: package.module:Class (runs their code)
        return build_user_model(name, in_channels, num_classes, **options)
    return MODELS.get(name)(in_channels=in_channels, num_classes=num_classes, **options)
