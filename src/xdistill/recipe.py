"""The recipe file: one YAML document describing a whole study, validated before anything runs.

Every problem is reported as one :class:`RecipeError` line that names the field, e.g.
``students[1].methods[0]: unknown method 'kdd'; known: ce, kd, ...``.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .config import TrainConfig, known_precision
from .errors import RecipeError
from .recipe_checks import (  # noqa: F401  (re-exported: imported from here elsewhere)
    PART_LAYOUTS,
    check_evaluation_options,
    check_k,
    check_names,
    explainer_key,
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSpec(Strict):
    name: str = Field(description="dataset spec, e.g. ucr:GunPoint, mnist1d, digits, fashion_mnist")
    options: dict[str, Any] = Field(
        default={}, description="the dataset loader's keyword arguments (the table below), e.g. label_column for csv:"
    )
    max_train: int | None = Field(default=None, ge=1, description="a random subset of the training split (by seed)")
    max_test: int | None = Field(default=None, ge=1, description="a random subset of the test split (by seed)")
    subtask: list[int] | None = Field(
        default=None, min_length=2, description="class indices the students learn (SubDistill); the teacher sees all"
    )


class TeacherSpec(Strict):
    model: str | None = Field(default=None, description="a registered model, or package.module:Class (runs that code)")
    file: str | None = Field(
        default=None,
        description="a model file to distill from instead of a model: torch.export (.pt2) or TorchScript (.pt, .ts)",
    )
    torchscript: str | None = Field(default=None, description="the older name of file (a TorchScript file)")
    options: dict[str, Any] = Field(default={}, description="the architecture's options, e.g. width")
    weights: str | None = Field(default=None, description="safetensors file to load instead of training")
    methods: list[str | dict[str, Any]] = Field(
        default=["ce"], min_length=1, description="how the teacher trains: ce, or rationale for a rationale model"
    )
    train: TrainConfig | None = Field(default=None, description="unset fields: the data family's teacher defaults")
    dataset: DatasetSpec | None = Field(
        default=None,
        description="the teacher's own training data (default: the study's dataset), e.g. the same generator with "
        "a shortcut that carries no information; the students still learn from dataset, and everything is tested "
        "on dataset's test split. Its inputs and classes must match the study's",
    )

    @model_validator(mode="after")
    def _one_source(self) -> TeacherSpec:
        if self.torchscript is not None:
            if self.file is not None:
                raise ValueError("give file or its older name torchscript, not both")
            self.file, self.torchscript = self.torchscript, None
        if (self.model is None) == (self.file is None):
            raise ValueError("give exactly one of model (an architecture) or file (a .pt2 or TorchScript model file)")
        return self

    @property
    def label(self) -> str:
        return self.model or f"file:{Path(str(self.file)).name}"


class SweepSpec(Strict):
    option: str = Field(description="an option of the student's first method, e.g. alpha")
    values: list[Any] = Field(min_length=1)


class StudentSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$", description="unique; names its folder and report row")
    model: str = Field(description="a registered model, or package.module:Class")
    options: dict[str, Any] = Field(default={}, description="the architecture's options, e.g. width")
    methods: list[str | dict[str, Any]] = Field(
        min_length=1,
        description="terms and presets: a name, or {name: ..., weight: ..., options} (e.g. [ce, {name: tsd, weight: 1}])",
    )
    train: TrainConfig | None = Field(
        default=None, description="overrides the recipe's training section for this student"
    )
    sweep: SweepSpec | None = Field(default=None, description="one student per value of an option of its first method")


class ExplainerSpec(Strict):
    explainer: str
    explainer_options: dict[str, Any] = {}


class EvaluationSpec(Strict):
    explainer: str = Field(default="integrated_gradients", description="how both models' reasons are read")
    explainer_options: dict[str, Any] = Field(default={}, description="e.g. n_steps, or window and stride")
    also: list[ExplainerSpec] = Field(
        default=[],
        description="more explainers to measure alignment under (same parts and k), e.g. ones the method did not "
        "train on (each once: one that repeats the own explainer or another is refused); the report adds their "
        "alignment and how the explainers agree on the teacher itself",
    )
    parts: str = Field(
        default="timestep",
        description="what a map is reduced to before comparing: timestep/window (series), "
        "pixel/patch (images), token, feature",
    )
    part_options: dict[str, Any] = Field(default={}, description="e.g. size (window), grid (patch)")
    k: int = Field(default=5, ge=1, description="the top-k parts of top-k focus and IoU")
    target: Literal["teacher", "label"] = Field(
        default="teacher", description="the class explained: the teacher's prediction or the true label"
    )
    max_samples: int | None = Field(
        default=500, ge=1, description="test samples evaluated (the first ones; accuracy is also on the whole split)"
    )
    examples: int = Field(default=3, ge=0, le=16, description="samples drawn in the report's saliency figure")
    flip_steps: int | None = Field(default=20, ge=0, description="pixel-flipping points (0: skip, null: every part)")


def _count_or(value: Any, keyword: str, what: str) -> Any:
    """``value`` when it is a whole number >= 1 or ``keyword``; else a ValueError naming both."""
    if value == keyword:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"give a whole number of {what} >= 1, or '{keyword}'; got {value!r}")
    return value


class HardwareSpec(Strict):
    """Where the training runs: Lightning's accelerator, processes per node, nodes and strategy.

    Not part of the study's identity: the same run directory may be resumed on other hardware."""

    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] | None = Field(
        default=None, description="default: the recipe's device"
    )
    devices: int | Literal["auto"] = Field(default=1, description="processes per node (e.g. 2 for two CPU processes)")
    num_nodes: int = Field(default=1, ge=1)
    strategy: str = Field(default="auto", description="auto, ddp, ... (several devices: ddp)")
    sync_batchnorm: bool = Field(
        default=True, description="BatchNorm over the global batch under several processes (as one process)"
    )
    process_timeout: float = Field(
        default=300.0, gt=0, description="seconds a process waits for the others before giving up"
    )
    threads: int | Literal["all"] = Field(
        default=1,
        description="torch threads per process: 1 gives the same numbers at any core count (a float sum's order "
        "depends on the thread count); 'all' lets torch choose (faster, core-count dependent). Use `xdistill run "
        "--jobs N` to run seeds side by side",
    )

    @field_validator("threads", mode="before")
    @classmethod
    def _threads(cls, value: Any) -> Any:
        return _count_or(value, "all", "threads")

    @field_validator("devices", mode="before")
    @classmethod
    def _positive(cls, value: Any) -> Any:
        return _count_or(value, "auto", "processes")


