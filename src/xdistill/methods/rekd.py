"""Rationale extraction (RE) and rationale-extraction KD (REKD, arXiv 2601.22531).

``rationale``: the select-predict model's own loss, CE on the predictor's logits plus
``sparsity · |mean keep-probability − ratio|`` plus ``continuity · mean |p_i − p_{i+1}|``
between neighbouring parts (both grid directions for patches).
``rekd``: the same, plus ``mask_weight · BCE(student keep-probabilities, teacher mask)`` and
``kd_weight · KD`` on the predictors' logits; the teacher is a larger rationale model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import METHODS, Method, Step, soft_kl


def _rationale_model(model, role: str):
    if not hasattr(model, "last_probs"):
        raise ValueError(f"the {role} must be a rationale model (models.build_rationale_model or model 'rationale')")
    if model.last_probs is None:
        raise RuntimeError(f"the {role} has not run a forward pass yet")
    return model


def continuity(probs: torch.Tensor, kind: str, grid_width: int | None = None) -> torch.Tensor:
    """Mean absolute change of keep-probability between neighbouring parts."""
    if kind == "patch" and grid_width:
        grid = probs.reshape(probs.shape[0], -1, grid_width)
        return 0.5 * ((grid[:, 1:] - grid[:, :-1]).abs().mean() + (grid[:, :, 1:] - grid[:, :, :-1]).abs().mean())
    return (probs[:, 1:] - probs[:, :-1]).abs().mean()


@METHODS.register("rationale")
class RationaleExtraction(Method):
    """The rationale model's own loss (no teacher): CE + sparsity + continuity."""

    needs_teacher = False

    def __init__(self, ratio: float = 0.2, sparsity: float = 1.0, continuity: float = 0.5) -> None:
        super().__init__()
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}")
        self.ratio, self.sparsity, self.continuity = ratio, sparsity, continuity

    def rationale_terms(self, step: Step) -> dict[str, torch.Tensor]:
        student = _rationale_model(step.student, "student")
        probs = student.last_probs
        grid_width = None
        if student.kind == "patch":
            width = step.batch.x.shape[-1]
            grid_width = math.ceil(width / student.selector.part_size)
        return {
            "ce": F.cross_entropy(step.student_logits, step.batch.y),
            "sparsity": self.sparsity * (probs.mean(1) - self.ratio).abs().mean(),
            "continuity": self.continuity * continuity(probs, student.kind, grid_width),
        }

    def loss(self, step: Step) -> dict[str, torch.Tensor]:
        return self.rationale_terms(step)


@METHODS.register("rekd")
class RationaleKD(RationaleExtraction):
    """RE loss + ``mask_weight · BCE(student mask, teacher mask)`` + ``kd_weight · T²·KL``."""

    needs_teacher = True
    needs_teacher_forward = True  # the teacher's mask comes from its own forward pass

    def __init__(self, ratio: float = 0.2, sparsity: float = 1.0, continuity: float = 0.5, mask_weight: float = 1.0,
                 kd_weight: float = 1.0, temperature: float = 4.0) -> None:
        super().__init__(ratio, sparsity, continuity)
        self.mask_weight, self.kd_weight, self.temperature = mask_weight, kd_weight, temperature

    def loss(self, step: Step) -> dict[str, torch.Tensor]:
        terms = self.rationale_terms(step)
        teacher = _rationale_model(step.teacher, "teacher")
        target = teacher.last_mask.detach()
        probs = step.student.last_probs
        if target.shape != probs.shape:
            raise ValueError(f"teacher and student must mask the same parts: {tuple(target.shape)} vs {tuple(probs.shape)}")
        terms["mask"] = self.mask_weight * F.binary_cross_entropy(probs.clamp(1e-6, 1 - 1e-6), target)
        terms["kd"] = self.kd_weight * soft_kl(step.student_logits, step.teacher_logits, self.temperature)
        return terms
