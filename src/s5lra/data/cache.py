"""Processed-data cache: compact .npy arrays plus a JSON description, one folder per preprocessing setting.

A folder `<cache_root>/<task>-<key>/` holds `<split>.<field>.npy` and `meta.json` (format version, settings,
vocabulary, split sizes, skipped inputs, truncation counts, and what was read: every source's signature plus
its content hash). The key hashes the settings, so changing a setting builds a new folder; a changed source
rebuilds the folder. Every load re-checks the signatures, which cost only `stat` calls: a file's size and
mtime; for a folder the (path, size, mtime) of every file under it, kept as a count, a byte total and a
digest (so an image emptied, replaced or removed after the build is noticed; measured cost in data/README.md).
Content hashes (SHA-256 of the bytes) are computed once, at build time, for files and for folders unless
the task says its folders are too big to read twice (Pathfinder's images: their listing stands in for them).
Builds happen in a temporary sibling folder renamed into place only when complete (`atomic.building`), so a
failed or interrupted build leaves nothing behind that could be mistaken for a cache. Reads are
memory-mapped (Path-X is 3.3 GB). Before mapping, every array file is checked against its own .npy header (a
truncated file would kill the process with SIGBUS on first touch) and against what meta.json recorded when the
cache was built (shape, dtype, size, a CRC of sampled blocks: cheap, not a full read); a damaged cache is
rebuilt from the sources with one log line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from s5lra.atomic import building
from s5lra.errors import DataError

# 2: content hashes and truncation counts in meta.json; Pathfinder splits assigned by path, not by position
FORMAT_VERSION = 2
HASH_BLOCK = 1 << 20
SAMPLE_BLOCKS, SAMPLE_BYTES = 32, 1 << 16  # the cheap array checksum: CRC-32 of 32 evenly spaced 64 KiB blocks
CONTENT_KEY = "sha256"  # the one field of a source entry that is not re-checked on load


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


log = logging.getLogger("s5lra")

def settings_key(task: str, settings: dict) -> str:
    blob = json.dumps({"task": task, "settings": settings, "format": FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _folder_files(folder: Path) -> list[tuple[str, os.stat_result]]:
    """(path relative to `folder`, stat) of every file under it, sorted by path. Relative paths are built
    from the walk's prefixes: os.path.relpath per file would triple the cost on 200k images."""
    found = []
    stack = [("", str(folder))]
    while stack:
        prefix, path = stack.pop()
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=True):
                    stack.append((f"{prefix}{entry.name}/", entry.path))
                else:
                    found.append((prefix + entry.name, entry.stat()))
    found.sort(key=lambda item: item[0])
    return found


def _digest(lines) -> str:
    return hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def source_signature(root: Path, sources: list[Path]) -> list[dict]:
    """What every load re-checks: a file's size and mtime; a folder's file count, byte total, a digest of
    (path, size, mtime) of every file in it (`stat_sha256`) and the same without mtimes (`listing_sha256`,
    which survives a copy to another machine)."""
    signature = []
    for path in sources:
        rel = os.path.relpath(path, root)
        try:
            if path.is_dir():
                files = _folder_files(path)
                signature.append({
                    "path": rel, "files": len(files), "bytes": sum(s.st_size for _, s in files),
                    "stat_sha256": _digest(f"{p}\t{s.st_size}\t{s.st_mtime_ns}" for p, s in files),
                    "listing_sha256": _digest(f"{p}\t{s.st_size}" for p, s in files)})
            else:
                stat = path.stat()
                signature.append({"path": rel, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns})
        except FileNotFoundError:
            raise DataError(f"{path}: file not found (a source of this task; restore it or get the data again)") \
                from None
    return signature


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def with_content_hashes(root: Path, signature: list[dict], folders: bool = True) -> list[dict]:
    """The signature with each source's SHA-256 added: of a file's bytes; of a folder's (path, file SHA-256)
    list when `folders` is set (else a folder is identified by its listing alone)."""
    out = []
    for entry in signature:
        path = root / entry["path"]
        if "files" not in entry:
            entry = {**entry, CONTENT_KEY: _file_sha256(path)}
        elif folders:
            entry = {**entry, CONTENT_KEY: _digest(f"{p}\t{_file_sha256(path / p)}" for p, _ in _folder_files(path))}
        out.append(entry)
    return out


