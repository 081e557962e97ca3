"""Per-sample results of an evaluation, on disk: one row per evaluated sample, loadable in pandas.

``evaluation/<student>.samples.csv`` holds the scalar columns (``pandas.read_csv``);
``evaluation/<student>.samples.npz`` holds the same columns plus the teacher's and the student's part
importances, the inputs they explain and how input positions map to parts (``numpy.load``, no pickle).

Bounded for large test splits: rows cover the evaluated samples only (``evaluation.max_samples``, default
500); part importances and inputs are kept for the first samples that fit in :data:`MAP_VALUES` values per
array (``kept`` says how many), so a file stays within a few MB whatever the data.

The CSV is derived from the npz, whose CRC-32s are checked on every read: the npz records the SHA-256 of the
CSV's bytes (``csv_sha256``), and :func:`check_csv` compares the CSV with it (and with the CSV the npz gives
today) before anything uses or links it. A damaged or missing CSV is written again from the npz
(:func:`restore_csv`); a damaged npz means the evaluation is redone.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import atomic_write, read_npz, sha256_of, write_npz

#: the most values an array of maps or inputs keeps (float32: 8 MB)
MAP_VALUES = 2_000_000
#: how a damaged evaluation file is rebuilt
REDO_EVALUATION = "run the study's xdistill run command again: a damaged evaluation is redone"
#: the npz member holding the SHA-256 of the CSV's bytes
CSV_HASH = "csv_sha256"
#: the arrays of an npz that are not per-sample columns
ARRAYS = ("teacher_parts", "student_parts", "x", "part_of", "kept", CSV_HASH)


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
    text = csv_bytes(table)
    arrays[CSV_HASH] = np.array(sha256_of(text))
    write_npz(path, arrays)  # first: a CSV left older than its npz is found by check_csv and written again
    atomic_write(csv_path(path), text)


def csv_bytes(table: dict[str, np.ndarray]) -> bytes:
    """The CSV of the per-sample columns, one row per sample (six significant digits, NaN as an empty cell)."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(list(table))
    for row in zip(*table.values()):
        writer.writerow([_csv_value(v) for v in row])
    return text.getvalue().encode()


def _csv_value(value: Any) -> str:
    if isinstance(value, (np.floating, float)):
        return "" if np.isnan(value) else f"{float(value):.6g}"
    return str(value)


def read_samples(path: Path) -> dict[str, np.ndarray]:
    """A per-sample file as arrays (checked: content hash, CRC-32s)."""
    return read_npz(path, REDO_EVALUATION)


def columns_of(samples: dict[str, np.ndarray]) -> list[str]:
    """The per-sample columns of a file (not its maps or inputs)."""
    return [name for name in samples if name not in ARRAYS]


def check_csv(path: Path, samples: dict[str, np.ndarray]) -> str | None:
    """What is wrong with the CSV beside the per-sample file ``path``, whose verified arrays are ``samples``; None
    when it is intact: its bytes match the hash the npz recorded, or the CSV the npz gives (an npz written before
    the hash was recorded)."""
    target = csv_path(path)
    if not target.exists():
        return "it is missing"
    data = target.read_bytes()
    if CSV_HASH in samples and sha256_of(data) == str(samples[CSV_HASH]):
        return None
    if data == csv_bytes({name: samples[name] for name in columns_of(samples)}):
        return None
    return f"its bytes do not match {path.name}, which it was written from"


def restore_csv(path: Path, samples: dict[str, np.ndarray]) -> str | None:
    """Check the CSV beside ``path`` (:func:`check_csv`) and write it again from ``samples`` where it is damaged or
    missing; return what was wrong (None: it was intact). Only the run directory's lock holder calls this."""
    why = check_csv(path, samples)
    if why is not None:
        atomic_write(csv_path(path), csv_bytes({name: samples[name] for name in columns_of(samples)}))
    return why
