"""TFDS-prepared cifar10 / imdb_reviews (array_record, written here by tensorflow-datasets' own writer without
TensorFlow) give the image and text tasks the same examples as the original archives."""

import pickle

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets", reason="the tfds extra (requirements-extras.txt)")
from tensorflow_datasets.datasets.imdb_reviews.imdb_reviews_dataset_builder import Builder as ImdbBuilder  # noqa: E402
from tensorflow_datasets.image_classification.cifar import Cifar10  # noqa: E402

from s5lra.data import DataError, load_task  # noqa: E402

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _prepare(builder_class, tfds_dir, splits):
    """Run TFDS's writer (shuffling, sharding, dataset_info.json) on in-memory examples: what
    `tfds build --file_format=array_record` leaves on disk, minus the download."""

    class Local(builder_class, skip_registration=True):
        name = builder_class.name  # the stock dataset's folder name
        __module__ = builder_class.__module__  # where TFDS looks for the dataset's package files

        def _split_generators(self, dl_manager):
            return {split: iter(examples) for split, examples in splits.items()}

    builder = Local(data_dir=str(tfds_dir), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """The same 60 random images as CIFAR-10 python pickles (archive) and as TFDS cifar10."""
    base = tmp_path_factory.mktemp("cifar")
    rng = np.random.default_rng(0)
    folder = base / "archive" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    examples = {"train": [], "test": []}
    for name in BATCHES:
        data = rng.integers(0, 256, (10, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, 10).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"labels": labels, b"data": data}, f)
        split = "test" if name == "test_batch" else "train"
        for row, label in zip(data, labels):
            i = len(examples[split])
            image = Image.fromarray(row.reshape(3, 32, 32).transpose(1, 2, 0))
            examples[split].append((i, {"id": f"{split}_{i:05d}", "image": image, "label": label}))
    _prepare(Cifar10, base / "tfds", examples)
    return base


REVIEWS = {  # file name -> text; file-name order differs from text order within each class
    ("train", "neg", "0_1.txt"): "Zero stars.\nTruly awful <br /> film.",
    ("train", "neg", "1_2.txt"): "An awful film, long and dull.",
    ("train", "neg", "2_3.txt"): "Bad. Très mauvais; dull",
    ("train", "pos", "0_9.txt"): "Wonderful film, lovely acting.",
    ("train", "pos", "1_10.txt"): "A lovely film.\nGreat fun — see it",
    ("test", "neg", "0_2.txt"): "Dull, dull film.",
    ("test", "neg", "1_1.txt"): "Awful acting and a bad ending.",
    ("test", "pos", "0_8.txt"): "Lovely, great film!",
    ("test", "pos", "1_7.txt"): "Fun film; great ending",
}


@pytest.fixture(scope="module")
def imdb(tmp_path_factory):
    base = tmp_path_factory.mktemp("imdb")
    examples = {"train": [], "test": []}
    for (split, label, name), text in REVIEWS.items():
        path = base / "archive" / "aclImdb" / split / label / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        examples[split].append((f"aclImdb/{split}/{label}/{name}", {"text": text, "label": label}))
    _prepare(ImdbBuilder, base / "tfds", examples)
    return base


def _tfds_options(base):
    return {"source": "tfds", "tfds_dir": str(base / "tfds")}


def test_cifar10_from_tfds_equals_archive(cifar):
    archive = load_task("image", cifar / "archive")
    prepared = load_task("image", cifar / "from_tfds", **_tfds_options(cifar))
    assert prepared.cache_dir != archive.cache_dir and prepared.spec == archive.spec
    for split in ("train", "val", "test"):
        a, b = archive.splits[split], prepared.splits[split]
        assert len(b) == {"train": 45, "val": 5, "test": 10}[split]
        assert np.array_equal(a.inputs, b.inputs) and np.array_equal(a.labels, b.labels)
        assert np.array_equal(a.lengths, b.lengths) and b.inputs.dtype == np.uint8
    shuffled = load_task("image", cifar / "random", val_split="random", **_tfds_options(cifar))
    assert np.array_equal(shuffled.splits["val"].inputs,
                          load_task("image", cifar / "archive", val_split="random").splits["val"].inputs)


def test_imdb_from_tfds_equals_archive_up_to_order_within_a_class(imdb):
    archive = load_task("text", imdb / "archive", max_len=24, min_freq=1)
    prepared = load_task("text", imdb / "from_tfds", max_len=24, min_freq=1, **_tfds_options(imdb))
    assert prepared.vocab == archive.vocab and prepared.spec == archive.spec
    for split in ("train", "test"):
        a, b = archive.splits[split], prepared.splits[split]
        assert b.labels.tolist() == a.labels.tolist() == sorted(a.labels.tolist())  # neg first, as the archive
        for label in (0, 1):
            rows = [sorted(map(tuple, np.column_stack([s.inputs, s.lengths])[s.labels == label].tolist()))
                    for s in (a, b)]
            assert rows[0] == rows[1]
        assert not np.array_equal(a.inputs, b.inputs)  # file-name order is not recoverable from TFDS records


def test_tfds_source_errors(tmp_path, cifar):
    with pytest.raises(DataError, match="needs dataset.options.tfds_dir"):
        load_task("image", tmp_path, source="tfds")
    with pytest.raises(DataError, match="source='tf': expected one of"):
        load_task("image", tmp_path, source="tf", tfds_dir=str(tmp_path))
    with pytest.raises(DataError, match="no prepared TFDS imdb_reviews there"):
        load_task("text", tmp_path, source="tfds", tfds_dir=str(cifar / "tfds"))
