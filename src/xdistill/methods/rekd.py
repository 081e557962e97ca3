"""Rationale extraction (RE) and rationale-extraction KD (REKD) as terms, composed by presets as
published (arXiv 2601.22531; official code JiayiDai/REKD, ``run/learn.py`` ``run_epoch`` and
``utils/learn_settings.py``).

Terms (each its own quantity; the presets give the paper's weights):

* ``rationale_selection``: ``(mean_b Σ_i z_bi − ρ·N)²`` over the student's keep-mask, N parts, ratio ρ;
* ``rationale_kl``: ``KLDiv(log q_s, log q_t)`` between the Gumbel-noised selection log-probabilities
  of the student's and the teacher's generators (batch mean, summed over parts × 2);
* ``rationale_prediction_kl``: ``τ_g² · KLDiv(log softmax(s/τ_g), log softmax(t/τ_g))`` with ``t``
  the teacher's predictor on the student's mask (no gradient);
* ``gumbel_anneal`` (no loss): the Gumbel temperature τ_g of the student's selection, annealed
  exponentially from 5 to 0.1, updated only when the step is a multiple of 100 (as ``learn.py``
  does, so a run whose length is not a multiple of 100 ends above 0.1), and the per-sample noise.

Presets: ``rationale`` (RE) = ``CE + λ_s · selection``; ``rekd`` = ``α·RE + (1−α)(λ_r·rationale_kl +
prediction_kl)``. The official evaluation draws Gumbel noise even for the evaluation mask; here
evaluation is deterministic (keep probability ≥ 0.5), as the paper describes it.

Under DDP the loss is the one a single process computes on the global batch: the Gumbel noise
comes from per-sample streams keyed by (seed, step, index), and the selection cost's batch mean
is summed over every process.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..distributed import global_sum
from ..models.rationale import RationaleOutput, gumbel_noise
from .base import PRESETS, TERMS, Batch, Step, StepState, TeacherNeeds, Term

_NOISE_SALT = 0x4E4B44  # the student's selection noise
_TEACHER_NOISE_SALT = 0x4E4B45  # the teacher's selection noise in rationale_kl


def gumbel_temperature(
    step: int, total_steps: int, tau_init: float = 5.0, tau_final: float = 0.1, update_every: int = 100
) -> float:
    """τ_g after ``step`` optimiser steps, as ``learn.py`` updates it: ``max(τ_init·exp(−ln(τ_init/τ_final)·s/total),
    τ_final)`` where ``s`` is the last multiple of ``update_every`` reached (a 1,050-step run ends at 0.1205)."""
    decay = math.log(tau_init / tau_final) / max(1, total_steps)
    counted = (step // update_every) * update_every
    return max(tau_init * math.exp(-decay * counted), tau_final)


def selection_cost(mask: torch.Tensor, ratio: float) -> torch.Tensor:
    """``(mean over the batch of the number of kept parts − ratio · n_parts)²``; under DDP the mean is
    over the global batch (every process's share), as one process would see it."""
    total = global_sum(torch.stack([mask.sum(), mask.new_tensor(float(len(mask)))]))
    return (total[0] / total[1] - ratio * mask.shape[1]) ** 2


def kl_batchmean(log_input: torch.Tensor, log_target: torch.Tensor) -> torch.Tensor:
    """PyTorch's ``KLDivLoss(reduction="batchmean", log_target=True)``: Σ p_t (log p_t − log p_in) / B."""
    return F.kl_div(log_input, log_target, reduction="batchmean", log_target=True)


def _output(output: Any, role: str) -> RationaleOutput:
    if not isinstance(output, RationaleOutput):
        raise ValueError(f"the {role} must be a rationale model (models.build_rationale_model or model 'rationale')")
    return output


@TERMS.register("gumbel_anneal")
class GumbelAnneal(Term):
    """The student's Gumbel temperature and noise per step (no loss): see the module docstring."""

    name = "gumbel_anneal"

    needs_teacher = False
    student_output = True  # it sets the structured forward's temperature and noise
    salt = _NOISE_SALT

    def __init__(self, tau_init: float = 5.0, tau_final: float = 0.1, update_every: int = 100) -> None:
        super().__init__()
        if not 0.0 < tau_final <= tau_init:
            raise ValueError(f"need 0 < tau_final <= tau_init, got {tau_final} and {tau_init}")
        if update_every < 1:
            raise ValueError(f"update_every must be >= 1, got {update_every}")
        self.tau_init, self.tau_final, self.update_every = tau_init, tau_final, update_every

    def temperature(self, state: StepState) -> float:
        return gumbel_temperature(state.index, state.total, self.tau_init, self.tau_final, self.update_every)

    def forward_options(self, state: StepState, batch: Batch) -> dict[str, Any]:
        return {"temperature": self.temperature(state), "uniform": state.streams(batch.index, self.salt)}


@TERMS.register("rationale_selection")
class RationaleSelection(Term):
    """``(mean_b Σ_i z_bi − ρ·N)²`` on the student's keep-mask."""

    name = "rationale_selection"

    needs_teacher = False
    student_output = True
    global_batch_statistic = True

    def __init__(self, ratio: float = 0.1) -> None:
        super().__init__()
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}")
        self.ratio = ratio

    def loss(self, step: Step) -> torch.Tensor:
        return selection_cost(_output(step.student_output, "student").mask, self.ratio)


