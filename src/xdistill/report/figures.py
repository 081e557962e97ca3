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
    natural range: 0.96 vs 0.98 stays visible instead of two bars reaching 1 from 0. Non-finite figures (a metric
    undefined on every sample) are left out of the range."""
    import math

    ends = [(m - e, m + e) for m, e in zip(means, errors) if math.isfinite(m - e) and math.isfinite(m + e)]
    if not ends:  # no finite figure (e.g. a metric undefined on every sample): the natural range, or [0, 1]
        return natural if natural is not None else (0.0, 1.0)
    low, high = min(lo for lo, _ in ends), max(hi for _, hi in ends)
    margin = max(0.1 * (high - low), 0.01)
    low, high = low - margin, high + margin
    if natural is not None:
        low, high = max(low, natural[0]), min(high, natural[1] + 0.02)
    return low, high


def metric_panels(results: list[dict[str, Any]], over: str = "test samples") -> dict[str, bytes]:
    """One small figure per metric (key -> PNG), one bar per student: mean with error bars ± the table's std (over
    ``over``). Separate panels so a narrow screen shows each at full width. A panel whose axis does not start at
    the metric's natural floor says so, with a break mark on the axis."""
    plt = _pyplot()
    names = [r["student"] for r in results]
    panels = [(key, label, natural) for key, label, natural in BAR_METRICS if all(key in r for r in results)]
    out = {}
    for key, label, natural in panels:
        fig, ax = plt.subplots(figsize=(3.4, 3.0 + 0.1 * max(map(len, names))))
        means, stds = zip(*(mean_std(r[key]) for r in results))
        ax.bar(range(len(names)), means, yerr=stds, capsize=3, color=[f"C{i}" for i in range(len(names))])
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=9)
        low, high = zoomed_limits(list(means), list(stds), natural)
        ax.set_ylim(low, high)
        cut = natural is not None and low > natural[0] + 1e-9
        note = f"\n(axis cut: starts at {low:.2f})" if cut else ""
        if natural is None:  # no natural range: the axis is zoomed to the bars, and says so
            note = f"\n(axis zoomed to the bars: {low:.2f} to {high:.2f})"
        ax.set_title(label + note, fontsize=9)
        if cut:
            axis_break(ax)
        ax.set_ylabel(f"mean ± std over {over}", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        out[key] = _png(fig)
    return out


def axis_break(ax) -> None:
    """Two short diagonal strokes across the bottom of the y axis: the axis does not start at its floor."""
    kwargs = dict(transform=ax.transAxes, color="k", clip_on=False, lw=1)
    for offset in (0.0, 0.03):
        ax.plot((-0.03, 0.03), (0.02 + offset, 0.05 + offset), **kwargs)


def _importance(maps: np.ndarray) -> np.ndarray:
    """(N, C, ...) attribution maps -> (N, ...) absolute importance, scaled to max 1 per sample."""
    values = np.abs(maps).sum(1)
    peak = values.reshape(len(values), -1).max(1).reshape((-1,) + (1,) * (values.ndim - 1))
    return values / np.maximum(peak, 1e-12)


def saliency_examples(
    x: np.ndarray, teacher: np.ndarray, students: dict[str, np.ndarray], class_names: list[str], y: np.ndarray
) -> list[bytes]:
    """Teacher/student saliency, one small figure per sample: curves over time for series, heatmaps for images."""
    plt = _pyplot()
    out = []
    for i in range(len(x)):
        if x.ndim == 3:  # (N, C, T): the series on top, saliency curves below
            fig, axes = plt.subplots(2, 1, figsize=(4.2, 4.4), sharex=True)
            t = np.arange(x.shape[-1])
            axes[0].plot(t, x[i].T, color="0.3", lw=1)
            axes[0].set_title(f"test sample {i} (class {class_names[int(y[i])]})", fontsize=9)
            axes[1].plot(t, _importance(teacher)[i], color="black", lw=2, label="teacher")
            for j, (name, maps) in enumerate(students.items()):
                axes[1].plot(t, _importance(maps)[i], lw=1.2, color=f"C{j}", label=name)
            axes[1].set_xlabel("timestep")
            axes[1].set_ylabel("|attribution| (max = 1)", fontsize=8)
            axes[1].legend(fontsize=7, loc="upper right")
        else:  # (N, C, H, W): input, teacher, students as heatmaps
            columns = ["input", "teacher"] + list(students)
            fig, axes = plt.subplots(1, len(columns), figsize=(1.5 * len(columns), 1.9), squeeze=False)
            image = x[i].transpose(1, 2, 0)
            image = image[..., 0] if image.shape[-1] == 1 else np.clip(image, 0, 1)
            panels = [image, _importance(teacher)[i]] + [_importance(m)[i] for m in students.values()]
            for j, panel in enumerate(panels):
                axes[0, j].imshow(panel, cmap="gray" if j == 0 else "inferno")
                axes[0, j].set_xticks([])
                axes[0, j].set_yticks([])
                axes[0, j].set_title(columns[j], fontsize=8)
            axes[0, 0].set_ylabel(f"{i}: {class_names[int(y[i])]}", fontsize=8)
        fig.tight_layout()
        out.append(_png(fig))
    return out


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
