"""Cross-entropy (no teacher) and soft-target knowledge distillation (Hinton et al. 2015)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import METHODS, Method, Step, soft_kl

#: (temperature, alpha) settings used by the papers xdistill reproduces
KD_PRESETS: dict[str, tuple[float, float]] = {
    "hinton": (4.0, 0.9),
    "ig_overlay": (2.5, 0.01),  # Hernandez, Chang, Nordling 2025
    "where_models_look": (4.0, 0.5),
}


@METHODS.register("ce")
class CrossEntropy(Method):
    """Plain supervised training: the student-alone baseline (no teacher needed)."""

    needs_teacher = False

    def loss(self, step: Step) -> dict[str, torch.Tensor]:
        return {"ce": F.cross_entropy(step.student_logits, step.batch.y)}


@METHODS.register("kd")
class KnowledgeDistillation(Method):
    """``(1-a)·CE + a·T²·KL(p_t^T ‖ p_s^T)``; defaults T=4, a=0.9 or a named preset."""

    def __init__(self, temperature: float | None = None, alpha: float | None = None, preset: str = "hinton") -> None:
        super().__init__()
        if preset not in KD_PRESETS:
            raise ValueError(f"unknown KD preset {preset!r}; known: {', '.join(KD_PRESETS)}")
        default_t, default_a = KD_PRESETS[preset]
        self.temperature = float(default_t if temperature is None else temperature)
        self.alpha = float(default_a if alpha is None else alpha)
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")

    def loss(self, step: Step) -> dict[str, torch.Tensor]:
        terms = {"ce": (1 - self.alpha) * F.cross_entropy(step.student_logits, step.batch.y)}
        if self.alpha > 0:
            if step.teacher_logits is None:
                raise ValueError("kd needs a teacher; pass teacher= or use method 'ce'")
            terms["kd"] = self.alpha * soft_kl(step.student_logits, step.teacher_logits, self.temperature)
        return terms