@TERMS.register("rationale_kl")
class RationaleKL(Term):
    """KL between the student's and the teacher's Gumbel-noised selection log-probabilities."""

    name = "rationale_kl"

    teacher_needs = TeacherNeeds(structured=True)
    student_output = True

    def loss(self, step: Step) -> torch.Tensor:
        student, teacher = _output(step.student_output, "student"), _output(step.teacher_output, "teacher")
        if teacher.selector_logits.shape != student.selector_logits.shape:
            raise ValueError(
                f"teacher and student must select the same parts: {tuple(teacher.selector_logits.shape)} "
                f"vs {tuple(student.selector_logits.shape)}"
            )
        tau = student.temperature
        log_q_s = student.log_probs
        if log_q_s is None:  # the student ran in evaluation mode: noise its selection like the teacher's
            streams = step.state.streams(step.batch.index, _NOISE_SALT)
            noise = gumbel_noise(student.selector_logits.shape, student.selector_logits, uniform=streams)
            log_q_s = F.log_softmax((student.selector_logits + noise) / tau, -1)
        with torch.no_grad():
            t_logits = teacher.selector_logits
            streams = step.state.streams(step.batch.index, _TEACHER_NOISE_SALT)
            log_q_t = F.log_softmax((t_logits + gumbel_noise(t_logits.shape, t_logits, uniform=streams)) / tau, -1)
        return kl_batchmean(log_q_s, log_q_t)


@TERMS.register("rationale_prediction_kl")
class RationalePredictionKL(Term):
    """``τ_g² · KL`` between the student's prediction and the teacher's predictor on the student's mask."""

    name = "rationale_prediction_kl"

    fits_outputs = True
    teacher_needs = TeacherNeeds(model=True)  # the teacher's predictor on the student's mask, in the loss
    student_output = True

    def loss(self, step: Step) -> torch.Tensor:
        student = _output(step.student_output, "student")
        teacher: Any = step.teacher
        if not hasattr(teacher, "predict_with"):
            raise ValueError(
                "the teacher must be a rationale model (models.build_rationale_model or model 'rationale')"
            )
        tau = student.temperature
        with torch.no_grad():
            target = teacher.predict_with(step.batch.x, student.mask.detach())
        return tau**2 * kl_batchmean(F.log_softmax(step.student_logits / tau, -1), F.log_softmax(target / tau, -1))


def _anneal(tau_init: float, tau_final: float, update_every: int) -> dict[str, Any]:
    return {"name": "gumbel_anneal", "tau_init": tau_init, "tau_final": tau_final, "update_every": update_every}


@PRESETS.register("rationale")
def rationale(
    ratio: float = 0.1,
    select_lambda: float = 1e-2,
    tau_init: float = 5.0,
    tau_final: float = 0.1,
    update_every: int = 100,
) -> list:
    """RE as published: ``CE + λ_s · (mean Σz − ρN)²`` with the annealed Gumbel temperature."""
    return [
        "ce",
        {"name": "rationale_selection", "weight": select_lambda, "ratio": ratio},
        _anneal(tau_init, tau_final, update_every),
    ]


@PRESETS.register("rekd")
def rekd(
    ratio: float = 0.1,
    select_lambda: float = 1e-2,
    alpha_re: float = 0.5,
    kd_r_lambda: float = 0.5,
    distil: str = "both",
    tau_init: float = 5.0,
    tau_final: float = 0.1,
    update_every: int = 100,
) -> list:
    """REKD as published: ``α·RE + (1−α)·(λ_r·rationale_kl + prediction_kl)`` (α=0.5 as in the ViT-small KD
    script, λ_r=0.5); ``distil="rationale"|"prediction"`` keeps one of the two KD parts."""
    if distil not in ("both", "rationale", "prediction"):
        raise ValueError(f"distil must be 'both', 'rationale' or 'prediction', got {distil!r}")
    if not 0.0 <= alpha_re <= 1.0:
        raise ValueError(f"alpha_re must be in [0, 1], got {alpha_re}")
    rest = 1.0 - alpha_re
    terms: list = [
        {"name": "ce", "weight": alpha_re},
        {"name": "rationale_selection", "weight": alpha_re * select_lambda, "ratio": ratio},
        _anneal(tau_init, tau_final, update_every),
    ]
    if distil in ("both", "rationale"):
        terms.append({"name": "rationale_kl", "weight": rest * kd_r_lambda})
    if distil in ("both", "prediction"):
        terms.append({"name": "rationale_prediction_kl", "weight": rest})
    return terms
