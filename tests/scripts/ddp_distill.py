"""Run by tests/test_ddp.py: distill on generated waves with 1 process or 2 DDP processes (gloo, CPU)."""
import json, sys
import numpy as np, torch
from xdistill.data import ArrayDataset
from xdistill.engine import distill
from xdistill.models import build_model, build_rationale_model
from xdistill.checkpoint import load_weights

method, devices, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
epochs = int(sys.argv[5]) if len(sys.argv) > 5 else 3
rng = np.random.default_rng(0)
y = np.arange(80) % 2
x = rng.normal(size=(80, 1, 20)) + y[:, None, None] * np.sin(np.linspace(0, 3, 20))
data = ArrayDataset(x, y, ["a", "b"], "waves")
torch.manual_seed(0)
teacher = build_model("fcn1d", 1, 2, width=0.25)
load_weights(teacher, sys.argv[4])
torch.manual_seed(1)
student = build_model("lstm", 1, 2, hidden=8, layers=1)
if method == "rekd":  # rationale models: a seeded (untrained) teacher, an LSTM predictor (no batch norm) for the student
    torch.manual_seed(2)
    teacher = build_rationale_model(1, 2, "window", 4, "fcn1d", {"width": 0.25})
    student = build_rationale_model(1, 2, "window", 4, "lstm", {"hidden": 8, "layers": 1}, selector_width=0.5)
spec = {"kd": "kd", "ig_overlay": {"name": "ig_overlay", "p": 0.5, "n_steps": 8, "store_chunk": 8},
        "tsd": {"name": "tsd", "perturbations": 5, "window": 4}, "rekd": {"name": "rekd", "ratio": 0.3}}[method]
result = distill(teacher, student, data, [spec], epochs=epochs, batch_size=16, lr=1e-2, val_fraction=0, work_dir=out,
                 accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                 progress=False, loggers=(), checkpoint_seconds=0)
if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
    sys.exit(0)
print("RESULT" + json.dumps({"epochs": len(result.epoch_seconds)}))
