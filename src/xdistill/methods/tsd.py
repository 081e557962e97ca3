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

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import explain as xe
from ..explain import eval_mode
from ..parts import window_importance
from ..registry import Registry
from ..options import check_options
from .base import PRESETS, TERMS, PrepareContext, Step, Term
from .keyed_random import global_sum


# -- the published perturbation saliency -------------------------------------------------------------
def sample_perturbations(y: torch.Tensor, train_y: torch.Tensor, K: int, window: int, length: int,
                         generator: torch.Generator | None = None,
                         uniform: Callable[[int], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Donor indices into the training set and window starts, both (B, K') with K' = min(K, length − window).

    Donors of sample i are training series of another class: distinct ones when at least K (the
    requested number, not K') exist, otherwise drawn with replacement — the official
    ``get_pertubed_timeseries`` rule (``randperm`` if ``K <= candidates`` else ``randint``). Starts are distinct, uniform in [0, length − window).
    ``uniform(n)`` -> (B, n) uniforms is the source of randomness (default: ``torch.rand`` with
    ``generator``; the method passes per-sample streams, see ``keyed_random``).
    """
    if not 1 <= window < length:
        raise ValueError(f"window must be in [1, series length {length}), got {window}")
    batch, device = y.shape[0], train_y.device
    if uniform is None:
        def uniform(n: int) -> torch.Tensor:
            return torch.rand(batch, n, generator=generator)
    k = min(K, length - window)
    starts = uniform(length - window).cpu().argsort(1)[:, :k]
    other = train_y.cpu()[None, :] != y.cpu()[:, None]  # (B, N)
    counts = other.sum(1)
    if (counts == 0).any():
        raise ValueError("tsd needs training series of at least two classes (a donor must be of another class)")
    scores = uniform(other.shape[1]).cpu().masked_fill(~other, 2.0)  # candidates first, shuffled
    order = scores.argsort(1)
    ranks = torch.arange(k).expand(batch, k)
    few = counts < K
    if few.any():  # with replacement: a uniform rank among the candidates
        draws = (uniform(k).cpu() * counts[:, None]).long()
        ranks = torch.where(few[:, None], draws, ranks)
    return order.gather(1, ranks).to(device), starts.to(device)


def perturb(x: torch.Tensor, donors_x: torch.Tensor, starts: torch.Tensor, window: int) -> torch.Tensor:
    """(B, C, T), donors (B, K, C, T), starts (B, K) -> (B, K, C, T): each copy with its window swapped in."""
    steps = torch.arange(x.shape[-1], device=x.device)
    inside = (steps >= starts[..., None]) & (steps < starts[..., None] + window)  # (B, K, T)
    return torch.where(inside[:, :, None, :], donors_x, x[:, None])


def _chunked_forward(model: nn.Module, x: torch.Tensor, chunk: int) -> torch.Tensor:
    return torch.cat([model(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)])


def perturbation_saliency(model: nn.Module, x: torch.Tensor, donors_x: torch.Tensor, starts: torch.Tensor,
                          window: int, tau: float = 8.0, reduce: str = "none", clean_logits: torch.Tensor | None = None,
                          chunk: int = 2048) -> torch.Tensor:
    """Unnormalised TSD saliency ``S`` (B, K, classes), or (B, K) with ``reduce="sum"``.

    ``S_ikc = τ² p_c(x_i) (log p_c(x_i) − log p_c(x̃_ik))``, ``p = softmax(logits/τ)``. Runs the
    model as it is (mode and grad mode are the caller's); ``clean_logits`` reuses a forward
    pass of ``x`` already made. The B·K copies are forwarded ``chunk`` at a time.
    """
    if reduce not in ("none", "sum"):
        raise ValueError(f"reduce must be 'none' or 'sum', got {reduce!r}")
    batch, k = starts.shape
    copies = perturb(x, donors_x, starts, window).reshape((batch * k,) + tuple(x.shape[1:]))
    clean = model(x) if clean_logits is None else clean_logits
    log_p = F.log_softmax(clean / tau, dim=-1)[:, None, :]  # (B, 1, classes)
    log_q = F.log_softmax(_chunked_forward(model, copies, chunk) / tau, dim=-1).reshape(batch, k, -1)
    saliency = tau**2 * log_p.exp() * (log_p - log_q)
    return saliency.sum(-1) if reduce == "sum" else saliency


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


class PerturbationTSD(Term):
    """The published TSD term: smooth-L1 between normalised perturbation saliencies (no CE, no KD).

    ``bank=R`` caches the teacher side: R perturbations per training sample are drawn once
    (seeded) and their teacher saliency computed in ``prepare``; each step draws K of the R.
    """

    name = "tsd"

    needs_teacher = True
    salt = 0x545344  # "TSD"
    legacy_options = _LEGACY

    def __init__(self, perturbations: int = 50, window: int = 10, tau: float = 8.0, reduce: str = "none",
                 bank: int | None = None, chunk: int = 2048, seed: int = 0) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if perturbations < 1:
            raise ValueError(f"perturbations must be >= 1, got {perturbations}")
        if reduce not in ("none", "sum"):
            raise ValueError(f"reduce must be 'none' or 'sum', got {reduce!r}")
        if bank is not None and bank < perturbations:
            raise ValueError(f"bank ({bank}) must hold at least `perturbations` ({perturbations}) entries per sample")
        self.K, self.window, self.tau, self.reduce = perturbations, window, tau, reduce
        self.bank_size, self.chunk, self.seed = bank, chunk, seed
        for name in ("train_x", "train_y", "bank_donors", "bank_starts", "bank_saliency"):
            self.register_buffer(name, torch.empty(0), persistent=False)

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
        self.train_x, self.train_y = context.train_x, context.train_y.long()
        if self.bank_size:
            self._build_bank(context)

    def _build_bank(self, context: PrepareContext) -> None:
        """R (donor, start) draws per training sample and the teacher's saliency for each, computed once."""
        generator = torch.Generator().manual_seed(self.seed)
        length, n = self.train_x.shape[-1], self.train_x.shape[0]
        rounds = -(-self.bank_size // min(self.K, length - self.window))
        donors, starts = [], []
        for _ in range(rounds):
            d, s = sample_perturbations(self.train_y, self.train_y, self.K, self.window, length, generator)
            donors.append(d)
            starts.append(s)
        self.bank_donors = torch.cat(donors, 1)[:, : self.bank_size]
        self.bank_starts = torch.cat(starts, 1)[:, : self.bank_size]
        teacher, device = context.teacher.to(context.device), context.device
        rows = max(1, self.chunk // self.bank_size)
        chunks = []
        with eval_mode(teacher), torch.no_grad():
            for i in range(0, n, rows):
                x = self.train_x[i : i + rows].to(device)
                donors_x = self.train_x[self.bank_donors[i : i + rows]].to(device)
                chunks.append(perturbation_saliency(teacher, x, donors_x, self.bank_starts[i : i + rows].to(device),
                                                    self.window, self.tau, self.reduce, chunk=self.chunk).cpu())
        self.bank_saliency = torch.cat(chunks)

    def _draw(self, step: Step) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(donor indices, starts, teacher saliency or None) for this batch, drawn from per-sample
        streams keyed by (seed, step, index): the same however the batch is split across processes."""
        batch = step.batch
        streams = step.state.streams(batch.index, self.salt ^ self.seed)
        if self.bank_saliency.numel():
            index = batch.index.to(self.bank_donors.device)
            k = min(self.K, self.bank_donors.shape[1])
            pick = streams(self.bank_donors.shape[1]).to(index.device).argsort(1)[:, :k]
            rows = index[:, None]
            return self.bank_donors[rows, pick], self.bank_starts[rows, pick], self.bank_saliency[rows, pick]
        donors, starts = sample_perturbations(batch.y, self.train_y, self.K, self.window, batch.x.shape[-1],
                                              uniform=streams)
        return donors, starts, None

    def loss(self, step: Step) -> torch.Tensor:
        if self.train_x.numel() == 0:
            raise RuntimeError("tsd.prepare() must run before training (the engine does this)")
        x = step.batch.x
        donors, starts, teacher_s = self._draw(step)
        donors_x = self.train_x[donors.to(self.train_x.device)].to(x)
        starts = starts.to(x.device)
        if teacher_s is None:
            with eval_mode(step.teacher), torch.no_grad():
                teacher_s = perturbation_saliency(step.teacher, x, donors_x, starts, self.window, self.tau,
                                                  self.reduce, clean_logits=step.teacher_logits, chunk=self.chunk)
        student_s = perturbation_saliency(step.student, x, donors_x, starts, self.window, self.tau, self.reduce,
                                          clean_logits=step.student_logits, chunk=self.chunk)
        return saliency_loss(student_s, teacher_s.to(student_s))


# -- earlier variants: window occlusion / input×gradient saliency with a distance -------------------------
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


class WindowSaliencyTSD(Term):
    """``D(student window saliency, teacher window saliency)`` (not the published TSD).

    Occlusion saliency costs ``n_windows + 1`` student forwards per sample; ``batch_fraction``
    matches saliency on only that share of each (shuffled) batch to trade alignment for speed.
    """

    name = "tsd"

    legacy_options = _LEGACY

    def __init__(self, saliency: str = "occlusion", window: int = 5, distance: str = "cosine",
                 tau: float = 1.0, target: str = "label", batch_fraction: float = 1.0, batch_size: int = 128) -> None:
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
        target = step.batch.y if self.target == "label" else step.teacher_logits.argmax(1)
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
def tsd_published(lam: float = 1.0, perturbations: int = 50, window: int = 10, tau: float = 8.0,
                  **options: Any) -> list:
    """The paper's student objective (official ``run_student.sh``: task ratio 1, Hinton ratio 0): ``CE + λ·L_TSD``,
    K=50 windows of 10 steps, τ=8. Other tsd options (bank, chunk, reduce) pass through."""
    return ["ce", {"name": "tsd", "weight": lam, "perturbations": perturbations, "window": window, "tau": tau,
                   **options}]
