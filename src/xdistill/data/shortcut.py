"""Generated data with a spurious cue beside the class evidence: does a student rely on the teacher's evidence, or
on a shortcut the teacher ignores?

The class evidence is the ``synthetic_*`` sets' (a class motif at a random place). Beside it sits a **cue**: a short
spike at a fixed time whose sign pattern names a class (a pattern, not a position, so that translation-invariant
models — an FCN with global pooling — can read it as easily as any other). In a split with ``cue_agreement`` a, the cue points to the label in a share a of
the samples and to a random other class in the rest; a = 1/K makes it carry no information (the teacher's data),
a = 0.95 makes it a strong shortcut (the students' transfer set), a = 1 is the anchor's fully biased case (Bassi,
Cavalli & Decherchi 2024, arXiv 2407.09788: colour = class in the transfer set).

The test split carries its variants (:class:`Shortcut`): ``flipped`` (the cue points to a wrong class in every
sample) and ``none`` (no cue); the test split itself is ``iid`` (the training split's agreement). Masks: the
evidence is the dataset's ``rationale``; the cue's is ``shortcut.cue_mask``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .dataset import ArrayDataset, Splits
from .registry import DATASETS
from .synthetic import glyph_images, motif_series


@dataclass
class Shortcut:
    """The cue of a split: the class it points to per sample (−1: none), where it sits, and the test variants
    (name -> (inputs, the class the cue points to))."""

    cue_class: torch.Tensor
    cue_mask: torch.Tensor
    variants: dict[str, tuple[torch.Tensor, torch.Tensor]]

    def subset(self, index: torch.Tensor) -> Shortcut:
        return Shortcut(
            self.cue_class[index],
            self.cue_mask[index],
            {name: (x[index], cue[index]) for name, (x, cue) in self.variants.items()},
        )


def cue_classes(y: np.ndarray, agreement: float, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """The class each sample's cue points to: its label with probability ``agreement``, else another class at
    random (``agreement = 1/K``: the cue is independent of the label)."""
    other = (y + rng.integers(1, n_classes, len(y))) % n_classes
    return np.where(rng.random(len(y)) < agreement, y, other)


def wrong_classes(y: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """A class other than the label for every sample (the ``flipped`` variant's cue)."""
    return (y + rng.integers(1, n_classes, len(y))) % n_classes


def cue_patterns(n_classes: int, width: int) -> np.ndarray:
    """(K, width) sign patterns, one per class: the bits of c + 1 as ±1 (distinct while K < 2**width)."""
    if n_classes >= 2**width:
        raise ValueError(f"cue_width {width} gives {2**width - 1} distinct patterns, fewer than {n_classes} classes")
    bits = (np.arange(1, n_classes + 1)[:, None] >> np.arange(width)[::-1]) & 1
    return 2.0 * bits - 1.0


def _with_cues(base: np.ndarray, classes: np.ndarray, patterns: np.ndarray, start: int, height: float) -> np.ndarray:
    """``base`` with each sample's cue (its class's pattern × ``height`` at ``start``; class −1: none)."""
    x = base.copy()
    width = patterns.shape[1]
    has = classes >= 0
    x[has, :, start : start + width] += height * patterns[classes[has]][:, None, :]
    return x


def _cue_mask(classes: np.ndarray, start: int, width: int, length: int) -> np.ndarray:
    mask = np.zeros((len(classes), length), dtype=np.float32)
    mask[classes >= 0, start : start + width] = 1.0
    return mask


@DATASETS.register("shortcut_series")
def make_shortcut_series(
    n_train: int = 600,
    n_test: int = 300,
    length: int = 96,
    n_classes: int = 4,
    motif_length: int = 16,
    noise: float = 0.3,
    amplitude: float = 1.5,
    cue_agreement: float = 0.95,
    cue_height: float = 2.0,
    cue_width: int = 3,
    cue_start: int = 2,
    seed: int = 0,
) -> Splits:
    """Series with a class motif at a random place (the evidence) and a cue at steps ``cue_start ..`` (a sign
    pattern × ``cue_height`` naming a class) that names the label in a share ``cue_agreement`` of the samples; test
    variants ``flipped`` and ``none``. The motif may overlap the cue's steps (it is placed anywhere)."""
    if not 0.0 <= cue_agreement <= 1.0:
        raise ValueError(f"cue_agreement must be in [0, 1], got {cue_agreement}")
    if cue_start + cue_width > length or motif_length > length:
        raise ValueError(
            f"length {length} is too short for the cue (steps {cue_start}..{cue_start + cue_width}) or the motif"
        )
    patterns = cue_patterns(n_classes, cue_width)
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y, base, evidence = motif_series(rng, n, n_classes, length, motif_length, noise, amplitude)
    cue = cue_classes(y, cue_agreement, n_classes, rng)
    flipped = wrong_classes(y, n_classes, rng)
    x = _with_cues(base, cue, patterns, cue_start, cue_height)
    classes = [f"motif{c}" for c in range(n_classes)]
    info = {"cue_agreement": cue_agreement}
    full = ArrayDataset(x, y, classes, "shortcut_series", rationale=evidence, info=info)
    variants = {
        "flipped": (_with_cues(base, flipped, patterns, cue_start, cue_height).astype(np.float32), flipped),
        "none": (base.astype(np.float32), np.full(n, -1)),
    }
    return _split_with_variants(full, n_train, cue, _cue_mask(cue, cue_start, cue_width, length), variants)


def _split_with_variants(
    full: ArrayDataset, n_train: int, cue: np.ndarray, cue_mask: np.ndarray, variants: dict[str, tuple]
) -> Splits:
    """Attach the cue to ``full`` and cut it into (train, test); only the test split keeps the variants."""
    full.shortcut = Shortcut(
        torch.as_tensor(cue),
        torch.as_tensor(cue_mask),
        {name: (torch.as_tensor(x), torch.as_tensor(c, dtype=torch.long)) for name, (x, c) in variants.items()},
    )
    n = len(full)
    train, test = full.subset(np.arange(n_train)), full.subset(np.arange(n_train, n))
    train.shortcut.variants = {}
    return Splits(train, test)


@DATASETS.register("shortcut_images")
def make_shortcut_images(
    n_train: int = 600,
    n_test: int = 300,
    size: int = 16,
    n_classes: int = 4,
    glyph_size: int = 4,
    noise: float = 0.3,
    cue_agreement: float = 0.95,
    cue_size: int = 2,
    cue_height: float = 2.0,
    seed: int = 0,
) -> Splits:
    """Noise images with a class glyph at a random place (the evidence, as ``synthetic_images``) and a
    ``cue_size`` × ``cue_size`` sign patch in the top-left corner naming a class (the cue)."""
    if not 0.0 <= cue_agreement <= 1.0:
        raise ValueError(f"cue_agreement must be in [0, 1], got {cue_agreement}")
    patterns = cue_patterns(n_classes, cue_size * cue_size).reshape(n_classes, cue_size, cue_size)
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y, base, evidence = glyph_images(rng, n, n_classes, size, glyph_size, noise)
    cue, flipped = cue_classes(y, cue_agreement, n_classes, rng), wrong_classes(y, n_classes, rng)

    def with_patch(classes: np.ndarray) -> np.ndarray:
        x = base.copy()
        has = classes >= 0
        x[has, 0, :cue_size, :cue_size] += cue_height * patterns[classes[has]]
        return x.astype(np.float32)

    mask = np.zeros((n, size, size), dtype=np.float32)
    mask[:, :cue_size, :cue_size] = 1.0
    classes = [f"glyph{c}" for c in range(n_classes)]
    full = ArrayDataset(with_patch(cue), y, classes, "shortcut_images", evidence, {"cue_agreement": cue_agreement})
    none = np.full(n, -1)
    return _split_with_variants(
        full, n_train, cue, mask, {"flipped": (with_patch(flipped), flipped), "none": (with_patch(none), none)}
    )


@DATASETS.register("shortcut_text")
def make_shortcut_text(
    n_train: int = 800,
    n_test: int = 400,
    length: int = 32,
    n_classes: int = 3,
    vocab_size: int = 200,
    phrase_length: int = 3,
    cue_agreement: float = 0.95,
    purity: float = 0.8,
    seed: int = 0,
) -> Splits:
    """Token sequences with a class key phrase at a random place (the evidence, as ``synthetic_text``) and, at the
    first position, a cue token naming a class. Each word of the phrase is its class's with probability ``purity``,
    else the same word of another class's phrase: the evidence names the label about as often as the series' motif
    does (at 0.8 the teacher, which learnt where the cue means nothing, is right on about 87%). With pure phrases the evidence is easier to read than the
    cue and no converged student takes the shortcut. Ids: phrases ``1 .. K·L``, cue tokens the next K, filler
    above."""
    if not 0.0 <= cue_agreement <= 1.0:
        raise ValueError(f"cue_agreement must be in [0, 1], got {cue_agreement}")
    if not 0.0 < purity <= 1.0:
        raise ValueError(f"purity must be in (0, 1], got {purity}")
    reserved = n_classes * (phrase_length + 1)
    if vocab_size <= reserved + 10 or phrase_length >= length:
        raise ValueError(f"vocab_size must exceed {reserved + 10} and phrase_length must be below length")
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = rng.integers(0, n_classes, n)
    base = rng.integers(reserved + 1, vocab_size, (n, length))
    evidence = np.zeros((n, length), dtype=np.float32)
    starts = rng.integers(1, length - phrase_length + 1, n)  # position 0 is the cue's
    words = np.where(rng.random((n, phrase_length)) < purity, y[:, None], _others(y, phrase_length, n_classes, rng))
    for i, start in enumerate(starts):
        base[i, start : start + phrase_length] = 1 + words[i] * phrase_length + np.arange(phrase_length)
        evidence[i, start : start + phrase_length] = 1.0
    cue, flipped = cue_classes(y, cue_agreement, n_classes, rng), wrong_classes(y, n_classes, rng)
    first_cue = n_classes * phrase_length + 1

    def with_token(classes: np.ndarray) -> np.ndarray:
        x = base.copy()
        has = classes >= 0
        x[has, 0] = first_cue + classes[has]
        return x

    mask = np.zeros((n, length), dtype=np.float32)
    mask[:, 0] = 1.0
    classes = [f"phrase{c}" for c in range(n_classes)]
    info = {"vocab_size": vocab_size, "cue_agreement": cue_agreement}
    full = ArrayDataset(with_token(cue), y, classes, "shortcut_text", evidence, info)
    none = np.full(n, -1)
    return _split_with_variants(
        full, n_train, cue, mask, {"flipped": (with_token(flipped), flipped), "none": (with_token(none), none)}
    )


def _others(y: np.ndarray, width: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """(len(y), width) classes drawn uniformly among those other than each row's label."""
    return (y[:, None] + rng.integers(1, n_classes, (len(y), width))) % n_classes


#: one colour per Fashion-MNIST class (RGB in [0, 1]), as distinct as ten can be
COLOURS = np.array(
    [
        [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 1.0],
        [0.0, 1.0, 1.0], [1.0, 0.5, 0.0], [0.5, 0.0, 1.0], [0.0, 0.5, 0.5], [0.6, 0.6, 0.6],
    ],
    dtype=np.float32,
)  # fmt: skip


@DATASETS.register("coloured_fashion_mnist")
def load_coloured_fashion_mnist(
    root: str | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
    cue_agreement: float = 1.0,
    seed: int = 0,
) -> Splits:
    """Fashion-MNIST (the Debian package's idx files) in the anchor's shape (Bassi et al. 2024's Coloured MNIST):
    each garment tinted with a colour that names a class — the label's in a share ``cue_agreement`` of the images
    (1.0: colour = class), another class's otherwise. Test variants: ``flipped`` (a wrong class's colour) and
    ``none`` (grey). Three channels, standardised with the training split's per-channel statistics."""
    from .images import load_fashion_mnist

    if not 0.0 <= cue_agreement <= 1.0:
        raise ValueError(f"cue_agreement must be in [0, 1], got {cue_agreement}")
    raw_train, raw_test = load_fashion_mnist(root, max_train, max_test, normalize=False)
    n_train = len(raw_train)
    gray = torch.cat([raw_train.x, raw_test.x]).numpy()  # (N, 1, 28, 28) in [0, 1]
    y = torch.cat([raw_train.y, raw_test.y]).numpy()
    rng = np.random.default_rng(seed)
    classes = len(raw_train.class_names)
    cue, flipped = cue_classes(y, cue_agreement, classes, rng), wrong_classes(y, classes, rng)

    def tinted(which: np.ndarray) -> np.ndarray:
        colour = np.where(which[:, None] >= 0, COLOURS[np.maximum(which, 0)], 0.6)  # -1: grey
        return gray * colour[:, :, None, None]

    x = tinted(cue)
    values = x[:n_train].astype(np.float64)
    mean = values.mean(axis=(0, 2, 3), keepdims=True).astype(np.float32)
    std = values.std(axis=(0, 2, 3), ddof=1, keepdims=True).astype(np.float32) + 1e-8
    standard = lambda v: ((v - mean) / std).astype(np.float32)  # noqa: E731
    info = {"pixel_mean": mean.flatten().tolist(), "pixel_std": std.flatten().tolist(), "cue_agreement": cue_agreement}
    full = ArrayDataset(standard(x), y, list(raw_train.class_names), "coloured_fashion_mnist", None, info)
    none = np.full(len(y), -1)
    mask = np.ones((len(y), 28, 28), dtype=np.float32)  # the colour is everywhere the garment is
    variants = {"flipped": (standard(tinted(flipped)), flipped), "none": (standard(tinted(none)), none)}
    return _split_with_variants(full, n_train, cue, mask, variants)
