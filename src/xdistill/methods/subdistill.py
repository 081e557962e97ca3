"""SubDistill (arXiv 2601.05913): distil only the subtask-relevant subspace of teacher layers.

As published (``basis="prca"``, the default; official code p16i/subdistill, ``PRCAPosDef`` and
the ``basis-center-rotationv2`` policy), per layer pair:

1. on the subtask training data the teacher's activations ``a`` (20 random positions per
   image, every position of a series) and ``c = ∂(top1 − top2 subtask logit)/∂a`` at the same
   positions are collected through forward hooks; ``a`` is centred by its mean ``μ``;
2. ``M = (Σ_ac + Σ_acᵀ) + 2√(tr Σ_c / tr Σ_a) Σ_a + 2√(tr Σ_a / tr Σ_c) Σ_c``; its eigenvectors
   (float64, descending) are sign-fixed so most projections are positive; ``σ_j = u_jᵀ Σ_a u_j``;
3. ``k`` = the student layer's channels; the teacher target is ``U_kᵀ (a_T − μ)``;
4. the student side is ``R · Centering(a_S)`` and a learnable orthogonal ``k × k`` rotation ``R``,
   in the official order (``distillation_policies/interface.py`` ``Policy.forward``): the larger of the two
   maps is first pooled to the other's spatial size (adaptive average pooling), **then** the student map is
   centred and rotated. In training mode the centring uses batch statistics, so the order matters: centring
   a student map twice the teacher's side before pooling changed the layer term by 57% (float64).
   ``Centering`` is the official ``Centering2D``: ``F.batch_norm`` without affine parameters and with
   a fresh all-ones running variance, so in training mode it subtracts the batch mean **and divides
   by the batch standard deviation** (its comment says "centering" only; we follow the code), and
   in evaluation mode it subtracts the running mean and divides by ``√(1 + eps)``;
5. the ``subdistill`` term = Σ over layer pairs of the batch mean of
   ``Σ_{k,positions} (s − t)² / positions / Σ_{j≤k} σ_j``;
6. the paper's objective is the preset ``subdistill_published``: ``1 · τ² KL`` (τ = 4) +
   ``100 · subdistill``, no CE.

The earlier PCA-and-regressor variant stays as ``basis="pca"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..explain import eval_mode
from ..hooks import FeatureHooks
from ..options import check_options
from ..registry import Registry
from .base import PRESETS, TERMS, PrepareContext, Step, Term
from .feature_hints import _match_size, _pairs, _regressor, probe_shapes

_LEGACY = {
    "layer_weight": "the layer term's λ is now its weight: write {name: subdistill, weight: 100}",
    "kd_weight": "subdistill no longer includes KD: add {name: kd, weight: w, temperature: 4} (or use the preset "
    "subdistill_published)",
    "temperature": "subdistill no longer includes KD: set the temperature on its own kd term",
    "ce_weight": "subdistill no longer includes CE: add {name: ce, weight: w}",
    "alpha": "subdistill no longer includes CE or KD: add ce and kd terms with their weights",
}


@dataclass
class Subspace:
    mean: torch.Tensor  # (C,)
    basis: torch.Tensor  # (C, k), orthonormal columns
    eigenvalues: torch.Tensor  # (C,), descending

    @property
    def k(self) -> int:
        return self.basis.shape[1]


def as_vectors(features: torch.Tensor) -> torch.Tensor:
    """(B, C, ...) -> (B * positions, C): every spatial/temporal position is one channel vector."""
    if features.ndim == 2:
        return features
    return features.flatten(2).transpose(1, 2).reshape(-1, features.shape[1])


def estimate_subspace(
    vectors: torch.Tensor,
    weights: torch.Tensor | None = None,
    k: int | None = None,
    variance: float = 0.9,
    shrinkage: float = 1e-3,
) -> Subspace:
    """Top eigenvectors of the (weighted, shrunk) covariance of ``vectors`` (N, C), in float64.

    ``shrinkage`` blends the covariance with ``trace/C · I`` (keeps it well conditioned when
    N is small); ``k=None`` takes the fewest eigenvectors explaining ``variance`` of the total.
    """
    if not 0.0 < variance <= 1.0:
        raise ValueError(f"variance must be in (0, 1], got {variance}")
    x = vectors.detach().double()
    w = torch.ones(x.shape[0], dtype=torch.float64) if weights is None else weights.detach().double().reshape(-1)
    if w.shape[0] != x.shape[0] or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be one non-negative value per vector, not all zero")
    w = w / w.sum()
    mean = (w[:, None] * x).sum(0)
    centred = x - mean
    cov = (centred * w[:, None]).T @ centred
    dim = cov.shape[0]
    cov = (1 - shrinkage) * cov + shrinkage * cov.trace() / dim * torch.eye(dim, dtype=torch.float64)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    eigenvalues, eigenvectors = eigenvalues.flip(0).clamp_min(0), eigenvectors.flip(1)
    if k is None:
        share = eigenvalues.cumsum(0) / eigenvalues.sum()
        k = int(torch.searchsorted(share, torch.tensor(variance, dtype=torch.float64)).item()) + 1
    if not 1 <= k <= dim:
        raise ValueError(f"k must be between 1 and the layer width {dim}, got {k}")
    return Subspace(mean, eigenvectors[:, :k].contiguous(), eigenvalues)


def coordinates(features: torch.Tensor, subspace_mean: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Project (B, C, ...) features onto the subspace: (B, k, ...) coordinates."""
    moved = features.movedim(1, -1) - subspace_mean
    return (moved @ basis).movedim(-1, 1)


