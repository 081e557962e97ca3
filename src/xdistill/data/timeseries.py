"""Time-series loaders: aeon's UCR/UEA sets and MNIST-1D (generated offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dataset import ArrayDataset, Splits, encode_labels
from .registry import DATASETS, cache_dir


def aeon_shipped() -> list[str]:
    """Names of the UCR/UEA sets that ship inside the aeon package (no download).

    Found through the package's location, without importing aeon (that costs seconds)."""
    from importlib.util import find_spec

    spec = find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        return []
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    if not data.is_dir():
        return []
    return sorted(p.name for p in data.iterdir() if p.is_dir() and list(p.glob("*_TRAIN.*")))


def pad_series(series: list[np.ndarray], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stack (C, T_i) series into (N, C, T), zero-padding at the end; also return each T_i."""
    lengths = np.array([s.shape[-1] for s in series])
    length = length or int(lengths.max())
    out = np.zeros((len(series), series[0].shape[0], length), dtype=np.float64)
    for i, s in enumerate(series):
        n = min(length, s.shape[-1])
        out[i, :, :n] = s[:, :n]
    return out, lengths


@DATASETS.register("ucr")
def load_ucr(
    name: str = "GunPoint",
    normalize: str = "auto",
    root: str | Path | None = None,
    length: int | None = None,
    znorm: bool | None = None,
) -> Splits:
    """A UCR/UEA classification set through aeon: shipped ones load offline, others download.

    aeon's (N, C, T) float64 arrays become float32; string labels map to 0..K-1 (numeric
    order when they are numbers); variable-length series are zero-padded to the longest
    training or test series (``info["lengths"]`` keeps the true lengths).

    ``normalize``: ``"series"`` z-normalises every channel of every series on its own (the
    UCR archive's convention for univariate sets); ``"channel"`` z-normalises each channel
    with the training set's mean and std (keeps the channels' relative scale, which
    multivariate sets need); ``"none"``; ``"auto"`` = series for univariate, channel for
    multivariate sets. ``length`` linearly resamples every series to that many steps (the
    TSD paper uses 100). ``znorm=True`` is the old spelling of ``normalize="series"``.
    """
    if znorm is not None:
        normalize = "series" if znorm else "none"
    check_normalize(normalize)
    x_train, y_train, x_test, y_test = read_ucr(name, root)
    return series_splits(list(x_train), y_train, list(x_test), y_test, f"ucr:{name}", normalize, length)


def read_ucr(name: str, root: str | Path | None = None) -> tuple:
    """Raw (x_train, y_train, x_test, y_test) of a UCR/UEA set: aeon's shipped copy, then tslearn's cached
    copy (offline), then aeon's download into ``root``."""
    from aeon.datasets import load_classification

    if name not in aeon_shipped():
        cached = _tslearn_cached(name)
        if cached is not None:
            return cached
    extract = None if name in aeon_shipped() else str(Path(root or cache_dir() / "ucr"))
    kwargs = {"extract_path": extract} if extract else {}
    try:
        x_train, y_train = load_classification(name, split="train", **kwargs)
        x_test, y_test = load_classification(name, split="test", **kwargs)
    except (ValueError, OSError, ConnectionError) as error:
        shipped = ", ".join(aeon_shipped())
        raise ValueError(f"could not load UCR/UEA set {name!r} ({error}); sets available offline: {shipped}") from error
    return x_train, y_train, x_test, y_test


def _tslearn_cached(name: str) -> tuple | None:
    """A set that tslearn ships inside its package (e.g. Trace), as (N, C, T) arrays; None if unavailable."""
    try:
        from tslearn.datasets import CachedDatasets
    except ImportError:
        return None
    if name not in CachedDatasets().list_datasets():
        return None
    x_train, y_train, x_test, y_test = CachedDatasets().load_dataset(name)
    return x_train.transpose(0, 2, 1), y_train, x_test.transpose(0, 2, 1), y_test  # tslearn is (N, T, C)


def check_normalize(normalize: str) -> None:
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}; got {normalize!r}")


