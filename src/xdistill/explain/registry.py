"""The explainer registry: every explainer is ``f(model, x, target, **options) -> Tensor``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..registry import Registry

Explainer = Callable[..., torch.Tensor]
EXPLAINERS: Registry[Explainer] = Registry("explainer")
