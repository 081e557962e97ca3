"""The Lightning engine: a frozen teacher, a trainable student, composable methods.

Trainer features come from Lightning: progress bar, checkpointing (through a safetensors
CheckpointIO, so no checkpoint is ever pickled), resuming, CSV/TensorBoard loggers, DDP,
bf16. The teacher is held outside the module tree, so it is never saved into a student
checkpoint nor wrapped by DDP.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .checkpoint import load_tree, save_tree, save_weights
from .data import ArrayDataset
from .hooks import FeatureHooks
from .methods import Batch, Method, PrepareContext, Step, method_from_spec


def quiet_lightning() -> None:
    """Drop Lightning's info chatter (device summary, tips); warnings still show."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)


class SafetensorsCheckpointIO(CheckpointIO):
    """Lightning checkpoints as safetensors + JSON structure: loading never executes code."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        save_tree(checkpoint, path)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_tree(path)

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)


class SafetensorsModelCheckpoint(ModelCheckpoint):
    FILE_EXTENSION = ".safetensors"


class EpochTimer(Callback):
    """Wall-clock seconds of every training epoch (for benchmarks and logs)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def as_methods(methods: Sequence[Method | str | dict[str, Any]]) -> list[Method]:
    """Accept method objects, registry names, or ``{"name": ..., **options}`` dicts."""
    built = [method_from_spec(spec) for spec in methods]
    if not built:
        raise ValueError("give at least one method (e.g. 'ce' for a student alone, 'kd' to distill)")
    return built


class DistillationModule(L.LightningModule):
    """Runs ``methods`` on a student against a frozen teacher; logs every loss term."""

    def __init__(self, student: nn.Module, teacher: nn.Module | None, methods: Sequence[Method], *,
                 lr: float = 1e-3, weight_decay: float = 0.0, teacher_logits: torch.Tensor | None = None) -> None:
        super().__init__()
        self.student = student
        self.methods = nn.ModuleList(methods)
        object.__setattr__(self, "teacher", teacher)  # not a sub-module: never saved, never DDP-wrapped
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        self.lr, self.weight_decay = lr, weight_decay
        self.teacher_logits = teacher_logits  # cache indexed by sample, or None
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
        loss = torch.stack(list(terms.values())).sum()
        terms["loss"] = loss
        for name, value in terms.items():  # summed here, logged once per epoch (self.log per step is slow)
            self._term_sums[name] = self._term_sums.get(name, 0.0) + value.detach() * len(y)
        self._term_count += len(y)
        return loss

    def on_train_epoch_end(self) -> None:
        for name, total in self._term_sums.items():
            self.log(f"train/{name}", total / self._term_count, prog_bar=(name == "loss"), sync_dist=True)
        self._term_sums, self._term_count = {}, 0

    def validation_step(self, raw, batch_idx: int) -> None:
        x, y, _ = raw
        logits = self.student(x)
        self.log("val/acc", (logits.argmax(1) == y).float().mean(), prog_bar=True, batch_size=len(y), sync_dist=True)
        if self.teacher is not None:
            with torch.no_grad():
                agree = (self.teacher(x).argmax(1) == logits.argmax(1)).float().mean()
            self.log("val/agreement", agree, prog_bar=True, batch_size=len(y), sync_dist=True)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def indexed_loader(data: ArrayDataset, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0) -> DataLoader:
    """Batches of ``(x, y, index)``; the index keys per-sample caches and stores."""
    dataset = TensorDataset(data.x, data.y, torch.arange(len(data)))
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=num_workers)


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


