"""``xdistill export``: a trained student of a run directory as a file other tools load.

``pt2`` (default): a ``torch.export`` program with a dynamic batch dimension, checked by reloading it and
comparing its logits with the student's on test samples at another batch size; ``safetensors``: the weights and
a JSON beside them saying the architecture and options (``xdistill audit --student-weights`` reads them);
``onnx``: through ``torch.onnx.export`` (needs the ``onnx`` and ``onnxscript`` packages).

An exported program carries the input transform its study applied (:class:`Preprocessed`): the training set's
image or channel standardisation, each series' z-normalisation, a resampling to ``length``. Fed the raw inputs (as
in the data files), it gives the run's student's logits; the safetensors JSON names the transform.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
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
    data = destination.with_name(destination.name + ".data")
    data.unlink(missing_ok=True)  # an earlier export's: only a file this export writes is named below
    transform, raw, seen = preprocessing(recipe, inputs.student_splits[0])
    wrapped = Preprocessed(model, transform).eval()
    check = _raw_check(model, wrapped, seen, raw, transform) if raw is not None else ""
    if fmt == "safetensors":  # the bare weights (xdistill audit builds the architecture); the transform beside them
        check = writer(model, test.x[:5], destination)
        write_json(
            destination.with_suffix(".json"),
            {
                "model": spec.model,
                "options": spec.options,
                "num_classes": test.num_classes,
                "input_shape": list(test.x.shape[1:]),
                "preprocessing": transform,
            },
        )
    else:
        check = "; ".join(filter(None, [writer(wrapped, raw if raw is not None else test.x[:5], destination), check]))
        # the program applies the study's preprocessing itself: say so beside it (xdistill audit reads this)
        write_json(preprocessing_note(destination), {"preprocessing": transform, "inputs": "raw"})
    if fmt == "onnx" and data.exists():  # large weights go to a second file that must travel with the first
        check += f"; the weights are in a second file, {data} (keep it beside {destination.name})"
    return destination, check


def preprocessing_note(program: Path) -> Path:
    """``NAME.pt2`` -> ``NAME.pt2.json``: the note of the preprocessing an exported program applies itself."""
    return program.with_name(program.name + ".json")


def builtin_preprocessing(program: str | Path) -> dict | None:
    """The preprocessing an exported program applies to raw inputs, from its note (None: no note, or none)."""
    note = preprocessing_note(Path(program))
    if not note.exists():
        return None
    return read_json(note).get("preprocessing") or None


def _raw_check(model: nn.Module, wrapped: nn.Module, seen: torch.Tensor, raw: torch.Tensor, transform: dict) -> str:
    """The exported program fed raw test inputs against the run's student fed what the study gave it."""
    with torch.no_grad():
        difference = (model(seen) - wrapped(raw)).abs().max().item()
    what = {"image": "image standardisation", "series": "z-normalisation per series", "channel": "standardisation"}
    kind = what.get(transform["kind"], "no normalisation") + (" + resampling" if transform.get("length") else "")
    if difference > TOLERANCE:
        raise RuntimeError(
            f"the exported input transform ({kind}) does not reproduce the study's inputs ({difference:.2g})"
        )
    return f"raw inputs: {kind} inside; on {len(raw)} raw test samples within {difference:.1g} of the run's student"


class Preprocessed(nn.Module):
    """A student behind the input transform its study applied: raw inputs in, the run's student's logits out.
    ``transform``: ``kind`` (none, series, channel, image), ``mean``/``std`` (per channel) and ``length``."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: nn.Module, transform: dict):
        super().__init__()
        self.model, self.kind, self.length = model, transform["kind"], transform.get("length")
        shape = (1, -1) + (1,) * (2 if self.kind == "image" else 1)
        self.register_buffer("mean", torch.tensor(transform.get("mean", [0.0])).reshape(shape))
        self.register_buffer("std", torch.tensor(transform.get("std", [1.0])).reshape(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "series":  # each channel of each series on its own, as the loader does
            x = (x - x.mean(-1, keepdim=True)) / (x.std(-1, unbiased=False, keepdim=True) + 1e-8)
        elif self.kind in ("channel", "image"):
            x = (x - self.mean) / self.std
        if self.length is not None:
            x = nn.functional.interpolate(x, size=int(self.length), mode="linear", align_corners=True)
        return self.model(x)


def preprocessing(recipe, train) -> tuple[dict, torch.Tensor | None, torch.Tensor]:
    """The input transform the study's data went through (read from the loader's ``info`` and the recipe), the first
    raw test samples (None when the loader cannot give raw data) and the same samples as the student saw them."""
    from .data import load_dataset

    spec, info = recipe.dataset, train.info
    seen = load_dataset(spec.name, **spec.options)[1].x[:8]
    if "pixel_mean" in info:
        transform = {"kind": "image", "mean": info["pixel_mean"], "std": info["pixel_std"]}
        return transform, load_dataset(spec.name, **{**spec.options, "normalize": False})[1].x[:8], seen
    if info.get("normalize") not in ("series", "channel", "none"):
        return {"kind": "none"}, None, seen  # a loader without a normalisation: the inputs are used as read
    raw_train, raw_test = load_dataset(spec.name, **{**spec.options, "normalize": "none", "length": None})
    series: dict = {"kind": info["normalize"], "length": spec.options.get("length")}
    if info["normalize"] == "channel":  # the training set's statistics over each series' true length, as the loader
        values = raw_train.x.numpy().astype(np.float64)
        valid = np.arange(values.shape[-1])[None, None, :] < np.asarray(raw_train.info["lengths"])[:, None, None]
        values = np.where(valid, values, np.nan)
        series.update(
            mean=np.nanmean(values, axis=(0, 2)).tolist(), std=(np.nanstd(values, axis=(0, 2)) + 1e-8).tolist()
        )
    return series, raw_test.x[:8], seen


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


def _compare(
    model: nn.Module,
    loaded: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    what: str,
    raw: torch.Tensor | None = None,
) -> str:
    """``loaded`` fed ``raw`` (default ``x``) against ``model`` fed ``x``: the same logits, within TOLERANCE."""
    with torch.no_grad():
        difference = (model(x) - loaded(x if raw is None else raw)).abs().max().item()
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
        raise UserError(
            "--format onnx: needs the onnx and onnxscript packages: pip install 'xdistill[onnx]' (in a checkout: "
            ".venv/bin/pip install -e '.[onnx]')"
        ) from None
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
        return (
            f"load: torch.export.load({str(path)!r}).module(), fed raw inputs as in the data files; "
            f'or xdistill audit --student {path} --data-options \'{{"normalize": "none"}}\''
        )
    if path.suffix == ".safetensors":
        meta = json.loads(path.with_suffix(".json").read_text())
        options = json.dumps(meta["options"])
        return f"load: xdistill audit --student {meta['model']} --student-options '{options}' --student-weights {path}"
    return f"load: onnxruntime.InferenceSession({str(path)!r}), fed raw inputs as in the data files"
