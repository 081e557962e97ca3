"""The run ledger: a study's record in its run directory — the lock, the recipe it belongs to, which stages are
done (``stages.json``), the log. Stages write through it; it knows nothing of how a stage computes."""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from ..files import DirectoryLock, read_json, write_json
from ..recipe import Recipe, RecipeError
from ..rundir import RunDirectory

_REWRITE = "delete it and run the same command again (it is written anew from the recipe)"
_RESTAGE = (
    "delete it and run the same command again: finished stages are redone, each from its last checkpoint, "
    "to the same result"
)


def _read_recipe(stored: Any) -> Recipe | None:
    from pydantic import ValidationError

    try:
        return Recipe.model_validate(stored)
    except (ValidationError, TypeError, ValueError):
        return None


def process_rank() -> int:
    """This process's global rank in a multi-process run: torchrun's RANK; under Lightning's launcher 0 for the
    launching process (NODE_RANK 0, LOCAL_RANK 0 or unset) and non-zero for every other; 0 in a single process."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    node, local = int(os.environ.get("NODE_RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    return 0 if node == 0 and local == 0 else 1 + node * 1_000_000 + local  # only "is it 0" is ever used


def study_identity(recipe: Recipe) -> dict[str, Any]:
    """The resolved recipe without its hardware: a run may be resumed on other hardware."""
    resolved = json.loads(recipe.model_dump_json())
    resolved.pop("hardware", None)
    return resolved


def same_recipe(stored: Any, identity: dict[str, Any]) -> bool:
    """Whether a run directory's recorded recipe is this one, read with today's defaults: a field added since
    (at its default) does not make an existing run directory another recipe's."""
    from pydantic import ValidationError

    if stored == identity:
        return True
    try:
        return study_identity(Recipe.model_validate(stored)) == identity
    except (ValidationError, TypeError, ValueError):
        return False


