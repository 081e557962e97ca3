"""Image loaders: sklearn digits, Fashion-MNIST (Debian package idx files), CIFAR-10/100."""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import ArrayDataset, Splits, stratified_split
from .registry import DATASETS

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")


@DATASETS.register("digits")
def load_digits(test_fraction: float = 0.25, seed: int = 0) -> Splits:
    """sklearn's real 8x8 handwritten digits (1,797 images) as (N, 1, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = (bunch.images / 16.0)[:, None].astype(np.float32)
    train, test = stratified_split(test_fraction, bunch.target, seed)
    classes = [str(c) for c in bunch.target_names]
    full = ArrayDataset(x, bunch.target, classes, "digits")
    return Splits(full.subset(train), full.subset(test))


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or raw), as used by MNIST and Fashion-MNIST."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtypes: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX data type 0x{data[2]:02x}")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but the file holds {array.size} values")
    return array.reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}(.gz) not found in {root}; install the data with "
        "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or pass root=/path/to/idx/files "
        "(or set XDISTILL_FASHION_MNIST)"
    )


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(
    root: str | Path | None = None, max_train: int | None = None, max_test: int | None = None, normalize: bool = True
) -> Splits:
    """Real Fashion-MNIST (60k/10k, 28x28) as (N, 1, 28, 28), standardised with the training
    set's channel mean/std (``normalize=False``: raw values in [0, 1]).

    ``max_train``/``max_test`` keep the first n of each split (the files are class-mixed).
    """
    root = Path(root or os.environ.get("XDISTILL_FASHION_MNIST") or FASHION_MNIST_ROOT)
    splits = []
    for prefix, limit in (("train", max_train), ("t10k", max_test)):
        images = read_idx(_find(root, f"{prefix}-images-idx3-ubyte"))[:limit]
        labels = read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"))[:limit]
        x = (images.astype(np.float32) / 255.0)[:, None]
        splits.append(ArrayDataset(x, labels.astype(np.int64), list(FASHION_MNIST_CLASSES), "fashion_mnist"))
    return standardize_images(Splits(*splits)) if normalize else Splits(*splits)


def standardize_images(splits: Splits) -> Splits:
    """Both splits minus the training set's per-channel mean, over its std; the statistics go to ``info``
    (``info["pixel_mean"]``/``["pixel_std"]``) so a method can map back to the raw [0, 1] image space."""
    import torch

    train, test = splits
    dims = (0,) + tuple(range(2, train.x.ndim))
    # float64 numpy reductions (one fixed summation order), then float32: the same statistics, hence the same
    # inputs and dataset fingerprint, at any torch thread count (float32 torch reductions differ in the last bit)
    values = train.x.numpy().astype(np.float64)
    mean = torch.from_numpy(values.mean(axis=dims, keepdims=True).astype(np.float32))
    std = torch.from_numpy(values.std(axis=dims, ddof=1, keepdims=True).astype(np.float32)) + 1e-8
    info = {"pixel_mean": mean.flatten().tolist(), "pixel_std": std.flatten().tolist()}
    return Splits(
        *(ArrayDataset((d.x - mean) / std, d.y, d.class_names, d.name, d.rationale, {**d.info, **info}) for d in splits)
    )
