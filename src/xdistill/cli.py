"""The ``xdistill`` command line. Heavy libraries load only inside the command that needs them.

Errors in recipes, data or options print one line (``xdistill: error: ...``) and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import UserError


def _recipe(args: argparse.Namespace):
    """The recipe given (or the default), with the command line's hardware options, and its run directory;
    read once per command (the seeds loop and the report over seeds share it)."""
    from .recipe import default_recipe_path, load_recipe

    if getattr(args, "loaded", None) is not None:
        return args.loaded
    recipe = load_recipe(args.recipe or default_recipe_path())
    hardware = {
        k: v
        for k, v in (("devices", getattr(args, "devices", None)), ("num_nodes", getattr(args, "num_nodes", None)))
        if v is not None
    }
    if hardware:
        recipe.hardware = recipe.hardware.model_copy(update=hardware)
    args.loaded = recipe, Path(args.out) if args.out else Path("runs") / recipe.name
    args.created_out = not args.loaded[1].exists()  # (a failed run removes it again when it stays empty)
    return args.loaded


def _studies(args: argparse.Namespace):
    """One Study per seed (RUN_DIR/seed-N for a recipe with a seeds list), each opened as it is reached."""
    from .rundir import RunDirectory
    from .study import Study

    recipe, out = _recipe(args)
    for single in _chosen_seeds(args, recipe):
        root = RunDirectory(out).seed(single.seed).root if recipe.seeds else out
        seed = f"seed {single.seed} of {recipe.seeds}" if recipe.seeds else f"seed {single.seed}"
        _say(args, f"{seed} in {root}: checking the recipe against its data and models")
        args.study = Study(single, root, progress=not args.quiet, restart=getattr(args, "restart", False))
        yield args.study
        if args.study.lock is not None:
            args.study.lock.release()


def _say(args: argparse.Namespace, message: str) -> None:
    """A progress line on stderr, in the run log's format (nothing under --quiet)."""
    import time

    if not getattr(args, "quiet", False):
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _chosen_seeds(args: argparse.Namespace, recipe):
    """The recipe once per seed, or only the seed ``--seed`` names (one of the recipe's seeds list)."""
    seed = getattr(args, "seed", None)
    if seed is None:
        return recipe.per_seed()
    if not recipe.seeds or seed not in recipe.seeds:
        listed = f"its seeds are {recipe.seeds}" if recipe.seeds else "it has no seeds list (set seed: instead)"
        raise UserError(f"--seed {seed}: not a seed of the recipe; {listed}")
    return [single for single in recipe.per_seed() if single.seed == seed]


def _seeds_report(args: argparse.Namespace) -> Path | None:
    """The report over seeds, when the recipe lists several (None otherwise)."""
    from .files import write_json
    from .study.report import write_seeds_report

    recipe, out = _recipe(args)
    if not recipe.seeds or getattr(args, "seed", None) is not None:  # (one seed of several: no report over them)
        return None
    write_json(out / "recipe.json", json.loads(recipe.model_dump_json(exclude_unset=True)))
    return write_seeds_report(out, recipe, recipe.seeds)


def _run_side_by_side(args: argparse.Namespace) -> None:
    """``--jobs N``: the recipe's seeds as N processes at a time, each an ordinary ``run --seed S``."""
    from .jobs import run_seeds, xdistill_command

    recipe, out = _recipe(args)
    arguments = ["run", *([args.recipe] if args.recipe else []), "--out", str(out), "--quiet"]
    arguments += ["--restart"] if args.restart else []
    for flag, value in (("--devices", args.devices), ("--num-nodes", args.num_nodes)):
        arguments += [flag, str(value)] if value is not None else []
    print(f"seeds {recipe.seeds}, {args.jobs} at a time; each logs to {out}/seed-N/log.txt", flush=True)
    failures = run_seeds(xdistill_command(arguments), recipe.seeds, args.jobs)
    if failures:
        seeds = ", ".join(str(f.seed) for f in failures)
        if all(f.returncode == 2 for f in failures):  # the user's mistake, found by each seed's process
            raise UserError(f"seed(s) {seeds} failed: {failures[0].message}")
        raise RuntimeError(f"seed(s) {seeds} failed ({failures[0].message}); run the same command again to resume")


