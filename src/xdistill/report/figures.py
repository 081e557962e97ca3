"""Matplotlib figures for the report, returned as PNG bytes (Agg backend, no display)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

#: (key, panel title, the axis's natural range: None lets the data set it)
BAR_METRICS = [
    ("student_accuracy", "accuracy", (0.0, 1.0)),
    ("agreement", "top-1 agreement", (0.0, 1.0)),
    ("logit_spearman", "logit Spearman", (-1.0, 1.0)),
    ("saliency_spearman", "saliency Spearman", (-1.0, 1.0)),
    ("topk_focus", "top-k focus", (0.0, 1.0)),
    ("flip_auc_student_teacher_order", "deletion AUC, teacher's order\n(lower = relies on the same parts)", None),
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def mean_std(value: Any) -> tuple[float, float]:
    """Mean and standard deviation of a summary — the table's ± — ; scalars have no error bar."""
    if isinstance(value, dict):
        return float(value["mean"]), float(value["std"])
    return float(value), 0.0


def zoomed_limits(means: list[float], errors: list[float], natural: tuple[float, float] | None) -> tuple[float, float]:
    """An axis range around the bars and their error bars (a 10% margin), kept inside the metric's
    natural range: 0.96 vs 0.98 stays visible instead of two bars reaching 1 from 0."""
    low = min(m - e for m, e in zip(means, errors))
    high = max(m + e for m, e in zip(means, errors))
    margin = max(0.1 * (high - low), 0.01)
    low, high = low - margin, high + margin
    if natural is not None:
        low, high = max(low, natural[0]), min(high, natural[1] + 0.02)
    return low, high


def metric_bars(results: list[dict[str, Any]], over: str = "test samples") -> bytes:
    """One panel per metric, one bar per student: mean with error bars ± the table's std (over ``over``)."""
    plt = _pyplot()
    names = [r["student"] for r in results]
    panels = [(key, label, natural) for key, label, natural in BAR_METRICS if all(key in r for r in results)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4 + 0.12 * max(map(len, names))))
    axes = [axes] if len(panels) == 1 else axes
    for ax, (key, label, natural) in zip(axes, panels):
        means, stds = zip(*(mean_std(r[key]) for r in results))
        ax.bar(range(len(names)), means, yerr=stds, capsize=3, color=[f"C{i}" for i in range(len(names))])
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(label, fontsize=9)
        low, high = zoomed_limits(list(means), list(stds), natural)
        ax.set_ylim(low, high)
        ax.set_ylabel(f"mean ± std over {over}", fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _importance(maps: np.ndarray) -> np.ndarray:
    """(N, C, ...) attribution maps -> (N, ...) absolute importance, scaled to max 1 per sample."""
    values = np.abs(maps).sum(1)
    peak = values.reshape(len(values), -1).max(1).reshape((-1,) + (1,) * (values.ndim - 1))
    return values / np.maximum(peak, 1e-12)


def saliency_examples(
    x: np.ndarray, teacher: np.ndarray, students: dict[str, np.ndarray], class_names: list[str], y: np.ndarray
) -> bytes:
    """Side-by-side teacher/student saliency: curves over time for series, heatmaps for images."""
    plt = _pyplot()
    n = len(x)
    if x.ndim == 3:  # (N, C, T): the series on top, saliency curves below
        fig, axes = plt.subplots(2, n, figsize=(4.2 * n, 5), squeeze=False, sharex="col")
        t = np.arange(x.shape[-1])
        for i in range(n):
            axes[0, i].plot(t, x[i].T, color="0.3", lw=1)
            axes[0, i].set_title(f"sample {i} (class {class_names[int(y[i])]})", fontsize=9)
            axes[1, i].plot(t, _importance(teacher)[i], color="black", lw=2, label="teacher")
            for j, (name, maps) in enumerate(students.items()):
                axes[1, i].plot(t, _importance(maps)[i], lw=1.2, color=f"C{j}", label=name)
            axes[1, i].set_xlabel("timestep")
        axes[1, 0].set_ylabel("|attribution| (max = 1)")
        axes[1, -1].legend(fontsize=7, loc="upper right")
    else:  # (N, C, H, W): input, teacher, students as heatmaps
        columns = ["input", "teacher"] + list(students)
        fig, axes = plt.subplots(n, len(columns), figsize=(1.9 * len(columns), 2.0 * n), squeeze=False)
        for i in range(n):
            image = x[i].transpose(1, 2, 0)
            image = image[..., 0] if image.shape[-1] == 1 else np.clip(image, 0, 1)
            panels = [image, _importance(teacher)[i]] + [_importance(m)[i] for m in students.values()]
            for j, panel in enumerate(panels):
                axes[i, j].imshow(panel, cmap="gray" if j == 0 else "inferno")
                axes[i, j].set_xticks([])
                axes[i, j].set_yticks([])
                if i == 0:
                    axes[i, j].set_title(columns[j], fontsize=8)
            axes[i, 0].set_ylabel(class_names[int(y[i])], fontsize=8)
    fig.tight_layout()
    return _png(fig)


def sweep_curve(option: str, points: list[tuple[Any, dict[str, Any]]]) -> bytes:
    """Alignment (and accuracy) against a swept method option, e.g. alpha."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    values = [float(v) for v, _ in points]
    for key, label, _ in BAR_METRICS[1:5] + BAR_METRICS[:1]:
        means, stds = zip(*(mean_std(r[key]) for _, r in points))
        ax.errorbar(values, means, yerr=stds, marker="o", capsize=3, label=label)
    ax.set_xlabel(option)
    ax.set_ylabel("mean ± std over test samples")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)
