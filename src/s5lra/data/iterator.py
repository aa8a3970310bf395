"""Batches for training and evaluation, deterministic and resumable; `prefetched` runs any iterator ahead on a
background thread (the training loop uses it to put batches on the devices).

Training: each epoch visits a permutation drawn from (seed, epoch) and drops the last partial batch, so
(epoch, step) pins the exact batch and a resumed run sees what an uninterrupted one would. Evaluation: every
example exactly once in order; the last batch is filled up with zero-weight copies of its first row (real
data, so no model sees an empty sequence), keeping shapes static. With several processes each one gets its
contiguous rows of every global batch.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator

import numpy as np

from s5lra.errors import DataError
from s5lra.data.tasks import Split


class BatchIterator:
    """Batches of one split as dicts of NumPy arrays: inputs (stored dtype: uint8/uint16 ids or uint8
    pixels), lengths int32, labels int32, weights float32 (1 real, 0 padding)."""

    def __init__(self, split: Split, batch_size: int, *, train: bool, seed: int = 0, process_index: int = 0,
                 process_count: int = 1):
        if batch_size % process_count:
            raise DataError(f"batch size {batch_size} does not divide over {process_count} processes")
        if train and len(split) < batch_size:
            raise DataError(f"the training split has {len(split)} examples, fewer than one batch of {batch_size}")
        self.split, self.batch_size, self.train, self.seed = split, batch_size, train, seed
        self.local = slice(process_index * batch_size // process_count,
                           (process_index + 1) * batch_size // process_count)

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.split)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """The example order of an epoch (a permutation drawn from (seed, epoch) when training)."""
        n = len(self.split)
        return np.random.default_rng([self.seed, epoch]).permutation(n) if self.train else np.arange(n)

    def batch(self, rows: np.ndarray, n_real: int) -> dict[str, np.ndarray]:
        rows = rows[self.local]
        weights = (np.arange(self.local.start, self.local.stop) < n_real).astype(np.float32)
        return {"inputs": self.split.inputs[rows], "lengths": np.asarray(self.split.lengths[rows], np.int32),
                "labels": np.asarray(self.split.labels[rows], np.int32), "weights": weights}

    def epoch(self, epoch: int = 0, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """The batches of `epoch` from `start_step` on (resume: pass the step the checkpoint stopped at)."""
        if not 0 <= start_step <= len(self):
            raise DataError(f"start_step={start_step} is outside the epoch's {len(self)} steps")
        return self._batches(epoch, start_step)

    def _batches(self, epoch: int, start_step: int) -> Iterator[dict[str, np.ndarray]]:
        order = self.order(epoch)
        for step in range(start_step, len(self)):
            rows = order[step * self.batch_size:(step + 1) * self.batch_size]
            n_real = rows.size
            if n_real < self.batch_size:
                rows = np.concatenate([rows, np.full(self.batch_size - n_real, rows[0])])
            yield self.batch(rows, n_real)


_DONE = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def prefetched(make: Callable[[], Iterator], size: int) -> Iterator:
    """Run the iterator `make()` on a daemon thread, `size` items ahead; stops when the consumer does."""
    q: queue.Queue = queue.Queue(size)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def work():
        try:
            for item in make():
                if not put(item):
                    return
            put(_DONE)
        except BaseException as e:  # handed to the consumer, raised there
            put(_Failed(e))

    thread = threading.Thread(target=work, daemon=True, name="s5lra-prefetch")
    thread.start()

    def consume():
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            stop.set()
            thread.join()

    return consume()
