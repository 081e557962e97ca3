"""Rationale extraction (RE) and rationale-extraction KD (REKD), as published (arXiv 2601.22531;
official code JiayiDai/REKD, ``run/learn.py`` ``run_epoch`` and ``utils/learn_settings.py``).

* ``rationale`` (RE): ``CE(predictor) + select_λ · (mean_b Σ_i z_bi − ρ·N)²`` with N parts and
  target ratio ρ; the Gumbel temperature τ_g anneals exponentially from ``tau_init`` (5) to 0.1
  over training, updated every ``update_every`` (100) steps.
* ``rekd``: ``α_re · RE + (1 − α_re) · (kd_r_λ · KL_r + τ_g² · KL_y)`` where
  ``KL_r = KLDiv(log q_s, log q_t)`` between the Gumbel-noised selection log-probabilities of the
  student's and the teacher's generators (batch mean, summed over parts × 2), and
  ``KL_y = KLDiv(log softmax(s/τ_g), log softmax(t/τ_g))`` with ``t`` the *teacher's predictor on
  the student's mask* (no gradient). ``distil="rationale"`` / ``"prediction"`` keep one part.

The official evaluation draws Gumbel noise even for the evaluation mask; here evaluation is
deterministic (keep probability ≥ 0.5), as the paper describes it.

Under DDP the loss is the one a single process computes on the global batch: the Gumbel noise
comes from per-sample streams keyed by (seed, step, index) (``keyed_random``), and the selection
cost's batch mean is summed over every process.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..models.rationale import RationaleModel, gumbel_noise
from .base import METHODS, Batch, Method, PrepareContext, Step
from .keyed_random import SampleStreams, global_sum

_STREAM_SALT = 0x4E4B44  # keeps these draws apart from other methods' streams at the same seed


def _rationale_model(model: Any, role: str) -> RationaleModel:
    if not isinstance(model, RationaleModel):
        raise ValueError(f"the {role} must be a rationale model (models.build_rationale_model or model 'rationale')")
    if model.last_logits is None:
        raise RuntimeError(f"the {role} has not run a forward pass yet")
    return model


def gumbel_temperature(step: int, total_steps: int, tau_init: float = 5.0, tau_final: float = 0.1,
                       update_every: int = 100) -> float:
    """τ_g after ``step`` optimiser steps: ``max(τ_init·exp(−ln(τ_init/τ_final)·s/total), τ_final)``, where ``s``
    is the last multiple of ``update_every`` reached (and ``total`` itself at the last step)."""
    decay = math.log(tau_init / tau_final) / max(1, total_steps)
    counted = total_steps if step >= total_steps else (step // update_every) * update_every
    return max(tau_init * math.exp(-decay * counted), tau_final)


def selection_cost(mask: torch.Tensor, ratio: float) -> torch.Tensor:
    """``(mean over the batch of the number of kept parts − ratio · n_parts)²``; under DDP the mean is
    over the global batch (every process's share), as one process would see it."""
    total = global_sum(torch.stack([mask.sum(), mask.new_tensor(float(len(mask)))]))
    return (total[0] / total[1] - ratio * mask.shape[1]) ** 2


def kl_batchmean(log_input: torch.Tensor, log_target: torch.Tensor) -> torch.Tensor:
    """PyTorch's ``KLDivLoss(reduction="batchmean", log_target=True)``: Σ p_t (log p_t − log p_in) / B."""
    return F.kl_div(log_input, log_target, reduction="batchmean", log_target=True)


@METHODS.register("rationale")
class RationaleExtraction(Method):
    """RE: the rationale model's own loss (no teacher), with the annealed Gumbel temperature."""

    needs_teacher = False

    def __init__(self, ratio: float = 0.1, select_lambda: float = 1e-2, tau_init: float = 5.0,
                 tau_final: float = 0.1, update_every: int = 100) -> None:
        super().__init__()
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}")
        if not 0.0 < tau_final <= tau_init:
            raise ValueError(f"need 0 < tau_final <= tau_init, got {tau_final} and {tau_init}")
        self.ratio, self.select_lambda = ratio, select_lambda
        self.tau_init, self.tau_final, self.update_every = tau_init, tau_final, update_every
        self.register_buffer("tau", torch.tensor(float(tau_init)))  # saved with the checkpoint
        self._student: RationaleModel | None = None
        self.step_number, self.stream_seed = 0, hash((0, _STREAM_SALT))
        self.streams: SampleStreams | None = None  # this step's per-sample noise

    def prepare(self, context: PrepareContext) -> None:
        self.stream_seed = hash((context.seed, _STREAM_SALT))

    def on_fit_start(self, trainer: Any) -> None:
        self._student = trainer.lightning_module.student

    def on_step(self, step: int, total_steps: int) -> None:
        self.step_number = step
        self.tau.fill_(gumbel_temperature(step, total_steps, self.tau_init, self.tau_final, self.update_every))
        if isinstance(self._student, RationaleModel):
            self._student.gumbel_temperature.fill_(float(self.tau))

    def transform(self, batch: Batch) -> Batch:
        """Key this step's Gumbel noise by (seed, step, sample): the student's mask draws from it next."""
        self.streams = SampleStreams(batch.index, self.stream_seed, self.step_number)
        if isinstance(self._student, RationaleModel):
            self._student.next_uniform = self.streams
        return batch

    def rationale_terms(self, step: Step, weight: float = 1.0) -> dict[str, torch.Tensor]:
        student = _rationale_model(step.student, "student")
        return {"ce": weight * F.cross_entropy(step.student_logits, step.batch.y),
                "selection": weight * self.select_lambda * selection_cost(student.last_mask, self.ratio)}

    def loss(self, step: Step) -> dict[str, torch.Tensor]:
        return self.rationale_terms(step)


