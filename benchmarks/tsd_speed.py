"""TSD speed: one training step of the published objective (CE + TSD: loss + backward) against its bound and
against loop implementations of the same loss, measured side by side (interleaved repetitions, medians).

The bound is the work the loss cannot avoid: (K+1)·B rows through the teacher without gradients
plus (K+1)·B rows through the student forward and backward, each at its fastest chunk size —
for a student with BatchNorm in training mode the student's rows go in one call, as the official
code forwards them (chunking would change the batch statistics, so the faster chunked figure is
printed beside it but is not a bound the published loss can reach). Peers: the official code's
formulation (copies built in a Python loop, each model called once on all copies) and a
per-sample loop (one forward per sample). Also: the cost of one step's keyed per-sample draws
(starts and donors) at batch 128 and 1024 with N = 500 and 8,000 training series.

    .venv/bin/python benchmarks/tsd_speed.py [--threads 1] [--repeats 5] [--lengths 24 150 500] [--models fcn1d]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timing import timed  # benchmarks/timing.py (scripts run from benchmarks/)

from xdistill.data import load_dataset
from xdistill.methods import build_terms
from xdistill.methods.base import Batch, PrepareContext, Step, StepState
from xdistill.methods.keyed_random import SampleStreams
from xdistill.methods.tsd import has_batch_statistics, normalize_saliency, sample_perturbations
from xdistill.models import build_model

CHUNKS = (64, 128, 256, 512, 1024, 1 << 30)


def python_copies(x_i, train_x, donors_i, starts_i, window) -> list[torch.Tensor]:
    """Sample i's perturbed copies, one Python assignment per window (as the official code builds them)."""
    copies = []
    for donor, start in zip(donors_i.tolist(), starts_i.tolist()):
        copy = x_i.clone()
        copy[:, start : start + window] = train_x[donor, :, start : start + window]
        copies.append(copy)
    return copies


def official_style_loss(student, teacher, x, y, train_x, train_y, K, window, tau):
    """CE + the TSD term as the official code computes it: copies built in Python, one call per model on all."""
    donors, starts = sample_perturbations(y, train_y, K, window, x.shape[-1])
    copies = torch.stack(
        [c for i in range(x.shape[0]) for c in python_copies(x[i], train_x, donors[i], starts[i], window)]
    )
    k = donors.shape[1]
    with torch.no_grad():
        t_clean = teacher(x).repeat_interleave(k, 0)
        t_s = (
            F.kl_div(F.log_softmax(teacher(copies) / tau, -1), F.softmax(t_clean / tau, -1), reduction="none") * tau**2
        )
    logits = student(x)
    s_s = (
        F.kl_div(
            F.log_softmax(student(copies) / tau, -1),
            F.softmax(logits.repeat_interleave(k, 0) / tau, -1),
            reduction="none",
        )
        * tau**2
    )
    return F.cross_entropy(logits, y) + F.smooth_l1_loss(normalize_saliency(s_s), normalize_saliency(t_s))


def per_sample_loss(student, teacher, x, y, train_x, train_y, K, window, tau):
    """The same loss with one forward pass per sample (its clean series and its K copies)."""
    donors, starts = sample_perturbations(y, train_y, K, window, x.shape[-1])
    student_s, teacher_s = [], []
    for i in range(x.shape[0]):
        batch = torch.stack([x[i]] + python_copies(x[i], train_x, donors[i], starts[i], window))
        with torch.no_grad():
            t = F.log_softmax(teacher(batch) / tau, -1)
        s_ = F.log_softmax(student(batch) / tau, -1)
        teacher_s.append(tau**2 * t[:1].exp() * (t[:1] - t[1:]))
        student_s.append(tau**2 * s_[:1].exp() * (s_[:1] - s_[1:]))
    return F.cross_entropy(student(x), y) + F.smooth_l1_loss(
        normalize_saliency(torch.cat(student_s)), normalize_saliency(torch.cat(teacher_s))
    )


def pair(model: str, classes: int):
    torch.manual_seed(0)
    if model == "fcn1d":
        return (
            build_model("fcn1d", 1, classes, width=0.5).eval(),
            build_model("fcn1d", 1, classes, width=0.125).train(),
        )
    return (
        build_model("lstm", 1, classes, hidden=100, layers=3).eval(),
        build_model("lstm", 1, classes, hidden=32, layers=1).train(),
    )


