"""Accuracy and macro-F1 from predictions and labels."""

from __future__ import annotations

import torch


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of correct predictions; ``predictions`` are class indices or (B, K) logits."""
    predictions = _as_classes(predictions)
    return (predictions == labels.cpu()).double().mean().item()


def macro_f1(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over the classes present in labels or predictions.

    Matches ``sklearn.metrics.f1_score(average="macro")``: a class with no true and no
    predicted samples is left out; one with zero precision and recall counts as 0.
    """
    predictions, labels = _as_classes(predictions), labels.cpu().long()
    k = num_classes or int(max(predictions.max(), labels.max()).item()) + 1
    confusion = torch.bincount(labels * k + predictions, minlength=k * k).reshape(k, k).double()
    tp = confusion.diag()
    support = confusion.sum(1) + confusion.sum(0)  # = 2tp + fn + fp
    present = support > 0
    f1 = torch.where(present, 2 * tp / support.clamp(min=1), torch.zeros_like(tp))
    return f1[present].mean().item()


def _as_classes(predictions: torch.Tensor) -> torch.Tensor:
    predictions = predictions.detach().cpu()
    return predictions.argmax(1) if predictions.ndim == 2 else predictions.long()


def average_precision(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """Area under the precision-recall curve as a step sum (sklearn's ``average_precision_score``).

    Ties in ``scores`` are one threshold; NaN when there is no positive sample.
    """
    scores, positives = scores.detach().cpu().double(), positives.detach().cpu().bool()
    total = int(positives.sum())
    if total == 0:
        return float("nan")
    order = torch.argsort(scores, descending=True, stable=True)
    s, p = scores[order], positives[order].double()
    last_of_tie = torch.cat([s[1:] != s[:-1], torch.tensor([True])])
    tp = p.cumsum(0)[last_of_tie]
    seen = torch.arange(1, len(s) + 1, dtype=torch.float64)[last_of_tie]
    precision, recall = tp / seen, tp / total
    previous = torch.cat([torch.zeros(1, dtype=torch.float64), recall[:-1]])
    return float(((recall - previous) * precision).sum())


def macro_auc_pr(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Macro AUC-PR: one-vs-rest average precision of each class's softmax score, averaged over the
    classes present in ``labels`` (the TSD paper's second metric)."""
    probs = torch.softmax(logits.detach().cpu().double(), dim=1)
    labels = labels.cpu().long()
    values = [average_precision(probs[:, c], labels == c) for c in range(probs.shape[1]) if (labels == c).any()]
    return float(sum(values) / len(values))
