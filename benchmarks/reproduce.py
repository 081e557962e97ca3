"""Reproduction study: each paper's setting over several seeds, mean ± std across seeds.

Every study is an ordinary recipe run once per seed (resumable: rerunning skips finished
stages). After each study, its table is written to ``--results`` (default RESULTS.md in the
run root), so partial results survive an interruption. Run:
    .venv/bin/python benchmarks/reproduce.py --seeds 0 1 2 3 4 [--only tsd combinations subdistill rekd kdig ...]

Each study also measures alignment under explainers its methods do not train on (IG and gradient saliency by
default, ``ALSO_FOR`` per study; ``--no-also`` for the study's own only) and prints a compact table of
accuracy and alignment under every explainer with paired p. RESULTS.md (third edition) lists the command of
each table; ``--threads 1`` lets two studies share a 2-core machine.
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

from xdistill.recipe import EvaluationSpec, default_recipe_path, explainer_key, parse_recipe
from xdistill.study import Study

RECIPES = default_recipe_path().parent
COLUMNS = [
    ("student_accuracy", "accuracy"),
    ("student_accuracy_all", "accuracy, whole test split"),
    ("student_auc_pr", "AUC-PR"),
    ("agreement", "agreement"),
    ("logit_spearman", "logit Spearman"),
    ("saliency_spearman", "saliency Spearman"),
    ("topk_focus", "top-k focus"),
    ("topk_focus_ratio", "top-k in/out ratio"),
    ("flip_auc_student_teacher_order", "deletion AUC (teacher order)"),
    ("rationale_precision", "rationale precision"),
    ("rationale_recall", "rationale recall"),
    ("rationale_iou_teacher", "rationale IoU with teacher"),
]
#: paired over seeds against the study's baseline student (where the study has the column; also every
#: ``saliency_spearman@<explainer>`` column of the further explainers)
TESTED = ("student_accuracy", "student_accuracy_all", "saliency_spearman")
#: per study (by name prefix): the further explainers where ``INDEPENDENT`` does not apply. REKD's series get
#: occlusion over the same 8-step windows instead of a second gradient method (its own is gradient saliency);
#: token ids have no gradient, and the text study's own explainer (occlusion) is already independent of the masks.
ALSO_FOR = {
    "rekd-series": [
        {"explainer": "integrated_gradients", "explainer_options": {"n_steps": 32}},
        {"explainer": "occlusion", "explainer_options": {"window": 8, "stride": 8}},
    ],
    "rekd-text": [],
}
#: explainers independent of every method's training signal, added to each study's evaluation (``--also``)
INDEPENDENT = [{"explainer": "integrated_gradients", "explainer_options": {"n_steps": 32}}, {"explainer": "saliency"}]


#: what each study changed from the paper's own setting (by study-name prefix, the first that matches), kept in
#: its summary; a TSD study's lambda subset is added from the command line
CUTS = {
    "tsd-paper-GunPoint-lstm": [
        "GunPoint resampled to 100 steps, as the paper does",
        "one teacher for every seed, chosen among the --tsd-teacher-seeds on validation loss (the official code "
        "chooses on the test split)",
    ],
    "tsd-paper-ItalyPowerDemand-fcn": [
        "the official code's FCN pair under the library's series defaults (that code gives it no protocol)",
        "alignment on the first 500 of 1,029 test series",
    ],
    "tsd-paper-ItalyPowerDemand": ["alignment on the first 500 of 1,029 test series"],
    "tsd-paper-": [
        "resampled to 100 steps, as the paper does",
        "the official code's FCN pair under the library's series defaults (that code gives it no protocol)",
    ],
    "combinations-fashion-mnist": [
        "beyond the papers: SubDistill's hard-subtask setting and teacher (Fashion-MNIST, 12,000 training and 2,000 "
        "test images, 40 of the protocol's 100 student epochs, alignment on the subtask's first 600 test images)",
    ],
    "combinations-": ["beyond the papers: the TSD study's FCN pair and teacher, series defaults"],
    "subdistill-": [
        "Fashion-MNIST, not the paper's CIFAR-100 superclasses or ImageNet subsets",
        "12,000 of 60,000 training images; 2,000 test images (the subtask's 574-626 of them)",
        "40 of the protocol's 100 epochs for the students; the teacher: image defaults, 15 epochs",
        "alignment on the subtask's first 600 test images",
    ],
    "rekd-fashion-mnist": [
        "Fashion-MNIST patches (7x7 grid of 4x4) and small CNN predictors, not the paper's ViT on CIFAR-10",
        "12,000 of 60,000 training images; 2,000 test images, explanations on the first 500",
        "students under the rekd_paper protocol at lr 2e-3 (the official 1e-5 fine-tunes a pretrained ViT); the "
        "teacher 2,000 steps of batch 64",
    ],
    "rekd-": ["generated series and text with planted evidence, not the paper's CIFAR images"],
    "where-models-look": [
        "MNIST-1D generated offline (4,000 train / 1,000 test), the poster's data and models not available here",
        "part importance = IG (32 steps) per timestep; alignment on the first 500 test series",
    ],
}

#: what each fit's summary keeps per seed (the restored best epoch's figures, and how long it ran; its wall
#: seconds and mean epoch seconds are kept beside them)
FIT_KEYS = ("best_epoch", "epochs_run", "train_acc", "val_acc")


def provenance(threads: int | None) -> dict[str, str]:
    """How a summary was made: the command, the date, the code (commit, and whether the tree had changes), the machine."""
    import datetime
    import os
    import subprocess
    import sys

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent)
        return done.stdout.strip() if done.returncode == 0 else ""

    # changes to the code that makes the figures (not to RESULTS.md or tests)
    dirty = " with uncommitted changes" if git("status", "--porcelain", "--", "src", "benchmarks") else ""
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return {
        "command": f".venv/bin/python benchmarks/{Path(sys.argv[0]).name} " + " ".join(sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "code": f"main at {commit}{dirty}",
        "machine": f"{os.cpu_count()}-core CPU, {threads or 'the recipe default of'} thread(s) per run",
    }


def _value(v: Any) -> float:
    return float(v["mean"]) if isinstance(v, dict) else float(v)


def further_explainers(evaluation: dict[str, Any], also: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``also`` less the study's own explainer with its own settings (measuring it twice adds nothing)."""
    defaults = EvaluationSpec()
    own = explainer_key(
        evaluation.get("explainer", defaults.explainer), evaluation.get("explainer_options", defaults.explainer_options)
    )
    return [a for a in also if explainer_key(a["explainer"], a.get("explainer_options") or {}) != own]