def distill(
    teacher: nn.Module | None, student: nn.Module, train: ArrayDataset, methods: Sequence[Method | str | dict],
    *, val: ArrayDataset | None = None, epochs: int = 20, batch_size: int = 64, lr: float = 1e-3,
    weight_decay: float = 0.0, seed: int = 0, work_dir: str | Path = "runs/distill", resume: bool = True,
    teacher_logit_cache: bool = True, accelerator: str = "auto", devices: int | str = 1, strategy: str = "auto",
    num_nodes: int = 1, precision: str | None = None, loggers: Sequence[str] = ("csv",), progress: bool = True,
    num_workers: int = 0, checkpoint: bool = True,
) -> DistillResult:
    """Train ``student`` with ``methods`` against a frozen ``teacher``; returns the trained student.

    Checkpoints (``work_dir/checkpoints/last.safetensors``) are written every epoch; with
    ``resume=True`` an interrupted run continues from there. The final student weights go
    to ``work_dir/student.safetensors``.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    quiet_lightning()
    L.seed_everything(seed, workers=True, verbose=False)
    methods = as_methods(methods)
    device = torch.device("cuda" if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu")
    context = PrepareContext(teacher, student, train.x, train.y, train.fingerprint, work_dir, device, progress)
    for method in methods:
        method.prepare(context)
    student.cpu()
    if teacher is not None:
        teacher.cpu()
    use_cache = (teacher_logit_cache and teacher is not None and all(m.deterministic_transform for m in methods)
                 and any(m.needs_teacher for m in methods) and not any(m.teacher_layers for m in methods)
                 and not any(m.needs_teacher_forward for m in methods))
    cached = teacher_logits_for(teacher, train.x, device).cpu() if use_cache else None
    if teacher is not None:
        teacher.cpu()
    teacher_grad_flags = [(p, p.requires_grad) for p in teacher.parameters()] if teacher is not None else []
    module = DistillationModule(student, teacher, methods, lr=lr, weight_decay=weight_decay, teacher_logits=cached)
    timer = EpochTimer()
    callbacks: list[Callback] = [timer]
    if checkpoint:
        callbacks.append(SafetensorsModelCheckpoint(dirpath=work_dir / "checkpoints", filename="epoch{epoch}",
                                                    save_last=True, save_top_k=0, every_n_epochs=1))
    trainer = L.Trainer(
        max_epochs=epochs, accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes,
        precision=precision, logger=_loggers(loggers, work_dir), callbacks=callbacks,
        enable_progress_bar=progress, enable_model_summary=False, plugins=[SafetensorsCheckpointIO()],
        default_root_dir=work_dir, deterministic=False, log_every_n_steps=1, num_sanity_val_steps=0,
        enable_checkpointing=checkpoint,
    )
    last = work_dir / "checkpoints" / "last.safetensors"
    ckpt_path = str(last) if (resume and checkpoint and last.exists()) else None
    train_loader = indexed_loader(train, batch_size, True, seed, num_workers)
    val_loader = indexed_loader(val, max(batch_size, 256), False, seed, num_workers) if val is not None else None
    try:
        trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path)
    finally:  # hand the user's models back as they came: no hooks, teacher's grad flags restored
        module.remove_hooks()
        for parameter, flag in teacher_grad_flags:
            parameter.requires_grad_(flag)
    student.eval().cpu()
    if trainer.is_global_zero:
        save_weights(student, work_dir / "student.safetensors")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return DistillResult(student, work_dir, timer.seconds, metrics, used_logit_cache=cached is not None)


def _loggers(names: Sequence[str], work_dir: Path) -> list | bool:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    known = {"csv": lambda: CSVLogger(work_dir, name="logs"),
             "tensorboard": lambda: TensorBoardLogger(work_dir, name="tensorboard")}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown logger(s) {unknown}; choose from {sorted(known)}")
    return [known[n]() for n in names] or False


def train_teacher(model: nn.Module, train: ArrayDataset, *, val: ArrayDataset | None = None, epochs: int = 30,
                  work_dir: str | Path = "runs/teacher", **options: Any) -> DistillResult:
    """Train a classifier on its own (cross-entropy) with the same engine, for users without a teacher."""
    return distill(None, model, train, ["ce"], val=val, epochs=epochs, work_dir=work_dir, **options)
