"""Checkpoints: `checkpoints/last` (the two newest saves) and `checkpoints/best` (the newest), one folder per step.

A step folder `<kind>/<step>/` holds `state.npz` (every leaf of the TrainState: parameters, optimizer state,
BatchNorm statistics, RNG, step, each named by its path in the tree) and `record.json` (best metric, W&B run
id, training-metric window, the data's identity, when it was saved, and the shape and dtype of every leaf).
The state is replicated on every device (data parallelism), so process 0 writes all of it while the others
wait. A save is built in a temporary folder and renamed into place when complete (s5lra.atomic), so a crash
or a full disk never leaves a half-written checkpoint; `last` keeps two saves so that one damaged file is never
the only copy. "Newest" means last written (`saved_at` in the record), not the highest step: a run resumed
from an earlier checkpoint moves the abandoned branch's later checkpoints aside (`abandon_after`).
A save costs what writing the bytes costs (~6 ms on a small CPU; orbax's fixed ~0.25 s per save was a tenth
of a fast step's loop time). Before restoring, the recorded shapes are compared with the model's, so a
checkpoint of another model is refused with the first mismatching leaf named.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zipfile
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from s5lra.atomic import building, remove
from s5lra.errors import CheckpointError, StorageError

log = logging.getLogger("s5lra")

KINDS = ("last", "best")
KEEP = {"last": 2, "best": 1}
STATE, RECORD = "state.npz", "record.json"
ABANDONED = "abandoned"  # checkpoints/abandoned/<time>/<kind>/<step>: a branch that a resume left behind


def leaf_name(path) -> str:
    """`params/layers/ssm/B` style names for messages, the record and the state file."""
    return jax.tree_util.keystr(path, simple=True, separator="/")


def _leaf_shapes(tree) -> dict:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {leaf_name(path): list(getattr(leaf, "shape", ())) for path, leaf in flat}


def _saved_at(folder: Path) -> float:
    """When a step folder was written (its record's time; a record without one counts as oldest)."""
    try:
        return float(json.loads((folder / RECORD).read_text()).get("saved_at", 0.0))
    except (OSError, ValueError, AttributeError):
        return 0.0


def saves(folder: Path) -> list[Path]:
    """The step folders of a `last`/`best` folder, newest written first."""
    if not folder.is_dir():
        return []
    steps = [p for p in folder.iterdir() if p.name.isdigit()]
    return sorted(steps, key=lambda p: (_saved_at(p), int(p.name)), reverse=True)


class Checkpoints:
    """The run's `checkpoints/` folder. Every process calls save (process 0 writes, all wait for it)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).absolute()

    def save(self, kind: str, state, record: dict) -> Path:
        """Save `state` at its step under `kind` (replacing a save of the same step) and drop the oldest saves
        beyond KEEP[kind]. An I/O error (e.g. a full disk) raises StorageError naming the folder; the partial
        save is removed and the previous saves are untouched."""
        step = int(jax.device_get(state.step))
        final = self.directory / kind / str(step)
        if jax.process_index() == 0:
            # the local copy of a replicated array is all of it, on every process
            flat, _ = jax.tree_util.tree_flatten_with_path(state)
            leaves = {leaf_name(path): np.asarray(leaf.addressable_data(0)) for path, leaf in flat}
            saved = {**record, "step": step, "saved_at": time.time(),
                     "shapes": {k: list(v.shape) for k, v in leaves.items()},
                     "dtypes": {k: v.dtype.name for k, v in leaves.items()}}
            try:
                with building(final) as tmp:
                    with open(tmp / STATE, "wb") as f:
                        np.savez(f, **leaves)
                    (tmp / RECORD).write_text(json.dumps(saved))
                for old in saves(final.parent)[KEEP[kind]:]:
                    remove(old)
            except OSError as err:
                raise StorageError(f"cannot save checkpoint {final}: {err.strerror or err}") from err
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"checkpoint {kind} {step}")
        return final

    def latest(self, kind: str = "last") -> Path | None:
        found = saves(self.directory / kind)
        return found[0] if found else None

    def abandon_after(self, step: int) -> Path | None:
        """Move every save past `step` to `checkpoints/abandoned/<time>/<kind>/<step>`: the run continues from
        `step` on another branch, and nothing may resume the old one by mistake. Returns that folder."""
        later = [p for kind in KINDS for p in saves(self.directory / kind) if int(p.name) > step]
        if not later:
            return None
        aside = self.directory / ABANDONED / time.strftime("%Y-%m-%d_%H-%M-%S")
        for p in later:
            target = aside / p.parent.name / p.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(p, target)
        return aside


def resolve(path: str | Path) -> Path:
    """A step folder, a `last`/`best` folder (its newest save) or a run's `checkpoints/` folder (its newest
    `last`)."""
    path = Path(path).absolute()
    if (path / "last").is_dir():
        path = path / "last"
    found = saves(path)
    if found:
        return found[0]
    if not (path / STATE).exists():
        raise CheckpointError(f"no checkpoint at {path} (expected a step folder holding {STATE} and {RECORD})")
    return path


def read_record(path: str | Path) -> dict:
    """The JSON record of a checkpoint step folder."""
    path = resolve(path)
    try:
        record = json.loads((path / RECORD).read_text())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        return record
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read the checkpoint record {path / RECORD}: {e}{_others(path)}") from None


def _damage(path: Path) -> str | None:
    """What is wrong with a checkpoint step folder (None: intact): its record must read, and every leaf the
    record lists must be in state.npz with a good CRC (reading it all: the cost of one restore)."""
    try:
        record = json.loads((path / RECORD).read_text())
        shapes = record["shapes"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"cannot read {path / RECORD}: {e}"
    try:
        with zipfile.ZipFile(path / STATE) as z:
            bad = z.testzip()
            names = {n.removesuffix(".npy") for n in z.namelist()}
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        return f"cannot read {path / STATE}: {e}"
    if bad is not None:
        return f"{path / STATE} is damaged (bad CRC in {bad})"
    missing = sorted(set(shapes) - names)
    return f"{path / STATE} is damaged (leaf {missing[0]} missing)" if missing else None


def verify(path: str | Path) -> dict:
    """The record of an intact checkpoint; a damaged one raises CheckpointError naming the file and the run's
    intact alternatives."""
    path = resolve(path)
    damage = _damage(path)
    if damage:
        raise CheckpointError(f"damaged checkpoint: {damage}{_others(path)}")
    return read_record(path)


def newest_intact(folder: Path) -> tuple[Path, dict] | None:
    """The newest save in a `last`/`best` folder that is intact, logging each damaged one it passes over."""
    for path in saves(folder):
        damage = _damage(path)
        if damage is None:
            return path, read_record(path)
        log.warning("skipping a damaged checkpoint: %s", damage)
    return None


def _others(path: Path) -> str:
    """'; intact checkpoints of this run: ...' for messages about a damaged one."""
    root = path.parent.parent
    if path.parent.name not in KINDS:
        return ""
    intact = [str(p) for kind in KINDS for p in saves(root / kind) if p != path and _damage(p) is None]
    return f"; intact checkpoints of this run: {', '.join(intact)}" if intact else "; no intact checkpoint remains"


def restore(path: str | Path, target):
    """(state shaped and sharded like `target`, record). Refuses a checkpoint whose leaf shapes differ."""
    path = resolve(path)
    record = read_record(path)
    _check_shapes(record.get("shapes", {}), _leaf_shapes(target), path)
    flat, treedef = jax.tree_util.tree_flatten_with_path(target)
    try:
        with np.load(path / STATE) as saved:
            values = [saved[leaf_name(p)] for p, _ in flat]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"cannot read the checkpoint state {path / STATE}: {e}{_others(path)}") from None
    leaves = [jax.make_array_from_callback(leaf.shape, leaf.sharding, lambda index, v=value, t=leaf: _as(v, t)[index])
              for (_, leaf), value in zip(flat, values)]
    return jax.tree_util.tree_unflatten(treedef, leaves), record


def _as(value: np.ndarray, like) -> np.ndarray:
    """The saved bytes in the target leaf's dtype (NumPy stores extension dtypes such as bfloat16 as raw void)."""
    if value.dtype.kind == "V":
        return value.view(like.dtype)
    return value.astype(like.dtype, copy=False)


def _check_shapes(saved: dict, expected: dict, path: Path) -> None:
    hint = "it was saved with other model or optimizer settings; start a fresh run or restore the original config"
    for leaf, shape in expected.items():
        if leaf not in saved:
            raise CheckpointError(f"checkpoint {path} has no leaf {leaf} (shape {tuple(shape)}): {hint}")
        if list(saved[leaf]) != list(shape):
            raise CheckpointError(
                f"checkpoint {path} does not fit this model: {leaf} has shape {tuple(saved[leaf])} there "
                f"but {tuple(shape)} here; {hint}"
            )
    extra = sorted(set(saved) - set(expected))
    if extra:
        raise CheckpointError(f"checkpoint {path} has leaves this model lacks, e.g. {extra[0]}: {hint}")
