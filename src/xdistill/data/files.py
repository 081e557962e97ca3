"""A user's own data from files, read without executing code.

* ``npz:PATH`` — arrays ``x_train, y_train, x_test, y_test`` (``allow_pickle=False``); series
  (N, T) or (N, C, T), images (N, H, W) or (N, C, H, W); integer labels 0..K-1.
* ``ts:PATH_TRAIN.ts`` / ``arff:PATH_TRAIN.arff`` — UCR/UEA files through aeon's readers; the
  test file is the same name with TRAIN replaced by TEST (or ``test=PATH``).
* ``csv:PATH_TRAIN.csv`` — one series per row, the label in column ``label_column``; the test
  file as above. Every other column is a time step.

* ``images:FOLDER`` — one sub-folder per class under ``FOLDER/train`` and ``FOLDER/test`` (the
  ImageFolder layout; ``test=PATH`` for another test folder), decoded by Pillow (present with
  matplotlib; decoding an image runs no code of the file's).

Series are normalised as UCR sets are (``normalize``: auto/series/channel/none), images with
the training set's channel mean/std.
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
    if path.is_dir():
        raise ValueError(f"{what} file {path} is a directory; give the file itself")
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"{what} file {path} is empty (0 bytes)")
    return path


def _integer_labels(y: np.ndarray, where: str) -> np.ndarray:
    if y.ndim != 1:
        raise ValueError(f"{where} must be one label per sample (shape (N,)), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.number) or (np.issubdtype(y.dtype, np.floating) and not np.all(y == np.round(y))):
        raise ValueError(
            f"{where} must hold integer class numbers 0..K-1, got {y.dtype} values such as {y[:3].tolist()}"
        )
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
    if not zipfile.is_zipfile(file):  # (never hand unknown bytes to np.load: it would try to unpickle them)
        raise ValueError(f"{file} is not an .npz archive (a zip of .npy arrays, as numpy.savez writes)")
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
        raise ValueError(
            f"{file}: x_train/y_train have {x_train.shape[0]}/{y_train.shape[0]} samples and "
            f"x_test/y_test {x_test.shape[0]}/{y_test.shape[0]}; they must match"
        )
    if x_train.shape[1:] != x_test.shape[1:] or x_train.ndim not in (2, 3, 4):
        raise ValueError(
            f"{file}: x_train {x_train.shape} and x_test {x_test.shape} must share a sample shape "
            "(T), (C, T), (H, W) or (C, H, W)"
        )
    if not np.issubdtype(x_train.dtype, np.number):
        raise ValueError(f"{file}: x_train must be numeric, got {x_train.dtype}")
    for split, array in (("x_train", x_train), ("x_test", x_test)):
        if array.shape[0] == 0:
            raise ValueError(f"{file}: {split} holds no samples")
        if array.size == 0:
            raise ValueError(f"{file}: {split} has an empty sample shape {array.shape[1:]}")
    from .timeseries import check_finite

    check_finite(x_train, f"npz:{file.name}", "training")
    check_finite(x_test, f"npz:{file.name}", "test")
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
    return series_splits(
        list(x_train.astype(np.float64)),
        y_train,
        list(x_test.astype(np.float64)),
        y_test,
        name,
        "none" if normalize is False else str(normalize),
        length,
    )


def _aeon_file(path: str, test: str | None, reader_name: str, normalize: str, length: int | None) -> Splits:
    import aeon.datasets

    reader = getattr(aeon.datasets, reader_name)
    splits = []
    for file in (_exists(Path(path), "training"), _exists(_test_path(Path(path), test), "test")):
        try:
            splits.append(reader(str(file)))
        except Exception as error:  # aeon raises IOError/ValueError/TsFileParseException for damaged files
            raise ValueError(
                f"{file} could not be read as a {file.suffix} file ({str(error).splitlines()[0]})"
            ) from None
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
            columns = list(reader.fieldnames or [])
            shown = ", ".join(columns[:5]) + (f", ... ({len(columns)} columns)" if len(columns) > 5 else "")
            raise ValueError(
                f"{path} has no column {label_column!r} (its columns: {shown or 'none'}); name the label column: in a "
                "recipe, dataset: {options: {label_column: NAME}}; on the command line, "
                '--data-options \'{"label_column": "NAME"}\''
            )
        series, labels = [], []
        for line, row in enumerate(reader, start=2):
            if None in row:  # more cells than the header names
                raise ValueError(
                    f"{path} line {line}: {len(reader.fieldnames) + len(row[None])} cells but the header "
                    f"names {len(reader.fieldnames)} columns"
                )
            labels.append(row.pop(label_column))
            values = list(row.items())
            filled = [i for i, (_, v) in enumerate(values) if v not in ("", None)]
            last = filled[-1] if filled else -1
            gaps = [column for i, (column, v) in enumerate(values) if i < last and v in ("", None)]
            if gaps:  # an empty cell inside a series would shift the rest of it one step to the left
                raise ValueError(
                    f"{path} line {line}, column {gaps[0]!r}: an empty cell inside the series; fill it "
                    "(a shorter series may only leave its last cells empty)"
                )
            try:
                series.append(np.array([float(v) for _, v in values[: last + 1]], dtype=np.float64)[None])
            except ValueError as error:
                raise ValueError(f"{path} line {line}: a non-numeric value in a time-step column ({error})") from None
            if series[-1].size == 0:
                raise ValueError(f"{path} line {line}: the series is empty")
    if not series:
        raise ValueError(f"{path} holds no rows")
    return series, labels


@DATASETS.register("csv")
def load_csv(
    path: str, test: str | None = None, label_column: str = "label", normalize: str = "auto", length: int | None = None
) -> Splits:
    """One univariate series per row, the label in ``label_column`` (any text; classes sorted)."""
    x_train, y_train = _read_csv(_exists(Path(path), "training"), label_column)
    x_test, y_test = _read_csv(_exists(_test_path(Path(path), test), "test"), label_column)
    return series_splits(x_train, y_train, x_test, y_test, f"csv:{Path(path).stem}", normalize, length)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


def _image_files(root: Path, classes: list[str] | None) -> tuple[list[Path], list[str]]:
    """(files, class name of each) of a folder with one sub-folder per class."""
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist (expected {root}/<class>/<image> files)")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise ValueError(f"{root} has no class sub-folders; put each class's images in {root}/<class name>/")
    if classes is not None and set(found) - set(classes):
        raise ValueError(
            f"{root} has class folder(s) {sorted(set(found) - set(classes))} that the training folder "
            f"lacks (training classes: {classes})"
        )
    files, labels = [], []
    for name in found:
        images = sorted(f for f in (root / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if classes is None and not images:
            raise ValueError(f"class folder {root / name} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        files += images
        labels += [name] * len(images)
    return files, labels


def _decode(files: list[Path], mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """(N, C, H, W) float32 in [0, 1]; every image converted to ``mode`` and, with ``size``, resized."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            "reading image folders needs Pillow (pip install pillow), or save the arrays to an .npz file"
        ) from None
    arrays: list[np.ndarray] = []
    for file in files:
        try:
            with Image.open(file) as opened:
                image = opened.convert(mode)
                if size is not None:
                    image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                array = np.asarray(image, dtype=np.float32) / 255.0
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise ValueError(f"{file} could not be read as an image ({error})") from None
        if arrays and array.shape != arrays[0].shape:
            raise ValueError(
                f"{file} is {array.shape[1]}x{array.shape[0]} pixels but {files[0]} is "
                f"{arrays[0].shape[1]}x{arrays[0].shape[0]}; pass size=[H, W] to resize them all"
            )
        arrays.append(array)
    stacked = np.stack(arrays)
    return stacked[:, None] if stacked.ndim == 3 else stacked.transpose(0, 3, 1, 2)


