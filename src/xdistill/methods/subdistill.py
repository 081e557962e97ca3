"""SubDistill (arXiv 2601.05913): distil only the subtask-relevant subspace of teacher layers.

A one-off pass over the (subtask) training data collects teacher activations at the chosen
layers through forward hooks. Per layer, the top-k eigenvectors of their covariance (float64,
with shrinkage; optionally each sample weighted by its relevance to the subtask logits) span
the subtask subspace; k is chosen by explained variance when not given. Training regresses
the student's features, through a learned 1x1 map, onto the teacher's coordinates in that
subspace, plus KD (on a subtask teacher, i.e. restricted to the subtask logits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..explain import eval_mode
from ..hooks import FeatureHooks
from .base import METHODS, PrepareContext, Step
from .feature_hints import _match_size, _pairs, _regressor, probe_shapes
from .kd import KnowledgeDistillation


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


def estimate_subspace(vectors: torch.Tensor, weights: torch.Tensor | None = None, k: int | None = None,
                      variance: float = 0.9, shrinkage: float = 1e-3) -> Subspace:
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


@METHODS.register("subdistill")
class SubDistill(KnowledgeDistillation):
    """KD on the subtask logits + ``weight · MSE(regressor(f_s), U_kᵀ (f_t − μ))`` per layer pair."""

    def __init__(self, layers: Mapping[str, str] | Sequence[Sequence[str]], k: int | None = None,
                 variance: float = 0.9, shrinkage: float = 1e-3, relevance: bool = False, weight: float = 1.0,
                 temperature: float = 4.0, alpha: float = 0.9, batch_size: int = 256) -> None:
        super().__init__(temperature=temperature, alpha=alpha)
        self.pairs = _pairs(layers)
        self.student_layers = tuple(s for s, _ in self.pairs)
        self.teacher_layers = tuple(t for _, t in self.pairs)
        self.k, self.variance, self.shrinkage, self.relevance = k, variance, shrinkage, relevance
        self.weight, self.batch_size = weight, batch_size
        self.regressors = nn.ModuleList()
        self.subspaces: dict[str, Subspace] = {}

    def prepare(self, context: PrepareContext) -> None:
        teacher = context.teacher
        if teacher is None:
            raise ValueError("subdistill needs a teacher")
        teacher = teacher.to(context.device)
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
            self.register_buffer(_key(t, "mean"), self.subspaces[t].mean.float(), persistent=False)
            self.register_buffer(_key(t, "basis"), self.subspaces[t].basis.float(), persistent=False)
        s_shapes, _ = probe_shapes(context, self.student_layers, self.teacher_layers)
        self.regressors = nn.ModuleList(
            _regressor(s_shapes[s], torch.Size((1, self.subspaces[t].k) + tuple(s_shapes[s][2:]))) for s, t in self.pairs
        )

    def loss(self, step: Step) -> dict[str, torch.Tensor]:
        if not self.subspaces:
            raise RuntimeError("subdistill.prepare() must run before training (the engine does this)")
        terms = super().loss(step)
        total = 0.0
        for (s, t), regressor in zip(self.pairs, self.regressors):
            target = coordinates(step.teacher_features[t].detach(), getattr(self, _key(t, "mean")),
                                 getattr(self, _key(t, "basis")))
            student = _match_size(regressor(step.student_features[s]), target)
            total = total + F.mse_loss(student, target)
        terms["subspace"] = self.weight * total / len(self.pairs)
        return terms


def _key(path: str, what: str) -> str:
    return f"subspace_{what}_" + path.replace(".", "_")
