"""What identifies a task's data: fingerprints and their differences, a run's own vocabulary, truncation counts,
and that nothing is generated unless asked for."""

import json
import os
from collections import Counter

import pytest

from s5lra.data import DataError, fingerprint_changes, load_task
from s5lra.data.vocab import build_vocab

TRAIN = ["( ( ( [MAX 2 ) 9 ) ] )\t9", "( ( ( [SM 5 ) 7 ) ] )\t2", "( ( [MIN 3 ) ] )\t3",
         "( ( ( ( [MAX 2 ) 9 ) 4 ) ] )\t9"]


def write_listops(root, train=TRAIN, val=("( ( ( [MED 1 ) 4 ) ] )\t2",), test=("( ( [MIN 3 ) ] )\t3",)):
    folder = root / "listops-1000"
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("val", val), ("test", test)):
        (folder / f"basic_{split}.tsv").write_text("Source\tTarget\n" + "".join(r + "\n" for r in rows))
    return folder


def test_fingerprint_is_json_and_names_settings_sources_and_splits(tmp_path):
    folder = write_listops(tmp_path)
    data = load_task("listops", tmp_path)
    fp = json.loads(json.dumps(data.fingerprint))
    assert fp == data.fingerprint and fp["task"] == "listops" and fp["settings"]["max_len"] == 2048
    assert fp["cache_key"] in data.cache_dir.name and fp["splits"] == {"train": 4, "val": 1, "test": 1}
    import hashlib
    train = next(s for s in fp["sources"] if s["path"].endswith("basic_train.tsv"))
    assert train["sha256"] == hashlib.sha256((folder / "basic_train.tsv").read_bytes()).hexdigest()
    assert train["bytes"] == (folder / "basic_train.tsv").stat().st_size and "mtime_ns" not in train
    # the content hash is stored at build time: a second load does not change it, only touching does not either
    os.utime(folder / "basic_val.tsv", ns=(5, 5))
    assert load_task("listops", tmp_path).fingerprint == fp
    assert fingerprint_changes(fp, load_task("listops", tmp_path).fingerprint) == []


def test_fingerprint_changes_are_readable(tmp_path):
    write_listops(tmp_path)
    before = load_task("listops", tmp_path).fingerprint
    shorter = load_task("listops", tmp_path, max_len=100).fingerprint
    assert fingerprint_changes(before, shorter) == ["setting max_len: 2048 -> 100"]
    write_listops(tmp_path, train=TRAIN[:3])
    changes = fingerprint_changes(before, load_task("listops", tmp_path).fingerprint)
    assert "split train: 4 examples -> 3 examples" in changes
    assert any(c.startswith("source listops-1000/basic_train.tsv: content (SHA-256) ") for c in changes)
    assert any(c.startswith("source listops-1000/basic_train.tsv: size in bytes ") for c in changes)
    assert any(c.startswith("vocabulary: ") for c in changes)  # "4" left the training split
    assert fingerprint_changes({**before, "sources": before["sources"][1:]}, before) == [
        f"source {before['sources'][0]['path']}: added"]


def test_vocabulary_order_is_by_count_then_symbol_whatever_the_input_order():
    counts = Counter({"b": 2, "a": 2, "c": 5, "d": 1})
    assert build_vocab(counts)[3:] == ["c", "a", "b", "d"]
    assert build_vocab(Counter(dict(reversed(list(counts.items())))))[3:] == ["c", "a", "b", "d"]


def test_a_runs_own_vocabulary_keeps_its_ids(tmp_path):
    write_listops(tmp_path)
    original = load_task("listops", tmp_path)
    # the data changes so that its own vocabulary would order the symbols differently
    write_listops(tmp_path, train=TRAIN + ["( ( ( [MIN 3 ) 3 ) ] )\t3"] * 3)
    rebuilt = load_task("listops", tmp_path)
    assert rebuilt.vocab != original.vocab and sorted(rebuilt.vocab) == sorted(original.vocab)
    kept = load_task("listops", tmp_path, vocab=original.vocab)
    assert kept.vocab == original.vocab and kept.cache_dir != rebuilt.cache_dir
    ids = {s: i for i, s in enumerate(original.vocab)}
    assert kept.splits["train"].inputs[4, :4].tolist() == [ids["[MIN"], ids["3"], ids["3"], ids["X"]]
    # the same vocabulary as the data's own: the ordinary cache, no second build
    assert load_task("listops", tmp_path, vocab=rebuilt.vocab).cache_dir == rebuilt.cache_dir


def test_a_training_token_missing_from_the_given_vocabulary_names_file_line_and_token(tmp_path):
    folder = write_listops(tmp_path)
    vocab = [s for s in load_task("listops", tmp_path).vocab if s != "[SM"]
    with pytest.raises(DataError) as err:
        load_task("listops", tmp_path, vocab=vocab)
    assert f"{folder / 'basic_train.tsv'}:3: token '[SM' is not in the given vocabulary" in str(err.value)
    with pytest.raises(DataError, match="starting with"):
        load_task("listops", tmp_path, vocab=["a", "b"])


