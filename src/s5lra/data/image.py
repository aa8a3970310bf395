"""Image (grayscale CIFAR-10) reader: `cifar-10-batches-py/` pickles -> 1024 uint8 luma pixels per image.

Grayscale is ITU-R 601-2 luma computed exactly as Pillow's `convert("L")` (what torchvision's Grayscale, and
so S4/S5, used): L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16. Pixels stay uint8 in the cache; the model
normalises x/255 with TaskSpec.normalize = (122.6/255, 61.0/255). Validation is the last 10% of the
training images by default, or a random 10% (seed 42) with `val_split="random"`.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from s5lra.data import tfds
from s5lra.data.cache import ArrayWriter
from s5lra.errors import DataError
from s5lra.data.paths import find_task_dir

DEFAULTS = {"val_split": "last", "source": "archive", "tfds_dir": None}  # last | random; archive | tfds
N_CLASSES = 10
SIDE = 32
NORMALIZE = (122.6 / 255, 61.0 / 255)
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
SPLIT_SEED = 42


def locate(root: Path, options: dict) -> Path:
    if tfds.wanted(options):
        return tfds.locate(options, tfds.CIFAR10)
    return find_task_dir(root, ["cifar-10-batches-py", "cifar/cifar-10-batches-py"], "data_batch_1",
                         f"s5lra-data download cifar10 --root {root} (the cifar-10-python.tar.gz archive, extracted)")


def sources(folder: Path, options: dict) -> list[Path]:
    if tfds.wanted(options):
        return [folder]
    return [folder / name for name in TRAIN_FILES + TEST_FILES]


def luma(rgb_planes: np.ndarray) -> np.ndarray:
    """(N, 3072) uint8 rows (R plane, G plane, B plane) -> (N, 1024) uint8 luma, bit-exact with Pillow."""
    r, g, b = rgb_planes.reshape(-1, 3, SIDE * SIDE).astype(np.uint32).transpose(1, 0, 2)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected the extracted cifar-10-python.tar.gz)")
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int32)
    except Exception as e:  # unpickling can fail in many ways; all mean the same thing here
        raise DataError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    if data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE or labels.shape != (len(data),) or len(data) == 0:
        raise DataError(f"{path}: expected `data` of shape (N, 3072) and N `labels`, got {data.shape} "
                        f"and {labels.shape}")
    if labels.min() < 0 or labels.max() >= N_CLASSES:
        raise DataError(f"{path}: labels outside 0..{N_CLASSES - 1}")
    return luma(data), labels


def _read(folder: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    parts = [_read_batch(folder / name) for name in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _read_split(folder: Path, options: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    if tfds.wanted(options):
        rgb, labels = tfds.cifar10(folder, split, options)
        return luma(rgb), labels
    return _read(folder, TRAIN_FILES if split == "train" else TEST_FILES)


def check(options: dict) -> None:
    if options["val_split"] not in ("last", "random"):
        raise DataError(f"val_split={options['val_split']!r}: expected 'last' or 'random'")
    tfds.wanted(options)


def build(folder: Path, options: dict, out: ArrayWriter) -> dict:
    pixels, labels = _read_split(folder, options, "train")
    n_val = len(pixels) // 10
    order = np.arange(len(pixels))
    if options["val_split"] == "random":
        order = np.random.default_rng(SPLIT_SEED).permutation(len(pixels))
    parts = {"train": np.sort(order[: len(order) - n_val]), "val": np.sort(order[len(order) - n_val:])}
    splits = {split: (pixels[idx], labels[idx]) for split, idx in parts.items()}
    splits["test"] = _read_split(folder, options, "test")
    for split, (x, y) in splits.items():
        out.put(split, "inputs", x)
        out.put(split, "lengths", np.full(len(x), x.shape[1], np.int32))
        out.put(split, "labels", y)
    return {"seq_len": SIDE * SIDE, "n_classes": N_CLASSES, "vocab": None, "normalize": list(NORMALIZE),
            "splits": {split: len(x) for split, (x, _) in splits.items()}}
