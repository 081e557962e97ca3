"""Evaluation cost: N students against one teacher, the teacher's side computed once (``compute_teacher_side``,
as ``xdistill run``/``evaluate`` do) against recomputing it per student, and one student's evaluation
against its bound — the student's own explainer work (its explanations) plus its deletion-curve
forwards, timed alone. Interleaved repetitions, medians.

    .venv/bin/python benchmarks/evaluation_speed.py [--threads 1] [--students 3] [--explainer occlusion]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from xdistill.data import load_dataset
from xdistill.metrics import AlignmentConfig, compute_teacher_side, evaluate_pair, part_importances
from xdistill.metrics.compare import deletion_auc, model_cost
from xdistill.models import build_model

SETTINGS = {
    "occlusion": AlignmentConfig("occlusion", {"window": 10, "stride": 10}, "window", {"size": 10}, k=3),
    "integrated_gradients": AlignmentConfig("integrated_gradients", {"n_steps": 32}, "window", {"size": 10}, k=3),
}


def timed(runs: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--students", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--explainer", default="occlusion", choices=sorted(SETTINGS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _, test = load_dataset("ucr:GunPoint")  # 150 test series of 150 steps
    x, y = test.x, test.y
    torch.manual_seed(0)
    teacher = build_model("fcn1d", 1, 2, width=0.5).eval()
    students = [build_model("fcn1d", 1, 2, width=0.125).eval() for _ in range(args.students)]
    config = SETTINGS[args.explainer]
    side = compute_teacher_side(teacher, x, y, config)

    def shared() -> None:
        once = compute_teacher_side(teacher, x, y, config)
        for student in students:
            evaluate_pair(teacher, student, x, y, config, teacher_side=once)

    def recomputed() -> None:
        for student in students:
            evaluate_pair(teacher, student, x, y, config)

    def one_student() -> None:
        evaluate_pair(teacher, students[0], x, y, config, teacher_side=side)

    def student_bound() -> None:  # what evaluating one student cannot avoid
        parts = part_importances(students[0], x, side.target, config)
        deletion_auc(students[0], x, side.target, parts, config)
        deletion_auc(students[0], x, side.target, side.parts, config)
        model_cost(students[0], x[:1])

    median = timed(
        {"shared": shared, "recomputed": recomputed, "one_student": one_student, "student_bound": student_bound},
        args.repeats,
    )
    print(
        f"{args.students} FCN students (w=0.125) against an FCN teacher (w=0.5), GunPoint test split "
        f"({len(x)} series), {args.explainer} over 10-step windows; {args.threads} thread(s), median of "
        f"{args.repeats} interleaved repetitions"
    )
    print("| what | seconds | ratio |")
    print("|---|---|---|")
    print(
        f"| {args.students} students, teacher side recomputed for each | {median['recomputed']:.2f} | "
        f"{median['recomputed'] / median['shared']:.2f}x the shared run |"
    )
    print(f"| {args.students} students, teacher side once | {median['shared']:.2f} | 1.00x |")
    print(
        f"| one student given the teacher side | {median['one_student']:.3f} | "
        f"**{median['one_student'] / median['student_bound']:.2f}x** its bound |"
    )
    print(f"| bound: the student's explanations, its two deletion curves, its cost | {median['student_bound']:.3f} | |")


if __name__ == "__main__":
    main()
