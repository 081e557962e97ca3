"""TSD's perturbations as published: copies of each series with a window swapped in from a series of another
class, and the per-class saliency ``τ² p_c(x)(log p_c(x) − log p_c(x̃))`` of a model on them."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..explain._common import default_rows


def sample_perturbations(
    y: torch.Tensor,
    train_y: torch.Tensor,
    K: int,
    window: int,
    length: int,
    generator: torch.Generator | None = None,
    uniform: Callable[[int], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Donor indices into the training set and window starts, both (B, K') with K' = min(K, length − window).

    Donors of sample i are training series of another class: distinct ones when at least K (the
    requested number, not K') exist, otherwise drawn with replacement — the official
    ``get_pertubed_timeseries`` rule (``randperm`` if ``K <= candidates`` else ``randint``). Starts are
    distinct, uniform in [0, length − window). ``uniform(n)`` -> (B, n) uniforms is the source of
    randomness (default: ``torch.rand`` with ``generator``; the method passes per-sample streams, see
    ``keyed_random``). Cost O(B·(T + K²)), independent of the training-set size N: distinct donors are
    K ranks among the candidates by Floyd's algorithm, mapped to indices through the class-sorted
    training set (a uniform K-subset; paired with uniformly ordered starts, as the official draws are).
    """
    if not 1 <= window < length:
        raise ValueError(f"window must be in [1, series length {length}), got {window}")
    batch, device = y.shape[0], train_y.device
    if uniform is None:

        def uniform(n: int) -> torch.Tensor:
            return torch.rand(batch, n, generator=generator)

    k = min(K, length - window)
    starts = uniform(length - window).cpu().argsort(1)[:, :k]
    y, train_y = y.cpu().long(), train_y.cpu().long()
    by_class = torch.argsort(train_y, stable=True)  # training indices grouped by class
    class_counts = torch.bincount(train_y, minlength=int(max(train_y.max(), y.max())) + 1)
    first = torch.cumsum(class_counts, 0) - class_counts  # where each class starts in by_class
    own_first, own_count = first[y][:, None], class_counts[y][:, None]
    candidates = len(train_y) - own_count[:, 0]  # (B,) series of another class
    if (candidates == 0).any():
        raise ValueError("tsd needs training series of at least two classes (a donor must be of another class)")
    draws = uniform(k).cpu()
    few = candidates < K
    ranks = _distinct_ranks(candidates.clamp(min=k), draws)
    if few.any():  # with replacement: a uniform rank among the candidates
        ranks = torch.where(
            few[:, None], (draws * candidates[:, None]).long().clamp(max=candidates[:, None] - 1), ranks
        )
    positions = ranks + (ranks >= own_first).long() * own_count  # skip the sample's own class
    return by_class[positions].to(device), starts.to(device)


def _distinct_ranks(m: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Floyd's algorithm, vectorised over rows: (B, k) distinct ranks in [0, m_b), a uniform k-subset per row."""
    batch, k = u.shape
    chosen = torch.empty(batch, k, dtype=torch.long)
    for t in range(k):
        top = m - k + t  # draw in [0, top]; take top itself if the draw was taken before
        r = (u[:, t] * (top + 1).to(u.dtype)).long().clamp(max=top)
        taken = (chosen[:, :t] == r[:, None]).any(1)
        chosen[:, t] = torch.where(taken, top, r)
    return chosen


def perturb(x: torch.Tensor, donors_x: torch.Tensor, starts: torch.Tensor, window: int) -> torch.Tensor:
    """(B, C, T), donors (B, K, C, T), starts (B, K) -> (B, K, C, T): each copy with its window swapped in."""
    steps = torch.arange(x.shape[-1], device=x.device)
    inside = (steps >= starts[..., None]) & (steps < starts[..., None] + window)  # (B, K, T)
    return torch.where(inside[:, :, None, :], donors_x, x[:, None])


def has_batch_statistics(model: nn.Module) -> bool:
    """True when a forward pass normalises with the batch's own statistics (BatchNorm in training mode):
    then splitting the batch would change the result."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules())


def forward_copies(model: nn.Module, copies: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """The model's logits on ``copies``, ``chunk`` rows at a time (``None``: the library's choice). A model
    that normalises with batch statistics gets every copy in one call, as the official code forwards them."""
    if has_batch_statistics(model):
        return model(copies)
    chunk = chunk or default_rows(copies.device)
    if copies.shape[0] <= chunk:
        return model(copies)
    return torch.cat([model(copies[i : i + chunk]) for i in range(0, copies.shape[0], chunk)])


def perturbation_saliency(
    model: nn.Module,
    x: torch.Tensor,
    donors_x: torch.Tensor,
    starts: torch.Tensor,
    window: int,
    tau: float = 8.0,
    reduce: str = "none",
    clean_logits: torch.Tensor | None = None,
    chunk: int | None = None,
) -> torch.Tensor:
    """Unnormalised TSD saliency ``S`` (B, K, classes), or (B, K) with ``reduce="sum"``.

    ``S_ikc = τ² p_c(x_i) (log p_c(x_i) − log p_c(x̃_ik))``, ``p = softmax(logits/τ)``. Runs the
    model as it is (mode and grad mode are the caller's); ``clean_logits`` reuses a forward
    pass of ``x`` already made. The B·K copies go through ``forward_copies``.
    """
    if reduce not in ("none", "sum"):
        raise ValueError(f"reduce must be 'none' or 'sum', got {reduce!r}")
    batch, k = starts.shape
    copies = perturb(x, donors_x, starts, window).reshape((batch * k,) + tuple(x.shape[1:]))
    clean = model(x) if clean_logits is None else clean_logits
    log_p = F.log_softmax(clean / tau, dim=-1)[:, None, :]  # (B, 1, classes)
    log_q = F.log_softmax(forward_copies(model, copies, chunk) / tau, dim=-1).reshape(batch, k, -1)
    saliency = tau**2 * log_p.exp() * (log_p - log_q)
    return saliency.sum(-1) if reduce == "sum" else saliency