#: recipe sections a run directory may change without retraining its teacher: each student's stages are keyed by
#: its own spec (and the students' training), the evaluation stages by the evaluation settings
GROWABLE = ("name", "students", "training", "evaluation")


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Dotted paths where two recipe dicts differ (``students.kd.methods``, ``teacher.train.steps``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += differences(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return out
    if path == "students" and isinstance(old, list) and isinstance(new, list):
        by_name = lambda items: {s.get("name", str(i)): s for i, s in enumerate(items)}  # noqa: E731
        return differences(by_name(old), by_name(new), path)
    return [] if old == new else [path]


def stale_stages(old: Recipe, new: Recipe) -> tuple[set[str], set[str]]:
    """(stages whose inputs changed between two recipes of one run directory, students whose weights must be
    trained afresh). A student's inputs: its spec and the students' training; an evaluation's: the student's and
    the evaluation settings. A student removed from the recipe loses its stages too."""

    def keys(recipe: Recipe) -> dict[str, str]:
        training = recipe.training.model_dump_json() if recipe.training else ""
        return {s.name: s.model_dump_json() + training for s in recipe.expanded_students()}

    before, after = keys(old), keys(new)
    retrain = {name for name, key in before.items() if after.get(name) != key}
    stages = {f"student:{n}" for n in retrain} | {f"evaluate:{n}" for n in retrain}
    if old.evaluation != new.evaluation:
        stages |= {f"evaluate:{n}" for n in before}
    return stages, retrain & set(after)


def environment(seed: int) -> dict[str, Any]:
    """Versions, platform and command line, recorded beside the recipe."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    versions: dict[str, str | None] = {}
    for package in ("xdistill", "torch", "lightning", "numpy", "aeon", "captum"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "seed": seed,
        "versions": versions,
        "argv": sys.argv,
        "cuda": torch.cuda.is_available(),
    }


class RunLedger:
    """The record of one run directory. Only rank 0 owns it (lock, recipe, stages, log); other ranks read."""

    def __init__(self, recipe: Recipe, run_dir: str | Path, progress: bool = True, restart: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.paths = RunDirectory(self.run_dir)
        self.seed = recipe.seed
        self.rank = process_rank()
        self.progress = progress and self.rank == 0
        self.in_progress: str | None = None  # the stage being worked on, for the interrupt message
        self.stages_path = self.paths.stages
        self._identity = study_identity(recipe)
        recipe_path = self.paths.recipe
        stored = read_json(recipe_path, _REWRITE) if recipe_path.exists() else None
        #: what changed in a recipe that grew (students or evaluation): stages to redo, students to retrain
        self.grown: tuple[list[str], set[str], set[str]] | None = None
        changed = stored is not None and not same_recipe(stored, self._identity)
        #: the run directory holds another recipe (only allowed with --restart: its stages then no longer count)
        self._other_recipe = False
        if changed:
            old = _read_recipe(stored)
            fields = differences(study_identity(old) if old else stored, self._identity)
            fixed = [f for f in fields if f.split(".")[0] not in GROWABLE]
            if old is None or fixed:
                self._other_recipe = True
                if not restart:
                    raise RecipeError(
                        f"out: run directory {self.run_dir} holds a recipe that differs in "
                        f"{', '.join(fixed or fields)}: its teacher cannot be reused. Choose another --out, or pass "
                        "--restart to start it over (students and evaluation may change without it)"
                    )
            else:
                stages, retrain = stale_stages(old, recipe)
                self.grown = (fields, stages, retrain)
        self._created_dir = not self.run_dir.exists()
        self._had_lock_file = (self.run_dir / ".lock").exists()
        self._committed = False
        self.lock: DirectoryLock | None = None
        if self.rank == 0:
            self.lock = DirectoryLock(self.run_dir, "run directory").acquire()  # released when the process ends
        self.stages: dict[str, Any] = (
            read_json(self.stages_path, _RESTAGE) if self.stages_path.exists() and not self._other_recipe else {}
        )
        if self.grown is not None:
            for stage in self.grown[1]:
                self.stages.pop(stage, None)

    def commit(self) -> None:
        """The recipe checked: record it (and the environment) in the run directory; from here on files are written."""
        if self._committed or self.rank != 0:
            self._committed = True
            return
        if self._other_recipe:  # --restart over another recipe: its stages no longer count (nor were they read)
            self.stages_path.unlink(missing_ok=True)
        if self.grown is not None:  # students or evaluation changed: only their stages are redone
            import shutil

            fields, stages, retrain = self.grown
            for name in retrain:  # a changed student's checkpoints belong to its old spec
                shutil.rmtree(self.paths.student_dir(name), ignore_errors=True)
            write_json(self.stages_path, self.stages)
        write_json(self.paths.recipe, self._identity)
        write_json(self.paths.environment, environment(self.seed))
        self._committed = True
        self.announce_growth()

    def announce_growth(self) -> None:
        """Log what a changed recipe redoes (after :meth:`commit`, so the line reaches the run's log)."""
        if self.grown is None:
            return
        fields, stages, _ = self.grown
        redo = ", ".join(sorted(stages)) or "nothing already finished"
        self.log(f"the recipe changed in {', '.join(fields)}: finished stages are kept; redone: {redo}")

    def discard(self) -> None:
        """A refused run leaves nothing: release the lock and remove what this process created, if it wrote nothing."""
        if self.lock is not None:
            self.lock.release()
        if self._committed or self.rank != 0:
            return
        if not self._had_lock_file:
            (self.run_dir / ".lock").unlink(missing_ok=True)
        if self._created_dir:
            try:
                self.run_dir.rmdir()  # only if empty
            except OSError:
                pass

    def log(self, message: str) -> None:
        """A message through the ``logging`` module (logger ``xdistill.study``): to the run's log.txt, and to
        stderr when progress is shown; nothing before the recipe is accepted, nothing from ranks other than 0."""
        if self.rank != 0 or not self._committed:
            return
        logger = logging.getLogger("xdistill.study")
        logger.setLevel(logging.INFO)
        handlers: list[logging.Handler] = [logging.FileHandler(self.paths.log)]
        if self.progress:
            handlers.append(logging.StreamHandler(sys.stderr))
        for handler in handlers:
            handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
            logger.addHandler(handler)
        try:
            logger.info(message)
        finally:
            for handler in handlers:
                logger.removeHandler(handler)

    def done(self, stage: str) -> bool:
        return stage in self.stages

    def where(self) -> str:
        """Where an interrupted run stopped: the stage and its last checkpointed epoch."""
        from ..checkpoint import CheckpointError, load_tree

        if self.in_progress is None:
            return "between stages"
        work = (
            self.paths.teacher_dir
            if self.in_progress == "teacher"
            else self.paths.student_dir(self.in_progress.removeprefix("student "))
        )
        last = work / "checkpoints" / "last.safetensors"
        try:
            epoch = load_tree(last)["epoch"] + 1 if last.exists() else 0
        except (CheckpointError, KeyError):
            epoch = 0
        return f"while training the {self.in_progress} (epochs finished and checkpointed: {epoch})"

    def finish(self, stage: str, started: float, **info: Any) -> None:
        """Record ``stage`` as done; a stage recomputed because its file was damaged keeps its first record."""
        if stage not in self.stages:
            self.stages[stage] = {"seconds": round(time.perf_counter() - started, 2), **info}
        if self.rank == 0:
            write_json(self.stages_path, self.stages)
        self.in_progress = None
