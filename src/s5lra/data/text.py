"""Text (IMDB sentiment) reader: `aclImdb/{train,test}/{neg,pos}/*.txt` -> character ids (S4/S5 conventions).

Characters are Python characters (not bytes), truncated to max_len - 1 and followed by `<eos>`; the
vocabulary holds the training characters seen at least `min_freq` times (135 entries at 15). As in LRA and
S4/S5 the 25k test reviews double as the validation split. `unsup/` and the archive's other files are ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from s5lra.data import tfds
from s5lra.data.cache import ArrayWriter
from s5lra.errors import DataError
from s5lra.data.paths import find_task_dir
from s5lra.data.vocab import EOS, CharCounter, build_vocab, char_table, codepoints, require_symbols, token_dtype

DEFAULTS = {"max_len": 4096, "min_freq": 15, "source": "archive", "tfds_dir": None}  # source: archive | tfds
N_CLASSES = 2
CLASSES = ("neg", "pos")  # label 0, 1
SPLITS = ("train", "test")


def check(options: dict) -> None:
    if not isinstance(options["min_freq"], int) or options["min_freq"] < 1:
        raise DataError(f"min_freq={options['min_freq']!r}: expected a positive integer")
    tfds.wanted(options)


def locate(root: Path, options: dict) -> Path:
    if tfds.wanted(options):
        return tfds.locate(options, tfds.IMDB)
    return find_task_dir(root, ["aclImdb", "imdb/aclImdb"], "train",
                         f"s5lra-data download imdb --root {root} (the aclImdb_v1.tar.gz archive, extracted)")


def sources(folder: Path, options: dict) -> list[Path]:
    if tfds.wanted(options):
        return [folder]
    return [folder / split / c for split in SPLITS for c in CLASSES]


def _read_split(folder: Path, split: str) -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    for label, name in enumerate(CLASSES):
        directory = folder / split / name
        if not directory.is_dir():
            raise DataError(f"{directory}: folder not found (expected the extracted aclImdb_v1.tar.gz)")
        files = sorted(directory.glob("*.txt"))
        if not files:
            raise DataError(f"{directory}: empty source (no .txt reviews)")
        for path in tqdm(files, desc=f"imdb {split}/{name}", leave=False, disable=None):
            try:
                texts.append(path.read_text(encoding="utf-8"))
            except UnicodeDecodeError as e:
                raise DataError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
            labels.append(label)
    return texts, np.array(labels, np.int32)


def build(folder: Path, options: dict, out: ArrayWriter) -> dict:
    max_len, limit = options["max_len"], options["max_len"] - 1
    data = {split: tfds.imdb(folder, split, options) if tfds.wanted(options) else _read_split(folder, split)
            for split in SPLITS}
    counter = CharCounter()
    for text in data["train"][0]:
        counter.add(codepoints(text, limit))
    counts = counter.counter()
    vocab = options.get("vocab") or build_vocab(counts, options["min_freq"])
    require_symbols(vocab, counts, options["min_freq"],
                    lambda c: _first_occurrence(folder, options, [t[:limit] for t in data["train"][0]], c))
    table = char_table(vocab)
    for split, (texts, labels) in data.items():
        inputs = out.new(split, "inputs", (len(texts), max_len), token_dtype(len(vocab)))
        lengths = np.empty(len(texts), np.int32)
        for i, text in enumerate(texts):
            codes = codepoints(text, limit)
            inputs[i, : codes.size] = table[codes]
            inputs[i, codes.size] = EOS
            lengths[i] = codes.size + 1
        out.put(split, "lengths", lengths)
        out.put(split, "labels", labels)
    sizes = {split: len(texts) for split, (texts, _) in data.items()}
    truncation = {split: {"truncated": sum(len(t) > limit for t in texts), "longest": max(map(len, texts)) + 1}
                  for split, (texts, _) in data.items()}
    return {"seq_len": max_len, "n_classes": N_CLASSES, "vocab": vocab, "splits": sizes, "truncation": truncation,
            "aliases": {"val": "test"}}


def _first_occurrence(folder: Path, options: dict, texts: list[str], char: str) -> str:
    """Where the first training review containing `char` is: `file:line` (texts in _read_split's order), or
    its position in a TFDS source."""
    i, text = next((i, t) for i, t in enumerate(texts) if char in t)
    if tfds.wanted(options):
        return f"{folder}: training review {i}"
    files = [p for name in CLASSES for p in sorted((folder / "train" / name).glob("*.txt"))]
    return f"{files[i]}:{text[:text.index(char)].count(chr(10)) + 1}"
