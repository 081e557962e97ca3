"""Training settings: one validated object for the Python API and the recipes alike.

``TrainConfig`` is what ``distill(..., config=...)`` takes and what a recipe's ``train:`` /
``training:`` sections validate into, so the two cannot drift. Fields left unset fall back to
the measured defaults of the data family (``family_defaults``), then to the field defaults.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class TrainConfig(BaseModel):
    """How one model trains: budget, optimiser, schedule, validation split, model selection."""

    model_config = ConfigDict(extra="forbid")

    protocol: str | None = Field(
        default=None,
        description="a paper's training protocol (tsd_paper, kdig_paper, "
        "subdistill_paper, rekd_paper): its settings fill every field not given beside it",
    )
    epochs: int | None = Field(default=None, ge=1, description="epoch budget (used when steps is not given)")
    steps: int | None = Field(
        default=None, ge=1, description="optimiser-step budget: exactly this many steps (the last epoch may be partial)"
    )
    batch_size: int = Field(default=32, ge=1)
    drop_last: bool = Field(
        default=False, description="drop each epoch's last batch when it is smaller than batch_size"
    )
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    momentum: float = Field(default=0.9, ge=0, lt=1, description="SGD only")
    schedule: Literal["cosine", "constant", "step", "plateau", "multistep"] = "cosine"
    warmup: float = Field(default=0.0, ge=0, lt=1, description="share of the steps with a linear learning-rate warm-up")
    step_size: int = Field(default=25, ge=1, description="epochs between decays (schedule 'step')")
    gamma: float = Field(default=0.5, gt=0, le=1, description="decay factor (schedules 'step', 'multistep', 'plateau')")
    milestones: list[int] = Field(default=[], description="schedule 'multistep': where the lr is multiplied by gamma")
    schedule_interval: Literal["epoch", "step"] = Field(
        default="epoch",
        description="what milestones/step_size count for 'step' and 'multistep': epochs, or optimiser "
        "steps (TSD's official code steps its MultiStepLR after every batch)",
    )
    augment: list[str | dict[str, Any]] = Field(
        default=[],
        description="training-data augmentations applied per batch, e.g. [{name: random_crop, padding: 4}, "
        "{name: hflip}] (images) or [{name: jitter, sigma: 0.03}] (series)",
    )
    val_fraction: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="share of the training data held out for model selection; 0 = none",
    )
    val_split: Literal["stratified", "random"] = Field(
        default="stratified",
        description="how the validation share is drawn: 'stratified' (that share of every class, seeded) or "
        "'random' (a seeded permutation, torch's random_split: SubDistill's official split)",
    )
    monitor: Literal["val_loss", "val_acc", "train_loss"] = Field(
        default="val_loss",
        description="what picks the best epoch; train_loss (the protocol of Ismail Fawaz et al. "
        "2019 for small UCR sets) needs no validation split",
    )
    patience: int | None = Field(default=None, ge=1, description="stop after this many epochs without improvement")
    restore_best: bool = Field(default=True, description="end with the weights of the best validation epoch")
    seed: int = 0
    checkpoint_every: int = Field(default=1, ge=1, description="epochs between resumable checkpoints")
    checkpoint_seconds: float = Field(
        default=10.0,
        ge=0,
        description="and at least this many seconds between them "
        "(a kill loses at most this much work, or one epoch if longer); 0 = every epoch",
    )

    @model_validator(mode="before")
    @classmethod
    def _protocol_settings(cls, data: Any) -> Any:
        """A named protocol's settings under the fields given explicitly."""
        if isinstance(data, dict) and data.get("protocol"):
            from .protocols import protocol_settings

            try:
                settings = protocol_settings(data["protocol"])
            except LookupError as error:
                raise ValueError(str(error)) from None
            if data.get("steps") is not None:  # a step budget given beside the protocol replaces its epochs
                settings.pop("epochs", None)
            return {**settings, **data}
        return data

    @model_validator(mode="after")
    def _augmentations_exist(self) -> TrainConfig:
        from .augment import build_augmentations

        build_augmentations(self.augment)
        if sorted(self.milestones) != self.milestones or any(m < 1 for m in self.milestones):
            raise ValueError(f"milestones must be positive and increasing, got {self.milestones}")
        if self.schedule == "multistep" and not self.milestones:
            raise ValueError("schedule 'multistep' needs milestones, e.g. [25, 30, 35]")
        return self

    @model_validator(mode="after")
    def _one_budget(self) -> TrainConfig:
        if self.steps is not None and self.epochs is not None:
            raise ValueError(f"give either steps ({self.steps}) or epochs ({self.epochs}), not both")
        return self

    @model_validator(mode="after")
    def _selection_needs_validation(self) -> TrainConfig:
        if self.monitor != "train_loss" and self.patience is not None and self.val_fraction == 0:
            raise ValueError("patience needs a validation split: set val_fraction > 0 (e.g. 0.2) or monitor train_loss")
        return self

    def batches_per_epoch(self, train_size: int) -> int:
        """Optimiser steps in one epoch over ``train_size`` samples (the global batch; ``drop_last`` counted)."""
        if self.drop_last:
            return max(1, train_size // self.batch_size)
        return -(-train_size // self.batch_size)

    def epoch_budget(self, batches_per_epoch: int) -> int:
        """Epochs to run: from ``steps`` when given, else ``epochs`` (default 100)."""
        if self.steps is not None:
            return max(1, -(-self.steps // max(1, batches_per_epoch)))
        return self.epochs or 100

    @classmethod
    def build(cls, base: TrainConfig | dict[str, Any] | None = None, **overrides: Any) -> TrainConfig:
        """A validated config from a config, a dict or nothing, with keyword overrides on top."""
        data = base.model_dump(exclude_unset=True) if isinstance(base, TrainConfig) else dict(base or {})
        return cls.model_validate(with_fields(data, {k: v for k, v in overrides.items() if v is not None}))


def with_fields(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``given``, where a budget given (``steps`` or ``epochs``) replaces the other one of ``base``."""
    merged = dict(base)
    for budget, other in (("steps", "epochs"), ("epochs", "steps")):
        if given.get(budget) is not None and other not in given:
            merged.pop(other, None)
    merged.update(given)
    return merged


#: Lightning's precision names (``L.Trainer(precision=...)``)
PRECISIONS = (
    "64",
    "64-true",
    "32",
    "32-true",
    "16",
    "16-mixed",
    "16-true",
    "bf16",
    "bf16-mixed",
    "bf16-true",
    "transformer-engine",
    "transformer-engine-float16",
)


def known_precision(value: Any) -> str | None:
    """``value`` as one of Lightning's precision names, or a ValueError listing them."""
    if value is not None and str(value) not in PRECISIONS:
        raise ValueError(f"unknown precision {value!r}; choose from {', '.join(PRECISIONS)}")
    return None if value is None else str(value)


class RunConfig(BaseModel):
    """Where and how a training run executes (one home for each Lightning trainer setting)."""

    model_config = ConfigDict(extra="forbid")

    work_dir: str = Field(default="runs/distill", description="checkpoints, logs and the final weights go here")
    accelerator: str = Field(default="auto", description="auto, cpu, gpu, mps (Lightning's names)")
    devices: int | str = Field(
        default=1, description="processes per node (or 'auto', or a list spec as Lightning takes)"
    )
    num_nodes: int = Field(default=1, ge=1)
    strategy: str = Field(default="auto", description="auto, ddp, ddp_spawn, ... (several devices: ddp)")
    precision: str | None = Field(default=None, description="Lightning's precision, e.g. 32-true, bf16-mixed")
    loggers: tuple[str, ...] = Field(default=("csv",), description="csv and/or tensorboard")
    progress: bool = True
    num_workers: int = Field(default=0, ge=0, description="DataLoader worker processes")
    checkpoint: bool = Field(default=True, description="write resumable checkpoints")
    resume: bool = Field(default=True, description="continue from the last checkpoint in work_dir")
    teacher_logit_cache: bool = Field(
        default=True,
        description="compute the teacher's logits once per sample when the input does not change between epochs",
    )
    cache_dir: str | None = Field(default=None, description="a folder shared by several runs for teacher attributions")
    sync_batchnorm: bool = Field(
        default=True,
        description="under several processes, BatchNorm layers normalise with the global batch's statistics "
        "(as one process would); false: each process uses its own share's",
    )
    process_timeout: float = Field(
        default=300.0,
        gt=0,
        description="seconds a process waits for the others at a collective before it gives up (a dead process "
        "then ends the run instead of hanging it)",
    )

    @field_validator("precision", mode="before")
    @classmethod
    def _known_precision(cls, value: Any) -> Any:
        return known_precision(value)

    @field_validator("work_dir", "cache_dir", mode="before")
    @classmethod
    def _path(cls, value: Any) -> Any:
        return None if value is None else str(value)

    @classmethod
    def build(cls, base: RunConfig | dict[str, Any] | None = None, **overrides: Any) -> RunConfig:
        data = base.model_dump(exclude_unset=True) if isinstance(base, RunConfig) else dict(base or {})
        data.update(overrides)
        return cls.model_validate(data)


# Measured defaults (benchmarks/baselines.py, RESULTS.md "Baselines"): small UCR/UEA training
# sets need thousands of optimiser steps, not tens of epochs, and every training sample: holding
# 20% out for validation cost ArrowHead's FCN 6 points (0.785 vs 0.848, 3 seeds), so series train
# on the whole training split and keep the epoch of lowest training loss (the protocol of Ismail
# Fawaz et al. 2019). Images converge in epochs and select on a 10% validation split.
FAMILY_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("series", "teacher"): dict(
        steps=2000, batch_size=16, lr=1e-3, warmup=0.05, val_fraction=0.0, monitor="train_loss"
    ),
    ("series", "student"): dict(
        steps=3000, batch_size=16, lr=1e-3, warmup=0.05, val_fraction=0.0, monitor="train_loss"
    ),
    ("image", "teacher"): dict(
        epochs=15, batch_size=128, lr=2e-3, weight_decay=5e-4, optimizer="adamw", warmup=0.02, val_fraction=0.1
    ),
    ("image", "student"): dict(
        epochs=15, batch_size=128, lr=2e-3, weight_decay=5e-4, optimizer="adamw", warmup=0.02, val_fraction=0.1
    ),
    ("tokens", "teacher"): dict(epochs=30, batch_size=32, lr=2e-3, warmup=0.05, val_fraction=0.2),
    ("tokens", "student"): dict(epochs=30, batch_size=32, lr=2e-3, warmup=0.05, val_fraction=0.2),
}


def data_family(x_shape: tuple[int, ...], integer: bool = False) -> str:
    """'tokens' for integer ids, 'series' for (N, C, T), 'image' for (N, C, H, W)."""
    if integer:
        return "tokens"
    return "image" if len(x_shape) == 4 else "series"


def family_defaults(family: str, role: Literal["teacher", "student"]) -> dict[str, Any]:
    return dict(FAMILY_DEFAULTS.get((family, role), {}))


def resolve(spec: TrainConfig | None, family: str, role: Literal["teacher", "student"]) -> TrainConfig:
    """Family defaults, overridden by the fields the user actually set in ``spec``."""
    given = spec.model_dump(exclude_unset=True) if spec is not None else {}
    return TrainConfig.model_validate(with_fields(family_defaults(family, role), given))
