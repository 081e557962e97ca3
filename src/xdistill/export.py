"""``xdistill export``: a trained student of a run directory as a file other tools load.

``pt2`` (default): a ``torch.export`` program with a dynamic batch dimension, checked by reloading it and
comparing its logits with the student's on test samples at another batch size; ``safetensors``: the weights and
a JSON beside them saying the architecture and options (``xdistill audit --student-weights`` reads them);
``onnx``: through ``torch.onnx.export`` (needs the ``onnx`` and ``onnxscript`` packages).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .errors import UserError
from .files import read_json, write_json
from .registry import Registry
from .rundir import RunDirectory

#: format name -> writer(model, example inputs, destination): how each format is written and checked
FORMATS: Registry[Callable[[nn.Module, torch.Tensor, Path], str]] = Registry("export format")
#: largest difference between the student's logits and the exported file's on the check samples
TOLERANCE = 1e-4


def export_student(
    run_dir: str | Path, student: str, fmt: str = "pt2", out: str | Path | None = None, seed: int | None = None
) -> tuple[Path, str]:
    """Write ``student`` of ``run_dir`` as ``fmt``; return the file and a line saying how it was checked."""
    from .recipe import Recipe, student_index
    from .study.inputs import StudyInputs
    from .study.training import read_back

    if fmt not in FORMATS:
        raise UserError(f"--format: {fmt!r} is not a format; choose one of {', '.join(FORMATS.names())}")
    writer = FORMATS.get(fmt)
    run = _seed_run(RunDirectory(run_dir), seed)
    recipe = Recipe.model_validate(read_json(run.recipe, "run the study again: xdistill run writes it"))
    specs = {s.name: s for s in recipe.expanded_students()}
    if student not in specs:
        raise UserError(f"--student: {student!r} is not a student of {run.root}; its students: {', '.join(specs)}")
    stages = read_json(run.stages) if run.stages.exists() else {}
    weights = run.student_dir(student) / "student.safetensors"
    if f"student:{student}" not in stages or not weights.exists():
        raise UserError(f"--student: {student} is not trained in {run.root} yet; run xdistill run (or distill) first")
    spec = specs[student]
    inputs = StudyInputs(recipe, run)
    model = inputs.build(f"students[{student_index(recipe, spec)}]", spec.model, spec.options, student=True)
    if read_back(model, weights) is not None:
        raise UserError(f"{weights} is damaged; run xdistill run again to rebuild it from its checkpoints")
    model.eval()
    destination = Path(out) if out else run.root / "export" / f"{run.student_dir(student).name}.{fmt}"
    destination.parent.mkdir(parents=True, exist_ok=True)
    test = inputs.student_splits[1]
    check = writer(model, test.x[:5], destination)
    if fmt == "safetensors":
        write_json(
            destination.with_suffix(".json"),
            {
                "model": spec.model,
                "options": spec.options,
                "num_classes": test.num_classes,
                "input_shape": list(test.x.shape[1:]),
            },
        )
    return destination, check


def _seed_run(run: RunDirectory, seed: int | None) -> RunDirectory:
    """The run directory of one seed of a several-seed study (its first seed unless ``seed`` says)."""
    if not run.recipe.exists():
        raise UserError(f"{run.root} is not a run directory (no recipe.json)")
    seeds = read_json(run.recipe).get("seeds")
    if not seeds:
        if seed is not None:
            raise UserError(f"--seed: {run.root} ran one seed; leave --seed out")
        return run
    if seed is not None and seed not in seeds:
        raise UserError(f"--seed: {seed} is not a seed of {run.root}; its seeds: {seeds}")
    return run.seed(seeds[0] if seed is None else seed)


def _compare(model: nn.Module, loaded: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, what: str) -> str:
    with torch.no_grad():
        difference = (model(x) - loaded(x)).abs().max().item()
    if difference > TOLERANCE:
        raise RuntimeError(f"the exported {what} gives other logits than the student (max difference {difference:.2g})")
    return f"checked: {what} reloaded, logits on {len(x)} test samples within {difference:.1g} of the student's"


@FORMATS.register("pt2")
def write_pt2(model: nn.Module, x: torch.Tensor, destination: Path) -> str:
    from .models.user import load_exported

    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (x[:2],), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(destination))
    return _compare(model, load_exported(destination), x, "torch.export program (dynamic batch)")


@FORMATS.register("safetensors")
def write_safetensors(model: nn.Module, x: torch.Tensor, destination: Path) -> str:
    import copy

    from .checkpoint import load_weights, save_weights

    save_weights(model, destination)
    twin = load_weights(copy.deepcopy(model), destination)
    return _compare(model, twin, x, "safetensors weights")


@FORMATS.register("onnx")
def write_onnx(model: nn.Module, x: torch.Tensor, destination: Path) -> str:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise UserError("--format onnx: needs the onnx and onnxscript packages (pip install onnx onnxscript)") from None
    torch.onnx.export(model, (x[:2],), str(destination), dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True)
    try:
        import onnxruntime
    except ImportError:
        return "written (not run: install onnxruntime to check it)"
    session = onnxruntime.InferenceSession(str(destination))
    name = session.get_inputs()[0].name
    return _compare(model, lambda t: torch.from_numpy(session.run(None, {name: t.numpy()})[0]), x, "ONNX model")


def describe(path: Path) -> str:
    """A line saying how to load an exported file."""
    if path.suffix == ".pt2":
        return f"load: torch.export.load({str(path)!r}).module(); or xdistill audit --student {path}"
    if path.suffix == ".safetensors":
        meta = json.loads(path.with_suffix(".json").read_text())
        options = json.dumps(meta["options"])
        return f"load: xdistill audit --student {meta['model']} --student-options '{options}' --student-weights {path}"
    return f"load: onnxruntime.InferenceSession({str(path)!r})"
