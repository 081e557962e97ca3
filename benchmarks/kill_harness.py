"""The random-kill harness: studies with every stateful term, each SIGKILLed at uniform random times and run again,
must end bitwise equal to an uninterrupted run (weights of the teacher and every student, evaluation figures).

    .venv/bin/python benchmarks/kill_harness.py --kills 8 --out runs/kill-harness    # about 25 min on 2 cores

Each study keeps a bundled recipe's students, terms and term options as shipped (a ``bank:``, ``K``, ``lam``, ``p``,
layers, augmentation) at small budgets and on cut data. ``tests/test_resume_recipes.py`` kills the same studies right
after each fit's first checkpoint. The summary (``summary.json`` in ``--out``) lists every kill: when, what was
being trained, and whether the rerun ended equal.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from safetensors.torch import load_file

from xdistill.recipe import default_recipe_path

RECIPES = default_recipe_path().parent
FASHION = Path("/usr/share/datasets/fashion-mnist")


def bundled(name: str) -> dict:
    return yaml.safe_load((RECIPES / f"{name}.yaml").read_text())


def small_evaluation(data: dict, samples: int = 12) -> None:
    data["evaluation"].update(max_samples=samples, examples=0, flip_steps=0)
    data["evaluation"].pop("also", None)


def default_study() -> dict:
    """default.yaml's TSD student (bank 20, K 10) and its KD student with per-sample jitter augmentation."""
    data = bundled("default")
    data.pop("seeds")
    data["teacher"]["train"] = {"steps": 40, "checkpoint_seconds": 0}
    data["training"] = {"steps": 48, "checkpoint_seconds": 0}
    kd, tsd = data["students"][1], data["students"][2]
    kd["train"] = {"augment": [{"name": "jitter", "sigma": 0.03}]}
    data["students"] = [tsd, kd]
    small_evaluation(data)
    return data


def tsd_paper() -> dict:
    """tsd_paper.yaml's TSD student as shipped (LSTM, K 50 from a bank of 100, λ 1) under its own protocol."""
    data = bundled("tsd_paper")
    data["teacher"]["options"] = {"hidden": 16, "layers": 1}
    data["teacher"]["train"] = {"protocol": "tsd_paper", "steps": 24, "checkpoint_seconds": 0}
    data["training"] = {"protocol": "tsd_paper", "steps": 30, "checkpoint_seconds": 0}
    tsd = data["students"][2]
    tsd.pop("sweep")
    data["students"] = [tsd]
    small_evaluation(data)
    return data


def rekd_series() -> dict:
    """rekd_series.yaml's REKD student (Gumbel temperature annealed per 100 steps, keyed noise)."""
    data = bundled("rekd_series")
    data["dataset"]["options"] = {"n_train": 160, "n_test": 40}
    data["teacher"]["train"].update(steps=30, checkpoint_seconds=0)
    data["training"].update(steps=40, checkpoint_seconds=0)
    data["students"] = [data["students"][1]]
    small_evaluation(data)
    return data


def subdistill() -> dict:
    """subdistill_fashion_mnist.yaml's SubDistill, FitNets and AT students (basis, regressors) under the official
    protocol (augmentation, drop_last)."""
    data = bundled("subdistill_fashion_mnist")
    data["dataset"].update(max_train=800, max_test=100)
    data["teacher"]["options"] = {"width": 0.25}
    data["teacher"]["train"] = {"steps": 20, "checkpoint_seconds": 0}
    data["training"] = {"protocol": "subdistill_paper", "steps": 16, "checkpoint_seconds": 0}
    data["students"] = [data["students"][i] for i in (3, 1, 2)]
    small_evaluation(data)
    data["evaluation"]["explainer_options"] = {"n_steps": 4}
    return data


def ig_overlay() -> dict:
    """ig_overlay_fashion_mnist.yaml's kd_ig student (the teacher's IG store, overlays drawn per sample)."""
    data = bundled("ig_overlay_fashion_mnist")
    data["dataset"].update(max_train=300, max_test=100)
    data["teacher"]["options"] = {"width": 0.25, "depth": 2}
    data["teacher"]["train"] = {"steps": 20, "checkpoint_seconds": 0}
    data["training"] = {"steps": 30, "batch_size": 32, "checkpoint_seconds": 0}
    kd_ig = data["students"][3]
    kd_ig.pop("sweep")
    kd_ig["methods"] = [{"name": "kd_ig", "n_steps": 16, "p": 0.5}]
    data["students"] = [kd_ig]
    small_evaluation(data)
    data["evaluation"]["explainer_options"] = {"n_steps": 4}
    return data


STUDIES = {
    "default": default_study,
    "tsd_paper": tsd_paper,
    "rekd_series": rekd_series,
    "subdistill": subdistill,
    "ig_overlay": ig_overlay,
}
NEEDS_FASHION = {"subdistill", "ig_overlay"}