def series_splits(
    x_train: list[np.ndarray],
    y_train,
    x_test: list[np.ndarray],
    y_test,
    name: str,
    normalize: str = "auto",
    length: int | None = None,
) -> Splits:
    """(C, T_i) series and raw labels -> padded, normalised (see ``load_ucr``), optionally resampled splits."""
    check_normalize(normalize)
    for split, series in (("training", x_train), ("test", x_test)):
        if not len(series):
            raise ValueError(f"{name}: the {split} split holds no series")
        check_finite(series, name, split)
    padded = max(max(s.shape[-1] for s in x_train), max(s.shape[-1] for s in x_test))
    train_x, len_train = pad_series(list(x_train), padded)
    test_x, len_test = pad_series(list(x_test), padded)
    if normalize == "auto":
        normalize = "series" if train_x.shape[1] == 1 else "channel"
    if normalize == "series":
        train_x, test_x = _znorm(train_x, len_train), _znorm(test_x, len_test)
    elif normalize == "channel":
        train_x, test_x = channel_standardize(train_x, test_x, len_train, len_test)
    if length is not None:
        train_x, len_train = resample(train_x, len_train, length), np.full(len(train_x), length)
        test_x, len_test = resample(test_x, len_test, length), np.full(len(test_x), length)
    y_tr, classes = encode_labels(y_train)
    try:
        y_te, _ = encode_labels(y_test, classes)
    except ValueError as error:
        raise ValueError(f"{name}: test split: {error}") from None
    info = {"normalize": normalize}
    return Splits(
        ArrayDataset(train_x, y_tr, classes, name, info={"lengths": len_train.tolist(), **info}),
        ArrayDataset(test_x, y_te, classes, name, info={"lengths": len_test.tolist(), **info}),
    )


NORMALIZATIONS = ("auto", "series", "channel", "none")


def check_finite(samples, name: str, split: str) -> None:
    """Refuse NaN or infinite values before anything computes with them: the split, the count and the first index."""
    if isinstance(samples, np.ndarray):
        bad = np.flatnonzero(~np.isfinite(samples.reshape(len(samples), -1)).all(1)).tolist()
    else:
        bad = [i for i, s in enumerate(samples) if not np.isfinite(np.asarray(s, dtype=np.float64)).all()]
    if bad:
        raise ValueError(
            f"{name}: {len(bad)} {split} sample(s) hold NaN or infinite values (first: {split} sample "
            f"{bad[0]}); clean or impute them before training"
        )


def channel_standardize(
    x_train: np.ndarray, x_test: np.ndarray, train_lengths: np.ndarray, test_lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each channel minus the training set's channel mean, over its std; padding stays zero and is not counted."""

    def valid(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return (np.arange(x.shape[-1])[None, :] < np.asarray(lengths)[:, None])[:, None, :]  # (N, 1, T)

    values = np.where(valid(x_train, train_lengths), x_train, np.nan)
    mean = np.nanmean(values, axis=(0, 2), keepdims=True)
    std = np.nanstd(values, axis=(0, 2), keepdims=True) + 1e-8
    return (
        np.where(valid(x_train, train_lengths), (x_train - mean) / std, 0.0),
        np.where(valid(x_test, test_lengths), (x_test - mean) / std, 0.0),
    )


def resample(x: np.ndarray, lengths: np.ndarray, length: int) -> np.ndarray:
    """Linear interpolation of every series' true length onto ``length`` evenly spaced steps."""
    if length < 2:
        raise ValueError(f"length must be >= 2, got {length}")
    out = np.empty(x.shape[:2] + (length,), dtype=np.float64)
    grid = np.linspace(0.0, 1.0, length)
    for i, n in enumerate(lengths):
        source = np.linspace(0.0, 1.0, int(n))
        for c in range(x.shape[1]):
            out[i, c] = np.interp(grid, source, x[i, c, : int(n)])
    return out


def _znorm(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    for i, n in enumerate(lengths):
        part = x[i, :, :n]
        out[i, :, :n] = (part - part.mean(1, keepdims=True)) / (part.std(1, keepdims=True) + 1e-8)
    return out


@DATASETS.register("mnist1d")
def load_mnist1d(num_samples: int = 5000, seed: int = 42, train_split: float = 0.8) -> Splits:
    """MNIST-1D (Greydanus 2020), generated offline with ``mnist1d.data.make_dataset``."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = num_samples, seed, train_split
    data = make_dataset(args)
    classes = [str(i) for i in range(10)]
    return Splits(
        ArrayDataset(data["x"][:, None, :], data["y"], classes, "mnist1d"),
        ArrayDataset(data["x_test"][:, None, :], data["y_test"], classes, "mnist1d"),
    )
