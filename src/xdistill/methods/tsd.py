"""Temporal Saliency Distillation (Nandakishor et al. 2026, arXiv 2601.04263).

Temporal saliency = per-window importance of the input to a model's logit: the drop of the
target logit when a window of timesteps (all channels) is replaced by a baseline. The
teacher's saliency for every training sample is computed once; the student's is computed
differentiably in one batched forward (the clean input and every occluded copy together),
and the loss is ``kd + beta · D(sal_student, sal_teacher)``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import explain as xe
from ..explain import eval_mode
from ..parts import window_importance
from ..registry import Registry
from .base import METHODS, PrepareContext, Step
from .kd import KnowledgeDistillation


def window_count(length: int, window: int) -> int:
    return -(-length // window)


def occlusion_saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor, window: int,
                       differentiable: bool = True, baseline: float = 0.0) -> torch.Tensor:
    """(B, C, T) -> (B, n_windows): ``f(x)[t] - f(x with window w occluded)[t]``, one forward pass."""
    batch, _, length = x.shape
    n = window_count(length, window)
    masks = torch.zeros(n, 1, 1, length, dtype=x.dtype, device=x.device)
    for w in range(n):
        masks[w, ..., w * window : (w + 1) * window] = 1.0
    occluded = x.unsqueeze(0) * (1 - masks) + baseline * masks  # (n, B, C, T)
    inputs = torch.cat([x, occluded.reshape((n * batch,) + tuple(x.shape[1:]))])
    with eval_mode(model), torch.set_grad_enabled(differentiable):
        logits = model(inputs)
    picked = logits.gather(1, target.repeat(n + 1).unsqueeze(1)).squeeze(1)
    return picked[:batch].unsqueeze(1) - picked[batch:].reshape(n, batch).T


def gradient_saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor, window: int,
                      differentiable: bool = True, baseline: float = 0.0) -> torch.Tensor:
    """(B, C, T) -> (B, n_windows): |input × gradient| summed over channels and each window.

    Uses ``create_graph`` so it is differentiable w.r.t. the parameters (double backward).
    """
    attr = xe.input_x_gradient(model, x - baseline, target, differentiable=differentiable)
    return window_importance(attr, window)


SALIENCY: Registry[Callable[..., torch.Tensor]] = Registry("temporal saliency")
SALIENCY.register("occlusion")(occlusion_saliency)
SALIENCY.register("gradient")(gradient_saliency)


def _zscore(s: torch.Tensor) -> torch.Tensor:
    return (s - s.mean(1, keepdim=True)) / (s.std(1, keepdim=True) + 1e-8)


DISTANCES: Registry[Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = Registry("saliency distance")
DISTANCES.register("cosine")(lambda s, t, tau: (1 - F.cosine_similarity(s, t, dim=1, eps=1e-8)).mean())
DISTANCES.register("mse")(lambda s, t, tau: F.mse_loss(_zscore(s), _zscore(t)))
DISTANCES.register("kl")(lambda s, t, tau: F.kl_div(F.log_softmax(s / tau, 1), F.log_softmax(t / tau, 1),
                                                     reduction="batchmean", log_target=True))


@METHODS.register("tsd")
class TemporalSaliencyDistillation(KnowledgeDistillation):
    """KD plus ``beta · D(student temporal saliency, teacher temporal saliency)``.

    Occlusion saliency costs ``n_windows + 1`` student forwards per sample; ``batch_fraction``
    matches saliency on only that share of each (shuffled) batch to trade alignment for speed.
    """

    def __init__(self, window: int = 5, beta: float = 1.0, distance: str = "cosine", saliency: str = "occlusion",
                 tau: float = 1.0, target: str = "label", temperature: float = 4.0, alpha: float = 0.9,
                 batch_fraction: float = 1.0, batch_size: int = 128) -> None:
        super().__init__(temperature=temperature, alpha=alpha)
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if target not in ("label", "teacher"):
            raise ValueError(f"target must be 'label' or 'teacher', got {target!r}")
        if not 0.0 < batch_fraction <= 1.0:
            raise ValueError(f"batch_fraction must be in (0, 1], got {batch_fraction}")
        self.window, self.beta, self.tau, self.target, self.batch_size = window, beta, tau, target, batch_size
        self.batch_fraction = batch_fraction
        self.saliency_fn = SALIENCY.get(saliency)
        self.distance_fn = DISTANCES.get(distance)
        self.register_buffer("teacher_saliency", torch.empty(0), persistent=False)

    def prepare(self, context: PrepareContext) -> None:
        if context.teacher is None:
            raise ValueError("tsd needs a teacher")
        if context.train_x.ndim != 3:
            raise ValueError(f"tsd needs time series shaped (N, C, T), got {tuple(context.train_x.shape)}")
        teacher = context.teacher.to(context.device)
        chunks = []
        for start in range(0, context.train_x.shape[0], self.batch_size):
            x = context.train_x[start : start + self.batch_size].to(context.device)
            target = self._target(teacher, x, context.train_y[start : start + self.batch_size].to(context.device))
            chunks.append(self.saliency_fn(teacher, x, target, self.window, differentiable=False).detach().cpu())
        self.teacher_saliency = torch.cat(chunks)

    def _target(self, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.target == "label":
            return y
        with eval_mode(teacher), torch.no_grad():
            return teacher(x).argmax(1)

    def loss(self, step: Step) -> dict[str, torch.Tensor]:
        if self.teacher_saliency.numel() == 0:
            raise RuntimeError("tsd.prepare() must run before training (the engine does this)")
        terms = super().loss(step)
        keep = max(1, round(self.batch_fraction * step.batch.x.shape[0]))
        index = step.batch.index[:keep]
        teacher_sal = self.teacher_saliency[index.to(self.teacher_saliency.device)].to(step.student_logits)
        target = step.batch.y if self.target == "label" else step.teacher_logits.argmax(1)
        student_sal = self.saliency_fn(step.student, step.batch.x[:keep], target[:keep], self.window)
        terms["saliency"] = self.beta * self.distance_fn(student_sal, teacher_sal, self.tau)
        return terms
