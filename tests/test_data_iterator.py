"""BatchIterator: determinism, exact resume, exactly-once evaluation, process slicing, prefetch behaviour."""

import numpy as np
import pytest

from s5lra.data import BatchIterator, DataError, Split
from s5lra.data import iterator as iterator_module
from s5lra.data.iterator import prefetched


def make_split(n=23, length=5):
    inputs = (np.arange(n * length) % 250).reshape(n, length).astype(np.uint8)
    inputs[:, 0] = np.arange(n)  # row id in the first position
    return Split(inputs=inputs, lengths=np.arange(n, dtype=np.int32) % length + 1,
                 labels=np.arange(n, dtype=np.int32) % 3)


def ids(batches):
    return [b["inputs"][:, 0].tolist() for b in batches]


def test_training_epochs_are_shuffled_deterministically_and_drop_the_tail():
    split = make_split()
    it = BatchIterator(split, 4, train=True, seed=1)
    assert len(it) == 5
    e0 = list(it.epoch(0))
    assert len(e0) == 5 and all(b["inputs"].shape == (4, 5) for b in e0)
    assert ids(e0) == ids(BatchIterator(split, 4, train=True, seed=1).epoch(0))
    assert ids(e0) != ids(it.epoch(1)) and ids(e0) != ids(BatchIterator(split, 4, train=True, seed=2).epoch(0))
    flat = sum(ids(e0), [])
    assert len(set(flat)) == 20  # a permutation, minus the dropped partial batch
    b = e0[0]
    rows = np.array(b["inputs"][:, 0])
    assert b["labels"].tolist() == (rows % 3).tolist() and b["lengths"].tolist() == (rows % 5 + 1).tolist()
    assert b["weights"].tolist() == [1, 1, 1, 1] and b["labels"].dtype == np.int32
    assert b["weights"].dtype == np.float32 and b["lengths"].dtype == np.int32


def test_resume_replays_the_rest_of_the_epoch_exactly():
    split = make_split()
    full = ids(BatchIterator(split, 4, train=True, seed=5).epoch(3))
    resumed = ids(BatchIterator(split, 4, train=True, seed=5).epoch(3, start_step=2))
    assert resumed == full[2:]
    assert list(BatchIterator(split, 4, train=True).epoch(0, start_step=5)) == []
    with pytest.raises(DataError, match="start_step=6"):
        BatchIterator(split, 4, train=True).epoch(0, start_step=6)


def test_evaluation_sees_every_example_exactly_once():
    split = make_split()
    batches = list(BatchIterator(split, 4, train=False).epoch())
    assert len(batches) == 6 and all(b["inputs"].shape == (4, 5) for b in batches)
    weights = np.concatenate([b["weights"] for b in batches])
    rows = np.concatenate([b["inputs"][:, 0] for b in batches])
    assert weights.sum() == 23 and sorted(rows[weights == 1].tolist()) == list(range(23))
    last = batches[-1]
    assert last["weights"].tolist() == [1, 1, 1, 0] and last["lengths"][3] > 0  # padding row is real data


def test_process_slices_partition_each_global_batch():
    split = make_split()
    whole = list(BatchIterator(split, 6, train=False).epoch())
    parts = [list(BatchIterator(split, 6, train=False, process_index=i, process_count=3).epoch()) for i in range(3)]
    for step, batch in enumerate(whole):
        for key in batch:
            joined = np.concatenate([parts[i][step][key] for i in range(3)])
            assert np.array_equal(joined, batch[key])
    with pytest.raises(DataError, match="does not divide"):
        BatchIterator(split, 4, train=True, process_count=3)


def test_dual_inputs_and_small_splits():
    split = Split(inputs=np.zeros((3, 2, 7), np.uint8), lengths=np.ones((3, 2), np.int32),
                  labels=np.zeros(3, np.int32))
    (batch,) = BatchIterator(split, 3, train=True).epoch(0)
    assert batch["inputs"].shape == (3, 2, 7) and batch["lengths"].shape == (3, 2)
    with pytest.raises(DataError, match="fewer than one batch"):
        BatchIterator(split, 4, train=True)


def test_prefetch_thread_stops_with_the_consumer_and_forwards_errors(monkeypatch):
    split = make_split(n=400)
    it = BatchIterator(split, 4, train=True)
    gen = prefetched(lambda: it.epoch(0), 2)
    next(gen)
    gen.close()  # joins the background thread
    assert not any(t.name == "s5lra-prefetch" for t in __import__("threading").enumerate())

    def boom(self, rows, n_real):
        raise RuntimeError("disk went away")

    monkeypatch.setattr(iterator_module.BatchIterator, "batch", boom)
    with pytest.raises(RuntimeError, match="disk went away"):
        list(prefetched(lambda: it.epoch(0), 2))
