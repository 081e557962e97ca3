"""The Lightning engine: a frozen teacher, a trainable student, an objective of weighted terms.

Trainer features come from Lightning: progress bar, resuming, CSV/TensorBoard loggers, DDP,
bf16. Checkpoints go through a safetensors CheckpointIO (nothing is ever pickled), after every
epoch (throttled to ``checkpoint_seconds``), atomically. The teacher is held outside the module
tree, so it is never saved into a student checkpoint nor wrapped by DDP. Model selection uses
the training data only (a validation split carved from it, or the training loss), never the
test split.
"""

from __future__ import annotations

import logging
import signal
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.pytorch.callbacks import Callback
from pydantic import ValidationError
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from .augment import apply_augmentations, build_augmentations
from .callbacks import BestEpoch, EpochCheckpoint, EpochTimer
from .checkpoint import CheckpointError, load_tree, save_tree, save_weights
from .config import RunConfig, TrainConfig
from .data import ArrayDataset
from .data.dataset import validation_split
from .data.mapped import as_training_data
from .distributed import global_batch_statistics
from .hooks import FeatureHooks
from .methods import Batch, PrepareContext, Step, StepState, Term, build_terms
from .protocols import with_family_augmentation

_CHATTY = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.pytorch.accelerators.cuda",
    "lightning.fabric.utilities.seed",
    "lightning.fabric.utilities.distributed",
    "lightning.pytorch.utilities.distributed",
)


@contextmanager
def lightning_quiet() -> Iterator[None]:
    """Lightning's info chatter (device summary, tips) dropped while training; the levels are restored after."""
    loggers = [logging.getLogger(name) for name in _CHATTY]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _quiet_warnings() -> None:
    """Inside ``warnings.catch_warnings()``: drop notices that are not the user's concern."""
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning's internal deprecation notice
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*`training_step` returned.*")
    # the epoch metrics are already reduced over every process (equal on every rank): no sync_dist needed
    warnings.filterwarnings("ignore", message=".*It is recommended to use `self.log\\(.*sync_dist=True.*")


