"""Summary of the reproduction studies: one figure (accuracy vs alignment per study, error bars over
seeds) and a cost table (wall time per study and per student; each student's epoch time as a ratio
of the KD student's in the same study, same data). Reads what ``benchmarks/reproduce.py`` wrote:

    .venv/bin/python benchmarks/summary.py [--root runs/reproduce] [--figure docs/summary.png]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

#: study -> (alignment key, its axis label, the reference student for epoch-time ratios)
STUDIES = {
    "tsd-paper-ItalyPowerDemand": ("saliency_spearman", "saliency Spearman", "kd"),
    "tsd-paper-GunPoint": ("saliency_spearman", "saliency Spearman", "kd"),
    "tsd-paper-Trace": ("saliency_spearman", "saliency Spearman", "kd"),
    "subdistill-0-2-6": ("saliency_spearman", "saliency Spearman", "kd"),
    "subdistill-5-7-9": ("saliency_spearman", "saliency Spearman", "kd"),
    "ig-overlay-fashion-mnist-full-teacher": ("saliency_spearman", "saliency Spearman", "kd"),
    "ig-overlay-fashion-mnist-60k": ("saliency_spearman", "saliency Spearman", "kd"),
    "where-models-look": ("saliency_spearman", "saliency Spearman", "large[alpha=0.5]"),
    "rekd-series": ("rationale_iou_teacher", "rationale IoU with teacher", "rationale_alone"),
    "rekd-text": ("rationale_iou_teacher", "rationale IoU with teacher", "rationale_alone"),
    "rekd-fashion-mnist": ("rationale_iou_teacher", "rationale IoU with teacher", "rationale_alone"),
}


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v == v]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def figure(summaries: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 3
    rows = math.ceil(len(summaries) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 4 * rows), squeeze=False)
    for ax, (name, summary) in zip(axes.flat, summaries.items()):
        key, label, _ = STUDIES[name]
        for student, row in summary["students"].items():
            whole = mean_std(row.get("student_accuracy_all", []))  # the whole test split where measured
            (x, dx), (y, dy) = mean_std(row[key]), whole if whole[0] == whole[0] else mean_std(row["student_accuracy"])
            if x != x or y != y:
                continue
            ax.errorbar(x, y, xerr=dx, yerr=dy, fmt="o", capsize=3)
            ax.annotate(student, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        teacher = mean_std(summary.get("teacher_accuracy_all", []))[0]
        if teacher != teacher:
            teacher = mean_std(summary["teacher_accuracy"])[0]
        ax.axhline(teacher, color="grey", linestyle="--", linewidth=0.8, label=f"teacher {teacher:.3f}")
        seeds = len(summary["teacher_accuracy"])  # one entry per seed
        ax.set(title=f"{name} ({seeds} seeds)", xlabel=label, ylabel="test accuracy")
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(summaries) :]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def stage_costs(run: Path) -> dict[str, dict[str, list[float]]]:
    """Per student: wall seconds of training and mean epoch seconds, one entry per seed."""
    costs: dict[str, dict[str, list[float]]] = {}
    for stages_file in sorted(run.glob("seed*/stages.json")):
        for stage, info in json.loads(stages_file.read_text()).items():
            kind, _, who = stage.partition(":")
            if kind not in ("student", "teacher"):
                continue
            who = who or "teacher"
            entry = costs.setdefault(who, {"seconds": [], "epoch": []})
            entry["seconds"].append(float(info.get("seconds", math.nan)))
            epochs = info.get("epoch_seconds") or []
            entry["epoch"].append(statistics.fmean(epochs) if epochs else math.nan)
    return costs


def cost_table(root: Path, names: list[str]) -> str:
    lines = [
        "| study | seeds | wall time, all seeds and stages (min) | student | training s per run | epoch time / reference's |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        run = root / name
        seeds = sorted(run.glob("seed*/stages.json"))
        total = sum(float(info.get("seconds", 0.0)) for path in seeds for info in json.loads(path.read_text()).values())
        costs = stage_costs(run)
        reference = STUDIES[name][2]
        ref_epoch = mean_std(costs.get(reference, {}).get("epoch", []))[0]
        for i, (who, entry) in enumerate(costs.items()):
            ratio = mean_std(entry["epoch"])[0] / ref_epoch if who != "teacher" else math.nan
            study = f"{name} | {len(seeds)} | {total / 60:.1f}" if i == 0 else " | | "
            lines.append(
                f"| {study} | {who} | {mean_std(entry['seconds'])[0]:.0f} | "
                + (f"{ratio:.2f}x" if ratio == ratio else "–")
                + (" (reference)" if who == reference else "")
                + " |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("runs/reproduce"))
    parser.add_argument("--figure", type=Path, default=Path("docs/summary.png"))
    args = parser.parse_args()
    names = [name for name in STUDIES if (args.root / f"{name}.json").exists()]
    summaries = {name: json.loads((args.root / f"{name}.json").read_text()) for name in names}
    figure(summaries, args.figure)
    table = cost_table(args.root, names)
    (args.root / "cost.md").write_text(table)
    print(f"figure: {args.figure}\n\n{table}")


if __name__ == "__main__":
    main()
