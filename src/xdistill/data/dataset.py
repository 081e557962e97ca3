"""The in-memory dataset type every loader returns."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset


@dataclass(eq=False)
class ArrayDataset(Dataset):
    """Float32 inputs ``x`` (N, ...) — int64 for token ids —, int64 labels ``y`` (N,), class names,
    optional rationales.

    ``rationale`` (N, ...) is a ground-truth mask of where the class evidence sits, for
    generated data; when present each item is ``(x, y, mask)``, otherwise ``(x, y)``.
    """

    x: torch.Tensor
    y: torch.Tensor
    class_names: list[str]
    name: str
    rationale: torch.Tensor | None = None
    info: dict = field(default_factory=dict)
    #: a spurious cue beside the evidence and its test variants (``data/shortcut.py``), for shortcut benchmarks
    shortcut: Any = None

    def __init__(
        self,
        x: torch.Tensor | np.ndarray,
        y: torch.Tensor | np.ndarray,
        class_names: list[str],
        name: str,
        rationale: torch.Tensor | np.ndarray | None = None,
        info: dict | None = None,
    ) -> None:
        tensor = torch.as_tensor(x)
        self.x = tensor.long() if not (tensor.is_floating_point() or tensor.is_complex()) else tensor.float()
        self.y = torch.as_tensor(y, dtype=torch.long)
        self.class_names, self.name, self.info = class_names, name, dict(info or {})
        self.rationale = None if rationale is None else torch.as_tensor(rationale, dtype=torch.float32)
        self.shortcut = None
        self._check()

    def _check(self) -> None:
        if self.x.ndim < 2 or self.y.ndim != 1 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"{self.name}: x must be (N, ...) and y (N,), got {tuple(self.x.shape)} and {tuple(self.y.shape)}"
            )
        if self.x.is_floating_point():
            bad = ~torch.isfinite(self.x.flatten(1)).all(1)
            if bad.any():
                first = int(torch.nonzero(bad)[0])
                raise ValueError(
                    f"{self.name}: {int(bad.sum())} sample(s) hold NaN or infinite values (first at index "
                    f"{first}); clean or impute them before training"
                )
        if self.y.numel() and not (0 <= int(self.y.min()) and int(self.y.max()) < len(self.class_names)):
            raise ValueError(
                f"{self.name}: labels must lie in [0, {len(self.class_names)}), got {int(self.y.min())}..{int(self.y.max())}"
            )
        if self.rationale is not None:
            if self.rationale.shape[0] != self.x.shape[0]:
                raise ValueError(f"{self.name}: rationale needs one mask per sample")

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: int):
        if self.rationale is None:
            return self.x[index], self.y[index]
        return self.x[index], self.y[index], self.rationale[index]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @cached_property
    def fingerprint(self) -> str:
        """A content hash (name, shapes, values, labels, rationales): 16 hex digits."""
        digest = hashlib.sha256()
        digest.update(f"{self.name}|{tuple(self.x.shape)}|{self.class_names}".encode())
        digest.update(self.x.contiguous().numpy().tobytes())
        digest.update(self.y.contiguous().numpy().tobytes())
        if self.rationale is not None:
            digest.update(self.rationale.contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def subset(self, indices: torch.Tensor | np.ndarray | list[int], name: str | None = None) -> ArrayDataset:
        indices = torch.as_tensor(indices, dtype=torch.long)
        rationale = None if self.rationale is None else self.rationale[indices]
        out = ArrayDataset(
            self.x[indices], self.y[indices], list(self.class_names), name or self.name, rationale, dict(self.info)
        )
        out.shortcut = None if self.shortcut is None else self.shortcut.subset(indices)
        return out

    def __repr__(self) -> str:
        return f"ArrayDataset({self.name!r}, n={len(self)}, input_shape={self.input_shape}, classes={self.num_classes})"


class Splits(NamedTuple):
    train: ArrayDataset
    test: ArrayDataset


def stratified_split(
    n_test: float, y: np.ndarray, seed: int = 0, keep_one: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with ``n_test`` (a fraction) of every class in the test part.

    ``keep_one`` leaves at least one sample of every class in the train part.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        cut = int(round(len(idx) * n_test))
        if keep_one:
            cut = min(cut, len(idx) - 1)
        test.append(idx[:cut])
        train.append(idx[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def validation_split(
    data: ArrayDataset, fraction: float, seed: int = 0, stratified: bool = True
) -> tuple[ArrayDataset, ArrayDataset]:
    """(train part, validation part): a seeded ``fraction`` of ``data`` held out.

    Stratified: that share of every class; every class keeps at least one training sample. Otherwise a uniform
    seeded permutation holds out ``floor(fraction · n)`` samples, as torch's ``random_split`` with fractions does.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    if stratified:
        train, val = stratified_split(fraction, data.y.numpy(), seed, keep_one=True)
    else:
        order = np.random.default_rng(seed).permutation(len(data))
        cut = len(data) - int(np.floor(fraction * len(data)))
        train, val = np.sort(order[:cut]), np.sort(order[cut:])
    return data.subset(train), data.subset(val)


def encode_labels(raw: np.ndarray, classes: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Map string/number labels to 0..K-1; classes sort numerically when they all parse as numbers."""
    raw = np.asarray(raw).astype(str)
    if classes is None:
        uniques = list(np.unique(raw))
        try:
            classes = sorted(uniques, key=float)
        except ValueError:
            classes = sorted(uniques)
    classes = [str(c) for c in classes]
    lookup = {c: i for i, c in enumerate(classes)}
    unknown = set(np.unique(raw)) - set(lookup)
    if unknown:
        raise ValueError(f"labels {sorted(str(u) for u in unknown)} are not among the training classes {classes}")
    return np.array([lookup[v] for v in raw], dtype=np.int64), classes
