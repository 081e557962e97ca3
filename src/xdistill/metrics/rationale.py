"""Rationale metrics for select-predict models: the selected parts against known masks and the teacher's."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..explain import eval_mode


def selected_parts(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """(N, n_parts) boolean evaluation masks (keep probability ≥ 0.5) of a rationale model."""
    masks = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            output = model.forward_structured(x[start : start + batch_size])  # type: ignore[operator]
            masks.append(output.mask.detach().cpu() > 0.5)
    return torch.cat(masks)


def parts_of_mask(mask: torch.Tensor, kind: str, part_size: int) -> torch.Tensor:
    """A ground-truth mask over steps / pixels / tokens -> (N, n_parts): a part counts if any of it is marked."""
    mask = mask.float()
    if kind == "window":
        return F.max_pool1d(mask.reshape(mask.shape[0], 1, -1), part_size, part_size, ceil_mode=True).flatten(1) > 0.5
    if kind == "patch":
        return (
            F.max_pool2d(
                mask.reshape(mask.shape[0], 1, *mask.shape[-2:]), part_size, part_size, ceil_mode=True
            ).flatten(1)
            > 0.5
        )
    return mask.reshape(mask.shape[0], -1) > 0.5


def _precision_recall(selected: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    hit = (selected & truth).sum().item()
    return hit / max(1, selected.sum().item()), hit / max(1, truth.sum().item())


def rationale_metrics(
    teacher: nn.Module, student: nn.Module, x: torch.Tensor, truth: torch.Tensor | None = None
) -> dict[str, float]:
    """Share of parts kept, precision/recall of the student's (and teacher's) rationale against ``truth``,
    and the IoU of the student's with the teacher's, per sample then averaged."""
    s_mask = selected_parts(student, x)
    out = {"rationale_ratio": s_mask.float().mean().item()}
    t_mask = selected_parts(teacher, x) if hasattr(teacher, "forward_structured") else None
    if t_mask is not None and t_mask.shape == s_mask.shape:
        union = (s_mask | t_mask).sum(1).clamp(min=1).float()
        out["rationale_iou_teacher"] = ((s_mask & t_mask).sum(1).float() / union).mean().item()
    if truth is not None:
        parts = parts_of_mask(truth, str(student.kind), int(student.selector.part_size))  # type: ignore[union-attr, arg-type]
        if parts.shape == s_mask.shape:
            out["rationale_precision"], out["rationale_recall"] = _precision_recall(s_mask, parts)
            if t_mask is not None and t_mask.shape == parts.shape:
                out["teacher_rationale_precision"], out["teacher_rationale_recall"] = _precision_recall(t_mask, parts)
    return out
