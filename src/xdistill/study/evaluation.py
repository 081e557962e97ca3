"""The evaluation stage of a study: each student against the teacher on the test split.

The teacher's half (logits, explanations, part importances, its deletion curve, its cost, example
maps) is computed once per run directory and kept in ``evaluation/teacher_side``; each student then
costs only its own explanations, deletion curves and cost.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..files import DamagedFileError, read_json, read_npz, write_json, write_npz
from ..progress import progress_bar
from .inputs import StudyInputs
from .ledger import RunLedger
from .samples import REDO_EVALUATION, csv_path, read_samples, restore_csv, samples_path, write_samples

if TYPE_CHECKING:
    from ..data import ArrayDataset
    from ..metrics import AlignmentConfig, TeacherSide
    from ..recipe import EvaluationSpec, StudentSpec

#: (the student, the teacher as the students see it, the teacher's half of the evaluation), made on demand
Models = Callable[[], tuple[nn.Module, nn.Module, "TeacherSide"]]


def alignment_config(spec: EvaluationSpec) -> AlignmentConfig:
    """The recipe's evaluation section as the metrics' settings."""
    from ..metrics import AlignmentConfig

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


def evaluate_student(ledger: RunLedger, inputs: StudyInputs, student: StudentSpec, models: Models) -> dict[str, Any]:
    """Every figure of ``student`` against the teacher, written to ``evaluation/<student>.json`` (+ examples,
    + per-sample values in ``<student>.samples.npz/.csv``); ``models`` gives the trained student, the teacher and
    the teacher's side when they are needed."""
    from ..metrics import evaluate_pair, to_jsonable
    from ..metrics.shortcut import explainer_masses, shortcut_metrics

    path = ledger.paths.evaluation(student.name)
    stage = f"evaluate:{student.name}"
    _, test = inputs.student_splits
    limit = inputs.recipe.evaluation.max_samples or len(test)
    if ledger.done(stage):
        finished = read_finished(ledger, inputs, student.name)
        if finished is not None:
            return finished
    model, teacher, side = models()
    x, y = test.x[:limit], test.y[:limit]
    started = time.perf_counter()
    ledger.log(f"evaluate {student.name} on {len(x)} held-out samples")
    config = alignment_config(inputs.recipe.evaluation)
    units = (3 + len(config.also)) * len(x)  # explanations, two deletion curves, further explainers
    samples: dict[str, torch.Tensor] = {}
    with progress_bar(f"evaluate {student.name}", units, ledger.progress):
        result = to_jsonable(evaluate_pair(teacher, model, x, y, config, teacher_side=side, samples=samples))
    from ..models import RationaleModel

    if isinstance(model, RationaleModel):  # a select-predict rationale model: its kept parts, against the truth
        from ..metrics.rationale import rationale_metrics

        truth = test.rationale[:limit] if test.rationale is not None else None
        result.update(rationale_metrics(teacher, model, x, truth))
    result.update(student=student.name, model=student.model, methods=student.methods, class_names=test.class_names)
    result.update(whole_test_accuracy(model, teacher, test, limit, result))
    result.update(shortcut_metrics(model, teacher, test))
    result.update(explainer_masses(teacher, model, test, config, limit))
    n = inputs.recipe.evaluation.examples
    if n and side.example_maps is not None:
        examples = {
            "x": x[:n].numpy(),
            "y": y[:n].numpy(),
            "teacher": side.example_maps.numpy(),
            "student": example_maps(model, x[:n], side.target[:n], config),
        }
        write_npz(path.with_suffix(".npz"), examples)
    write_samples(samples_path(path), samples, x, config.parts, config.part_options)
    write_json(path, result)
    ledger.finish(stage, started)
    return result


