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

from reproduce_studies import COMBINED, FCN_SETS, STUDIES, TSD_SETS, studies
from reproduce_tables import COLUMNS, combination_table, explainer_table, table, where_tables

from xdistill.recipe import EvaluationSpec, explainer_key, parse_recipe
from xdistill.study import Study

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


def kept_students(students: list[dict[str, Any]], wanted: list[str]) -> list[dict[str, Any]]:
    """The recipe's students that ``--students`` names: by name, or a sweep's member by its expanded name
    (``tsd[lam=1.0]``: the sweep keeps only the values named)."""
    kept = []
    for student in students:
        if student["name"] in wanted:
            kept.append(student)
            continue
        sweep = student.get("sweep")
        if sweep:
            values = [v for v in sweep["values"] if f"{student['name']}[{sweep['option']}={v}]" in wanted]
            if values:
                kept.append({**student, "sweep": {**sweep, "values": values}})
    return kept


def arguments() -> argparse.Namespace:
    """The command line."""
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
    return parser.parse_args()


def main() -> None:
    args = arguments()
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
            data["students"] = kept_students(data["students"], args.students)
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
