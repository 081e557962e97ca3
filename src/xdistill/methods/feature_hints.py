"""Layer-wise baselines on intermediate features read through forward hooks:
FitNets hints (Romero et al. 2015) and Attention Transfer (Zagoruyko & Komodakis 2017)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..explain import eval_mode
from ..hooks import FeatureHooks
from .base import TERMS, PrepareContext, Step, Term


def _pairs(layers: Mapping[str, str] | Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """``{"student.path": "teacher.path"}`` or ``[[student, teacher], ...]``."""
    pairs = list(layers.items()) if isinstance(layers, Mapping) else [tuple(p) for p in layers]
    if not pairs or any(len(p) != 2 for p in pairs):
        raise ValueError(
            "layers must map student module paths to teacher module paths, e.g. {'features.1': 'features.2'}"
        )
    return [(str(s), str(t)) for s, t in pairs]


def _match_size(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Resize the student's spatial/temporal dims to the teacher's (adaptive average pooling)."""
    if student.shape[2:] == teacher.shape[2:]:
        return student
    pool: Any = {3: F.adaptive_avg_pool1d, 4: F.adaptive_avg_pool2d}.get(student.ndim)
    if pool is None:
        raise ValueError(f"cannot match feature shapes {tuple(student.shape)} and {tuple(teacher.shape)}")
    return pool(student, teacher.shape[2:])


def _regressor(student_shape: torch.Size, teacher_shape: torch.Size) -> nn.Module:
    """A learned 1x1 map from student channels to teacher channels."""
    s, t = student_shape[1], teacher_shape[1]
    if len(student_shape) == 2:
        return nn.Linear(s, t, bias=False)
    conv = {3: nn.Conv1d, 4: nn.Conv2d}.get(len(student_shape))
    if conv is None:
        raise ValueError(f"unsupported feature shape {tuple(student_shape)}")
    return conv(s, t, kernel_size=1, bias=False)


def probe_shapes(context: PrepareContext, student_layers, teacher_layers) -> tuple[dict, dict]:
    """Run two training samples through both models and record the hooked feature shapes."""
    x = context.train_x[:2].to(context.device)
    shapes = []
    for model, layers in ((context.student, student_layers), (context.teacher, teacher_layers)):
        if model is None:
            raise ValueError("feature distillation needs a teacher")
        with FeatureHooks(model, layers) as hooks, eval_mode(model), torch.no_grad():
            model(x)
            shapes.append({k: v.shape for k, v in hooks.features.items()})
    return shapes[0], shapes[1]


@TERMS.register("fitnets")
class FitNets(Term):
    """MSE between regressor(student feature) and the teacher feature, averaged over layer pairs.

    The 1x1 regressors are learnable parts beside the student (``extra_parameters``)."""

    name = "fitnets"

    def __init__(self, layers: Mapping[str, str] | Sequence[Sequence[str]]) -> None:
        super().__init__()
        self.pairs = _pairs(layers)
        self.student_layers = tuple(s for s, _ in self.pairs)
        self.teacher_layers = tuple(t for _, t in self.pairs)
        self.regressors = nn.ModuleList()

    def prepare(self, context: PrepareContext) -> None:
        s_shapes, t_shapes = probe_shapes(context, self.student_layers, self.teacher_layers)
        self.regressors = nn.ModuleList(_regressor(s_shapes[s], t_shapes[t]) for s, t in self.pairs)

    def loss(self, step: Step) -> torch.Tensor:
        if len(self.regressors) != len(self.pairs):
            raise RuntimeError("fitnets.prepare() must run before training (the engine does this)")
        total = torch.zeros(())
        for (s, t), regressor in zip(self.pairs, self.regressors):
            teacher = step.teacher_features[t].detach()
            student = _match_size(regressor(step.student_features[s]), teacher)
            total = total + F.mse_loss(student, teacher)
        return total / len(self.pairs)


def attention_map(feature: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Spatial attention: channel mean of |f|^p, (B, C, ...) -> (B, ...)."""
    return feature.abs().pow(p).mean(1)


@TERMS.register("attention_transfer")
class AttentionTransfer(Term):
    """``½ · mean((Q_s/‖Q_s‖ − Q_t/‖Q_t‖)²)`` summed over layer pairs; the authors' code weights it by β=1000."""

    name = "attention_transfer"

    legacy_options = {"beta": "β is now the term's weight: write {name: attention_transfer, weight: β} (authors: 1000)"}

    def __init__(self, layers: Mapping[str, str] | Sequence[Sequence[str]], p: float = 2.0) -> None:
        super().__init__()
        self.pairs = _pairs(layers)
        self.p = p
        self.student_layers = tuple(s for s, _ in self.pairs)
        self.teacher_layers = tuple(t for _, t in self.pairs)

    def loss(self, step: Step) -> torch.Tensor:
        total = torch.zeros(())
        for s, t in self.pairs:
            q_t = attention_map(step.teacher_features[t].detach(), self.p)
            q_s = attention_map(step.student_features[s], self.p)
            if q_s.shape[1:] != q_t.shape[1:]:
                q_s = _match_size(q_s.unsqueeze(1), q_t.unsqueeze(1)).squeeze(1)
            diff = F.normalize(q_s.flatten(1), dim=1) - F.normalize(q_t.flatten(1), dim=1)
            total = total + diff.pow(2).mean()
        return total / 2
