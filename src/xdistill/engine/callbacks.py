"""Lightning callbacks of the engine: epoch timing, best-epoch selection, kill-safe checkpoints, the progress bar."""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback, Checkpoint, ProgressBar


class EpochTimer(Callback):
    """Wall-clock seconds of every training epoch (for benchmarks and logs)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self.seconds.append(time.perf_counter() - self._start)


class BestEpoch(Checkpoint):
    """Model selection on the validation split: keeps the best student weights, stops early.

    ``monitor`` is ``val/loss`` / ``train/loss`` (lower is better) or ``val/acc`` (higher is better),
    read from the module's ``epoch_metrics``: exact values reduced over every process, so each
    process picks the same epoch and stops at the same time. (A ``Checkpoint`` subclass so that
    Lightning runs it after the module's ``on_train_epoch_end``, where those metrics are made.) After
    ``patience`` epochs without improvement training stops; at the end the best weights are
    put back when ``restore`` is set. Its state (best score, epoch, weights) is saved in every
    checkpoint, so a resumed run selects exactly as an uninterrupted one.
    """

    def __init__(self, monitor: str = "val/loss", patience: int | None = None, restore: bool = True) -> None:
        self.monitor, self.patience, self.restore = monitor, patience, restore
        self.sign = 1.0 if monitor.endswith("loss") else -1.0
        self.best = math.inf
        self.best_epoch = -1
        self.wait = 0
        self.weights: dict[str, torch.Tensor] = {}
        #: the epoch metrics of the best epoch (what a fit that restores it reports)
        self.metrics: dict[str, float] = {}

    def on_train_epoch_end(self, trainer, module) -> None:
        value = module.epoch_metrics.get(self.monitor)
        if value is not None:
            self._update(trainer, module, value)

    def _update(self, trainer, module, value: float) -> None:
        score = self.sign * value
        if score < self.best - 1e-9:
            self.best, self.best_epoch, self.wait = score, trainer.current_epoch, 0
            self.weights = {k: v.detach().cpu().clone() for k, v in module.student.state_dict().items()}
            self.metrics = dict(module.epoch_metrics)
        else:
            self.wait += 1
            if self.patience is not None and self.wait >= self.patience:
                trainer.should_stop = True

    def on_fit_end(self, trainer, module) -> None:
        if self.restore and self.weights:
            module.student.load_state_dict(self.weights)

    @property
    def best_score(self) -> float:
        return self.sign * self.best

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "weights": self.weights,
            "metrics": self.metrics,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.weights = dict(state["weights"])
        self.metrics = dict(state.get("metrics", {}))


class EpochCheckpoint(Checkpoint):
    """Writes ``last.safetensors`` every ``every`` epochs (and at least ``min_seconds`` apart, so
    thousands of tiny epochs do not spend their time writing), at the last epoch and when training
    stops early; atomically, keeping the previous one.

    The checkpoint is written to a temporary file and renamed into place; the one it
    replaces becomes ``previous.safetensors``. A kill at any moment leaves at least one
    complete checkpoint. The global torch RNG state travels with it, so a resumed run draws
    the same random numbers (dropout, augmentation, perturbations) as an uninterrupted one.
    """

    def __init__(self, directory: str | Path, every: int = 1, min_seconds: float = 0.0) -> None:
        self.directory, self.every, self.min_seconds = Path(directory), every, min_seconds
        self._last_write = time.monotonic()

    @property
    def last(self) -> Path:
        return self.directory / "last.safetensors"

    @property
    def previous(self) -> Path:
        return self.directory / "previous.safetensors"

    def on_train_epoch_end(self, trainer, module) -> None:
        epoch = trainer.current_epoch + 1
        final = epoch == trainer.max_epochs or trainer.should_stop
        due = epoch % self.every == 0 and time.monotonic() - self._last_write >= self.min_seconds
        if trainer.world_size > 1:  # one clock decides (rank 0's), so every process reaches the same barrier
            due = bool(trainer.strategy.broadcast(due, src=0))
        if not (final or due):
            return
        self._last_write = time.monotonic()
        partial = self.directory / "next.safetensors"
        trainer.save_checkpoint(partial, weights_only=False)  # written atomically by the CheckpointIO
        if trainer.is_global_zero:
            if self.last.exists():
                os.replace(self.last, self.previous)
            os.replace(partial, self.last)
        trainer.strategy.barrier("epoch-checkpoint")

    def state_dict(self) -> dict[str, Any]:
        return {"torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"].to(torch.uint8))


#: the epoch figures the progress bar shows
SHOWN = ("train/loss", "val/acc", "val/agreement")


def epoch_description(current_epoch: int, max_epochs: int | None) -> str:
    """ "Epoch 58/58": 1-based, as the logs say "best epoch 58 of 58" (Lightning's bars count from 0)."""
    return f"Epoch {current_epoch + 1}" + (f"/{max_epochs}" if max_epochs and max_epochs > 0 else "")


def progress_bar(label: str = "training") -> Callback:
    """Lightning's own bar (Rich when installed) on a terminal, showing the module's exact epoch figures and no
    ``v_num``, epochs counted from 1, and a last epoch cut short by a steps budget drawn as full; when stderr is a
    file or a pipe, :class:`ProgressLines` (its lines named ``label``) instead."""
    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
    from lightning.pytorch.callbacks.progress.rich_progress import _RICH_AVAILABLE

    from ..progress import on_terminal

    if not on_terminal():
        return ProgressLines(label)
    base: type = RichProgressBar if _RICH_AVAILABLE else TQDMProgressBar

    class EpochFiguresBar(base):  # type: ignore[misc,valid-type]
        _epoch_batches: float = math.inf

        @property
        def total_train_batches(self) -> int | float:
            return min(super().total_train_batches, self._epoch_batches)

        def get_metrics(self, trainer, module) -> dict[str, Any]:
            return shown_figures(module)

        def _get_train_description(self, current_epoch: int) -> str:  # (Rich)
            return epoch_description(current_epoch, self.trainer.max_epochs)

        def on_train_epoch_start(self, trainer, module) -> None:
            self._epoch_batches = batches_left(trainer, module)
            super().on_train_epoch_start(trainer, module)
            if not _RICH_AVAILABLE:  # (tqdm set its own, 0-based text above)
                self.train_progress_bar.set_description(epoch_description(trainer.current_epoch, trainer.max_epochs))

    return EpochFiguresBar()


def shown_figures(module) -> dict[str, str]:
    """The module's exact epoch figures a progress display shows (``loss``, ``val/acc``...)."""
    figures = module.epoch_metrics
    return {
        name.split("/")[-1] if name == "train/loss" else name: f"{figures[name]:.4g}"
        for name in SHOWN
        if name in figures
    }


def batches_left(trainer, module) -> float:
    """Batches this epoch will run: all of them, or fewer when a steps budget ends inside it."""
    steps = module.config.steps
    return math.inf if steps is None else max(0, steps - trainer.global_step)


class ProgressLines(ProgressBar):
    """Progress for a log file: a line at every tenth of the planned steps and at least every 30 s
    (``[12:00:01] training: 40% (120/300), 12 s, about 18 s left · epoch 30/75 · loss 0.41``)."""

    def __init__(self, label: str = "training") -> None:
        super().__init__()
        self.label = label
        self._enabled = True
        self._pacer: Any = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def on_train_start(self, trainer, module) -> None:
        from ..progress import Pacer

        self._pacer = Pacer(module.total_steps)
        self._pacer.due(trainer.global_step)  # a resumed fit starts where it stopped

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if not (self._enabled and trainer.is_global_zero and self._pacer is not None):
            return
        if self._pacer.due(trainer.global_step):
            figures = " · ".join(f"{k} {v}" for k, v in shown_figures(module).items())
            epoch = epoch_description(trainer.current_epoch, trainer.max_epochs).lower()
            line = (
                self._pacer.line(trainer.global_step, self.label) + f" · {epoch}" + (f" · {figures}" if figures else "")
            )
            print(line, file=sys.stderr, flush=True)