class SafetensorsCheckpointIO(CheckpointIO):
    """Lightning checkpoints as safetensors + JSON structure: loading never executes code."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        save_tree(checkpoint, path)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_tree(path)

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)


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


class DistillationModule(L.LightningModule):
    """Minimises ``Σ weight · term`` for a student against a frozen teacher; logs every term raw and weighted."""

    # declared for type checkers (nn.Module's __getattr__ would type them as Tensor | Module)
    student: nn.Module
    teacher: nn.Module | None
    methods: nn.ModuleList
    teacher_logits: torch.Tensor | None

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None,
        methods: Sequence[Term],
        *,
        config: TrainConfig | None = None,
        train: Any = None,
        val: Any = None,
        work_dir: Path | None = None,
        progress: bool = True,
        cache_teacher_logits: bool = False,
        teacher_logits: torch.Tensor | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.student = student
        self.methods = nn.ModuleList(methods)
        self.terms: list[Term] = list(methods)  # the same modules, typed
        object.__setattr__(self, "teacher", teacher)  # not a sub-module: never saved, never DDP-wrapped
        if teacher is not None:
            teacher.eval()
            for parameter in teacher.parameters():  # (ScriptModules have no requires_grad_)
                parameter.requires_grad_(False)
        self.config = config or TrainConfig()
        self.augmentations = build_augmentations(self.config.augment)
        self.teacher_logits = teacher_logits  # cache indexed by sample, or None
        self.train_data, self.val_data, self.work_dir, self.progress = train, val, work_dir, progress
        self.cache_dir = cache_dir
        self.cache_teacher_logits = cache_teacher_logits
        self._prepared = train is None
        student_layers = sorted({p for m in methods for p in m.student_layers})
        teacher_layers = sorted({p for m in methods for p in m.teacher_layers})
        self.student_hooks = FeatureHooks(student, student_layers) if student_layers else None
        self.teacher_hooks = FeatureHooks(teacher, teacher_layers) if teacher_layers and teacher is not None else None
        losses = [m for m in methods if m.has_loss]
        self.needs_teacher = teacher is not None and any(m.needs_teacher for m in losses)
        self.teacher_forward = any(m.needs_teacher_forward for m in methods)
        self.needs_clean_logits = teacher is not None and any(m.needs_clean_teacher_logits for m in methods)
        self.structured = hasattr(student, "forward_structured")
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0
        self.epoch_metrics: dict[str, float] = {}

    # -- set-up ---------------------------------------------------------------------------------------------------
    def remove_hooks(self) -> None:
        """Detach the feature hooks from the user's models (after training)."""
        for hooks in (self.student_hooks, self.teacher_hooks):
            if hooks is not None:
                hooks.remove()

    def setup(self, stage: str) -> None:
        """The terms' one-off work, on every rank once the process group exists (before DDP wrapping
        and the optimiser, so parameters a term creates here train with the student)."""
        if self._prepared:
            return
        trainer, train = self.trainer, self.train_data
        device = trainer.strategy.root_device
        distributed = trainer.world_size > 1
        context = prepare_context(
            self.teacher,
            self.student,
            train,
            self.terms,
            self.config,
            work_dir=self.work_dir,
            device=device,
            progress=self.progress and trainer.is_global_zero,
            cache_dir=self.cache_dir,
            rank=trainer.global_rank,
            world_size=trainer.world_size,
            barrier=(lambda: trainer.strategy.barrier("prepare")) if distributed else None,
        )
        for method in self.terms:
            method.prepare(context)
        for augmentation in self.augmentations:
            augmentation.bind(context.data_info)
        self.student.cpu()
        if self.cache_teacher_logits or self.needs_clean_logits:
            assert self.teacher is not None
            self.teacher_logits = teacher_logits_for(self.teacher, train.x, device).cpu()
        if self.teacher is not None:
            self.teacher.cpu()
        self._prepared = True

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """Our batches are flat (x, y, index) tuples: move them directly (Lightning's generic walk is slow)."""
        return tuple(t.to(device, non_blocking=True) for t in batch)

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device).eval()

    def on_train_epoch_start(self) -> None:
        # Lightning (>= 2.2) keeps sub-modules that arrive in eval mode in eval mode; a student
        # whose BatchNorm never leaves eval mode silently fails to train, so set it explicitly.
        self.student.train()
        self.methods.train()

    # -- one step -------------------------------------------------------------------------------------------------
    def step_state(self) -> StepState:
        return StepState(self.global_step + 1, self.total_steps, self.config.seed)

    @property
    def total_steps(self) -> int:
        """The optimiser steps the budget plans (what schedules and annealings count towards)."""
        return max(1, planned_steps(len(self.train_data), self.config))

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # A ``steps`` budget is enforced here, not with Lightning's ``max_steps``: a run Lightning calls
        # iteration-based replays part of the last checkpointed epoch on resume (one extra batch, every later
        # step shifted). Stopping here ends the epoch early and resumes as an epoch budget does: exactly.
        if self.config.steps is not None and self.global_step >= self.config.steps:
            self.trainer.should_stop = True

    def _share(self, batch_idx: int, local: int) -> tuple[float, int]:
        """(this process's weight in the global batch's mean, the samples it counts for)."""
        world = self.trainer.world_size
        if world == 1:
            return 1.0, local
        n = min(self.config.batch_size, len(self.train_data) - batch_idx * self.config.batch_size)
        begin, end = share_bounds(n, world)[self.trainer.global_rank]
        return (end - begin) * world / n, end - begin

    def _teacher_pass(self, batch: Batch, transformed: bool) -> tuple[torch.Tensor | None, Any]:
        if not (self.needs_teacher or self.teacher_forward) or self.teacher is None:
            return None, None
        logits = self.teacher_logits
        cached = (
            logits is not None
            and self.cache_teacher_logits
            and not transformed
            and self.teacher_hooks is None
            and not self.teacher_forward
        )
        if cached and logits is not None:
            return logits[batch.index.cpu()].to(self.device), None
        with torch.no_grad():
            if self.teacher_forward and hasattr(self.teacher, "forward_structured"):
                output = self.teacher.forward_structured(batch.x)  # type: ignore[operator]
                return output.logits, output
            return self.teacher(batch.x), None

    def training_step(self, raw, batch_idx: int) -> torch.Tensor:
        x, y, index = raw
        state = self.step_state()
        batch = Batch(x, y, index)
        if self.augmentations:
            batch = Batch(apply_augmentations(self.augmentations, x, lambda salt: state.streams(index, salt)), y, index)
        for method in self.terms:
            batch = method.transform(batch, state)
        transformed = batch.x is not x
        student_output = None
        if self.structured:
            options: dict[str, Any] = {}
            for method in self.terms:
                options.update(method.forward_options(state, batch))
            student_output = self.student.forward_structured(batch.x, **options)  # type: ignore[operator]
            student_logits = student_output.logits
        else:
            student_logits = self.student(batch.x)
        student_features = dict(self.student_hooks.features) if self.student_hooks else {}
        teacher_logits, teacher_output = self._teacher_pass(batch, transformed)
        teacher_features = dict(self.teacher_hooks.features) if self.teacher_hooks else {}
        clean = (
            self.teacher_logits[index.cpu()].to(self.device)
            if self.needs_clean_logits and self.teacher_logits is not None
            else None
        )
        step = Step(
            batch,
            self.student,
            self.teacher,
            student_logits,
            teacher_logits,
            student_features,
            teacher_features,
            state,
            clean,
            student_output,
            teacher_output,
        )
        share, counted = self._share(batch_idx, len(y))
        loss = student_logits.new_zeros(())
        logged = student_logits.new_zeros(())
        seen: set[str] = set()
        for method in self.terms:
            if not method.has_loss:
                continue
            value = method.loss(step)
            name = _unique(seen, method.name or type(method).__name__.lower())
            seen.add(name)
            if not torch.isfinite(value).all():
                raise FloatingPointError(
                    f"loss term {name!r} became {value.item()} in epoch {self.current_epoch + 1} (step {self.global_step}); "
                    "lower the learning rate or check the inputs for extreme values"
                )
            # a per-process batch mean counts for this process's share of the global batch; a statistic already
            # summed over processes counts once (DDP averages the gradients over the processes)
            loss = loss + method.weight * value * (1.0 if method.global_batch_statistic else share)
            self._add(name, value, counted)  # summed here, logged once per epoch (self.log per step is slow)
            self._add(f"{name}_weighted", method.weight * value, counted)
            logged = logged + method.weight * value.detach()
        self._add("loss", logged, counted)
        self._count += counted
        return loss

    def _add(self, name: str, value: torch.Tensor, count: int) -> None:
        self._sums[name] = self._sums.get(name, 0.0) + value.detach().double() * count

    # -- end of an epoch: exact, reduced metrics -----------------------------------------------------------------------
    def on_train_epoch_end(self) -> None:
        names = sorted(self._sums)
        totals = torch.stack(
            [torch.as_tensor(self._sums[n], dtype=torch.float64) for n in names]
            + [torch.tensor(float(self._count), dtype=torch.float64)]
        ).to(self.device)
        totals = self._reduce(totals)
        count = max(float(totals[-1]), 1.0)
        metrics = {f"train/{n}": float(t) / count for n, t in zip(names, totals[:-1])}
        if self.val_data is not None and len(self.val_data):
            metrics.update(self._validate())
        self.epoch_metrics = metrics
        for name, value in metrics.items():  # the same on every rank: no sync needed
            self.log(name, value, prog_bar=name in ("train/loss", "val/acc", "val/agreement"))
        self._sums, self._count = {}, 0

    def _reduce(self, totals: torch.Tensor) -> torch.Tensor:
        if self.trainer.world_size > 1:
            totals = self.trainer.strategy.reduce(
                totals.float() if self.device.type == "mps" else totals, reduce_op="sum"
            )
        return totals.double().cpu()

    def _validate(self) -> dict[str, float]:
        """Validation on this process's contiguous share of the split (no padding, no duplicates), summed over
        every process: the exact loss, accuracy and agreement one process would compute."""
        world, rank = self.trainer.world_size, self.trainer.global_rank
        begin, end = share_bounds(len(self.val_data), world)[rank]
        totals = torch.zeros(4, dtype=torch.float64)  # loss sum, correct, agreement, count
        was_training = self.student.training
        self.student.eval()
        batch = max(self.config.batch_size, 256)
        with torch.no_grad():
            for start in range(begin, end, batch):
                x, y = _items(self.val_data, start, min(end, start + batch))
                x, y = x.to(self.device), y.to(self.device)
                logits = self.student(x)
                totals[0] += float(F.cross_entropy(logits.float(), y, reduction="sum"))
                totals[1] += float((logits.argmax(1) == y).sum())
                if self.teacher is not None:
                    totals[2] += float((self.teacher(x).argmax(1) == logits.argmax(1)).sum())
                totals[3] += len(y)
        self.student.train(was_training)
        totals = self._reduce(totals.to(self.device))
        n = max(float(totals[3]), 1.0)
        out = {"val/loss": float(totals[0]) / n, "val/acc": float(totals[1]) / n}
        if self.teacher is not None:
            out["val/agreement"] = float(totals[2]) / n
        return out

    def configure_optimizers(self):
        from .optim import configure

        return configure(self.parameters(), self.config, self.total_steps)