def _checked(entries: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != CONTENT_KEY} for e in entries]


def _read_meta(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def _open(folder: Path, meta: dict) -> dict[str, np.ndarray]:
    return {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}


def _sample_crc(path: Path, size: int) -> int:
    """CRC-32 of SAMPLE_BLOCKS blocks spread evenly over the file (all of it when it is small)."""
    crc = 0
    with open(path, "rb") as f:
        if size <= SAMPLE_BLOCKS * SAMPLE_BYTES:
            return zlib.crc32(f.read())
        for i in range(SAMPLE_BLOCKS):
            f.seek((size - SAMPLE_BYTES) * i // (SAMPLE_BLOCKS - 1))
            crc = zlib.crc32(f.read(SAMPLE_BYTES), crc)
    return crc


def _array_file(path: Path) -> dict:
    """What an array file is: its header's shape and dtype, its size, its sampled CRC. Raises ValueError when
    the file is shorter or longer than its header says."""
    with open(path, "rb") as f:
        fmt = np.lib.format
        read_header = fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read_header(f)
        expected = f.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size != expected:
        raise ValueError(f"{path.name} has {size:,} bytes, its header says {expected:,}")
    return {"shape": list(shape), "dtype": dtype.str, "bytes": size, "sample_crc32": _sample_crc(path, size)}


def _damage(folder: Path, meta: dict) -> str | None:
    """Why the cache's arrays cannot be used (None: they can)."""
    recorded = meta.get("array_files", {})  # caches built before these records: the header checks alone
    for name in meta["arrays"]:
        path = folder / f"{name}.npy"
        try:
            found = _array_file(path)
        except (OSError, ValueError) as err:
            return f"{path}: {err}"
        if name in recorded and recorded[name] != found:
            diff = [k for k in found if found[k] != recorded[name].get(k)]
            return f"{path}: {', '.join(diff)} differ from meta.json"
    return None


def load_or_build(
    cache_root: Path,
    task: str,
    settings: dict,
    data_root: Path,
    sources: list[Path],
    build: Callable[[ArrayWriter], dict],
    rebuild: bool = False,
    hash_folders: bool = True,
) -> tuple[Path, dict, dict[str, np.ndarray]]:
    """Return (folder, meta, arrays by "<split>.<field>"), building the folder first if it is missing,
    stale (sources changed) or `rebuild` is set. `build(writer)` writes the arrays and returns the
    task's description (it goes into meta.json); any exception removes the partial build.
    hash_folders: whether source folders get a content hash (see `with_content_hashes`)."""
    folder = cache_root / f"{task}-{settings_key(task, settings)}"
    signature = source_signature(data_root, sources)
    meta = _read_meta(folder)
    fresh = meta is not None and not rebuild and _checked(meta.get("sources", [])) == signature
    damage = _damage(folder, meta) if fresh else None
    if fresh and damage is None:
        log.info("data cache hit: %s", folder)
        return folder, meta, _open(folder, meta)

    why = ("rebuild asked" if rebuild else "first use" if meta is None else
           f"it is damaged: {damage}" if damage else "its sources changed")
    log.log(logging.WARNING if damage else logging.INFO, "data cache: building %s (%s)", folder, why)
    with building(folder) as tmp:
        writer = ArrayWriter(tmp)
        described = build(writer)
        meta = {"format": FORMAT_VERSION, "task": task, "settings": settings,
                "sources": with_content_hashes(data_root, signature, hash_folders), "arrays": writer.names,
                "array_files": {name: _array_file(writer.folder / f"{name}.npy") for name in writer.names},
                **described}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    return folder, meta, _open(folder, meta)
