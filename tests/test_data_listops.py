"""ListOps: the generator against LRA's algorithm and an independent evaluator, and the reader end to end."""

import contextlib
import random
import statistics
import types

import numpy as np
import pytest

from s5lra.data import DataError, load_task
from s5lra.data import listops_gen
from s5lra.data.listops_gen import ListOpsSettings, generate_examples, generate_listops, sample_tree

SHORT = dict(n_train=300, n_val=40, n_test=40, min_length=10, max_length=60, max_depth=4, max_args=5)


# --- LRA's recursion as the reference describes it (nested tuples), to compare draw for draw ---
def lra_tree(rng, depth, max_depth, max_args):
    r = rng.random() if depth < max_depth else 1
    if r > 0.25:
        return rng.choice(range(10)), 1
    n, values, length = rng.randint(2, max_args), [], 2
    for _ in range(n):
        t, l = lra_tree(rng, depth + 1, max_depth, max_args)
        values.append(t)
        length += l
    t = (rng.choice(["[MIN", "[MAX", "[MED", "[SM"]), values[0])
    for v in values[1:]:
        t = (t, v)
    return (t, "]"), length


def lra_string(t):
    if isinstance(t, (str, int)):
        return str(t)
    return "( " + lra_string(t[0]) + " " + lra_string(t[1]) + " )"


def evaluate(source: str) -> int:
    """Independent evaluator: a stack machine over the tokens, ignoring parentheses."""
    stack = [[]]
    for token in source.replace("(", " ").replace(")", " ").split():
        if token.startswith("["):
            stack.append([token])
        elif token == "]":
            op, *args = stack.pop()
            value = {"[MIN": min, "[MAX": max, "[SM": lambda a: sum(a) % 10,
                     "[MED": lambda a: int(statistics.median(a))}[op](args)
            stack[-1].append(value)
        else:
            stack[-1].append(int(token))
    (value,) = stack[0]
    return value


def test_sampler_matches_lra_draw_for_draw():
    # max_depth 4, max_args 3 bounds trees at 53 tokens, so the early abort never triggers
    s = ListOpsSettings(max_depth=4, max_args=3, max_length=1000)
    ours, theirs = random.Random(7), random.Random(7)
    for _ in range(300):
        text, value, length = sample_tree(ours, s)
        tree, ref_length = lra_tree(theirs, 1, 4, 3)
        assert (text, length) == (lra_string(tree), ref_length)
        assert value == evaluate(text)


def test_serialisation_example_from_the_reference():
    assert evaluate("( ( ( [MAX 2 ) 9 ) ] )") == 9
    assert evaluate("( ( ( ( [MED 1 ) 2 ) 6 ) ] )") == 2 and evaluate("( ( ( [MED 1 ) 4 ) ] )") == 2


def test_generated_examples_window_labels_and_uniqueness():
    s = ListOpsSettings(**SHORT, seed=3)
    examples = generate_examples(s, workers=1, progress=False)
    assert len(examples) == 380 and len({e[0] for e in examples}) == 380
    for text, label in examples:
        n_tokens = len(text.replace("(", " ").replace(")", " ").split())
        assert s.min_length < n_tokens < s.max_length
        assert label == evaluate(text)
    assert generate_examples(s, workers=1, progress=False) == examples  # seeded
    assert generate_examples(ListOpsSettings(**SHORT, seed=4), workers=1, progress=False) != examples


def test_output_does_not_depend_on_worker_count(monkeypatch):
    monkeypatch.setattr(listops_gen, "SHARD", 100)
    s = ListOpsSettings(**SHORT)
    one = generate_examples(s, workers=1, progress=False)
    monkeypatch.setattr(listops_gen, "worker_pool", _inline_pool)  # same sharding, no processes
    assert generate_examples(s, workers=3, progress=False) == one


@contextlib.contextmanager
def _inline_pool(workers):
    yield types.SimpleNamespace(imap=map)


def test_impossible_settings_are_user_errors(monkeypatch):
    monkeypatch.setattr(listops_gen, "MAX_MISSES", 10_000)
    with pytest.raises(DataError, match="no ListOps tree"):
        generate_listops("unused", ListOpsSettings(min_length=10, max_length=11))
    with pytest.raises(DataError, match="too few distinct"):
        generate_examples(ListOpsSettings(n_train=20, n_val=0, n_test=0, min_length=0, max_length=2,
                                          max_depth=2), workers=1, progress=False)