class SubDistillPCA(Term):
    """``basis="pca"`` (not the published method): ``MSE(regressor(f_s), U_kᵀ (f_t − μ))`` averaged over layer
    pairs, U from a PCA."""

    name = "subdistill"

    def __init__(
        self,
        layers: Mapping[str, str] | Sequence[Sequence[str]],
        k: int | None = None,
        variance: float = 0.9,
        shrinkage: float = 1e-3,
        relevance: bool = False,
        batch_size: int = 256,
    ) -> None:
        super().__init__()
        self.pairs = _pairs(layers)
        self.student_layers = tuple(s for s, _ in self.pairs)
        self.teacher_layers = tuple(t for _, t in self.pairs)
        self.k, self.variance, self.shrinkage, self.relevance = k, variance, shrinkage, relevance
        self.batch_size = batch_size
        self.regressors = nn.ModuleList()
        self.subspaces: dict[str, Subspace] = {}

    def prepare(self, context: PrepareContext) -> None:
        teacher = context.teacher
        if teacher is None:
            raise ValueError("subdistill needs a teacher")
        teacher = teacher.to(context.device)
        dtype = next(iter(context.student.parameters()), torch.empty(0)).dtype  # buffers follow the student
        vectors: dict[str, list[torch.Tensor]] = {t: [] for t in self.teacher_layers}
        weights: dict[str, list[torch.Tensor]] = {t: [] for t in self.teacher_layers}
        with FeatureHooks(teacher, self.teacher_layers) as hooks, eval_mode(teacher):
            for start in range(0, context.train_x.shape[0], self.batch_size):
                x = context.train_x[start : start + self.batch_size].to(context.device)
                x.requires_grad_(self.relevance)  # a graph to the activations even if the teacher is frozen
                with torch.set_grad_enabled(self.relevance):
                    logits = teacher(x)
                    feats = {t: hooks.features[t] for t in self.teacher_layers}
                    if self.relevance:  # gradient x activation of the summed subtask logits
                        grads = torch.autograd.grad(logits.sum(), list(feats.values()))
                for i, t in enumerate(self.teacher_layers):
                    vectors[t].append(as_vectors(feats[t].detach()).cpu())
                    if self.relevance:
                        relevance = (feats[t] * grads[i]).detach().abs()
                        relevance = relevance.sum(1) if relevance.ndim > 2 else relevance.sum(1, keepdim=True)
                        weights[t].append(relevance.reshape(-1).cpu())
        for t in self.teacher_layers:
            w = torch.cat(weights[t]) if self.relevance else None
            self.subspaces[t] = estimate_subspace(torch.cat(vectors[t]), w, self.k, self.variance, self.shrinkage)
            self.register_buffer(_key(t, "mean"), self.subspaces[t].mean.to(dtype), persistent=False)
            self.register_buffer(_key(t, "basis"), self.subspaces[t].basis.to(dtype), persistent=False)
        s_shapes, _ = probe_shapes(context, self.student_layers, self.teacher_layers)
        self.regressors = nn.ModuleList(
            _regressor(s_shapes[s], torch.Size((1, self.subspaces[t].k) + tuple(s_shapes[s][2:]))).to(dtype)
            for s, t in self.pairs
        )

    def loss(self, step: Step) -> torch.Tensor:
        if not self.subspaces:
            raise RuntimeError("subdistill.prepare() must run before training (the engine does this)")
        total = step.student_logits.new_zeros(())
        for (s, t), regressor in zip(self.pairs, self.regressors):
            target = coordinates(
                step.teacher_features[t].detach(), getattr(self, _key(t, "mean")), getattr(self, _key(t, "basis"))
            )
            student = _match_size(regressor(step.student_features[s]), target)
            total = total + F.mse_loss(student, target)
        return total / len(self.pairs)


