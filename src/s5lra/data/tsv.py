"""Tab-separated sources read line by line with quoting off, errors naming `file:line`.

The AAN texts contain literal `"` characters, so csv quoting must stay off; lines are split on `\\n` only
(a stray `\\r` inside a text must not start a new row), a trailing `\\r` (csv's `\\r\\n`) is dropped, and blank
lines are skipped (as pandas and Hugging Face datasets, which S4 used, do).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

from s5lra.errors import DataError


def read_rows(path: Path, n_cols: int, header: list[str] | None = None) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for every data row; the file must hold at least one."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
            if not line:
                continue
            fields = line.split("\t")
            if lineno == 1 and header is not None:
                if fields != header:
                    raise DataError(f"{path}:1: expected the header {'<TAB>'.join(header)!r}, got {line[:80]!r}")
                continue
            if len(fields) != n_cols:
                raise DataError(f"{path}:{lineno}: expected {n_cols} tab-separated columns, got {len(fields)}")
            rows += 1
            yield lineno, fields
    if rows == 0:
        raise DataError(f"{path}: empty source (no data rows)")


def parse_label(text: str, n_classes: int, where: str) -> int:
    """A class id written as a number (`1`, `1.0` and `1.00` all occur); `where` is `file:line`."""
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: label {text[:40]!r} is not a number") from None
    if not math.isfinite(value) or value != int(value) or not 0 <= value < n_classes:
        raise DataError(f"{where}: label {text!r} is not a class id in 0..{n_classes - 1}")
    return int(value)
