"""The dataset registry and ``load_dataset``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..options import check_options
from ..registry import Registry
from .dataset import Splits

Loader = Callable[..., Splits]
DATASETS: Registry[Loader] = Registry("dataset")


def cache_dir() -> Path:
    """Where downloads go: ``$XDISTILL_CACHE`` or ``~/.cache/xdistill``."""
    return Path(os.environ.get("XDISTILL_CACHE", Path.home() / ".cache" / "xdistill"))


def load_dataset(spec: str, **options) -> Splits:
    """Load ``(train, test)`` by name: ``"digits"``, ``"mnist1d"``, ``"ucr:GunPoint"``, ...

    A ``family:member`` spec passes ``member`` as the loader's first argument.
    """
    family, _, member = spec.partition(":")
    loader = DATASETS.get(family)
    check_options(loader, options, what=f"{family} option")
    splits = loader(member, **options) if member else loader(**options)
    classes = len(set(splits[0].y.tolist()))
    if classes < 2:
        raise ValueError(f"{spec}: the training data has {classes} class; distillation needs at least 2")
    return splits
