"""Models for a dataset, checked against it: built from a name (or import path) or loaded from a file,
optionally with safetensors weights, then probed on two samples. Shared by the study and the audit;
every mistake is a :class:`ModelError` naming the field it came from (``where``) and the fix."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..explain import eval_mode


class ModelError(ValueError):
    """A model that cannot be built, loaded or run on the data; the message starts with the field."""


def model_for_data(
    spec: str,
    sample_x: torch.Tensor,
    num_classes: int,
    *,
    options: dict[str, Any] | None = None,
    weights: str | None = None,
    where: str = "model",
    weights_field: str | None = None,
    seed: int | None = None,
) -> nn.Module:
    """``spec`` (a registered name, ``package.module:Class``, or a .pt2/TorchScript file) ready for data shaped
    like ``sample_x`` (a few samples) with ``num_classes`` classes; weights loaded when given; eval mode."""
    from .user import is_model_file, load_model_file

    weights_field = weights_field or f"{where}.weights"
    if is_model_file(spec):
        if weights:
            raise ModelError(f"{weights_field}: a model file carries its own weights")
        try:
            model = load_model_file(spec)
        except (FileNotFoundError, ValueError) as error:
            raise ModelError(f"{where}: {error}") from None
    else:
        model = build(spec, int(sample_x.shape[1]), num_classes, options or {}, where, seed)
        if weights:
            load_checked(model, weights, spec, weights_field)
    probe(model, sample_x, num_classes, where, None if is_model_file(spec) else spec)
    return model.eval()


def build(
    name: str, in_channels: int, num_classes: int, options: dict[str, Any], where: str, seed: int | None = None
) -> nn.Module:
    """``build_model`` with its mistakes as :class:`ModelError` (options named ``where.options``)."""
    from . import build_model

    if seed is not None:
        torch.manual_seed(seed)
    try:
        return build_model(name, in_channels, num_classes, **options)
    except TypeError as error:
        raise ModelError(f"{where}.options: {error}") from None
    except (ValueError, LookupError) as error:
        raise ModelError(f"{where}: {error}") from None


def load_checked(model: nn.Module, weights: str, spec: str, where: str) -> None:
    """Load safetensors ``weights`` into ``model``; a missing file or weights that do not fit are named."""
    from ..checkpoint import CheckpointError, load_weights

    try:
        load_weights(model, weights)
    except CheckpointError as error:
        raise ModelError(f"{where}: {error}") from None
    except (FileNotFoundError, OSError) as error:
        raise ModelError(f"{where}: cannot read {weights} ({error})") from None
    except (RuntimeError, ValueError) as error:
        raise ModelError(f"{where}: {weights} does not fit model {spec!r} ({str(error).splitlines()[0]}...)") from None


def probe(model: nn.Module, sample_x: torch.Tensor, num_classes: int, where: str, name: str | None = None) -> None:
    """Run ``model`` on the samples: it must take their shape and give one logit per class."""
    try:
        with torch.no_grad(), eval_mode(model):
            out = model(sample_x)
    except (RuntimeError, ValueError) as error:
        which = f"model {name!r}" if name else "the model"
        raise ModelError(
            f"{where}: {which} cannot take inputs shaped {tuple(sample_x.shape[1:])} ({str(error).splitlines()[0]})"
        ) from None
    if out.shape != (sample_x.shape[0], num_classes):
        raise ModelError(f"{where}: model output {tuple(out.shape[1:])} does not match {num_classes} classes")
