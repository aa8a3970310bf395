"""Dataset statistics as one JSON-able dict (the schema `s5lra-data stats --json` prints)."""

from __future__ import annotations

import numpy as np

from s5lra.data.tasks import TaskData


def task_stats(data: TaskData) -> dict:
    """Per split: examples, label counts (every class), max and mean length. Lengths count real tokens
    including `<eos>` (retrieval: per document, both documents pooled; pixel tasks: the sequence length)."""
    spec = data.spec
    splits = {}
    for name, split in data.splits.items():
        lengths = np.asarray(split.lengths)
        counts = np.bincount(np.asarray(split.labels), minlength=spec.n_classes)
        splits[name] = {
            "examples": len(split),
            "label_counts": {str(label): int(n) for label, n in enumerate(counts)},
            "max_length": int(lengths.max()) if lengths.size else 0,
            "mean_length": float(lengths.mean()) if lengths.size else 0.0,
        }
    return {"task": spec.name, "n_classes": spec.n_classes, "vocab_size": spec.vocab_size,
            "seq_len": spec.seq_len, "splits": splits, "skipped": dict(data.skipped)}


def format_table(stats: dict) -> str:
    """The same numbers for people."""
    head = (f"{stats['task']}: {stats['n_classes']} classes, seq_len {stats['seq_len']}, "
            f"vocab {stats['vocab_size'] if stats['vocab_size'] is not None else '-'}")
    lines = [head, f"{'split':<6} {'examples':>9} {'max_len':>8} {'mean_len':>9}  labels"]
    for name, s in stats["splits"].items():
        labels = " ".join(f"{k}:{v}" for k, v in s["label_counts"].items())
        lines.append(f"{name:<6} {s['examples']:>9} {s['max_length']:>8} {s['mean_length']:>9.1f}  {labels}")
    if stats["skipped"]:
        lines.append("skipped: " + ", ".join(f"{k}={v}" for k, v in stats["skipped"].items()))
    return "\n".join(lines)
