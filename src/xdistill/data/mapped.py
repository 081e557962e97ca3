"""Any map-style torch ``Dataset`` yielding ``(x, y)`` as training data for the engine.

The engine batches such a dataset through a ``DataLoader`` (so a dataset that decodes or
transforms on the fly keeps doing so every epoch) and keys per-sample caches and random streams
by the item's index. What needs the whole set at once — labels for a stratified validation split,
the inputs for a term's one-off preparation (a TSD donor pool, an IG store) — is read from the
dataset once, on first use. ``ArrayDataset`` stays the fast path (no per-item Python calls).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import torch
from torch.utils.data import Dataset


class MappedDataset(Dataset):
    """An adapter with ``ArrayDataset``'s interface over a map-style ``(x, y)`` dataset (optionally a subset)."""

    def __init__(
        self,
        dataset: Dataset,
        indices: Sequence[int] | None = None,
        name: str | None = None,
        num_classes: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.indices = list(range(len(dataset))) if indices is None else [int(i) for i in indices]  # type: ignore[arg-type]
        self.name = name or type(dataset).__name__
        self._num_classes = num_classes
        self.info: dict[str, Any] = dict(getattr(dataset, "info", {}) or {})
        self.rationale = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.dataset[self.indices[i]]
        return torch.as_tensor(x), torch.as_tensor(y, dtype=torch.long)

    @cached_property
    def y(self) -> torch.Tensor:
        """Every label, from the dataset's ``targets`` when it has them, else by reading each item once."""
        targets = getattr(self.dataset, "targets", None)
        if targets is not None:
            all_targets = torch.as_tensor(targets, dtype=torch.long)
            return all_targets[torch.tensor(self.indices, dtype=torch.long)]
        return torch.stack([self[i][1] for i in range(len(self))]) if len(self) else torch.empty(0, dtype=torch.long)

    @cached_property
    def x(self) -> torch.Tensor:
        """Every input stacked (read once; only a term's one-off preparation asks for it)."""
        return torch.stack([self[i][0] for i in range(len(self))])

    @property
    def num_classes(self) -> int:
        return self._num_classes or int(self.y.max()) + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self[0][0].shape)

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in range(self.num_classes)]

    @property
    def fingerprint(self) -> str:
        """Identity for stores and caches: the name, size, labels and the first and last inputs."""
        digest = hashlib.sha256(f"{self.name}:{len(self)}".encode())
        digest.update(self.y.numpy().tobytes())
        for i in {0, len(self) - 1} if len(self) else ():
            digest.update(self[i][0].float().numpy().tobytes())
        return digest.hexdigest()[:16]

    def subset(self, indices: Any, name: str | None = None) -> MappedDataset:
        chosen = [self.indices[int(i)] for i in torch.as_tensor(indices).reshape(-1).tolist()]
        return MappedDataset(self.dataset, chosen, name or self.name, self._num_classes)


def as_training_data(data: Any) -> Any:
    """An ``ArrayDataset`` as it is; any other map-style ``(x, y)`` dataset wrapped in :class:`MappedDataset`."""
    from .dataset import ArrayDataset

    if data is None or isinstance(data, (ArrayDataset, MappedDataset)):
        return data
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise TypeError(
            f"training data must be an ArrayDataset or a map-style Dataset yielding (x, y); got {type(data).__name__}"
        )
    return MappedDataset(data)
