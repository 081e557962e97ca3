"""Cross-entropy and soft-target knowledge distillation (Hinton et al. 2015), as separate terms.

``ce`` is the only cross-entropy and ``kd`` (T²·KL, nothing else) the only soft-target term; a
paper's mix of them is a preset: ``hinton`` -> ``(1-α)·ce + α·kd`` at T=4, α=0.9.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import PRESETS, TERMS, Step, TeacherNeeds, Term, soft_kl


@TERMS.register("ce")
class CrossEntropy(Term):
    """Cross-entropy of the student's logits against the labels (the student-alone baseline)."""

    name = "ce"

    needs_teacher = False
    fits_outputs = True

    def loss(self, step: Step) -> torch.Tensor:
        return F.cross_entropy(step.student_logits, step.batch.y)


@TERMS.register("kd")
class KnowledgeDistillation(Term):
    """``T² · KL(p_t^T ‖ p_s^T)`` (batch mean). ``teacher_input="clean"``: the teacher's logits on the
    untransformed input (computed once per sample), as KD-IG's official code uses them."""

    name = "kd"

    fits_outputs = True
    legacy_options = {
        "alpha": "kd is T²·KL alone; write [{name: ce, weight: 1-α}, {name: kd, weight: α}] or the preset "
        "{name: hinton, alpha: α}",
        "preset": "use the presets by name: hinton, kd_ig (or where_models_look)",
    }

    def __init__(self, temperature: float = 4.0, teacher_input: str = "transformed") -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if teacher_input not in ("transformed", "clean"):
            raise ValueError(f"teacher_input must be 'transformed' or 'clean', got {teacher_input!r}")
        self.temperature = float(temperature)
        self.teacher_needs = TeacherNeeds(clean_logits=teacher_input == "clean", logits=teacher_input != "clean")

    @property
    def needs_clean_teacher_logits(self) -> bool:
        """The teacher's logits on the untransformed input (``teacher_input="clean"``)."""
        return self.needs().clean_logits

    def loss(self, step: Step) -> torch.Tensor:
        target = step.teacher_clean_logits if self.needs_clean_teacher_logits else step.teacher_logits
        if target is None:
            raise ValueError("kd needs a teacher; pass teacher= or use the term 'ce' alone")
        return soft_kl(step.student_logits, target, self.temperature)


def _alpha(alpha: float) -> float:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return float(alpha)


@PRESETS.register("hinton")
def hinton(alpha: float = 0.9, temperature: float = 4.0) -> list:
    """Hinton et al. 2015: ``(1-α)·CE + α·T²·KL``, T=4, α=0.9."""
    alpha = _alpha(alpha)
    return [{"name": "ce", "weight": 1 - alpha}, {"name": "kd", "weight": alpha, "temperature": temperature}]


@PRESETS.register("where_models_look")
def where_models_look(alpha: float = 0.5, temperature: float = 4.0) -> list:
    """ "Knowledge Distillation Changes Where Models Look": Hinton's mix at α=0.5, T=4."""
    return hinton(alpha, temperature)
