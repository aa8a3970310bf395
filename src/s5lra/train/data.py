"""The task's data as the training loop sees it: sizes, resumable training batches, padded evaluation batches.

Each process reads its own rows of every global batch (the iterator slices by process), so a multi-host
run feeds `jax.make_array_from_process_local_data` without any process holding another's rows.
"""

from __future__ import annotations

import jax
import numpy as np

from s5lra.data import BatchIterator, load_task
from s5lra.train.config import DatasetConfig


class TaskBatches:
    """Batches of one loaded task (s5lra.data.TaskData), as stored (pixels stay uint8 until on device)."""

    def __init__(self, task):
        self.task = task
        self.spec = task.spec

    def _iterator(self, split: str, batch_size: int, train: bool, seed: int = 0) -> BatchIterator:
        return BatchIterator(self.task.splits[split], batch_size, train=train, seed=seed,
                             process_index=jax.process_index(), process_count=jax.process_count())

    def steps_per_epoch(self, batch_size: int) -> int:
        """floor(train size / batch size), as the official loader drops the last partial batch."""
        return len(self.task.splits["train"]) // batch_size

    def train_batches(self, batch_size: int, seed: int, epoch: int, start: int = 0):
        """Epoch `epoch` (shuffled from (seed, epoch)) from batch `start` on: resuming replays the same batches."""
        return self._iterator("train", batch_size, True, seed).epoch(epoch, start)

    def eval_batches(self, split: str, batch_size: int):
        """Every example of `split` once; the last batch is padded with zero-weight rows."""
        return self._iterator(split, batch_size, False).epoch()

    @property
    def normalize(self):
        """(mean, std) of pixel tasks, applied on device by the steps; None for token tasks."""
        return self.spec.normalize if self.spec.vocab_size is None else None

    def example(self) -> dict:
        """One training example, to initialise parameters with the right shapes and dtypes."""
        train = self.task.splits["train"]
        return {"inputs": np.asarray(train.inputs[:1]), "lengths": np.asarray(train.lengths[:1], np.int32)}

    def majority_baseline(self, split: str = "test") -> float:
        """Accuracy of always predicting the split's most frequent class."""
        labels = np.asarray(self.task.splits[split].labels)
        return float(np.bincount(labels).max() / max(len(labels), 1))


def open_task(cfg: DatasetConfig) -> TaskBatches:
    """Load (generating or building caches on first use) the configured task."""
    return TaskBatches(load_task(cfg.name, cfg.root, generate=cfg.generate, max_len=cfg.max_len, **cfg.options))
