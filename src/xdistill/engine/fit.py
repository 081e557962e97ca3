"""Fit a student: the options validated, the data split, the Lightning trainer wired and run, the result."""

from __future__ import annotations

import signal
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint
from pydantic import ValidationError
from torch import nn

from ..checkpoint import save_weights
from ..config import RunConfig, TrainConfig
from ..data import ArrayDataset
from ..data.mapped import as_training_data
from ..distributed import global_batch_statistics
from ..methods import Objective, PrepareContext, Term
from ..protocols import with_family_augmentation
from .callbacks import BestEpoch, EpochCheckpoint, EpochTimer, progress_bar
from .loaders import family_of, in_float64, indexed_loader, items, planned_steps, training_part
from .module import DistillationModule
from .result import DistillResult
from .trainer import SafetensorsCheckpointIO, lightning_quiet, loggers, quiet_warnings, resume_checkpoint, strategy


def _validated(kind: type[TrainConfig] | type[RunConfig], base: Any, overrides: dict[str, Any]) -> Any:
    """``kind`` (TrainConfig or RunConfig) from ``base`` with keyword overrides; a bad field is one ValueError line."""
    try:
        return kind.build(base, **overrides)
    except ValidationError as error:
        detail = error.errors()[0]
        where = ".".join(str(p) for p in detail["loc"]) or "config"
        raise ValueError(f"{where}: {detail['msg'].removeprefix('Value error, ')}") from None


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword options -> (TrainConfig fields, RunConfig fields); an unknown one is a TypeError naming both lists."""
    train = {k: v for k, v in options.items() if k in TrainConfig.model_fields}
    run = {k: v for k, v in options.items() if k in RunConfig.model_fields}
    unknown = sorted(set(options) - set(train) - set(run))
    if unknown:
        raise TypeError(
            f"unknown option(s) {unknown}; TrainConfig fields: {', '.join(TrainConfig.model_fields)}; "
            f"RunConfig fields: {', '.join(RunConfig.model_fields)}"
        )
    return train, run


def prepare_context(
    teacher: nn.Module | None,
    student: nn.Module,
    train: Any,
    terms: Objective | Sequence[Term],
    config: TrainConfig,
    *,
    work_dir: Path | None,
    device: torch.device,
    progress: bool = True,
    cache_dir: Path | None = None,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] | None = None,
) -> PrepareContext:
    """What the terms' ``prepare`` sees for training on ``train`` (the training part) with ``config``: the one
    contract for the engine and for precomputing a term's artefacts ahead of training (``xdistill explain``)."""
    preparing = any(type(m).prepare is not Term.prepare for m in terms)
    train_x = train.x if preparing or isinstance(train, ArrayDataset) else torch.empty(0)
    return PrepareContext(
        teacher,
        student,
        train_x,
        train.y,
        train.fingerprint,
        work_dir,
        device,
        progress,
        rank=rank,
        world_size=world_size,
        barrier=barrier,
        data_info=dict(train.info),
        cache_dir=cache_dir,
        seed=config.seed,
        batch_size=config.batch_size,
        total_steps=planned_steps(len(train), config),
    )


