"""Summary of the reproduction studies: one figure (per study, test accuracy against alignment with the
teacher under the study's own explainer and under one it did not train on, error bars = std over seeds) and
a cost table (wall time per study and per student; each student's epoch time as a ratio of the reference
student's in the same study, same data). Reads what ``benchmarks/reproduce.py`` wrote (``NAME.json`` and the
run directories) in one or more roots:

    .venv/bin/python benchmarks/summary.py --root runs/reproduce [more roots] [--figure docs/summary.png]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

#: (alignment key, its label) of each explainer the figure uses
OCCLUSION = ("saliency_spearman", "occlusion")
IG = ("saliency_spearman@integrated_gradients", "IG")
IG16 = ("saliency_spearman", "IG 16")
SALIENCY = ("saliency_spearman@saliency", "gradient saliency")
IOU = ("rationale_iou_teacher", "rationale IoU")
#: study -> (own alignment key, its label, independent key, its label, reference student, protocol and split)
STUDIES: dict[str, tuple[str, str, str, str, str, str]] = {
    "tsd-paper-ItalyPowerDemand": (*OCCLUSION, *IG, "kd", "LSTM pair, tsd_paper; whole test split"),
    "tsd-paper-ItalyPowerDemand-fcn": (*OCCLUSION, *IG, "kd", "FCN pair; whole test split"),
    "tsd-paper-GunPoint": (*OCCLUSION, *IG, "kd", "FCN pair; whole test split"),
    "tsd-paper-GunPoint-lstm": (*OCCLUSION, *IG, "kd", "LSTM pair, tsd_paper, teacher chosen on val."),
    "tsd-paper-Trace": (*OCCLUSION, *IG, "kd", "FCN pair; whole test split"),
    "combinations-GunPoint": (*OCCLUSION, *IG, "kd", "FCN pair, terms combined"),
    "combinations-Trace": (*OCCLUSION, *IG, "kd", "FCN pair, terms combined"),
    "subdistill-0-2-6": (*IG16, *SALIENCY, "kd", "subdistill_paper, 40 ep.; subtask test"),
    "subdistill-5-7-9": (*IG16, *SALIENCY, "kd", "subdistill_paper, 40 ep.; subtask test"),
    "combinations-fashion-mnist": (*IG16, *SALIENCY, "kd", "subdistill_paper, 40 ep., terms combined"),
    "kdig-paper-fashion-mnist-60k": (*IG16, *SALIENCY, "kd_ig[p=0.0]", "kdig_paper; 10k test"),
    "rekd-fashion-mnist": (*IOU, *IG, "rationale_alone", "Fashion-MNIST patches; 2k test images"),
    "where-models-look": ("saliency_spearman", "IG 32", *SALIENCY, "large[alpha=0.5]", "MNIST-1D, 3,000 Adam steps"),
    "rekd-series": (*IOU, *IG, "rationale_alone", "generated series"),
    "rekd-series-paper": (*IOU, *IG, "rationale_alone", "rekd_paper protocol"),
    "rekd-text": (*IOU, *OCCLUSION, "rationale_alone", "generated text"),
    "rekd-text-paper": (*IOU, *OCCLUSION, "rationale_alone", "rekd_paper protocol"),
}


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v == v]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def plotted_points(summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What :func:`figure` draws, as data: per study its teacher line and, per student, test accuracy against the
    own and the independent explainer's alignment (mean, std over seeds; NaN where not measured)."""
    out: dict[str, Any] = {}
    for name, summary in summaries.items():
        own, own_label, other, other_label, _, protocol = STUDIES[name]
        students = []
        for student, row in summary["students"].items():
            whole = mean_std(row.get("student_accuracy_all", []))  # the whole test split where measured
            y, dy = whole if whole[0] == whole[0] else mean_std(row["student_accuracy"])
            points = {"student": student, "accuracy": [y, dy]}
            points.update(own=list(mean_std(row.get(own, []))), independent=list(mean_std(row.get(other, []))))
            students.append(points)
        teacher = mean_std(summary.get("teacher_accuracy_all", []))[0]
        if teacher != teacher:
            teacher = mean_std(summary["teacher_accuracy"])[0]
        out[name] = {
            "title": f"{name}\n{protocol}; {len(summary['teacher_accuracy'])} seeds",
            "own": own_label,
            "independent": other_label,
            "teacher_accuracy": teacher,
            "students": students,
        }
    return out


def figure(summaries: dict[str, dict[str, Any]], path: Path) -> dict[str, Any]:
    """Per study, accuracy against alignment (filled: own explainer, hollow: independent); returns the points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = plotted_points(summaries)
    columns = min(3, len(points))  # one study: one panel
    rows = math.ceil(len(points) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.2 * rows), squeeze=False)
    for ax, study in zip(axes.flat, points.values()):
        for i, row in enumerate(study["students"]):
            y, dy = row["accuracy"]
            colour = f"C{i % 10}"
            for key, marker, face in (("own", "o", colour), ("independent", "s", "none")):
                x, dx = row[key]
                if x == x and y == y:
                    ax.errorbar(x, y, xerr=dx, yerr=dy, fmt=marker, color=colour, mfc=face, capsize=2, lw=0.8)
            x = row["own"][0]
            if x == x and y == y:
                ax.annotate(row["student"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=colour)
        teacher = study["teacher_accuracy"]
        ax.axhline(teacher, color="grey", linestyle="--", linewidth=0.8, label=f"teacher {teacher:.3f}")
        ax.plot([], [], "ko", label=f"{study['own']} (own)")
        ax.plot([], [], "ks", mfc="none", label=f"{study['independent']} (independent)")
        ax.set(
            title=study["title"],
            xlabel="alignment with the teacher (filled: own, hollow: independent)",
            ylabel="test accuracy",
        )
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(points) :]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return points


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


def cost_table(roots: dict[str, Path], names: list[str]) -> str:
    lines = [
        "| study | seeds | wall time, all seeds and stages (min) | student | training s per run | epoch time / reference's |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        run = roots[name] / name
        seeds = sorted(run.glob("seed*/stages.json"))
        total = sum(float(info.get("seconds", 0.0)) for path in seeds for info in json.loads(path.read_text()).values())
        costs = stage_costs(run)
        reference = STUDIES[name][4]
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
    parser.add_argument("--root", type=Path, nargs="+", default=[Path("runs/reproduce")])
    parser.add_argument("--figure", type=Path, default=Path("docs/summary.png"))
    parser.add_argument("--costs", type=Path, default=None, help="where the cost table goes (default: first root)")
    args = parser.parse_args()
    roots = {name: root for root in reversed(args.root) for name in STUDIES if (root / f"{name}.json").exists()}
    names = [name for name in STUDIES if name in roots]
    summaries = {name: json.loads((roots[name] / f"{name}.json").read_text()) for name in names}
    figure(summaries, args.figure)
    table = cost_table(roots, names)
    (args.costs or args.root[0] / "cost.md").write_text(table)
    print(f"figure: {args.figure}\n\n{table}")


if __name__ == "__main__":
    main()
