"""Lightning wiring: quiet logs, safetensors checkpoints, the strategy, loggers and where a run resumes."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO

from ..checkpoint import load_tree, newest_checkpoint, save_tree
from ..config import RunConfig

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


def quiet_warnings() -> None:
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


def strategy(run: RunConfig) -> Any:
    """Lightning's strategy; DDP with the run's ``process_timeout`` (a dead process ends the run, not hangs it)."""
    several = run.devices not in (1, "1") or run.num_nodes > 1
    if run.strategy == "ddp" or (run.strategy == "auto" and several and run.devices != "auto"):
        from datetime import timedelta

        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(timeout=timedelta(seconds=run.process_timeout))
    return run.strategy


def loggers(names: Sequence[str], work_dir: Path) -> list | bool:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    known = {
        "csv": lambda: CSVLogger(work_dir, name="logs"),
        "tensorboard": lambda: TensorBoardLogger(work_dir, name="tensorboard"),
    }
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown logger(s) {unknown}; choose from {sorted(known)}")
    return [known[n]() for n in names] or False


def resume_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint in ``directory`` (last, then an unrenamed next, then previous) whose
    content matches its hash; a damaged one is named in a warning and the next older one is used."""
    found = newest_checkpoint(directory)
    return found[0] if found else None