def run_seeds(
    name: str,
    data: dict[str, Any],
    seeds: list[int],
    root: Path,
    teacher_from: str | None = None,
    also: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run ``data`` (a recipe dict) once per seed; return per-student lists of per-seed means.

    ``teacher_from`` names an earlier study whose teacher (same data, same seed) is reused."""
    per_student: dict[str, dict[str, list[float]]] = {}
    teacher_acc, teacher_acc_all, extra = [], [], {}
    agreement: dict[str, list[float]] = {}
    fits: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        seeded = dict({k: v for k, v in copy.deepcopy(data).items() if k != "seeds"}, seed=seed)
        if also:
            seeded["evaluation"] = {**seeded["evaluation"], "also": further_explainers(seeded["evaluation"], also)}
        shared = root / str(teacher_from) / f"seed{seed}" / "teacher" / "teacher.safetensors"
        if teacher_from and shared.exists():
            seeded["teacher"]["weights"] = str(shared)
        recipe = parse_recipe(seeded)
        study = Study(recipe, root / name / f"seed{seed}", progress=False)
        study.run()
        for student in recipe.expanded_students():
            result = study.evaluate(student)
            row = per_student.setdefault(student.name, {})
            for key, _ in COLUMNS + [("compression", ""), ("speedup_b1", ""), ("speedup_b64", "")]:
                row.setdefault(key, []).append(_value(result[key]) if key in result else float("nan"))
            for label, figures in list(result.get("explainers", {}).items())[1:]:  # the further explainers
                row.setdefault(f"saliency_spearman@{label}", []).append(_value(figures["saliency_spearman"]))
        for pair, value in result.get("teacher_explainer_agreement", {}).items():
            agreement.setdefault(pair, []).append(_value(value))
        for stage, fit in json.loads(study.stages_path.read_text()).items():  # each fit's best epoch, as it ran
            if stage == "teacher" or stage.startswith("student:"):
                for key in FIT_KEYS:
                    fits.setdefault(stage, {}).setdefault(key, []).append(float(fit.get(key, float("nan"))))
                epochs = fit.get("epoch_seconds") or [float("nan")]  # its cost: wall seconds, mean epoch seconds
                fits[stage].setdefault("seconds", []).append(float(fit.get("seconds", float("nan"))))
                fits[stage].setdefault("epoch_seconds", []).append(statistics.fmean(epochs))
        # the teacher once per seed (every student's evaluation reports the same teacher figures)
        teacher_acc.append(result["teacher_accuracy"])
        teacher_acc_all.append(result.get("teacher_accuracy_all", float("nan")))
        extra["teacher_params"] = result["teacher_params"]
    return {
        "seeds": list(seeds),
        "fits": fits,
        "students": per_student,
        "teacher_accuracy": teacher_acc,
        "teacher_accuracy_all": teacher_acc_all,
        "explainer_agreement": agreement,
        **extra,
    }


def choose_teacher(
    name: str, data: dict[str, Any], seeds: list[int], root: Path
) -> tuple[str, str, list[dict[str, float]]]:
    """Train the study's teacher once per candidate seed and keep the one of lowest validation loss (never a
    test figure); return its weights, a Markdown table of every candidate (test accuracy shown, not used) and
    the candidates' figures for the summary."""
    from xdistill.metrics import accuracy, predict

    rows = []
    for seed in seeds:
        recipe = parse_recipe(dict({k: v for k, v in copy.deepcopy(data).items() if k != "seeds"}, seed=seed))
        study = Study(recipe, root / f"{name}-teachers" / f"seed{seed}", progress=False)
        study.check()
        study.commit()
        teacher = study.teacher()
        fit = json.loads(study.stages_path.read_text())["teacher"]
        test = study.splits[1]
        rows.append((seed, fit, accuracy(predict(teacher, test.x), test.y), study.paths.teacher_weights))
    chosen = min(rows, key=lambda row: row[1].get("val_loss", float("inf")))
    candidates = [
        {
            "seed": seed,
            "chosen": seed == chosen[0],
            "test_acc": test_acc,
            **{key: float(fit.get(key, float("nan"))) for key in (*FIT_KEYS, "train_loss", "val_loss")},
        }
        for seed, fit, test_acc, _ in rows
    ]
    from results_tables import teacher_table  # benchmarks/ is on the path when this file runs as a script

    return str(chosen[3]), "\n".join(teacher_table(candidates)) + "\n", candidates


