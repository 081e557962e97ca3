"""The evaluation stage of a study: each student against the teacher on the test split.

The teacher's half (logits, explanations, part importances, its deletion curve, its cost, example
maps) is computed once per run directory and kept in ``evaluation/teacher_side``; each student then
costs only its own explanations, deletion curves and cost.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .files import DamagedFileError, read_json, read_npz, write_json, write_npz
from .progress import progress_bar

if TYPE_CHECKING:
    from .data import ArrayDataset
    from .metrics import AlignmentConfig, TeacherSide
    from .recipe import EvaluationSpec, StudentSpec
    from .study import Study


def alignment_config(spec: EvaluationSpec) -> AlignmentConfig:
    """The recipe's evaluation section as the metrics' settings."""
    from .metrics import AlignmentConfig

    return AlignmentConfig(
        spec.explainer,
        spec.explainer_options,
        spec.parts,
        spec.part_options,
        spec.k,
        spec.target,
        spec.flip_steps,
        also=[extra.model_dump() for extra in spec.also],
    )


def evaluate_student(study: Study, student: StudentSpec) -> dict[str, Any]:
    """Every figure of ``student`` against the teacher, written to ``evaluation/<student>.json`` (+ examples)."""
    from .metrics import evaluate_pair, to_jsonable

    path = study.paths.evaluation(student.name)
    stage = f"evaluate:{student.name}"
    _, test = study.student_splits
    limit = study.recipe.evaluation.max_samples or len(test)
    if study.done(stage) and path.exists():
        try:
            if path.with_suffix(".npz").exists():
                read_npz(path.with_suffix(".npz"))  # every member's CRC checked
            return read_json(path)
        except DamagedFileError as error:
            logging.getLogger("xdistill").warning("%s; evaluating again", str(error).split(";")[0])
    model, teacher = study.student(student), study.student_teacher()
    x, y = test.x[:limit], test.y[:limit]
    started = time.perf_counter()
    side = study.teacher_side()
    study.log(f"evaluate {student.name} on {len(x)} held-out samples")
    config = alignment_config(study.recipe.evaluation)
    units = (3 + len(config.also)) * len(x)  # explanations, two deletion curves, further explainers
    with progress_bar(f"evaluate {student.name}", units, study.progress):
        result = to_jsonable(evaluate_pair(teacher, model, x, y, config, teacher_side=side))
    if hasattr(model, "forward_structured"):  # a select-predict rationale model: its kept parts, against the truth
        from .metrics.rationale import rationale_metrics

        truth = test.rationale[:limit] if test.rationale is not None else None
        result.update(rationale_metrics(teacher, model, x, truth))
    result.update(student=student.name, model=student.model, methods=student.methods, class_names=test.class_names)
    result.update(whole_test_accuracy(study, student, test, limit, result))
    n = study.recipe.evaluation.examples
    if n and side.example_maps is not None:
        examples = {
            "x": x[:n].numpy(),
            "y": y[:n].numpy(),
            "teacher": side.example_maps.numpy(),
            "student": example_maps(model, x[:n], side.target[:n], config),
        }
        write_npz(path.with_suffix(".npz"), examples)
    write_json(path, result)
    study.finish(stage, started)
    return result


def whole_test_accuracy(
    study: Study, student: StudentSpec, test: ArrayDataset, limit: int, result: dict[str, Any]
) -> dict[str, float]:
    """Teacher and student accuracy on the whole test split (``evaluation.max_samples`` limits the rest)."""
    from .metrics import accuracy, predict

    if limit >= len(test):  # the evaluation sample is the whole split
        return {
            "teacher_accuracy_all": result["teacher_accuracy"],
            "student_accuracy_all": result["student_accuracy"],
            "test_samples_all": len(test),
        }
    return {
        "teacher_accuracy_all": accuracy(predict(study.student_teacher(), test.x), test.y),
        "student_accuracy_all": accuracy(predict(study.student(student), test.x), test.y),
        "test_samples_all": len(test),
    }


def teacher_side(study: Study) -> TeacherSide:
    """The teacher's half of every evaluation: read back from ``evaluation/teacher_side`` while the teacher's
    weights, the test samples and the evaluation settings are unchanged, else computed and saved — so a
    later ``xdistill evaluate --student X`` reuses it too."""
    from .checkpoint import fingerprint
    from .metrics import TeacherSide, compute_teacher_side

    teacher, (_, test) = study.student_teacher(), study.student_splits
    limit = min(study.recipe.evaluation.max_samples or len(test), len(test))
    n = study.recipe.evaluation.examples
    config = alignment_config(study.recipe.evaluation)
    key = {
        "teacher": fingerprint(teacher),
        "test": test.fingerprint,
        "samples": limit,
        "examples": n,
        "alignment": dataclasses.asdict(config),
    }
    side = TeacherSide.load(study.paths.teacher_side, key)
    if side is None:
        study.log(f"evaluate the teacher on {limit} held-out samples (once, for every student)")
        x, y = test.x[:limit], test.y[:limit]
        units = (2 + len(config.also)) * len(x)  # explanations (each explainer), deletion curve
        with progress_bar("evaluate the teacher", units, study.progress):
            side = compute_teacher_side(teacher, x, y, config)
        side.example_maps = torch.from_numpy(example_maps(teacher, x[:n], side.target[:n], config)) if n else None
        side.save(study.paths.teacher_side, key)
    return side


def example_maps(model: nn.Module, x: torch.Tensor, target: torch.Tensor, config: AlignmentConfig) -> np.ndarray:
    """Full attribution maps of a few samples, for the report's saliency figure."""
    from .explain import explain

    return explain(model, x, target, method=config.explainer, **config.explainer_options).detach().numpy()