def distill(
    teacher: nn.Module | None,
    student: nn.Module,
    train: Any,
    methods: Objective | Sequence[Term | str | dict],
    *,
    val: Any = None,
    config: TrainConfig | dict | None = None,
    run: RunConfig | dict | None = None,
    **options: Any,
) -> DistillResult:
    """Train ``student`` to minimise ``Σ weight · term`` against a frozen ``teacher``; returns the trained student.

    ``methods``: an :class:`~xdistill.methods.Objective`, or terms and presets, e.g.
    ``["ce", {"name": "kd", "weight": 0.5, "temperature": 4}]`` or ``["hinton"]``. ``train``: an ``ArrayDataset``
    or any map-style ``Dataset`` yielding ``(x, y)``. How the model trains comes from ``config``
    (:class:`TrainConfig`: budget, optimiser, schedule, augmentation, validation split, selection); where and on
    what it runs from ``run`` (:class:`RunConfig`: work_dir, accelerator, devices, strategy, precision, loggers,
    checkpoints); keyword ``options`` override fields of either (``epochs=3``, ``devices=2``). Without ``val`` a
    stratified validation split of ``config.val_fraction`` is carved from ``train`` (seeded); the test split is
    never seen here. A checkpoint is written atomically every ``checkpoint_every`` epochs to
    ``work_dir/checkpoints``; with ``resume`` a run killed at any point continues from the last checkpoint and
    ends with the weights of an uninterrupted run. The final weights go to ``work_dir/student.safetensors``.
    """
    train_options, run_options = split_options(options)
    train_config: TrainConfig = _validated(TrainConfig, config, train_options)
    run_config: RunConfig = _validated(RunConfig, run, run_options)
    work_dir = Path(run_config.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    objective = Objective.build(methods)
    train, val = as_training_data(train), as_training_data(val)
    with warnings.catch_warnings(), lightning_quiet():
        quiet_warnings()
        L.seed_everything(train_config.seed, workers=True, verbose=False)
        train, val = training_part(train, train_config, val)
        if train_config.drop_last and len(train) < train_config.batch_size:
            raise ValueError(
                f"drop_last: the training part has {len(train)} samples, fewer than one batch of "
                f"{train_config.batch_size}, so a loader that drops the last short batch yields none; lower "
                f"batch_size to at most {len(train)} or set drop_last: false"
            )
        train_config = with_family_augmentation(train_config, family_of(train))
        if run_config.precision in ("64-true", "64"):  # the engine's own passes (probe, caches, prepare) too:
            train, val = in_float64(train), in_float64(val)  # data and both models in float64 (Lightning would
            student.double()  # convert the student in place anyway; the teacher sees the same float64 batches)
            if teacher is not None:
                teacher.double()
        check_pair(teacher, student, train)
        return _fit(teacher, student, train, val, objective, train_config, run_config, work_dir)


def _callbacks(config: TrainConfig, run: RunConfig, has_val: bool, checkpoints: Path) -> tuple[list, BestEpoch | None]:
    """(Lightning callbacks, the best-epoch selector or None): timing, selection, kill-safe checkpoints."""
    callbacks: list[Callback] = [EpochTimer()]
    best = None
    if has_val or config.monitor == "train_loss":
        best = BestEpoch(config.monitor.replace("_", "/"), config.patience, config.restore_best)
        callbacks.append(best)
    if run.checkpoint:
        callbacks.append(EpochCheckpoint(checkpoints, config.checkpoint_every, config.checkpoint_seconds))
    if run.progress:
        callbacks.append(progress_bar(f"training {Path(run.work_dir).name}"))
    return callbacks, best


def _trainer(config: TrainConfig, run: RunConfig, train_size: int, callbacks: list, work_dir: Path) -> L.Trainer:
    return L.Trainer(
        max_epochs=config.epoch_budget(config.batches_per_epoch(train_size)),
        max_steps=-1,  # a steps budget: DistillationModule.on_train_batch_end stops at it
        accelerator=run.accelerator,
        devices=run.devices,
        strategy=strategy(run),
        num_nodes=run.num_nodes,
        precision=run.precision,  # type: ignore[arg-type]  # a string checked by RunConfig
        logger=loggers(run.loggers, work_dir),
        callbacks=callbacks,
        enable_progress_bar=run.progress,
        enable_model_summary=False,
        plugins=[SafetensorsCheckpointIO()],
        default_root_dir=work_dir,
        deterministic=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks),  # (ours; Lightning adds no other)
        use_distributed_sampler=False,
        limit_val_batches=0,
    )


