"""A study's inputs: its recipe, its data splits, the models it builds, the training settings and objectives it
resolves. Stages read them; nothing here writes to the run directory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from torch import nn

from ..config import TrainConfig
from ..recipe import Recipe, RecipeError, StudentSpec
from ..rundir import RunDirectory

if TYPE_CHECKING:
    from ..methods import Objective


class StudyInputs:
    """Everything a stage needs to know about the study besides its record (:class:`RunLedger`)."""

    def __init__(self, recipe: Recipe, paths: RunDirectory) -> None:
        self.recipe, self.paths = recipe, paths
        self._splits: Any = None
        self._teacher_splits: Any = None
        self._objectives: dict[str, Objective] = {}

    @property
    def splits(self):
        """(train, test) of the study's dataset (``max_train`` / ``max_test`` applied, by seed)."""
        if self._splits is None:
            self._splits = self._load(self.recipe.dataset, "dataset")
        return self._splits

    @property
    def teacher_splits(self):
        """The teacher's training data: its own dataset when ``teacher.dataset`` names one (a teacher trained
        elsewhere, or on data where a shortcut carries no information), else the study's."""
        spec = self.recipe.teacher.dataset
        if spec is None:
            return self.splits
        if self._teacher_splits is None:
            self._teacher_splits = self._load(spec, "teacher.dataset")
        return self._teacher_splits

    def _load(self, spec: Any, where: str) -> tuple[Any, Any]:
        from ..data import load_dataset

        try:
            train, test = load_dataset(spec.name, **spec.options)
        except TypeError as error:
            raise RecipeError(f"{where}.options: {error}") from None
        except (ValueError, FileNotFoundError, LookupError) as error:
            raise RecipeError(f"{where}.name: {error}") from None
        rng = np.random.default_rng(self.recipe.seed)
        if spec.max_train and spec.max_train < len(train):
            train = train.subset(np.sort(rng.permutation(len(train))[: spec.max_train]))
        if spec.max_test and spec.max_test < len(test):
            test = test.subset(np.sort(rng.permutation(len(test))[: spec.max_test]))
        return train, test

    @property
    def student_splits(self):
        """The students' data: the subtask's classes only when the recipe names a subtask."""
        classes = self.recipe.dataset.subtask
        if not classes:
            return self.splits
        from ..subtask import subtask_data

        try:
            return tuple(subtask_data(split, classes) for split in self.splits)
        except ValueError as error:
            raise RecipeError(f"dataset.subtask: {error}") from None

    def build(self, where: str, name: str, options: dict[str, Any], student: bool = False) -> nn.Module:
        """A fresh model of the recipe's architecture ``name`` for the (students') data, seeded, probed on it."""
        from ..models.factory import ModelError, model_for_data

        train = (self.student_splits if student else self.teacher_splits)[0]
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
        from ..models.factory import ModelError, model_for_data

        train = self.splits[0]
        try:
            return model_for_data(spec.file, train.x[:3], train.num_classes, where="teacher.file")
        except ModelError as error:
            raise RecipeError(str(error)) from None

    def train_config(self, role: Literal["teacher", "student"], *specs: TrainConfig | None) -> TrainConfig:
        """The data family's defaults for ``role``, then each spec's explicitly set fields; seed from the recipe."""
        from ..config import data_family, resolve, with_fields

        given: dict[str, Any] = {"seed": self.recipe.seed}
        for spec in specs:
            if spec is not None:
                given = with_fields(given, spec.model_dump(exclude_unset=True))
        train = (self.student_splits if role == "student" else self.teacher_splits)[0]
        family = data_family(tuple(train.x.shape), integer=not train.x.is_floating_point())
        return resolve(TrainConfig.model_validate(given), family, role)

    @property
    def attribution_dir(self) -> Path:
        """Teacher attribution stores shared by the run's students (keyed by teacher, data and explainer)."""
        return self.paths.attributions

    def student_dir(self, student: StudentSpec) -> Path:
        return self.paths.student_dir(student.name)

    def objective(self, student: StudentSpec) -> Objective:
        """The student's objective, built from its specs once per study (and reused by every stage)."""
        if student.name not in self._objectives:
            from ..methods import Objective

            self._objectives[student.name] = Objective.build(student.methods)
        return self._objectives[student.name]

    def load_teacher_weights(self, teacher: nn.Module) -> None:
        """Load ``teacher.weights`` into ``teacher`` (if the recipe names them): a missing file, or weights that do
        not fit the architecture, is a recipe error."""
        from ..models.factory import ModelError, load_checked

        spec = self.recipe.teacher
        if not spec.weights:
            return
        try:
            load_checked(teacher, spec.weights, str(spec.model), "teacher.weights")
        except ModelError as error:
            raise RecipeError(str(error)) from None

    def runtime(self, progress: bool) -> dict[str, Any]:
        """Where training runs: the recipe's hardware section (RunConfig fields)."""
        hardware = self.recipe.hardware
        accelerator = hardware.accelerator or {"auto": "auto", "cpu": "cpu", "gpu": "gpu"}[self.recipe.device]
        return dict(
            accelerator=accelerator,
            precision=self.recipe.precision,
            progress=progress,
            devices=hardware.devices,
            num_nodes=hardware.num_nodes,
            strategy=hardware.strategy,
            sync_batchnorm=hardware.sync_batchnorm,
            process_timeout=hardware.process_timeout,
        )
