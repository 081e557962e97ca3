"""Explanation matching: the student's differentiable attribution map drawn towards the teacher's.

The method class of Bassi, Cavalli & Decherchi 2024 ("Explanation is All You Need in Distillation", arXiv
2407.09788), who match LRP heatmaps. **Departure**: LRP needs per-layer rules for each architecture; here the map is
gradient × input (Shrikumar et al. 2016) of the target logit, which any differentiable model gives, computed with
``create_graph`` so the loss reaches the student's parameters (double backward), both models in eval mode while they
are explained (BatchNorm with running statistics, no dropout). ``explainer="integrated_gradients"`` uses IG
(``differentiable=True``) instead, at ``n_steps`` times the cost.

Each map is reduced over channels by absolute value and normalised to sum to one per sample, so the loss compares
where the evidence sits, not its scale: ``L = mean_i ‖ŝ_i − t̂_i‖₁ / 2`` (total-variation distance, in [0, 1]).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import TERMS, Step, TeacherNeeds, Term


def _normalised(attribution: torch.Tensor) -> torch.Tensor:
    """(B, C, ...) -> (B, positions): |attribution| summed over channels, each row summing to one."""
    a = attribution.abs()
    a = a.sum(1) if a.ndim > 2 else a
    a = a.flatten(1)
    return a / a.sum(1, keepdim=True).clamp_min(1e-12)


@TERMS.register("explanation_matching")
class ExplanationMatching(Term):
    """The student's attribution map matched to the teacher's on the step's input (total-variation distance)."""

    name = "explanation_matching"
    teacher_needs = TeacherNeeds(logits=True, model=True)

    def __init__(self, explainer: str = "input_x_gradient", target: str = "label", n_steps: int = 16) -> None:
        super().__init__()
        if explainer not in ("input_x_gradient", "integrated_gradients"):
            raise ValueError(f"explainer must be 'input_x_gradient' or 'integrated_gradients', got {explainer!r}")
        if target not in ("label", "teacher"):
            raise ValueError(f"target must be 'label' or 'teacher' (the teacher's predicted class), got {target!r}")
        self.explainer, self.target, self.n_steps = explainer, target, n_steps

    def check(self, teacher: nn.Module | None, student: nn.Module, sample_x: torch.Tensor) -> None:
        if teacher is None:
            raise ValueError("needs a teacher")
        if not sample_x.is_floating_point():
            raise ValueError(
                "needs real-valued inputs (token ids have no input gradient); for text, distill with rationale terms"
            )

    def _map(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, differentiable: bool) -> torch.Tensor:
        from .. import explain as xe

        options: dict[str, Any] = {"differentiable": differentiable}
        if self.explainer == "integrated_gradients":
            options["n_steps"] = self.n_steps
        return getattr(xe, self.explainer)(model, x, target, **options)

    def loss(self, step: Step) -> torch.Tensor:
        assert step.teacher is not None
        x = step.batch.x
        if self.target == "teacher" and step.teacher_logits is not None:
            target = step.teacher_logits.argmax(1)
        else:
            target = step.batch.y
        teacher_map = _normalised(self._map(step.teacher, x, target, differentiable=False).detach())
        student_map = _normalised(self._map(step.student, x, target, differentiable=True))
        return 0.5 * (student_map - teacher_map.to(student_map)).abs().sum(1).mean()
