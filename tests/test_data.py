import gzip
import io
import pickle
import struct
import tarfile

import numpy as np
import pytest
import torch

from xdistill.data import (
    ArrayDataset,
    encode_labels,
    load_dataset,
    pad_series,
    read_cifar_tarball,
    read_idx,
    safe_unpickle,
    stratified_split,
)
from xdistill.registry import UnknownNameError


def test_gunpoint_from_aeon_is_real_and_mapped():
    train, test = load_dataset("ucr:GunPoint")
    assert (len(train), len(test)) == (50, 150)
    assert train.input_shape == (1, 150) and train.x.dtype == torch.float32
    assert train.class_names == ["1", "2"] and set(train.y.tolist()) == {0, 1}
    assert train.fingerprint != test.fingerprint and len(train.fingerprint) == 16


def test_variable_length_set_is_padded_and_lengths_kept():
    train, test = load_dataset("ucr:JapaneseVowels")
    lengths = train.info["lengths"]
    assert train.input_shape[0] == 12 and min(lengths) < max(lengths) <= train.input_shape[1]
    short = int(np.argmin(lengths))
    assert torch.all(train.x[short, :, lengths[short] :] == 0)
    assert test.input_shape == train.input_shape


def test_multivariate_and_unknown_set():
    train, _ = load_dataset("ucr:BasicMotions", znorm=True)
    assert train.input_shape == (6, 100)
    assert torch.allclose(train.x.mean(-1), torch.zeros(1), atol=1e-4)
    with pytest.raises(UnknownNameError, match="ucr"):
        load_dataset("nope")


def test_encode_labels_numeric_order_and_unknown_label():
    y, classes = encode_labels(np.array(["10", "2", "2", "1"]))
    assert classes == ["1", "2", "10"] and y.tolist() == [2, 1, 1, 0]
    with pytest.raises(ValueError, match="not among the training classes"):
        encode_labels(np.array(["3"]), classes)


def test_pad_series():
    out, lengths = pad_series([np.ones((2, 3)), np.ones((2, 5))])
    assert out.shape == (2, 2, 5) and lengths.tolist() == [3, 5] and out[0, :, 3:].sum() == 0


def test_mnist1d_generated_offline():
    train, test = load_dataset("mnist1d", num_samples=500)
    assert (len(train), len(test)) == (400, 100) and train.input_shape == (1, 40) and train.num_classes == 10


def test_digits_split_is_stratified_and_deterministic():
    train, test = load_dataset("digits")
    assert len(train) + len(test) == 1797 and train.input_shape == (1, 8, 8)
    assert train.x.max() <= 1.0 and torch.bincount(test.y).min() >= 40
    assert load_dataset("digits")[1].fingerprint == test.fingerprint


def test_stratified_split_fractions():
    y = np.repeat([0, 1], [80, 20])
    train, test = stratified_split(0.25, y, seed=1)
    assert len(test) == 25 and (y[test] == 1).sum() == 5 and not set(train) & set(test)


def _write_idx(path, array, code):
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes())


def test_fashion_mnist_idx_reader_on_small_files(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 5)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), 0x08)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8), 0x08)
    train, test = load_dataset("fashion_mnist", root=tmp_path, max_train=10, normalize=False)
    assert len(train) == 10 and len(test) == 5 and train.input_shape == (1, 28, 28)
    raw = read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    assert torch.allclose(train.x[3, 0], torch.from_numpy(raw[3] / 255.0).float())


def test_fashion_mnist_missing_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist", root=tmp_path)


def test_real_fashion_mnist_when_installed():
    from xdistill.data.images import FASHION_MNIST_ROOT

    if not FASHION_MNIST_ROOT.exists():
        pytest.skip("Debian package dataset-fashion-mnist not installed")
    train, test = load_dataset("fashion_mnist", max_test=100)
    assert len(train) == 60000 and len(test) == 100 and train.class_names[9] == "Ankle boot"


