"""The data side of training: the order of the samples in each epoch, each process's share of a batch, loaders.

The order of an epoch depends only on (seed, epoch), so a resumed run sees the batches an uninterrupted one
sees; with N processes every global batch is cut into N contiguous slices, so N processes take the optimiser
steps one process takes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import TrainConfig
from ..data import ArrayDataset
from ..data.dataset import validation_split


def share_bounds(n: int, world_size: int) -> list[tuple[int, int]]:
    """Contiguous near-equal slices [start, end) of ``n`` samples for ``world_size`` processes."""
    bounds, start = [], 0
    for rank in range(world_size):
        size = n // world_size + (1 if rank < n % world_size else 0)
        bounds.append((start, start + size))
        start += size
    return bounds


class EpochOrder(Sampler[int]):
    """A shuffled order of the training samples that depends only on (seed, epoch), so a resumed run sees the
    same batches. Lightning calls ``set_epoch`` at every epoch start (it finds this as ``batch_sampler.sampler``)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


class EpochBatches(Sampler[list[int]]):
    """This process's share of every global batch of an :class:`EpochOrder`.

    Distributed (``world_size > 1``): every global batch of the order (the last one may be smaller)
    is cut into ``world_size`` contiguous near-equal slices and rank ``r`` takes slice ``r``; no sample
    is repeated. The engine weighs each process's loss by its share of the global batch, so N
    processes take exactly the steps one process would. A rank whose slice would be empty (a last
    batch smaller than the number of processes) gets the batch's first sample with weight 0.
    """

    def __init__(
        self, size: int, seed: int, global_batch: int, rank: int = 0, world_size: int = 1, drop_last: bool = False
    ) -> None:
        self.sampler = EpochOrder(size, seed)  # (the attribute name Lightning looks for to call set_epoch)
        self.global_batch, self.rank, self.world_size = global_batch, rank, world_size
        self.drop_last = drop_last and size >= global_batch  # (never an epoch of no batch)

    def __iter__(self) -> Iterator[list[int]]:
        order = list(self.sampler)
        for start in range(0, len(self) * self.global_batch, self.global_batch):
            batch = order[start : start + self.global_batch]
            begin, end = share_bounds(len(batch), self.world_size)[self.rank]
            yield batch[begin:end] or batch[:1]

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.sampler) // self.global_batch
        return -(-len(self.sampler) // self.global_batch)


def items(data: Any, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels of samples [start, end): sliced from an ArrayDataset, read item by item otherwise."""
    if isinstance(data, ArrayDataset):
        return data.x[start:end], data.y[start:end]
    items = [data[i] for i in range(start, end)]
    return torch.stack([torch.as_tensor(item[0]) for item in items]), torch.stack(
        [torch.as_tensor(item[1]) for item in items]
    ).long()


class _IndexedArrays(Dataset):
    """(x, y, index) batches sliced straight from an ArrayDataset's tensors (one call per batch)."""

    def __init__(self, data: ArrayDataset) -> None:
        self.x, self.y = data.x, data.y

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], torch.tensor(i)

    def __getitems__(self, indices: list[int]):
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.x[index], self.y[index], index


class _IndexedItems(Dataset):
    """(x, y, index) items of any map-style (x, y) dataset."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        x, y = self.data[i][:2]
        return torch.as_tensor(x), torch.as_tensor(y, dtype=torch.long), torch.tensor(i)


def _already_batched(batch):
    return batch


def indexed_loader(
    data: Any,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
) -> DataLoader:
    """Batches of ``(x, y, index)``; the index keys per-sample caches and random streams.

    ``batch_size`` is the global batch; with ``world_size`` processes each loads its share of it.
    """
    dataset: Dataset
    collate: Any
    if isinstance(data, ArrayDataset):
        dataset, collate = _IndexedArrays(data), _already_batched
    else:
        dataset, collate = _IndexedItems(data), None
    if not shuffle:
        if isinstance(data, ArrayDataset):
            batches = [list(range(i, min(len(data), i + batch_size))) for i in range(0, len(data), batch_size)]
            return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, collate_fn=collate)
        return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    sampler = EpochBatches(len(data), seed, batch_size, rank, world_size, drop_last)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate)


def teacher_logits_for(
    teacher: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 512
) -> torch.Tensor:
    """Teacher logits for every training sample (eval mode, no grad), kept on the CPU."""
    from ..metrics import predict

    return predict(teacher.to(device), x, batch_size, device)


def training_part(train: Any, config: TrainConfig, val: Any = None) -> tuple[Any, Any]:
    """(the part of ``train`` the student trains on, the validation part): ``config.val_fraction`` of ``train``
    held out (seeded; stratified unless ``config.val_split`` is "random") when no ``val`` is given — what :func:`distill` trains on."""
    if val is None and config.val_fraction > 0:
        return validation_split(train, config.val_fraction, config.seed, stratified=config.val_split == "stratified")
    return train, val


def family_of(data: Any) -> str:
    """The data family ("image", "series", "tokens") of a training set, from its first sample."""
    from ..config import data_family

    if len(data) == 0:
        return "series"
    x = data.x[:1] if isinstance(data, ArrayDataset) else items(data, 0, 1)[0]
    return data_family(tuple(x.shape), integer=not x.is_floating_point())


def in_float64(data: Any) -> Any:
    """An ArrayDataset with float64 inputs (the same object when it has them, or is not an ArrayDataset)."""
    if not isinstance(data, ArrayDataset) or not data.x.is_floating_point() or data.x.dtype == torch.float64:
        return data
    copy = object.__new__(ArrayDataset)
    copy.__dict__.update(data.__dict__)
    copy.x = data.x.double()
    return copy


def planned_steps(train_size: int, config: TrainConfig) -> int:
    """The optimiser steps the budget asks for (early stopping may end sooner)."""
    batches = config.batches_per_epoch(train_size)
    return config.steps or config.epoch_budget(batches) * batches
