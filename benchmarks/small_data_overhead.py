"""The engine's fixed cost on tiny data: ``distill()`` against an independent plain PyTorch loop doing the same
optimiser steps on the same batches (GunPoint: 50 series, batch 16, so 4 steps an epoch and hundreds of epochs).

Two settings, each engine run beside its plain loop, rounds interleaved, one thread, medians:

* ``ce``: cross-entropy alone, no validation split (``val_fraction: 0``): every epoch trains on all 50 series;
* ``ce+val``: the engine's default 20% validation split, validated every epoch; the plain loop trains on the
  same 40 series and validates on the same 10 every epoch.

Run (prints a Markdown table and writes the JSON given with ``--json``):
    .venv/bin/python benchmarks/small_data_overhead.py [--steps 800] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from xdistill import RunConfig, TrainConfig, distill
from xdistill.data import load_dataset
from xdistill.engine.loaders import training_part
from xdistill.models import build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def engine_seconds(train, steps: int, val_fraction: float, device: torch.device) -> float:
    torch.manual_seed(0)
    student = build_model("fcn1d", 1, 2, width=0.125)
    config = TrainConfig(steps=steps, batch_size=16, val_fraction=val_fraction, lr=1e-3)
    run = {"accelerator": "gpu" if device.type == "cuda" else "cpu"}
    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        distill(None, student, train, ["ce"], config=config, run=RunConfig(work_dir=work, progress=False, **run))
        _sync(device)
        return time.perf_counter() - started


def plain_seconds(train, steps: int, val_fraction: float, device: torch.device) -> float:
    """Adam with a cosine schedule (the engine's defaults), shuffled batches of 16, ``steps`` optimiser steps; with a
    split, a full validation pass per epoch."""
    torch.manual_seed(0)
    student = build_model("fcn1d", 1, 2, width=0.125).to(device)
    part, val = training_part(train, TrainConfig(val_fraction=val_fraction), None)
    x, y = torch.as_tensor(part.x, dtype=torch.float32), torch.as_tensor(part.y).long()  # batches cross as the engine's
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)  # the engine's default, per step
    generator = torch.Generator().manual_seed(0)
    started, done = time.perf_counter(), 0
    while done < steps:
        student.train()
        order = torch.randperm(len(x), generator=generator)
        for begin in range(0, len(x), 16):
            batch = order[begin : begin + 16]
            loss = F.cross_entropy(student(x[batch].to(device)), y[batch].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            done += 1
            if done == steps:
                break
        if val is not None and len(val):
            student.eval()
            with torch.no_grad():
                logits = student(torch.as_tensor(val.x, dtype=torch.float32).to(device))
                labels = torch.as_tensor(val.y).long().to(device)
                float(F.cross_entropy(logits, labels)), float((logits.argmax(1) == labels).sum())
    _sync(device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    train, _ = load_dataset("ucr:GunPoint")
    settings = {"ce": 0.0, "ce+val": 0.2}
    times: dict[str, dict[str, list[float]]] = {name: {"engine": [], "plain": []} for name in settings}
    engine_seconds(train, 20, 0.0, device)  # warm-up (imports, first-call costs)
    for _ in range(args.rounds):
        for name, fraction in settings.items():
            times[name]["engine"].append(engine_seconds(train, args.steps, fraction, device))
            times[name]["plain"].append(plain_seconds(train, args.steps, fraction, device))
    print(
        f"GunPoint, FCN w=0.125, batch 16, {args.steps} steps, {device}, 1 thread, "
        f"median of {args.rounds} interleaved rounds\n"
    )
    print("| setting | engine (s) | plain loop (s) | ratio |\n|---|---|---|---|")
    summary = {}
    for name, arms in times.items():
        engine, plain = statistics.median(arms["engine"]), statistics.median(arms["plain"])
        ratios = [e / p for e, p in zip(arms["engine"], arms["plain"])]
        summary[name] = {
            **arms,
            "engine_median": engine,
            "plain_median": plain,
            "ratio_median": statistics.median(ratios),
        }
        print(f"| {name} | {engine:.2f} | {plain:.2f} | {statistics.median(ratios):.2f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"steps": args.steps, "rounds": args.rounds, "device": args.device, "settings": summary},
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
