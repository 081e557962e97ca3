"""The method contract and the registry that maps recipe names to method classes.

A method is a small ``nn.Module`` (so learned parts, like a FitNets regressor, train with the
student) with up to three hooks, all optional:

* ``prepare(context)``: one-off work before training (precompute teacher maps, estimate
  subspaces, build regressors from feature shapes);
* ``transform(batch) -> batch``: data-side change of the student's input;
* ``loss(step) -> dict[str, Tensor]``: named loss terms; the engine sums every term of every
  method and logs each one.

Methods never import the engine; the engine never knows a method by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry


@dataclass
class Batch:
    """One training batch: inputs, labels, dataset indices (for per-sample caches)."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor


@dataclass
class Step:
    """What a loss sees: the (possibly transformed) batch, both models' outputs and features."""

    batch: Batch
    student: nn.Module
    teacher: nn.Module | None
    student_logits: torch.Tensor
    teacher_logits: torch.Tensor | None
    student_features: dict[str, torch.Tensor] = field(default_factory=dict)
    teacher_features: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class PrepareContext:
    """What ``prepare`` may use: the models, the training data and where to keep artefacts."""

    teacher: nn.Module | None
    student: nn.Module
    train_x: torch.Tensor
    train_y: torch.Tensor
    dataset_fingerprint: str
    work_dir: Any = None  # pathlib.Path or None
    device: torch.device = torch.device("cpu")
    progress: bool = True
    rank: int = 0  # this process's rank in a distributed run
    world_size: int = 1
    barrier: Callable[[], None] | None = None  # waits for every rank (None in a single process)
    data_info: dict = field(default_factory=dict)  # the dataset's info (e.g. pixel_mean / pixel_std)
    cache_dir: Any = None  # pathlib.Path shared by several runs for teacher attributions, or None
    seed: int = 0  # the run's training seed (for keyed per-sample randomness)


class Method(nn.Module):
    """Base class; subclasses override what they need."""

    #: the teacher must run on every batch (logits/features); False lets the engine use cached logits
    needs_teacher: bool = True
    #: the teacher's forward pass has side effects the loss reads (e.g. a rationale mask): never cache it
    needs_teacher_forward: bool = False
    #: ``transform`` returns the same input for the same sample every epoch (teacher logits may be cached)
    deterministic_transform: bool = True
    #: module paths whose outputs ``loss`` reads through forward hooks
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def prepare(self, context: PrepareContext) -> None:
        """One-off work before training."""

    def on_fit_start(self, trainer: Any) -> None:
        """Called once when training starts (after a resumed checkpoint is loaded)."""

    def on_step(self, step: int, total_steps: int) -> None:
        """Called before every optimiser step with its 1-based number (e.g. to anneal a temperature)."""

    def transform(self, batch: Batch) -> Batch:
        return batch

    def loss(self, step: Step) -> dict[str, torch.Tensor]:
        return {}


METHODS: Registry[Callable[..., Method]] = Registry("method")


def build_method(name: str, **options: Any) -> Method:
    """Instantiate the method registered as ``name`` with its options."""
    return METHODS.get(name)(**options)


def method_from_spec(spec: "Method | str | dict[str, Any]") -> Method:
    """A method object, a registry name, or ``{"name": ..., **options}`` -> a method."""
    if isinstance(spec, Method):
        return spec
    if isinstance(spec, str):
        return build_method(spec)
    if isinstance(spec, dict) and "name" in spec:
        return build_method(spec["name"], **{k: v for k, v in spec.items() if k != "name"})
    raise ValueError(f"a method must be a Method, a name, or a dict with 'name'; got {spec!r}")


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(p_t^T ‖ p_s^T), averaged over the batch (Hinton et al. 2015)."""
    log_ps = F.log_softmax(student_logits / temperature, dim=1)
    log_pt = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    return F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True) * temperature**2
