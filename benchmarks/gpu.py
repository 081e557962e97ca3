"""The one command for a lent GPU: check every term, explainer and data family on the device, measure the engine
against plain loops there, then run the KD-IG protocol study. Everything lands in ``OUT/gpu.json``.

    .venv/bin/python benchmarks/gpu.py --out runs/gpu                       # on the GPU machine
    .venv/bin/python benchmarks/gpu.py --tiny --device cpu --out /tmp/gpu   # the same path at a tiny budget

Parts, in order; a failing part is recorded with its last error line and the next part runs:

1. ``placement``: ``tests/test_placement.py`` with ``XDISTILL_TEST_DEVICE=<device>`` (a training step of every
   bundled student and every explainer on the device), then the fast test subset (``-m "not slow"``) on that
   machine (those tests choose their own devices, mostly the CPU).
2. ``precision``: a short ``distill()`` of each data family (series, images, tokens) at ``bf16-mixed`` on the
   device (``32-true`` on a CPU): the loss stays finite and the student learns something.
3. ``throughput``: ``distill()`` against an independent plain loop doing the same optimiser steps on the device
   (GunPoint, ``benchmarks/small_data_overhead.py``), then ``benchmarks/ig_throughput.py --device`` (IG against Captum and its bound).
4. ``kdig``: KD vs KD + IG overlay (p = 0.1) under ``kdig_paper`` on Fashion-MNIST (all 60k training and 10k test
   images, 100 epochs, 50 IG steps; ``--tiny``: 256 / 128 images, 1 epoch, 8 IG steps, one seed), the seeds as
   parallel processes sharing the device (``xdistill run --jobs``). The run directory resumes: run the command again after an interruption.

``--tiny`` runs each part at a tiny budget (``tests/test_gpu_script.py`` runs it on the CPU, so it cannot rot).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _python(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """This interpreter run from the repository root with ``arguments``, its output captured."""
    return subprocess.run([sys.executable, *arguments], cwd=ROOT, env=env, capture_output=True, text=True)


def placement(device: str, tiny: bool) -> dict[str, Any]:
    env = {**os.environ, "XDISTILL_TEST_DEVICE": device}
    if tiny:  # one student and the explainers: the path, not the coverage
        runs = {"placement": ["tests/test_placement.py", "-k", "default and alone or explainer"]}
    else:
        runs = {"placement": ["tests/test_placement.py"], "fast subset": ["-m", "not slow"]}
    out = {}
    for name, selection in runs.items():
        done = _python("-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *selection, env=env)
        out[name] = {"returncode": done.returncode, "summary": _tail(done.stdout)}
    return out


def precision(device: str, tiny: bool) -> dict[str, Any]:
    import torch

    from xdistill import RunConfig, TrainConfig, distill
    from xdistill.data import load_dataset
    from xdistill.models.factory import model_for_data

    gpu = device.startswith("cuda")
    mode = "bf16-mixed" if gpu else "32-true"
    families = {
        "series": ("ucr:GunPoint", {}, "fcn1d", {"width": 0.125}),
        "images": ("fashion_mnist", {"max_train": 512, "max_test": 64}, "cnn", {"width": 0.25, "depth": 2}),
        "tokens": ("synthetic_text", {"n_train": 256, "n_test": 64}, "textcnn", {}),
    }
    out = {}
    for family, (name, options, model, model_options) in families.items():
        try:
            train, _ = load_dataset(name, **options)
            student = model_for_data(model, train.x[:2], train.num_classes, options=model_options, seed=0)
            torch.manual_seed(0)
            with tempfile.TemporaryDirectory() as work:
                result = distill(
                    None,
                    student,
                    train,
                    ["ce"],
                    config=TrainConfig(steps=4 if tiny else 200, batch_size=32, val_fraction=0.0),
                    run=RunConfig(work_dir=work, progress=False, precision=mode, accelerator="gpu" if gpu else "cpu"),
                )
            loss = float(result.metrics.get("train/loss", float("nan")))
            out[family] = {"precision": mode, "train_loss": loss, "finite": loss == loss and abs(loss) < 1e30}
        except Exception as error:  # recorded; the next family runs
            out[family] = {"precision": mode, "error": f"{type(error).__name__}: {_tail(str(error))}"}
    return out


def throughput(device: str, tiny: bool, out_dir: Path) -> dict[str, Any]:
    steps, rounds = ("40", "1") if tiny else ("800", "3")
    out: dict[str, Any] = {}
    overhead = out_dir / "small_data_overhead.json"
    done = _python(
        "benchmarks/small_data_overhead.py",
        "--steps",
        steps,
        "--rounds",
        rounds,
        "--device",
        device,
        "--json",
        str(overhead),
    )
    out["engine_vs_plain_loop"] = json.loads(overhead.read_text()) if done.returncode == 0 else _tail(done.stderr)
    ig = out_dir / "ig_throughput.json"
    done = _python("benchmarks/ig_throughput.py", "--device", device, "--repeats", rounds, "--json", str(ig))
    out["integrated_gradients"] = json.loads(ig.read_text()) if done.returncode == 0 else _tail(done.stderr)
    return out


def kdig_recipe(device: str, tiny: bool, epochs: int, seeds: list[int]) -> dict[str, Any]:
    """KD (p = 0) and KD + IG overlay (p = 0.1) under ``kdig_paper``; the teacher trained in the study."""
    data = yaml.safe_load((ROOT / "recipes" / "ig_overlay_fashion_mnist.yaml").read_text())
    data.update(name="gpu-kdig-paper", seeds=seeds, device="gpu" if device.startswith("cuda") else "cpu")
    data.pop("seed", None)
    if tiny:
        data["dataset"].update(max_train=256, max_test=128)
        data["teacher"]["train"] = {"steps": 10}
        data["evaluation"]["max_samples"] = 32
    else:
        data["dataset"].pop("max_train", None)
        data["dataset"].pop("max_test", None)
    data["training"] = {"protocol": "kdig_paper", "epochs": epochs}
    data["students"] = [
        {
            "name": "kd_ig",
            "model": "cnn",
            "options": {"width": 0.25, "depth": 2},
            "methods": [{"name": "kd_ig", "n_steps": 8 if tiny else 50}],
            "sweep": {"option": "p", "values": [0.0, 0.1]},
        }
    ]
    return data


def kdig(device: str, tiny: bool, out_dir: Path, epochs: int, seeds: list[int], jobs: int) -> dict[str, Any]:
    from xdistill.files import read_json

    recipe = out_dir / "kdig.yaml"
    recipe.write_text(yaml.safe_dump(kdig_recipe(device, tiny, epochs, seeds)))
    run_dir = out_dir / "kdig"
    started = time.perf_counter()
    done = _python("-m", "xdistill", "run", str(recipe), "--out", str(run_dir), "--quiet", "--jobs", str(jobs))
    out: dict[str, Any] = {"returncode": done.returncode, "seconds": time.perf_counter() - started, "seeds": {}}
    if done.returncode != 0:
        out["error"] = _tail(done.stderr)
    for seed in seeds:
        for path in sorted((run_dir / f"seed-{seed}" / "evaluation").glob("kd_ig*.json")):
            figures = read_json(path)
            out["seeds"].setdefault(str(seed), {})[path.stem] = {
                "accuracy": figures.get("student_accuracy_all", figures["student_accuracy"]),
                "saliency_spearman": figures["saliency_spearman"]["mean"],
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default="runs/gpu")
    parser.add_argument("--tiny", action="store_true", help="every part at a tiny budget (a check of the path)")
    parser.add_argument("--parts", nargs="+", default=["placement", "precision", "throughput", "kdig"])
    parser.add_argument("--kdig-epochs", type=int, default=None, help="default 100 (the paper's); --tiny: 1")
    parser.add_argument("--kdig-seeds", type=int, nargs="+", default=None, help="default 0 1 2 3; --tiny: 0")
    parser.add_argument("--jobs", type=int, default=4, help="seeds of the kdig part run at once (sharing the device)")
    args = parser.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    epochs = args.kdig_epochs or (1 if args.tiny else 100)
    seeds = args.kdig_seeds or ([0] if args.tiny else [0, 1, 2, 3])  # (seeds side by side: tests/test_jobs.py)
    parts = {
        "placement": lambda: placement(args.device, args.tiny),
        "precision": lambda: precision(args.device, args.tiny),
        "throughput": lambda: throughput(args.device, args.tiny, out_dir),
        "kdig": lambda: kdig(args.device, args.tiny, out_dir, epochs, seeds, min(args.jobs, len(seeds))),
    }
    report_path = out_dir / "gpu.json"
    report: dict[str, Any] = json.loads(report_path.read_text()) if report_path.exists() else {}
    report.update(device=args.device, tiny=args.tiny, date=time.strftime("%Y-%m-%d"))
    for name in args.parts:
        started = time.perf_counter()
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
        try:
            result = parts[name]()
        except Exception as error:  # recorded; the next part runs
            result = {"error": f"{type(error).__name__}: {_tail(str(error))}"}
        report[name] = {"seconds": round(time.perf_counter() - started, 1), **result}
        report_path.write_text(json.dumps(report, indent=2))  # after every part: an interruption keeps the rest
        print(json.dumps(report[name], indent=2)[:2000], flush=True)
    print(f"written: {report_path}")


if __name__ == "__main__":
    main()