@METHODS.register("rekd")
class RationaleKD(RationaleExtraction):
    """REKD: ``α_re·RE + (1−α_re)·(kd_r_λ·KL(selection) + τ_g²·KL_τg(student ‖ teacher predictor on the student's mask))``."""

    needs_teacher = True
    needs_teacher_forward = True  # the teacher's generator logits come from its own forward pass

    def __init__(self, ratio: float = 0.1, select_lambda: float = 1e-2, alpha_re: float = 0.5, kd_r_lambda: float = 0.5,
                 distil: str = "both", tau_init: float = 5.0, tau_final: float = 0.1, update_every: int = 100) -> None:
        super().__init__(ratio, select_lambda, tau_init, tau_final, update_every)
        if distil not in ("both", "rationale", "prediction"):
            raise ValueError(f"distil must be 'both', 'rationale' or 'prediction', got {distil!r}")
        if not 0.0 <= alpha_re <= 1.0:
            raise ValueError(f"alpha_re must be in [0, 1], got {alpha_re}")
        self.alpha_re, self.kd_r_lambda, self.distil = alpha_re, kd_r_lambda, distil

    def loss(self, step: Step) -> dict[str, torch.Tensor]:
        student = _rationale_model(step.student, "student")
        teacher = _rationale_model(step.teacher, "teacher")
        if teacher.last_logits.shape != student.last_logits.shape:
            raise ValueError(f"teacher and student must select the same parts: {tuple(teacher.last_logits.shape)} "
                             f"vs {tuple(student.last_logits.shape)}")
        tau = float(self.tau)
        terms = self.rationale_terms(step, self.alpha_re)
        rest = 1.0 - self.alpha_re
        if self.distil in ("both", "rationale"):
            log_q_s = student.last_log_probs
            if log_q_s is None:  # the student ran in evaluation mode: noise its selection like the teacher's
                noise = gumbel_noise(student.last_logits.shape, student.last_logits, uniform=self.streams)
                log_q_s = F.log_softmax((student.last_logits + noise) / tau, -1)
            with torch.no_grad():
                t_logits = teacher.last_logits
                log_q_t = F.log_softmax((t_logits + gumbel_noise(t_logits.shape, t_logits, uniform=self.streams)) / tau, -1)
            terms["kd_rationale"] = rest * self.kd_r_lambda * kl_batchmean(log_q_s, log_q_t)
        if self.distil in ("both", "prediction"):
            with torch.no_grad():
                teacher_on_student_mask = teacher.predict_with(step.batch.x, student.last_mask.detach())
            terms["kd"] = rest * tau**2 * kl_batchmean(F.log_softmax(step.student_logits / tau, -1),
                                                       F.log_softmax(teacher_on_student_mask / tau, -1))
        return terms
