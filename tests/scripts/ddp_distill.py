"""Run by tests/test_ddp.py: distill on generated data with 1 process or 2 DDP processes (gloo, CPU).

Usage: ddp_distill.py CASES DEVICES OUT TEACHER. CASES is comma-separated ``case:epochs``; each trains
into OUT/CASE, one after the other in the same processes (the process group is reused), so one launch
covers several cases. Cases named ``*_defaults`` keep every TrainConfig default (checkpoint_seconds
10, val_fraction 0.2) and set only a budget and patience.
"""

import json
import sys

import numpy as np
import torch
from torch import nn

from xdistill.checkpoint import load_weights
from xdistill.data import ArrayDataset
from xdistill.engine import distill
from xdistill.models import build_model, build_rationale_model

cases, devices, root = [c.split(":") for c in sys.argv[1].split(",")], int(sys.argv[2]), sys.argv[3]


class AsDouble(nn.Module):
    """Casts the input to float64 (the teacher of the float64 cases sees the engine's float32 training data)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double()


def run_case(case: str, epochs: int) -> dict:
    rng = np.random.default_rng(0)
    n = 81 if case == "kd" else 80  # kd: the last batch of an epoch holds 1 sample, fewer than the processes
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 1, 20)) + y[:, None, None] * np.sin(np.linspace(0, 3, 20))
    data = ArrayDataset(x, y, ["a", "b"], "waves")
    torch.manual_seed(0)
    teacher = build_model("fcn1d", 1, 2, width=0.25)
    load_weights(teacher, sys.argv[4])
    torch.manual_seed(1)
    student = build_model("lstm", 1, 2, hidden=8, layers=1)
    options = dict(epochs=epochs, batch_size=16, lr=1e-2, val_fraction=0, checkpoint_seconds=0)
    if (
        case == "rekd"
    ):  # rationale models: a seeded (untrained) teacher, an LSTM predictor (no batch norm) for the student
        torch.manual_seed(2)
        teacher = build_rationale_model(1, 2, "window", 4, "fcn1d", {"width": 0.25})
        student = build_rationale_model(1, 2, "window", 4, "lstm", {"hidden": 8, "layers": 1}, selector_width=0.5)
    if case.startswith("batchnorm"):
        # a BatchNorm student (fcn1d) under KD + TSD, in float64: float32 rounding differences between one batch
        # and two halves grow to 1e-3..3e-2 in the weights within 15 steps (measured), which would hide a real
        # difference; _local: each process normalises with its own share's statistics
        torch.manual_seed(1)
        student = build_model("fcn1d", 1, 2, width=0.25)
        teacher = nn.Sequential(AsDouble(), teacher.double())
        options.update(precision="64-true", sync_batchnorm=not case.endswith("_local"))
    if case.endswith("_defaults"):
        options = dict(epochs=epochs, batch_size=16, lr=1e-2, patience=2)  # every other setting at its default
    if case == "augment_defaults":  # images, crop + flip, a BatchNorm-free CNN student and no teacher
        images = rng.random(size=(80, 1, 12, 12)).astype(np.float32)
        images[y == 1, :, 3:9, 2:5] += 1.0
        data = ArrayDataset(images, y, ["a", "b"], "blocks")
        teacher = None
        torch.manual_seed(1)
        student = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 2)
        )
        options["augment"] = [{"name": "random_crop", "padding": 2}, {"name": "hflip"}]
    spec = {
        "kd": ["hinton"],
        "ig_overlay": [{"name": "kd_ig", "p": 0.5, "n_steps": 8, "store_chunk": 8}],
        "tsd": [{"name": "tsd_published", "perturbations": 5, "window": 4}],
        "batchnorm": ["hinton", {"name": "tsd", "perturbations": 5, "window": 4}],
        "batchnorm_local": ["hinton", {"name": "tsd", "perturbations": 5, "window": 4}],
        "rekd": [{"name": "rekd", "ratio": 0.3}],
        "ce_defaults": ["ce"],
        "augment_defaults": ["ce"],
        "ce_kd_tsd_defaults": [
            "ce",
            {"name": "kd", "weight": 0.5, "temperature": 4},
            {"name": "tsd", "weight": 1, "perturbations": 5, "window": 4},
        ],
    }[case]
    result = distill(
        teacher,
        student,
        data,
        spec,
        work_dir=f"{root}/{case}",
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        progress=False,
        loggers=(),
        **options,
    )
    return {
        "epochs": len(result.epoch_seconds),
        "best_epoch": result.metrics.get("best_epoch"),
        "val_loss": result.metrics.get("val/loss"),
    }


results = {case: run_case(case, int(epochs)) for case, epochs in cases}
if not (torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() != 0):
    print("RESULT" + json.dumps(results))
