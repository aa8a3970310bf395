"""Vocabularies and character encoding shared by the token tasks.

Ids: `<pad>`=0, `<unk>`=1, `<eos>`=2, then the symbols seen in the training split with at least `min_freq`
occurrences, by descending count and then by the symbol itself (deterministic; LRA's came from a Python set).
This is also torchtext's order, which S4/S5 used. Characters go through NumPy as UTF-32 code points, which
are exactly Python's `list(text)`.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

SPECIALS = ["<pad>", "<unk>", "<eos>"]
PAD, UNK, EOS = 0, 1, 2
N_CODEPOINTS = 0x110000


def build_vocab(counts: Counter, min_freq: int = 1) -> list[str]:
    symbols = sorted((s for s, n in counts.items() if n >= min_freq), key=lambda s: (-counts[s], s))
    return SPECIALS + symbols


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
        table[ord(symbol)] = i
    return table
