"""Optimisers and learning-rate schedules named in a :class:`~xdistill.config.TrainConfig`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch

from .config import TrainConfig
from .registry import Registry

OPTIMIZERS: Registry[Callable[[Iterable, TrainConfig], torch.optim.Optimizer]] = Registry("optimizer")
OPTIMIZERS.register("adam")(lambda params, c: torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay))
OPTIMIZERS.register("adamw")(lambda params, c: torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay))
OPTIMIZERS.register("sgd")(
    lambda params, c: torch.optim.SGD(
        params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay, nesterov=c.momentum > 0
    )
)


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up to 1, then half a cosine down to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def warmup_constant(warmup_steps: int) -> Callable[[int], float]:
    return lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0


def _cosine(optimizer, config: TrainConfig, total_steps: int) -> dict[str, Any]:
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total_steps, round(config.warmup * total_steps))
    )
    return {"scheduler": schedule, "interval": "step"}


def _constant(optimizer, config: TrainConfig, total_steps: int) -> dict[str, Any]:
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_constant(round(config.warmup * total_steps)))
    return {"scheduler": schedule, "interval": "step"}


def _step(optimizer, config: TrainConfig, total_steps: int) -> dict[str, Any]:
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    return {"scheduler": schedule, "interval": config.schedule_interval}


def _multistep(optimizer, config: TrainConfig, total_steps: int) -> dict[str, Any]:
    """``MultiStepLR``; with ``schedule_interval: step`` it is stepped after every optimiser step (as TSD's code does)."""
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=config.milestones, gamma=config.gamma)
    return {"scheduler": schedule, "interval": config.schedule_interval}


def _plateau(optimizer, config: TrainConfig, total_steps: int) -> dict[str, Any]:
    mode: Literal["min", "max"] = "min" if config.monitor == "val_loss" else "max"
    schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=mode, factor=config.gamma, patience=max(1, (config.patience or 20) // 2)
    )
    return {"scheduler": schedule, "interval": "epoch", "monitor": config.monitor.replace("_", "/")}


SCHEDULES: Registry[Callable[..., dict[str, Any]]] = Registry("schedule")
SCHEDULES.register("cosine")(_cosine)
SCHEDULES.register("constant")(_constant)
SCHEDULES.register("step")(_step)
SCHEDULES.register("plateau")(_plateau)
SCHEDULES.register("multistep")(_multistep)


def configure(parameters: Iterable, config: TrainConfig, total_steps: int) -> dict[str, Any]:
    """Lightning's ``configure_optimizers`` answer for ``config``."""
    optimizer = OPTIMIZERS.get(config.optimizer)(parameters, config)
    return {"optimizer": optimizer, "lr_scheduler": SCHEDULES.get(config.schedule)(optimizer, config, total_steps)}