class Recipe(Strict):
    name: str = Field(default="study", description="names the default run directory, runs/NAME")
    imports: list[str] = Field(
        default=[],
        description="the user's modules imported before the recipe is checked, so the terms, models, datasets and "
        "explainers they register are known (runs that code; the recipe's folder is on the path)",
    )
    seed: int = Field(default=0, description="seeds data subsets, model initialisation and every random draw")
    seeds: list[int] | None = Field(
        default=None,
        min_length=1,
        description="run the whole study once per seed (RUN_DIR/seed-N); the report gives mean ± std over the "
        "seeds and paired t-tests; replaces seed",
    )
    device: Literal["auto", "cpu", "gpu"] = Field(default="auto", description="where training runs")
    precision: str | None = Field(default=None, description="Lightning's precision, e.g. bf16-mixed")
    hardware: HardwareSpec = HardwareSpec()
    dataset: DatasetSpec
    teacher: TeacherSpec
    students: list[StudentSpec] = Field(min_length=1)
    training: TrainConfig | None = Field(
        default=None, description="the students' training; unset fields: family defaults"
    )
    evaluation: EvaluationSpec = EvaluationSpec()

    @field_validator("precision", mode="before")
    @classmethod
    def _known_precision(cls, value: Any) -> Any:
        return known_precision(value)

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds

    @model_validator(mode="after")
    def _seed_or_seeds(self) -> Recipe:
        if self.seeds is not None and "seed" in self.model_fields_set:
            raise ValueError("give seed (one run) or seeds (one run per seed), not both")
        return self

    def per_seed(self) -> list[Recipe]:
        """One single-seed recipe per seed (just this recipe when it has no seeds list)."""
        if not self.seeds:
            return [self]
        return [self.model_copy(update={"seed": seed, "seeds": None}) for seed in self.seeds]

    @field_validator("students")
    @classmethod
    def _unique_names(cls, students: list[StudentSpec]) -> list[StudentSpec]:
        names = [s.name for s in students]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"student names must be unique; repeated: {', '.join(repeated)}")
        return students

    def expanded_students(self) -> list[StudentSpec]:
        """Students with every sweep unrolled into one student per value."""
        out = []
        for student in self.students:
            if student.sweep is None:
                out.append(student)
                continue
            for value in student.sweep.values:
                methods = copy.deepcopy(student.methods)
                first = {"name": methods[0]} if isinstance(methods[0], str) else dict(methods[0])
                first[student.sweep.option] = value
                methods[0] = first
                out.append(
                    student.model_copy(
                        update={
                            "name": f"{student.name}[{student.sweep.option}={value}]",
                            "methods": methods,
                            "sweep": None,
                        }
                    )
                )
        return out


