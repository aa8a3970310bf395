"""Retrieval (AAN citation pairs) reader: `tsv_data/new_aan_pairs.{train,eval,test}.tsv` -> character ids.

Rows are `label, id1, id2, text1, text2` with no header and no quoting (texts contain literal `"`); labels
appear as `1` and `1.0`. Each document becomes its characters truncated to max_len - 1 plus `<eos>`; the
vocabulary comes from the training pairs' text1 and text2. Inputs are (N, 2, max_len), lengths (N, 2).
The files are streamed twice (count, then encode) so the ~2 GB of training text is never held in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from s5lra.data.cache import ArrayWriter
from s5lra.data.paths import find_task_dir
from s5lra.data.tsv import parse_label, read_rows
from s5lra.data.vocab import EOS, CharCounter, build_vocab, char_table, codepoints, token_dtype

DEFAULTS = {"max_len": 4000}
N_CLASSES = 2
FILES = {"train": "new_aan_pairs.train.tsv", "val": "new_aan_pairs.eval.tsv", "test": "new_aan_pairs.test.tsv"}


def locate(root: Path, options: dict) -> Path:
    return find_task_dir(root, ["tsv_data", "aan"], FILES["train"],
                         f"s5lra-data download lra --root {root} (the LRA release holds tsv_data/)")


def sources(folder: Path, options: dict) -> list[Path]:
    return [folder / name for name in FILES.values()]


def _rows(path: Path, limit: int, desc: str):
    for lineno, fields in tqdm(read_rows(path, 5), desc=desc, unit="rows", leave=False, disable=None):
        label = parse_label(fields[0], N_CLASSES, f"{path}:{lineno}")
        yield label, codepoints(fields[3], limit), codepoints(fields[4], limit)


def build(folder: Path, options: dict, out: ArrayWriter) -> dict:
    max_len, limit = options["max_len"], options["max_len"] - 1
    counter = CharCounter()
    sizes = {}
    for split, name in FILES.items():  # first pass: validate, count rows and training characters
        n = 0
        for _, doc1, doc2 in _rows(folder / name, limit, f"aan {split} (scan)"):
            if split == "train":
                counter.add(doc1)
                counter.add(doc2)
            n += 1
        sizes[split] = n
    vocab = build_vocab(counter.counter())
    table = char_table(vocab)
    for split, name in FILES.items():
        n = sizes[split]
        inputs = out.new(split, "inputs", (n, 2, max_len), token_dtype(len(vocab)))
        lengths = np.empty((n, 2), np.int32)
        labels = np.empty(n, np.int32)
        for i, (label, *docs) in enumerate(_rows(folder / name, limit, f"aan {split}")):
            for j, codes in enumerate(docs):
                inputs[i, j, : codes.size] = table[codes]
                inputs[i, j, codes.size] = EOS
                lengths[i, j] = codes.size + 1
            labels[i] = label
        out.put(split, "lengths", lengths)
        out.put(split, "labels", labels)
    return {"seq_len": max_len, "n_classes": N_CLASSES, "vocab": vocab, "splits": sizes, "dual": True}
