"""The training stages of a study: the teacher (trained, loaded from weights, or a model file) and each
student, through :func:`xdistill.distill`; each finished stage is recorded and skipped on a rerun."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from .config import TrainConfig
from .recipe import student_index

if TYPE_CHECKING:
    from .engine import DistillResult
    from .recipe import StudentSpec
    from .study import Study


def read_back(study: Study, model: nn.Module, path: Path) -> bool:
    """Load a finished stage's weights into ``model``; False when the file is missing or damaged (its content hash
    does not match: then the stage runs again, resuming from its last checkpoint, and writes it anew)."""
    from .checkpoint import CheckpointError, load_weights

    if not path.exists():
        return False
    try:
        load_weights(model, path)
        return True
    except CheckpointError as error:
        logging.getLogger("xdistill").warning("%s; computing it again from its checkpoints", str(error).split(";")[0])
        return False


def teacher(study: Study) -> nn.Module:
    """The teacher in eval mode: read back when its stage is done, else trained (or loaded) and saved."""
    from .checkpoint import save_weights
    from .engine import distill

    spec = study.recipe.teacher
    model = study.build_teacher()
    path = study.paths.teacher_weights
    if study.done("teacher") and read_back(study, model, path):
        return model.eval()
    started = time.perf_counter()
    study.in_progress = "teacher"
    if spec.file:
        study.log(f"teacher: model file {spec.file}")
        study.finish("teacher", started)
        return model
    info: dict[str, Any] = {}
    if spec.weights:
        study._load_teacher_weights(model)
        if study.rank == 0:
            save_weights(model, path)
        study.log(f"teacher: loaded {spec.weights}")
    else:
        config = study.train_config("teacher", spec.train)
        study.log(
            f"teacher: training {spec.model} ({budget(config)}, {selection(config)}; "
            "the test split is only used by evaluation)"
        )
        result = distill(
            None,
            model,
            study.splits[0],
            spec.methods,
            config=config,
            work_dir=study.paths.teacher_dir,
            **runtime(study),
        )
        if study.rank == 0:
            save_weights(model, path)
        log_fit(study, "teacher", result)
        chance = 1.0 / study.splits[0].num_classes
        if result.metrics["train_acc"] < chance + 0.1:
            study.log(
                f"WARNING: the teacher is near chance on its own training data (accuracy "
                f"{result.metrics['train_acc']:.3f}, chance {chance:.3f}): it has collapsed, and nothing "
                "distilled from it means anything. Check the data and the teacher's training settings."
            )
        info = fit_info(result)
    study.finish("teacher", started, **info)
    return model.eval()


def student(study: Study, spec: StudentSpec) -> nn.Module:
    """The student distilled from the study's teacher: read back when its stage is done, else trained
    (resuming from its last checkpoint after an interruption)."""
    from .engine import distill

    model = study.build(f"students[{student_index(study.recipe, spec)}]", spec.model, spec.options, student=True)
    work = study.student_dir(spec)
    stage = f"student:{spec.name}"
    if study.done(stage) and read_back(study, model, work / "student.safetensors"):
        return model.eval()
    teacher_model = study.student_teacher()
    study.in_progress = f"student {spec.name}"
    config = study.train_config("student", study.recipe.training, spec.train)
    study.log(f"student {spec.name}: {spec.model} with {spec.methods}, {budget(config)}")
    started = time.perf_counter()
    result = distill(
        teacher_model,
        model,
        study.student_splits[0],
        study.objective(spec),
        config=config,
        work_dir=work,
        resume=True,
        cache_dir=study.attribution_dir,
        **runtime(study),
    )
    log_fit(study, f"student {spec.name}", result)
    study.finish(stage, started, **fit_info(result))
    return result.student


def selection(config: TrainConfig) -> str:
    if config.monitor == "train_loss":
        return "best epoch by training loss on the whole training split"
    return f"best epoch by {config.monitor} on {config.val_fraction:.0%} of the training data held out"


def budget(config: TrainConfig) -> str:
    return f"{config.steps} steps" if config.steps else f"{config.epoch_budget(1)} epochs"


def runtime(study: Study) -> dict[str, Any]:
    """Where training runs: the recipe's hardware section (RunConfig fields)."""
    hardware = study.recipe.hardware
    accelerator = hardware.accelerator or {"auto": "auto", "cpu": "cpu", "gpu": "gpu"}[study.recipe.device]
    return dict(
        accelerator=accelerator,
        precision=study.recipe.precision,
        progress=study.progress,
        devices=hardware.devices,
        num_nodes=hardware.num_nodes,
        strategy=hardware.strategy,
        sync_batchnorm=hardware.sync_batchnorm,
        process_timeout=hardware.process_timeout,
    )


def log_fit(study: Study, who: str, result: DistillResult) -> None:
    """The chosen epoch and eval-mode train/validation accuracy, in the study's log."""
    result.accuracy()
    m = result.metrics
    study.log(
        f"{who}: best epoch {m.get('best_epoch', float('nan')):.0f} of {m.get('epochs_run', 0):.0f}; "
        f"eval-mode accuracy train {m.get('train_acc', float('nan')):.3f}"
        + (f", validation {m['val_acc']:.3f}" if "val_acc" in m else " (no validation split)")
    )


def fit_info(result: DistillResult) -> dict[str, Any]:
    """What the stage record keeps of a fit."""
    keys = ("train_acc", "val_acc", "best_epoch", "epochs_run")
    return {
        "epoch_seconds": result.epoch_seconds,
        **{k: result.metrics[k] for k in keys if k in result.metrics},
        **({"val_loss": result.metrics["val/loss"]} if "val/loss" in result.metrics else {}),
        "config": result.config.model_dump() if result.config else None,
    }
