"""Evaluation cost: N students against one teacher, the teacher's side computed once (``compute_teacher_side``,
as ``xdistill run``/``evaluate`` do) against recomputing it per student, and one student's evaluation
against its bound — the forward (and, for IG, backward) passes its explainer needs (occlusion:
windows + 1 forwards of the test set; IG: n_steps forward+backward passes), its two deletion curves
(parts + 1 forwards each), its predictions, at the fastest chunk size, plus the fixed cost measurement
(parameter count, FLOPs, latency at batch 1 and 64). Interleaved repetitions, medians.

    .venv/bin/python benchmarks/evaluation_speed.py [--threads 1] [--students 3] [--explainer occlusion]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from timing import timed  # benchmarks/timing.py (scripts run from benchmarks/)

from xdistill.data import load_dataset
from xdistill.metrics import AlignmentConfig, compute_teacher_side, evaluate_pair
from xdistill.metrics.compare import model_cost
from xdistill.models import build_model

SETTINGS = {
    "occlusion": AlignmentConfig("occlusion", {"window": 10, "stride": 10}, "window", {"size": 10}, k=3),
    "integrated_gradients": AlignmentConfig("integrated_gradients", {"n_steps": 32}, "window", {"size": 10}, k=3),
}


def passes(student: torch.nn.Module, x: torch.Tensor, copies: int, grad: bool, chunk: int) -> Callable[[], None]:
    """A run of the student over ``copies`` of ``x`` in chunks, with the input gradient when ``grad``."""
    rows = x.repeat(copies, 1, 1)

    def run() -> None:
        for i in range(0, rows.shape[0], chunk):
            part = rows[i : i + chunk].clone().requires_grad_(grad)
            with torch.set_grad_enabled(grad):
                out = student(part)
            if grad:
                torch.autograd.grad(out.sum(), part)

    return run


def report(
    args: argparse.Namespace, median: dict, explainer_rows: int, needs_grad: bool, n_parts: int, n_rows: int
) -> None:
    """The Markdown table of the measured medians."""
    print(
        f"{args.students} FCN students (w=0.125) against an FCN teacher (w=0.5), GunPoint test split "
        f"({n_rows} series), {args.explainer} over 10-step windows; {args.threads} thread(s), median of "
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
    print(
        f"| bound: its explainer's passes ({explainer_rows} x {n_rows} rows{' fwd+bwd' if needs_grad else ''}), "
        f"predictions and two deletion curves ({1 + 2 * (n_parts + 1)} x {n_rows} rows), cost measurement | "
        f"{median['student_bound']:.3f} | |"
    )


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

    student = students[0]
    n_parts = side.parts.shape[1]
    explainer_rows = (
        (n_parts + 1) if args.explainer == "occlusion" else SETTINGS[args.explainer].explainer_options["n_steps"]
    )
    needs_grad = args.explainer != "occlusion"

    def student_bound() -> None:  # what evaluating one student cannot avoid, at the best chunk
        fastest[0]()
        fastest[1]()
        model_cost(student, x[:1])

    chunks = (64, 128, 256, 1 << 30)
    explain_runs = {c: passes(student, x, explainer_rows, needs_grad, c) for c in chunks}
    forward_runs = {
        c: passes(student, x, 1 + 2 * (n_parts + 1), False, c) for c in chunks
    }  # predictions + two deletion curves
    best_explain = timed({str(c): r for c, r in explain_runs.items()}, args.repeats)
    best_forward = timed({str(c): r for c, r in forward_runs.items()}, args.repeats)
    fastest = [
        explain_runs[int(min(best_explain, key=best_explain.get))],
        forward_runs[int(min(best_forward, key=best_forward.get))],
    ]

    median = timed(
        {"shared": shared, "recomputed": recomputed, "one_student": one_student, "student_bound": student_bound},
        args.repeats,
    )
    report(args, median, explainer_rows, needs_grad, n_parts, len(x))


if __name__ == "__main__":
    main()
