"""``train_teacher`` (the engine, CE alone) against the plain PyTorch loop a user would write, whole calls timed
(set-up, data, training, the final weights written), interleaved rounds, medians.

Both run the same model, data, optimiser (Adam, constant learning rate), batch order budget and
number of optimiser steps, with no validation split; the plain loop does no checkpointing and
the engine's checkpoints are off too (``checkpoint=False``), so the ratio is the engine's own cost.

    .venv/bin/python benchmarks/train_teacher_speed.py [--threads 1] [--rounds 5] [--steps 300]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F


def plain_loop(model, train, steps: int, batch_size: int, lr: float, seed: int) -> None:
    from xdistill.checkpoint import save_weights

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    done = 0
    while done < steps:
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train), batch_size):
            index = order[start : start + batch_size]
            loss = F.cross_entropy(model(train.x[index]), train.y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    with tempfile.TemporaryDirectory() as tmp:
        save_weights(model.eval(), f"{tmp}/model.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--n-train", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from xdistill import train_teacher
    from xdistill.data import load_dataset
    from xdistill.models import build_model

    train, _ = load_dataset("synthetic_series", n_train=args.n_train, n_test=10, length=150)

    def model():
        torch.manual_seed(0)
        return build_model("fcn1d", 1, train.num_classes, width=0.5)

    def engine() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            train_teacher(
                model(),
                train,
                steps=args.steps,
                batch_size=args.batch_size,
                lr=1e-3,
                warmup=0.0,
                schedule="constant",
                val_fraction=0.0,
                monitor="train_loss",
                work_dir=tmp,
                progress=False,
                loggers=(),
                checkpoint=False,
            )

    runs = {
        "plain loop": lambda: plain_loop(model(), train, args.steps, args.batch_size, 1e-3, 0),
        "train_teacher": engine,
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up
        run()
    for _ in range(args.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"FCN (w=0.5) on synthetic_series N={args.n_train}, T=150, {args.steps} steps of batch {args.batch_size}, "
        f"{args.threads} thread(s), median of {args.rounds} interleaved rounds"
    )
    print("| call | seconds | ratio |")
    print("|---|---|---|")
    for name, value in median.items():
        print(f"| {name} | {value:.2f} | {value / median['plain loop']:.3f}x the plain loop |")


if __name__ == "__main__":
    main()
