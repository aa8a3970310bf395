"""Processed-data cache: compact .npy arrays plus a JSON description, one folder per preprocessing setting.

A folder `<cache_root>/<task>-<key>/` holds `<split>.<field>.npy` and `meta.json` (format version, settings,
vocabulary, split sizes, skipped inputs, and the size/mtime signature of every source). The key hashes the
settings, so changing a setting builds a new folder; a changed source rebuilds the folder. Builds happen in a
temporary sibling folder that is renamed into place only when complete, so a failed or interrupted build
leaves nothing behind that could be mistaken for a cache. Reads are memory-mapped (Path-X is 3.3 GB).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

FORMAT_VERSION = 1


class ArrayWriter:
    """Creates the arrays of a cache folder under construction (memory-mapped, so builds can stream)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.names: list[str] = []

    def path(self, split: str, field: str) -> Path:
        return self.folder / f"{split}.{field}.npy"

    def new(self, split: str, field: str, shape: tuple, dtype) -> np.ndarray:
        """A zero-filled, writable memory-mapped array that becomes `<split>.<field>`."""
        self.names.append(f"{split}.{field}")
        return np.lib.format.open_memmap(self.path(split, field), mode="w+", dtype=dtype, shape=shape)

    def put(self, split: str, field: str, array: np.ndarray) -> None:
        self.names.append(f"{split}.{field}")
        np.save(self.path(split, field), np.ascontiguousarray(array))


def settings_key(task: str, settings: dict) -> str:
    blob = json.dumps({"task": task, "settings": settings, "format": FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def source_signature(root: Path, sources: list[Path]) -> list[dict]:
    """Size and mtime of each source file; for a folder its mtime and entry count (cheap for 200k PNGs)."""
    signature = []
    for path in sources:
        stat = path.stat()
        entry = {"path": os.path.relpath(path, root), "mtime_ns": stat.st_mtime_ns}
        if path.is_dir():
            entry["entries"] = len(os.listdir(path))
        else:
            entry["bytes"] = stat.st_size
        signature.append(entry)
    return signature


def _read_meta(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def _open(folder: Path, meta: dict) -> dict[str, np.ndarray]:
    return {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}


def load_or_build(
    cache_root: Path,
    task: str,
    settings: dict,
    data_root: Path,
    sources: list[Path],
    build: Callable[[ArrayWriter], dict],
    rebuild: bool = False,
) -> tuple[Path, dict, dict[str, np.ndarray]]:
    """Return (folder, meta, arrays by "<split>.<field>"), building the folder first if it is missing,
    stale (sources changed) or `rebuild` is set. `build(writer)` writes the arrays and returns the
    task's description (it goes into meta.json); any exception removes the partial build."""
    folder = cache_root / f"{task}-{settings_key(task, settings)}"
    signature = source_signature(data_root, sources)
    meta = _read_meta(folder)
    if meta is not None and not rebuild and meta.get("sources") == signature:
        return folder, meta, _open(folder, meta)

    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = cache_root / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        writer = ArrayWriter(tmp)
        described = build(writer)
        meta = {"format": FORMAT_VERSION, "task": task, "settings": settings, "sources": signature,
                "arrays": writer.names, **described}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        _replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder, meta, _open(folder, meta)


def _replace(tmp: Path, folder: Path) -> None:
    """Move the finished build into place; an older folder is renamed aside first, then deleted."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(folder, old)
    try:
        os.rename(tmp, folder)
    except OSError:
        if _read_meta(folder) is None:  # not a concurrent build that won the race
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