def _location(loc: tuple) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("str", "dict[str,any]"):  # pydantic's union branch names
            continue
        else:
            text += f".{part}" if text else str(part)
    return text or "recipe"


def _first_error(error: ValidationError) -> str:
    errors = error.errors()
    # for a str|dict union pydantic reports each branch; prefer the dict branch's message
    detail = (
        errors[-1] if len(errors) > 1 and all(e["loc"][:-1] == errors[0]["loc"][:-1] for e in errors) else errors[0]
    )
    message = detail["msg"].removeprefix("Value error, ")
    if detail["type"] == "extra_forbidden":
        message = "unknown key (check the spelling; see recipes/ for examples)"
    return f"{_location(detail['loc'])}: {message}"


def parse_recipe(data: Any, source: str = "recipe") -> Recipe:
    """Validate a loaded YAML document (structure, then names against the registries)."""
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: the recipe must be a YAML mapping, got {type(data).__name__}")
    import_modules(data.get("imports"))
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as error:
        raise RecipeError(_first_error(error)) from None
    check_names(recipe)
    return recipe


def import_modules(names: Any) -> None:
    """Import the recipe's ``imports`` (the user's modules that register terms, models...), each once."""
    import importlib

    if names is None:
        return
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RecipeError("imports: give a list of module names, e.g. [my_terms]")
    for i, name in enumerate(names):
        try:
            importlib.import_module(name)
        except Exception as error:  # the user's code: any failure is named with the module
            raise RecipeError(
                f"imports[{i}]: cannot import {name!r} ({type(error).__name__}: {error}); put the module next to "
                "the recipe or on PYTHONPATH"
            ) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping (YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise RecipeError(
                    f"{key}: given twice (line {seen[key] + 1} and line {key_node.start_mark.line + 1}); keep one"
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.exists():
        raise RecipeError(f"recipe file {path} does not exist")
    if path.is_dir():
        raise RecipeError(f"recipe {path} is a directory; give the recipe's YAML file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise RecipeError(
            f"{path}: not a text file (byte {error.start} is not UTF-8); give the recipe's YAML file"
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML ({error})".replace("\n", " ")) from None
    folder = str(path.resolve().parent)
    if folder not in sys.path:  # a model named package.module:Class may live next to the recipe
        sys.path.insert(0, folder)
    recipe = parse_recipe(data, str(path))
    resolve_files(recipe, Path(folder))
    return recipe


FILE_DATASETS = ("npz", "ts", "arff", "csv", "images")


def _beside(recipe_dir: Path, file: str) -> str:
    """A relative path in a recipe: next to the recipe if it is there, else as given (the working directory)."""
    candidate = recipe_dir / file
    return str(candidate) if not Path(file).is_absolute() and candidate.exists() else file


def resolve_files(recipe: Recipe, recipe_dir: Path) -> None:
    """Relative data, weights and TorchScript paths are looked up next to the recipe first."""
    family, _, member = recipe.dataset.name.partition(":")
    if family in FILE_DATASETS and member:
        recipe.dataset.name = f"{family}:{_beside(recipe_dir, member)}"
        if isinstance(recipe.dataset.options.get("test"), str):
            recipe.dataset.options["test"] = _beside(recipe_dir, recipe.dataset.options["test"])
    if recipe.teacher.weights:
        recipe.teacher.weights = _beside(recipe_dir, recipe.teacher.weights)
    if recipe.teacher.file and not Path(recipe.teacher.file).is_absolute():
        recipe.teacher.file = str(recipe_dir / recipe.teacher.file)


def default_recipe_path() -> Path:
    return Path(__file__).parent / "recipes" / "default.yaml"


def student_index(recipe: Recipe, student: StudentSpec) -> int:
    """Index in ``recipe.students`` of a (possibly sweep-expanded) student."""
    base = student.name.split("[", 1)[0]
    return next(i for i, s in enumerate(recipe.students) if s.name == base)
