"""Datasets: one in-memory type, loaders registered by name (``load_dataset("ucr:GunPoint")``)."""

from . import cifar, files, images, shortcut, synthetic, text, timeseries  # noqa: F401  (registers the loaders)
from .cifar import read_cifar_tarball, safe_unpickle
from .dataset import ArrayDataset, Splits, encode_labels, stratified_split
from .images import read_idx
from .registry import DATASETS, cache_dir, load_dataset
from .timeseries import aeon_shipped, pad_series

__all__ = [
    "ArrayDataset",
    "DATASETS",
    "Splits",
    "aeon_shipped",
    "cache_dir",
    "encode_labels",
    "load_dataset",
    "pad_series",
    "read_cifar_tarball",
    "read_idx",
    "safe_unpickle",
    "stratified_split",
]
