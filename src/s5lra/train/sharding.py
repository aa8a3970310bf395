"""Data parallelism: `jax.jit` over a one-axis device Mesh with NamedSharding (today's form of `pmap`).

The batch is split along the `data` axis, parameters are replicated, and the compiled step computes over
the *global* batch, so gradients are all-reduced and BatchNorm statistics and the loss cover every example:
the numbers do not depend on the device count. Multi-host runs use the same path after
`jax.distributed.initialize()`; each process contributes its slice of every global batch.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from s5lra.data.iterator import prefetched
from s5lra.errors import ConfigError

AXIS = "data"


def initialize_distributed() -> None:
    """Join a multi-process run. JAX detects SLURM, Open MPI, Kubernetes and TPU pods itself; for a manual
    launch set JAX_COORDINATOR_ADDRESS (host:port), JAX_NUM_PROCESSES and JAX_PROCESS_ID."""
    env = {k: int(os.environ[v]) for k, v in (("num_processes", "JAX_NUM_PROCESSES"),
                                              ("process_id", "JAX_PROCESS_ID")) if v in os.environ}
    jax.distributed.initialize(**env)


def make_mesh() -> Mesh:
    """All devices of all processes along one `data` axis."""
    return Mesh(np.array(jax.devices()), (AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size: int, mesh: Mesh, key: str = "trainer.batch_size") -> None:
    """The global batch must split evenly over the devices (and so over the processes)."""
    n = mesh.devices.size
    if batch_size % n:
        lower, upper = batch_size - batch_size % n, batch_size + n - batch_size % n
        raise ConfigError(
            f"{key}={batch_size} does not divide by the {n} devices in use; "
            f"choose a multiple of {n} (e.g. {lower or upper} or {upper})"
        )


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """This process's rows of a global batch -> global arrays split along `data`.

    Each process holds the contiguous slice `process_index` of every global batch (s5lra.data's
    BatchIterator hands out exactly that), as `make_array_from_process_local_data` expects.
    """
    return _put(batch, batch_sharding(mesh), batch_axis=0)


def _put(tree: dict, sharding: NamedSharding, batch_axis: int) -> dict:
    n = jax.process_count()
    if n == 1:  # the same arrays; one call for the whole tree is ~3x faster on the host
        return jax.device_put(tree, sharding)

    def put(x):
        x = np.asarray(x)
        shape = list(x.shape)
        shape[batch_axis] *= n
        return jax.make_array_from_process_local_data(sharding, x, tuple(shape))

    return {k: put(v) for k, v in tree.items()}


@functools.lru_cache(maxsize=None)
def _unstack(mesh: Mesh):
    """Compiled: a stack of batches (leading axis) on the devices -> the list of its batches, split along `data`."""
    return jax.jit(lambda chunk: [jax.tree.map(lambda x: x[i], chunk) for i in range(len(chunk["labels"]))],
                   out_shardings=batch_sharding(mesh))


def _chunks(batches, size: int):
    chunk = []
    for batch in batches:
        chunk.append(batch)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def prefetch_to_device(batches, mesh: Mesh, depth: int = 2, chunk: int = 16):
    """Yield `batches` as global device arrays, put on the devices by a background thread ahead of use.

    The thread stacks `chunk` consecutive batches, transfers the stack at once and splits it on the devices:
    a transfer's host cost is per array, not per byte (~0.1 ms each on a small CPU), so one transfer per
    `chunk` batches keeps the host from setting the pace of a fast step. Up to `depth` chunks wait on the
    devices, so the next batches' transfer overlaps the current steps and the loop's thread only dispatches.
    """
    stacked = NamedSharding(mesh, PartitionSpec(None, AXIS))

    def put(group):
        if len(group) == 1:
            return [shard_batch(group[0], mesh)]
        host = {k: np.stack([b[k] for b in group]) for k in group[0]}
        return _unstack(mesh)(_put(host, stacked, batch_axis=1))

    for group in prefetched(lambda: (put(g) for g in _chunks(batches, chunk)), depth):
        yield from group
