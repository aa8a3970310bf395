"""Pathfinder / Path-X reader: `pathfinder<R>/<difficulty>/{metadata/<batch>.npy, imgs/<batch>/*.png}`.

Metadata files are plain text in the release but binary `.npy` string arrays from the generator; both are
read (the NumPy magic decides). Rows have 11 fields; [0] folder, [1] file, [3] label. Batches are taken in
integer order. Images are decoded in parallel over all cores straight into a memory-mapped uint8 array.

Splits (S4/S5's random 80/10/10, seed 42) are assigned to every LISTED image before any is read: images are
ordered by a hash of (split_seed, path relative to the folder), the first int(0.1 n) of the n listed go to
val, the next int(0.1 n) to test, the rest to train. Only then are empty or unreadable PNGs dropped (and
counted; the release has one), so an unreadable image removes itself from its split and moves nothing else.
A folder written by our generator also holds generator.json; its image count must match the metadata (an
incomplete folder is refused). The model normalises x/255 to [-1, 1] (normalize = (0.5, 0.5)).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from s5lra.data.cache import ArrayWriter
from s5lra.data.paths import find_task_dir
from s5lra.data.tsv import parse_label
from s5lra.data.workers import worker_pool
from s5lra.errors import DataError

DEFAULTS = {"resolution": 32, "difficulty": "hard", "split_seed": 42}
PATHX = {"resolution": 128, "difficulty": "hard"}
DIFFICULTIES = {"easy": "curv_baseline", "intermediate": "curv_contour_length_9", "hard": "curv_contour_length_14"}
RESOLUTIONS = (32, 64, 128, 256)
N_CLASSES = 2
N_FIELDS = 11
NORMALIZE = (0.5, 0.5)
CHUNK = 512  # images per decoding task
NPY_MAGIC = b"\x93NUMPY"
GENERATOR_FILE = "generator.json"  # the settings s5lra.data.pathfinder_gen wrote the folder with
HASH_FOLDERS = False  # 200k images: identified by their (path, size) listing, not read twice


def check(options: dict) -> tuple[int, str]:
    """(resolution, the difficulty's folder name); DataError for values the release does not have."""
    res, difficulty = options["resolution"], options["difficulty"]
    if res not in RESOLUTIONS:
        raise DataError(f"resolution={res!r}: expected one of {RESOLUTIONS}")
    if difficulty not in DIFFICULTIES:
        raise DataError(f"difficulty={difficulty!r}: expected one of {sorted(DIFFICULTIES)}")
    return res, DIFFICULTIES[difficulty]


def locate(root: Path, options: dict) -> Path:
    res, folder = check(options)
    names = [f"pathfinder{res}/{folder}", f"pathfinder/pathfinder{res}/{folder}"]
    how_to = (f"s5lra-data generate pathfinder --resolution {res} --difficulty {options['difficulty']} "
              f"--n 200000 --root {root}, or s5lra-data download lra --root {root}")
    return find_task_dir(root, names, "metadata", how_to)


def _batch_files(folder: Path) -> list[Path]:
    files = [p for p in (folder / "metadata").glob("*.npy") if p.stem.isdigit()]
    if not files:
        raise DataError(f"{folder / 'metadata'}: empty source (no <batch>.npy metadata files)")
    return sorted(files, key=lambda p: int(p.stem))


def sources(folder: Path, options: dict) -> list[Path]:
    imgs = sorted(p for p in (folder / "imgs").glob("*") if p.is_dir()) if (folder / "imgs").is_dir() else []
    generator = [folder / GENERATOR_FILE] if (folder / GENERATOR_FILE).is_file() else []
    return _batch_files(folder) + generator + imgs


def read_metadata(path: Path) -> list[tuple[str, list[str]]]:
    """(where, fields) per row of one metadata file, text or binary .npy."""
    raw = path.read_bytes()
    if raw.startswith(NPY_MAGIC):
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise DataError(f"{path}: unreadable .npy metadata ({e})") from None
        rows = [[str(v) for v in row] if array.ndim == 2 else str(row).split() for row in array]
        return [(f"{path}:row {i}", row) for i, row in enumerate(rows)]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: neither .npy nor UTF-8 text metadata ({e.reason})") from None
    return [(f"{path}:{i}", line.split()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_index(folder: Path) -> tuple[list[Path], np.ndarray]:
    """Image paths and labels of every metadata row, in batch order."""
    paths, labels = [], []
    for meta in _batch_files(folder):
        for where, fields in read_metadata(meta):
            if len(fields) != N_FIELDS:
                raise DataError(f"{where}: expected {N_FIELDS} space-separated fields, got {len(fields)}")
            paths.append(folder / fields[0] / fields[1])
            labels.append(parse_label(fields[3], N_CLASSES, where))
    if not paths:
        raise DataError(f"{folder / 'metadata'}: empty source (no rows)")
    _check_complete(folder, len(paths))
    return paths, np.array(labels, np.int32)


def _check_complete(folder: Path, rows: int) -> None:
    try:
        expected = json.loads((folder / GENERATOR_FILE).read_text())["n"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # not written by our generator (the release): nothing to compare with
    if rows != expected:
        raise DataError(f"{folder}: incomplete: {GENERATOR_FILE} asks for {expected} images, the metadata lists "
                        f"{rows}; generate it again (s5lra-data generate pathfinder ... --overwrite)")


def decode_chunk(array_path: str, start: int, paths: list[str], side: int) -> list[int]:
    """Decode PNGs into rows start.. of the memory-mapped array; return the offsets that failed."""
    pixels = np.load(array_path, mmap_mode="r+")
    bad = []
    for i, path in enumerate(paths):
        try:
            if os.path.getsize(path) == 0:
                raise OSError("empty file")
            with Image.open(path) as im:
                image = np.asarray(im.convert("L"))
            if image.shape != (side, side):
                raise ValueError(f"size {image.shape}")
            pixels[start + i] = image.reshape(-1)
        except (OSError, ValueError, SyntaxError):
            bad.append(i)
    pixels.flush()
    return bad


def _decode_task(args: tuple) -> list[int]:
    return decode_chunk(*args)


def _decode_all(paths: list[Path], side: int, array_path: Path, workers: int) -> np.ndarray:
    """Fill the (N, side*side) array at array_path; return the mask of readable images."""
    ok = np.ones(len(paths), bool)
    tasks = [(str(array_path), s, [str(p) for p in paths[s:s + CHUNK]], side) for s in range(0, len(paths), CHUNK)]
    parallel = workers > 1 and len(tasks) > 1
    with tqdm(total=len(paths), desc=f"pathfinder{side} images", unit="img", disable=None) as bar, \
            (worker_pool(workers) if parallel else contextlib.nullcontext()) as pool:
        results = pool.imap(_decode_task, tasks) if pool else map(_decode_task, tasks)
        for (_, start, chunk, _), bad in zip(tasks, results):
            ok[[start + i for i in bad]] = False
            bar.update(len(chunk))
    return ok


def split_indices(names: list[str], seed: int) -> dict[str, np.ndarray]:
    """80/10/10 of the listed images by a stable key of each one's relative path (see the module docstring):
    val and test get int(0.1 n) each; each split's indices in source order."""
    keys = [hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8] for name in names]
    order = np.array(sorted(range(len(names)), key=keys.__getitem__), dtype=np.int64)
    n = len(names)
    n_val = n_test = int(0.1 * n)
    bounds = {"train": (n_val + n_test, n), "val": (0, n_val), "test": (n_val, n_val + n_test)}
    return {split: np.sort(order[lo:hi]) for split, (lo, hi) in bounds.items()}


def build(folder: Path, options: dict, out: ArrayWriter) -> dict:
    side, _ = check(options)
    paths, labels = read_index(folder)
    length = side * side
    everything = out.folder / "all_images.npy"
    np.lib.format.open_memmap(everything, mode="w+", dtype=np.uint8, shape=(len(paths), length)).flush()
    ok = _decode_all(paths, side, everything, options.get("workers") or os.cpu_count() or 1)
    if not ok.any():
        raise DataError(f"{folder}: none of the {len(paths)} images could be read")
    pixels = np.load(everything, mmap_mode="r")
    sizes = {}
    names = [p.relative_to(folder).as_posix() for p in paths]
    for split, idx in split_indices(names, options["split_seed"]).items():
        rows = idx[ok[idx]]  # assigned first, then the unreadable ones dropped
        target = out.new(split, "inputs", (rows.size, length), np.uint8)
        for s in range(0, rows.size, 8192):  # gather in slabs to bound memory
            target[s:s + 8192] = pixels[rows[s:s + 8192]]
        target.flush()
        out.put(split, "lengths", np.full(rows.size, length, np.int32))
        out.put(split, "labels", labels[rows])
        sizes[split] = int(rows.size)
    del pixels
    everything.unlink()
    skipped = [str(paths[i].relative_to(folder)) for i in np.flatnonzero(~ok)]
    if skipped:
        logging.getLogger(__name__).warning("skipped %d empty or unreadable images under %s: %s", len(skipped),
                                            folder, ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
    return {"seq_len": length, "n_classes": N_CLASSES, "vocab": None, "normalize": list(NORMALIZE),
            "splits": sizes, "skipped": {"unreadable_images": len(skipped)}, "skipped_files": skipped[:100]}


def check_generate(generate: dict) -> None:
    import inspect

    from s5lra.data.pathfinder_gen import generate_pathfinder  # written separately; imported on use

    # overwrite is the command line's alone: in a config it would regenerate the data on every load
    allowed = set(inspect.signature(generate_pathfinder).parameters) - {"root", "resolution", "difficulty", "workers",
                                                                        "overwrite"}
    if set(generate) - allowed:
        raise DataError(f"dataset.generate: unknown key(s) {sorted(set(generate) - allowed)} for pathfinder; "
                        f"known: {sorted(allowed)}")
    if generate.get("n", 0) < 0 or generate.get("batch_size", 1) < 1:
        raise DataError(f"dataset.generate: n must be >= 0 and batch_size >= 1 (got {generate})")


def generate(root: Path, options: dict, generate: dict, workers: int | None) -> None:
    """Run the Pathfinder generator for this resolution/difficulty; it resumes and skips finished batches."""
    from s5lra.data.pathfinder_gen import generate_pathfinder

    res, _ = check(options)
    try:
        generate_pathfinder(root, resolution=res, difficulty=options["difficulty"], workers=workers, **generate)
    except ValueError as e:
        raise DataError(f"dataset.generate: {e}") from None
