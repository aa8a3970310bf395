"""LRA data: one reader per task, the ListOps generator, a processed-array cache, and a batch iterator.

    from s5lra.data import load_task, BatchIterator
    data = load_task("listops", "data")            # TaskData: spec, splits, vocab, skipped, fingerprint, truncation
    for batch in BatchIterator(data.splits["train"], 50, train=True, seed=0).epoch(3):
        ...                                        # dict of NumPy arrays: inputs, lengths, labels, weights
"""

from s5lra.errors import DataError
from s5lra.data.fingerprint import fingerprint_changes
from s5lra.data.iterator import BatchIterator
from s5lra.data.tasks import TASKS, Split, TaskData, TaskSpec, load_task

__all__ = ["TASKS", "BatchIterator", "DataError", "Split", "TaskData", "TaskSpec", "fingerprint_changes", "load_task"]
