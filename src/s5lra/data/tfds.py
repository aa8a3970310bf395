"""TFDS-prepared `cifar10` and `imdb_reviews` as sources of the image and text tasks, read without TensorFlow.

`dataset.options.source=tfds dataset.options.tfds_dir=DIR` (DIR: the TFDS data_dir holding `cifar10/3.0.2/`
or `imdb_reviews/plain_text/1.0.0/`, prepared in the array_record format) reads the records with
`tfds.data_source` and hands the task readers the same arrays the archives give, in the archives' order:

- cifar10: TFDS stores the images shuffled, each with the id `train_NNNNN` / `test_NNNNN`, its position in
  the archive's batch files (tensorflow_datasets/image_classification/cifar.py); sorting by id restores the
  archive order, so pixels, labels and the validation split are bit-identical to the archive's.
- imdb_reviews: a record keeps no file name, so the archive's order within a class (sorted file names) cannot
  be recovered: reviews come label-major (neg, then pos, as from the archive) and sorted by text within a
  class, which is the same whatever order TFDS wrote them in. TFDS's builder also strips each review of
  leading and trailing whitespace; the archive reader keeps it (the vocabulary is unaffected; a review with
  such whitespace is shorter by those characters).

Needs the `tfds` extra (`pip install -e .[tfds]`): tensorflow-datasets, array_record, importlib_resources.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from s5lra.errors import DataError

SOURCES = ("archive", "tfds")
CIFAR10, IMDB = "cifar10", "imdb_reviews"
READ_CHUNK = 2048  # records per __getitems__ call


def wanted(options: dict) -> bool:
    """True when options['source'] asks for TFDS (DataError for an unknown source or a missing tfds_dir)."""
    source = options["source"]
    if source not in SOURCES:
        raise DataError(f"dataset.options.source={source!r}: expected one of {list(SOURCES)}")
    if source == "tfds" and not options.get("tfds_dir"):
        raise DataError("dataset.options.source=tfds needs dataset.options.tfds_dir=<TFDS data_dir> (the folder "
                        f"holding {CIFAR10}/ or {IMDB}/)")
    return source == "tfds"


def _tfds():
    try:
        import tensorflow_datasets
    except ImportError as err:
        raise DataError(f"dataset.options.source=tfds needs tensorflow-datasets ({err}); install the extra: "
                        "pip install -e '.[tfds]' (pinned: pip install -r requirements-extras.txt)") from None
    return tensorflow_datasets


def locate(options: dict, name: str) -> Path:
    """The prepared dataset's version folder under tfds_dir (DataError saying how to get it when absent)."""
    tfds_dir = Path(options["tfds_dir"]).expanduser()
    builder = _tfds().builder(name, data_dir=str(tfds_dir))
    folder = Path(builder.data_dir)
    if not builder.is_prepared():
        raise DataError(f"{folder}: no prepared TFDS {name} there (dataset.options.tfds_dir={tfds_dir}); prepare "
                        f"it with tensorflow-datasets (`tfds build {name} --file_format=array_record`, needs "
                        f"TensorFlow) or read the archive instead (dataset.options.source=archive)")
    return folder


def _records(folder: Path, name: str, split: str, options: dict) -> list[dict]:
    tfds = _tfds()
    try:
        source = tfds.data_source(name, split=split, data_dir=str(Path(options["tfds_dir"]).expanduser()),
                                  download=False)
    except NotImplementedError as err:  # prepared as tfrecord: no random access without TensorFlow
        raise DataError(f"{folder}: TFDS {name} is not in a random-access format ({err}); prepare it again with "
                        f"--file_format=array_record") from None
    return [r for i in range(0, len(source), READ_CHUNK)
            for r in source.__getitems__(range(i, min(i + READ_CHUNK, len(source))))]


def cifar10(folder: Path, split: str, options: dict) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3072) uint8 rows laid out as the archive's (R plane, G plane, B plane) and (N,) int32 labels, in
    the archive's order."""
    records = _records(folder, CIFAR10, split, options)
    position = {}
    for r in records:
        prefix, _, index = r["id"].decode().rpartition("_")
        if prefix != split or not index.isdigit():
            raise DataError(f"{folder}: {split} record id {r['id']!r} is not '{split}_<index>' (not TFDS cifar10?)")
        position[int(index)] = r
    if sorted(position) != list(range(len(records))):
        raise DataError(f"{folder}: {split} ids are not 0..{len(records) - 1} (duplicates or gaps): incomplete data")
    ordered = [position[i] for i in range(len(records))]
    images = np.stack([r["image"] for r in ordered]).astype(np.uint8)
    if images.shape[1:] != (32, 32, 3):
        raise DataError(f"{folder}: {split} images have shape {images.shape[1:]}, expected (32, 32, 3)")
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1), np.array([r["label"] for r in ordered], np.int32)


def imdb(folder: Path, split: str, options: dict) -> tuple[list[str], np.ndarray]:
    """(reviews, int32 labels), negative reviews first, each class sorted by text."""
    reviews = []
    for i, r in enumerate(_records(folder, IMDB, split, options)):
        try:
            text = r["text"].decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{folder}: {split} record {i} is not valid UTF-8 ({e.reason} at byte {e.start})") from None
        # the archive reader opens files in text mode, which turns \r\n and \r into \n
        reviews.append((int(r["label"]), text.replace("\r\n", "\n").replace("\r", "\n")))
    if any(label not in (0, 1) for label, _ in reviews):
        raise DataError(f"{folder}: {split} labels outside 0..1 (not TFDS imdb_reviews?)")
    reviews.sort()
    return [text for _, text in reviews], np.array([label for label, _ in reviews], np.int32)