def test_generator_to_reader_round_trip(tmp_path):
    data = load_task("listops", tmp_path, generate=SHORT, max_len=40)
    files = sorted(p.name for p in (tmp_path / "listops-1000").iterdir())
    assert files == ["basic_test.tsv", "basic_train.tsv", "basic_val.tsv", "generator.json"]
    lines = (tmp_path / "listops-1000" / "basic_train.tsv").read_text().splitlines()
    assert lines[0] == "Source\tTarget" and len(lines) == 301
    assert {s: len(data.splits[s]) for s in ("train", "val", "test")} == {"train": 300, "val": 40, "test": 40}
    vocab = data.vocab
    assert vocab[:3] == ["<pad>", "<unk>", "<eos>"] and data.spec.vocab_size == len(vocab) == 18
    assert data.spec.seq_len == 40 and data.spec.n_classes == 10 and data.spec.normalize is None
    train = data.splits["train"]
    assert train.inputs.dtype == np.uint8 and train.inputs.shape == (300, 40)
    for i, line in enumerate(lines[1:]):
        source, target = line.split("\t")
        tokens = source.replace("]", "X").replace("(", "").replace(")", "").split()[:39] + ["<eos>"]
        n = int(train.lengths[i])
        assert [vocab[t] for t in train.inputs[i, :n]] == tokens
        assert not train.inputs[i, n:].any()
        assert train.labels[i] == int(target) == evaluate(source)
    # a second load with the same settings reuses the data, other settings are refused
    assert load_task("listops", tmp_path, generate=SHORT, max_len=40).cache_dir == data.cache_dir
    with pytest.raises(DataError, match="remove that folder or choose another root"):
        load_task("listops", tmp_path, generate={**SHORT, "seed": 1})
    with pytest.raises(DataError, match="unknown key"):
        load_task("listops", tmp_path, generate={"n_trian": 5})


def write_tsv(path, rows, header="Source\tTarget"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\r\n" for line in ([header] if header else []) + rows))


@pytest.fixture
def release(tmp_path):
    """A tiny ListOps in the doubled lra_release layout."""
    folder = tmp_path / "lra_release" / "lra_release" / "listops-1000"
    write_tsv(folder / "basic_train.tsv",
              ["( ( ( [MAX 2 ) 9 ) ] )\t9", "( ( ( [SM 5 ) 7 ) ] )\t2", "( ( [MIN 3 ) ] )\t3"])
    write_tsv(folder / "basic_val.tsv", ["( ( ( [MED 1 ) 4 ) ] )\t2"])
    write_tsv(folder / "basic_test.tsv", ["( ( ( [MAX 2 ) 9 ) ] )\t9.0", ""])  # a trailing blank line
    return tmp_path, folder


def test_reader_tokens_vocab_and_truncation(release):
    root, _ = release
    full = load_task("listops", root)
    # training symbols by descending count, ties by symbol; 1, 4 and [MED occur only in val
    assert full.vocab == ["<pad>", "<unk>", "<eos>", "X", "2", "3", "5", "7", "9", "[MAX", "[MIN", "[SM"]
    ids = {s: i for i, s in enumerate(full.vocab)}
    train = full.splits["train"]
    assert full.spec.seq_len == 2048 and train.lengths.tolist() == [5, 5, 4] and train.labels.tolist() == [9, 2, 3]
    assert train.inputs[0, :6].tolist() == [ids["[MAX"], ids["2"], ids["9"], ids["X"], ids["<eos>"], 0]
    assert full.splits["val"].inputs[0, :5].tolist() == [1, 1, 1, ids["X"], 2]  # unknown symbols -> <unk>
    assert full.splits["test"].labels.tolist() == [9]  # written as 9.0
    short = load_task("listops", root, max_len=4)  # truncate to 3 tokens + <eos>
    ids = {s: i for i, s in enumerate(short.vocab)}
    assert short.splits["train"].inputs[2].tolist() == [ids["[MIN"], ids["3"], ids["X"], ids["<eos>"]]
    assert short.splits["train"].lengths.tolist() == [4, 4, 4]


@pytest.mark.parametrize("rows, message", [
    (["( ( [MIN 3 ) ] )\t3", "( ( [MIN 3 ) ] )\t3\textra"],
     "basic_train.tsv:3: expected 2 tab-separated columns, got 3"),
    (["( ( [MIN 3 ) ] )\tthree"], "basic_train.tsv:2: label 'three' is not a number"),
    (["( ( [MIN 3 ) ] )\t12"], "basic_train.tsv:2: label '12' is not a class id"),
    ([], "basic_train.tsv: empty source"),
])
def test_bad_rows_name_file_and_line(release, rows, message):
    root, folder = release
    write_tsv(folder / "basic_train.tsv", rows)
    with pytest.raises(DataError, match=message):
        load_task("listops", root)
    assert not any((root / "cache").iterdir())  # a failed prepare leaves nothing behind


def test_bad_header_and_empty_file(release):
    root, folder = release
    write_tsv(folder / "basic_val.tsv", ["( ( [MIN 3 ) ] )\t3"], header="src\tlabel")
    with pytest.raises(DataError, match="basic_val.tsv:1: expected the header"):
        load_task("listops", root)
    (folder / "basic_val.tsv").write_bytes(b"")
    with pytest.raises(DataError, match="basic_val.tsv: empty source"):
        load_task("listops", root)


def test_missing_folder_lists_searched_paths_and_command(tmp_path):
    with pytest.raises(DataError) as err:
        load_task("listops", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "lra_release" / "lra_release" / "listops-1000" / "basic_train.tsv") in message
    assert str(tmp_path / "listops" / "basic_train.tsv") in message  # S4's name
    assert "s5lra-data generate listops --root" in message and "\n" not in message
