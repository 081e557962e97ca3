"""Read intermediate tensors through forward hooks, addressed by module path (no model edits)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class FeatureHooks:
    """Forward hooks that keep the latest output of named sub-modules in ``features``.

    Usable as a context manager; ``remove()`` detaches every hook (the model is unchanged).
    """

    def __init__(self, model: nn.Module, paths: Iterable[str]) -> None:
        self.features: dict[str, torch.Tensor] = {}
        self._handles = []
        for path in paths:
            try:
                module = model.get_submodule(path)
            except AttributeError:
                names = ", ".join(n for n, _ in model.named_modules() if n)
                raise ValueError(
                    f"no module at path {path!r} in {type(model).__name__}; module paths: {names}"
                ) from None
            self._handles.append(module.register_forward_hook(self._keep(path)))

    def _keep(self, path: str):
        def hook(module: nn.Module, inputs, output) -> None:
            self.features[path] = output[0] if isinstance(output, tuple) else output

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> FeatureHooks:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
