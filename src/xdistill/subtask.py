"""Subtasks: a few classes of a larger problem (SubDistill's setting).

``subtask_data`` keeps the samples of the chosen classes and renumbers their labels;
``ClassSubset`` wraps a full-task teacher so that it outputs only those classes' logits, in
the same order. With both, every method and metric works on the subtask unchanged (KD on the
wrapped teacher is KD restricted to the subtask logits).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .data import ArrayDataset


def subtask_data(data: ArrayDataset, classes: Sequence[int]) -> ArrayDataset:
    """Samples of ``classes`` only, labels renumbered 0..len(classes)-1 in the given order."""
    classes = [int(c) for c in classes]
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise ValueError(f"a subtask needs at least two distinct classes, got {classes}")
    bad = [c for c in classes if not 0 <= c < data.num_classes]
    if bad:
        raise ValueError(f"subtask classes {bad} are not classes of {data.name} (0..{data.num_classes - 1})")
    lookup = torch.full((data.num_classes,), -1, dtype=torch.long)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))
    keep = torch.nonzero(lookup[data.y] >= 0).squeeze(1)
    subset = data.subset(keep, name=f"{data.name}[{','.join(map(str, classes))}]")
    subset.y = lookup[subset.y]
    subset.class_names = [data.class_names[c] for c in classes]
    subset.__dict__.pop("fingerprint", None)
    return subset


class ClassSubset(nn.Module):
    """``model(x)[:, classes]``; module paths still address the wrapped model (for hooks)."""

    def __init__(self, model: nn.Module, classes: Sequence[int]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("classes", torch.as_tensor(list(classes), dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).index_select(1, self.classes)

    def get_submodule(self, target: str) -> nn.Module:
        return self if target == "" else self.model.get_submodule(target)

    def named_modules(self, *args, **kwargs):
        return self.model.named_modules(*args, **kwargs)
