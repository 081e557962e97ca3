"""The engine: trains a student against a frozen teacher to minimise an objective (Lightning underneath).

``loaders`` (the order of each epoch, each process's share), ``module`` (the Lightning module: transform ->
forward -> objective), ``trainer`` (Lightning wiring, checkpoints, where a run resumes), ``callbacks``
(timing, best-epoch selection, kill-safe checkpoints), ``fit`` (``distill``), ``result``.
"""

from .fit import check_pair, distill, prepare_context, selection_metrics, split_options, train_teacher
from .loaders import (
    EpochBatches,
    EpochOrder,
    indexed_loader,
    planned_steps,
    share_bounds,
    teacher_logits_for,
    training_part,
)
from .module import DistillationModule
from .result import DistillResult
from .trainer import SafetensorsCheckpointIO, lightning_quiet, resume_checkpoint

__all__ = [
    "DistillResult",
    "DistillationModule",
    "EpochBatches",
    "EpochOrder",
    "SafetensorsCheckpointIO",
    "check_pair",
    "distill",
    "indexed_loader",
    "lightning_quiet",
    "planned_steps",
    "prepare_context",
    "resume_checkpoint",
    "selection_metrics",
    "share_bounds",
    "split_options",
    "teacher_logits_for",
    "train_teacher",
    "training_part",
]
