"""The training stages of a study: the teacher (trained, loaded from weights, or a model file) and each
student, through :func:`xdistill.distill`; each finished stage is recorded in the ledger and skipped on a rerun.
Stages take the run's ledger and inputs, never the ``Study``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from ..config import TrainConfig
from ..recipe import student_index
from .inputs import StudyInputs
from .ledger import RunLedger

if TYPE_CHECKING:
    from ..engine import DistillResult
    from ..recipe import StudentSpec


def read_back(model: nn.Module, path: Path) -> str | None:
    """Load a finished stage's weights into ``model``: None when they loaded, else why not (the file is missing, or
    damaged: its content hash does not match; then the stage runs again from its last checkpoint)."""
    from ..checkpoint import CheckpointError, load_weights

    if not path.exists():
        return f"{path.name} is missing"
    try:
        load_weights(model, path)
    except CheckpointError as error:
        return f"{path.name} was damaged: {error.why}"
    return None


def kept(ledger: RunLedger, who: str, model: nn.Module, path: Path) -> bool:
    """A finished stage's weights read back (logged as kept); False, with the reason logged, when it must run
    again."""
    why = read_back(model, path)
    if why is None:
        ledger.kept(who)
        return True
    ledger.recomputed(who, f"{why}; from its last checkpoint")
    return False


def log_resume(ledger: RunLedger, who: str, work: Path) -> None:
    """Say where a fit in ``work`` starts: from which checkpointed epoch, or (nothing said) from scratch."""
    from ..checkpoint import resume_point

    point = resume_point(work / "checkpoints")
    if point is not None:
        epochs, written = point
        ledger.log(
            f"{who}: resumed from epoch {epochs} (checkpoint of {time.strftime('%H:%M:%S', time.localtime(written))})"
        )


def teacher(ledger: RunLedger, inputs: StudyInputs) -> nn.Module:
    """The teacher in eval mode: read back when its stage is done, else trained (or loaded) and saved."""
    from ..checkpoint import save_weights

    spec = inputs.recipe.teacher
    model = inputs.build_teacher()
    path = ledger.paths.teacher_weights
    if ledger.done("teacher") and kept(ledger, "teacher", model, path):
        return model.eval()
    started = time.perf_counter()
    ledger.in_progress = "teacher"
    if spec.file:
        ledger.log(f"teacher: model file {spec.file}")
        ledger.finish("teacher", started)
        return model
    info: dict[str, Any] = {}
    if spec.weights:
        inputs.load_teacher_weights(model)
        if ledger.rank == 0:
            save_weights(model, path)
        ledger.log(f"teacher: loaded {spec.weights}")
    else:
        config = inputs.train_config("teacher", spec.train)
        ledger.log(
            f"teacher: training {spec.model} ({budget(config)}, {selection(config)}; "
            "the test split is only used by evaluation)"
        )
        from ..engine import distill  # (Lightning's import takes seconds: after the line that says what comes)

        log_resume(ledger, "teacher", ledger.paths.teacher_dir)
        result = distill(
            None,
            model,
            inputs.teacher_splits[0],
            spec.methods,
            config=config,
            work_dir=ledger.paths.teacher_dir,
            **inputs.runtime(ledger.progress),
        )
        if ledger.rank == 0:
            save_weights(model, path)
        accuracies = log_fit(ledger, "teacher", result)
        chance = 1.0 / inputs.teacher_splits[0].num_classes
        if accuracies["train_acc"] < chance + 0.1:
            ledger.log(
                f"WARNING: the teacher is near chance on its own training data (accuracy "
                f"{accuracies['train_acc']:.3f}, chance {chance:.3f}): it has collapsed, and nothing "
                "distilled from it means anything. Check the data and the teacher's training settings."
            )
        info = fit_info(result, accuracies)
    ledger.finish("teacher", started, **info)
    return model.eval()


def student(ledger: RunLedger, inputs: StudyInputs, spec: StudentSpec, teacher: nn.Module) -> nn.Module:
    """The student distilled from ``teacher`` (as the students see it): read back when its stage is done, else
    trained (resuming from its last checkpoint after an interruption)."""
    model = inputs.build(f"students[{student_index(inputs.recipe, spec)}]", spec.model, spec.options, student=True)
    work = inputs.student_dir(spec)
    stage = f"student:{spec.name}"
    if ledger.done(stage) and kept(ledger, f"student {spec.name}", model, work / "student.safetensors"):
        return model.eval()
    ledger.in_progress = f"student {spec.name}"
    config = inputs.train_config("student", inputs.recipe.training, spec.train)
    ledger.log(f"student {spec.name}: {spec.model} with {spec.methods}, {budget(config)}")
    started = time.perf_counter()
    from ..engine import distill  # (after the line above: Lightning's first import takes seconds)

    log_resume(ledger, f"student {spec.name}", work)
    result = distill(
        teacher,
        model,
        inputs.student_splits[0],
        inputs.objective(spec),
        config=config,
        work_dir=work,
        resume=True,
        cache_dir=inputs.attribution_dir,
        **inputs.runtime(ledger.progress),
    )
    accuracies = log_fit(ledger, f"student {spec.name}", result)
    ledger.finish(stage, started, **fit_info(result, accuracies))
    return result.student


def selection(config: TrainConfig) -> str:
    if config.monitor == "train_loss":
        return "best epoch by training loss on the whole training split"
    return f"best epoch by {config.monitor} on {config.val_fraction:.0%} of the training data held out"


def budget(config: TrainConfig) -> str:
    return f"{config.steps} steps" if config.steps else f"{config.epoch_budget(1)} epochs"


def log_fit(ledger: RunLedger, who: str, result: DistillResult) -> dict[str, float]:
    """The chosen epoch and eval-mode train/validation accuracy, in the study's log; returns the accuracies."""
    accuracies = result.accuracy()
    m = {**result.metrics, **accuracies}
    ledger.log(
        f"{who}: best epoch {m.get('best_epoch', float('nan')):.0f} of {m.get('epochs_run', 0):.0f}; "
        f"eval-mode accuracy train {m.get('train_acc', float('nan')):.3f}"
        + (f", validation {m['val_acc']:.3f}" if "val_acc" in m else " (no validation split)")
    )
    return accuracies


def fit_info(result: DistillResult, accuracies: dict[str, float] | None = None) -> dict[str, Any]:
    """What the stage record keeps of a fit (the restored epoch's figures) and its eval-mode accuracies."""
    keys = ("best_epoch", "epochs_run")
    return {
        "epoch_seconds": result.epoch_seconds,
        **(accuracies or {}),
        **{k: result.metrics[k] for k in keys if k in result.metrics},
        **({"val_loss": result.metrics["val/loss"]} if "val/loss" in result.metrics else {}),
        "config": result.config.model_dump() if result.config else None,
    }
