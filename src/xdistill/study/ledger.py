"""The run ledger: a study's record in its run directory — the lock, the recipe it belongs to, which stages are
done (``stages.json``), the versions and every command that worked there (``environment.json``), the log. Stages
write through it; it knows nothing of how a stage computes."""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..files import DamagedFileError, DirectoryLock, read_json, remove_stale_partials, sha256_of, write_json
from ..recipe import Recipe, RecipeError
from ..rundir import RunDirectory

_REWRITE = "delete it and run the same command again (it is written anew from the recipe)"
#: how a damaged stages.json is rebuilt
RESTAGE = (
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


@dataclass
class Growth:
    """How a run directory's recipe grew: what changed and which stages that makes stale."""

    #: dotted recipe paths that differ (``students.kd.options.width``)
    fields: list[str]
    #: stages whose inputs changed, or whose student left the recipe
    stale: set[str]
    #: students of the new recipe trained afresh (their old checkpoints belong to their old spec)
    retrain: set[str]
    #: students no longer in the recipe
    removed: set[str]
    #: the finished stages that no longer count (filled once ``stages.json`` is read)
    dropped: set[str] = field(default_factory=set)

    def message(self) -> str:
        """The log line: what is redone, what was removed."""
        redone = sorted(s for s in self.dropped if s.split(":", 1)[-1] not in self.removed)
        text = f"the recipe changed in {', '.join(self.fields)}: finished stages are kept"
        text += f"; redone: {', '.join(redone)}" if redone else ", nothing finished is redone"
        if self.removed:
            names = ", ".join(sorted(self.removed))
            text += f"; removed: student(s) {names} (their stages no longer count; their files are left in place)"
        return text


def growth(old: Recipe, new: Recipe, fields: list[str]) -> Growth:
    """What a recipe that grew from ``old`` to ``new`` makes stale."""
    stages, retrain = stale_stages(old, new)
    removed = {s.name for s in old.expanded_students()} - {s.name for s in new.expanded_students()}
    return Growth(fields, stages, retrain, removed)


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


def code_version() -> str:
    """The code this process runs: ``git <commit>`` when xdistill runs from a git checkout (``+changes`` when its
    files differ from that commit), else ``xdistill <installed version>``."""
    from .. import __version__

    package = Path(__file__).resolve().parent.parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True, timeout=5)

    try:
        if git("ls-files", "--error-unmatch", "__init__.py").returncode == 0:  # the package is tracked, not installed
            commit = git("rev-parse", "HEAD").stdout.strip()
            changed = git("diff", "--quiet", "HEAD", "--", ".").returncode != 0
            if commit:
                return f"git {commit}" + ("+changes" if changed else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return f"xdistill {__version__}"


def command_record() -> dict[str, Any]:
    """This process's command, as environment.json keeps it: when, what, in which folder, with which code."""
    from .. import __version__

    return {
        "time": datetime.now().astimezone().isoformat(timespec="seconds"),
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "xdistill": __version__,
        "code": code_version(),
    }


def earlier_commands(record: Any) -> list[dict[str, Any]]:
    """The commands an environment.json recorded (one written before the list existed: its single command)."""
    if not isinstance(record, dict):
        return []
    if isinstance(record.get("commands"), list):
        return record["commands"]
    if "argv" in record:
        xdistill = (record.get("versions") or {}).get("xdistill")
        return [{"time": None, "argv": record["argv"], "cwd": None, "xdistill": xdistill, "code": None}]
    return []


def set_aside(path: Path) -> Path:
    """Rename a damaged file to ``<name>.damaged`` (``.damaged.2``, ... when taken); return the new path."""
    aside, n = path.with_name(path.name + ".damaged"), 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.damaged.{n}")
    path.rename(aside)
    return aside


def record_environment(path: Path, seed: int) -> str | None:
    """Write ``environment.json``: this run's versions and platform, and under ``commands`` every command that has
    worked in the run directory, this one appended. A damaged file is not read (nor refused: nothing computed
    depends on it): it is kept aside as ``environment.json.damaged`` and the record of commands starts anew.
    Returns the warning that says so (None when nothing was set aside)."""
    commands, warning = [], None
    if path.exists():
        try:
            commands = earlier_commands(read_json(path))
        except DamagedFileError as error:
            aside = set_aside(path)
            warning = (
                f"{path} is damaged ({error.why}): kept aside as {aside.name}, and the record of the commands "
                "that worked in this run directory starts anew"
            )
    write_json(path, {**environment(seed), "commands": [*commands, command_record()]})
    return warning


def training_log_hashes(paths: RunDirectory, stage: str) -> dict[str, str] | None:
    """The SHA-256 of each CSV log a training stage's fit wrote, by its path below the stage's folder; None for a
    stage that is not a training stage."""
    work = paths.work_dir(stage)
    if work is None:
        return None
    return {log.relative_to(work).as_posix(): sha256_of(log.read_bytes()) for log in paths.training_logs(work)}


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
        self.grown: Growth | None = None
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
                self.grown = growth(old, recipe, fields)
        self._created_dir = not self.run_dir.exists()
        self._had_lock_file = (self.run_dir / ".lock").exists()
        self._committed = False
        self.lock: DirectoryLock | None = None
        if self.rank == 0:
            self.lock = DirectoryLock(self.run_dir, "run directory").acquire()  # released when the process ends
        self.stages: dict[str, Any] = (
            read_json(self.stages_path, RESTAGE) if self.stages_path.exists() and not self._other_recipe else {}
        )
        if self.grown is not None:
            self.grown.dropped = {stage for stage in self.grown.stale if self.stages.pop(stage, None) is not None}

    def commit(self) -> None:
        """The recipe checked: record it (and the environment) in the run directory; from here on files are written.
        First, holding the lock, it removes the partial files an interrupted write left (``*.part``)."""
        if self._committed or self.rank != 0:
            self._committed = True
            return
        partials = remove_stale_partials(self.run_dir)
        if self._other_recipe:  # --restart over another recipe: its stages no longer count (nor were they read)
            self.stages_path.unlink(missing_ok=True)
        if self.grown is not None:  # students or evaluation changed: only their stages are redone
            import shutil

            for name in self.grown.retrain:  # a changed student's checkpoints belong to its old spec
                shutil.rmtree(self.paths.student_dir(name), ignore_errors=True)
            write_json(self.stages_path, self.stages)
        write_json(self.paths.recipe, self._identity)
        set_aside_warning = record_environment(self.paths.environment, self.seed)
        self._committed = True
        if set_aside_warning:
            self.warn(set_aside_warning)
        if partials:
            names = ", ".join(str(p.relative_to(self.run_dir)) for p in partials[:3])
            more = f" and {len(partials) - 3} more" if len(partials) > 3 else ""
            self.log(f"removed {len(partials)} partial file(s) that interrupted writes left: {names}{more}")
        self.announce_growth()

    def announce_growth(self) -> None:
        """Log what a changed recipe redoes (after :meth:`commit`, so the line reaches the run's log)."""
        if self.grown is not None:
            self.log(self.grown.message())

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

    def log(self, message: str, warning: bool = False) -> None:
        """A message through the ``logging`` module (logger ``xdistill.study``): to the run's log.txt, and to
        stderr when progress is shown (a ``warning``: even without); nothing before the recipe is accepted,
        nothing from ranks other than 0."""
        if self.rank != 0 or not self._committed:
            return
        logger = logging.getLogger("xdistill.study")
        logger.setLevel(logging.INFO)
        handlers: list[logging.Handler] = [logging.FileHandler(self.paths.log)]
        if self.progress or warning:
            handlers.append(logging.StreamHandler(sys.stderr))
        for handler in handlers:
            handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
            logger.addHandler(handler)
        try:
            logger.log(logging.WARNING if warning else logging.INFO, message)
        finally:
            for handler in handlers:
                logger.removeHandler(handler)
                handler.close()

    def warn(self, message: str) -> None:
        """A message shown even under ``--quiet`` (a damaged file computed again or set aside), and logged."""
        self.log(message, warning=True)

    def kept(self, what: str) -> None:
        """Log that a finished stage's result was read back and is used as it is (``what``: ``teacher``,
        ``evaluation of kd``)."""
        self.log(f"{what}: kept (finished earlier)")

    def recomputed(self, what: str, why: str) -> None:
        """Log (shown even under ``--quiet``) that a finished stage is computed again, and why (``why``: its file
        ``<name> was damaged: ...`` or ``... is missing``)."""
        self.warn(f"{what}: recomputed ({why})")

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
        """Record ``stage`` as done; a stage recomputed because its file was damaged keeps its first record (but the
        hashes of its training logs, ``logs``, are always those of the files as they are now)."""
        if stage not in self.stages:
            self.stages[stage] = {"seconds": round(time.perf_counter() - started, 2), **info}
        if self.rank == 0:
            logs = training_log_hashes(self.paths, stage)
            if logs is not None:  # the fit's CSV logs as they are now: the report checks them before drawing them
                self.stages[stage]["logs"] = logs
            write_json(self.stages_path, self.stages)
        self.in_progress = None
