"""Files and folders that appear complete or not at all: the project's one write-then-rename helper.

Everything is written under a temporary sibling name (a dot, the final name, a random tag) and renamed into
place only when complete, so a reader never sees half a file, and a write that fails (an exception, a full
disk, Ctrl-C) leaves neither a partial file nor temporary debris behind. A killed process (SIGKILL) can leave
a temporary sibling, never a damaged final file; `temporary_sibling` names start with a dot, so they never
match a run's, a task's or a checkpoint's name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator


def temporary_sibling(path: Path, tag: str = "tmp") -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:8]}")


def temporaries(folder: Path) -> list[Path]:
    """The temporary siblings that killed writers left in `folder` (nothing else could remove them)."""
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name)]


def remove(path: Path) -> None:
    """Delete a file or a folder tree; nothing if it is not there."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


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
        remove(tmp)
    if old is not None:
        remove(old)


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write (a file, or a folder the block creates); when the block ends
    normally it replaces `path`, and when the block raises (KeyboardInterrupt included) it is removed."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        if tmp.is_dir():
            replace_folder(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        remove(tmp)
        raise


@contextlib.contextmanager
def building(folder: str | Path) -> Iterator[Path]:
    """`replacing` for a folder: yields the temporary folder, already created (parents too)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with replacing(folder) as tmp:
        tmp.mkdir()
        yield tmp


def write_bytes(path: str | Path, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj) -> None:
    """Indented, sorted JSON with a final newline."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