def _fit(
    teacher, student, train, val, objective: Objective, config: TrainConfig, run: RunConfig, work_dir: Path
) -> DistillResult:
    use_cache = (
        run.teacher_logit_cache and teacher is not None and objective.teacher_logits_cacheable(bool(config.augment))
    )
    teacher_grad_flags = [(p, p.requires_grad) for p in teacher.parameters()] if teacher is not None else []
    has_val = val is not None and len(val) > 0
    module = DistillationModule(
        student,
        teacher,
        objective,
        config=config,
        train=train,
        val=val if has_val else None,
        work_dir=work_dir,
        progress=run.progress,
        cache_teacher_logits=use_cache,
        cache_dir=Path(run.cache_dir) if run.cache_dir is not None else None,
        prepare_context=partial(
            prepare_context,
            teacher,
            student,
            train,
            objective,
            config,
            work_dir=work_dir,
            cache_dir=Path(run.cache_dir) if run.cache_dir is not None else None,
        ),
    )
    checkpoints = work_dir / "checkpoints"
    callbacks, best = _callbacks(config, run, has_val, checkpoints)
    trainer = _trainer(config, run, len(train), callbacks, work_dir)
    loader = indexed_loader(
        train,
        config.batch_size,
        True,
        config.seed,
        run.num_workers,
        trainer.global_rank,
        trainer.world_size,
        drop_last=config.drop_last,
    )
    ckpt_path = resume_checkpoint(checkpoints) if (run.resume and run.checkpoint) else None
    try:
        with global_batch_statistics(student, run.sync_batchnorm):
            trainer.fit(module, loader, ckpt_path=str(ckpt_path) if ckpt_path else None)
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
    metrics = dict(module.epoch_metrics)  # the last epoch's; a restored best epoch reports its own
    if best is not None and best.restore and best.weights and best.metrics:
        metrics = {**best.metrics, **{f"last_epoch/{k}": v for k, v in module.epoch_metrics.items()}}
    metrics.update(selection_metrics(best, trainer.current_epoch))
    timer = callbacks[0]
    return DistillResult(
        student,
        work_dir,
        timer.seconds,
        metrics,
        used_logit_cache=use_cache,
        config=config,
        run=run,
        extra_parameters=sum(p.numel() for p in objective.extra_parameters()),
        train_data=train,
        val_data=val,
    )


def selection_metrics(best: BestEpoch | None, epochs_run: int) -> dict[str, float]:
    """The epochs run and the chosen one (accuracies: ``DistillResult.accuracy``)."""
    out = {"epochs_run": float(epochs_run)}
    if best is not None and best.best_epoch >= 0:
        out["best_epoch"] = float(best.best_epoch + 1)
    return out


def check_pair(teacher: nn.Module | None, student: nn.Module, train: Any) -> None:
    """Refuse a teacher and a student whose class counts differ from each other or from the data."""
    from ..explain import eval_mode

    if len(train) == 0:
        raise ValueError(f"{train.name}: the training set is empty")
    probe = items(train, 0, min(2, len(train)))[0]
    for role, model in (("teacher", teacher), ("student", student)):
        if model is None:
            continue
        with torch.no_grad(), eval_mode(model):
            classes = model(probe).shape[-1]
        if classes != train.num_classes:
            raise ValueError(
                f"the {role} outputs {classes} classes but {train.name} has {train.num_classes}; "
                "build it with num_classes matching the data (or wrap a full-task teacher in ClassSubset)"
            )


def train_teacher(
    model: nn.Module,
    train: Any,
    *,
    val: Any = None,
    config: TrainConfig | dict | None = None,
    run: RunConfig | dict | None = None,
    **options: Any,
) -> DistillResult:
    """Train a classifier on its own (cross-entropy) with the same engine, for users without a teacher."""
    if run is None and "work_dir" not in options:
        options["work_dir"] = "runs/teacher"
    return distill(None, model, train, ["ce"], val=val, config=config, run=run, **options)