def read_finished(ledger: RunLedger, inputs: StudyInputs, name: str) -> dict[str, Any] | None:
    """A finished evaluation of student ``name`` read back, every file of it checked (content hash, CRC-32s, the
    CSV against its npz); None when one is missing or damaged: it is then computed again. The log says which."""
    path = ledger.paths.evaluation(name)
    what = f"evaluation of {name}"
    files = [path, samples_path(path)] + ([path.with_suffix(".npz")] if inputs.recipe.evaluation.examples else [])
    missing = [p.name for p in files if not p.exists()]
    if missing:
        ledger.recomputed(what, f"its file {missing[0]} is missing")
        return None
    try:
        if path.with_suffix(".npz").exists():
            read_npz(path.with_suffix(".npz"), REDO_EVALUATION)  # every member's CRC checked
        samples = read_samples(samples_path(path))
        result = read_json(path, REDO_EVALUATION)
    except DamagedFileError as error:
        ledger.recomputed(what, f"{_name(error)} was damaged: {error.why}")
        return None
    why = restore_csv(samples_path(path), samples)
    if why is None:
        ledger.kept(what)
    else:
        ledger.warn(f"{what}: kept; {csv_path(samples_path(path)).name} written again from its npz ({why})")
    return result


def _name(error: DamagedFileError) -> str:
    """The damaged file's name (``its file`` when the error does not say)."""
    return error.path.name if error.path is not None else "its file"


def whole_test_accuracy(
    model: nn.Module, teacher: nn.Module, test: ArrayDataset, limit: int, result: dict[str, Any]
) -> dict[str, float]:
    """Teacher and student accuracy on the whole test split (``evaluation.max_samples`` limits the rest)."""
    from ..metrics import accuracy, predict

    if limit >= len(test):  # the evaluation sample is the whole split
        return {
            "teacher_accuracy_all": result["teacher_accuracy"],
            "student_accuracy_all": result["student_accuracy"],
            "test_samples_all": len(test),
        }
    return {
        "teacher_accuracy_all": accuracy(predict(teacher, test.x), test.y),
        "student_accuracy_all": accuracy(predict(model, test.x), test.y),
        "test_samples_all": len(test),
    }


def teacher_side(ledger: RunLedger, inputs: StudyInputs, teacher: nn.Module) -> TeacherSide:
    """The teacher's half of every evaluation: read back from ``evaluation/teacher_side`` while the teacher's
    weights, the test samples and the evaluation settings are unchanged, else computed and saved — so a
    later ``xdistill evaluate --student X`` reuses it too. ``teacher``: as the students see it."""
    from ..checkpoint import fingerprint
    from ..metrics import TeacherSide, compute_teacher_side

    _, test = inputs.student_splits
    limit = min(inputs.recipe.evaluation.max_samples or len(test), len(test))
    n = inputs.recipe.evaluation.examples
    config = alignment_config(inputs.recipe.evaluation)
    key = {
        "teacher": fingerprint(teacher),
        "test": test.fingerprint,
        "samples": limit,
        "examples": n,
        "alignment": dataclasses.asdict(config),
    }
    side = TeacherSide.load(ledger.paths.teacher_side, key)
    if side is not None:
        ledger.kept("evaluation of the teacher")
    else:
        why = _unusable(ledger.paths.teacher_side)
        if why is not None:
            ledger.recomputed("evaluation of the teacher", why)
        ledger.log(f"evaluate the teacher on {limit} held-out samples (once, for every student)")
        x, y = test.x[:limit], test.y[:limit]
        units = (2 + len(config.also)) * len(x)  # explanations (each explainer), deletion curve
        with progress_bar("evaluate the teacher", units, ledger.progress):
            side = compute_teacher_side(teacher, x, y, config)
        side.example_maps = torch.from_numpy(example_maps(teacher, x[:n], side.target[:n], config)) if n else None
        side.save(ledger.paths.teacher_side, key)
    return side


def _unusable(stem: Path) -> str | None:
    """Why a saved teacher side that :meth:`TeacherSide.load` did not return is not used: a file of it damaged or
    missing; None when there is none, or it was saved for another teacher, test split or settings."""
    files = [stem.with_suffix(".json"), stem.with_suffix(".npz")]
    if not any(p.exists() for p in files):
        return None
    missing = [p.name for p in files if not p.exists()]
    if missing:
        return f"its file {missing[0]} is missing"
    try:
        read_json(files[0])
        read_npz(files[1])
    except DamagedFileError as error:
        return f"{_name(error)} was damaged: {error.why}"
    return None


def example_maps(model: nn.Module, x: torch.Tensor, target: torch.Tensor, config: AlignmentConfig) -> np.ndarray:
    """Full attribution maps of a few samples, for the report's saliency figure."""
    from ..explain import explain

    return explain(model, x, target, method=config.explainer, **config.explainer_options).detach().numpy()
