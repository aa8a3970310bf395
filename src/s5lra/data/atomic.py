"""Folders that appear complete or not at all: built in a temporary sibling, renamed into place when done.

A reader (the cache, `stats`, training) only ever looks at the final name, so an interrupted or failed build
leaves nothing it could mistake for data. The temporary names start with a dot and never match a task folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator


def temporary_sibling(folder: Path, tag: str = "tmp") -> Path:
    return folder.with_name(f".{folder.name}.{tag}-{uuid.uuid4().hex[:8]}")


def replace_folder(tmp: Path, folder: Path) -> None:
    """Move the finished `tmp` to `folder`; an older `folder` is renamed aside first, then deleted."""
    old = None
    if folder.exists():
        old = temporary_sibling(folder, "old")
        os.rename(folder, old)
    try:
        os.rename(tmp, folder)
    except OSError:
        if not folder.exists():  # else a concurrent build won the race; only complete folders get that name
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def building(folder: Path) -> Iterator[Path]:
    """Yield a fresh temporary sibling of `folder`; it replaces `folder` when the block ends normally and is
    removed when the block raises (KeyboardInterrupt and SIGTERM turned into one included)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(folder)
    tmp.mkdir()
    try:
        yield tmp
        replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
