"""Temporal Saliency Distillation (Nandakishor, Palaniswami, Dehigahawattage 2026, arXiv 2601.04263).

As published (``saliency="perturbation"``, the default), per training batch:

1. every series ``x_i`` gets ``K`` perturbed copies; copy ``k`` has steps ``[s_k, s_k + w)`` of
   every channel replaced by the same steps of a donor series of a *different class*
   (distinct starts ``s_k`` uniform in ``[0, T - w)``, ``K`` capped at ``T - w``; donors drawn
   without replacement when there are enough of them, else with);
2. saliency of copy ``k`` for class ``c``: ``S_ikc = τ² p_c(x_i) (log p_c(x_i) − log p_c(x̃_ik))``
   with ``p = softmax(logits / τ)``, ``τ = 8`` — the per-class terms of ``KL(p(x) ‖ p(x̃))``;
3. each model's batch tensor ``S`` is divided by the mean of its positive entries (+1e-8);
4. ``L_TSD = smooth-L1(S_student, S_teacher)``, the teacher's without gradient;
5. the ``tsd`` term is ``L_TSD``; the paper's objective is ``CE + λ · L_TSD``: the preset
   ``tsd_published`` = ``[ce, {name: tsd, weight: λ}]``.

The official code (``SaliencyDiscrepency`` / ``get_pertubed_timeseries``) builds the copies in a
Python loop; here they are made with one tensor ``where`` and forwarded in bounded chunks. As
there, the student runs in its current (training) mode and the teacher in eval mode.

The earlier window-occlusion and input×gradient variants stay available as
``saliency="occlusion"`` and ``saliency="gradient"`` (KD + a distance between window saliencies).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import explain as xe
from ..distributed import global_sum
from ..explain import eval_mode
from ..explain._common import default_rows
from ..options import check_options
from ..parts import window_importance
from ..registry import Registry
from .base import PRESETS, TERMS, PrepareContext, Step, TeacherNeeds, Term
from .keyed_random import SampleStreams, mix
from .perturbation import (  # noqa: F401  (also this module's names)
    forward_copies,
    has_batch_statistics,
    perturb,
    perturbation_saliency,
    sample_perturbations,
)

logger = logging.getLogger(__name__)


# -- the published TSD term ---------------------------------------------------------------------------


def normalize_saliency(s: torch.Tensor) -> torch.Tensor:
    """Divide the whole tensor by the mean of its positive entries (+1e-8), as published.

    Under DDP the mean is over the global batch (every process's share), as one process would see it.
    """
    positive = s > 0
    total = global_sum(torch.stack([(s * positive).sum(), positive.sum().to(s.dtype)]))
    scale = total[0] / total[1].clamp(min=1.0)
    return s / (scale + 1e-8)


def saliency_loss(student_s: torch.Tensor, teacher_s: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 (mean) between the normalised student and teacher saliency tensors."""
    return F.smooth_l1_loss(normalize_saliency(student_s), normalize_saliency(teacher_s.detach()), reduction="mean")


_LEGACY = {
    "lam": "tsd's λ is now its weight: write [ce, {name: tsd, weight: λ}] (or the preset {name: tsd_published, lam: λ})",
    "beta": "the saliency weight is now the term's weight: write {name: tsd, weight: β}",
    "alpha": "tsd no longer includes CE or KD: add them as terms, e.g. [ce, {name: kd, weight: α, temperature: 8}, tsd]",
    "temperature": "tsd no longer includes KD: add {name: kd, temperature: T} as its own term",
}


def check_series(teacher: nn.Module | None, sample_x: torch.Tensor, window: int) -> None:
    """TSD needs a teacher and (N, C, T) series longer than its window."""
    if teacher is None:
        raise ValueError("needs a teacher")
    if sample_x.ndim != 3:
        raise ValueError(f"needs time series shaped (N, C, T), got inputs shaped {tuple(sample_x.shape[1:])}")
    if window >= sample_x.shape[-1]:
        raise ValueError(f"window {window} must be shorter than the series ({sample_x.shape[-1]} steps)")


#: the keyed streams' step for the bank's draws (training steps count from 1)
BANK_STEP = 0


class PerturbationTSD(Term):
    """The published TSD term: smooth-L1 between normalised perturbation saliencies (no CE, no KD).

    ``chunk``: rows per forward pass of the perturbed copies (default: the library's choice,
    ``default_rows``); a model with BatchNorm in training mode always gets all copies at once.

    ``bank=R`` caches the teacher side: each training sample gets R (donor, start) draws, fixed by
    its index and the seed, whose teacher saliency is computed before training, for every sample in index order
    (so a resumed fit rebuilds the same bank bit for bit); each step then draws K of the R. The bank is used only where it saves teacher forwards
    (planned steps · batch · K > N · R); otherwise the teacher side is computed every step, as published.
    """

    name = "tsd"

    teacher_needs = TeacherNeeds(logits=True, model=True)  # its logits, and its saliency of perturbed copies
    salt = 0x545344  # "TSD"
    legacy_options = _LEGACY

    def __init__(
        self,
        perturbations: int = 50,
        window: int = 10,
        tau: float = 8.0,
        reduce: str = "none",
        bank: int | None = None,
        chunk: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if perturbations < 1:
            raise ValueError(f"perturbations must be >= 1, got {perturbations}")
        if reduce not in ("none", "sum"):
            raise ValueError(f"reduce must be 'none' or 'sum', got {reduce!r}")
        if bank is not None and bank < perturbations:
            raise ValueError(f"bank ({bank}) must hold at least `perturbations` ({perturbations}) entries per sample")
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be >= 1 (or omitted for the library's choice), got {chunk}")
        self.K, self.window, self.tau, self.reduce = perturbations, window, tau, reduce
        self.bank_size, self.chunk, self.seed = bank, chunk, seed
        # the training set stays where the data is (not a module buffer: Lightning would copy it to the device)
        self.train_x, self.train_y = torch.empty(0), torch.empty(0, dtype=torch.long)
        self.bank: TeacherBank | None = None

    def check(self, teacher: nn.Module | None, student: nn.Module, sample_x: torch.Tensor) -> None:
        check_series(teacher, sample_x, self.window)

    def prepare(self, context: PrepareContext) -> None:
        if context.teacher is None:
            raise ValueError("tsd needs a teacher")
        if context.train_x.ndim != 3:
            raise ValueError(f"tsd needs time series shaped (N, C, T), got {tuple(context.train_x.shape)}")
        length = context.train_x.shape[-1]
        if self.window >= length:
            raise ValueError(f"tsd window {self.window} must be shorter than the series ({length} steps)")
        self.train_x, self.train_y = context.train_x.cpu(), context.train_y.long().cpu()
        self.bank = None
        if self.bank_size:
            n = self.train_x.shape[0]
            on_the_fly = context.total_steps * context.batch_size * self.K
            if context.total_steps and context.batch_size and on_the_fly <= n * self.bank_size:
                logger.info(
                    "tsd: no teacher bank (%d planned steps x batch %d x K %d = %d teacher forwards on the "
                    "fly <= N %d x bank %d): the teacher side is computed every step",
                    context.total_steps,
                    context.batch_size,
                    self.K,
                    on_the_fly,
                    n,
                    self.bank_size,
                )
            else:
                self.bank = TeacherBank(n, self.bank_size, mix(context.seed, self.salt ^ self.seed))
                # filled whole, here, in index order: the same numbers however training later meets the samples,
                # so a fit resumed from a checkpoint (which does not hold the bank) rebuilds it bit for bit
                self.bank.fill(torch.arange(n), self, context.teacher.to(context.device))

    def _draw(self, step: Step) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(donor indices, starts, teacher saliency or None) for this batch, drawn from per-sample
        streams keyed by (seed, step, index): the same however the batch is split across processes. The draws
        pick from the host-resident training set, so they are made on the host (no wait for the device)."""
        index = step.batch.index_on_host
        streams = step.state.streams(index, self.salt ^ self.seed)
        if self.bank is not None:
            return self.bank.pick(index, streams, self.K)
        donors, starts = sample_perturbations(
            self.train_y[index], self.train_y, self.K, self.window, step.batch.x.shape[-1], uniform=streams
        )
        return donors, starts, None

    def teacher_saliency(
        self,
        teacher: nn.Module,
        x: torch.Tensor,
        donors_x: torch.Tensor,
        starts: torch.Tensor,
        clean_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The teacher's saliency of ``x`` for these donor series (both on its device) and starts, in eval mode
        without gradients."""
        with eval_mode(teacher), torch.no_grad():
            return perturbation_saliency(
                teacher,
                x,
                donors_x,
                starts.to(x.device),
                self.window,
                self.tau,
                self.reduce,
                clean_logits=clean_logits,
                chunk=self.chunk,
            )

    def loss(self, step: Step) -> torch.Tensor:
        if self.train_x.numel() == 0:
            raise RuntimeError("tsd.prepare() must run before training (the engine does this)")
        x = step.batch.x
        donors, starts, teacher_s = self._draw(step)
        donors_x = self.train_x[donors].to(x, non_blocking=True)  # gathered once, for the teacher and the student
        if teacher_s is None:
            assert step.teacher is not None
            teacher_s = self.teacher_saliency(step.teacher, x, donors_x, starts, step.teacher_logits)
        student_s = perturbation_saliency(
            step.student,
            x,
            donors_x,
            starts.to(x.device),
            self.window,
            self.tau,
            self.reduce,
            clean_logits=step.student_logits,
            chunk=self.chunk,
        )
        return saliency_loss(student_s, teacher_s.to(student_s))


class TeacherBank:
    """R fixed (donor, start) draws per training sample and the teacher's saliency for each.

    A sample's draws come from its own stream keyed by (key, its index), so they do not depend on
    which batch, step or process meets it first; entries live on the CPU.
    """

    def __init__(self, n: int, size: int, key: int) -> None:
        self.size, self.key = size, key
        self.donors = torch.zeros(n, size, dtype=torch.long)
        self.starts = torch.zeros(n, size, dtype=torch.long)
        self.filled = torch.zeros(n, dtype=torch.bool)
        self.saliency: torch.Tensor | None = None

    def fill(self, index: torch.Tensor, term: PerturbationTSD, teacher: nn.Module) -> None:
        """Compute the entries of the samples in ``index`` met for the first time."""
        new = index[~self.filled[index]].unique()
        if new.numel() == 0:
            return
        streams = SampleStreams(new, self.key, BANK_STEP)
        length = term.train_x.shape[-1]
        k = min(term.K, length - term.window)
        donors, starts = [], []
        for _ in range(-(-self.size // k)):
            d, s = sample_perturbations(term.train_y[new], term.train_y, term.K, term.window, length, uniform=streams)
            donors.append(d)
            starts.append(s)
        donors_new, starts_new = torch.cat(donors, 1)[:, : self.size], torch.cat(starts, 1)[:, : self.size]
        device = next(iter(teacher.parameters()), torch.empty(0)).device
        rows = max(1, (term.chunk or default_rows(device)) // self.size)
        parts = []
        for i in range(0, new.numel(), rows):
            x = term.train_x[new[i : i + rows]].to(device)
            donors_x = term.train_x[donors_new[i : i + rows]].to(x)
            parts.append(term.teacher_saliency(teacher, x, donors_x, starts_new[i : i + rows]).cpu())
        saliency = torch.cat(parts)
        if self.saliency is None:
            self.saliency = torch.zeros((self.filled.shape[0],) + tuple(saliency.shape[1:]), dtype=saliency.dtype)
        self.donors[new], self.starts[new], self.saliency[new] = donors_new, starts_new, saliency
        self.filled[new] = True

    def pick(
        self, index: torch.Tensor, streams: SampleStreams, K: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """K of each sample's R entries, chosen by its stream for this step."""
        assert self.saliency is not None
        k = min(K, self.size)
        pick = streams(self.size).cpu().argsort(1)[:, :k]
        rows = index[:, None]
        return self.donors[rows, pick], self.starts[rows, pick], self.saliency[rows, pick]


# -- earlier variants: window occlusion / input×gradient saliency with a distance -------------------------
def window_count(length: int, window: int) -> int:
    return -(-length // window)


def occlusion_saliency(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    window: int,
    differentiable: bool = True,
    baseline: float = 0.0,
) -> torch.Tensor:
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


def gradient_saliency(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    window: int,
    differentiable: bool = True,
    baseline: float = 0.0,
) -> torch.Tensor:
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
DISTANCES.register("kl")(
    lambda s, t, tau: F.kl_div(
        F.log_softmax(s / tau, 1), F.log_softmax(t / tau, 1), reduction="batchmean", log_target=True
    )
)


class WindowSaliencyTSD(Term):
    """``D(student window saliency, teacher window saliency)`` (not the published TSD).

    Occlusion saliency costs ``n_windows + 1`` student forwards per sample; ``batch_fraction``
    matches saliency on only that share of each (shuffled) batch to trade alignment for speed.
    """

    name = "tsd"

    legacy_options = _LEGACY

    def __init__(
        self,
        saliency: str = "occlusion",
        window: int = 5,
        distance: str = "cosine",
        tau: float = 1.0,
        target: str = "label",
        batch_fraction: float = 1.0,
        batch_size: int = 128,
    ) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if target not in ("label", "teacher"):
            raise ValueError(f"target must be 'label' or 'teacher', got {target!r}")
        if not 0.0 < batch_fraction <= 1.0:
            raise ValueError(f"batch_fraction must be in (0, 1], got {batch_fraction}")
        self.window, self.tau, self.target, self.batch_size = window, tau, target, batch_size
        self.batch_fraction = batch_fraction
        self.saliency_fn = SALIENCY.get(saliency)
        self.distance_fn = DISTANCES.get(distance)
        self.register_buffer("teacher_saliency", torch.empty(0), persistent=False)

    def check(self, teacher: nn.Module | None, student: nn.Module, sample_x: torch.Tensor) -> None:
        check_series(teacher, sample_x, self.window)

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

    def loss(self, step: Step) -> torch.Tensor:
        if self.teacher_saliency.numel() == 0:
            raise RuntimeError("tsd.prepare() must run before training (the engine does this)")
        keep = max(1, round(self.batch_fraction * step.batch.x.shape[0]))
        index = step.batch.index[:keep]
        teacher_sal = self.teacher_saliency[index.to(self.teacher_saliency.device)].to(step.student_logits)
        if self.target == "label" or step.teacher_logits is None:
            target = step.batch.y
        else:
            target = step.teacher_logits.argmax(1)
        student_sal = self.saliency_fn(step.student, step.batch.x[:keep], target[:keep], self.window)
        return self.distance_fn(student_sal, teacher_sal, self.tau)


#: ``saliency=`` option of ``tsd`` -> (the class that implements it, the options that select the variant)
TSD_VARIANTS: Registry[tuple[type[Term], dict[str, Any]]] = Registry("tsd saliency")
TSD_VARIANTS.register("perturbation")((PerturbationTSD, {}))
TSD_VARIANTS.register("occlusion")((WindowSaliencyTSD, {"saliency": "occlusion"}))
TSD_VARIANTS.register("gradient")((WindowSaliencyTSD, {"saliency": "gradient"}))


@TERMS.register("tsd")
def TemporalSaliencyDistillation(saliency: str = "perturbation", **options: Any) -> Term:
    """``tsd``: the published perturbation TSD term by default; ``saliency="occlusion"|"gradient"`` for the variants."""
    variant, fixed = TSD_VARIANTS.get(saliency)
    check_options(variant, options, skip=tuple(fixed), what="tsd option")
    return variant(**fixed, **options)


TemporalSaliencyDistillation.legacy_options = _LEGACY  # type: ignore[attr-defined]


@PRESETS.register("tsd_published")
def tsd_published(
    lam: float = 1.0, perturbations: int = 50, window: int = 10, tau: float = 8.0, **options: Any
) -> list:
    """The paper's student objective (official ``run_student.sh``: task ratio 1, Hinton ratio 0): ``CE + λ·L_TSD``,
    K=50 windows of 10 steps, τ=8. Other tsd options (bank, chunk, reduce) pass through."""
    return [
        "ce",
        {"name": "tsd", "weight": lam, "perturbations": perturbations, "window": window, "tau": tau, **options},
    ]
