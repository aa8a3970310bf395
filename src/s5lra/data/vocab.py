"""Vocabularies and character encoding shared by the token tasks.

Ids: `<pad>`=0, `<unk>`=1, `<eos>`=2, then the symbols seen in the training split with at least `min_freq`
occurrences, by descending count and then by the symbol itself (deterministic; LRA's came from a Python set).
This is also torchtext's order, which S4/S5 used. Characters go through NumPy as UTF-32 code points, which
are exactly Python's `list(text)`.

A run's own vocabulary can be given instead (`load_task(vocab=...)`, so a resumed or evaluated run keeps its
ids whatever is on disk now). It must hold every symbol the data's own vocabulary would: a training symbol
with at least `min_freq` occurrences that it lacks means the data is not what the run saw (DataError at the
first occurrence). Rarer training symbols and symbols seen only in val/test map to `<unk>`, as they do with
the vocabulary built from the data.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np

from s5lra.errors import DataError

SPECIALS = ["<pad>", "<unk>", "<eos>"]
PAD, UNK, EOS = 0, 1, 2
N_CODEPOINTS = 0x110000


def build_vocab(counts: Counter, min_freq: int = 1) -> list[str]:
    symbols = sorted((s for s, n in counts.items() if n >= min_freq), key=lambda s: (-counts[s], s))
    return SPECIALS + symbols


def check_vocab(vocab) -> list[str]:
    """A given vocabulary as a list, or DataError unless it is distinct strings starting with SPECIALS."""
    vocab = list(vocab)
    if vocab[:len(SPECIALS)] != SPECIALS or not all(isinstance(s, str) for s in vocab) \
            or len(set(vocab)) != len(vocab):
        raise DataError(f"vocab: expected distinct strings starting with {SPECIALS} (a vocabulary an s5lra run "
                        f"recorded), got {len(vocab)} entries starting {vocab[:4]!r}")
    return vocab


def require_symbols(vocab: list[str], counts: Counter, min_freq: int, where: Callable[[str], str]) -> None:
    """DataError unless `vocab` holds every training symbol with at least `min_freq` occurrences; `where(s)`
    names the first occurrence of symbol s (`file:line`)."""
    have = set(vocab)
    absent = sorted((s for s, n in counts.items() if n >= min_freq and s not in have), key=lambda s: (-counts[s], s))
    if absent:
        more = f" ({len(absent)} such symbols: {absent[:10]!r})" if len(absent) > 1 else ""
        raise DataError(f"{where(absent[0])}: token {absent[0]!r} is not in the given vocabulary ({len(vocab)} "
                        f"entries){more}; the data differs from the data that vocabulary was built from: use that "
                        f"data, or train afresh without the recorded vocabulary")


def token_dtype(vocab_size: int):
    return np.uint8 if vocab_size <= 256 else np.uint16


def codepoints(text: str, limit: int) -> np.ndarray:
    """The first `limit` characters of `text` as code points."""
    return np.frombuffer(text[:limit].encode("utf-32-le"), dtype="<u4")


class CharCounter:
    """Counts characters over many texts with one bincount per chunk (fast for ~10^9 characters)."""

    def __init__(self, chunk: int = 1 << 22):
        self.counts = np.zeros(N_CODEPOINTS, dtype=np.int64)
        self.pending: list[np.ndarray] = []
        self.size = 0
        self.chunk = chunk

    def add(self, codes: np.ndarray) -> None:
        self.pending.append(codes)
        self.size += codes.size
        if self.size >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.counts += np.bincount(np.concatenate(self.pending), minlength=N_CODEPOINTS)
        self.pending, self.size = [], 0

    def counter(self) -> Counter:
        self._flush()
        return Counter({chr(c): int(self.counts[c]) for c in np.flatnonzero(self.counts)})


def char_table(vocab: list[str]) -> np.ndarray:
    """Code point -> id lookup; characters outside the vocabulary map to `<unk>`."""
    table = np.full(N_CODEPOINTS, UNK, dtype=np.uint16)
    for i, symbol in enumerate(vocab[len(SPECIALS):], start=len(SPECIALS)):
        if len(symbol) != 1:
            raise DataError(f"vocab[{i}]={symbol!r}: a character task's vocabulary holds single characters")
        table[ord(symbol)] = i
    return table