def test_text_given_vocabulary_rare_characters_are_unk_frequent_ones_must_be_there(tmp_path):
    for split, label, text in (("train", "pos", "aaab\nxyz"), ("train", "neg", "aab"), ("test", "pos", "ab"),
                               ("test", "neg", "b")):
        (tmp_path / "aclImdb" / split / label).mkdir(parents=True)
        (tmp_path / "aclImdb" / split / label / "0_1.txt").write_text(text)
    own = load_task("text", tmp_path, min_freq=2)
    assert own.vocab == ["<pad>", "<unk>", "<eos>", "a", "b"]
    with pytest.raises(DataError, match=r"neg/0_1.txt:1: token 'a' is not in the given vocabulary"):
        load_task("text", tmp_path, min_freq=2, vocab=["<pad>", "<unk>", "<eos>", "b"])
    swapped = load_task("text", tmp_path, min_freq=2, vocab=["<pad>", "<unk>", "<eos>", "b", "a"])
    assert swapped.splits["train"].inputs[0, :4].tolist() == [4, 4, 3, 2]  # neg "aab": a=4, b=3, <eos>
    assert swapped.splits["train"].inputs[1, 4:8].tolist() == [1, 1, 1, 1]  # "\nxyz" occur once: <unk>


def test_truncation_is_counted_per_split(tmp_path):
    write_listops(tmp_path)
    full = load_task("listops", tmp_path)
    assert full.truncation == {"train": {"truncated": 0, "longest": 6}, "val": {"truncated": 0, "longest": 5},
                               "test": {"truncated": 0, "longest": 4}}
    short = load_task("listops", tmp_path, max_len=5)  # 4 tokens + <eos>: the 5-token example is cut
    assert short.truncation["train"] == {"truncated": 1, "longest": 6}
    assert short.splits["train"].lengths.max() == 5


def test_text_and_retrieval_truncation(tmp_path):
    for split, label, text in (("train", "pos", "abcdefgh"), ("train", "neg", "ab"), ("test", "pos", "abc"),
                               ("test", "neg", "abcdef")):
        (tmp_path / "aclImdb" / split / label).mkdir(parents=True)
        (tmp_path / "aclImdb" / split / label / "0_1.txt").write_text(text)
    text = load_task("text", tmp_path, min_freq=1, max_len=5)
    assert text.truncation["train"] == {"truncated": 1, "longest": 9}
    assert text.truncation["val"] == text.truncation["test"] == {"truncated": 1, "longest": 7}
    folder = tmp_path / "tsv_data"
    folder.mkdir()
    for split, rows in (("train", ["1\ta\tb\tabcdef\tab", "0\ta\tb\tab\tab"]), ("eval", ["0\ta\tb\tab\tab"]),
                        ("test", ["1\ta\tb\tab\tabcdefgh"])):
        (folder / f"new_aan_pairs.{split}.tsv").write_text("".join(r + "\n" for r in rows))
    aan = load_task("retrieval", tmp_path, max_len=4)
    assert aan.truncation == {"train": {"truncated": 1, "longest": 7}, "val": {"truncated": 0, "longest": 3},
                              "test": {"truncated": 1, "longest": 9}}


def test_image_tasks_report_no_truncation_and_refuse_a_vocabulary(tmp_path):
    from test_data_image_pathfinder import write_pathfinder

    write_pathfinder(tmp_path)
    data = load_task("pathfinder", tmp_path, workers=1)
    assert data.truncation == {s: {"truncated": 0, "longest": 1024} for s in ("train", "val", "test")}
    images = [s for s in data.fingerprint["sources"] if "/imgs/" in s["path"]]
    assert len(images) == 2 and all("listing_sha256" in s and "sha256" not in s for s in images)
    with pytest.raises(DataError, match="no vocabulary"):
        load_task("pathfinder", tmp_path, workers=1, vocab=["<pad>", "<unk>", "<eos>"])


def test_nothing_is_generated_unless_asked(tmp_path, capsys):
    from s5lra.data.cli import main

    for name in ("listops", "pathfinder", "pathx"):
        with pytest.raises(DataError, match="no data found"):
            load_task(name, tmp_path)
        assert main(["stats", name, "--root", str(tmp_path)]) == 2
        assert main(["prepare", name, "--root", str(tmp_path)]) == 2
    assert list(tmp_path.iterdir()) == []  # no folder, no cache, no staging
    capsys.readouterr()
    data = load_task("listops", tmp_path, generate=dict(n_train=20, n_val=5, n_test=5, min_length=10,
                                                        max_length=40, max_depth=3), max_len=40)
    assert len(data.splits["train"]) == 20
