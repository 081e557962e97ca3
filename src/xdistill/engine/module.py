"""The Lightning module: a frozen teacher, a trainable student and the objective; one step is
transform -> forward -> objective. It reads what the objective needs and never looks at a term."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from ..augment import apply_augmentations, build_augmentations
from ..config import TrainConfig
from ..distributed import remember_group
from ..hooks import FeatureHooks
from ..methods import Batch, Objective, PrepareContext, Step, StepState
from ..methods.objective import NonFiniteLoss
from .loaders import items, planned_steps, share_bounds, teacher_logits_for

#: optimiser steps between checks that every logged loss is finite (each check waits for the device once)
FINITE_CHECK_EVERY = 64


class DistillationModule(L.LightningModule):
    """Minimises the objective for a student against a frozen teacher; logs every term raw and weighted."""

    # declared for type checkers (nn.Module's __getattr__ would type them as Tensor | Module)
    student: nn.Module
    teacher: nn.Module | None
    methods: nn.ModuleList
    objective: Objective
    teacher_logits: torch.Tensor | None

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None,
        objective: Objective,
        *,
        config: TrainConfig | None = None,
        train: Any = None,
        val: Any = None,
        work_dir: Path | None = None,
        progress: bool = True,
        cache_teacher_logits: bool = False,
        cache_dir: Path | None = None,
        prepare_context: Any = None,
    ) -> None:
        super().__init__()
        self.student = student
        self.methods = objective.terms  # (the name keeps the checkpoints' keys)
        object.__setattr__(self, "objective", objective)
        object.__setattr__(self, "teacher", teacher)  # not a sub-module: never saved, never DDP-wrapped
        if teacher is not None:
            teacher.eval()
            for parameter in teacher.parameters():  # (ScriptModules have no requires_grad_)
                parameter.requires_grad_(False)
        self.config = config or TrainConfig()
        self.augmentations = build_augmentations(self.config.augment)
        self.teacher_logits: torch.Tensor | None = None  # indexed by sample, when cached or clean logits are needed
        self.train_data, self.val_data, self.work_dir, self.progress = train, val, work_dir, progress
        self.cache_dir = cache_dir
        self.cache_teacher_logits = cache_teacher_logits
        self.make_context = prepare_context
        self._prepared = train is None
        needs = objective.teacher_needs
        self.student_hooks = FeatureHooks(student, objective.student_layers) if objective.student_layers else None
        self.teacher_hooks = FeatureHooks(teacher, needs.layers) if needs.layers and teacher is not None else None
        self.teacher_runs = teacher is not None and needs.forward  # the teacher sees every step's input
        self.clean_logits = teacher is not None and needs.clean_logits
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0
        self.epoch_metrics: dict[str, float] = {}
        #: every finished epoch's logged row (``epoch``, ``step`` and the metrics), in every checkpoint: a fit resumed
        #: after a kill writes the epochs before its checkpoint into its logs again, so its curve covers every epoch
        self.history: list[dict[str, float]] = []

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
        if distributed:
            remember_group(trainer.global_rank, trainer.world_size)
        context: PrepareContext = self.make_context(
            device=device,
            progress=self.progress and trainer.is_global_zero,
            rank=trainer.global_rank,
            world_size=trainer.world_size,
            barrier=(lambda: trainer.strategy.barrier("prepare")) if distributed else None,
        )
        self.objective.prepare(context)
        for augmentation in self.augmentations:
            augmentation.bind(context.data_info)
        self.student.cpu()
        if self.cache_teacher_logits or self.clean_logits:
            assert self.teacher is not None
            self.teacher_logits = teacher_logits_for(self.teacher, train.x, device).cpu()
        if self.teacher is not None:
            self.teacher.cpu()
        self._prepared = True

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """Our batches are flat (x, y, index) tuples: move them directly (Lightning's generic walk is slow), and
        keep the host's copy of the indices for host-resident state (see ``Batch.host_index``)."""
        x, y, index = batch
        return (
            x.to(device, non_blocking=True),
            y.to(device, non_blocking=True),
            index.to(device, non_blocking=True),
            index,
        )

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device).eval()

    def on_train_epoch_start(self) -> None:
        # Lightning (>= 2.2) keeps sub-modules that arrive in eval mode in eval mode; a student
        # whose BatchNorm never leaves eval mode silently fails to train, so set it explicitly.
        self.student.train()
        self.methods.train()

    # -- one step -------------------------------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        """The optimiser steps the budget plans (what schedules and annealings count towards)."""
        return max(1, planned_steps(len(self.train_data), self.config))

    def step_state(self) -> StepState:
        return StepState(self.global_step + 1, self.total_steps, self.config.seed)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # A ``steps`` budget is enforced here, not with Lightning's ``max_steps``: a run Lightning calls
        # iteration-based replays part of the last checkpointed epoch on resume (one extra batch, every later
        # step shifted). Stopping here ends the epoch early and resumes as an epoch budget does: exactly.
        if self.config.steps is not None and self.global_step >= self.config.steps:
            self.trainer.should_stop = True
        if self.global_step % FINITE_CHECK_EVERY == 0:  # one host sync per so many steps, not per step
            self._check_finite()

    def _check_finite(self) -> None:
        """Stop with the term's name when a logged loss became NaN or infinite (running sums carry it)."""
        try:
            self.objective.check_finite(self._sums)
        except NonFiniteLoss as error:
            raise FloatingPointError(
                f"{error} in epoch {self.current_epoch + 1} (by step {self.global_step}); "
                "lower the learning rate or check the inputs for extreme values"
            ) from None

    def _share(self, batch_idx: int, local: int) -> tuple[float, int]:
        """(this process's weight in the global batch's mean, the samples it counts for)."""
        world = self.trainer.world_size
        if world == 1:
            return 1.0, local
        n = min(self.config.batch_size, len(self.train_data) - batch_idx * self.config.batch_size)
        begin, end = share_bounds(n, world)[self.trainer.global_rank]
        return (end - begin) * world / n, end - begin

    def _cached(self, batch: Batch) -> torch.Tensor:
        assert self.teacher_logits is not None
        return self.teacher_logits[batch.index_on_host].to(self.device, non_blocking=True)

    def _teacher_pass(self, batch: Batch) -> tuple[torch.Tensor | None, Any]:
        """(the teacher's logits on the step's input, its structured output), as the objective needs them."""
        if not self.teacher_runs or self.teacher is None:
            return None, None
        if self.cache_teacher_logits and self.teacher_logits is not None:
            return self._cached(batch), None
        with torch.no_grad():
            if self.objective.teacher_needs.structured:
                output = self.teacher.forward_structured(batch.x)  # type: ignore[operator]
                return output.logits, output
            return self.teacher(batch.x), None

    def _student_pass(self, batch: Batch, state: StepState) -> tuple[torch.Tensor, Any]:
        if self.objective.student_structured:
            options = self.objective.forward_options(state, batch)
            output = self.student.forward_structured(batch.x, **options)  # type: ignore[operator]
            return output.logits, output
        return self.student(batch.x), None

    def training_step(self, raw, batch_idx: int) -> torch.Tensor:
        x, y, index, *host = raw
        state = self.step_state()
        batch = Batch(x, y, index, host[0] if host else None)
        if self.augmentations:
            augmented = apply_augmentations(self.augmentations, x, lambda salt: state.streams(index, salt))
            batch = dataclasses.replace(batch, x=augmented)
        batch = self.objective.transform(batch, state)
        student_logits, student_output = self._student_pass(batch, state)
        student_features = dict(self.student_hooks.features) if self.student_hooks else {}
        teacher_logits, teacher_output = self._teacher_pass(batch)
        step = Step(
            batch=batch,
            student=self.student,
            teacher=self.teacher,
            student_logits=student_logits,
            teacher_logits=teacher_logits,
            student_features=student_features,
            teacher_features=dict(self.teacher_hooks.features) if self.teacher_hooks else {},
            state=state,
            teacher_clean_logits=self._cached(batch) if self.clean_logits else None,
            student_output=student_output,
            teacher_output=teacher_output,
        )
        share, counted = self._share(batch_idx, len(y))
        loss, logged = self.objective.loss(step, share)
        for name, value in logged.items():  # summed here, logged once per epoch (self.log per step is slow)
            self._sums[name] = self._sums.get(name, 0.0) + value.double() * counted
        self._count += counted
        return loss

    # -- end of an epoch: exact, reduced metrics -----------------------------------------------------------------------
    def on_train_epoch_end(self) -> None:
        self._check_finite()  # (before the checkpoint callback: a non-finite epoch is never saved)
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
        self.epoch_metrics = metrics  # (the progress bar and the best-epoch callback read them here)
        self.history.append({"epoch": float(self.current_epoch), "step": float(self.global_step), **metrics})
        # the same on every rank: written straight to the loggers (Lightning's self.log costs ~1.6 ms a value, paid
        # every epoch; a tiny data set has hundreds of epochs)
        self._log_rows(self.history[-1:])
        self._sums, self._count = {}, 0

    def _log_rows(self, rows: list[dict[str, float]]) -> None:
        for row in rows:
            metrics = {k: v for k, v in row.items() if k != "step"}
            metrics["epoch"] = int(metrics["epoch"])
            for logger in self.trainer.loggers:
                logger.log_metrics(metrics, step=int(row["step"]))

    # -- checkpoints: the epoch history travels with them --------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["xdistill_history"] = [dict(row) for row in self.history]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resumed fit: its logs start with the epochs the checkpoint holds (here, not when training starts: a
        fit killed after its last checkpoint has no epoch left, and Lightning then skips the training hooks)."""
        self.history = [dict(row) for row in checkpoint.get("xdistill_history", [])]
        self._log_rows(self.history)

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
                x, y = items(self.val_data, start, min(end, start + batch))
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
        from ..optim import configure

        return configure(self.parameters(), self.config, self.total_steps)