def _unique(names: set[str], name: str) -> str:
    """``name``, or ``name#2``, ``name#3``... when a term of that name is already in ``names``."""
    if name not in names:
        return name
    k = 2
    while f"{name}#{k}" in names:
        k += 1
    return f"{name}#{k}"


def _items(data: Any, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
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
    from .metrics import predict

    return predict(teacher.to(device), x, batch_size, device)


@dataclass
class DistillResult:
    student: nn.Module
    work_dir: Path
    epoch_seconds: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    used_logit_cache: bool = False
    config: TrainConfig | None = None
    run: RunConfig | None = None
    #: parameters the terms trained beside the student (a FitNets regressor, a SubDistill rotation)
    extra_parameters: int = 0
    train_data: Any = field(default=None, repr=False)
    val_data: Any = field(default=None, repr=False)

    def accuracy(self) -> dict[str, float]:
        """Eval-mode accuracy of the student as it is now on the data it trained on (``train_acc``) and on
        the validation split (``val_acc``, when there was one): one inference pass each, run on request
        (training does not pay for a figure nobody reads); also stored in ``metrics``."""
        from .metrics import accuracy, predict

        found = {"train_acc": accuracy(predict(self.student, self.train_data.x), self.train_data.y)}
        if self.val_data is not None and len(self.val_data):
            found["val_acc"] = accuracy(predict(self.student, self.val_data.x), self.val_data.y)
        self.metrics.update(found)
        return found


def _validated(kind: type[TrainConfig] | type[RunConfig], base: Any, overrides: dict[str, Any]) -> Any:
    """``kind`` (TrainConfig or RunConfig) from ``base`` with keyword overrides; a bad field is one ValueError line."""
    try:
        return kind.build(base, **overrides)
    except ValidationError as error:
        detail = error.errors()[0]
        where = ".".join(str(p) for p in detail["loc"]) or "config"
        raise ValueError(f"{where}: {detail['msg'].removeprefix('Value error, ')}") from None


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword options -> (TrainConfig fields, RunConfig fields); an unknown one is a TypeError naming both lists."""
    train = {k: v for k, v in options.items() if k in TrainConfig.model_fields}
    run = {k: v for k, v in options.items() if k in RunConfig.model_fields}
    unknown = sorted(set(options) - set(train) - set(run))
    if unknown:
        raise TypeError(
            f"unknown option(s) {unknown}; TrainConfig fields: {', '.join(TrainConfig.model_fields)}; "
            f"RunConfig fields: {', '.join(RunConfig.model_fields)}"
        )
    return train, run


def planned_steps(train_size: int, config: TrainConfig) -> int:
    """The optimiser steps the budget asks for (early stopping may end sooner)."""
    batches = config.batches_per_epoch(train_size)
    return config.steps or config.epoch_budget(batches) * batches


def training_part(train: Any, config: TrainConfig, val: Any = None) -> tuple[Any, Any]:
    """(the part of ``train`` the student trains on, the validation part): ``config.val_fraction`` of ``train``
    held out (stratified, seeded) when no ``val`` is given — what :func:`distill` trains on."""
    if val is None and config.val_fraction > 0:
        return validation_split(train, config.val_fraction, config.seed)
    return train, val


def prepare_context(
    teacher: nn.Module | None,
    student: nn.Module,
    train: Any,
    terms: Sequence[Term],
    config: TrainConfig,
    *,
    work_dir: Path | None,
    device: torch.device,
    progress: bool = True,
    cache_dir: Path | None = None,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] | None = None,
) -> PrepareContext:
    """What the terms' ``prepare`` sees for training on ``train`` (the training part) with ``config``: the one
    contract for the engine and for precomputing a term's artefacts ahead of training (``xdistill explain``)."""
    preparing = any(type(m).prepare is not Term.prepare for m in terms)
    train_x = train.x if preparing or isinstance(train, ArrayDataset) else torch.empty(0)
    return PrepareContext(
        teacher,
        student,
        train_x,
        train.y,
        train.fingerprint,
        work_dir,
        device,
        progress,
        rank=rank,
        world_size=world_size,
        barrier=barrier,
        data_info=dict(train.info),
        cache_dir=cache_dir,
        seed=config.seed,
        batch_size=config.batch_size,
        total_steps=planned_steps(len(train), config),
    )


def resume_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint in ``directory`` (last, then an unrenamed next, then previous) whose
    content matches its hash; a damaged one is named in a warning and the next older one is used."""
    names = ["last.safetensors", "next.safetensors", "previous.safetensors"]
    found = [directory / name for name in names if (directory / name).exists()]
    for k, path in enumerate(found):
        fix = f"resuming from {found[k + 1].name} instead" if k + 1 < len(found) else "training starts over"
        try:
            load_tree(path, fix=fix)
            return path
        except CheckpointError as error:
            logging.getLogger("xdistill").warning("%s", error)
    return None


def distill(
    teacher: nn.Module | None,
    student: nn.Module,
    train: Any,
    methods: Sequence[Term | str | dict],
    *,
    val: Any = None,
    config: TrainConfig | dict | None = None,
    run: RunConfig | dict | None = None,
    **options: Any,
) -> DistillResult:
    """Train ``student`` to minimise ``Σ weight · term`` against a frozen ``teacher``; returns the trained student.

    ``methods``: terms and presets, e.g. ``["ce", {"name": "kd", "weight": 0.5, "temperature": 4}]`` or
    ``["hinton"]``. ``train``: an ``ArrayDataset`` or any map-style ``Dataset`` yielding ``(x, y)``.
    How the model trains comes from ``config`` (:class:`TrainConfig`: budget, optimiser, schedule,
    augmentation, validation split, selection); where and on what it runs from ``run``
    (:class:`RunConfig`: work_dir, accelerator, devices, strategy, precision, loggers, checkpoints);
    keyword ``options`` override fields of either (``epochs=3``, ``devices=2``). Without ``val`` a
    stratified validation split of ``config.val_fraction`` is carved from ``train`` (seeded); the test
    split is never seen here. A checkpoint is written atomically every ``checkpoint_every`` epochs to
    ``work_dir/checkpoints``; with ``resume`` a run killed at any point continues from the last
    finished epoch. The final weights go to ``work_dir/student.safetensors``.
    """
    train_options, run_options = split_options(options)
    train_config: TrainConfig = _validated(TrainConfig, config, train_options)
    run_config: RunConfig = _validated(RunConfig, run, run_options)
    config, run = train_config, run_config
    work_dir = Path(run_config.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    terms = build_terms(methods)
    train, val = as_training_data(train), as_training_data(val)
    with warnings.catch_warnings(), lightning_quiet():
        _quiet_warnings()
        L.seed_everything(config.seed, workers=True, verbose=False)
        train, val = training_part(train, config, val)
        train_config = with_family_augmentation(train_config, family_of(train))
        if run.precision in ("64-true", "64"):  # the engine's own passes (probe, caches, terms' prepare) too
            train, val = in_float64(train), in_float64(val)
        check_pair(teacher, student, train)
        if terms and len(terms) == 1 and terms[0].name == "kd":
            logging.getLogger("xdistill").warning(
                "the objective is kd alone (T²·KL, no cross-entropy); Hinton's mix of both is the preset 'hinton'"
            )
        return _fit(teacher, student, train, val, terms, train_config, run_config, work_dir)


def _fit(teacher, student, train, val, terms, config: TrainConfig, run: RunConfig, work_dir: Path) -> DistillResult:
    use_cache = (
        run.teacher_logit_cache
        and teacher is not None
        and not config.augment
        and not any(m.changes_input for m in terms)
        and any(m.needs_teacher for m in terms if m.has_loss)
        and not any(m.teacher_layers for m in terms)
        and not any(m.needs_teacher_forward for m in terms)
    )
    teacher_grad_flags = [(p, p.requires_grad) for p in teacher.parameters()] if teacher is not None else []
    has_val = val is not None and len(val) > 0
    module = DistillationModule(
        student,
        teacher,
        terms,
        config=config,
        train=train,
        val=val if has_val else None,
        work_dir=work_dir,
        progress=run.progress,
        cache_teacher_logits=use_cache,
        cache_dir=Path(run.cache_dir) if run.cache_dir is not None else None,
    )
    timer = EpochTimer()
    callbacks: list[Callback] = [timer]
    best = None
    if has_val or config.monitor == "train_loss":
        best = BestEpoch(config.monitor.replace("_", "/"), config.patience, config.restore_best)
        callbacks.append(best)
    checkpoints = work_dir / "checkpoints"
    if run.checkpoint:
        callbacks.append(EpochCheckpoint(checkpoints, config.checkpoint_every, config.checkpoint_seconds))
    trainer = L.Trainer(
        max_epochs=config.epoch_budget(config.batches_per_epoch(len(train))),
        max_steps=-1,  # a steps budget: DistillationModule.on_train_batch_end stops at it
        accelerator=run.accelerator,
        devices=run.devices,
        strategy=_strategy(run),
        num_nodes=run.num_nodes,
        precision=run.precision,  # type: ignore[arg-type]  # a string checked by RunConfig
        logger=_loggers(run.loggers, work_dir),
        callbacks=callbacks,
        enable_progress_bar=run.progress,
        enable_model_summary=False,
        plugins=[SafetensorsCheckpointIO()],
        default_root_dir=work_dir,
        deterministic=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        enable_checkpointing=best is not None or run.checkpoint,  # (Checkpoint subclasses; Lightning adds no other)
        use_distributed_sampler=False,
        limit_val_batches=0,
    )
    train_loader = indexed_loader(
        train,
        config.batch_size,
        True,
        config.seed,
        run.num_workers,
        trainer.global_rank,
        trainer.world_size,
        drop_last=config.drop_last,
    )
    ckpt_path = resume_checkpoint(checkpoints) if (run.resume and run.checkpoint) else None
    try:
        with global_batch_statistics(student, run.sync_batchnorm):
            trainer.fit(module, train_loader, ckpt_path=str(ckpt_path) if ckpt_path else None)
    except SystemExit:
        if trainer.interrupted:  # Lightning turns Ctrl-C into exit(1); give the caller the interrupt back
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt from None
        raise
    finally:  # hand the user's models back as they came: no hooks, teacher's grad flags restored
        module.remove_hooks()
        for parameter, flag in teacher_grad_flags:
            parameter.requires_grad_(flag)
    student.eval().cpu()
    if trainer.is_global_zero:
        save_weights(student, work_dir / "student.safetensors")
    metrics = dict(module.epoch_metrics)
    metrics.update(selection_metrics(best, trainer.current_epoch))
    extra = sum(p.numel() for term in terms for p in term.extra_parameters())
    return DistillResult(
        student,
        work_dir,
        timer.seconds,
        metrics,
        used_logit_cache=use_cache,
        config=config,
        run=run,
        extra_parameters=extra,
        train_data=train,
        val_data=val,
    )


def _strategy(run: RunConfig) -> Any:
    """Lightning's strategy; DDP with the run's ``process_timeout`` (a dead process ends the run, not hangs it)."""
    several = run.devices not in (1, "1") or run.num_nodes > 1
    if run.strategy == "ddp" or (run.strategy == "auto" and several and run.devices != "auto"):
        from datetime import timedelta

        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(timeout=timedelta(seconds=run.process_timeout))
    return run.strategy


def selection_metrics(best: BestEpoch | None, epochs_run: int) -> dict[str, float]:
    """The epochs run and the chosen one (accuracies: ``DistillResult.accuracy``)."""
    out = {"epochs_run": float(epochs_run)}
    if best is not None and best.best_epoch >= 0:
        out["best_epoch"] = float(best.best_epoch + 1)
    return out


def family_of(data: Any) -> str:
    """The data family ("image", "series", "tokens") of a training set, from its first sample."""
    from .config import data_family

    if len(data) == 0:
        return "series"
    x = data.x[:1] if isinstance(data, ArrayDataset) else _items(data, 0, 1)[0]
    return data_family(tuple(x.shape), integer=not x.is_floating_point())


def in_float64(data: Any) -> Any:
    """An ArrayDataset with float64 inputs (the same object when it has them, or is not an ArrayDataset)."""
    if not isinstance(data, ArrayDataset) or not data.x.is_floating_point() or data.x.dtype == torch.float64:
        return data
    copy = object.__new__(ArrayDataset)
    copy.__dict__.update(data.__dict__)
    copy.x = data.x.double()
    return copy


def check_pair(teacher: nn.Module | None, student: nn.Module, train: Any) -> None:
    """Refuse a teacher and a student whose class counts differ from each other or from the data."""
    from .explain import eval_mode

    if len(train) == 0:
        raise ValueError(f"{train.name}: the training set is empty")
    probe = _items(train, 0, min(2, len(train)))[0]
    for role, model in (("teacher", teacher), ("student", student)):
        if model is None:
            continue
        with torch.no_grad(), eval_mode(model):
            classes = model(probe).shape[-1]
        if classes != train.num_classes:
            raise ValueError(
                f"the {role} outputs {classes} classes but {train.name} has {train.num_classes}; "
                "build it with num_classes matching the data (or wrap a full-task teacher in ClassSubset)"
            )


def _loggers(names: Sequence[str], work_dir: Path) -> list | bool:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    known = {
        "csv": lambda: CSVLogger(work_dir, name="logs"),
        "tensorboard": lambda: TensorBoardLogger(work_dir, name="tensorboard"),
    }
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown logger(s) {unknown}; choose from {sorted(known)}")
    return [known[n]() for n in names] or False


def train_teacher(
    model: nn.Module,
    train: Any,
    *,
    val: Any = None,
    config: TrainConfig | dict | None = None,
    run: RunConfig | dict | None = None,
    **options: Any,
) -> DistillResult:
    """Train a classifier on its own (cross-entropy) with the same engine, for users without a teacher."""
    if run is None and "work_dir" not in options:
        options["work_dir"] = "runs/teacher"
    return distill(None, model, train, ["ce"], val=val, config=config, run=run, **options)
