"""``xdistill audit``: does a small model still look where the big one looked?

For any two classifiers — built-in architectures with safetensors weights, the user's
``package.module:Class`` (with weights), or TorchScript files — and any dataset spec, compute
every agreement, alignment and faithfulness figure on the test split and write the same
HTML/Markdown/JSON report as a study, into a run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import UserError
from .files import DirectoryLock, write_json


def load_model(
    spec: str,
    in_channels: int,
    num_classes: int,
    weights: str | None = None,
    options: dict[str, Any] | None = None,
    role: str = "model",
) -> nn.Module:
    """A TorchScript file, or an architecture (registered name or import path) with optional safetensors weights."""
    from .checkpoint import load_weights
    from .models import build_model
    from .models.user import is_model_file, load_model_file

    if is_model_file(spec):
        if weights:
            raise UserError(f"--{role}-weights: a {role} model file carries its own weights")
        return load_model_file(spec)
    model = build_model(spec, in_channels, num_classes, **(options or {}))
    if weights:
        try:
            load_weights(model, weights)
        except RuntimeError as error:
            raise UserError(
                f"--{role}-weights: {weights} does not fit {spec!r} ({str(error).splitlines()[0]})"
            ) from None
        except (FileNotFoundError, OSError) as error:
            raise UserError(f"--{role}-weights: cannot read {weights} ({error})") from None
    elif role != "model":
        raise UserError(
            f"--{role}-weights: give the trained weights of {spec!r} (a safetensors file), or a TorchScript file"
        )
    return model.eval()


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
    from .models.user import is_model_file
    from .recipe import check_evaluation_options, check_k
    from .report import ReportMeta, build_report
    from .rundir import RunDirectory

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
        try:
            model = load_model(spec, test.input_shape[0], test.num_classes, weights, options, role)
        except UserError:
            raise
        except (ValueError, LookupError, FileNotFoundError, TypeError) as error:
            raise UserError(f"--{role}: {error}") from None
        with torch.no_grad():
            classes = model(x[:2]).shape[-1]
        if classes != test.num_classes:
            raise UserError(f"--{role}: {spec} outputs {classes} classes but {data} has {test.num_classes}")
        models[role] = model
    config = AlignmentConfig(explainer, dict(explainer_options or {}), parts, dict(part_options or {}), k, target)
    run_dir = Path(out)
    with DirectoryLock(run_dir, "run directory"):
        result = to_jsonable(evaluate_pair(models["teacher"], models["student"], x, y, config))
        result.update(student="student", model=student, methods=["audit"], class_names=test.class_names)
        label = f"file:{Path(teacher).name}" if is_model_file(teacher) else teacher
        evaluation = {
            "explainer": explainer,
            "explainer_options": explainer_options or {},
            "parts": parts,
            "part_options": part_options or {},
            "k": k,
            "target": target,
            "max_samples": max_samples,
        }
        run = RunDirectory(run_dir)
        write_json(
            run.root / "audit.json",
            {
                "data": data,
                "data_options": data_options or {},
                "teacher": teacher,
                "student": student,
                "evaluation": evaluation,
            },
        )
        write_json(run.evaluation("student"), result)
        meta = ReportMeta(name="audit", dataset=data, teacher=label, evaluation=evaluation)
        return build_report(run.report_dir, meta, [result])
