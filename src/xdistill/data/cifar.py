"""CIFAR-10/100 from the standard python tarballs, read without executing pickle code.

The tarballs hold pickled dicts of numpy arrays. They are read with an unpickler that
only rebuilds plain containers and numpy arrays; any other global (a callable an attacker
could plant) is refused, so a tampered file cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import ArrayDataset, Splits
from .images import standardize_images
from .registry import DATASETS, cache_dir

SOURCES = {
    "cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
    "imdb": ("https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz", "7c2ac02c03563afcf9b574c7e56c153a"),
}
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")
        return super().find_class(module, name)


def safe_unpickle(data: bytes) -> dict:
    """Load a CIFAR batch dict; keys become str."""
    obj = _ArrayOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    if not isinstance(obj, dict):
        raise ValueError("a CIFAR batch file must hold a dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(kind: str, root: Path) -> Path:
    """Return the tarball for ``kind`` under ``root``, downloading it (md5-checked) if missing."""
    url, md5 = SOURCES[kind]
    path = root / url.rsplit("/", 1)[1]
    if path.exists():
        return path
    root.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    try:
        urllib.request.urlretrieve(url, partial)
    except OSError as error:
        raise FileNotFoundError(
            f"{path} is missing and could not be downloaded from {url} ({error}); "
            f"download it by hand into {root} or pass root="
        ) from error
    if _md5(partial) != md5:
        partial.unlink()
        raise ValueError(f"downloaded {url} has the wrong md5 checksum; try again")
    partial.rename(path)
    return path


def _labels_and_names(batches: list[dict], meta: dict, fine: bool) -> tuple[list, list[str]]:
    if "labels" in batches[0]:
        key, names = "labels", meta["label_names"]
    else:
        key, names = (
            ("fine_labels", meta["fine_label_names"]) if fine else ("coarse_labels", meta["coarse_label_names"])
        )
    labels = [label for batch in batches for label in batch[key]]
    return labels, [n.decode() if isinstance(n, bytes) else n for n in names]


def read_cifar_tarball(path: str | Path, fine: bool = True, name: str = "cifar") -> Splits:
    """Parse a cifar-10/100 python tarball into (N, 3, 32, 32) float32 images in [0, 1]."""
    with tarfile.open(path, "r:gz") as tar:
        files = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}

        def read(name: str) -> Any:
            member = tar.extractfile(files[name])
            if member is None:
                raise ValueError(f"{path}: {name} is not a regular file")
            return safe_unpickle(member.read())

        if "batches.meta" in files:
            meta, train_names, test_names = (
                read("batches.meta"),
                sorted(n for n in files if n.startswith("data_batch_")),
                ["test_batch"],
            )
        elif "meta" in files:
            meta, train_names, test_names = read("meta"), ["train"], ["test"]
        else:
            raise ValueError(f"{path} does not look like a CIFAR python tarball (no meta file)")
        splits = []
        for names in (train_names, test_names):
            batches = [read(n) for n in names]
            data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
            labels, classes = _labels_and_names(batches, meta, fine)
            x = data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
            splits.append(ArrayDataset(x, np.asarray(labels, dtype=np.int64), classes, name))
    return Splits(*splits)


@DATASETS.register("cifar10")
def load_cifar10(root: str | Path | None = None, normalize: bool = True) -> Splits:
    """CIFAR-10 (50k/10k): reads ``cifar-10-python.tar.gz`` from ``root`` (downloads when missing);
    standardised with the training set's channel mean/std unless ``normalize=False``."""
    splits = read_cifar_tarball(fetch("cifar10", Path(root or cache_dir() / "cifar")), name="cifar10")
    return standardize_images(splits) if normalize else splits


@DATASETS.register("cifar100")
def load_cifar100(root: str | Path | None = None, fine: bool = True, normalize: bool = True) -> Splits:
    """CIFAR-100 with fine (100) or coarse (20) labels, from ``cifar-100-python.tar.gz``."""
    splits = read_cifar_tarball(fetch("cifar100", Path(root or cache_dir() / "cifar")), fine=fine, name="cifar100")
    return standardize_images(splits) if normalize else splits
