"""xdistill: explainable knowledge distillation.

Sub-packages are imported lazily so that ``import xdistill`` (and ``xdistill --help``)
stays fast: ``xdistill.explain``, ``xdistill.parts``, ``xdistill.metrics``,
``xdistill.data`` and ``xdistill.models`` load torch only when first touched.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {"explain", "parts", "metrics", "data", "models", "training", "demo"}
#: the main API, loaded on first use: ``from xdistill import distill, train_teacher, TrainConfig, evaluate_pair, explain``
_API = {
    "distill": "engine",
    "train_teacher": "engine",
    "TrainConfig": "config",
    "RunConfig": "config",
    "evaluate_pair": "metrics",
    "AlignmentConfig": "metrics",
    "explain": "explain.explain",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        module, _, attribute = _API[name].partition(".")
        return getattr(importlib.import_module(f"xdistill.{module}"), attribute or name)
    if name in _SUBMODULES:
        return importlib.import_module(f"xdistill.{name}")
    raise AttributeError(f"module 'xdistill' has no attribute {name!r}")
