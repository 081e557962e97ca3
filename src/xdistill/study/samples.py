"""Per-sample results of an evaluation, on disk: one row per evaluated sample, loadable in pandas.

``evaluation/<student>.samples.csv`` holds the scalar columns (``pandas.read_csv``);
``evaluation/<student>.samples.npz`` holds the same columns plus the teacher's and the student's part
importances, the inputs they explain and how input positions map to parts (``numpy.load``, no pickle).

Bounded for large test splits: rows cover the evaluated samples only (``evaluation.max_samples``, default
500); part importances and inputs are kept for the first samples that fit in :data:`MAP_VALUES` values per
array (``kept`` says how many), so a file stays within a few MB whatever the data.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import atomic_write, read_npz, write_npz

#: the most values an array of maps or inputs keeps (float32: 8 MB)
MAP_VALUES = 2_000_000
#: the arrays of an npz that are not per-sample columns
ARRAYS = ("teacher_parts", "student_parts", "x", "part_of", "kept")


def csv_path(npz: Path) -> Path:
    """``<student>.samples.npz`` -> ``<student>.samples.csv``."""
    return npz.with_suffix(".csv")


def samples_path(evaluation_json: Path) -> Path:
    """``evaluation/<student>.json`` -> ``evaluation/<student>.samples.npz``."""
    return evaluation_json.with_suffix(".samples.npz")


def part_layout(x: torch.Tensor, parts: str, part_options: dict[str, Any]) -> np.ndarray | None:
    """For one input's positions (a series' steps, an image's pixels, flattened), the part each falls in; None
    where the input cannot be drawn over (tokens, features)."""
    from ..metrics.faithfulness import part_index

    options = {k: v for k, v in part_options.items() if k != "signed"}
    if not x.is_floating_point():
        return None
    try:
        index, _ = part_index(tuple(x.shape), parts, **options)
    except ValueError:
        return None
    return index.reshape(-1).numpy().astype(np.int32)


def write_samples(
    path: Path, columns: dict[str, torch.Tensor], x: torch.Tensor, parts: str, part_options: dict[str, Any]
) -> None:
    """The per-sample file of one student (``columns`` as :func:`~xdistill.metrics.evaluate_pair` fills them)."""
    table = {"sample": np.arange(len(x))}
    for name, values in columns.items():
        if name not in ("teacher_parts", "student_parts"):
            table[name] = values.detach().cpu().numpy()
    per_part = int(columns["teacher_parts"][0].numel()) if len(x) else 1
    kept = min(len(x), MAP_VALUES // max(1, per_part), MAP_VALUES // max(1, int(x[0].numel())) if len(x) else 0)
    arrays: dict[str, Any] = dict(table)
    arrays.update(
        teacher_parts=columns["teacher_parts"][:kept].float().numpy(),
        student_parts=columns["student_parts"][:kept].float().numpy(),
        x=x[:kept].float().numpy() if x.is_floating_point() else x[:kept].numpy(),
        kept=np.array(kept),
    )
    layout = part_layout(x[0], parts, part_options) if len(x) else None
    if layout is not None:
        arrays["part_of"] = layout
    write_npz(path, arrays)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(list(table))
    for row in zip(*table.values()):
        writer.writerow([_csv_value(v) for v in row])
    atomic_write(csv_path(path), text.getvalue().encode())


def _csv_value(value: Any) -> str:
    if isinstance(value, (np.floating, float)):
        return "" if np.isnan(value) else f"{float(value):.6g}"
    return str(value)


def read_samples(path: Path) -> dict[str, np.ndarray]:
    """A per-sample file as arrays (checked: content hash, CRC-32s)."""
    return read_npz(path, "run the study's xdistill run command again: a damaged evaluation is redone")


def columns_of(samples: dict[str, np.ndarray]) -> list[str]:
    """The per-sample columns of a file (not its maps or inputs)."""
    return [name for name in samples if name not in ARRAYS]
