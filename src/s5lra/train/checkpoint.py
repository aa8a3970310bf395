"""Checkpoints with orbax: `checkpoints/last` and `checkpoints/best`, each keeping one step.

A checkpoint holds the TrainState (parameters, optimizer state, BatchNorm statistics, RNG, step) and a JSON
record (epoch, data-iterator position, best metric, W&B run id, the shape of every state leaf). Orbax writes
into a temporary folder and renames it when complete, so a crash never leaves a half-written checkpoint.
Before restoring, the recorded shapes are compared with the model's, so a checkpoint of another model is
refused with the first mismatching leaf named.
"""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp

from s5lra.errors import CheckpointError

KINDS = ("last", "best")


def _leaf_name(path) -> str:
    """`params/layers/ssm/B` style names for messages and the record."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _leaf_shapes(tree) -> dict:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {_leaf_name(path): list(getattr(leaf, "shape", ())) for path, leaf in flat}


def _manager(directory: Path) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True, enable_async_checkpointing=False)
    return ocp.CheckpointManager(directory.absolute(), options=options)


class Checkpoints:
    """The run's `checkpoints/` folder. Every process calls save/restore (orbax coordinates the writes)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).absolute()
        self._managers = {kind: _manager(self.directory / kind) for kind in KINDS}

    def save(self, kind: str, state, record: dict) -> None:
        """Save `state` at its step under `kind`, replacing the previous one (no-op if that step is saved)."""
        manager = self._managers[kind]
        step = int(jax.device_get(state.step))
        if manager.latest_step() == step:
            return
        record = {**record, "step": step, "shapes": _leaf_shapes(state)}
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                   record=ocp.args.JsonSave(record)))
        manager.wait_until_finished()

    def latest(self, kind: str = "last") -> Path | None:
        step = self._managers[kind].latest_step()
        return None if step is None else self.directory / kind / str(step)

    def close(self) -> None:
        for manager in self._managers.values():
            manager.close()


def resolve(path: str | Path) -> Path:
    """A step folder, a `last`/`best` folder (its newest step) or a run's `checkpoints/` folder (its last)."""
    path = Path(path).absolute()
    if (path / "last").is_dir():
        path = path / "last"
    steps = sorted((p for p in path.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)) if path.is_dir() else []
    if steps:
        return steps[-1]
    if not (path / "state").exists():
        raise CheckpointError(f"no checkpoint at {path} (expected a step folder holding state/ and record/)")
    return path


def read_record(path: str | Path) -> dict:
    """The JSON record of a checkpoint step folder."""
    path = resolve(path)
    manager = _manager(path.parent)
    return manager.restore(int(path.name), args=ocp.args.Composite(record=ocp.args.JsonRestore()))["record"]


def restore(path: str | Path, target):
    """(state shaped and sharded like `target`, record). Refuses a checkpoint whose leaf shapes differ."""
    path = resolve(path)
    record = read_record(path)
    _check_shapes(record.get("shapes", {}), _leaf_shapes(target), path)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    manager = _manager(path.parent)
    restored = manager.restore(int(path.name), args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    return restored["state"], record


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
