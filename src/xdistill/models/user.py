"""Models the library does not define: the user's own classes by import path, and model files —
``torch.export`` programs (``.pt2``, the current format) and TorchScript (``.pt``/``.pth``/``.ts``).

Each runs the user's code — importing ``package.module:Factory`` executes that module, and a model
file is a compiled model program — so name only models you trust. (xdistill's own checkpoints and
stores never execute code: they are safetensors, numpy and JSON.)
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")
EXPORT_SUFFIXES = (".pt2",)
MODEL_FILE_SUFFIXES = EXPORT_SUFFIXES + TORCHSCRIPT_SUFFIXES


def is_model_file(spec: str) -> bool:
    """A path to a model file (by its suffix), not an architecture name or import path."""
    return spec.endswith(MODEL_FILE_SUFFIXES) and not is_import_path(spec)


def is_import_path(name: str) -> bool:
    """``package.module:Attribute`` (a ``:`` and a dotted module part)."""
    module, sep, attribute = name.partition(":")
    return bool(sep and module and attribute and all(p.isidentifier() for p in module.split(".")))


def resolve(path: str, search: Iterable[str | Path] = ()) -> Callable[..., nn.Module]:
    """Import ``package.module:Attribute``; ``search`` folders (e.g. the recipe's) are tried first."""
    module_name, _, attribute = path.partition(":")
    for folder in [*search, Path.cwd()]:
        folder = str(Path(folder).resolve())
        if folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"cannot import {module_name!r} for model {path!r} ({error}); put the module next to the "
            "recipe or on PYTHONPATH"
        ) from None
    try:
        factory = getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attribute!r} (model {path!r})") from None
    if not callable(factory):
        raise ValueError(f"model {path!r} is not a class or function")
    return factory


def build_user_model(
    path: str, in_channels: int, num_classes: int, search: Iterable[str | Path] = (), **options: Any
) -> nn.Module:
    """Call the factory with ``options``, plus ``in_channels``/``num_classes`` when its signature takes them."""
    factory = resolve(path, search)
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        parameters = MappingProxyType({})
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for key, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if key in parameters or takes_any:
            options.setdefault(key, value)
    model = factory(**options)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {path!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_model_file(path: str | Path) -> nn.Module:
    """A ``torch.export`` program (``.pt2``) or a TorchScript file, on the CPU, in eval mode."""
    loader = load_exported if str(path).endswith(EXPORT_SUFFIXES) else load_torchscript
    return loader(path)


class ExportedModel(nn.Module):
    """A ``torch.export`` program as a module. Its graph was fixed at export (BatchNorm, dropout as they
    were then), so train/eval switches only this wrapper's flag; inputs outside the exported shapes
    get one line saying how to export a dynamic batch dimension."""

    def __init__(self, program: nn.Module, path: Path, input_shape: tuple[int | None, ...] | None = None) -> None:
        super().__init__()
        self.program, self.path = program, path
        #: the exported input's shape, None where a dimension is dynamic (e.g. the batch)
        self.input_shape = input_shape

    def train(self, mode: bool = True) -> ExportedModel:
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return self.program(x)
        except (AssertionError, RuntimeError) as error:
            if "Guard failed" not in str(error) and "guard" not in str(error).lower():
                raise
            raise ValueError(self._shape_advice(tuple(x.shape), str(error).splitlines()[0])) from None

    def _shape_advice(self, got: tuple[int, ...], why: str) -> str:
        """What to change: the data (a sample shape the program was not exported for) or the export (a fixed batch)."""
        shape = self.input_shape
        if shape is None:
            return f"{self.path} cannot take inputs shaped {got} ({why})"
        wanted = "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"
        if len(shape) != len(got) or any(d is not None and d != g for d, g in zip(shape[1:], got[1:])):
            return (
                f"{self.path} takes inputs shaped {wanted}; this data gives {got}: the data does not fit the model "
                "(another data set, length or channel count than it was exported for)"
            )
        return (
            f"{self.path} was exported for batches of exactly {shape[0]}; got {got[0]}. Export it with a dynamic batch "
            "dimension: torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim('batch')},))"
        )


def load_exported(path: str | Path) -> nn.Module:
    """A ``torch.export`` program saved with ``torch.export.save`` (``.pt2``), wrapped as :class:`ExportedModel`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"torch.export file {path} does not exist")
    try:
        exported = torch.export.load(str(path))
        program = exported.module()
    except Exception as error:  # torch raises several types for a damaged or foreign archive
        raise ValueError(f"{path} is not a readable torch.export program ({str(error).splitlines()[0]})") from None
    return ExportedModel(program, path, exported_input_shape(exported)).eval()


def exported_input_shape(exported: Any) -> tuple[int | None, ...] | None:
    """The first user input's shape of a ``torch.export`` program (None for dynamic dimensions), if readable."""
    inputs = set(exported.graph_signature.user_inputs)
    for node in exported.graph.nodes:
        if node.op == "placeholder" and node.name in inputs:
            value = node.meta.get("val")
            if value is None or not hasattr(value, "shape"):
                return None
            return tuple(d if isinstance(d, int) else None for d in value.shape)
    return None


def load_torchscript(path: str | Path) -> nn.Module:
    """A TorchScript model file (``torch.jit.save``), on the CPU, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TorchScript file {path} does not exist")
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except RuntimeError as error:
        raise ValueError(f"{path} is not a readable TorchScript file ({str(error).splitlines()[0]})") from None
