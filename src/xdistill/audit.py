"""``xdistill audit``: does a small model still look where the big one looked?

For any two classifiers — built-in architectures with safetensors weights, the user's
``package.module:Class`` (with weights), or TorchScript files — and any dataset spec, compute
every agreement, alignment and faithfulness figure on the test split and write a report like a study's
(HTML/Markdown/JSON: the decision, the table, the figures; no sample explorer, no per-sample files) into a run
directory. The report says only what audit knows: how it normalised the inputs, not how the models were trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from .errors import UserError
from .files import DirectoryLock, write_json


def load_model(spec: str, test: Any, weights: str | None, options: dict[str, Any] | None, role: str) -> nn.Module:
    """``--teacher``/``--student``: a model file, or an architecture with its trained safetensors weights."""
    from .models.factory import ModelError, model_for_data
    from .models.user import is_model_file

    if not weights and not is_model_file(spec):
        raise UserError(
            f"--{role}-weights: give the trained weights of {spec!r} (a safetensors file), or a .pt2/TorchScript file"
        )
    try:
        return model_for_data(
            spec,
            test.x[:2],
            test.num_classes,
            options=options,
            weights=weights,
            where=f"--{role}",
            weights_field=f"--{role}-weights",
        )
    except ModelError as error:
        raise UserError(str(error)) from None


def refuse_double_preprocessing(specs: dict[str, str], data_options: dict) -> None:
    """A program exported by ``xdistill export`` normalises raw inputs itself: fed data that the loader normalised
    too, it would see them normalised twice. Refused, saying what to pass instead."""
    from .export import builtin_preprocessing
    from .models.user import is_model_file

    if data_options.get("normalize") in (False, "none"):
        return
    for role, spec in specs.items():
        if is_model_file(spec) and builtin_preprocessing(spec):
            raise UserError(
                f"--{role}: {Path(spec).name} applies the study's preprocessing to raw inputs itself (its note "
                f"{Path(spec).name}.json says so), but --data normalises on loading: pass "
                '--data-options \'{"normalize": "none"}\' (with a teacher that takes raw inputs too), or audit the '
                "safetensors export, which takes normalised inputs"
            )


def describe_inputs(info: dict[str, Any], data_options: dict[str, Any]) -> str:
    """How the data loader normalised the inputs (its ``normalize`` option), in words, from what the loaded split
    records: a sentence for the audit's output and report."""
    given = data_options.get("normalize")
    chosen = "" if given is not None else " by default"
    if "pixel_mean" in info:
        return (
            f"inputs standardised{chosen} with the training split's per-channel mean and std (normalize: true; "
            "normalize: false gives the images as stored, in [0, 1] for image files)"
        )
    done = info.get("normalize")
    if done == "series":
        return f"inputs z-normalised{chosen}, each series on its own (normalize: {given or 'auto'}; none keeps them)"
    if done == "channel":
        return (
            f"inputs standardised{chosen} per channel with the training split's statistics (normalize: "
            f"{given or 'auto'}; none keeps them as stored)"
        )
    if done == "none" or given in (False, "none"):
        return "inputs as stored in the data (normalize: none)"
    return "inputs as the data set's loader gives them (it has no normalize option)"


def audit(
    teacher: str,
    student: str,
    data: str,
    out: str | Path,
    *,
    data_options: dict | None = None,
    teacher_weights: str | None = None,
    student_weights: str | None = None,
    teacher_options: dict | None = None,
    student_options: dict | None = None,
    explainer: str = "integrated_gradients",
    explainer_options: dict | None = None,
    parts: str = "timestep",
    part_options: dict | None = None,
    k: int = 5,
    target: str = "teacher",
    max_samples: int | None = 500,
) -> Path:
    """Evaluate ``student`` against ``teacher`` on the test split of ``data``; returns the report's HTML path."""
    from .data import load_dataset
    from .errors import UserError
    from .metrics import AlignmentConfig, evaluate_pair, to_jsonable
    from .recipe_checks import check_evaluation_options, check_k

    try:  # (a RecipeError is a UserError already)
        check_evaluation_options(
            explainer,
            dict(explainer_options or {}),
            parts,
            dict(part_options or {}),
            ("--explainer-options", "--part-options"),
        )
    except LookupError as error:
        raise UserError(str(error)) from None
    refuse_double_preprocessing({"teacher": teacher, "student": student}, data_options or {})
    try:
        _, test = load_dataset(data, **(data_options or {}))
    except (ValueError, LookupError, FileNotFoundError, TypeError) as error:
        raise UserError(f"--data: {error}") from None
    check_k(k, test.input_shape, parts, dict(part_options or {}), ("--k", "--parts"))
    limit = max_samples or len(test)
    x, y = test.x[:limit], test.y[:limit]
    models = {}
    for role, spec, weights, options in (
        ("teacher", teacher, teacher_weights, teacher_options),
        ("student", student, student_weights, student_options),
    ):
        models[role] = load_model(spec, test, weights, options, role)
    inputs = describe_inputs(test.info, data_options or {})
    config = AlignmentConfig(explainer, dict(explainer_options or {}), parts, dict(part_options or {}), k, target)
    run_dir = Path(out)
    with DirectoryLock(run_dir, "run directory"):
        result = to_jsonable(evaluate_pair(models["teacher"], models["student"], x, y, config))
        result.update(student="student", model=student, methods=["audit"], class_names=test.class_names)
        evaluation = {
            "explainer": explainer,
            "explainer_options": explainer_options or {},
            "parts": parts,
            "part_options": part_options or {},
            "k": k,
            "target": target,
            "max_samples": max_samples,
        }
        record = {"data": data, "data_options": data_options or {}, "teacher": teacher, "student": student}
        return _write(run_dir, {**record, "evaluation": evaluation, "inputs": inputs}, result)


def _write(run_dir: Path, record: dict[str, Any], result: dict[str, Any]) -> Path:
    """``audit.json`` (what was compared, how), the student's evaluation and the report; the report's HTML path."""
    from .models.user import is_model_file
    from .report import ReportMeta, build_report
    from .rundir import RunDirectory

    run = RunDirectory(run_dir)
    write_json(run.root / "audit.json", record)
    write_json(run.evaluation("student"), result)
    teacher = record["teacher"]
    meta = ReportMeta(
        name="audit",
        dataset=record["data"],
        teacher=f"file:{Path(teacher).name}" if is_model_file(teacher) else teacher,
        evaluation=record["evaluation"],
        trained_here=False,
        inputs=record["inputs"],
    )
    return build_report(run.report_dir, meta, [result])
