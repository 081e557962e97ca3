"""The IMDB loader on a small aclImdb-shaped file tree, with the word vocabulary and a local BERT tokenizer."""

import pytest
import torch

from xdistill.data import load_dataset
from xdistill.data.text import WordVocabulary, words

REVIEWS = {
    ("train", "pos"): ["A wonderful film.<br /><br />Great acting!", "Great fun, great cast", "wonderful wonderful"],
    ("train", "neg"): ["Awful. Boring plot.", "boring and awful acting", "I hated it"],
    ("test", "pos"): ["great film", "wonderful"],
    ("test", "neg"): ["awful film", "zzzunseen words"],
}


@pytest.fixture
def aclimdb(tmp_path):
    for (split, label), texts in REVIEWS.items():
        folder = tmp_path / "aclImdb" / split / label
        folder.mkdir(parents=True)
        for i, text in enumerate(texts):
            (folder / f"{i}_{7 if label == 'pos' else 2}.txt").write_text(text)
    (tmp_path / "aclImdb" / "train" / "unsup").mkdir()  # present in the real archive, ignored
    return tmp_path


def test_word_vocabulary_loader_on_the_archive_layout(aclimdb):
    train, test = load_dataset("imdb", root=aclimdb, length=6, vocab_size=12)
    assert train.class_names == ["neg", "pos"] and train.x.dtype == torch.long
    assert train.x.shape == (6, 6) and test.x.shape == (4, 6)
    assert train.y.tolist() == [0, 0, 0, 1, 1, 1] and test.y.tolist() == [0, 0, 1, 1]
    assert words("A wonderful film.<br /><br />Great") == ["a", "wonderful", "film", "great"]
    vocab = WordVocabulary([t for k, v in REVIEWS.items() if k[0] == "train" for t in v], size=12)
    assert vocab.index["wonderful"] == 2 and vocab.index["great"] == 3  # most frequent first (ties: first seen)
    assert (vocab.index["acting"], vocab.index["awful"]) == (4, 5)  # 0 pads, 1 is unknown
    assert test.x[1].tolist() == [1, 1, 0, 0, 0, 0]  # unseen words -> 1, then padding
    assert train.info["vocab_size"] == 12 and int(train.x.max()) < 12
    few, _ = load_dataset("imdb", root=aclimdb, max_train=2, max_test=2)
    assert len(few) == 2 and few.y.tolist() == [0, 1]


def test_a_missing_class_folder_is_a_clear_error(tmp_path):
    (tmp_path / "aclImdb" / "train" / "pos").mkdir(parents=True)
    (tmp_path / "aclImdb" / "test").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no reviews in .*train/neg: expected the aclImdb layout"):
        load_dataset("imdb", root=tmp_path)


def test_a_local_bert_tokenizer_folder_is_used_offline(aclimdb, tmp_path):
    transformers = pytest.importorskip("transformers")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "great", "film", "awful", "wonderful"]))
    folder = tmp_path / "tok"
    transformers.BertTokenizer(str(vocab)).save_pretrained(str(folder))
    train, test = load_dataset("imdb", root=aclimdb, length=5, tokenizer=str(folder))
    assert test.x[0].tolist() == [2, 7, 6, 3, 0]  # [CLS] awful film [SEP] [PAD]
    assert train.info["tokenizer"] == str(folder) and train.info["vocab_size"] == 9
