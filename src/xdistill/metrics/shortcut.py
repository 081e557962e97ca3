"""Does a model follow the evidence or the shortcut? Accuracy where the spurious cue lies or is gone, and how often
its predictions follow the cue (``data/shortcut.py``). No explainer is involved."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def shortcut_metrics(student: nn.Module, teacher: nn.Module, test: Any) -> dict[str, float]:
    """For a test split with a cue (``test.shortcut``): student and teacher accuracy on each variant
    (``student_accuracy_flipped``, ``teacher_accuracy_none``...) and ``cue_reliance`` (``teacher_cue_reliance``):
    the share of the ``flipped`` variant's predictions that name the class the cue points to (chance: 1/(K−1) of
    the wrong answers). Empty when the split has no cue."""
    from . import accuracy, predict

    if getattr(test, "shortcut", None) is None:
        return {}
    out: dict[str, float] = {}
    for variant, (x, cue) in test.shortcut.variants.items():
        for who, model in (("student", student), ("teacher", teacher)):
            predicted = predict(model, x)
            out[f"{who}_accuracy_{variant}"] = accuracy(predicted, test.y)
            if variant == "flipped":
                key = "cue_reliance" if who == "student" else "teacher_cue_reliance"
                out[key] = float((predicted.argmax(1) == cue).double().mean())
    return out


def cue_mass(attributions: torch.Tensor, cue_mask: torch.Tensor, evidence_mask: torch.Tensor) -> dict[str, float]:
    """Mean share of each sample's absolute attribution that falls on the cue and on the evidence (input
    positions; channels summed)."""
    a = attributions.abs().reshape(attributions.shape[0], -1, attributions.shape[-1]).sum(1)
    total = a.sum(1).clamp_min(1e-12)
    return {
        "attribution_on_cue": float(((a * cue_mask).sum(1) / total).mean()),
        "attribution_on_evidence": float(((a * evidence_mask).sum(1) / total).mean()),
    }
