"""Generated data whose class evidence sits at a known random place (ground-truth rationales)."""

from __future__ import annotations

import numpy as np

from .dataset import ArrayDataset, Splits
from .registry import DATASETS


def _motifs(n_classes: int, length: int) -> np.ndarray:
    """One distinct unit-amplitude shape per class: sine cycles of rising frequency, alternating sign."""
    t = np.linspace(0.0, 1.0, length)
    window = np.sin(np.pi * t)  # taper so the motif has no sharp edges
    shapes = [np.sin(2 * np.pi * (1 + c // 2) * t + (np.pi if c % 2 else 0.0)) * window for c in range(n_classes)]
    stacked = np.stack(shapes)
    return stacked / np.abs(stacked).max(1, keepdims=True)


def motif_series(
    rng: np.random.Generator,
    n: int,
    n_classes: int,
    length: int,
    motif_length: int,
    noise: float,
    amplitude: float,
    channels: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, Gaussian-noise series with the label's motif at a random start, the motifs' masks), drawn from
    ``rng`` in that order (``synthetic_series`` and ``shortcut_series`` share it)."""
    motifs = _motifs(n_classes, motif_length) * amplitude
    y = rng.integers(0, n_classes, n)
    x = rng.normal(0.0, noise, (n, channels, length))
    mask = np.zeros((n, length), dtype=np.float32)
    starts = rng.integers(0, length - motif_length + 1, n)
    for i, (label, start) in enumerate(zip(y, starts)):
        x[i, :, start : start + motif_length] += motifs[label]
        mask[i, start : start + motif_length] = 1.0
    return y, x, mask


def glyph_images(
    rng: np.random.Generator, n: int, n_classes: int, size: int, glyph_size: int, noise: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, noise images with the label's glyph at a random place, the glyphs' masks), drawn from ``rng``
    (``synthetic_images`` and ``shortcut_images`` share it)."""
    glyphs = _glyphs(n_classes, glyph_size, rng)
    y = rng.integers(0, n_classes, n)
    x = rng.normal(0.0, noise, (n, 1, size, size))
    mask = np.zeros((n, size, size), dtype=np.float32)
    rows = rng.integers(0, size - glyph_size + 1, n)
    cols = rng.integers(0, size - glyph_size + 1, n)
    for i in range(n):
        r, c = rows[i], cols[i]
        x[i, 0, r : r + glyph_size, c : c + glyph_size] += 2 * glyphs[y[i]] - 1
        mask[i, r : r + glyph_size, c : c + glyph_size] = 1.0
    return y, x, mask


@DATASETS.register("synthetic_series")
def make_synthetic_series(
    n_train: int = 600,
    n_test: int = 300,
    length: int = 96,
    n_classes: int = 4,
    motif_length: int = 16,
    channels: int = 1,
    noise: float = 0.3,
    amplitude: float = 1.5,
    seed: int = 0,
) -> Splits:
    """Gaussian-noise series with one class motif at a random start; the mask marks the motif.

    Only the motif carries class information, so a faithful explanation concentrates there.
    """
    if motif_length > length:
        raise ValueError(f"motif_length {motif_length} must not exceed length {length}")
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y, x, mask = motif_series(rng, n, n_classes, length, motif_length, noise, amplitude, channels)
    classes = [f"motif{c}" for c in range(n_classes)]
    full = ArrayDataset(x, y, classes, "synthetic_series", rationale=mask)
    return Splits(full.subset(np.arange(n_train)), full.subset(np.arange(n_train, n)))


def _glyphs(n_classes: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Distinct random binary glyphs (size x size), each with half its pixels on."""
    glyphs: list[np.ndarray] = []
    while len(glyphs) < n_classes:
        glyph = (rng.permutation(size * size) < (size * size) // 2).reshape(size, size).astype(np.float64)
        if all(np.abs(glyph - g).sum() >= size for g in glyphs):
            glyphs.append(glyph)
    return np.stack(glyphs)


@DATASETS.register("synthetic_images")
def make_synthetic_images(
    n_train: int = 600,
    n_test: int = 300,
    size: int = 16,
    n_classes: int = 4,
    glyph_size: int = 4,
    noise: float = 0.3,
    seed: int = 0,
) -> Splits:
    """Noise images (1 channel) with one class glyph at a random place; the mask marks the glyph."""
    if glyph_size > size:
        raise ValueError(f"glyph_size {glyph_size} must not exceed size {size}")
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y, x, mask = glyph_images(rng, n, n_classes, size, glyph_size, noise)
    classes = [f"glyph{c}" for c in range(n_classes)]
    full = ArrayDataset(x, y, classes, "synthetic_images", rationale=mask)
    return Splits(full.subset(np.arange(n_train)), full.subset(np.arange(n_train, n)))


@DATASETS.register("synthetic_text")
def make_synthetic_text(
    n_train: int = 800,
    n_test: int = 400,
    length: int = 32,
    n_classes: int = 3,
    vocab_size: int = 200,
    phrase_length: int = 3,
    seed: int = 0,
) -> Splits:
    """Token sequences (int64 ids) of random filler words with one class key phrase at a random place.

    Ids ``1 .. n_classes * phrase_length`` are the key phrases' words, never used as filler;
    id 0 is left free for padding. The mask marks the phrase's tokens.
    """
    reserved = n_classes * phrase_length
    if vocab_size <= reserved + 10 or phrase_length > length:
        raise ValueError(f"vocab_size must exceed {reserved + 10} and phrase_length must not exceed length")
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = rng.integers(0, n_classes, n)
    x = rng.integers(reserved + 1, vocab_size, (n, length))
    mask = np.zeros((n, length), dtype=np.float32)
    starts = rng.integers(0, length - phrase_length + 1, n)
    for i, (label, start) in enumerate(zip(y, starts)):
        x[i, start : start + phrase_length] = 1 + label * phrase_length + np.arange(phrase_length)
        mask[i, start : start + phrase_length] = 1.0
    classes = [f"phrase{c}" for c in range(n_classes)]
    full = ArrayDataset(x, y, classes, "synthetic_text", rationale=mask, info={"vocab_size": vocab_size})
    return Splits(full.subset(np.arange(n_train)), full.subset(np.arange(n_train, n)))