def step_figures(model: str, K: int, batch: int, repeats: int, length: int = 150) -> dict[str, float]:
    train, _ = load_dataset("ucr:GunPoint", length=None if length == 150 else length)  # 50 series, resampled
    teacher, student = pair(model, train.num_classes)
    window, tau = 10, 8.0
    rows = torch.arange(batch) % len(train)
    x, y, index = train.x[rows], train.y[rows], rows
    terms = build_terms(["ce", {"name": "tsd", "perturbations": K, "window": window}])
    for term in terms:
        term.prepare(PrepareContext(teacher, student, train.x, train.y, "fp"))
    copies = train.x[torch.randint(0, len(train), ((K + 1) * batch,))]

    def library() -> None:
        student.zero_grad(set_to_none=True)
        logits = student(x)
        with torch.no_grad():
            t_logits = teacher(x)
        step = Step(Batch(x, y, index), student, teacher, logits, t_logits, state=StepState(1, 100, 0))
        sum(term.weight * term.loss(step) for term in terms).backward()

    def teacher_rows(chunk: int) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                for i in range(0, copies.shape[0], chunk):
                    teacher(copies[i : i + chunk])

        return run

    def student_rows(chunk: int) -> Callable[[], None]:
        def run() -> None:
            student.zero_grad(set_to_none=True)
            for i in range(0, copies.shape[0], chunk):
                student(copies[i : i + chunk]).sum().backward()

        return run

    def loop(loss) -> Callable[[], None]:
        def run() -> None:
            student.zero_grad(set_to_none=True)
            loss(student, teacher, x, y, train.x, train.y, K, window, tau).backward()

        return run

    runs: dict[str, Callable[[], None]] = {
        "library": library,
        "official_style": loop(official_style_loss),
        "per_sample": loop(per_sample_loss),
    }
    runs.update({f"teacher_{c}": teacher_rows(c) for c in CHUNKS})
    runs.update({f"student_{c}": student_rows(c) for c in CHUNKS})
    median = timed(runs, repeats)
    teacher_best = min(median[f"teacher_{c}"] for c in CHUNKS)
    student_free = min(median[f"student_{c}"] for c in CHUNKS)
    student_published = median[f"student_{CHUNKS[-1]}"] if has_batch_statistics(student) else student_free
    return {
        "library": median["library"],
        "official_style": median["official_style"],
        "per_sample": median["per_sample"],
        "bound": teacher_best + student_published,
        "free_bound": teacher_best + student_free,
    }


def draw_cost(batch: int, n_train: int, K: int, repeats: int) -> float:
    """Seconds for one step's keyed draws of TSD (window starts and donors) at this batch and training-set size."""
    index = torch.arange(batch)
    train_y = torch.arange(n_train) % 4
    y = train_y[index % n_train]

    def run() -> None:
        sample_perturbations(y, train_y, K, 10, 150, uniform=SampleStreams(index, 0, 7, 1))

    return timed({"draw": run}, repeats)["draw"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--lengths", nargs="+", type=int, default=[150], help="series lengths T (GunPoint resampled; 24: IPD's length)"
    )
    parser.add_argument("--models", nargs="+", default=["fcn1d", "lstm"], choices=["fcn1d", "lstm"])
    parser.add_argument("--ks", nargs="+", type=int, default=[10, 50])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"one training step (CE + TSD, loss + backward), GunPoint resampled to T, batch {args.batch}, w=10, tau=8; "
        f"{args.threads} thread(s), median of {args.repeats} interleaved repetitions"
    )
    print(
        "| pair | T | K | library (s) | bound (s) | library / bound | official-style / library | per-sample loop / library | library / chunked-student bound |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for model, T, K in ((m, t, k) for m in args.models for t in args.lengths for k in args.ks):
        f = step_figures(model, K, args.batch, args.repeats, T)
        print(
            f"| {model} | {T} | {K} | {f['library']:.3f} | {f['bound']:.3f} | **{f['library'] / f['bound']:.2f}x** | "
            f"{f['official_style'] / f['library']:.2f}x | {f['per_sample'] / f['library']:.2f}x | "
            f"{f['library'] / f['free_bound']:.2f}x |"
        )
    print()
    print("one step's keyed per-sample draws (window starts and donors, SplitMix64 streams; T=150, w=10, K=50):")
    print("| batch | training series N | ms per step | µs per sample |")
    print("|---|---|---|---|")
    for batch in (128, 1024):
        for n_train in (500, 8000):
            cost = draw_cost(batch, n_train, 50, args.repeats)
            print(f"| {batch} | {n_train} | {1e3 * cost:.2f} | {1e6 * cost / batch:.1f} |")


if __name__ == "__main__":
    main()
