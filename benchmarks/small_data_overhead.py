"""The engine's fixed cost on tiny data: ``distill()`` against an independent plain PyTorch loop doing the same
optimiser steps on the same batches (GunPoint: 50 series, batch 16, so 4 steps an epoch and hundreds of epochs).

Settings, each engine run beside its plain loop, rounds interleaved, one thread, medians:

* ``ce``: cross-entropy alone, no validation split (``val_fraction: 0``): every epoch trains on all 50 series
  (the default study's ``alone`` student, FCN width 1/8);
* ``ce+val``: the engine's default 20% validation split, validated every epoch; the plain loop trains on the
  same 40 series and validates on the same 10 every epoch;
* ``teacher``: ``ce`` on the default study's teacher (FCN width 1/2);
* ``kd``: the ``hinton`` preset (0.1·CE + 0.9·T²·KL, T = 4) from a width-1/2 teacher (the default study's ``kd``
  student); the plain loop runs the teacher under ``no_grad`` every step, as one writes it; the engine computes
  each sample's teacher logits once (its cache: the input does not change between epochs).

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


#: setting -> (validation share, student width, distilled from a teacher)
SETTINGS = {
    "ce": (0.0, 0.125, False),
    "ce+val": (0.2, 0.125, False),
    "teacher": (0.0, 0.5, False),
    "kd": (0.0, 0.125, True),
}
TEMPERATURE, ALPHA = 4.0, 0.9


def _teacher(device: torch.device) -> torch.nn.Module:
    torch.manual_seed(1)
    return build_model("fcn1d", 1, 2, width=0.5).to(device).eval()


def engine_seconds(train, steps: int, setting: str, device: torch.device) -> float:
    val_fraction, width, distilled = SETTINGS[setting]
    torch.manual_seed(0)
    student = build_model("fcn1d", 1, 2, width=width)
    teacher = _teacher(device) if distilled else None
    methods = ["hinton"] if distilled else ["ce"]
    config = TrainConfig(steps=steps, batch_size=16, val_fraction=val_fraction, lr=1e-3)
    run = {"accelerator": "gpu" if device.type == "cuda" else "cpu"}
    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        distill(teacher, student, train, methods, config=config, run=RunConfig(work_dir=work, progress=False, **run))
        _sync(device)
        return time.perf_counter() - started


def plain_seconds(train, steps: int, setting: str, device: torch.device) -> float:
    """Adam with a cosine schedule (the engine's defaults), shuffled batches of 16, ``steps`` optimiser steps; with a
    split, a full validation pass per epoch; distilled, Hinton's loss with the teacher run on every batch."""
    val_fraction, width, distilled = SETTINGS[setting]
    torch.manual_seed(0)
    student = build_model("fcn1d", 1, 2, width=width).to(device)
    teacher = _teacher(device) if distilled else None
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
            inputs, labels = x[batch].to(device), y[batch].to(device)
            logits = student(inputs)
            loss = F.cross_entropy(logits, labels)
            if teacher is not None:
                with torch.no_grad():
                    soft = F.log_softmax(teacher(inputs) / TEMPERATURE, dim=1)
                kl = F.kl_div(F.log_softmax(logits / TEMPERATURE, dim=1), soft, reduction="batchmean", log_target=True)
                loss = (1 - ALPHA) * loss + ALPHA * TEMPERATURE**2 * kl
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
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    train, _ = load_dataset("ucr:GunPoint")
    settings = args.settings or list(SETTINGS)
    times: dict[str, dict[str, list[float]]] = {name: {"engine": [], "plain": []} for name in settings}
    engine_seconds(train, 20, "ce", device)  # warm-up (imports, first-call costs)
    for _ in range(args.rounds):
        for name in settings:
            times[name]["engine"].append(engine_seconds(train, args.steps, name, device))
            times[name]["plain"].append(plain_seconds(train, args.steps, name, device))
    print(
        f"GunPoint, FCN students w=0.125 (teacher w=0.5), batch 16, {args.steps} steps, {device}, 1 thread, "
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
