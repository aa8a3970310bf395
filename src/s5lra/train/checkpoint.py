"""Checkpoints: `checkpoints/last` and `checkpoints/best`, each keeping one step.

A step folder `<kind>/<step>/` holds `state.npz` (every leaf of the TrainState: parameters, optimizer state,
BatchNorm statistics, RNG, step, each named by its path in the tree) and `record.json` (best metric, W&B run
id, training-metric window, the data's identity, and the shape and dtype of every leaf). The state is
replicated on every device (data parallelism), so process 0 writes all of it while the others wait. It
writes into a temporary folder and renames it when complete, so a crash never leaves a half-written
checkpoint. A save costs what writing the bytes costs: orbax's fixed cost (~0.25 s per save on a small CPU,
whatever the model's size) was a tenth of a fast step's loop time at one save per 2000 steps.
Before restoring, the recorded shapes are compared with the model's, so a checkpoint of another model is
refused with the first mismatching leaf named.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from s5lra.errors import CheckpointError

KINDS = ("last", "best")
STATE, RECORD = "state.npz", "record.json"


def _leaf_name(path) -> str:
    """`params/layers/ssm/B` style names for messages, the record and the state file."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _leaf_shapes(tree) -> dict:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {_leaf_name(path): list(getattr(leaf, "shape", ())) for path, leaf in flat}


def _steps(folder: Path) -> list[Path]:
    """The step folders in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


class Checkpoints:
    """The run's `checkpoints/` folder. Every process calls save (process 0 writes, all wait for it)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).absolute()

    def save(self, kind: str, state, record: dict) -> None:
        """Save `state` at its step under `kind`, replacing the previous one (no-op if that step is saved)."""
        step = int(jax.device_get(state.step))
        folder = self.directory / kind
        final = folder / str(step)
        if jax.process_index() == 0 and not final.exists():
            # the local copy of a replicated array is all of it, on every process
            flat, _ = jax.tree_util.tree_flatten_with_path(state)
            leaves = {_leaf_name(path): np.asarray(leaf.addressable_data(0)) for path, leaf in flat}
            saved = {**record, "step": step, "shapes": {k: list(v.shape) for k, v in leaves.items()},
                     "dtypes": {k: v.dtype.name for k, v in leaves.items()}}
            tmp = folder / f".{step}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            with open(tmp / STATE, "wb") as f:
                np.savez(f, **leaves)
            (tmp / RECORD).write_text(json.dumps(saved))
            os.replace(tmp, final)
            for old in _steps(folder)[:-1]:
                shutil.rmtree(old)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"checkpoint {kind} {step}")

    def latest(self, kind: str = "last") -> Path | None:
        steps = _steps(self.directory / kind)
        return steps[-1] if steps else None


def resolve(path: str | Path) -> Path:
    """A step folder, a `last`/`best` folder (its newest step) or a run's `checkpoints/` folder (its last)."""
    path = Path(path).absolute()
    if (path / "last").is_dir():
        path = path / "last"
    steps = _steps(path)
    if steps:
        return steps[-1]
    if not (path / STATE).exists():
        raise CheckpointError(f"no checkpoint at {path} (expected a step folder holding {STATE} and {RECORD})")
    return path


def read_record(path: str | Path) -> dict:
    """The JSON record of a checkpoint step folder."""
    path = resolve(path)
    try:
        return json.loads((path / RECORD).read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read the checkpoint record {path / RECORD}: {e}") from e


def restore(path: str | Path, target):
    """(state shaped and sharded like `target`, record). Refuses a checkpoint whose leaf shapes differ."""
    path = resolve(path)
    record = read_record(path)
    _check_shapes(record.get("shapes", {}), _leaf_shapes(target), path)
    flat, treedef = jax.tree_util.tree_flatten_with_path(target)
    try:
        with np.load(path / STATE) as saved:
            values = [saved[_leaf_name(p)] for p, _ in flat]
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"cannot read the checkpoint state {path / STATE}: {e}") from e
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