def _run(args: argparse.Namespace) -> int:
    report = None
    recipe, _ = _recipe(args)
    if args.jobs > 1 and recipe.seeds and len(recipe.seeds) > 1 and args.seed is None:
        _run_side_by_side(args)
        report = _seeds_report(args)
        assert report is not None
        print(f"report: {report}")
        print(f"summary: {report.with_suffix('.md')}")
        return 0
    for study in _studies(args):
        report = study.run()
    if report is None:  # a training process of a multi-process run: rank 0 evaluates and reports
        return 0
    report = _seeds_report(args) or report
    print(f"report: {report}")
    print(f"summary: {report.with_suffix('.md')}")
    return 0


def _teach(args: argparse.Namespace) -> int:
    for study in _studies(args):
        study.check()
        study.teacher()
        print(f"teacher: {study.paths.teacher_weights}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    for study in _studies(args):
        study.check()
        stores = study.explain()
        if not stores:
            print("no method in this recipe reads an attribution store (ig_overlay does); nothing to do")
        for store in stores:
            print(f"store: {store}")
    return 0


def _selected_students(study, names: list[str] | None):
    students = study.recipe.expanded_students()
    if not names:
        return students
    known = {s.name for s in students}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"--student: unknown student(s) {unknown}; the recipe has: {', '.join(sorted(known))}")
    return [s for s in students if s.name in names]


