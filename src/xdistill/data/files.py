"""A user's own data from files, read without executing code.

* ``npz:PATH`` — arrays ``x_train, y_train, x_test, y_test`` (``allow_pickle=False``); series
  (N, T) or (N, C, T), images (N, H, W) or (N, C, H, W); integer labels 0..K-1.
* ``ts:PATH_TRAIN.ts`` / ``arff:PATH_TRAIN.arff`` — UCR/UEA files through aeon's readers; the
  test file is the same name with TRAIN replaced by TEST (or ``test=PATH``).
* ``csv:PATH_TRAIN.csv`` — one series per row, the label in column ``label_column``; the test
  file as above. Every other column is a time step.

Series are normalised as UCR sets are (``normalize``: auto/series/channel/none), images with
the training set's channel mean/std. Image folders are not read: that needs Pillow, which
xdistill does not depend on — convert them to an .npz file.
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from .dataset import ArrayDataset, Splits
from .images import standardize_images
from .registry import DATASETS
from .timeseries import series_splits

NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def _test_path(train: Path, test: str | None) -> Path:
    if test:
        return Path(test)
    if "TRAIN" not in train.name and "train" not in train.name:
        raise ValueError(f"cannot guess the test file for {train}: name it *TRAIN* / *train* or pass test=PATH")
    return train.with_name(train.name.replace("TRAIN", "TEST").replace("train", "test"))


def _exists(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    return path


def _integer_labels(y: np.ndarray, where: str) -> np.ndarray:
    if y.ndim != 1:
        raise ValueError(f"{where} must be one label per sample (shape (N,)), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.number) or (np.issubdtype(y.dtype, np.floating) and not np.all(y == np.round(y))):
        raise ValueError(f"{where} must hold integer class numbers 0..K-1, got {y.dtype} values such as {y[:3].tolist()}")
    return y.astype(np.int64)


@DATASETS.register("npz")
def load_npz(path: str, kind: str = "auto", normalize: str | bool = "auto", length: int | None = None) -> Splits:
    """Train and test arrays from one ``.npz`` file (see the module docstring).

    ``kind``: ``series`` or ``image``; ``auto`` takes (N, C, H, W) as images and (N, T) or (N, C, T)
    as series (pass ``kind="image"`` for grayscale (N, H, W) images).
    """
    if kind not in ("auto", "series", "image"):
        raise ValueError(f"kind must be 'auto', 'series' or 'image', got {kind!r}")
    file = _exists(Path(path), "npz")
    try:
        with np.load(file, allow_pickle=False) as archive:
            missing = [k for k in NPZ_ARRAYS if k not in archive.files]
            if missing:
                raise ValueError(f"{file} lacks the array(s) {', '.join(missing)}; it needs {', '.join(NPZ_ARRAYS)}")
            arrays = {k: archive[k] for k in NPZ_ARRAYS}
    except ValueError as error:
        if "lacks the array" in str(error):
            raise
        raise ValueError(f"{file} is not a readable .npz of plain arrays ({error})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{file} is truncated or not an .npz file ({error})") from None
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    y_train, y_test = _integer_labels(arrays["y_train"], "y_train"), _integer_labels(arrays["y_test"], "y_test")
    if x_train.shape[0] != y_train.shape[0] or x_test.shape[0] != y_test.shape[0]:
        raise ValueError(f"{file}: x_train/y_train have {x_train.shape[0]}/{y_train.shape[0]} samples and "
                         f"x_test/y_test {x_test.shape[0]}/{y_test.shape[0]}; they must match")
    if x_train.shape[1:] != x_test.shape[1:] or x_train.ndim not in (2, 3, 4):
        raise ValueError(f"{file}: x_train {x_train.shape} and x_test {x_test.shape} must share a sample shape "
                         "(T), (C, T), (H, W) or (C, H, W)")
    if not np.issubdtype(x_train.dtype, np.number):
        raise ValueError(f"{file}: x_train must be numeric, got {x_train.dtype}")
    classes = [str(c) for c in range(int(max(y_train.max(), y_test.max())) + 1)]
    if y_train.min() < 0 or y_test.min() < 0:
        raise ValueError(f"{file}: labels must be 0..K-1, found negative values")
    name = f"npz:{file.name}"
    image = kind == "image" or (kind == "auto" and x_train.ndim == 4)
    if x_train.ndim == (3 if image else 2):  # add the channel axis
        x_train, x_test = x_train[:, None], x_test[:, None]
    if image:
        splits = Splits(ArrayDataset(x_train, y_train, classes, name), ArrayDataset(x_test, y_test, classes, name))
        return standardize_images(splits) if normalize else splits
    return series_splits(list(x_train.astype(np.float64)), y_train, list(x_test.astype(np.float64)), y_test, name,
                         "none" if normalize is False else normalize, length)


def _aeon_file(path: str, test: str | None, reader_name: str, normalize: str, length: int | None) -> Splits:
    import aeon.datasets

    reader = getattr(aeon.datasets, reader_name)
    splits = []
    for file in (_exists(Path(path), "training"), _exists(_test_path(Path(path), test), "test")):
        try:
            splits.append(reader(str(file)))
        except Exception as error:  # aeon raises IOError/ValueError/TsFileParseException for damaged files
            raise ValueError(f"{file} could not be read as a {file.suffix} file ({str(error).splitlines()[0]})") from None
    (x_train, y_train), (x_test, y_test) = splits
    return series_splits(list(x_train), y_train, list(x_test), y_test, f"file:{Path(path).stem}", normalize, length)


@DATASETS.register("ts")
def load_ts(path: str, test: str | None = None, normalize: str = "auto", length: int | None = None) -> Splits:
    """UCR/UEA ``.ts`` files (aeon's reader)."""
    return _aeon_file(path, test, "load_from_ts_file", normalize, length)


@DATASETS.register("arff")
def load_arff(path: str, test: str | None = None, normalize: str = "auto", length: int | None = None) -> Splits:
    """UCR/UEA ``.arff`` files (aeon's reader)."""
    return _aeon_file(path, test, "load_from_arff_file", normalize, length)


def _read_csv(path: Path, label_column: str) -> tuple[list[np.ndarray], list[str]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or label_column not in reader.fieldnames:
            raise ValueError(f"{path} has no column {label_column!r} (columns: {reader.fieldnames}); "
                             "pass label_column=NAME")
        series, labels = [], []
        for line, row in enumerate(reader, start=2):
            labels.append(row.pop(label_column))
            try:
                series.append(np.array([float(v) for v in row.values() if v not in ("", None)], dtype=np.float64)[None])
            except ValueError as error:
                raise ValueError(f"{path} line {line}: a non-numeric value in a time-step column ({error})") from None
    if not series:
        raise ValueError(f"{path} holds no rows")
    return series, labels


@DATASETS.register("csv")
def load_csv(path: str, test: str | None = None, label_column: str = "label", normalize: str = "auto",
             length: int | None = None) -> Splits:
    """One univariate series per row, the label in ``label_column`` (any text; classes sorted)."""
    x_train, y_train = _read_csv(_exists(Path(path), "training"), label_column)
    x_test, y_test = _read_csv(_exists(_test_path(Path(path), test), "test"), label_column)
    return series_splits(x_train, y_train, x_test, y_test, f"csv:{Path(path).stem}", normalize, length)
