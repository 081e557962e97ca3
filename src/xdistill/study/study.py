"""A whole study from a recipe, in resumable stages: data -> teacher -> students -> evaluation -> report.

Everything lands in one run directory: the resolved recipe, versions and seeds, logs, the teacher and student
weights (safetensors), evaluation JSONs and the report. :class:`Study` composes the run's record
(:class:`~xdistill.study.ledger.RunLedger`) and its inputs (:class:`~xdistill.study.inputs.StudyInputs`) and calls
the stages (``training``, ``evaluation``, ``report``), which see only those two: no stage imports the Study.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from ..config import TrainConfig
from ..recipe import Recipe, RecipeError, StudentSpec, check_k, student_index
from . import evaluation, training
from .inputs import StudyInputs
from .ledger import RunLedger

if TYPE_CHECKING:
    from ..methods import Objective


#: torch's own choice of intra-op threads in this process (the machine's cores), before any study set it
TORCH_DEFAULT_THREADS = torch.get_num_threads()


def use_threads(threads: int | str) -> None:
    """Set torch's intra-op threads for this process (``"all"``: torch's own default)."""
    torch.set_num_threads(TORCH_DEFAULT_THREADS if threads == "all" else int(threads))


class Study:
    """Runs the stages of one recipe inside ``run_dir``.

    In a multi-process run (``hardware.devices > 1``, or under ``torchrun``) every process trains;
    only rank 0 owns the run directory (lock, recipe, stages, logs, evaluation and report)."""

    def __init__(self, recipe: Recipe, run_dir: str | Path, progress: bool = True, restart: bool = False) -> None:
        self.recipe, self.run_dir = recipe, Path(run_dir)
        use_threads(recipe.hardware.threads)
        self.ledger = RunLedger(recipe, run_dir, progress, restart)
        self.inputs = StudyInputs(recipe, self.ledger.paths)
        self._teacher: nn.Module | None = None
        self._teacher_side: Any = None
        self._students: dict[str, nn.Module] = {}

    # -- the record and the inputs, by their usual names ---------------------------------------------------
    @property
    def paths(self):
        return self.ledger.paths

    @property
    def rank(self) -> int:
        return self.ledger.rank

    @property
    def progress(self) -> bool:
        return self.ledger.progress

    @property
    def stages(self) -> dict[str, Any]:
        return self.ledger.stages

    @property
    def stages_path(self) -> Path:
        return self.ledger.stages_path

    @property
    def lock(self):
        return self.ledger.lock

    @property
    def splits(self):
        return self.inputs.splits

    @property
    def student_splits(self):
        return self.inputs.student_splits

    @property
    def attribution_dir(self) -> Path:
        return self.inputs.attribution_dir

    def commit(self) -> None:
        self.ledger.commit()

    def discard(self) -> None:
        self.ledger.discard()

    def log(self, message: str) -> None:
        self.ledger.log(message)

    def done(self, stage: str) -> bool:
        return self.ledger.done(stage)

    def where(self) -> str:
        return self.ledger.where()

    def build(self, where: str, name: str, options: dict[str, Any], student: bool = False) -> nn.Module:
        return self.inputs.build(where, name, options, student)

    def build_teacher(self) -> nn.Module:
        return self.inputs.build_teacher()

    def train_config(self, role: Literal["teacher", "student"], *specs: TrainConfig | None) -> TrainConfig:
        return self.inputs.train_config(role, *specs)

    def student_dir(self, student: StudentSpec) -> Path:
        return self.inputs.student_dir(student)

    def objective(self, student: StudentSpec) -> Objective:
        return self.inputs.objective(student)

    # -- checks ----------------------------------------------------------------------------------------------
    def check(self) -> None:
        """Build every model once against the data and check every option that needs the models or the data's
        shape (term layer paths, TSD windows, the evaluation's k): mistakes surface before anything trains."""
        from ..subtask import ClassSubset

        self._check_teacher_data()
        teacher = self.build_teacher()
        self.inputs.load_teacher_weights(teacher)
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
        self.ledger.commit()

    def _check_teacher_data(self) -> None:
        """A teacher's own dataset must have the study's inputs and classes (it is tested on the study's)."""
        if self.recipe.teacher.dataset is None:
            return
        own, study = self.inputs.teacher_splits[0], self.splits[0]
        if own.input_shape != study.input_shape or own.class_names != study.class_names:
            raise RecipeError(
                f"teacher.dataset: its inputs {own.input_shape} and classes {own.class_names} must be the study's "
                f"({study.input_shape}, {study.class_names}): the teacher is tested on dataset's test split"
            )

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

    # -- the stages ------------------------------------------------------------------------------------------
    def teacher(self) -> nn.Module:
        """The trained (or loaded) teacher; trained once per run directory."""
        if self._teacher is None:
            self._teacher = training.teacher(self.ledger, self.inputs)
        return self._teacher

    def student_teacher(self) -> nn.Module:
        """The teacher as the students see it: restricted to the subtask's logits if there is one."""
        from ..subtask import ClassSubset

        teacher = self.teacher()
        classes = self.recipe.dataset.subtask
        return ClassSubset(teacher, classes).eval() if classes else teacher

    def student(self, student: StudentSpec) -> nn.Module:
        """The distilled student; trained once per run directory (an interrupted one resumes), read back once per
        process."""
        if student.name not in self._students:
            self._students[student.name] = training.student(self.ledger, self.inputs, student, self.student_teacher())
        return self._students[student.name]

    def teacher_side(self) -> Any:
        """The teacher's half of every evaluation, computed once per run directory."""
        if self._teacher_side is None:
            self._teacher_side = evaluation.teacher_side(self.ledger, self.inputs, self.student_teacher())
        return self._teacher_side

    def evaluate(self, student: StudentSpec) -> dict[str, Any]:
        """The student against the teacher on the test split (a finished evaluation is read back)."""
        return evaluation.evaluate_student(
            self.ledger,
            self.inputs,
            student,
            lambda: (self.student(student), self.student_teacher(), self.teacher_side()),
        )

    def explain(self) -> list[Path]:
        """Precompute the attribution stores that the recipe's methods read (resumable)."""
        from ..engine import prepare_context, training_part
        from ..methods import Term

        stores = []
        for student in self.recipe.expanded_students():
            terms = self.objective(student)
            for method in terms:
                if type(method).artefacts is Term.artefacts:  # only terms whose prepare fills a store ahead of time
                    continue
                config = self.train_config("student", self.recipe.training, student.train)
                train, _ = training_part(self.student_splits[0], config)  # what distill() trains on
                device = torch.device("cuda" if self.recipe.device != "cpu" and torch.cuda.is_available() else "cpu")
                self.ledger.log(f"attribution store for {student.name}")
                model = self.build("student", student.model, student.options, student=True)
                context = prepare_context(
                    self.student_teacher(),
                    model,
                    train,
                    terms,
                    config,
                    work_dir=self.student_dir(student),
                    device=device,
                    progress=self.ledger.progress,
                    cache_dir=self.attribution_dir,
                )
                method.prepare(context)
                stores += [Path(folder) for folder in method.artefacts()]
        return stores

    def report(self) -> Path:
        from .report import write_report

        self.ledger.log("report")
        return write_report(self.run_dir)

    def run(self) -> Path | None:
        """Every stage in order; finished ones are skipped. Ranks other than 0 stop after training (None)."""
        self.check()
        train, test = self.splits
        self.ledger.log(
            f"data {self.recipe.dataset.name}: {len(train)} train, {len(test)} test, input {train.input_shape}, "
            f"{train.num_classes} classes"
            + (f"; students on subtask {self.recipe.dataset.subtask}" if self.recipe.dataset.subtask else "")
        )
        self.teacher()
        students = self.recipe.expanded_students()
        for student in students:
            self.student(student)
        if self.ledger.rank != 0:
            return None
        for student in students:
            self.evaluate(student)
        return self.report()
