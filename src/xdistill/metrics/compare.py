"""Teacher-vs-student evaluation on held-out data: fidelity, alignment, accuracy, cost."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import explain as xe
from ..files import DamagedFileError, read_json, read_npz, write_json, write_npz
from ..parts import to_parts
from ..progress import advance
from . import alignment
from .classification import accuracy, macro_auc_pr, macro_f1
from .efficiency import flops, latency, parameter_count


@dataclass(frozen=True)
class Summary:
    """Mean and standard deviation of a per-sample metric (NaN samples left out)."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: torch.Tensor) -> Summary:
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
    #: more explainers, ``{"explainer": name, "explainer_options": {...}}``, to measure alignment under too
    #: (same parts and k): e.g. ones independent of what the method trained on
    also: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.target not in ("teacher", "label"):
            raise ValueError(f"target must be 'teacher' or 'label', got {self.target!r}")
        xe.EXPLAINERS.get(self.explainer)
        for extra in self.also:
            xe.EXPLAINERS.get(extra["explainer"])

    def explainers(self) -> dict[str, AlignmentConfig]:
        """Label -> the settings of each explainer, the main one first (labels: explainer names, numbered
        when one is listed twice)."""
        out: dict[str, AlignmentConfig] = {self.explainer: self}
        for extra in self.also:
            label, n = extra["explainer"], 2
            while label in out:
                label, n = f"{extra['explainer']}#{n}", n + 1
            out[label] = dataclasses.replace(
                self,
                explainer=extra["explainer"],
                explainer_options=dict(extra.get("explainer_options", {})),
                flip_steps=0,
                also=[],
            )
        return out


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int):
    for start in range(0, x.shape[0], batch_size):
        yield x[start : start + batch_size], y[start : start + batch_size]


