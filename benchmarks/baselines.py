"""Baselines: the library's default teacher and a ~15x smaller student, each trained alone with the
family training defaults (TrainConfig: model selection on a validation split carved from the
training data, or on the training loss where the family's protocol says so; never on the test
split), several seeds, next to the published accuracy of the same architecture.

    .venv/bin/python benchmarks/baselines.py --seeds 0 1 2 [--only GunPoint fashion_mnist] [--out runs/baselines]

Resumable: finished (dataset, role, seed) entries in ``OUT/results.json`` are skipped; several
processes (e.g. one per seed) may share one OUT, each result is merged into the file under a lock.
Prints the Markdown table (also written to ``OUT/baselines.md``) and flags every teacher under its
reference; a row measured on fewer seeds than asked says so.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import statistics
import time
from pathlib import Path

import torch

from xdistill.config import data_family, resolve
from xdistill.data import load_dataset
from xdistill.engine import distill
from xdistill.files import write_json
from xdistill.metrics import accuracy, parameter_count, predict
from xdistill.models import build_model

#: dataset -> (teacher (model, options), student (model, options), published accuracy, source)
SETS = {
    "ucr:GunPoint": (("fcn1d", {"width": 0.5}), ("fcn1d", {"width": 0.125}), 1.000, "FCN, Wang et al. 2017"),
    "ucr:ArrowHead": (
        ("fcn1d", {"width": 0.5}),
        ("fcn1d", {"width": 0.125}),
        0.843,
        "FCN mean of 10 runs, Ismail Fawaz et al. 2019 (best run 0.880, Wang et al. 2017)",
    ),
    "ucr:ItalyPowerDemand": (("fcn1d", {"width": 0.5}), ("fcn1d", {"width": 0.125}), 0.970, "FCN, Wang et al. 2017"),
    "ucr:OSULeaf": (("fcn1d", {"width": 0.5}), ("fcn1d", {"width": 0.125}), 0.988, "FCN, Wang et al. 2017"),
    "ucr:BasicMotions": (("fcn1d", {"width": 0.5}), ("fcn1d", {"width": 0.125}), 1.000, "ResNet, Ruiz et al. 2021"),
    "ucr:JapaneseVowels": (
        ("fcn1d", {"width": 0.5}),
        ("fcn1d", {"width": 0.125}),
        0.993,
        "FCN, Ismail Fawaz et al. 2019 (MTS archive)",
    ),
    "fashion_mnist": (
        ("cnn", {"width": 1.0}),
        ("cnn", {"width": 0.25}),
        0.925,
        "'2 Conv <100K parameters', Fashion-MNIST benchmark table",
    ),
}


def run_one(dataset: str, role: str, seed: int, out: Path) -> dict:
    train, test = load_dataset(dataset)
    (t_name, t_opts), (s_name, s_opts), _, _ = SETS[dataset]
    name, options = (t_name, t_opts) if role == "teacher" else (s_name, s_opts)
    torch.manual_seed(seed)
    model = build_model(name, train.input_shape[0], train.num_classes, **options)
    config = resolve(None, data_family(tuple(train.x.shape)), role).model_copy(update={"seed": seed})
    started = time.perf_counter()
    result = distill(
        None,
        model,
        train,
        ["ce"],
        config=config,
        work_dir=out / "runs" / f"{dataset}-{role}-{seed}",
        progress=False,
        loggers=(),
    )
    seconds = time.perf_counter() - started
    found = result.accuracy()  # eval-mode train / validation accuracy, computed on request
    return {
        "test_acc": accuracy(predict(model, test.x), test.y),
        "train_acc": found["train_acc"],
        "val_acc": found.get("val_acc"),
        "best_epoch": result.metrics.get("best_epoch"),
        "epochs": result.metrics["epochs_run"],
        "seconds": seconds,
        "params": parameter_count(model),
        "config": config.model_dump(),
    }


def fmt(values: list[float]) -> str:
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}"


def save_result(out: Path, key: str, value: dict) -> dict:
    """Merge one result into ``out/results.json`` under a lock (other processes may be writing too)."""
    path = out / "results.json"
    with open(out / ".results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits for the other writer
        results = json.loads(path.read_text()) if path.exists() else {}
        results[key] = value
        write_json(path, results)
    return results


def table(results: dict, seeds: list[int]) -> str:
    lines = [
        "| dataset | seeds | teacher (params) | teacher test acc | published | gap | student (params) | "
        "student test acc | student − teacher | train acc (eval mode) t / s | s per run t / s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset, (_, _, published, source) in SETS.items():
        done = [s for s in seeds if f"{dataset}|teacher|{s}" in results and f"{dataset}|student|{s}" in results]
        if not done:
            continue
        runs = {role: [results[f"{dataset}|{role}|{s}"] for s in done] for role in ("teacher", "student")}
        t = [r["test_acc"] for r in runs["teacher"]]
        s = [r["test_acc"] for r in runs["student"]]
        gap = statistics.fmean(t) - published
        flag = "" if gap >= -0.02 else " **under reference**"
        lines.append(
            f"| {dataset} | {len(done)}{'' if len(done) == len(seeds) else f' of {len(seeds)}'} | "
            f"{runs['teacher'][0]['params']:,} | {fmt(t)} | {published:.3f} ({source}) | {gap:+.3f}{flag} | "
            f"{runs['student'][0]['params']:,} | {fmt(s)} | {statistics.fmean(s) - statistics.fmean(t):+.3f} | "
            f"{statistics.fmean(r['train_acc'] for r in runs['teacher']):.3f} / "
            f"{statistics.fmean(r['train_acc'] for r in runs['student']):.3f} | "
            f"{statistics.fmean(r['seconds'] for r in runs['teacher']):.0f} / "
            f"{statistics.fmean(r['seconds'] for r in runs['student']):.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="*", default=None, help="dataset specs or names (GunPoint, fashion_mnist)")
    parser.add_argument("--out", type=Path, default=Path("runs/baselines"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    chosen = [d for d in SETS if not args.only or d in args.only or d.split(":")[-1] in args.only]
    for dataset in chosen:
        for seed in args.seeds:
            for role in ("teacher", "student"):
                key = f"{dataset}|{role}|{seed}"
                if key in results:
                    continue
                result = run_one(dataset, role, seed, args.out)
                results = save_result(args.out, key, result)
                print(
                    f"{key}: test {result['test_acc']:.3f}, train {result['train_acc']:.3f}, {result['seconds']:.0f} s",
                    flush=True,
                )
    markdown = table(results, args.seeds)
    (args.out / "baselines.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