def _key(path: str, what: str) -> str:
    return f"subspace_{what}_" + path.replace(".", "_")


# -- the published method -----------------------------------------------------------------------------------
def prca_basis(activations: torch.Tensor, gradients: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The relevance-aware basis: (U (C, C) with columns in descending eigenvalue order, σ (C,)).

    ``activations`` (N, C) already centred, ``gradients`` (N, C) of the subtask margin at the
    same positions. Eigenvectors of ``(Σ_ac + Σ_acᵀ) + 2√(trΣ_c/trΣ_a)Σ_a + 2√(trΣ_a/trΣ_c)Σ_c``
    in float64, each flipped so that most projections ``a·u`` are positive; ``σ_j = u_jᵀ Σ_a u_j``.
    """
    a, c = activations.detach().double(), gradients.detach().double()
    if a.shape != c.shape or a.ndim != 2:
        raise ValueError(f"activations and gradients must both be (N, C), got {tuple(a.shape)} and {tuple(c.shape)}")
    n = a.shape[0]
    cov_a, cov_c, cov_ac = a.T @ a / n, c.T @ c / n, a.T @ c / n
    tr_a, tr_c = cov_a.trace(), cov_c.trace()
    if tr_a <= 0 or tr_c <= 0:
        raise ValueError("the activations or their gradients are all zero: is the layer dead, or the teacher constant?")
    matrix = (cov_ac + cov_ac.T) + 2 * torch.sqrt(tr_c / tr_a) * cov_a + 2 * torch.sqrt(tr_a / tr_c) * cov_c
    eigenvalues, vectors = torch.linalg.eigh(matrix)
    vectors = vectors[:, eigenvalues.argsort(descending=True)]
    majority_positive = ((a @ vectors) > 0).double().mean(0) > 0.5
    vectors = vectors * torch.where(majority_positive, 1.0, -1.0).to(vectors)
    sigma = ((vectors.T @ cov_a) * vectors.T).sum(1)
    return vectors, sigma


class Centering(nn.Module):
    """The official ``Centering2D``: ``F.batch_norm`` without affine parameters and with a fresh all-ones
    running variance. Training: ``(x − batch mean) / √(batch var + eps)`` (biased variance), running mean
    updated with ``momentum``; evaluation: ``(x − running mean) / √(1 + eps)``. Any (B, C, ...) shape."""

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ones = torch.ones(x.shape[1], device=x.device, dtype=x.dtype)  # discarded: the variance is never tracked
        running_mean: torch.Tensor = self.running_mean  # type: ignore[assignment]
        return F.batch_norm(x, running_mean, ones, None, None, self.training, self.momentum, self.eps)


class Rotation(nn.Module):
    """A learnable orthogonal k × k map over the channel axis (``parametrizations.orthogonal``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.linear = nn.utils.parametrizations.orthogonal(nn.Linear(channels, channels, bias=False))

    @property
    def matrix(self) -> torch.Tensor:
        weight: torch.Tensor = self.linear.weight  # type: ignore[assignment]
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.movedim(1, -1)).movedim(-1, 1)


def align_spatial(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official ``LayerPolicy.align_spatial_dimensions``: the larger map pooled to the smaller one's size."""
    if student.shape[2:] == teacher.shape[2:]:
        return student, teacher
    if student[0, 0].numel() > teacher[0, 0].numel():
        return _match_size(student, teacher), teacher
    return student, _match_size(teacher, student)


def subspace_layer_loss(student: torch.Tensor, target: torch.Tensor, sigma_sum: torch.Tensor | float) -> torch.Tensor:
    """Batch mean of Σ over channels and positions of (s − t)², divided by the positions and by Σσ_j (maps of
    one spatial size: see :func:`align_spatial`)."""
    student, target = align_spatial(student, target)
    positions = student[0, 0].numel()
    return ((student - target) ** 2).flatten(1).sum(1).div(positions).mean() / sigma_sum


def margin_gradients(
    teacher: nn.Module, hooks: FeatureHooks, layers: Sequence[str], x: torch.Tensor
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Teacher activations at ``layers`` and ∂(largest − second-largest logit)/∂activation, per sample."""
    x = x.detach().requires_grad_(True)  # a graph to the activations even though the teacher is frozen
    with torch.enable_grad():
        logits = teacher(x)
        top2 = logits.topk(2, dim=1).values
        feats = {t: hooks.features[t] for t in layers}
        grads = torch.autograd.grad((top2[:, 0] - top2[:, 1]).sum(), list(feats.values()))
    return {t: f.detach() for t, f in feats.items()}, {t: g.detach() for t, g in zip(layers, grads)}


def sample_positions(
    features: torch.Tensor, gradients: torch.Tensor, positions: int | None, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, ...) maps -> (B·P, C) vectors at ``positions`` random locations per sample (all when None)."""
    if features.ndim == 2:
        return features, gradients
    a, c = features.flatten(2), gradients.flatten(2)  # (B, C, L)
    if positions is not None and positions < a.shape[2]:
        pick = torch.rand(a.shape[0], a.shape[2], generator=generator).argsort(1)[:, :positions].to(a.device)
        index = pick[:, None, :].expand(-1, a.shape[1], -1)
        a, c = a.gather(2, index), c.gather(2, index)
    return a.transpose(1, 2).reshape(-1, a.shape[1]), c.transpose(1, 2).reshape(-1, c.shape[1])


class SubDistillPRCA(Term):
    """The published SubDistill layer term (see the module docstring); the centring and rotation are
    learnable parts beside the student (``extra_parameters``)."""

    name = "subdistill"

    def __init__(
        self,
        layers: Mapping[str, str] | Sequence[Sequence[str]],
        positions: int | None = 20,
        batch_size: int = 256,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.pairs = _pairs(layers)
        self.student_layers = tuple(s for s, _ in self.pairs)
        self.teacher_layers = tuple(t for _, t in self.pairs)
        self.positions, self.batch_size, self.seed = positions, batch_size, seed
        self.centering = nn.ModuleList()
        self.rotations = nn.ModuleList()
        self.bases: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def prepare(self, context: PrepareContext) -> None:
        teacher = context.teacher
        if teacher is None:
            raise ValueError("subdistill needs a teacher")
        teacher = teacher.to(context.device)
        generator = torch.Generator().manual_seed(self.seed)
        acts: dict[str, list[torch.Tensor]] = {t: [] for t in self.teacher_layers}
        grads: dict[str, list[torch.Tensor]] = {t: [] for t in self.teacher_layers}
        with FeatureHooks(teacher, self.teacher_layers) as hooks, eval_mode(teacher):
            for start in range(0, context.train_x.shape[0], self.batch_size):
                x = context.train_x[start : start + self.batch_size].to(context.device)
                feats, grad = margin_gradients(teacher, hooks, self.teacher_layers, x)
                for t in self.teacher_layers:
                    positions = self.positions if feats[t].ndim == 4 else None  # every step of a series
                    a, c = sample_positions(feats[t], grad[t], positions, generator)
                    acts[t].append(a.cpu())
                    grads[t].append(c.cpu())
        s_shapes, _ = probe_shapes(context, self.student_layers, self.teacher_layers)
        dtype = next(iter(context.student.parameters()), torch.empty(0)).dtype  # buffers follow the student
        self.centering, self.rotations = nn.ModuleList(), nn.ModuleList()
        for s, t in self.pairs:
            a = torch.cat(acts[t]).double()
            mean = a.mean(0)
            basis, sigma = prca_basis(a - mean, torch.cat(grads[t]))
            k = s_shapes[s][1]
            if k > basis.shape[1]:
                raise ValueError(
                    f"subdistill: student layer {s!r} has {k} channels, more than the teacher layer "
                    f"{t!r} ({basis.shape[1]}); pair it with a wider teacher layer"
                )
            self.bases[t] = (basis, sigma)
            self.register_buffer(_key(t, "mean"), mean.to(dtype), persistent=False)
            self.register_buffer(_key(t, "basis"), basis[:, :k].to(dtype).contiguous(), persistent=False)
            self.register_buffer(_key(t, "sigma_sum"), sigma[:k].sum().to(dtype), persistent=False)
            self.centering.append(Centering(k).to(dtype))
            self.rotations.append(Rotation(k).to(dtype))

    def target(self, teacher_features: torch.Tensor, layer: str) -> torch.Tensor:
        """``U_kᵀ (a_T − μ)``: the teacher's coordinates in its top-k relevance-aware directions."""
        return coordinates(
            teacher_features.detach(), getattr(self, _key(layer, "mean")), getattr(self, _key(layer, "basis"))
        )

    def loss(self, step: Step) -> torch.Tensor:
        if not len(self.rotations):
            raise RuntimeError("subdistill.prepare() must run before training (the engine does this)")
        total = step.student_logits.new_zeros(())
        for (s, t), centre, rotate in zip(self.pairs, self.centering, self.rotations):
            # the official order: pool to one spatial size, then centre (batch statistics) and rotate
            student_map, teacher_map = align_spatial(step.student_features[s], step.teacher_features[t])
            total = total + subspace_layer_loss(
                rotate(centre(student_map)), self.target(teacher_map, t), getattr(self, _key(t, "sigma_sum"))
            )
        return total


#: ``basis=`` option of ``subdistill`` -> the class that implements it
SUBDISTILL_VARIANTS: Registry[Callable[..., Term]] = Registry("subdistill basis")
SUBDISTILL_VARIANTS.register("prca")(SubDistillPRCA)
SUBDISTILL_VARIANTS.register("pca")(SubDistillPCA)


@TERMS.register("subdistill")
def SubDistill(layers: Any, basis: str = "prca", **options: Any) -> Term:
    """``subdistill``: the published relevance-aware subspace term by default; ``basis="pca"`` for the PCA variant."""
    variant = SUBDISTILL_VARIANTS.get(basis)
    check_options(variant, options, skip=("layers",), what="subdistill option")
    return variant(layers=layers, **options)


SubDistill.legacy_options = _LEGACY  # type: ignore[attr-defined]


@PRESETS.register("subdistill_published")
def subdistill_published(
    layers: Any, layer_weight: float = 100.0, kd_weight: float = 1.0, temperature: float = 4.0, **options: Any
) -> list:
    """The paper's objective (official ``distillation_policies/ours.py``): ``1 · τ² KL`` (τ=4) + ``100 · Σ layers``,
    no CE. Other subdistill options (positions, batch_size, seed) pass through."""
    return [
        {"name": "kd", "weight": kd_weight, "temperature": temperature},
        {"name": "subdistill", "weight": layer_weight, "layers": layers, **options},
    ]
