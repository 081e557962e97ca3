"""The report stage: read a run directory's evaluations and write its report (one seed or several)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..files import DamagedFileError, read_json, read_npz
from ..recipe import Recipe
from ..report import ReportMeta, build_report
from ..report.verdict import aggregate
from ..rundir import RunDirectory
from .ledger import RESTAGE
from .samples import REDO_EVALUATION, check_csv, csv_path, read_samples, samples_path


def report_meta(recipe: Recipe, seeds: list[int] | None = None) -> ReportMeta:
    """What the report says about a recipe besides its results."""
    sweeps = [(s.name, s.sweep.option, list(s.sweep.values)) for s in recipe.students if s.sweep]
    return ReportMeta(
        recipe.name,
        recipe.dataset.name,
        recipe.teacher.label,
        json.loads(recipe.evaluation.model_dump_json()),
        sweeps,
        list(seeds or []),
    )


def load_results(run: RunDirectory, recipe: Recipe) -> list[dict[str, Any]]:
    """Every student's evaluation in the run directory, in the recipe's order."""
    results = []
    for student in recipe.expanded_students():
        path = run.evaluation(student.name)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: run the evaluate stage first (xdistill run or xdistill evaluate)"
            )
        results.append(read_json(path, REDO_EVALUATION))
    return results


def load_examples(run: RunDirectory, results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The saliency examples every student's evaluation saved (None when one is missing)."""
    files = [run.examples(r["student"]) for r in results]
    if not files or not all(p.exists() for p in files):
        return None
    loaded = [read_npz(p, REDO_EVALUATION) for p in files]
    first = loaded[0]
    class_names = results[0].get("class_names") or [str(i) for i in range(int(first["y"].max()) + 1)]
    return {
        "x": first["x"],
        "y": first["y"],
        "teacher": first["teacher"],
        "class_names": class_names,
        "students": {r["student"]: d["student"] for r, d in zip(results, loaded)},
    }


def load_explorer(
    run: RunDirectory, seeds: dict[int, RunDirectory], students: list[str], class_names: list[str] | None
) -> dict[str, Any] | None:
    """The sample explorer's data: every seed's per-sample files and training curves (None when a per-sample file
    is missing, e.g. a run evaluated before they existed: ``xdistill run`` evaluates it again). A per-sample CSV
    that does not match its npz is not linked, a damaged training log not drawn: a warning names each."""
    from ..report.explorer import explorer_data

    samples, curves, links = {}, {}, {}
    for seed, seed_run in seeds.items():
        paths = {name: samples_path(seed_run.evaluation(name)) for name in students}
        if not all(p.exists() for p in paths.values()):
            return None
        samples[seed] = {name: read_samples(path) for name, path in paths.items()}
        links[seed] = {
            name: _relative(csv_path(path), run.report_dir)
            for name, path in paths.items()
            if _csv_intact(path, samples[seed][name])
        }
        curves[seed] = model_curves(seed_run, students)
    return explorer_data(samples, curves, class_names, links)


def _csv_intact(path: Path, samples: dict[str, Any]) -> bool:
    """Whether the CSV beside the per-sample file ``path`` matches it (a warning names it when it does not)."""
    why = check_csv(path, samples)
    if why is not None:
        logging.getLogger("xdistill").warning(
            "%s is not linked from the report (%s); run the study's xdistill run command again to write it anew "
            "from its npz",
            csv_path(path),
            why,
        )
    return why is None


def model_curves(run: RunDirectory, students: list[str]) -> dict[str, dict[str, list[float]]]:
    """The training curves of the teacher and each student of one run directory, their logs checked against the
    hashes ``stages.json`` recorded; a model whose logs are damaged is left out (a warning names the file)."""
    from ..report.explorer import read_curves

    stages = read_json(run.stages, RESTAGE) if run.stages.exists() else {}
    found = {}
    for model, stage in [("teacher", "teacher")] + [(name, f"student:{name}") for name in students]:
        work = run.work_dir(stage)
        assert work is not None
        try:
            curves = read_curves(work, (stages.get(stage) or {}).get("logs"))
        except DamagedFileError as error:
            logging.getLogger("xdistill").warning("%s", str(error))
            continue
        if curves:
            found[model] = curves
    return found


def _relative(path: Path, start: Path) -> str:
    import os

    return Path(os.path.relpath(path, start)).as_posix()


def read_recipe(run: RunDirectory) -> Recipe:
    return Recipe.model_validate(
        read_json(run.recipe, "delete it and run the study's xdistill run command again (it is written anew)")
    )


def write_report(run_dir: str | Path) -> Path:
    """The report of a run directory: one seed's, or the several-seed report where the recipe lists seeds."""
    run = RunDirectory(run_dir)
    recipe = read_recipe(run)
    if recipe.seeds:
        return write_seeds_report(run_dir, recipe, recipe.seeds)
    results = load_results(run, recipe)
    examples = load_examples(run, results)
    if examples is not None:
        examples["seed"] = recipe.seed
    names = results[0].get("class_names") if results else None
    explorer = load_explorer(run, {recipe.seed: run}, [r["student"] for r in results], names)
    return build_report(run.report_dir, report_meta(recipe), results, examples, explorer=explorer)


def write_seeds_report(run_dir: str | Path, recipe: Recipe, seeds: list[int]) -> Path:
    """The report of a several-seed study: each student's figures as mean ± std over the seeds, verdicts by
    paired t-tests over seeds; the saliency examples are the first seed's."""
    run = RunDirectory(run_dir)
    per_seed: dict[str, list[dict[str, Any]]] = {}
    for seed in seeds:
        seed_run = run.seed(seed)
        for result in load_results(seed_run, read_recipe(seed_run)):
            per_seed.setdefault(result["student"], []).append(result)
    results = [aggregate(values) for values in per_seed.values()]
    first_seed = [values[0] for values in per_seed.values()]  # the first seed's results, already read
    examples = load_examples(run.seed(seeds[0]), first_seed)
    if examples is not None:
        examples["seed"] = seeds[0]
    names = first_seed[0].get("class_names") if first_seed else None
    explorer = load_explorer(run, {seed: run.seed(seed) for seed in seeds}, list(per_seed), names)
    return build_report(run.report_dir, report_meta(recipe, seeds), results, examples, per_seed, explorer)
