"""The TSD paper's LSTM teacher (3 x 100) under the official protocol (``tsd_paper``), seed by seed.

Does it learn GunPoint and Trace? For each seed: best epoch, epochs run, eval-mode training and
validation accuracy (the split carved from the training data) and test accuracy; a seed "learns"
when its training accuracy is at least 0.9. The teacher a study should use is the seed with the
best validation loss, never the best test figure.

    .venv/bin/python benchmarks/tsd_teacher_seeds.py --sets GunPoint Trace --seeds 0 1 2 3 4 [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
import yaml

from xdistill.config import TrainConfig
from xdistill.data import load_dataset
from xdistill.engine import train_teacher
from xdistill.metrics import accuracy, predict
from xdistill.models import build_model
from xdistill.recipe import default_recipe_path

#: the teacher exactly as the tsd_paper recipe builds it (chained layer states, as the official code's unrolled
#: LSTM; the third and first fourth-edition tables built the zero-state stack, another function of the weights)
TEACHER_OPTIONS = yaml.safe_load((default_recipe_path().parent / "tsd_paper.yaml").read_text())["teacher"]["options"]
LENGTHS = {"GunPoint": 100, "Trace": 100, "ItalyPowerDemand": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["GunPoint", "Trace"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None, help="cut the 500-epoch budget (say so when reporting)")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.sets:
        options = {"length": LENGTHS[name]} if LENGTHS.get(name) else {}
        # as reproduce.py's TSD studies load it (per-series z-normalisation, the loader's default): the third
        # edition's table loaded normalize="none", inputs up to 0.007 apart, and the LSTM's outcome on GunPoint
        # flipped on some seeds (RESULTS.md, "two teacher tables")
        train, test = load_dataset(f"ucr:{name}", **options)
        for seed in args.seeds:
            torch.manual_seed(seed)
            model = build_model("lstm", train.input_shape[0], train.num_classes, **TEACHER_OPTIONS)
            config = TrainConfig(protocol="tsd_paper", seed=seed, **({"epochs": args.epochs} if args.epochs else {}))
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                result = train_teacher(
                    model, train, config=config, work_dir=tmp, progress=False, loggers=(), checkpoint=False
                )
            m = {**result.metrics, **result.accuracy()}  # eval-mode train / validation accuracy, on request
            row = {
                "set": name,
                "seed": seed,
                "best_epoch": m.get("best_epoch"),
                "epochs_run": m.get("epochs_run"),
                "train_acc": m["train_acc"],
                "val_acc": m.get("val_acc"),
                "val_loss": m.get("val/loss"),
                "test_acc": accuracy(predict(model, test.x), test.y),
                "learns": m["train_acc"] >= 0.9,
                "seconds": round(time.perf_counter() - started, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    for name in args.sets:
        mine = [r for r in rows if r["set"] == name]
        chosen = min(mine, key=lambda r: r["val_loss"])
        print(
            f"{name}: {sum(r['learns'] for r in mine)}/{len(mine)} seeds learn (train acc >= 0.9); "
            f"chosen on validation loss: seed {chosen['seed']} (val {chosen['val_acc']:.3f}, "
            f"test {chosen['test_acc']:.3f})"
        )
    if args.json:
        from reproduce import provenance  # benchmarks/ is on the path when this file runs as a script

        with open(args.json, "w") as handle:
            json.dump({**provenance(args.threads), "teachers": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
