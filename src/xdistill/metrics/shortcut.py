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


def cue_mass(
    attributions: torch.Tensor, cue_mask: torch.Tensor, evidence_mask: torch.Tensor | None = None
) -> dict[str, float]:
    """Mean share of each sample's absolute attribution that falls on the cue (and on the evidence, when its mask is
    known); channels are summed when the masks have none."""
    a = attributions.abs().float()
    if a.ndim == cue_mask.ndim + 1:
        a = a.sum(1)
    a = a.flatten(1)
    total = a.sum(1).clamp_min(1e-12)
    out = {"attribution_on_cue": float(((a * cue_mask.flatten(1)).sum(1) / total).mean())}
    if evidence_mask is not None:
        out["attribution_on_evidence"] = float(((a * evidence_mask.flatten(1)).sum(1) / total).mean())
    return out


def explainer_masses(teacher: nn.Module, student: nn.Module, test: Any, config: Any, limit: int) -> dict[str, float]:
    """Which explainers see the shortcut: under each explainer of the evaluation (``config.explainers()``), the
    student's and the teacher's attribution mass on the cue and on the evidence, for the label, over the first
    ``limit`` test samples (``attribution_on_cue@<explainer>``, ``teacher_attribution_on_cue@<explainer>``...)."""
    from .. import explain as xe

    if getattr(test, "shortcut", None) is None:
        return {}
    x, y = test.x[:limit], test.y[:limit]
    cue = test.shortcut.cue_mask[:limit]
    evidence = test.rationale[:limit] if test.rationale is not None else None
    out: dict[str, float] = {}
    for label, settings in config.explainers().items():
        for prefix, model in (("", student), ("teacher_", teacher)):
            attribution = xe.explain(model, x, y, method=settings.explainer, **settings.explainer_options)
            mass = cue_mass(attribution.detach(), cue, evidence)
            out.update({f"{prefix}{key}@{label}": value for key, value in mass.items()})
    return out
