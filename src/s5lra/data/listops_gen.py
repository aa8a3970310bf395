"""ListOps generator: LRA's algorithm (`lra_benchmarks/data/listops.py`), seeded, parallel, and fast.

Sampling is the original's, draw for draw: at depth < max_depth a node is a leaf when `random() > 0.25`
(always at max_depth); a leaf is a uniform digit; an operator node draws its argument count uniformly in
[2, max_args], samples its arguments at depth + 1, then draws its operator uniformly from MIN/MAX/MED/SM.
A tree is kept iff min_length < length < max_length (length = tokens without parentheses); exact repeats
are dropped; examples are split in order (train, val, test). Values: MIN/MAX, MED = int(numpy.median),
SM = sum mod 10. Text: the original's nested binary tuples printed with parentheses, written as TSV with a
`Source<TAB>Target` header.

Two deliberate, distribution-preserving speedups: a tree is built directly as its string and value (no
tuples), and a tree is abandoned as soon as it reaches max_length tokens (it would be rejected anyway).
Work is cut into shards of at most SHARD examples, shard s drawing from its own stream seeded by (seed, s),
so the output depends on the seed and counts only, never on the number of workers. The folder is written as a
temporary sibling and renamed into place when complete (`atomic.building`); workers stop with the parent.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from s5lra.atomic import building
from s5lra.data.workers import worker_pool
from s5lra.errors import DataError

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
VALUE_P = 0.25
SHARD = 1000
MAX_MISSES = 1_000_000  # consecutive rejections before giving up (the defaults accept ~8%)
SPLITS = ("train", "val", "test")
FOLDER = "listops-1000"
SETTINGS_FILE = "generator.json"


@dataclass(frozen=True)
class ListOpsSettings:
    """The generator's knobs; defaults are LRA's (96k/2k/2k examples of 501..1999 tokens)."""

    n_train: int = 96_000
    n_val: int = 2_000
    n_test: int = 2_000
    max_depth: int = 10
    max_args: int = 10
    min_length: int = 500
    max_length: int = 2000
    seed: int = 0

    def check(self) -> None:
        """DataError unless some tree satisfies the settings and the sizes make sense."""
        if self.max_length - self.min_length < 2 or self.max_depth < 2 or self.max_args < 2:
            raise DataError(f"no ListOps tree can satisfy {self} (need max_length - min_length >= 2, "
                            "max_depth >= 2, max_args >= 2)")
        if min(self.n_train, self.n_val, self.n_test) < 0:
            raise DataError(f"{self}: the split sizes must not be negative")


class _TooLong(Exception):
    pass


def _apply(op: str, args: list[int]) -> int:
    if op == "[MIN":
        return min(args)
    if op == "[MAX":
        return max(args)
    if op == "[SM":
        return sum(args) % 10
    s = sorted(args)  # [MED: numpy.median, then int() (truncation; values are non-negative)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) // 2


def sample_tree(rng: random.Random, s: ListOpsSettings) -> tuple[str, int, int] | None:
    """One tree as (text, value, length), or None once it reaches max_length tokens."""
    budget = [s.max_length]  # tokens left before the tree is too long

    def node(depth: int) -> tuple[str, int]:
        r = rng.random() if depth < s.max_depth else 1
        budget[0] -= 1
        if budget[0] <= 0:
            raise _TooLong
        if r > VALUE_P:
            value = rng.choice(range(10))
            return str(value), value
        budget[0] -= 1  # the closing bracket
        n_args = rng.randint(2, s.max_args)
        texts, values = zip(*(node(depth + 1) for _ in range(n_args)))
        op = rng.choice(OPERATORS)
        # ((op, a1), a2), ...), END) printed with parentheses around every tuple
        text = "( " * (n_args + 1) + op + " " + texts[0] + " )"
        text += "".join(" " + t + " )" for t in texts[1:]) + " ] )"
        return text, _apply(op, list(values))

    try:
        text, value = node(1)
    except _TooLong:
        return None
    return text, value, s.max_length - budget[0]


def generate_shard(settings: ListOpsSettings, shard: int, n: int) -> list[tuple[str, int]]:
    """`n` distinct accepted examples from the stream of shard `shard`."""
    rng = random.Random(f"listops:{settings.seed}:{shard}")
    seen: set[str] = set()
    out = []
    misses = 0
    while len(out) < n:
        tree = sample_tree(rng, settings)
        if tree is not None and settings.min_length < tree[2] < settings.max_length and tree[0] not in seen:
            seen.add(tree[0])
            out.append(tree[:2])
            misses = 0
        else:
            misses += 1
            if misses > MAX_MISSES:
                raise DataError(f"{MAX_MISSES} ListOps trees in a row were rejected or repeats; the settings "
                                f"{settings} admit too few distinct trees for the requested counts")
    return out


def _shard_task(args: tuple) -> list[tuple[str, int]]:
    return generate_shard(*args)


def generate_examples(settings: ListOpsSettings, workers: int | None = None,
                      progress: bool = True) -> list[tuple[str, int]]:
    """All examples (train, then val, then test), distinct, deterministic in the settings."""
    total = settings.n_train + settings.n_val + settings.n_test
    workers = workers or os.cpu_count() or 1
    examples: list[tuple[str, int]] = []
    seen: set[str] = set()
    next_shard = 0
    bar = tqdm(total=total, desc="listops", unit="ex", disable=None if progress else True)
    parallel = workers > 1 and total > SHARD
    with bar, (worker_pool(workers) if parallel else contextlib.nullcontext()) as pool:
        while len(examples) < total:
            missing = total - len(examples)
            sizes = [min(SHARD, missing - i) for i in range(0, missing, SHARD)]
            tasks = [(settings, next_shard + i, size) for i, size in enumerate(sizes)]
            next_shard += len(sizes)
            results = pool.imap(_shard_task, tasks) if pool else map(_shard_task, tasks)
            before = len(examples)
            for shard_examples in results:
                added = len(examples)
                for example in shard_examples:
                    if example[0] not in seen and len(examples) < total:
                        seen.add(example[0])
                        examples.append(example)
                bar.update(len(examples) - added)
            if len(examples) == before:
                raise DataError(f"the ListOps settings {settings} admit too few distinct trees")
    return examples


def generate_listops(root: str | Path, settings: ListOpsSettings | None = None, *,
                     workers: int | None = None, progress: bool = True, overwrite: bool = False) -> Path:
    """Write `<root>/listops-1000/basic_{train,val,test}.tsv` (plus the settings as generator.json).

    The folder appears only when complete. A non-empty folder is refused unless `overwrite` is set; then it
    is replaced, also only once the new one is complete."""
    settings = settings or ListOpsSettings()
    settings.check()
    folder = Path(root).expanduser() / FOLDER
    if not overwrite and folder.is_dir() and any(folder.iterdir()):
        raise DataError(f"{folder} is not empty; pass --overwrite (overwrite=True) to replace it, or choose "
                        f"another --root")
    examples = generate_examples(settings, workers, progress)
    bounds = [0, settings.n_train, settings.n_train + settings.n_val, len(examples)]
    with building(folder) as tmp:
        for split, lo, hi in zip(SPLITS, bounds, bounds[1:]):
            with open(tmp / f"basic_{split}.tsv", "w", newline="") as f:
                writer = csv.writer(f, delimiter="\t")
                writer.writerow(["Source", "Target"])
                writer.writerows(examples[lo:hi])
        (tmp / SETTINGS_FILE).write_text(json.dumps(asdict(settings), indent=1))
    return folder
