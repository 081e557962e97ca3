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
from .synthetic import _motifs


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
    motifs = _motifs(n_classes, motif_length) * amplitude
    n = n_train + n_test
    y = rng.integers(0, n_classes, n)
    base = rng.normal(0.0, noise, (n, 1, length))
    evidence = np.zeros((n, length), dtype=np.float32)
    places = rng.integers(0, length - motif_length + 1, n)
    for i, (label, start) in enumerate(zip(y, places)):
        base[i, :, start : start + motif_length] += motifs[label]
        evidence[i, start : start + motif_length] = 1.0
    cue = cue_classes(y, cue_agreement, n_classes, rng)
    flipped = wrong_classes(y, n_classes, rng)
    x = _with_cues(base, cue, patterns, cue_start, cue_height)
    classes = [f"motif{c}" for c in range(n_classes)]
    info = {"cue_agreement": cue_agreement}
    full = ArrayDataset(x, y, classes, "shortcut_series", rationale=evidence, info=info)
    variants = {
        "flipped": (torch.as_tensor(_with_cues(base, flipped, patterns, cue_start, cue_height)).float(), flipped),
        "none": (torch.as_tensor(base).float(), np.full(n, -1)),
    }
    full.shortcut = Shortcut(
        torch.as_tensor(cue),
        torch.as_tensor(_cue_mask(cue, cue_start, cue_width, length)),
        {name: (x_, torch.as_tensor(c, dtype=torch.long)) for name, (x_, c) in variants.items()},
    )
    train, test = full.subset(np.arange(n_train)), full.subset(np.arange(n_train, n))
    train.shortcut.variants = {}  # the variants are test splits
    return Splits(train, test)
