"""Text (aclImdb) and Retrieval (AAN TSV) readers on small fixtures in the real formats."""

import numpy as np
import pytest

from s5lra.data import DataError, load_task

REVIEWS = {
    ("train", "pos"): ["Great film, \u00e9l\u00e8ve loved it!", "Good <br />good."],
    ("train", "neg"): ["Bad.", "Awful \"acting\"\tand worse."],
    ("test", "pos"): ["Fine."],
    ("test", "neg"): ["Nope \u2603"],
}


@pytest.fixture
def imdb(tmp_path):
    root = tmp_path / "aclImdb"
    for (split, label), texts in REVIEWS.items():
        folder = root / split / label
        folder.mkdir(parents=True)
        for i, text in enumerate(texts):
            (folder / f"{i}_{7 if label == 'pos' else 2}.txt").write_text(text, encoding="utf-8")
    (root / "train" / "unsup").mkdir()
    (root / "train" / "unsup" / "0_0.txt").write_text("unlabelled, must be ignored")
    for extra in ("imdb.vocab", "imdbEr.txt", "README"):
        (root / extra).write_text("x")
    for extra in ("labeledBow.feat", "urls_pos.txt", "urls_neg.txt"):
        (root / "train" / extra).write_text("x")
    return tmp_path


def test_text_characters_labels_and_val_is_test(imdb):
    data = load_task("text", imdb, min_freq=1, max_len=12)
    train = data.splits["train"]
    assert len(train) == 4 and len(data.splits["test"]) == 2
    assert data.splits["val"] is data.splits["test"]
    assert train.labels.tolist() == [0, 0, 1, 1]  # neg then pos, files in name order
    texts = REVIEWS[("train", "neg")] + REVIEWS[("train", "pos")]
    for i, text in enumerate(texts):
        chars = list(text)[:11] + ["<eos>"]
        assert [data.vocab[t] for t in train.inputs[i, : train.lengths[i]]] == chars
    counts = {}
    for text in texts:
        for c in text[:11]:
            counts[c] = counts.get(c, 0) + 1
    assert data.vocab[3:] == sorted(counts, key=lambda c: (-counts[c], c))
    snowman = data.splits["test"]
    assert data.vocab[snowman.inputs[0, 5]] == "<unk>"  # not in the training text
    assert data.spec.vocab_size == len(data.vocab) and data.spec.seq_len == 12 and data.spec.n_classes == 2


def test_text_min_frequency_and_defaults(imdb):
    data = load_task("text", imdb)
    assert data.spec.seq_len == 4096
    assert data.vocab == ["<pad>", "<unk>", "<eos>"]  # nothing occurs 15 times in the fixture
    assert data.splits["train"].lengths[0] == len("Bad.") + 1
    assert set(data.splits["train"].inputs[0, :4].tolist()) == {1}


def test_text_bad_inputs(imdb):
    for f in (imdb / "aclImdb" / "test" / "pos").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"test/pos: empty source"):
        load_task("text", imdb)
    (imdb / "aclImdb" / "test" / "pos" / "3_9.txt").write_bytes(b"caf\xe9")
    with pytest.raises(DataError, match=r"3_9.txt: not valid UTF-8"):
        load_task("text", imdb)


AAN = {
    "train": ['1\tid1\tid2\tHe said "hi"\tA "quoted" reply', '0.0\tid3\tid4\tabc\tabcabc', '1.0\ti\tj\tb\tc'],
    "eval": ['0\tx\ty\tzz "\tq'],
    "test": ['1\tx\ty\t""\tabc'],
}


@pytest.fixture
def aan(tmp_path):
    folder = tmp_path / "lra_release" / "tsv_data"
    folder.mkdir(parents=True)
    for split, rows in AAN.items():
        (folder / f"new_aan_pairs.{split}.tsv").write_text("".join(r + "\n" for r in rows))
    return tmp_path, folder


def test_retrieval_pairs_with_literal_quotes(aan):
    root, _ = aan
    data = load_task("retrieval", root, max_len=6)
    assert data.spec.dual and data.spec.seq_len == 6 and data.spec.n_classes == 2
    train = data.splits["train"]
    assert train.inputs.shape == (3, 2, 6) and train.lengths.shape == (3, 2)
    assert train.labels.tolist() == [1, 0, 1] and data.splits["val"].labels.tolist() == [0]
    decode = lambda x, n: "".join(data.vocab[t] if t > 2 else "|" for t in x[:n])  # noqa: E731
    assert decode(train.inputs[0, 0], train.lengths[0, 0]) == 'He sa|'  # 5 chars + <eos>
    assert decode(train.inputs[0, 1], train.lengths[0, 1]) == 'A "qu|'
    assert train.lengths[2].tolist() == [2, 2]
    test = data.splits["test"]
    assert decode(test.inputs[0, 0], test.lengths[0, 0]) == '""|' and test.labels.tolist() == [1]
    # vocabulary from train text1 + text2 only: 'z' and 'q' (eval) are unknown
    assert "z" not in data.vocab and data.splits["val"].inputs[0, 0, 0] == 1


@pytest.mark.parametrize("row, message", [
    ("yes\ta\tb\tc\td", "new_aan_pairs.eval.tsv:2: label 'yes' is not a number"),
    ("1\ta\tb\tc", "new_aan_pairs.eval.tsv:2: expected 5 tab-separated columns, got 4"),
])
def test_retrieval_bad_rows(aan, row, message):
    root, folder = aan
    (folder / "new_aan_pairs.eval.tsv").write_text(AAN["eval"][0] + "\n" + row + "\n")
    with pytest.raises(DataError, match=message):
        load_task("retrieval", root)
    assert not any((root / "cache").iterdir())


def test_retrieval_found_under_s4_name(tmp_path):
    folder = tmp_path / "aan"
    folder.mkdir()
    for split, rows in AAN.items():
        (folder / f"new_aan_pairs.{split}.tsv").write_text("".join(r + "\n" for r in rows))
    data = load_task("retrieval", tmp_path)
    assert data.spec.seq_len == 4000 and data.splits["train"].inputs.dtype == np.uint8
