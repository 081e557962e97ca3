"""What a fit returns: the trained student, where it was written, and the figures of the restored model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..config import RunConfig, TrainConfig


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
        (training does not pay for a figure nobody reads). ``metrics`` is left as the fit returned it."""
        from ..metrics import accuracy, predict

        found = {"train_acc": accuracy(predict(self.student, self.train_data.x), self.train_data.y)}
        if self.val_data is not None and len(self.val_data):
            found["val_acc"] = accuracy(predict(self.student, self.val_data.x), self.val_data.y)
        return found
