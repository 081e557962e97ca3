"""Reproduction study: each paper's setting over several seeds, mean ± std across seeds.

Every study is an ordinary recipe run once per seed (resumable: rerunning skips finished
stages). After each study, its table is written to ``--results`` (default RESULTS.md in the
run root), so partial results survive an interruption. Run:
    .venv/bin/python benchmarks/reproduce.py --seeds 0 1 2 [--only tsd where ig subdistill rekd]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from xdistill.recipe import default_recipe_path, parse_recipe
from xdistill.study import Study

RECIPES = default_recipe_path().parent
COLUMNS = [("student_accuracy", "accuracy"), ("agreement", "agreement"), ("logit_spearman", "logit Spearman"),
           ("saliency_spearman", "saliency Spearman"), ("topk_focus", "top-k focus")]
UCR_SETS = {"GunPoint": 10, "ArrowHead": 16, "ItalyPowerDemand": 3, "BasicMotions": 10, "JapaneseVowels": 3}


def _value(v: Any) -> float:
    return float(v["mean"]) if isinstance(v, dict) else float(v)


def run_seeds(name: str, data: dict[str, Any], seeds: list[int], root: Path) -> dict[str, Any]:
    """Run ``data`` (a recipe dict) once per seed; return per-student lists of per-seed means."""
    per_student: dict[str, dict[str, list[float]]] = {}
    teacher_acc, extra = [], {}
    for seed in seeds:
        recipe = parse_recipe(dict(copy.deepcopy(data), seed=seed))
        study = Study(recipe, root / name / f"seed{seed}", progress=False)
        study.run()
        for student in recipe.expanded_students():
            result = study.evaluate(student)
            row = per_student.setdefault(student.name, {})
            for key, _ in COLUMNS + [("compression", ""), ("speedup_b1", ""), ("speedup_b64", "")]:
                row.setdefault(key, []).append(_value(result[key]))
            teacher_acc.append(result["teacher_accuracy"])
            extra["teacher_params"] = result["teacher_params"]
    return {"students": per_student, "teacher_accuracy": teacher_acc, **extra}


def fmt(values: list[float]) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {std:.3f}"


def table(title: str, summary: dict[str, Any], seeds: list[int], note: str = "") -> str:
    lines = [f"### {title}", "", note, "",
             f"Teacher accuracy {fmt(summary['teacher_accuracy'])}; mean ± std over seeds {seeds} of per-seed means.", "",
             "| student | " + " | ".join(label for _, label in COLUMNS) + " | compression | speed-up b1 | speed-up b64 |",
             "|---|" + "---|" * (len(COLUMNS) + 3)]
    for name, row in summary["students"].items():
        cells = [fmt(row[k]) for k, _ in COLUMNS]
        cells += [f"{statistics.fmean(row['compression']):.1f}x", f"{statistics.fmean(row['speedup_b1']):.1f}x",
                  f"{statistics.fmean(row['speedup_b64']):.1f}x"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((RECIPES / name).read_text())


def tsd_studies():
    base = load("default.yaml")
    for dataset, window in UCR_SETS.items():
        data = copy.deepcopy(base)
        data["name"] = f"tsd-{dataset}"
        data["dataset"] = {"name": f"ucr:{dataset}", "options": {"znorm": True}}
        for student in data["students"]:
            if student["name"] == "tsd":
                student["methods"] = [{"name": "tsd", "window": window}]
        data["evaluation"].update(explainer_options={"window": window, "stride": window}, part_options={"size": window})
        yield f"TSD vs KD vs no-KD on {dataset} (window {window})", data["name"], data, (
            "Teacher FCN w=0.5 (60 epochs), students FCN w=0.125 (30 epochs, same init and seed per row); "
            "alignment = occlusion saliency over windows, top-3 focus.")


def studies(only: set[str]):
    if "tsd" in only:
        yield from tsd_studies()
    if "where" in only:
        yield ("Where models look: alpha sweep on MNIST-1D", "where", load("where_models_look.yaml"),
               "loss = (1-alpha)·CE + alpha·T²·KL, T=4 (alpha = 0 is no KD); teacher ResNet-1D w=0.5; students FCN of "
               "three widths; alignment = IG (32 steps) per timestep, top-5 focus.")
    if "ig" in only:
        data = load("ig_overlay_fashion_mnist.yaml")
        data["dataset"].update(max_train=5000, max_test=1000)
        for student in data["students"]:
            for i, m in enumerate(student["methods"]):
                if m == "ig_overlay" or (isinstance(m, dict) and m.get("name") == "ig_overlay"):
                    student["methods"][i] = dict({"name": "ig_overlay"} if m == "ig_overlay" else m, n_steps=20)
        yield ("IG-overlay KD on Fashion-MNIST (Table 1 shape)", "ig", data,
               "5,000 training images; teacher CNN w=1.0, students CNN w=0.25, 8 epochs; IG maps with 20 "
               "Gauss-Legendre steps; paper defaults T=2.5, a=0.01, p=0.1; alignment = IG on a 7x7 patch grid.")
    if "subdistill" in only:
        yield ("SubDistill vs FitNets / AT / KD on a Fashion-MNIST subtask", "subdistill",
               load("subdistill_fashion_mnist.yaml"),
               "Teacher CNN w=0.5 on all 10 classes; students CNN w=0.125 on classes 0, 2, 6 (T-shirt, Pullover, Shirt).")
    if "rekd" in only:
        yield ("REKD vs rationale extraction alone on generated series", "rekd", load("rekd_series.yaml"),
               "Select-predict models with window masks (8 steps); teacher predictor FCN w=0.25, students w=0.125.")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", default=["tsd", "where", "ig", "subdistill", "rekd"])
    parser.add_argument("--root", default="runs/reproduce")
    parser.add_argument("--results", default=None)
    args = parser.parse_args()
    root = Path(args.root)
    results = Path(args.results or root / "RESULTS.md")
    root.mkdir(parents=True, exist_ok=True)
    for title, name, data, note in studies(set(args.only)):
        started = time.perf_counter()
        summary = run_seeds(name, data, args.seeds, root)
        text = table(title, summary, args.seeds, note)
        text += f"\n({time.perf_counter() - started:.0f} s for {len(args.seeds)} seeds)\n\n"
        with open(results, "a") as handle:
            handle.write(text)
        (root / f"{name}.json").write_text(json.dumps(summary, indent=2))
        print(text, flush=True)


if __name__ == "__main__":
    main()
