"""Per-sample agreement between a teacher's and a student's outputs or part importances.

Every function takes two (B, n) tensors and returns a (B,) float64 tensor.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata


def _pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two (batch, n) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return a.detach().double().cpu(), b.detach().double().cpu()


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Pearson correlation; NaN for a constant row."""
    a, b = _pair(a, b)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    denom = a.norm(dim=1) * b.norm(dim=1)
    out = (a * b).sum(1) / denom
    return torch.where(denom > 0, out, torch.full_like(out, float("nan")))


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Spearman rank correlation (ties get their average rank); NaN for a constant row."""
    a, b = _pair(a, b)
    ranks_a = torch.from_numpy(rankdata(a.numpy(), axis=1).astype(np.float64))
    ranks_b = torch.from_numpy(rankdata(b.numpy(), axis=1).astype(np.float64))
    return pearson(ranks_a, ranks_b)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity; NaN when either row is all zeros."""
    a, b = _pair(a, b)
    denom = a.norm(dim=1) * b.norm(dim=1)
    out = (a * b).sum(1) / denom
    return torch.where(denom > 0, out, torch.full_like(out, float("nan")))


def _topk_index(values: torch.Tensor, k: int) -> torch.Tensor:
    if not 1 <= k <= values.shape[1]:
        raise ValueError(f"k must be between 1 and the number of parts {values.shape[1]}, got {k}")
    return values.topk(k, dim=1).indices


def topk_focus(student: torch.Tensor, teacher: torch.Tensor, k: int) -> torch.Tensor:
    """Share of the student's absolute attribution mass inside the teacher's top-k parts."""
    student, teacher = _pair(student, teacher)
    mass = student.abs()
    inside = mass.gather(1, _topk_index(teacher, k)).sum(1)
    total = mass.sum(1)
    return torch.where(total > 0, inside / total, torch.full_like(total, float("nan")))


def topk_focus_ratio(student: torch.Tensor, teacher: torch.Tensor, k: int) -> torch.Tensor:
    """Student attribution mass inside the teacher's top-k parts divided by the mass outside them
    ("where models look": > 1 means the student concentrates on the teacher's evidence)."""
    student, teacher = _pair(student, teacher)
    mass = student.abs()
    inside = mass.gather(1, _topk_index(teacher, k)).sum(1)
    outside = mass.sum(1) - inside
    return torch.where(outside > 0, inside / outside, torch.full_like(outside, float("nan")))


def topk_iou(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """Intersection over union of the two top-k part sets."""
    a, b = _pair(a, b)
    mask_a = torch.zeros_like(a, dtype=torch.bool).scatter_(1, _topk_index(a, k), True)
    mask_b = torch.zeros_like(b, dtype=torch.bool).scatter_(1, _topk_index(b, k), True)
    inter = (mask_a & mask_b).sum(1).double()
    return inter / (mask_a | mask_b).sum(1).double()


def kl_divergence(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(p_teacher || p_student) per sample, from logits, at a temperature."""
    t, s = _pair(teacher_logits, student_logits)
    log_pt = torch.log_softmax(t / temperature, dim=1)
    log_ps = torch.log_softmax(s / temperature, dim=1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(1)


def top1_agreement(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """1.0 where teacher and student predict the same class, else 0.0."""
    t, s = _pair(teacher_logits, student_logits)
    return (t.argmax(1) == s.argmax(1)).double()