def command(recipe: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "xdistill", "run", str(recipe), "--out", str(out), "--quiet"]


def run_to_end(recipe: Path, out: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(command(recipe, out), capture_output=True, text=True, timeout=900, cwd=recipe.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def kill_after_first_checkpoint(recipe: Path, out: Path, work: Path) -> bool:
    """Run until ``work``'s first checkpoint appears, then SIGKILL; False when the run ended first."""
    checkpoint = work / "checkpoints" / "last.safetensors"
    process = subprocess.Popen(
        command(recipe, out), cwd=recipe.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 900
    while not checkpoint.exists():
        if process.poll() is not None:
            assert process.returncode == 0, (process.stderr.read() if process.stderr else "")[-2000:]
            return False
        assert time.time() < deadline, f"no checkpoint in {work} after 900 s"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    if process.stderr is not None:
        process.stderr.close()
    return True


def trained(out: Path, names: list[str]) -> dict[str, dict]:
    files = {"teacher": out / "teacher" / "teacher.safetensors"}
    files.update({name: out / "students" / name / "student.safetensors" for name in names})
    return {who: load_file(str(path)) for who, path in files.items()}


def evaluation(out: Path, name: str) -> dict:
    """A student's evaluation figures, less the measured speeds (wall-clock, never equal twice)."""
    data = json.loads((out / "evaluation" / f"{name}.json").read_text())
    measured = ("_sha256", "latency", "seconds", "speedup", "throughput")
    return {k: v for k, v in data.items() if not any(word in k for word in measured)}


def epochs_logged(work: Path) -> list[int]:
    """The epochs of the newest CSV log of a fit (a resumed fit writes a new version, starting from epoch 1)."""
    logs = sorted(work.glob("logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    rows = [line.split(",") for line in logs[-1].read_text().splitlines()]
    column = rows[0].index("epoch")
    return [int(float(row[column])) for row in rows[1:] if row[column]]


def fits(out: Path, names: list[str]) -> list[Path]:
    return [out / "teacher"] + [out / "students" / name for name in names]


def differences(a: Path, b: Path, names: list[str]) -> list[str]:
    """What differs between two finished runs: weights (bitwise) and evaluation figures (less measured speeds)."""
    found = []
    one, two = trained(a, names), trained(b, names)
    for who in one:
        found += [f"{who}:{k}" for k in one[who] if not one[who][k].equal(two[who][k])]
    found += [f"evaluation:{name}" for name in names if evaluation(a, name) != evaluation(b, name)]
    return found


def in_training(out: Path) -> str:
    """What the killed run was doing: the last line of its log (without the time), or "" before the log began."""
    log = out / "log.txt"
    lines = log.read_text().splitlines() if log.exists() else []
    return lines[-1].split("] ", 1)[-1][:80] if lines else ""


def harness(study: str, kills: int, root: Path, seed: int) -> dict:
    data = STUDIES[study]()
    root.mkdir(parents=True, exist_ok=True)
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(data))
    names = [s["name"] for s in data["students"]]
    started = time.perf_counter()
    run_to_end(recipe, root / "whole")
    duration = time.perf_counter() - started
    rng = np.random.default_rng(seed)
    rows = []
    for k, at in enumerate(sorted(rng.uniform(0, duration, kills))):
        out = root / f"killed-{k}"
        shutil.rmtree(out, ignore_errors=True)
        process = subprocess.Popen(command(recipe, out), cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(at)
        ended_first = process.poll() is not None
        if not ended_first:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        where = in_training(out)
        run_to_end(recipe, out)
        differ = differences(root / "whole", out, names)
        rows.append(
            {
                "at_seconds": round(float(at), 2),
                "ended_before_kill": ended_first,
                "training": where,
                "equal": not differ,
                "differs": differ[:5],
            }
        )
        print(
            f"{study}: kill {k + 1}/{kills} at {at:.1f} s of {duration:.1f} (last logged: {where or 'nothing yet'}): "
            f"{'equal' if not differ else 'DIFFERS ' + ', '.join(differ[:3])}",
            flush=True,
        )
    return {
        "study": study,
        "whole_seconds": round(duration, 1),
        "kills": rows,
        "equal": sum(r["equal"] for r in rows),
        "of": len(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=8, help="kills per study, at uniform random times")
    parser.add_argument("--studies", nargs="*", default=sorted(STUDIES), choices=sorted(STUDIES))
    parser.add_argument("--out", default="runs/kill-harness")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    results = [
        harness(s, args.kills, out / s, args.seed) for s in args.studies if s not in NEEDS_FASHION or FASHION.exists()
    ]
    summary = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "studies": results}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    for r in results:
        print(f"{r['study']}: {r['equal']}/{r['of']} kills ended bitwise equal (whole run {r['whole_seconds']} s)")


if __name__ == "__main__":
    main()
