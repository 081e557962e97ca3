"""A whole study from a recipe, in resumable stages: data -> teacher -> students -> evaluation -> report.

Everything lands in one run directory: the resolved recipe, versions and seeds, logs, the
teacher and student weights (safetensors), evaluation JSONs and the report. Each finished
stage is recorded in ``stages.json``; running again skips finished stages, and a student
interrupted mid-training resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from .config import TrainConfig
from .files import DirectoryLock, read_json, write_json
from .recipe import Recipe, RecipeError, StudentSpec, check_k, student_index
from .rundir import RunDirectory

if TYPE_CHECKING:
    from .methods import Objective

_REWRITE = "delete it and run the same command again (it is written anew from the recipe)"
_RESTAGE = (
    "delete it and run the same command again: finished stages are redone, each from its last checkpoint, "
    "to the same result"
)


def process_rank() -> int:
    """This process's global rank in a multi-process run: torchrun's RANK; under Lightning's launcher 0 for the
    launching process (NODE_RANK 0, LOCAL_RANK 0 or unset) and non-zero for every other; 0 in a single process."""
    import os

    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    node, local = int(os.environ.get("NODE_RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    return 0 if node == 0 and local == 0 else 1 + node * 1_000_000 + local  # only "is it 0" is ever used


def study_identity(recipe: Recipe) -> dict[str, Any]:
    """The resolved recipe without its hardware: a run may be resumed on other hardware."""
    resolved = json.loads(recipe.model_dump_json())
    resolved.pop("hardware", None)
    return resolved


class Study:
    """Runs the stages of one recipe inside ``run_dir``.

    In a multi-process run (``hardware.devices > 1``, or under ``torchrun``) every process trains;
    only rank 0 owns the run directory (lock, recipe, stages, logs, evaluation and report)."""

    def __init__(self, recipe: Recipe, run_dir: str | Path, progress: bool = True, restart: bool = False) -> None:
        self.recipe, self.run_dir = recipe, Path(run_dir)
        self.paths = RunDirectory(self.run_dir)
        self.rank = process_rank()
        self.progress = progress and self.rank == 0
        self.in_progress: str | None = None  # the stage being worked on, for the interrupt message
        self.stages_path = self.paths.stages
        self._identity = study_identity(recipe)
        recipe_path = self.paths.recipe
        #: the run directory holds another recipe (only allowed with --restart: its stages then no longer count)
        self._other_recipe = recipe_path.exists() and read_json(recipe_path, _REWRITE) != self._identity
        if self._other_recipe and not restart:
            raise RecipeError(
                f"out: run directory {self.run_dir} holds a different recipe; "
                "choose another --out or pass --restart to start it over"
            )
        self._created_dir = not self.run_dir.exists()
        self._had_lock_file = (self.run_dir / ".lock").exists()
        self._committed = False
        self.lock: DirectoryLock | None = None
        if self.rank == 0:
            self.lock = DirectoryLock(self.run_dir, "run directory").acquire()  # released when the process ends
        self.stages: dict[str, Any] = (
            read_json(self.stages_path, _RESTAGE) if self.stages_path.exists() and not self._other_recipe else {}
        )
        self._splits = None
        self._objectives: dict[str, Objective] = {}
        self._teacher: nn.Module | None = None
        self._teacher_side: Any = None

    def commit(self) -> None:
        """The recipe checked: record it (and the environment) in the run directory; from here on files are written."""
        if self._committed or self.rank != 0:
            self._committed = True
            return
        if self._other_recipe:  # --restart over another recipe: its stages no longer count (nor were they read)
            self.stages_path.unlink(missing_ok=True)
        write_json(self.paths.recipe, self._identity)
        write_json(self.paths.environment, environment(self.recipe.seed))
        self._committed = True

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

    # -- bookkeeping --------------------------------------------------------------------------
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
                handler.close()

    def done(self, stage: str) -> bool:
        return stage in self.stages

    def where(self) -> str:
        """Where an interrupted run stopped: the stage and its last checkpointed epoch."""
        from .checkpoint import CheckpointError, load_tree

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

    # -- data and models --------------------------------------------------------------------------
    @property
    def splits(self):
        if self._splits is None:
            from .data import load_dataset

            spec = self.recipe.dataset
            try:
                train, test = load_dataset(spec.name, **spec.options)
            except TypeError as error:
                raise RecipeError(f"dataset.options: {error}") from None
            except (ValueError, FileNotFoundError, LookupError) as error:
                raise RecipeError(f"dataset.name: {error}") from None
            rng = np.random.default_rng(self.recipe.seed)
            if spec.max_train and spec.max_train < len(train):
                train = train.subset(np.sort(rng.permutation(len(train))[: spec.max_train]))
            if spec.max_test and spec.max_test < len(test):
                test = test.subset(np.sort(rng.permutation(len(test))[: spec.max_test]))
            self._splits = (train, test)
        return self._splits

    @property
    def student_splits(self):
        """The students' data: the subtask's classes only when the recipe names a subtask."""
        classes = self.recipe.dataset.subtask
        if not classes:
            return self.splits
        from .subtask import subtask_data

        try:
            return tuple(subtask_data(split, classes) for split in self.splits)
        except ValueError as error:
            raise RecipeError(f"dataset.subtask: {error}") from None

    def student_teacher(self) -> nn.Module:
        """The teacher as the students see it: restricted to the subtask's logits if there is one."""
        from .subtask import ClassSubset

        teacher = self.teacher()
        classes = self.recipe.dataset.subtask
        return ClassSubset(teacher, classes).eval() if classes else teacher

    def build(self, where: str, name: str, options: dict[str, Any], student: bool = False) -> nn.Module:
        """A fresh model of the recipe's architecture ``name`` for the (students') data, seeded, probed on it."""
        from .models.factory import ModelError, model_for_data

        train = (self.student_splits if student else self.splits)[0]
        try:
            return model_for_data(
                name, train.x[:2], train.num_classes, options=options, where=where, seed=self.recipe.seed
            ).train()
        except ModelError as error:
            raise RecipeError(str(error)) from None

    def build_teacher(self) -> nn.Module:
        """The recipe's teacher architecture, or its model file (.pt2 or TorchScript)."""
        spec = self.recipe.teacher
        if spec.file is None:
            assert spec.model is not None  # the recipe requires model or file
            return self.build("teacher", spec.model, spec.options)
        from .models.factory import ModelError, model_for_data

        train = self.splits[0]
        try:
            return model_for_data(spec.file, train.x[:3], train.num_classes, where="teacher.file")
        except ModelError as error:
            raise RecipeError(str(error)) from None

    def check(self) -> None:
        """Build every model once against the data and check every option that needs the models or the data's
        shape (term layer paths, TSD windows, the evaluation's k): mistakes surface before anything trains."""
        from .subtask import ClassSubset

        teacher = self.build_teacher()
        self._load_teacher_weights(teacher)
        classes = self.recipe.dataset.subtask
        student_teacher = ClassSubset(teacher, classes).eval() if classes else teacher
        train = self.student_splits[0]
        for i, student in enumerate(self.recipe.students):
            model = self.build(f"students[{i}]", student.model, student.options, student=True)
            for spec in self.recipe.expanded_students():
                if student_index(self.recipe, spec) != i:
                    continue
                for term in self.objective(spec):
                    try:
                        term.check(student_teacher, model, train.x[:2])
                    except ValueError as error:
                        raise RecipeError(f"students[{i}].methods: {term.name}: {error}") from None
        self._check_train_configs()
        evaluation = self.recipe.evaluation
        check_k(evaluation.k, train.input_shape, evaluation.parts, evaluation.part_options)
        self.commit()

    def _check_train_configs(self) -> None:
        """Each model's training settings as they resolve (family defaults, recipe, per-student overrides)."""
        from pydantic import ValidationError

        checks: list[tuple[str, Literal["teacher", "student"], tuple[TrainConfig | None, ...]]] = [
            ("teacher.train", "teacher", (self.recipe.teacher.train,))
        ]
        checks += [
            (f"students[{i}].train", "student", (self.recipe.training, s.train))
            for i, s in enumerate(self.recipe.students)
        ]
        for where, role, specs in checks:
            try:
                self.train_config(role, *specs)
            except ValidationError as error:
                detail = error.errors()[0]
                raise RecipeError(
                    f"{where}: {detail['msg'].removeprefix('Value error, ')} (with the data family's "
                    "defaults and the recipe's training section)"
                ) from None

    def _load_teacher_weights(self, teacher: nn.Module) -> None:
        """Load ``teacher.weights`` into ``teacher`` (if the recipe names them): a missing file, or weights that do
        not fit the architecture, is a recipe error."""
        from .models.factory import ModelError, load_checked

        spec = self.recipe.teacher
        if not spec.weights:
            return
        try:
            load_checked(teacher, spec.weights, str(spec.model), "teacher.weights")
        except ModelError as error:
            raise RecipeError(str(error)) from None

    # -- training (xdistill.training_stage) ------------------------------------------------------------
    def teacher(self) -> nn.Module:
        """The trained (or loaded) teacher; trained once per run directory."""
        from .training_stage import teacher

        if self._teacher is None:
            self._teacher = teacher(self)
        return self._teacher

    def student(self, student: StudentSpec) -> nn.Module:
        """The distilled student; trained once per run directory (an interrupted one resumes)."""
        from .training_stage import student as train_student

        return train_student(self, student)

    def train_config(self, role: Literal["teacher", "student"], *specs: TrainConfig | None) -> TrainConfig:
        """The data family's defaults for ``role``, then each spec's explicitly set fields; seed from the recipe."""
        from .config import data_family, resolve, with_fields

        given: dict[str, Any] = {"seed": self.recipe.seed}
        for spec in specs:
            if spec is not None:
                given = with_fields(given, spec.model_dump(exclude_unset=True))
        train = (self.student_splits if role == "student" else self.splits)[0]
        family = data_family(tuple(train.x.shape), integer=not train.x.is_floating_point())
        return resolve(TrainConfig.model_validate(given), family, role)

    @property
    def attribution_dir(self) -> Path:
        """Teacher attribution stores shared by the run's students (keyed by teacher, data and explainer)."""
        return self.paths.attributions

    def student_dir(self, student: StudentSpec) -> Path:
        return self.paths.student_dir(student.name)

    # -- evaluation (xdistill.evaluation_stage) ------------------------------------------------------
    def evaluate(self, student: StudentSpec) -> dict[str, Any]:
        """The student against the teacher on the test split (a finished evaluation is read back)."""
        from .evaluation_stage import evaluate_student

        return evaluate_student(self, student)

    def teacher_side(self) -> Any:
        """The teacher's half of every evaluation, computed once per run directory (see ``evaluation_stage``)."""
        from .evaluation_stage import teacher_side

        if self._teacher_side is None:
            self._teacher_side = teacher_side(self)
        return self._teacher_side

    def explain(self) -> list[Path]:
        """Precompute the attribution stores that the recipe's methods read (resumable)."""
        from .engine import prepare_context, training_part
        from .methods import Term

        stores = []
        for student in self.recipe.expanded_students():
            terms = self.objective(student)
            for method in terms:
                if type(method).artefacts is Term.artefacts:  # only terms whose prepare fills a store ahead of time
                    continue
                config = self.train_config("student", self.recipe.training, student.train)
                train, _ = training_part(self.student_splits[0], config)  # what distill() trains on
                device = torch.device("cuda" if self.recipe.device != "cpu" and torch.cuda.is_available() else "cpu")
                self.log(f"attribution store for {student.name}")
                model = self.build("student", student.model, student.options, student=True)
                context = prepare_context(
                    self.student_teacher(),
                    model,
                    train,
                    terms,
                    config,
                    work_dir=self.student_dir(student),
                    device=device,
                    progress=self.progress,
                    cache_dir=self.attribution_dir,
                )
                method.prepare(context)
                stores += [Path(folder) for folder in method.artefacts()]
        return stores

    def objective(self, student: StudentSpec) -> Objective:
        """The student's objective, built from its specs once per study (and reused by every stage)."""
        if student.name not in self._objectives:
            from .methods import Objective

            self._objectives[student.name] = Objective.build(student.methods)
        return self._objectives[student.name]

    def report(self) -> Path:
        from .report_stage import write_report

        self.log("report")
        return write_report(self.run_dir)

    def run(self) -> Path | None:
        """Every stage in order; finished ones are skipped. Ranks other than 0 stop after training (None)."""
        self.check()
        train, test = self.splits
        self.log(
            f"data {self.recipe.dataset.name}: {len(train)} train, {len(test)} test, input {train.input_shape}, "
            f"{train.num_classes} classes"
            + (f"; students on subtask {self.recipe.dataset.subtask}" if self.recipe.dataset.subtask else "")
        )
        self.teacher()
        students = self.recipe.expanded_students()
        for student in students:
            self.student(student)
        if self.rank != 0:
            return None
        for student in students:
            self.evaluate(student)
        return self.report()


def environment(seed: int) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

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
