"""The task registry and `load_task`: find the sources, (generate,) build or open the cache, describe the task.

Each task module provides DEFAULTS (its preprocessing knobs), `locate(root, options)`, `sources(folder,
options)` and `build(folder, options, writer)`; the generated tasks also `generate(root, options, settings,
workers)`; a module whose source folders are too big to read twice sets HASH_FOLDERS = False (see
`cache.with_content_hashes`). Everything else about a task (shape, classes, vocabulary, normalisation,
truncation, fingerprint) comes from its cache. Data is generated only when `generate` asks for it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from s5lra.data import image, listops, pathfinder, retrieval, text
from s5lra.data.cache import load_or_build, settings_key
from s5lra.data.fingerprint import fingerprint
from s5lra.data.vocab import check_vocab
from s5lra.errors import DataError

SPLITS = ("train", "val", "test")
RUNTIME_OPTIONS = ("workers",)  # change how, not what, is built: not part of the cache key


@dataclass(frozen=True)
class TaskDef:
    module: ModuleType
    fixed: dict = field(default_factory=dict)  # options a task name pins (pathx = 128 px, hard)

    @property
    def defaults(self) -> dict:
        return {**self.module.DEFAULTS, **self.fixed}


TASKS: dict[str, TaskDef] = {
    "listops": TaskDef(listops),
    "text": TaskDef(text),
    "retrieval": TaskDef(retrieval),
    "image": TaskDef(image),
    "pathfinder": TaskDef(pathfinder),
    "pathx": TaskDef(pathfinder, fixed=pathfinder.PATHX),
}


@dataclass(frozen=True)
class TaskSpec:
    """What a model needs to know about a task.

    Token tasks: inputs are integer ids < vocab_size, `<pad>` = 0. Pixel tasks (vocab_size None): inputs are
    uint8 and the model feeds (x / 255 - mean) / std with (mean, std) = normalize, one channel per position.
    dual: two documents per example (retrieval): inputs (B, 2, seq_len), lengths (B, 2).
    """

    name: str
    seq_len: int
    n_classes: int
    vocab_size: int | None
    normalize: tuple[float, float] | None = None
    dual: bool = False


@dataclass(frozen=True)
class Split:
    """One split's arrays (memory-mapped): inputs (N, L) or (N, 2, L), lengths (N,) or (N, 2) counting
    real tokens including `<eos>` (pixel tasks: L), labels (N,) int32."""

    inputs: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class TaskData:
    spec: TaskSpec
    splits: dict[str, Split]  # train, val, test (text: val is the test split, as in LRA and S4/S5)
    vocab: list[str] | None  # id -> symbol (token tasks)
    skipped: dict  # inputs left out while reading, e.g. {"unreadable_images": 1}
    cache_dir: Path
    settings: dict
    # what identifies the data (JSON-able; compare two with `fingerprint_changes`), see s5lra.data.fingerprint
    fingerprint: dict = field(default_factory=dict)
    # per split {"truncated": examples cut by max_len, "longest": longest untruncated length with <eos>}
    truncation: dict = field(default_factory=dict)


def load_task(name: str, root: str | os.PathLike, *, generate: dict | None = None, max_len: int | None = None,
              cache_dir: str | os.PathLike | None = None, rebuild: bool = False, vocab: list[str] | None = None,
              **options) -> TaskData:
    """Load task `name` from the data under `root`, building its cache on first use.

    generate: generator settings (listops, pathfinder, pathx); the data is generated first if missing. Without
    it nothing is generated: missing data is a DataError saying how to get it.
    max_len: padded sequence length of token tasks (None: the task's standard length).
    vocab: a run's own vocabulary (id -> symbol, as TaskData.vocab): encode with it instead of the one built
    from the data (see s5lra.data.vocab; DataError naming file:line when the data holds a symbol it lacks).
    cache_dir: where caches live (default `<root>/cache`). Other options: the task's knobs, see DEFAULTS
    in its module (e.g. min_freq for text, resolution/difficulty for pathfinder); `workers` for builds.
    """
    options = check_settings(name, max_len=max_len, generate=generate, **options)
    task = TASKS[name]
    root = Path(root).expanduser()
    if generate is not None:
        task.module.generate(root, options, dict(generate), options.get("workers"))
    folder = task.module.locate(root, options)
    settings = {k: v for k, v in options.items() if k not in RUNTIME_OPTIONS}
    settings["source"] = os.path.relpath(folder, root)
    cache_root = Path(cache_dir).expanduser() if cache_dir else root / "cache"
    sources = task.module.sources(folder, options)
    hash_folders = getattr(task.module, "HASH_FOLDERS", True)

    def load(settings: dict, options: dict):
        return load_or_build(cache_root, name, settings, root, sources,
                             lambda writer: task.module.build(folder, options, writer), rebuild, hash_folders)

    cache_folder, meta, arrays = load(settings, options)
    if vocab is not None:
        if meta.get("vocab") is None:
            raise DataError(f"vocab: task {name!r} has no vocabulary (it is an image task); pass vocab=None")
        vocab = check_vocab(vocab)
        if vocab != meta["vocab"]:  # the data's own vocabulary differs: a cache encoded with the given one
            digest = hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:16]
            cache_folder, meta, arrays = load({**settings, "vocab_sha256": digest}, {**options, "vocab": vocab})
    return _task_data(name, cache_folder, meta, arrays)


def check_settings(name: str, *, max_len: int | None = None, generate: dict | None = None, **options) -> dict:
    """Check a task's settings without reading any data (DataError naming the setting); returns its options
    with the defaults filled in. Each task module may check its option values (`check(options)`) and its
    generator settings (`check_generate(generate)`)."""
    if name not in TASKS:
        raise DataError(f"dataset.name={name!r}: unknown task; known: {', '.join(TASKS)}")
    task = TASKS[name]
    options = _options(name, task, max_len, options)
    if hasattr(task.module, "check"):
        task.module.check(options)
    if generate is not None:
        if not hasattr(task.module, "check_generate"):
            raise DataError(f"dataset.generate: task {name!r} has no generator (only listops, pathfinder, pathx)")
        task.module.check_generate(dict(generate))
    return options


def _options(name: str, task: TaskDef, max_len: int | None, options: dict) -> dict:
    known = set(task.module.DEFAULTS) | set(RUNTIME_OPTIONS)
    unknown = sorted(set(options) - known)
    if unknown:
        raise DataError(f"unknown option(s) {unknown} for task {name!r}; known: {sorted(known)}")
    pinned = {k: v for k, v in options.items() if k in task.fixed and v != task.fixed[k]}
    if pinned:
        raise DataError(f"task {name!r} fixes {task.fixed}; got {pinned} (use task 'pathfinder' for other settings)")
    merged = {**task.defaults, **options}
    if max_len is not None:
        if "max_len" not in merged:
            raise DataError(f"max_len={max_len}: task {name!r} has a fixed length (it is an image task)")
        if not isinstance(max_len, int) or max_len < 2:
            raise DataError(f"max_len={max_len!r}: expected an integer >= 2 (room for one token and <eos>)")
        merged["max_len"] = max_len
    return merged


def _task_data(name: str, folder: Path, meta: dict, arrays: dict[str, np.ndarray]) -> TaskData:
    splits = {s: Split(*(arrays[f"{s}.{f}"] for f in ("inputs", "lengths", "labels"))) for s in meta["splits"]}
    for alias, target in meta.get("aliases", {}).items():
        splits[alias] = splits[target]
    vocab = meta.get("vocab")
    normalize = meta.get("normalize")
    spec = TaskSpec(name=name, seq_len=meta["seq_len"], n_classes=meta["n_classes"],
                    vocab_size=len(vocab) if vocab else None,
                    normalize=tuple(normalize) if normalize else None, dual=meta.get("dual", False))
    truncation = meta.get("truncation") or {s: {"truncated": 0, "longest": spec.seq_len} for s in meta["splits"]}
    for alias, target in meta.get("aliases", {}).items():
        truncation[alias] = truncation[target]
    return TaskData(spec=spec, splits={s: splits[s] for s in SPLITS}, vocab=vocab,
                    skipped=meta.get("skipped", {}), cache_dir=folder, settings=meta["settings"],
                    fingerprint=fingerprint(meta, settings_key(name, meta["settings"])),
                    truncation={s: truncation[s] for s in SPLITS})