def _distill(args: argparse.Namespace) -> int:
    for study in _studies(args):
        study.check()
        for student in _selected_students(study, args.student):
            study.student(student)
            print(f"student {student.name}: {study.student_dir(student) / 'student.safetensors'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    for study in _studies(args):
        if study.rank != 0:  # evaluation runs in one process
            continue
        study.check()
        for student in _selected_students(study, args.student):
            r = study.evaluate(student)
            print(
                f"{student.name}: accuracy {r['student_accuracy']:.3f}, agreement {r['agreement']['mean']:.3f}, "
                f"saliency Spearman {r['saliency_spearman']['mean']:.3f}, top-k focus {r['topk_focus']['mean']:.3f}"
            )
    return 0


def _report(args: argparse.Namespace) -> int:
    from .study.report import write_report

    target = Path(args.target)
    if target.is_dir():
        if not (target / "recipe.json").exists():
            raise UserError(f"{target} is not a run directory (no recipe.json)")
        path = write_report(target)
    else:
        args.recipe = str(target)
        for study in _studies(args):
            path = study.report()
        path = _seeds_report(args) or path
    print(f"report: {path}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from .schema import json_schema, recipe_reference

    print(json_schema() if args.format == "json" else recipe_reference(), end="" if args.format != "json" else "\n")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import describe, export_student

    path, check = export_student(args.run_dir, args.student, args.format, args.out, args.seed)
    print(f"{args.student}: {path}")
    print(check)
    print(describe(path))
    return 0


def _json_option(text: str | None, flag: str) -> dict:
    import json

    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as error:
        raise UserError(f"{flag}: not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise UserError(f"{flag}: give a JSON object, e.g. '{{\"width\": 0.5}}'")
    return value


def _audit(args: argparse.Namespace) -> int:
    from .audit import audit

    report = audit(
        args.teacher,
        args.student,
        args.data,
        args.out or "runs/audit",
        data_options=_json_option(args.data_options, "--data-options"),
        teacher_weights=args.teacher_weights,
        student_weights=args.student_weights,
        teacher_options=_json_option(args.teacher_options, "--teacher-options"),
        student_options=_json_option(args.student_options, "--student-options"),
        explainer=args.explainer,
        explainer_options=_json_option(args.explainer_options, "--explainer-options"),
        parts=args.parts,
        part_options=_json_option(args.part_options, "--part-options"),
        k=args.k,
        max_samples=args.max_samples,
    )
    from .files import read_json

    figures = read_json(report.parent / "figures.json", "run the same command again")
    summary = figures["students"][0]
    print(
        f"agreement {summary['agreement']['mean']:.3f}, logit Spearman {summary['logit_spearman']['mean']:.3f}, "
        f"saliency Spearman {summary['saliency_spearman']['mean']:.3f}, top-k focus {summary['topk_focus']['mean']:.3f}"
        f"; {figures['inputs']}"
    )
    print(f"report: {report}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .demo import run_demo

    try:
        load_dataset(args.dataset)
    except (ValueError, LookupError, FileNotFoundError, TypeError) as error:
        raise UserError(f"--dataset: {error}") from None
    run_demo(dataset=args.dataset, epochs=args.epochs, seed=args.seed, json_path=args.json)
    return 0


def _list(args: argparse.Namespace) -> int:
    from .data import DATASETS, aeon_shipped
    from .explain import EXPLAINERS
    from .methods import PRESETS, TERMS
    from .models import MODELS
    from .parts import PARTS
    from .protocols import PROTOCOLS

    print("datasets:   " + ", ".join(DATASETS.names()))
    print("  offline ucr:<name>: " + ", ".join(aeon_shipped()))
    print("models:     " + ", ".join(MODELS.names()))
    print("terms:      " + ", ".join(TERMS.names()))
    print("presets:    " + ", ".join(PRESETS.names()))
    print("protocols:  " + ", ".join(PROTOCOLS.names()))
    print("explainers: " + ", ".join(EXPLAINERS.names()))
    print("parts:      " + ", ".join(PARTS.names()))
    return 0


HANDLERS = {
    "run": _run,
    "teach": _teach,
    "explain": _explain,
    "distill": _distill,
    "evaluate": _evaluate,
    "report": _report,
    "demo": _demo,
    "schema": _schema,
    "export": _export,
    "audit": _audit,
    "list": _list,
}


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser, each command's ``handler`` one of this module's functions."""
    from .cli_parser import build_parser as parser_with

    return parser_with(HANDLERS)


def _log_failure(args: argparse.Namespace, text: str) -> Path | None:
    """Append a traceback to the run's log.txt (the run directory when there is one, else the audit's or none)."""
    study = getattr(args, "study", None)
    folder = study.run_dir if study is not None else (Path(args.out) if getattr(args, "out", None) else None)
    if folder is None or not folder.is_dir():
        return None
    path = folder / "log.txt"
    with open(path, "a") as handle:
        handle.write(text)
    return path


def main(argv: list[str] | None = None) -> int:
    import traceback
    import warnings

    from .errors import UserError

    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning's internal deprecation notice
            return args.handler(args)
    except UserError as error:  # the user's mistake: one line, exit 2
        _discard(args)
        print(f"xdistill: error: {error}".splitlines()[0], file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        study = getattr(args, "study", None)
        where = f" {study.where()}" if study is not None else ""
        print(f"xdistill: interrupted{where}; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as error:  # ours or the machine's (a bug, out of memory): exit 1, the traceback kept
        _discard(args)
        text = traceback.format_exc()
        log = _log_failure(args, text)
        if debug:
            print(text, file=sys.stderr, end="")
        where = f"; details in {log}" if log else ("" if debug else "; run again with --debug for the traceback")
        if _lost_peer(error):
            from .distributed import LAST_GROUP

            rank, world = LAST_GROUP[0] if LAST_GROUP else (None, None)
            print(lost_peer_message(rank, world) + where, file=sys.stderr)
            return 1
        print(f"xdistill: error: {type(error).__name__}: {error}".splitlines()[0] + where, file=sys.stderr)
        return 1


def lost_peer_message(rank: int | None, world: int | None) -> str:
    """One line for a multi-process run that lost a process: which rank(s), and what to do (none of the backend's
    own message, whose useful part is the peer's address, not its rank)."""
    others = [r for r in range(world or 0) if r != rank]
    if len(others) == 1:
        lost = f"rank {others[0]} of this {world}-process run"
    elif others:
        lost = f"one of ranks {', '.join(map(str, others))} of this {world}-process run"
    else:
        lost = "another process of this multi-process run"
    seen = f" (seen by rank {rank})" if rank is not None else ""
    return (
        f"xdistill: error: {lost} stopped or stopped answering{seen}; run the same command again: it resumes from "
        "the last checkpoint. If it happens again, the lost process may have run out of memory (see dmesg) or been "
        "too slow to answer (raise hardware.process_timeout)"
    )


def _lost_peer(error: BaseException) -> bool:
    """A collective failed because another process of the run died or hung (gloo/NCCL connection or timeout)."""
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        sign in text for sign in ("Connection reset by peer", "Connection closed by peer", "Timed out", "timed out")
    )


def _discard(args: argparse.Namespace) -> None:
    """A failed command leaves no empty run directory: the study's (``seed-N`` of a several-seed recipe) goes if it
    wrote nothing, then the recipe's run directory itself if this command created it and it is empty."""
    study = getattr(args, "study", None)
    if study is not None:
        study.discard()
    loaded = getattr(args, "loaded", None)
    if loaded is not None and getattr(args, "created_out", False):
        try:
            loaded[1].rmdir()  # only if empty
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main())
