"""The task's data as the training loop sees it: sizes, resumable training batches, padded evaluation batches,
and the identity of the data (vocabulary and fingerprint) that a run records and later checks.

Each process reads its own rows of every global batch (the iterator slices by process), so a multi-host
run feeds `jax.make_array_from_process_local_data` without any process holding another's rows.
"""

from __future__ import annotations

import jax
import numpy as np

from s5lra.data import BatchIterator, fingerprint_changes, load_task
from s5lra.errors import ConfigError, DataError
from s5lra.train.config import DatasetConfig

NO_TRUNCATION = ("listops",)  # cutting a ListOps expression changes its answer; Text/Retrieval truncate by design


class TaskBatches:
    """Batches of one loaded task (s5lra.data.TaskData), as stored (pixels stay uint8 until inside the model)."""

    def __init__(self, task):
        self.task = task
        self.spec = task.spec

    def _iterator(self, split: str, batch_size: int, train: bool, seed: int = 0) -> BatchIterator:
        return BatchIterator(self.task.splits[split], batch_size, train=train, seed=seed,
                             process_index=jax.process_index(), process_count=jax.process_count())

    def steps_per_epoch(self, batch_size: int) -> int:
        """floor(train size / batch size), as the official loader drops the last partial batch."""
        return len(self.task.splits["train"]) // batch_size

    def train_batches_from(self, batch_size: int, seed: int, epoch: int, start: int = 0):
        """Every training batch from batch `start` of epoch `epoch` on, epoch after epoch (each shuffled from
        (seed, epoch)): resuming at a step replays exactly the batches an uninterrupted run sees."""
        iterator = self._iterator("train", batch_size, True, seed)
        while True:
            yield from iterator.epoch(epoch, start)
            epoch, start = epoch + 1, 0

    def eval_batches(self, split: str, batch_size: int):
        """Every example of `split` once; the last batch is padded with zero-weight rows."""
        return self._iterator(split, batch_size, False).epoch()

    def example(self) -> dict:
        """One training example's inputs and lengths, to initialise parameters with the right shapes and dtypes."""
        train = self.task.splits["train"]
        return {"inputs": np.asarray(train.inputs[:1]), "lengths": np.asarray(train.lengths[:1], np.int32)}

    def majority_baseline(self, split: str = "test") -> float:
        """Accuracy of always predicting the split's most frequent class."""
        labels = np.asarray(self.task.splits[split].labels)
        return float(np.bincount(labels).max() / max(len(labels), 1))

    def identity(self) -> dict:
        """What a run records about its data: the vocabulary (ids in order) and the data's fingerprint."""
        return {"vocab": self.task.vocab, "fingerprint": self.task.fingerprint}

    def describe(self) -> str:
        """One line for the start of a run: task, split sizes, length, vocabulary, cache."""
        sizes = " / ".join(f"{s} {len(self.task.splits[s]):,}" for s in ("train", "val", "test"))
        vocab = f", {self.spec.vocab_size} tokens" if self.spec.vocab_size else ""
        truncated = {s: t["truncated"] for s, t in self.task.truncation.items() if t["truncated"]}
        cut = f"; truncated to the length: {truncated}" if truncated else ""
        return f"task {self.spec.name}: {sizes} examples, length {self.spec.seq_len}{vocab}{cut}"


def open_task(cfg: DatasetConfig, vocab: list[str] | None = None) -> TaskBatches:
    """Load the configured task (generating it only when dataset.generate asks; building caches on first use).

    vocab: a run's own vocabulary (resume, evaluation): the data is encoded with it, not rebuilt from disk.
    """
    task = load_task(cfg.name, cfg.root, generate=cfg.generate, max_len=cfg.max_len, vocab=vocab, **cfg.options)
    if cfg.name in NO_TRUNCATION:
        for split, info in task.truncation.items():
            if info["truncated"]:
                raise ConfigError(
                    f"dataset.max_len={cfg.max_len} truncates {info['truncated']} {split} examples of {cfg.name} "
                    f"(the longest has {info['longest']} tokens with <eos>); truncating changes their labels' "
                    f"meaning: use dataset.max_len >= {info['longest']}")
    return TaskBatches(task)


def check_data(saved: dict, data: TaskBatches, allow_change: bool, context: str) -> None:
    """Stop if the data differs from the run's own (fingerprint), unless allow_data_change=true."""
    changes = fingerprint_changes(saved["fingerprint"], data.task.fingerprint)
    if changes and not allow_change:
        raise DataError(f"{context}: the data differs from the run's own: " + "; ".join(changes) +
                        ". Restore the original data, or set allow_data_change=true to go on with this data.")