def _image_mode(files: list[Path]) -> str:
    """``L`` when every image is greyscale, else ``RGB``."""
    from PIL import Image

    for file in files:
        try:
            with Image.open(file) as image:
                if image.mode not in ("1", "L", "I", "I;16", "F", "LA"):
                    return "RGB"
        except OSError as error:
            raise ValueError(f"{file} could not be read as an image ({error})") from None
    return "L"


@DATASETS.register("images")
def load_image_folder(
    path: str,
    test: str | None = None,
    size: list[int] | tuple[int, int] | None = None,
    mode: str = "auto",
    normalize: bool = True,
) -> Splits:
    """Images in ``path/train/<class>/`` and ``path/test/<class>/`` (or ``test=PATH``) as (N, C, H, W).

    ``mode``: ``auto`` (greyscale if every image is, else RGB), ``L`` or ``RGB``; ``size=[H, W]``
    resizes (bilinear), otherwise every image must share one size. Classes are the sorted training
    folder names; the test folder may lack some of them but not add new ones.
    """
    if mode not in ("auto", "L", "RGB"):
        raise ValueError(f"mode must be 'auto', 'L' or 'RGB', got {mode!r}")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ValueError(f"size must be [height, width] with positive values, got {size}")
    root = Path(path)
    train_dir, test_dir = (root / "train", Path(test) if test else root / "test")
    if not train_dir.is_dir():
        raise FileNotFoundError(
            f"{train_dir} does not exist: an image folder needs train/<class>/ and test/<class>/ "
            "sub-folders (or pass test=PATH and point path at a folder with train/)"
        )
    train_files, train_labels = _image_files(train_dir, None)
    classes = sorted(set(train_labels))
    test_files, test_labels = _image_files(test_dir, classes)
    if not test_files:
        raise ValueError(f"{test_dir} holds no images")
    mode = _image_mode(train_files + test_files) if mode == "auto" else mode
    hw = (int(size[0]), int(size[1])) if size is not None else None
    x_train, x_test = _decode(train_files, mode, hw), _decode(test_files, mode, hw)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"test images are {x_test.shape[2]}x{x_test.shape[3]} but training images "
            f"{x_train.shape[2]}x{x_train.shape[3]}; pass size=[H, W] to resize them all"
        )
    index = {name: i for i, name in enumerate(classes)}
    name = f"images:{root.name}"
    splits = Splits(
        ArrayDataset(x_train, np.array([index[c] for c in train_labels]), classes, name),
        ArrayDataset(x_test, np.array([index[c] for c in test_labels]), classes, name),
    )
    return standardize_images(splits) if normalize else splits
