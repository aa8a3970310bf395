"""The benchmark scripts' console tables: one row per dict, columns given as (header, format spec, key)."""

from __future__ import annotations

import re

ALIGN_WIDTH = re.compile(r"[<>]\d+")  # the header's part of a column's format spec


def print_table(rows, columns):
    """columns: (header, format spec such as ">9.1f", row key or a function of the row)."""
    head = " ".join(f"{name:{ALIGN_WIDTH.match(spec).group()}}" for name, spec, _ in columns)
    print(head)
    print("-" * len(head))
    for r in rows:
        print(" ".join(f"{key(r) if callable(key) else r[key]:{spec}}" for _, spec, key in columns))


def speedup(key):
    """A column function: the row's ratio as "2.50x", or "-" where there is none."""
    return lambda r: f"{r[key]:.2f}x" if r[key] else "-"
