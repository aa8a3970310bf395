"""Image (CIFAR-10 pickles) and Pathfinder/Path-X (PNGs + text or .npy metadata) readers on small fixtures."""

import os

import numpy as np
import pytest
from PIL import Image

from s5lra.data import DataError, load_task
from s5lra.data import pathfinder

from helpers import write_cifar, write_pathfinder


def pil_gray(row):
    rgb = row.reshape(3, 32, 32).transpose(1, 2, 0)
    return np.asarray(Image.fromarray(rgb, "RGB").convert("L")).reshape(-1)


def test_image_luma_equals_pillow_and_splits(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    data = load_task("image", tmp_path)
    spec = data.spec
    assert (spec.seq_len, spec.n_classes, spec.vocab_size) == (1024, 10, None)
    assert spec.normalize == pytest.approx((122.6 / 255, 61.0 / 255))
    train_x = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_y = sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert len(data.splits["train"]) == 45 and len(data.splits["val"]) == 5 and len(data.splits["test"]) == 10
    for i in (0, 44):
        assert np.array_equal(data.splits["train"].inputs[i], pil_gray(train_x[i]))
    assert np.array_equal(data.splits["val"].inputs[4], pil_gray(train_x[49]))  # val = last 10%
    assert data.splits["val"].labels.tolist() == train_y[45:]
    test_x, test_y = batches["test_batch"]
    assert np.array_equal(data.splits["test"].inputs[3], pil_gray(test_x[3]))
    assert data.splits["test"].labels.tolist() == test_y and data.splits["test"].inputs.dtype == np.uint8
    assert data.splits["test"].lengths.tolist() == [1024] * 10
    rand = load_task("image", tmp_path, val_split="random")
    assert rand.cache_dir != data.cache_dir and len(rand.splits["val"]) == 5
    assert not np.array_equal(rand.splits["val"].inputs, data.splits["val"].inputs)


def test_image_bad_batch(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3: not a CIFAR-10 python batch"):
        load_task("image", tmp_path)
    with pytest.raises(DataError, match="fixed length"):
        load_task("image", tmp_path, max_len=100)


def test_pathfinder_text_and_binary_metadata_empty_png_and_split(tmp_path):
    folder = write_pathfinder(tmp_path / "lra_release" / "lra_release")
    assert (folder / "metadata" / "1.npy").read_bytes().startswith(b"\x93NUMPY")
    data = load_task("pathfinder", tmp_path, workers=1)
    assert data.skipped == {"unreadable_images": 1}
    sizes = {s: len(data.splits[s]) for s in ("train", "val", "test")}
    # 12 listed: int(0.1 * 12) = 1 each for val and test; the empty PNG is dropped from its split (train)
    assert sizes == {"train": 9, "val": 1, "test": 1}
    seen = []
    for split in data.splits.values():
        x = np.asarray(split.inputs)
        assert x.dtype == np.uint8 and x.shape[1] == 1024 and (x == x[:, :1]).all()
        assert split.labels.tolist() == (x[:, 0] % 2).tolist()  # labels travel with their images
        seen += x[:, 0].tolist()
    assert sorted(seen) == [k for k in range(12) if k != 2]
    spec = data.spec
    assert (spec.seq_len, spec.n_classes, spec.vocab_size, spec.normalize) == (1024, 2, None, (0.5, 0.5))


def test_pathfinder_parallel_decode_matches_serial(tmp_path, monkeypatch):
    write_pathfinder(tmp_path)
    serial = load_task("pathfinder", tmp_path, workers=1)
    monkeypatch.setattr(pathfinder, "CHUNK", 4)
    parallel = load_task("pathfinder", tmp_path, workers=2, rebuild=True)
    assert parallel.cache_dir == serial.cache_dir  # workers are not a preprocessing setting
    assert parallel.skipped == {"unreadable_images": 1}
    assert np.array_equal(parallel.splits["train"].inputs, np.asarray(serial.splits["train"].inputs))


def test_pathx_difficulties_and_s4_layout(tmp_path):
    write_pathfinder(tmp_path / "pathfinder", side=128)  # S4: pathfinder/pathfinder128/...
    data = load_task("pathx", tmp_path, workers=1)
    assert data.spec.seq_len == 16384 and data.splits["train"].inputs.shape == (9, 16384)
    with pytest.raises(DataError, match="fixes"):
        load_task("pathx", tmp_path, resolution=32)
    write_pathfinder(tmp_path, difficulty="curv_baseline")
    assert len(load_task("pathfinder", tmp_path, difficulty="easy", workers=1).splits["train"]) == 9
    with pytest.raises(DataError, match="difficulty='medium'"):
        load_task("pathfinder", tmp_path, difficulty="medium")
    with pytest.raises(DataError, match="curv_contour_length_9/metadata"):
        load_task("pathfinder", tmp_path, difficulty="intermediate")


def test_pathfinder_bad_metadata(tmp_path):
    folder = write_pathfinder(tmp_path)
    (folder / "metadata" / "0.npy").write_text("imgs/0 sample_0.png 0 1\n")
    with pytest.raises(DataError, match=r"metadata/0.npy:1: expected 11 space-separated fields, got 4"):
        load_task("pathfinder", tmp_path, workers=1)
    (folder / "metadata" / "0.npy").write_text("imgs/0 sample_0.png 0 x 1.0 14 4 2 0.5 1 1\n")
    with pytest.raises(DataError, match=r"metadata/0.npy:1: label 'x' is not a number"):
        load_task("pathfinder", tmp_path, workers=1)
    assert not any((tmp_path / "cache").iterdir())


def test_generator_to_reader_round_trip(tmp_path):
    pytest.importorskip("s5lra.data.pathfinder_gen")
    data = load_task("pathfinder", tmp_path, generate={"n": 10, "batch_size": 4, "progress": False}, workers=1)
    assert sorted(p.name for p in (tmp_path / "pathfinder32" / "curv_contour_length_14" / "metadata").iterdir()) \
        == ["0.npy", "1.npy", "2.npy"]
    assert {s: len(data.splits[s]) for s in ("train", "val", "test")} == {"train": 8, "val": 1, "test": 1}
    assert data.skipped == {"unreadable_images": 0}
    assert max(int(np.asarray(s.inputs).max()) for s in data.splits.values()) == 255  # markers at full intensity
    with pytest.raises(DataError, match="unknown key"):
        load_task("pathfinder", tmp_path, generate={"count": 3})
    with pytest.raises(DataError, match=r"unknown key\(s\) \['overwrite'\]"):
        load_task("pathfinder", tmp_path, generate={"n": 10, "overwrite": True})


def _members(data):
    """Split -> sorted pixel values (image k is all k, so the value names the image)."""
    return {s: sorted(np.asarray(data.splits[s].inputs)[:, 0].tolist()) for s in ("train", "val", "test")}


def test_pathfinder_splits_do_not_depend_on_which_images_are_readable(tmp_path):
    folder = write_pathfinder(tmp_path, per_batch=15)  # 30 listed: 24/3/3, sample 2 of batch 0 (k=2) empty
    Image.fromarray(np.full((32, 32), 2, np.uint8), "L").save(folder / "imgs" / "0" / "sample_2.png")
    readable = _members(load_task("pathfinder", tmp_path, workers=1))
    assert {s: len(v) for s, v in readable.items()} == {"train": 24, "val": 3, "test": 3}
    (folder / "imgs" / "0" / "sample_2.png").write_bytes(b"")  # the release's empty PNG
    (folder / "imgs" / "1" / "sample_4.png").write_bytes(b"not a png")
    damaged = load_task("pathfinder", tmp_path, workers=1)
    assert damaged.skipped == {"unreadable_images": 2}
    # every image stays in its split; the two unreadable ones (k=2, k=19) just leave theirs
    assert _members(damaged) == {s: [k for k in v if k not in (2, 19)] for s, v in readable.items()}
    other_seed = _members(load_task("pathfinder", tmp_path, workers=1, split_seed=0))
    assert other_seed != _members(damaged)


@pytest.mark.parametrize("damage", ["empty", "replace", "remove"])
def test_pathfinder_cache_notices_a_changed_image(tmp_path, damage):
    folder = write_pathfinder(tmp_path)
    built = load_task("pathfinder", tmp_path, workers=1)
    assert built.skipped == {"unreadable_images": 1}
    image = folder / "imgs" / "1" / "sample_3.png"
    if damage == "empty":
        image.write_bytes(b"")
    elif damage == "replace":  # same size, other pixels, other mtime
        size = image.stat().st_size
        Image.fromarray(np.full((32, 32), 200, np.uint8), "L").save(image)
        assert image.stat().st_size == size
        os.utime(image, ns=(1, 1))
    else:
        image.unlink()
    again = load_task("pathfinder", tmp_path, workers=1)
    values = sorted(v for s in again.splits.values() for v in np.asarray(s.inputs)[:, 0].tolist())
    if damage == "replace":
        assert again.skipped == {"unreadable_images": 1} and 200 in values and 9 not in values
    else:
        assert again.skipped == {"unreadable_images": 2} and 9 not in values
