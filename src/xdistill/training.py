"""A plain supervised training loop (used by the demo and to make teachers in tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .data import ArrayDataset
from .progress import Bar, progress_bar


@dataclass
class History:
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)


def train_classifier(
    model: nn.Module,
    data: ArrayDataset,
    *,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 32,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    label: str = "train",
) -> History:
    """Adam + cosine schedule on cross-entropy; returns per-epoch mean loss and training accuracy."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(data.x, data.y), batch_size=batch_size, shuffle=True, generator=generator)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(loader))
    history = History()
    with progress_bar(label, epochs, progress) as bar:
        _epochs(model, loader, optimizer, schedule, epochs, device, history, bar)
    model.eval()
    return history


def _epochs(model, loader, optimizer, schedule, epochs: int, device, history: History, bar: Bar) -> None:
    for _ in range(epochs):
        total, correct, count = 0.0, 0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            count += len(y)
        history.loss.append(total / count)
        history.accuracy.append(correct / count)
        bar.advance(1, note=f"loss {history.loss[-1]:.4f} acc {history.accuracy[-1]:.3f}")
