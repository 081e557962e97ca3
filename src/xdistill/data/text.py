"""Text: the IMDB movie-review archive (aclImdb folders) as token ids.

Tokenisation uses the ``bert`` predictor's tokenizer when a local model folder is given
(``tokenizer="path/to/bert"``, loaded offline by ``transformers``), otherwise a simple
word vocabulary built from the training reviews (id 0 = padding, 1 = unknown).
"""

from __future__ import annotations

import re
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np

from .dataset import ArrayDataset, Splits
from .registry import DATASETS, cache_dir

CLASSES = ["neg", "pos"]
_WORD = re.compile(r"[a-z0-9']+")


def read_aclimdb(root: str | Path, split: str, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """Reviews and labels (0 neg, 1 pos) of ``root/split/{neg,pos}/*.txt``, in a fixed (sorted) order.

    With ``limit``, the first ``limit // 2`` reviews of each class.
    """
    folder = Path(root) / split
    texts, labels = [], []
    for label, name in enumerate(CLASSES):
        files = sorted((folder / name).glob("*.txt"))
        if not files:
            raise FileNotFoundError(
                f"no reviews in {folder / name}: expected the aclImdb layout (aclImdb/{{train,test}}/{{neg,pos}}/*.txt)"
            )
        for path in files[: None if limit is None else max(1, limit // 2)]:
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
            labels.append(label)
    return texts, np.asarray(labels, dtype=np.int64)


def words(text: str) -> list[str]:
    """Lower-case word tokens, HTML line breaks removed."""
    return _WORD.findall(text.replace("<br />", " ").lower())


class WordVocabulary:
    """The ``size - 2`` most frequent training words (ties by first appearance); 0 pads, 1 is unknown."""

    def __init__(self, texts: list[str], size: int = 20000) -> None:
        counts = Counter(w for t in texts for w in words(t))
        self.index = {w: i + 2 for i, (w, _) in enumerate(counts.most_common(size - 2))}
        self.size = size

    def encode(self, texts: list[str], length: int) -> np.ndarray:
        out = np.zeros((len(texts), length), dtype=np.int64)
        for i, text in enumerate(texts):
            ids = [self.index.get(w, 1) for w in words(text)][:length]
            out[i, : len(ids)] = ids
        return out


def _bert_encode(folder: str, texts: list[str], length: int) -> tuple[np.ndarray, int]:
    try:
        from transformers import AutoTokenizer
    except ImportError as error:
        raise ValueError("tokenizer= needs the transformers package: pip install 'xdistill[text]'") from error
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    encoded = tokenizer(texts, truncation=True, max_length=length, padding="max_length", return_tensors="np")
    return encoded["input_ids"].astype(np.int64), int(tokenizer.vocab_size)


def _archive_root(root: Path) -> Path:
    """``root`` holding aclImdb/ (or being it); downloads and unpacks the archive when neither is there."""
    for candidate in (root / "aclImdb", root):
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    from .cifar import fetch

    archive = fetch("imdb", root)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(root, filter="data")  # the "data" filter refuses links and paths outside root
    return root / "aclImdb"


@DATASETS.register("imdb")
def load_imdb(
    root: str | Path | None = None,
    length: int = 256,
    vocab_size: int = 20000,
    tokenizer: str | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
) -> Splits:
    """IMDB reviews (25k/25k, binary sentiment) as (N, length) token ids; downloads the archive when missing."""
    folder = _archive_root(Path(root or cache_dir() / "imdb"))
    train_text, y_train = read_aclimdb(folder, "train", max_train)
    test_text, y_test = read_aclimdb(folder, "test", max_test)
    if tokenizer:
        x_train, vocab = _bert_encode(tokenizer, train_text, length)
        x_test, _ = _bert_encode(tokenizer, test_text, length)
    else:
        words_of = WordVocabulary(train_text, vocab_size)
        x_train, x_test, vocab = words_of.encode(train_text, length), words_of.encode(test_text, length), vocab_size
    info = {"vocab_size": vocab, "tokenizer": tokenizer or "words"}
    return Splits(
        ArrayDataset(x_train, y_train, list(CLASSES), "imdb", info=dict(info)),
        ArrayDataset(x_test, y_test, list(CLASSES), "imdb", info=dict(info)),
    )
