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
    try:
        probe(model, sample_x, num_classes, where, None if is_model_file(spec) else spec)
    except ModelError:
        # (N, H, W) greyscale images read as (N, C, T) series; (N, 1, T) is a univariate series, never an image
        if (
            sample_x.ndim == 3
            and sample_x.shape[1] > 1
            and _takes_greyscale(spec, model, sample_x, num_classes, options or {})
        ):
            shape = tuple(sample_x.shape[1:])
            raise ModelError(
                f"{where}: model {spec!r} takes images (N, C, H, W), but the data's inputs are shaped {shape}, which read "
                f"as series (C, T); for greyscale images add a channel axis, x[:, None], shaped (N, 1, {shape[0]}, "
                f"{shape[1]}) (for an npz file, the dataset option kind: image does it)"
            ) from None
        raise
    return model.eval()


#: arguments every model takes from the data, not from its options
DATA_ARGUMENTS = ("in_channels", "num_classes")


def model_factory(name: str) -> Any:
    """The class or function that builds ``name``: a registered architecture or the user's ``package.module:Class``
    (imported: runs that code); a ``LookupError`` or ``ValueError`` saying why not."""
    from . import MODELS
    from .user import is_import_path, resolve

    return resolve(name) if is_import_path(name) else MODELS.get(name)


def check_model_options(name: str, options: dict[str, Any]) -> None:
    """``options`` against the constructor of the architecture ``name``: a ``ValueError`` naming an unknown option
    with the accepted ones, or a value of the wrong type (:func:`xdistill.options.check_options`)."""
    import inspect

    from ..options import check_options

    factory = model_factory(name)
    given = [k for k in DATA_ARGUMENTS if k in options]
    if given:
        raise ValueError(f"{given[0]!r} comes from the data, not from the options; remove it")
    try:
        inspect.signature(factory)
    except (TypeError, ValueError):  # a callable without a readable signature: its call will tell
        return
    check_options(factory, options, skip=DATA_ARGUMENTS, what="option")


def options_field(where: str) -> str:
    """Where a model's options were given: ``students[0].options`` in a recipe, ``--student-options`` for audit."""
    return f"{where}-options" if where.startswith("--") else f"{where}.options"


def build(
    name: str, in_channels: int, num_classes: int, options: dict[str, Any], where: str, seed: int | None = None
) -> nn.Module:
    """``build_model`` with its mistakes as :class:`ModelError` (options named ``where.options``)."""
    from . import build_model

    try:
        model_factory(name)
    except (ValueError, LookupError) as error:
        raise ModelError(f"{where}: {error}") from None
    try:
        check_model_options(name, options)
    except ValueError as error:
        raise ModelError(f"{options_field(where)}: {error}") from None
    if seed is not None:
        torch.manual_seed(seed)
    try:
        return build_model(name, in_channels, num_classes, **options)
    except TypeError as error:
        raise ModelError(f"{options_field(where)}: {error}") from None
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
        shape = tuple(sample_x.shape[1:])
        raise ModelError(f"{where}: {which} cannot take inputs shaped {shape} ({str(error).splitlines()[0]})") from None
    if out.shape != (sample_x.shape[0], num_classes):
        raise ModelError(f"{where}: model output {tuple(out.shape[1:])} does not match {num_classes} classes")


def _takes_greyscale(spec: str, model: nn.Module, sample_x: torch.Tensor, num_classes: int, options: dict) -> bool:
    """Whether the model (rebuilt for one channel, unless it is a model file) runs on ``sample_x`` read as
    (N, 1, H, W) images: a second look at (N, H, W) inputs it could not take as (N, C, T) series."""
    from .user import is_model_file

    try:
        if not is_model_file(spec):
            model = build(spec, 1, num_classes, options, "model")
        with torch.no_grad(), eval_mode(model):
            model(sample_x[:, None])
    except (RuntimeError, ValueError):  # (ModelError is a ValueError)
        return False
    return True
