"""TSD speed: one training step (loss + backward) of published TSD (K=50) vs KD, vs loop implementations
of the same loss, and with the teacher bank; all measured side by
side in one run (interleaved repetitions, medians), plus the bound (K+1) x one student forward+backward.

    .venv/bin/python benchmarks/tsd_speed.py [--model fcn1d|lstm] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from xdistill.data import load_dataset
from xdistill.methods import build_method
from xdistill.methods.base import Batch, PrepareContext, Step
from xdistill.methods.tsd import normalize_saliency, sample_perturbations
from xdistill.models import build_model


def python_copies(x_i, train_x, donors_i, starts_i, window) -> list[torch.Tensor]:
    """Sample i's perturbed copies, one Python assignment per window (as the official code builds them)."""
    copies = []
    for donor, start in zip(donors_i.tolist(), starts_i.tolist()):
        copy = x_i.clone()
        copy[:, start : start + window] = train_x[donor, :, start : start + window]
        copies.append(copy)
    return copies


def loop_loss(student, teacher, x, y, train_x, train_y, K, window, tau):
    """The loss written the way the official code builds it: a Python loop over samples and windows."""
    donors, starts = sample_perturbations(y, train_y, K, window, x.shape[-1])
    copies = torch.stack([c for i in range(x.shape[0]) for c in python_copies(x[i], train_x, donors[i], starts[i], window)])
    with torch.no_grad():
        t_clean = teacher(x).repeat_interleave(donors.shape[1], 0)
        t_pert = teacher(copies)
        t_s = F.kl_div(F.log_softmax(t_pert / tau, -1), F.softmax(t_clean / tau, -1), reduction="none") * tau**2
    s_clean = student(x).repeat_interleave(donors.shape[1], 0)
    s_pert = student(copies)
    s_s = F.kl_div(F.log_softmax(s_pert / tau, -1), F.softmax(s_clean / tau, -1), reduction="none") * tau**2
    return F.cross_entropy(student(x), y) + F.smooth_l1_loss(normalize_saliency(s_s), normalize_saliency(t_s))


def per_sample_loss(student, teacher, x, y, train_x, train_y, K, window, tau):
    """The same loss with one forward pass per sample (its clean series and its K copies) and per window copy built
    in Python: the straightforward loop."""
    donors, starts = sample_perturbations(y, train_y, K, window, x.shape[-1])
    student_s, teacher_s = [], []
    for i in range(x.shape[0]):
        batch = torch.stack([x[i]] + python_copies(x[i], train_x, donors[i], starts[i], window))
        with torch.no_grad():
            t = F.log_softmax(teacher(batch) / tau, -1)
        s_ = F.log_softmax(student(batch) / tau, -1)
        teacher_s.append(tau**2 * t[:1].exp() * (t[:1] - t[1:]))
        student_s.append(tau**2 * s_[:1].exp() * (s_[:1] - s_[1:]))
    s_all, t_all = torch.cat(student_s), torch.cat(teacher_s)
    return F.cross_entropy(student(x), y) + F.smooth_l1_loss(normalize_saliency(s_all), normalize_saliency(t_all))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fcn1d", choices=["fcn1d", "lstm"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    train, _ = load_dataset("ucr:GunPoint", length=100)
    options = ({"width": 0.5}, {"width": 0.125}) if args.model == "fcn1d" else ({"hidden": 100, "layers": 3},
                                                                               {"hidden": 32, "layers": 1})
    torch.manual_seed(0)
    teacher = build_model(args.model, 1, 2, **options[0]).eval()
    student = build_model(args.model, 1, 2, **options[1]).train()
    x, y, index = train.x[: args.batch], train.y[: args.batch], torch.arange(args.batch)
    K, window, tau = 50, 10, 8.0
    methods = {"tsd": [build_method("ce"), build_method("tsd", perturbations=K, window=window)],
               "tsd_bank": [build_method("ce"), build_method("tsd", perturbations=K, window=window, bank=100)],
               "kd": [build_method("ce", weight=0.1), build_method("kd", weight=0.9)]}
    for terms in methods.values():
        for method in terms:
            method.prepare(PrepareContext(teacher, student, train.x, train.y, "fp"))

    def step_of(name: str):
        def run() -> None:
            student.zero_grad(set_to_none=True)
            if name == "loop":
                loss = loop_loss(student, teacher, x, y, train.x, train.y, K, window, tau)
            elif name == "per_sample":
                loss = per_sample_loss(student, teacher, x, y, train.x, train.y, K, window, tau)
            elif name == "student_fwd_bwd":
                loss = F.cross_entropy(student(x), y)
            else:
                logits = student(x)
                with torch.no_grad():
                    t_logits = teacher(x)
                step = Step(Batch(x, y, index), student, teacher, logits, t_logits)
                loss = sum(term.weight * term.loss(step) for term in methods[name])
            loss.backward()
        return run

    names = ["kd", "tsd", "tsd_bank", "loop", "per_sample", "student_fwd_bwd"]
    times: dict[str, list[float]] = {n: [] for n in names}
    for n in names:  # warm-up
        step_of(n)()
    for _ in range(args.repeats):
        for n in names:  # interleaved: machine noise hits every variant alike
            start = time.perf_counter()
            step_of(n)()
            times[n].append(time.perf_counter() - start)
    median = {n: statistics.median(v) for n, v in times.items()}
    bound = (K + 1) * median["student_fwd_bwd"]
    print(f"model {args.model}, batch {args.batch}, K={K}, w={window}, GunPoint resampled to 100 steps; "
          f"median of {args.repeats} interleaved steps")
    print("| step | seconds | ratio |")
    print("|---|---|---|")
    print(f"| KD | {median['kd']:.4f} | 1.0x KD |")
    print(f"| TSD (teacher on the fly) | {median['tsd']:.4f} | {median['tsd'] / median['kd']:.1f}x KD |")
    print(f"| TSD, teacher bank | {median['tsd_bank']:.4f} | {median['tsd_bank'] / median['kd']:.1f}x KD; "
          f"{median['tsd_bank'] / bound:.2f}x the (K+1) student bound |")
    print(f"| official-style loop (copies built in Python, one forward) | {median['loop']:.4f} | "
          f"{median['loop'] / median['tsd']:.1f}x TSD's time |")
    print(f"| per-sample loop (one forward per sample) | {median['per_sample']:.4f} | "
          f"{median['per_sample'] / median['tsd']:.1f}x TSD's time |")
    print(f"| bound: (K+1) x student fwd+bwd | {bound:.4f} | |")


if __name__ == "__main__":
    main()
