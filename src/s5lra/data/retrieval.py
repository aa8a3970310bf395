"""Retrieval (AAN citation pairs) reader: `tsv_data/new_aan_pairs.{train,eval,test}.tsv` -> character ids.

Rows are `label, id1, id2, text1, text2` with no header and no quoting (texts contain literal `"`); labels
appear as `1` and `1.0`. Each document becomes its characters truncated to max_len - 1 plus `<eos>`; the
vocabulary comes from the training pairs' text1 and text2 (or is the run's own when given). Inputs are
(N, 2, max_len), lengths (N, 2). Truncation counts the pairs with a document longer than max_len - 1; the
longest length is per document (with `<eos>`).
The files are streamed twice (count, then encode) so the ~2 GB of training text is never held in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from s5lra.data.cache import ArrayWriter
from s5lra.data.paths import find_task_dir
from s5lra.data.tsv import parse_label, read_rows
from s5lra.data.vocab import EOS, CharCounter, build_vocab, char_table, codepoints, require_symbols, token_dtype

DEFAULTS = {"max_len": 4000}
N_CLASSES = 2
FILES = {"train": "new_aan_pairs.train.tsv", "val": "new_aan_pairs.eval.tsv", "test": "new_aan_pairs.test.tsv"}


def locate(root: Path, options: dict) -> Path:
    return find_task_dir(root, ["tsv_data", "aan"], FILES["train"],
                         f"s5lra-data download lra --root {root} (the LRA release holds tsv_data/)")


def sources(folder: Path, options: dict) -> list[Path]:
    return [folder / name for name in FILES.values()]


def _rows(path: Path, desc: str):
    """(line number, label, text1, text2) per row."""
    for lineno, fields in tqdm(read_rows(path, 5), desc=desc, unit="rows", leave=False, disable=None):
        yield lineno, parse_label(fields[0], N_CLASSES, f"{path}:{lineno}"), fields[3], fields[4]


def _first_occurrence(path: Path, limit: int, char: str) -> str:
    return next(f"{path}:{lineno}" for lineno, _, *texts in _rows(path, "aan train (search)")
                if any(char in t[:limit] for t in texts))


def build(folder: Path, options: dict, out: ArrayWriter) -> dict:
    max_len, limit = options["max_len"], options["max_len"] - 1
    counter = CharCounter()
    sizes, truncation = {}, {}
    for split, name in FILES.items():  # first pass: validate, count rows, truncation and training characters
        n = truncated = longest = 0
        for _, _, *texts in _rows(folder / name, f"aan {split} (scan)"):
            if split == "train":
                for text in texts:
                    counter.add(codepoints(text, limit))
            n += 1
            truncated += max(map(len, texts)) > limit
            longest = max(longest, max(map(len, texts)) + 1)
        sizes[split] = n
        truncation[split] = {"truncated": truncated, "longest": longest}
    counts = counter.counter()
    vocab = options.get("vocab") or build_vocab(counts)
    require_symbols(vocab, counts, 1, lambda c: _first_occurrence(folder / FILES["train"], limit, c))
    table = char_table(vocab)
    for split, name in FILES.items():
        n = sizes[split]
        inputs = out.new(split, "inputs", (n, 2, max_len), token_dtype(len(vocab)))
        lengths = np.empty((n, 2), np.int32)
        labels = np.empty(n, np.int32)
        for i, (_, label, *texts) in enumerate(_rows(folder / name, f"aan {split}")):
            docs = [codepoints(text, limit) for text in texts]
            for j, codes in enumerate(docs):
                inputs[i, j, : codes.size] = table[codes]
                inputs[i, j, codes.size] = EOS
                lengths[i, j] = codes.size + 1
            labels[i] = label
        out.put(split, "lengths", lengths)
        out.put(split, "labels", labels)
    return {"seq_len": max_len, "n_classes": N_CLASSES, "vocab": vocab, "splits": sizes, "truncation": truncation,
            "dual": True}
