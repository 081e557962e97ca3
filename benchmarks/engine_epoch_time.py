"""Per-epoch time: engine vs a plain PyTorch loop, teacher-logit cache, TSD vs KD.

Every configuration trains the same teacher/student pair on the same data; rounds are
interleaved and each figure is the median over rounds of the per-epoch time (first epoch of
every run dropped as warm-up). Run:
    .venv/bin/python benchmarks/engine_epoch_time.py [--rounds 3] [--epochs 3] [--n-train 2048]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from xdistill.data import load_dataset
from xdistill.engine import distill, indexed_loader
from xdistill.methods import soft_kl
from xdistill.models import build_model


def plain_kd_epochs(teacher, student, train, epochs, batch_size, lr, temperature=4.0, alpha=0.9) -> list[float]:
    """The loop a user would write: teacher forward under no_grad every step."""
    loader = indexed_loader(train, batch_size, True, 0)
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(loader))
    teacher.eval()
    student.train()
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for x, y, _ in loader:
            logits = student(x)
            with torch.no_grad():
                t_logits = teacher(x)
            loss = (1 - alpha) * F.cross_entropy(logits, y) + alpha * soft_kl(logits, t_logits, temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, _ = load_dataset("synthetic_series", n_train=args.n_train, n_test=10, length=128)
    torch.manual_seed(0)
    teacher = build_model("fcn1d", 1, train.num_classes, width=1.0)
    common = dict(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, progress=False, loggers=(), checkpoint=False)

    def engine(methods, cache=True):
        def run():
            with tempfile.TemporaryDirectory() as tmp:
                student = build_model("fcn1d", 1, train.num_classes, width=0.25)
                return distill(
                    teacher, student, train, methods, work_dir=tmp, teacher_logit_cache=cache, **common
                ).epoch_seconds

        return run

    configs = {
        "plain_loop_kd": lambda: plain_kd_epochs(
            teacher, build_model("fcn1d", 1, train.num_classes, width=0.25), train, args.epochs, args.batch_size, 1e-3
        ),
        "engine_kd_no_cache": engine(["hinton"], cache=False),
        "engine_kd_cache": engine(["hinton"], cache=True),
        "engine_tsd": engine(["hinton", {"name": "tsd", "saliency": "occlusion", "window": 8}]),
        "engine_tsd_quarter_batch": engine(
            ["hinton", {"name": "tsd", "saliency": "occlusion", "window": 8, "batch_fraction": 0.25}]
        ),
        "engine_tsd_gradient": engine(["hinton", {"name": "tsd", "window": 8, "saliency": "gradient"}]),
        "engine_ce_alone": engine(["ce"]),
    }
    per_epoch: dict[str, list[float]] = {k: [] for k in configs}
    for _ in range(args.rounds):
        for name, run in configs.items():
            per_epoch[name].extend(run()[1:])
    median = {k: statistics.median(v) for k, v in per_epoch.items()}
    ratios = {
        "engine_overhead_vs_plain_loop (kd, no cache)": median["engine_kd_no_cache"] / median["plain_loop_kd"],
        "engine_with_cache_vs_plain_loop": median["engine_kd_cache"] / median["plain_loop_kd"],
        "logit_cache_saving": 1 - median["engine_kd_cache"] / median["engine_kd_no_cache"],
        "tsd_over_kd (both cached)": median["engine_tsd"] / median["engine_kd_cache"],
        "tsd_quarter_batch_over_kd": median["engine_tsd_quarter_batch"] / median["engine_kd_cache"],
        "tsd_gradient_over_kd": median["engine_tsd_gradient"] / median["engine_kd_cache"],
        "tsd_over_uncached_kd": median["engine_tsd"] / median["engine_kd_no_cache"],
    }
    print(f"synthetic_series n_train={args.n_train}, batch {args.batch_size}, teacher fcn1d w=1.0, student w=0.25")
    for key, value in median.items():
        print(f"  {key:<28}{value:8.3f} s/epoch")
    for key, value in ratios.items():
        print(f"  {key:<48}{value:6.3f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"median_s_per_epoch": median, "ratios": ratios}, handle, indent=2)


if __name__ == "__main__":
    main()
