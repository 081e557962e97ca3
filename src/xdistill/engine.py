"""The Lightning engine: a frozen teacher, a trainable student, composable methods.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.pytorch.callbacks import Callback
from pydantic import ValidationError
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from .callbacks import BestEpoch, EpochCheckpoint, EpochTimer
from .checkpoint import CheckpointError, load_tree, save_tree, save_weights
from .config import TrainConfig
from .data import ArrayDataset
from .data.dataset import validation_split
from .hooks import FeatureHooks
from .methods import Batch, Method, PrepareContext, Step, method_from_spec


def quiet_lightning() -> None:
    """Drop Lightning's info chatter (device summary, tips); warnings still show."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Training without a validation split is a supported choice (selection on the training loss), not a mistake.
    warnings.filterwarnings("ignore", message=".*defined a `validation_step` but have no `val_dataloader`.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning's internal deprecation notice


class SafetensorsCheckpointIO(CheckpointIO):
    """Lightning checkpoints as safetensors + JSON structure: loading never executes code."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        save_tree(checkpoint, path)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_tree(path)

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)


class EpochShuffle(Sampler[int]):
    """A shuffled order that depends only on (seed, epoch), so a resumed run sees the same batches.

    Distributed (``world_size > 1``): every global batch of ``global_batch`` samples of that order
    is cut into ``world_size`` equal slices and rank ``r`` takes slice ``r`` (the last global batch
    is filled up from the start of the order), so N processes with local batches of
    ``global_batch / N`` see exactly the batches one process would.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1, global_batch: int = 1) -> None:
        self.size, self.seed, self.epoch = size, seed, 0
        self.rank, self.world_size, self.global_batch = rank, world_size, global_batch

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this at every epoch start
        self.epoch = epoch

    def _order(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        order = self._order()
        if self.world_size == 1:
            return iter(order)
        padded = order + order[: (-len(order)) % self.global_batch]
        local = self.global_batch // self.world_size
        mine = []
        for start in range(0, len(padded), self.global_batch):
            mine += padded[start + self.rank * local : start + (self.rank + 1) * local]
        return iter(mine)

    def __len__(self) -> int:
        if self.world_size == 1:
            return self.size
        return -(-self.size // self.global_batch) * (self.global_batch // self.world_size)


def as_methods(methods: Sequence[Method | str | dict[str, Any]]) -> list[Method]:
    """Accept method objects, registry names, or ``{"name": ..., **options}`` dicts."""
    built = [method_from_spec(spec) for spec in methods]
    if not built:
        raise ValueError("give at least one method (e.g. 'ce' for a student alone, 'kd' to distill)")
    return built


class DistillationModule(L.LightningModule):
    """Runs ``methods`` on a student against a frozen teacher; logs every loss term."""

    def __init__(self, student: nn.Module, teacher: nn.Module | None, methods: Sequence[Method], *,
                 config: TrainConfig | None = None, train: ArrayDataset | None = None, work_dir: Path | None = None,
                 progress: bool = True, cache_teacher_logits: bool = False,
                 teacher_logits: torch.Tensor | None = None, cache_dir: Path | None = None) -> None:
        super().__init__()
        self.student = student
        self.methods = nn.ModuleList(methods)
        object.__setattr__(self, "teacher", teacher)  # not a sub-module: never saved, never DDP-wrapped
        if teacher is not None:
            teacher.eval()
            for parameter in teacher.parameters():  # (ScriptModules have no requires_grad_)
                parameter.requires_grad_(False)
        self.config = config or TrainConfig()
        self.teacher_logits = teacher_logits  # cache indexed by sample, or None
        self.train_data, self.work_dir, self.progress = train, work_dir, progress
        self.cache_dir = cache_dir
        self.cache_teacher_logits = cache_teacher_logits
        self._prepared = train is None
        student_layers = sorted({p for m in methods for p in m.student_layers})
        teacher_layers = sorted({p for m in methods for p in m.teacher_layers})
        self.student_hooks = FeatureHooks(student, student_layers) if student_layers else None
        self.teacher_hooks = FeatureHooks(teacher, teacher_layers) if teacher_layers and teacher is not None else None
        self.needs_teacher = teacher is not None and any(m.needs_teacher for m in methods)
        self.teacher_forward = any(m.needs_teacher_forward for m in methods)
        self._term_sums: dict[str, torch.Tensor] = {}
        self._term_count = 0

    def remove_hooks(self) -> None:
        """Detach the feature hooks from the user's models (after training)."""
        for hooks in (self.student_hooks, self.teacher_hooks):
            if hooks is not None:
                hooks.remove()

    def setup(self, stage: str) -> None:
        """The methods' one-off work, on every rank once the process group exists (before DDP wrapping
        and the optimiser, so parameters a method creates here train with the student)."""
        if self._prepared:
            return
        trainer, train = self.trainer, self.train_data
        device = trainer.strategy.root_device
        distributed = trainer.world_size > 1
        context = PrepareContext(self.teacher, self.student, train.x, train.y, train.fingerprint, self.work_dir, device,
                                 self.progress and trainer.is_global_zero, rank=trainer.global_rank,
                                 world_size=trainer.world_size,
                                 barrier=(lambda: trainer.strategy.barrier("prepare")) if distributed else None,
                                 data_info=dict(train.info), cache_dir=self.cache_dir, seed=self.config.seed)
        for method in self.methods:
            method.prepare(context)
        self.student.cpu()
        if self.cache_teacher_logits:
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
        for method in self.methods:
            method.on_fit_start(self.trainer)

    def on_train_epoch_start(self) -> None:
        # Lightning (>= 2.2) keeps sub-modules that arrive in eval mode in eval mode; a student
        # whose BatchNorm never leaves eval mode silently fails to train, so set it explicitly.
        self.student.train()
        self.methods.train()

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        for method in self.methods:
            method.on_step(self.global_step + 1, int(self.trainer.estimated_stepping_batches))  # 1-based, as in REKD

    def _teacher_logits(self, batch: Batch, transformed: bool) -> torch.Tensor | None:
        if not self.needs_teacher:
            return None
        if self.teacher_logits is not None and not transformed and self.teacher_hooks is None and not self.teacher_forward:
            return self.teacher_logits[batch.index.cpu()].to(self.device)
        with torch.no_grad():
            return self.teacher(batch.x)

    def training_step(self, raw, batch_idx: int) -> torch.Tensor:
        x, y, index = raw
        batch = Batch(x, y, index)
        for method in self.methods:
            batch = method.transform(batch)
        transformed = batch.x is not x
        student_logits = self.student(batch.x)
        student_features = dict(self.student_hooks.features) if self.student_hooks else {}
        teacher_logits = self._teacher_logits(batch, transformed)
        teacher_features = dict(self.teacher_hooks.features) if self.teacher_hooks else {}
        step = Step(batch, self.student, self.teacher, student_logits, teacher_logits, student_features, teacher_features)
        terms: dict[str, torch.Tensor] = {}
        for method in self.methods:
            for name, value in method.loss(step).items():
                if name in terms:
                    raise ValueError(f"two methods both produce the loss term {name!r}; "
                                     f"combine e.g. 'kd' with 'fitnets', not 'kd' with 'tsd' (tsd includes kd)")
                terms[name] = value
        for name, value in terms.items():
            if not torch.isfinite(value).all():
                raise FloatingPointError(
                    f"loss term {name!r} became {value.item()} in epoch {self.current_epoch + 1} (step {self.global_step}); "
                    "lower the learning rate or check the inputs for extreme values")
        loss = torch.stack(list(terms.values())).sum()
        terms["loss"] = loss
        for name, value in terms.items():  # summed here, logged once per epoch (self.log per step is slow)
            self._term_sums[name] = self._term_sums.get(name, 0.0) + value.detach() * len(y)
        self._term_count += len(y)
        return loss

    def epoch_loss(self) -> float | None:
        """The mean training loss of the epoch so far (train mode, as logged), or None before any step."""
        if not self._term_count:
            return None
        return float(self._term_sums["loss"] / self._term_count)

    def on_train_epoch_end(self) -> None:
        for name, total in self._term_sums.items():
            self.log(f"train/{name}", total / self._term_count, prog_bar=(name == "loss"), sync_dist=True)
        self._term_sums, self._term_count = {}, 0

    def validation_step(self, raw, batch_idx: int) -> None:
        x, y, _ = raw
        logits = self.student(x)
        n = len(y)
        self.log("val/loss", F.cross_entropy(logits, y), batch_size=n, sync_dist=True)
        self.log("val/acc", (logits.argmax(1) == y).float().mean(), prog_bar=True, batch_size=n, sync_dist=True)
        if self.teacher is not None:
            with torch.no_grad():
                agree = (self.teacher(x).argmax(1) == logits.argmax(1)).float().mean()
            self.log("val/agreement", agree, prog_bar=True, batch_size=n, sync_dist=True)

    def configure_optimizers(self):
        from .optim import configure

        return configure(self.parameters(), self.config, max(1, int(self.trainer.estimated_stepping_batches)))


def indexed_loader(data: ArrayDataset, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0,
                   rank: int = 0, world_size: int = 1) -> DataLoader:
    """Batches of ``(x, y, index)``; the index keys per-sample caches and stores.

    ``batch_size`` is the global batch; with ``world_size`` processes each loads its share of it.
    """
    dataset = TensorDataset(data.x, data.y, torch.arange(len(data)))
    if not shuffle:
        return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes ({world_size})")
    sampler = EpochShuffle(len(data), seed, rank, world_size, batch_size)
    return DataLoader(dataset, batch_size=batch_size // world_size, sampler=sampler, num_workers=num_workers)


def teacher_logits_for(teacher: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 512) -> torch.Tensor:
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


def train_config(config: TrainConfig | dict | None, overrides: dict[str, Any]) -> TrainConfig:
    """``config`` with keyword overrides, validated; a bad field is one ``ValueError`` line naming it."""
    unknown = sorted(set(overrides) - set(TrainConfig.model_fields))
    if unknown:
        raise TypeError(f"unknown training option(s) {unknown}; TrainConfig fields: {', '.join(TrainConfig.model_fields)}")
    try:
        return TrainConfig.build(config, **overrides)
    except ValidationError as error:
        detail = error.errors()[0]
        where = ".".join(str(p) for p in detail["loc"]) or "config"
        raise ValueError(f"{where}: {detail['msg'].removeprefix('Value error, ')}") from None


def resume_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint in ``directory`` (last, then an unrenamed next, then previous)."""
    from .checkpoint import verify_checkpoint

    for name in ("last.safetensors", "next.safetensors", "previous.safetensors"):
        path = directory / name
        if not path.exists():
            continue
        try:
            verify_checkpoint(path)
            return path
        except CheckpointError as error:
            logging.getLogger("xdistill").warning("%s; falling back to an older checkpoint", error)
    return None


def distill(
    teacher: nn.Module | None, student: nn.Module, train: ArrayDataset, methods: Sequence[Method | str | dict],
    *, val: ArrayDataset | None = None, config: TrainConfig | dict | None = None,
    work_dir: str | Path = "runs/distill", resume: bool = True, teacher_logit_cache: bool = True,
    accelerator: str = "auto", devices: int | str = 1, strategy: str = "auto", num_nodes: int = 1,
    precision: str | None = None, loggers: Sequence[str] = ("csv",), progress: bool = True, num_workers: int = 0,
    checkpoint: bool = True, cache_dir: str | Path | None = None, **overrides: Any,
) -> DistillResult:
    """Train ``student`` with ``methods`` against a frozen ``teacher``; returns the trained student.

    Training settings come from ``config`` (a :class:`TrainConfig` or dict) and keyword
    overrides (``epochs=``, ``lr=``, ...). Without ``val`` a stratified validation split of
    ``config.val_fraction`` is carved from ``train`` (seeded) and used to select the best epoch
    and stop early; the test split is never seen here. A checkpoint is written atomically
    every ``checkpoint_every`` epochs to ``work_dir/checkpoints``; with ``resume=True`` a run
    killed at any point continues from the last finished epoch. The final student weights go
    to ``work_dir/student.safetensors``. ``cache_dir``: a folder shared by several runs for
    precomputed teacher attributions, kept under a hash of (teacher, data, explainer) so runs with
    the same teacher and settings compute them once (default: inside ``work_dir``).
    """
    config = train_config(config, overrides)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    quiet_lightning()
    L.seed_everything(config.seed, workers=True, verbose=False)
    methods = as_methods(methods)
    if val is None and config.val_fraction > 0:
        train, val = validation_split(train, config.val_fraction, config.seed)
    check_pair(teacher, student, train)
    use_cache = (teacher_logit_cache and teacher is not None and all(m.deterministic_transform for m in methods)
                 and any(m.needs_teacher for m in methods) and not any(m.teacher_layers for m in methods)
                 and not any(m.needs_teacher_forward for m in methods))
    teacher_grad_flags = [(p, p.requires_grad) for p in teacher.parameters()] if teacher is not None else []
    module = DistillationModule(student, teacher, methods, config=config, train=train, work_dir=work_dir,
                                progress=progress, cache_teacher_logits=use_cache,
                                cache_dir=Path(cache_dir) if cache_dir is not None else None)
    timer = EpochTimer()
    callbacks: list[Callback] = [timer]
    best = None
    has_val = val is not None and len(val) > 0
    if has_val or config.monitor == "train_loss":
        best = BestEpoch(config.monitor.replace("_", "/"), config.patience, config.restore_best)
        callbacks.append(best)
    checkpoints = work_dir / "checkpoints"
    if checkpoint:
        callbacks.append(EpochCheckpoint(checkpoints, config.checkpoint_every, config.checkpoint_seconds))
    trainer = L.Trainer(
        max_epochs=config.epoch_budget(-(-len(train) // config.batch_size)), accelerator=accelerator, devices=devices, strategy=strategy,
        num_nodes=num_nodes, precision=precision, logger=_loggers(loggers, work_dir), callbacks=callbacks,
        enable_progress_bar=progress, enable_model_summary=False, plugins=[SafetensorsCheckpointIO()],
        default_root_dir=work_dir, deterministic=False, log_every_n_steps=1, num_sanity_val_steps=0,
        enable_checkpointing=checkpoint, use_distributed_sampler=False,
    )
    train_loader = indexed_loader(train, config.batch_size, True, config.seed, num_workers, trainer.global_rank,
                                  trainer.world_size)
    val_loader = indexed_loader(val, max(config.batch_size, 256), False, config.seed, num_workers) if has_val else None
    ckpt_path = resume_checkpoint(checkpoints) if (resume and checkpoint) else None
    try:
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(ckpt_path) if ckpt_path else None)
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
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics.update(selection_metrics(student, train, val, best, trainer.current_epoch))
    return DistillResult(student, work_dir, timer.seconds, metrics, used_logit_cache=module.teacher_logits is not None,
                         config=config)


def selection_metrics(student: nn.Module, train: ArrayDataset, val: ArrayDataset | None, best: BestEpoch | None,
                      epochs_run: int) -> dict[str, float]:
    """Eval-mode accuracy of the final student on its training and validation parts, and the chosen epoch."""
    from .metrics import accuracy, predict

    out = {"train_acc": accuracy(predict(student, train.x), train.y), "epochs_run": float(epochs_run)}
    if val is not None and len(val):
        out["val_acc"] = accuracy(predict(student, val.x), val.y)
    if best is not None and best.best_epoch >= 0:
        out["best_epoch"] = float(best.best_epoch + 1)
    return out


def check_pair(teacher: nn.Module | None, student: nn.Module, train: ArrayDataset) -> None:
    """Refuse a teacher and a student whose class counts differ from each other or from the data."""
    from .explain import eval_mode

    if len(train) == 0:
        raise ValueError(f"{train.name}: the training set is empty")
    probe = train.x[:2]
    for role, model in (("teacher", teacher), ("student", student)):
        if model is None:
            continue
        with torch.no_grad(), eval_mode(model):
            classes = model(probe).shape[-1]
        if classes != train.num_classes:
            raise ValueError(f"the {role} outputs {classes} classes but {train.name} has {train.num_classes}; "
                             "build it with num_classes matching the data (or wrap a full-task teacher in ClassSubset)")


def _loggers(names: Sequence[str], work_dir: Path) -> list | bool:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    known = {"csv": lambda: CSVLogger(work_dir, name="logs"),
             "tensorboard": lambda: TensorBoardLogger(work_dir, name="tensorboard")}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown logger(s) {unknown}; choose from {sorted(known)}")
    return [known[n]() for n in names] or False


def train_teacher(model: nn.Module, train: ArrayDataset, *, val: ArrayDataset | None = None,
                  config: TrainConfig | dict | None = None, work_dir: str | Path = "runs/teacher",
                  **options: Any) -> DistillResult:
    """Train a classifier on its own (cross-entropy) with the same engine, for users without a teacher."""
    return distill(None, model, train, ["ce"], val=val, config=config, work_dir=work_dir, **options)
