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
            load_checked(model, weights, spec, weights_field, num_classes)
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


def load_checked(model: nn.Module, weights: str, spec: str, where: str, num_classes: int | None = None) -> None:
    """Load safetensors ``weights`` into ``model``; a missing file or weights that do not fit are named: which
    tensors differ and how, and when only the output layer does, that the weights are for another class count."""
    from ..checkpoint import CheckpointError, load_weights

    try:
        load_weights(model, weights)
    except CheckpointError as error:
        raise ModelError(f"{where}: {error}") from None
    except (FileNotFoundError, OSError) as error:
        raise ModelError(f"{where}: cannot read {weights} ({error})") from None
    except (RuntimeError, ValueError):
        raise ModelError(weights_mismatch(model, weights, spec, where, num_classes)) from None


def weights_mismatch(model: nn.Module, weights: str, spec: str, where: str, num_classes: int | None) -> str:
    """One message for weights that do not fit: missing, unexpected and differently shaped tensors (a few of
    each, with counts), or, when only the output layer differs, the class counts of the weights and the data."""
    from safetensors import safe_open

    with safe_open(weights, framework="pt") as handle:
        stored = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    missing = [n for n in expected if n not in stored]
    unexpected = [n for n in stored if n not in expected]
    reshaped = [n for n in expected if n in stored and stored[n] != expected[n]]
    outputs = {stored[n][0] for n in reshaped if expected[n][0] == num_classes and stored[n][1:] == expected[n][1:]}
    if num_classes and not missing and not unexpected and reshaped and len(outputs) == 1 and len(reshaped) <= 2:
        return (
            f"{where}: {weights} is a {spec!r} with {outputs.pop()} output classes, but the data has {num_classes}: "
            "these weights belong to a model trained on other data (check --data, or the weights file)"
        )

    def few(names: list[str], show: Any = str) -> str:
        listed = ", ".join(show(n) for n in names[:3])
        return listed + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    parts = []
    if reshaped:
        parts.append(
            f"{len(reshaped)} differently shaped ({few(reshaped, lambda n: f'{n} {stored[n]} vs {expected[n]}')})"
        )
    if missing:
        parts.append(f"{len(missing)} missing ({few(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} not in the model ({few(unexpected)})")
    return (
        f"{where}: {weights} does not fit model {spec!r} with these options: " + "; ".join(parts) + " (file vs model)"
        "; give the options it was trained with (e.g. its width)"
    )


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