def fmt(values: list[float]) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "–"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {std:.3f}"


def paired_p(a: list[float], b: list[float]) -> float:
    """Two-sided paired t-test over seeds (nan when undefined, e.g. identical values)."""
    from scipy.stats import ttest_rel

    if len(a) < 2:
        return float("nan")
    return float(ttest_rel(a, b).pvalue)


def table(
    title: str,
    summary: dict[str, Any],
    seeds: list[int],
    note: str = "",
    baseline: str | None = None,
    classes: int | None = None,
) -> str:
    teacher = summary["teacher_accuracy"]
    teacher_all = [v for v in summary.get("teacher_accuracy_all", []) if v == v]
    whole = f" (whole test split {fmt(teacher_all)})" if teacher_all else ""
    lines = [
        f"### {title}",
        "",
        note,
        "",
        f"Teacher accuracy {fmt(teacher)}{whole}; mean ± std over seeds {seeds} of per-seed means"
        + (f"; p = paired t-test over seeds against `{baseline}`" if baseline else "")
        + ".",
        "",
    ]
    if classes and statistics.fmean(teacher) < 1.0 / classes + 0.1:
        lines += [
            f"**Collapsed teacher: accuracy {statistics.fmean(teacher):.3f} is near chance (1/{classes}); "
            "the distillation rows below measure nothing.**",
            "",
        ]
    rows = summary["students"].values()
    whole_differs = any(
        a != s
        for row in rows  # the whole-split column only where it is not the sample's
        for a, s in zip(row.get("student_accuracy_all", []), row["student_accuracy"])
        if a == a
    )
    columns = [(k, label) for k, label in COLUMNS if k != "student_accuracy_all" or whole_differs]
    columns += [(k, f"saliency Spearman under {k.partition('@')[2]}") for k in further_keys(summary["students"])]
    tested = [k for k, _ in columns if k in TESTED or k.startswith("saliency_spearman@")] if baseline else []
    tests = [f"p ({label})" for key, label in columns if key in tested]
    lines += [
        "| student | "
        + " | ".join(label for _, label in columns)
        + " | "
        + "".join(f"{t} | " for t in tests)
        + "compression |",
        "|---|" + "---|" * (len(columns) + len(tests) + 1),
    ]
    if summary.get("explainer_agreement"):
        lines[-2:-2] = [
            "The explainers on the teacher itself (per-sample Spearman between its maps, mean ± std over seeds): "
            + "; ".join(f"{pair} {fmt(values)}" for pair, values in summary["explainer_agreement"].items())
            + ".",
            "",
        ]
    for name, row in summary["students"].items():
        cells = [fmt(row.get(k, [])) for k, _ in columns]
        if baseline:
            base = summary["students"][baseline]
            cells += ["" if name == baseline else f"{paired_p(row[k], base[k]):.3f}" for k in tested]
        cells += [f"{statistics.fmean(row['compression']):.1f}x"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: how the further explainers' labels read in the compact table (``#2``: the second of that name in a study)
EXPLAINER_LABELS = {
    "integrated_gradients": "IG, 32 steps",
    "integrated_gradients#2": "IG, 32 steps",
    "saliency": "gradient saliency",
    "occlusion": "occlusion",
}


def further_keys(students: dict[str, dict[str, list[float]]]) -> list[str]:
    """The ``saliency_spearman@<explainer>`` columns of the further explainers, sorted."""
    return sorted({k for row in students.values() for k in row if k.startswith("saliency_spearman@")})


def explainer_label(key: str) -> str:
    """How a further explainer's column reads (``saliency_spearman@saliency`` -> "gradient saliency")."""
    explainer = key.partition("@")[2]
    return EXPLAINER_LABELS.get(explainer, explainer)


def accuracy_key(students: dict[str, dict[str, list[float]]]) -> str:
    """Accuracy on the whole test split where the study measured it, else on the evaluation sample."""
    whole = any(v == v for row in students.values() for v in row.get("student_accuracy_all", []))
    return "student_accuracy_all" if whole else "student_accuracy"


def explainer_table(summary: dict[str, Any], baseline: str | None, own: str) -> str:
    """The compact table RESULTS.md quotes: accuracy and alignment under every explainer, each with its paired p."""
    students = summary["students"]
    further = further_keys(students)
    if not further:
        return ""
    accuracy = accuracy_key(students)
    whole = ", whole test split" if accuracy == "student_accuracy_all" else ""
    keys = [(accuracy, "accuracy" + whole), ("saliency_spearman", f"{own} (own)")]
    keys += [(k, "under " + explainer_label(k)) for k in further]
    header = "| student | " + " | ".join(f"{label} | p" if baseline else label for _, label in keys)
    lines = [header + " | deletion AUC, teacher's order |", "|---|" + "---|" * (len(keys) * (2 if baseline else 1) + 1)]
    for name, row in students.items():
        cells = []
        for key, _ in keys:
            cells.append(fmt(row.get(key, [])))
            if baseline:
                base = students[baseline]
                p = paired_p(row[key], base[key])
                cells.append("" if name == baseline else f"{p:.3f}" if p == p else "–")
        cells.append(fmt(row.get("flip_auc_student_teacher_order", [])))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((RECIPES / name).read_text())


TSD_SETS = {"ItalyPowerDemand": {}, "GunPoint": {"length": 100}, "Trace": {"length": 100}}
#: GunPoint and Trace run the FCN pair of the same official code (FCNBaseline 128-256-128 teacher,
#: FCNBaselineSmall 8-16-8 students, the library's series defaults). Under the official protocol
#: (tsd_paper) the LSTM 3x100 teacher learns GunPoint on 4 of 10 seeds and stops at training accuracy
#: 0.57-0.78 on Trace (benchmarks/tsd_teacher_seeds.py, RESULTS.md): the LSTM pair there needs a teacher
#: chosen among seeds on the validation split.
FCN_SETS = {"GunPoint", "Trace"}


def with_fcn_pair(data: dict[str, Any]) -> dict[str, Any]:
    data["teacher"] = {"model": "fcn1d", "options": {"width": 1.0}}
    data.pop("training", None)
    for student in data["students"]:
        student["model"], student["options"] = "fcn1d", {"width": 0.0625}
    return data


#: beyond the papers (hard subtask only): the KD-IG overlay alone, and added to SubDistill's objective
IMAGE_COMBINATIONS = [
    {"name": "kd_ig", "model": "cnn", "options": {"width": 0.25}, "methods": [{"name": "kd_ig", "p": 0.1}]},
    {
        "name": "subdistill_ig",
        "model": "cnn",
        "options": {"width": 0.25},
        "methods": [
            {"name": "subdistill_published", "layers": {"features.4": "features.4"}},
            {"name": "ig_overlay", "p": 0.1},
        ],
    },
]


def tsd_studies(sets: list[str], lams: list[float] | None, pair: str = "auto"):
    """``pair``: "auto" = the FCN pair on GunPoint/Trace and the LSTM pair elsewhere; "fcn" or "lstm" = that pair
    on every set (the study's name then says which)."""
    base = load("tsd_paper.yaml")
    if lams:
        base["students"][-1]["sweep"]["values"] = lams
    for dataset in sets:
        options = TSD_SETS[dataset]
        data = copy.deepcopy(base)
        data["name"] = f"tsd-paper-{dataset}" + ("" if pair == "auto" else f"-{pair}")
        data["dataset"] = {"name": f"ucr:{dataset}", "options": options}
        models = (
            "LSTM 3x100 teacher, LSTM 1x16 students, the tsd_paper protocol (Adam 0.005, weight decay 1e-5, "
            "MultiStepLR([25, 30, 35], 0.5) per batch, batch 32, early stopping (patience 50) on a 20% "
            "validation split)"
        )
        if pair == "fcn" or (pair == "auto" and dataset in FCN_SETS):
            data = with_fcn_pair(data)
            models = (
                "FCN 128-256-128 teacher, FCN 8-16-8 students (the official code's FCN pair), series defaults: "
                "2,000 / 3,000 Adam steps, batch 16"
            )
        yield (
            f"TSD as published on {dataset}",
            data["name"],
            data,
            f"tsd_paper recipe: {models}; K=50, w=10, tau=8; alignment = occlusion over 10-step windows.",
            "no_kd",
            None,
            None,
        )


#: beyond the papers: explanation terms combined, on the FCN pair with the TSD study's teacher (same seed)
SERIES_KD = {"name": "hinton", "temperature": 8.0, "alpha": 0.5}
SERIES_TSD = {"name": "tsd", "weight": 1.0, "perturbations": 50, "window": 10, "tau": 8.0, "bank": 100}
SERIES_FITNETS = {"name": "fitnets", "layers": {"features.1": "features.1"}}
SERIES_COMBINATIONS = {
    "kd": [SERIES_KD],
    "fitnets": ["ce", SERIES_FITNETS],
    "tsd": ["ce", SERIES_TSD],
    "kd_tsd": [SERIES_KD, SERIES_TSD],
    "tsd_fitnets": ["ce", SERIES_TSD, SERIES_FITNETS],
}
#: each combined student and the students it combines (compared pairwise over seeds)
COMBINED = {"kd_tsd": ("kd", "tsd"), "tsd_fitnets": ("tsd", "fitnets"), "subdistill_ig": ("subdistill", "kd_ig")}


def combination_studies(sets: list[str]):
    for dataset in sets:
        data = with_fcn_pair(copy.deepcopy(load("tsd_paper.yaml")))
        data["name"] = f"combinations-{dataset}"
        data["dataset"] = {"name": f"ucr:{dataset}", "options": TSD_SETS[dataset]}
        data["students"] = [
            {"name": name, "model": "fcn1d", "options": {"width": 0.0625}, "methods": methods}
            for name, methods in SERIES_COMBINATIONS.items()
        ]
        yield (
            f"Explanation terms combined on {dataset} (FCN pair)",
            data["name"],
            data,
            "FCN 128-256-128 teacher (the TSD study's, same seed), FCN 8-16-8 students, series defaults (3,000 Adam "
            "steps, batch 16); kd = Hinton tau=8, alpha=0.5; tsd = CE + 1.0 TSD (K=50, w=10, tau=8); fitnets = CE + "
            "FitNets hint at features.1 (the middle conv block); kd_tsd and tsd_fitnets add the terms' losses.",
            "tsd",
            None,
            f"tsd-paper-{dataset}",
        )


def image_combination_study():
    """SubDistill's objective plus the KD-IG overlay against each part alone, on SubDistill's hard subtask (its
    protocol and its study's teacher per seed); KD the baseline."""
    data = load("subdistill_fashion_mnist.yaml")
    data["dataset"]["subtask"] = [0, 2, 6]
    data["name"] = "combinations-fashion-mnist"
    data["students"] = [s for s in data["students"] if s["name"] in ("kd", "subdistill")] + IMAGE_COMBINATIONS
    return (
        "Explanation terms combined on Fashion-MNIST classes [0, 2, 6] (SubDistill's hard subtask)",
        data["name"],
        data,
        "subdistill_fashion_mnist recipe and protocol; kd_ig = the KD-IG objective (IG overlay p=0.1, 50 IG "
        "steps); subdistill_ig = SubDistill's objective + the same overlay.",
        "kd",
        None,
        "subdistill-0-2-6",
    )


def _p(a: list[float], b: list[float]) -> str:
    p = paired_p(a, b)
    return "identical" if p != p else "p<0.001" if p < 0.001 else f"p={p:.3f}"


def combination_table(summary: dict[str, Any], own: str = "own explainer") -> str:
    """Each combined student against each of the students it combines: difference of means, paired p."""
    students = summary["students"]
    keys = [(accuracy_key(students), "accuracy"), ("saliency_spearman", own)]
    keys += [(k, explainer_label(k)) for k in further_keys(students)]
    lines = [
        "Combined against each part (difference of means over seeds, paired t-test p):",
        "",
        "| combined vs part | " + " | ".join(label for _, label in keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for combined, parts in COMBINED.items():
        for part in parts:
            if combined not in students or part not in students:
                continue
            a, b = students[combined], students[part]
            cells = [f"{statistics.fmean(a[k]) - statistics.fmean(b[k]):+.3f} ({_p(a[k], b[k])})" for k, _ in keys]
            lines.append(f"| {combined} vs {part} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ig_full_data(data: dict[str, Any]) -> dict[str, Any]:
    """The IG-overlay recipe on all 60k training and 10k test images, Table 1's four students only."""
    data["dataset"].pop("max_train", None)
    data["dataset"].pop("max_test", None)
    for student in data["students"]:
        if "sweep" in student:
            student.pop("sweep")
            student["name"] = "kd_ig"
            student["methods"] = [{**student["methods"][0], "p": 0.1}]
    return data


def kdig_paper_data(teacher: str, epochs: int, store_dir: str) -> dict[str, Any]:
    """KD-IG under the ``kdig_paper`` protocol on all 60k training images and the 10k test images: the
    overlay probability p in {0 (KD), 0.1, 0.25, 0.5}; one IG store (50 steps) shared by every seed."""
    data = load("ig_overlay_fashion_mnist.yaml")
    data["name"] = "kdig-paper-fashion-mnist-60k"
    data["dataset"].pop("max_train", None)
    data["dataset"].pop("max_test", None)
    data["teacher"]["weights"] = teacher
    data["training"] = {"protocol": "kdig_paper", "epochs": epochs}
    data["students"] = [
        {
            "name": "kd_ig",
            "model": "cnn",
            "options": {"width": 0.25, "depth": 2},
            "methods": [{"name": "kd_ig", "store_dir": store_dir}],
            "sweep": {"option": "p", "values": [0.0, 0.1, 0.25, 0.5]},
        }
    ]
    return data


def studies(
    only: set[str],
    tsd_sets: list[str],
    tsd_lams: list[float] | None,
    ig_teacher: str | None = None,
    ig_full: bool = False,
    kdig_epochs: int = 100,
    root: str = "runs/reproduce",
    tsd_pair: str = "auto",
):
    """(title, name, recipe dict, note, baseline student, classes, study whose teacher is reused) per study."""
    if "tsd" in only:
        yield from tsd_studies(tsd_sets, tsd_lams, tsd_pair)
    if "combinations" in only:
        yield from combination_studies([d for d in tsd_sets if d in FCN_SETS])
    if "subdistill" in only:
        first = None
        for classes in ([0, 2, 6], [5, 7, 9]):
            data = load("subdistill_fashion_mnist.yaml")
            data["dataset"]["subtask"] = classes
            data["name"] = f"subdistill-{'-'.join(map(str, classes))}"
            yield (
                f"SubDistill vs KD / FitNets / AT on Fashion-MNIST classes {classes}",
                data["name"],
                data,
                "subdistill_fashion_mnist recipe: teacher CNN w=1 on all 10 classes; students CNN w=0.25 on the "
                "subtask; alignment = IG on a 7x7 patch grid; deletion AUC flips the teacher's top patches.",
                "kd",
                None,
                first,
            )
            first = first or data["name"]  # the teacher knows all 10 classes: one per seed serves both subtasks
    if "image_combinations" in only:  # after SubDistill's study, whose teacher it reuses
        yield image_combination_study()
    if "rekd" in only:
        for kind, recipe, note, classes in (
            (
                "series",
                "rekd_series.yaml",
                "Select-predict models with 8-step window masks; teacher predictor FCN w=0.25, students w=0.125.",
                4,
            ),
            ("text", "rekd_text.yaml", "Token masks over a key phrase at a random place; TextCNN predictors.", 3),
        ):
            data = load(recipe)
            yield (
                f"REKD vs rationale extraction alone on generated {kind}",
                f"rekd-{kind}",
                data,
                note,
                "rationale_alone",
                classes,
                None,
            )
            paper = copy.deepcopy(data)
            paper["training"] = {"protocol": "rekd_paper"}
            yield (
                f"REKD vs rationale extraction alone on generated {kind}, students under the rekd_paper protocol",
                f"rekd-{kind}-paper",
                paper,
                note + " Students: the rekd_paper protocol (AdamW, weight decay 1e-3, batch 32, 35 epochs, the best "
                "epoch by validation loss on a 20% split, Gumbel temperature 5 -> 0.1 updated every 100 steps); the "
                "same teacher (seed by seed) as the study above; the target ratio stays the data's.",
                "rationale_alone",
                classes,
                f"rekd-{kind}",
            )
    if "ig_overlay" in only:
        data, name = load("ig_overlay_fashion_mnist.yaml"), "ig-overlay-fashion-mnist"
        teacher, teacher_from = "the SubDistill study's teacher, same 12k images and seed", "subdistill-0-2-6"
        if ig_teacher:
            data["teacher"]["weights"] = ig_teacher
            name, teacher, teacher_from = name + "-full-teacher", f"trained on all 60k images: {ig_teacher}", None
        title, images = "IG-overlay KD on Fashion-MNIST (Table 1 shape, p sweep)", "12k images"
        if ig_full:
            if not ig_teacher:
                raise SystemExit("--ig-full needs --ig-teacher (a teacher trained on all 60k images)")
            data, name = ig_full_data(data), "ig-overlay-fashion-mnist-60k"
            title, images = "IG-overlay KD on all of Fashion-MNIST (Table 1 shape)", "all 60k images, 10k test images"
        yield (
            title,
            name,
            data,
            f"ig_overlay_fashion_mnist recipe: teacher CNN w=1 ({teacher}), students CNN w=0.25 on {images}, "
            "15 epochs AdamW; KD = the paper's T=2.5, a=0.01 (p = 0); IG store 16 steps; "
            "alignment = IG on a 7x7 patch grid.",
            "baseline",
            10,
            teacher_from,
        )
    if "kdig" in only:
        if not ig_teacher:
            raise SystemExit("--only kdig needs --ig-teacher (a teacher trained on all 60k images)")
        data = kdig_paper_data(ig_teacher, kdig_epochs, str(Path(root) / "kdig-ig-store"))
        yield (
            "KD-IG under the kdig_paper protocol on all of Fashion-MNIST",
            data["name"],
            data,
            f"teacher CNN w=1 trained on all 60k images ({ig_teacher}); students CNN w=0.25 on all 60k images; "
            f"kdig_paper: Adam 1e-3, batch 64, random crop (padding 4, black in the raw image) + horizontal flip, no "
            f"validation split, the last epoch; KD-IG = 0.99 CE + 0.01 T^2 KL (T=2.5) against the teacher on the "
            f"clean image, IG overlay (50 Gauss-Legendre steps, label target) with probability p; p=0 is plain KD. "
            f"**Budget cut: {kdig_epochs} epochs instead of the paper's 100, the same for every student.** Accuracy "
            f"on all 10k test images; explanations on the first 500.",
            "kd_ig[p=0.0]",
            10,
            None,
        )
    if "where" in only:
        yield (
            "KD changes where models look (alpha grid, three student sizes) on MNIST-1D",
            "where-models-look",
            load("where_models_look.yaml"),
            "where_models_look recipe: ResNet1D w=0.5 teacher, FCN students w=1/16, 1/8, 1/4; 3,000 Adam steps; "
            "kd alpha = 1 - the poster's alpha; alignment = IG per timestep, k=5.",
            None,
            10,
            None,
        )
    if "rekd_images" in only:
        yield (
            "REKD vs rationale extraction alone on Fashion-MNIST patches",
            "rekd-fashion-mnist",
            load("rekd_fashion_mnist.yaml"),
            "rekd_fashion_mnist recipe: 7x7 grid of 4x4 patches, ratio 0.15, alpha_re 0.5; teacher predictor CNN "
            "w=0.5, students w=0.125 under the rekd_paper protocol; no ground-truth rationale, so precision/recall "
            "are blank.",
            "rationale_alone",
            10,
            None,
        )


STUDIES = [
    "tsd",
    "combinations",
    "subdistill",
    "image_combinations",
    "rekd",
    "rekd_images",
    "ig_overlay",
    "kdig",
    "where",
]
POSTER_ALPHA = {0.0: "1.0 (no KD)", 0.5: "0.5", 0.9: "0.1"}  # kd alpha -> the poster's CE weight


def where_tables(summary: dict[str, Any]) -> str:
    """The poster's layout: rows = student sizes, columns = its alpha (CE weight); p = paired t-test
    over seeds against the same size without KD."""
    students = summary["students"]
    sizes = list(dict.fromkeys(name.split("[")[0] for name in students))
    out = []
    for key, label in (
        ("logit_spearman", "Logit Spearman"),
        ("saliency_spearman", "Part-importance Spearman"),
        ("topk_focus_ratio", "Top-5 focus (mass inside / outside the teacher's top-5)"),
        ("student_accuracy", "Accuracy"),
    ):
        out += [
            f"**{label}** (poster alpha = CE weight; p against no KD)",
            "",
            "| student | " + " | ".join(f"alpha {a}" for a in POSTER_ALPHA.values()) + " |",
            "|---|" + "---|" * len(POSTER_ALPHA),
        ]
        for size in sizes:
            base = students.get(f"{size}[alpha=0.0]")
            cells = []
            for kd_alpha in POSTER_ALPHA:
                row = students.get(f"{size}[alpha={kd_alpha}]")
                if row is None:
                    cells.append("–")
                    continue
                p = "" if kd_alpha == 0.0 or base is None else f" (p={paired_p(row[key], base[key]):.3f})"
                cells.append(fmt(row[key]) + p)
            out.append(f"| {size} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out) + "\n"


def combined_pairs(students: list[str], baseline: str | None) -> list[list[str]]:
    """Each combined student against each of its parts other than the baseline."""
    return [
        [combined, part]
        for combined, parts in COMBINED.items()
        for part in parts
        if part != baseline and {combined, part} <= set(students)
    ]


def where_pairs(students: list[str], baseline: str | None) -> list[list[str]]:
    """The poster's comparisons: each student size with KD against the same size without it."""
    return [[name, name.split("[")[0] + "[alpha=0.0]"] for name in students if not name.endswith("[alpha=0.0]")]


def subdistill_pairs(students: list[str], baseline: str | None) -> list[list[str]]:
    """The paper's comparisons (SubDistill against the layer-wise KD methods), then the combined students'."""
    layerwise = [
        ["subdistill", arm] for arm in ("fitnets", "attention_transfer") if {"subdistill", arm} <= set(students)
    ]
    return layerwise + combined_pairs(students, baseline)


#: per study: the pairs compared besides each student against the baseline (default: the combined students')
PAIRS = {
    "where-models-look": where_pairs,
    "subdistill-0-2-6": subdistill_pairs,
    "subdistill-5-7-9": subdistill_pairs,
}
#: per study: metrics compared besides results_tables.py's defaults (the poster's logit Spearman and top-5 focus)
ALSO_TESTED = {"where-models-look": ["logit_spearman", "topk_focus_ratio"]}


EXTRA_TABLES = {
    "where-models-look": where_tables,
    "combinations-fashion-mnist": combination_table,
    **{f"combinations-{dataset}": combination_table for dataset in FCN_SETS},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", default=list(STUDIES), choices=list(STUDIES))
    parser.add_argument("--tsd-sets", nargs="+", default=list(TSD_SETS), choices=list(TSD_SETS))
    parser.add_argument(
        "--tsd-pair",
        default="auto",
        choices=["auto", "fcn", "lstm"],
        help="TSD's model pair: auto = the official FCN pair on GunPoint/Trace, the LSTM pair elsewhere",
    )
    parser.add_argument(
        "--tsd-teacher-seeds",
        nargs="+",
        type=int,
        default=None,
        help="LSTM pair: train the teacher once per seed given and use the one of lowest validation loss for every "
        "seed of the study (the official code chooses on the test split)",
    )
    parser.add_argument(
        "--tsd-lams",
        nargs="+",
        type=float,
        default=None,
        help="a subset of the paper's lambda sweep (default: all five)",
    )
    parser.add_argument(
        "--ig-teacher",
        default=None,
        help="teacher weights for the IG-overlay study, e.g. the full-60k Fashion-MNIST teacher of "
        "benchmarks/baselines.py (default: the SubDistill study's 12k teacher)",
    )
    parser.add_argument(
        "--ig-full",
        action="store_true",
        help="the IG-overlay study's Table 1 students on all 60k training images (needs --ig-teacher)",
    )
    parser.add_argument("--kdig-epochs", type=int, default=100, help="the kdig study's epoch budget (the paper's: 100)")
    parser.add_argument(
        "--no-also",
        action="store_true",
        help="measure alignment only with each study's own explainer (default: also IG and gradient saliency)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per run (default: the recipe's hardware.threads, 1: the same numbers at any core count)",
    )
    parser.add_argument(
        "--students",
        nargs="+",
        default=None,
        help="keep only these students of each study (e.g. kd subdistill): a re-measure of some arms",
    )
    parser.add_argument(
        "--subtasks",
        nargs="+",
        default=None,
        choices=["0-2-6", "5-7-9"],
        help="the SubDistill study's subtasks (default both: hard 0-2-6, easy 5-7-9)",
    )
    parser.add_argument(
        "--subdistill-epochs",
        type=int,
        default=None,
        help="the SubDistill study's epoch budget (default: the recipe's 40; the protocol's own is 100)",
    )
    parser.add_argument("--root", default="runs/reproduce")
    parser.add_argument("--results", default=None)
    args = parser.parse_args()
    root = Path(args.root)
    results = Path(args.results or root / "RESULTS.md")
    root.mkdir(parents=True, exist_ok=True)
    for title, name, data, note, baseline, classes, teacher_from in studies(
        set(args.only),
        args.tsd_sets,
        args.tsd_lams,
        args.ig_teacher,
        args.ig_full,
        args.kdig_epochs,
        args.root,
        args.tsd_pair,
    ):
        if args.students:
            data["students"] = [s for s in data["students"] if s["name"] in args.students]
        if args.threads:
            data["hardware"] = {**data.get("hardware", {}), "threads": args.threads}
        if args.subtasks and name.startswith("subdistill-") and name.removeprefix("subdistill-") not in args.subtasks:
            continue
        if args.subdistill_epochs and name.startswith("subdistill-"):
            data["training"] = {**data["training"], "epochs": args.subdistill_epochs}
        started = time.perf_counter()
        chosen, candidates = "", []
        if args.tsd_teacher_seeds and name.startswith("tsd-paper-") and data["teacher"]["model"] == "lstm":
            weights, chosen, candidates = choose_teacher(name, data, args.tsd_teacher_seeds, root)
            data["teacher"]["weights"] = weights
            note += f" One teacher for every seed: chosen among seeds {args.tsd_teacher_seeds} on validation loss."
        also = next((v for prefix, v in ALSO_FOR.items() if name.startswith(prefix)), INDEPENDENT)
        summary = run_seeds(name, data, args.seeds, root, teacher_from, None if args.no_also else also)
        text = table(title, summary, args.seeds, note, baseline, classes)
        own = (data.get("evaluation") or {}).get("explainer", "own explainer")
        text += "\n" + explainer_table(summary, baseline, own)
        if chosen:
            text += "\nThe teacher candidates (`tsd_paper`; chosen on validation loss):\n\n" + chosen
        if name in EXTRA_TABLES:
            text += "\n" + EXTRA_TABLES[name](summary)
        text += f"\n({time.perf_counter() - started:.0f} s for {len(args.seeds)} seeds)\n\n"
        with open(results, "a") as handle:
            handle.write(text)
        summary = {"study": title, **provenance(args.threads), "baseline": baseline, **summary}
        if candidates:
            summary["teacher_candidates"] = candidates
        if data["dataset"].get("subtask"):
            summary["teacher_split"] = "subtask's whole test split"
        cuts = list(next((v for prefix, v in CUTS.items() if name.startswith(prefix)), []))
        if args.subdistill_epochs and name.startswith("subdistill-"):
            epochs = f"{args.subdistill_epochs} of the protocol's 100 epochs"
            cuts = [c.replace("40 of the protocol's 100 epochs", epochs) for c in cuts]
        if args.tsd_lams and name.startswith("tsd-paper-"):
            cuts.append(f"lambda in {{{', '.join(f'{lam:g}' for lam in args.tsd_lams)}}} of the paper's five")
        if cuts:
            summary["cuts"] = cuts
        pairs = PAIRS.get(name, combined_pairs)(list(summary["students"]), baseline)
        if pairs:
            summary["pairs"] = pairs
        if name in ALSO_TESTED:
            summary["also_tested"] = ALSO_TESTED[name]
        (root / f"{name}.json").write_text(json.dumps(summary, indent=2))
        print(text, flush=True)


if __name__ == "__main__":
    main()
