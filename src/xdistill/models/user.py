"""Models the library does not define: the user's own classes by import path, and TorchScript files.

Both run the user's code — importing ``package.module:Factory`` executes that module, and a
TorchScript file is a compiled model program — so name only models you trust. (xdistill's own
checkpoints and stores never execute code: they are safetensors, numpy and JSON.)
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")


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
        raise ValueError(f"cannot import {module_name!r} for model {path!r} ({error}); put the module next to the "
                         "recipe or on PYTHONPATH") from None
    try:
        factory = getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attribute!r} (model {path!r})") from None
    if not callable(factory):
        raise ValueError(f"model {path!r} is not a class or function")
    return factory


def build_user_model(path: str, in_channels: int, num_classes: int, search: Iterable[str | Path] = (),
                     **options: Any) -> nn.Module:
    """Call the factory with ``options``, plus ``in_channels``/``num_classes`` when its signature takes them."""
    factory = resolve(path, search)
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        parameters = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for key, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if key in parameters or takes_any:
            options.setdefault(key, value)
    model = factory(**options)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {path!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_torchscript(path: str | Path) -> nn.Module:
    """A TorchScript model file (``torch.jit.save``), on the CPU, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TorchScript file {path} does not exist")
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except RuntimeError as error:
        raise ValueError(f"{path} is not a readable TorchScript file ({str(error).splitlines()[0]})") from None