def predict(
    model: nn.Module, x: torch.Tensor, batch_size: int = 256, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Logits for every row of ``x`` (eval mode, no grad), on the CPU."""
    outputs = []
    with xe.eval_mode(model), torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            outputs.append(model(x[start : start + batch_size].to(device)).float().cpu())
    return torch.cat(outputs)


def part_importances(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    config: AlignmentConfig,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Explain every row of ``x`` for ``target`` and reduce the maps to (N, n_parts)."""
    rows = []
    for xb, tb in _batches(x, target, batch_size):
        attr = xe.explain(model, xb.to(device), tb.to(device), method=config.explainer, **config.explainer_options)
        rows.append(to_parts(attr.detach(), config.parts, **config.part_options).cpu())
        advance(len(xb))
    return torch.cat(rows)


def per_sample_alignment(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    teacher_parts: torch.Tensor | None = None,
    student_parts: torch.Tensor | None = None,
    k: int = 5,
) -> dict[str, torch.Tensor]:
    """Fidelity from logits and, when part importances are given, explanation alignment: one value per sample."""
    out = {
        "agreement": alignment.top1_agreement(teacher_logits, student_logits),
        "kl": alignment.kl_divergence(teacher_logits, student_logits),
        "logit_spearman": alignment.spearman(teacher_logits, student_logits),
    }
    if teacher_parts is not None and student_parts is not None:
        out.update(
            saliency_spearman=alignment.spearman(teacher_parts, student_parts),
            topk_focus=alignment.topk_focus(student_parts, teacher_parts, k),
            topk_focus_ratio=alignment.topk_focus_ratio(student_parts, teacher_parts, k),
            topk_iou=alignment.topk_iou(teacher_parts, student_parts, k),
            cosine=alignment.cosine(teacher_parts, student_parts),
        )
    return out


def alignment_metrics(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    teacher_parts: torch.Tensor | None = None,
    student_parts: torch.Tensor | None = None,
    k: int = 5,
) -> dict[str, Summary]:
    """Fidelity from logits and, when part importances are given, explanation alignment."""
    values = per_sample_alignment(teacher_logits, student_logits, teacher_parts, student_parts, k)
    return {name: Summary.of(v) for name, v in values.items()}


@dataclass
class TeacherSide:
    """What evaluating any student needs from the teacher alone, computed once per (teacher, inputs,
    alignment settings) and shared by every student: logits, the explained class, part importances,
    the per-sample deletion AUC in the teacher's own order, and the teacher's cost."""

    logits: torch.Tensor
    target: torch.Tensor
    parts: torch.Tensor
    flip_auc: torch.Tensor | None = None
    cost: dict[str, float] = field(default_factory=dict)
    #: full attribution maps of the first samples, for a report's examples (optional)
    example_maps: torch.Tensor | None = None
    #: part importances under each further explainer of ``AlignmentConfig.also`` (label -> (N, n_parts))
    other_parts: dict[str, torch.Tensor] = field(default_factory=dict)

    def save(self, path: Path, key: dict[str, Any]) -> None:
        """Arrays to ``path`` (.npz), the key and cost beside it (.json); both written atomically."""
        arrays = {"logits": self.logits.numpy(), "target": self.target.numpy(), "parts": self.parts.numpy()}
        for name in ("flip_auc", "example_maps"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name).numpy()
        arrays.update({f"parts:{label}": parts.numpy() for label, parts in self.other_parts.items()})
        write_npz(path.with_suffix(".npz"), arrays)
        write_json(path.with_suffix(".json"), {"key": key, "cost": self.cost})

    @classmethod
    def load(cls, path: Path, key: dict[str, Any]) -> TeacherSide | None:
        """The saved side when its key matches (same teacher, inputs and settings) and both files are intact (content
        hash, CRC-32s), else None: it is then computed again. No pickle."""
        try:
            meta = read_json(path.with_suffix(".json"))
            if meta.get("key") != json.loads(json.dumps(key)):
                return None
            arrays = {name: torch.from_numpy(v.copy()) for name, v in read_npz(path.with_suffix(".npz")).items()}
        except (OSError, DamagedFileError):
            return None
        return cls(
            arrays["logits"],
            arrays["target"],
            arrays["parts"],
            arrays.get("flip_auc"),
            meta["cost"],
            arrays.get("example_maps"),
            {name.removeprefix("parts:"): value for name, value in arrays.items() if name.startswith("parts:")},
        )


def compute_teacher_side(
    teacher: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: AlignmentConfig | None = None,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    cost: bool = True,
) -> TeacherSide:
    """The teacher's half of :func:`evaluate_pair`, to compute once and pass to it for every student."""
    config = config or AlignmentConfig()
    logits = predict(teacher, x, batch_size, device)
    target = logits.argmax(1) if config.target == "teacher" else y
    parts = part_importances(teacher, x, target, config, batch_size, device)
    flip = deletion_auc(teacher, x, target, parts, config, device) if config.flip_steps != 0 else None
    others = {
        label: part_importances(teacher, x, target, other, batch_size, device)
        for label, other in list(config.explainers().items())[1:]
    }
    cost_figures = model_cost(teacher, x[:1].to(device)) if cost else {}
    return TeacherSide(logits, target, parts, flip, cost_figures, other_parts=others)


def evaluate_pair(
    teacher: nn.Module,
    student: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: AlignmentConfig | None = None,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    cost: bool = True,
    teacher_side: TeacherSide | None = None,
    samples: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Every teacher-vs-student figure on ``(x, y)``; per-sample metrics as :class:`Summary`.

    ``teacher_side``: the teacher's half computed once by :func:`compute_teacher_side` for these inputs and
    this config; evaluating several students then costs only their own explanations and curves.
    ``samples``: a dict that receives every per-sample value behind the summaries (one row per sample:
    predictions, loss, alignment under each explainer, deletion AUCs) and both models' part importances.
    """
    config = config or AlignmentConfig()
    side = (
        teacher_side
        if teacher_side is not None
        else compute_teacher_side(teacher, x, y, config, batch_size=batch_size, device=device, cost=cost)
    )
    t_logits, target, t_parts = side.logits, side.target, side.parts
    s_logits = predict(student, x, batch_size, device)
    s_parts = part_importances(student, x, target, config, batch_size, device)
    per_sample = per_sample_alignment(t_logits, s_logits, t_parts, s_parts, config.k)
    result: dict[str, Any] = {
        "teacher_accuracy": accuracy(t_logits, y),
        "student_accuracy": accuracy(s_logits, y),
        "teacher_macro_f1": macro_f1(t_logits, y),
        "student_macro_f1": macro_f1(s_logits, y),
        "teacher_auc_pr": macro_auc_pr(t_logits, y),
        "student_auc_pr": macro_auc_pr(s_logits, y),
        **{name: Summary.of(values) for name, values in per_sample.items()},
    }
    own = deletion_auc(student, x, target, s_parts, config, device) if side.flip_auc is not None else None
    in_teacher_order = deletion_auc(student, x, target, t_parts, config, device) if own is not None else None
    if side.flip_auc is not None and own is not None and in_teacher_order is not None:
        result.update(
            flip_auc_teacher=Summary.of(side.flip_auc),
            flip_auc_student=Summary.of(own),
            flip_auc_student_teacher_order=Summary.of(in_teacher_order),
        )
        per_sample.update(
            flip_auc_teacher=side.flip_auc, flip_auc_student=own, flip_auc_student_teacher_order=in_teacher_order
        )
    if config.also:
        result.update(other_explainers(student, x, target, side, config, s_parts, batch_size, device, per_sample))
    if samples is not None:
        samples.update(
            label=y,
            teacher_prediction=t_logits.argmax(1),
            student_prediction=s_logits.argmax(1),
            student_loss=torch.nn.functional.cross_entropy(s_logits.double(), y.long(), reduction="none"),
            **per_sample,
            teacher_parts=t_parts,
            student_parts=s_parts,
        )
    if cost:
        teacher_cost = side.cost or model_cost(teacher, x[:1].to(device))
        result.update(pair_cost(teacher_cost, model_cost(student, x[:1].to(device))))
    return result


def other_explainers(
    student: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    side: TeacherSide,
    config: AlignmentConfig,
    student_parts: torch.Tensor | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    per_sample: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Alignment under every explainer of ``config`` (the main one first) and, as context for what such a
    number can mean, how the explainers agree with each other on the teacher itself (per-sample Spearman
    between the teacher's part importances under each pair). ``per_sample`` receives each explainer's
    per-sample Spearman and top-k focus as ``<metric>@<label>``."""
    teacher_parts = {config.explainer: side.parts, **side.other_parts}
    by_explainer: dict[str, dict[str, Summary]] = {}
    for i, (label, settings) in enumerate(config.explainers().items()):
        t_parts = teacher_parts[label]
        if i == 0 and student_parts is not None:  # the main explainer's parts, already computed
            s_parts = student_parts
        else:
            s_parts = part_importances(student, x, target, settings, batch_size, device)
        values = {
            "saliency_spearman": alignment.spearman(t_parts, s_parts),
            "topk_focus": alignment.topk_focus(s_parts, t_parts, config.k),
            "topk_iou": alignment.topk_iou(t_parts, s_parts, config.k),
            "cosine": alignment.cosine(t_parts, s_parts),
        }
        by_explainer[label] = {name: Summary.of(v) for name, v in values.items()}
        if per_sample is not None and i > 0:
            per_sample.update({f"{name}@{label}": values[name] for name in ("saliency_spearman", "topk_focus")})
    labels = list(teacher_parts)
    agreement = {
        f"{a} vs {b}": Summary.of(alignment.spearman(teacher_parts[a], teacher_parts[b]))
        for i, a in enumerate(labels)
        for b in labels[i + 1 :]
    }
    return {"explainers": by_explainer, "teacher_explainer_agreement": agreement}


def deletion_auc(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    parts: torch.Tensor,
    config: AlignmentConfig,
    device: str | torch.device = "cpu",
) -> torch.Tensor | None:
    """Per-sample deletion AUC of ``model`` removing parts in the order of ``parts`` (lower = the ranking is
    more faithful); None where the parts cannot be removed (tokens, features, integer inputs)."""
    from .faithfulness import pixel_flipping

    if config.parts not in ("window", "timestep", "patch", "pixel") or not x.is_floating_point():
        return None
    values = pixel_flipping(
        model, x.to(device), target.to(device), parts.to(device), config.parts, config.part_options, config.flip_steps
    ).cpu()
    advance(len(x))
    return values


def model_cost(model: nn.Module, example: torch.Tensor) -> dict[str, float]:
    """One model's parameters, FLOPs of a forward pass on ``example`` and latency at batch 1 and 64 (ms)."""
    out: dict[str, float] = {"params": parameter_count(model), "flops": flops(model, example)}
    for batch in (1, 64):
        xb = example[:1].expand((batch,) + tuple(example.shape[1:])).contiguous()
        out[f"latency_b{batch}_ms"] = 1e3 * latency(model, xb)
    return out


def pair_cost(teacher: dict[str, float], student: dict[str, float]) -> dict[str, float]:
    """Both models' costs under ``teacher_*``/``student_*`` keys, with compression and speed-ups."""
    out: dict[str, float] = {
        f"{role}_{key}": value
        for role, cost in (("teacher", teacher), ("student", student))
        for key, value in cost.items()
    }
    out["compression"] = teacher["params"] / student["params"]
    for batch in (1, 64):
        out[f"speedup_b{batch}"] = teacher[f"latency_b{batch}_ms"] / student[f"latency_b{batch}_ms"]
    return out


def cost_metrics(teacher: nn.Module, student: nn.Module, example: torch.Tensor) -> dict[str, float]:
    """Parameter counts, compression, FLOPs and latency at batch 1 and 64 for both models."""
    return pair_cost(model_cost(teacher, example), model_cost(student, example))


def to_jsonable(result: dict[str, Any]) -> dict[str, Any]:
    """Summaries become {"mean", "std", "n"} dicts (also inside nested dicts); everything else is kept."""

    def plain(value: Any) -> Any:
        if isinstance(value, Summary):
            return asdict(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {k: plain(v) for k, v in result.items()}
