"""Attribution methods with one contract: ``f(model, x, target, **options) -> Tensor``.

The result has the shape of ``x``. The model runs in eval mode and its train/eval flags
are restored afterwards. ``target`` is an int, a (B,) tensor of class indices, or ``None``
for the predicted class. ``differentiable=True`` keeps the autograd graph so a training
loss can use the attributions.
"""

from __future__ import annotations

import sys
import types

import torch
from torch import nn

from ._common import Target, eval_mode
from .gradient import input_x_gradient, saliency, smoothgrad
from .integrated import RULES, integrated_gradients, integration_points
from .occlusion import occlusion
from .registry import EXPLAINERS

__all__ = [
    "EXPLAINERS",
    "RULES",
    "eval_mode",
    "explain",
    "input_x_gradient",
    "integrated_gradients",
    "integration_points",
    "occlusion",
    "saliency",
    "smoothgrad",
]


def explain(
    model: nn.Module, x: torch.Tensor, target: Target = None, method: str = "integrated_gradients", **options
) -> torch.Tensor:
    """Run the explainer registered as ``method``; ``options`` go to it unchanged."""
    return EXPLAINERS.get(method)(model, x, target, **options)


class _CallableModule(types.ModuleType):
    """``xdistill.explain`` is this package and, called, the ``explain`` function: ``from xdistill import explain``
    then ``explain(model, x, target, method="saliency")`` works, and so does ``xdistill.explain.saliency``."""

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        return explain(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