def _cifar_like_tarball(path, kind):
    rng = np.random.default_rng(0)

    def batch(n, labels):
        return pickle.dumps({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), **labels}, protocol=2)

    with tarfile.open(path, "w:gz") as tar:

        def add(name, payload):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))

        if kind == "cifar10":
            add(
                "cifar-10-batches-py/batches.meta",
                pickle.dumps({b"label_names": [b"airplane", b"automobile", b"bird"]}, protocol=2),
            )
            for i in (1, 2):
                add(f"cifar-10-batches-py/data_batch_{i}", batch(4, {b"labels": [0, 1, 2, 1]}))
            add("cifar-10-batches-py/test_batch", batch(3, {b"labels": [2, 2, 0]}))
        else:
            meta = {b"fine_label_names": [b"apple", b"bee"], b"coarse_label_names": [b"fruit", b"insect"]}
            add("cifar-100-python/meta", pickle.dumps(meta, protocol=2))
            add("cifar-100-python/train", batch(4, {b"fine_labels": [0, 1, 1, 0], b"coarse_labels": [0, 1, 1, 0]}))
            add("cifar-100-python/test", batch(2, {b"fine_labels": [1, 0], b"coarse_labels": [1, 0]}))


def test_cifar10_tarball_reader(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    _cifar_like_tarball(path, "cifar10")
    train, test = load_dataset("cifar10", root=tmp_path, normalize=False)  # present: no download attempted
    assert len(train) == 8 and len(test) == 3 and train.input_shape == (3, 32, 32)
    assert train.class_names == ["airplane", "automobile", "bird"] and test.y.tolist() == [2, 2, 0]
    assert 0.0 <= train.x.min() and train.x.max() <= 1.0


def test_cifar100_fine_and_coarse(tmp_path):
    path = tmp_path / "cifar-100-python.tar.gz"
    _cifar_like_tarball(path, "cifar100")
    fine = read_cifar_tarball(path)
    coarse = read_cifar_tarball(path, fine=False)
    assert fine[0].class_names == ["apple", "bee"] and coarse[0].class_names == ["fruit", "insect"]
    assert len(fine.train) == 4 and fine.test.y.tolist() == [1, 0]


def test_cifar_reader_refuses_code_in_pickles():
    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        safe_unpickle(pickle.dumps({b"data": Evil()}, protocol=2))


@pytest.mark.parametrize("name", ["synthetic_series", "synthetic_images"])
def test_synthetic_sets_carry_rationales_at_the_evidence(name):
    train, test = load_dataset(name, n_train=50, n_test=10, seed=3)
    x, y, mask = train[0]
    assert mask.shape == x.shape[1:] and mask.sum() > 0
    # outside the mask only noise: its mean magnitude is far below the evidence's
    inside = train.x[:, 0][train.rationale.bool()].abs().mean()
    outside = train.x[:, 0][~train.rationale.bool()].abs().mean()
    assert inside > 2 * outside
    assert load_dataset(name, n_train=50, n_test=10, seed=3).train.fingerprint == train.fingerprint
    assert load_dataset(name, n_train=50, n_test=10, seed=4).train.fingerprint != train.fingerprint


def test_dataset_validation_names_the_problem():
    with pytest.raises(ValueError, match="labels must lie in"):
        ArrayDataset(torch.zeros(3, 2), torch.tensor([0, 1, 5]), ["a", "b"], "bad")


def test_image_standardisation_does_not_depend_on_the_thread_count():
    """The statistics (hence the inputs and the dataset fingerprint that stores and caches are keyed by) are the
    same at one and two torch threads: float32 reductions differ in the last bit between the two."""
    from xdistill.data.dataset import Splits
    from xdistill.data.images import standardize_images

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (20000, 1, 28, 28), dtype=np.uint8).astype(np.float32) / 255
    labels, classes = rng.integers(0, 10, 20000), [str(c) for c in range(10)]
    raw = Splits(
        ArrayDataset(pixels, labels, classes, "images"), ArrayDataset(pixels[:10], labels[:10], classes, "images")
    )
    threads = torch.get_num_threads()
    found = {}
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            train, _ = standardize_images(raw)
            found[count] = (train.fingerprint, train.info["pixel_mean"], train.info["pixel_std"])
    finally:
        torch.set_num_threads(threads)
    assert found[1] == found[2]
    assert abs(found[1][1][0] - float(pixels.mean(dtype=np.float64))) < 1e-7
