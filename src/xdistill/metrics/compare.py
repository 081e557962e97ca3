"""Teacher-vs-student evaluation on held-out data: fidelity, alignment, accuracy, cost."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .. import explain as xe
from ..parts import to_parts
from . import alignment
from .classification import accuracy, macro_auc_pr, macro_f1
from .efficiency import compression_ratio, flops, latency, parameter_count


@dataclass(frozen=True)
class Summary:
    """Mean and standard deviation of a per-sample metric (NaN samples left out)."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: torch.Tensor) -> "Summary":
        values = values.double()
        values = values[~torch.isnan(values)]
        if values.numel() == 0:
            return cls(math.nan, math.nan, 0)
        std = values.std(unbiased=False).item() if values.numel() > 1 else 0.0
        return cls(values.mean().item(), std, values.numel())

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.std:.3f}"


@dataclass
class AlignmentConfig:
    """How reasons are compared: which explainer, which parts, which class, which k."""

    explainer: str = "integrated_gradients"
    explainer_options: dict[str, Any] = field(default_factory=dict)
    parts: str = "timestep"
    part_options: dict[str, Any] = field(default_factory=dict)
    k: int = 5
    target: str = "teacher"  # explain the teacher's predicted class ("label": the true class)
    flip_steps: int | None = 20  # pixel-flipping removal points (None: one part at a time; 0: skip)

    def __post_init__(self) -> None:
        if self.target not in ("teacher", "label"):
            raise ValueError(f"target must be 'teacher' or 'label', got {self.target!r}")
        xe.EXPLAINERS.get(self.explainer)


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int):
    for start in range(0, x.shape[0], batch_size):
        yield x[start : start + batch_size], y[start : start + batch_size]


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256, device: str | torch.device = "cpu") -> torch.Tensor:
    """Logits for every row of ``x`` (eval mode, no grad), on the CPU."""
    outputs = []
    with xe.eval_mode(model), torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            outputs.append(model(x[start : start + batch_size].to(device)).float().cpu())
    return torch.cat(outputs)


def part_importances(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, config: AlignmentConfig,
    batch_size: int = 64, device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Explain every row of ``x`` for ``target`` and reduce the maps to (N, n_parts)."""
    rows = []
    for xb, tb in _batches(x, target, batch_size):
        attr = xe.explain(model, xb.to(device), tb.to(device), method=config.explainer, **config.explainer_options)
        rows.append(to_parts(attr.detach(), config.parts, **config.part_options).cpu())
    return torch.cat(rows)


def alignment_metrics(
    teacher_logits: torch.Tensor, student_logits: torch.Tensor,
    teacher_parts: torch.Tensor | None = None, student_parts: torch.Tensor | None = None, k: int = 5,
) -> dict[str, Summary]:
    """Fidelity from logits and, when part importances are given, explanation alignment."""
    out = {
        "agreement": Summary.of(alignment.top1_agreement(teacher_logits, student_logits)),
        "kl": Summary.of(alignment.kl_divergence(teacher_logits, student_logits)),
        "logit_spearman": Summary.of(alignment.spearman(teacher_logits, student_logits)),
    }
    if teacher_parts is not None and student_parts is not None:
        out.update(
            saliency_spearman=Summary.of(alignment.spearman(teacher_parts, student_parts)),
            topk_focus=Summary.of(alignment.topk_focus(student_parts, teacher_parts, k)),
            topk_focus_ratio=Summary.of(alignment.topk_focus_ratio(student_parts, teacher_parts, k)),
            topk_iou=Summary.of(alignment.topk_iou(teacher_parts, student_parts, k)),
            cosine=Summary.of(alignment.cosine(teacher_parts, student_parts)),
        )
    return out


def evaluate_pair(
    teacher: nn.Module, student: nn.Module, x: torch.Tensor, y: torch.Tensor,
    config: AlignmentConfig | None = None, *, batch_size: int = 64, device: str | torch.device = "cpu",
    cost: bool = True,
) -> dict[str, Any]:
    """Every teacher-vs-student figure on ``(x, y)``; per-sample metrics as :class:`Summary`."""
    config = config or AlignmentConfig()
    t_logits = predict(teacher, x, batch_size, device)
    s_logits = predict(student, x, batch_size, device)
    target = t_logits.argmax(1) if config.target == "teacher" else y
    t_parts = part_importances(teacher, x, target, config, batch_size, device)
    s_parts = part_importances(student, x, target, config, batch_size, device)
    result: dict[str, Any] = {
        "teacher_accuracy": accuracy(t_logits, y),
        "student_accuracy": accuracy(s_logits, y),
        "teacher_macro_f1": macro_f1(t_logits, y),
        "student_macro_f1": macro_f1(s_logits, y),
        "teacher_auc_pr": macro_auc_pr(t_logits, y),
        "student_auc_pr": macro_auc_pr(s_logits, y),
        **alignment_metrics(t_logits, s_logits, t_parts, s_parts, config.k),
    }
    if config.flip_steps != 0:
        result.update(flipping_metrics(teacher, student, x, target, t_parts, s_parts, config, device))
    if cost:
        result.update(cost_metrics(teacher, student, x[:1].to(device)))
    return result


def flipping_metrics(teacher: nn.Module, student: nn.Module, x: torch.Tensor, target: torch.Tensor,
                     t_parts: torch.Tensor, s_parts: torch.Tensor, config: AlignmentConfig,
                     device: str | torch.device = "cpu") -> dict[str, Summary]:
    """Deletion AUCs (lower = the ranking is more faithful): each model in its own order, and the
    student in the teacher's order (does it rely on what the teacher relies on?)."""
    from .faithfulness import pixel_flipping

    if config.parts not in ("window", "timestep", "patch", "pixel") or x.is_floating_point() is False:
        return {}
    x, target = x.to(device), target.to(device)

    def auc(model: nn.Module, parts: torch.Tensor) -> Summary:
        return Summary.of(pixel_flipping(model, x, target, parts.to(device), config.parts, config.part_options,
                                         config.flip_steps))

    return {"flip_auc_teacher": auc(teacher, t_parts), "flip_auc_student": auc(student, s_parts),
            "flip_auc_student_teacher_order": auc(student, t_parts)}


def cost_metrics(teacher: nn.Module, student: nn.Module, example: torch.Tensor) -> dict[str, float]:
    """Parameter counts, compression, FLOPs and latency at batch 1 and 64 for both models."""
    out: dict[str, float] = {
        "teacher_params": parameter_count(teacher),
        "student_params": parameter_count(student),
        "compression": compression_ratio(teacher, student),
        "teacher_flops": flops(teacher, example),
        "student_flops": flops(student, example),
    }
    for batch in (1, 64):
        xb = example[:1].expand((batch,) + tuple(example.shape[1:])).contiguous()
        t, s = latency(teacher, xb), latency(student, xb)
        out[f"teacher_latency_b{batch}_ms"] = 1e3 * t
        out[f"student_latency_b{batch}_ms"] = 1e3 * s
        out[f"speedup_b{batch}"] = t / s
    return out


def to_jsonable(result: dict[str, Any]) -> dict[str, Any]:
    """Summaries become {"mean", "std", "n"} dicts; everything else is kept."""
    return {k: asdict(v) if isinstance(v, Summary) else v for k, v in result.items()}
