"""Data parallelism: `jax.jit` over a one-axis device Mesh with NamedSharding (today's form of `pmap`).

The batch is split along the `data` axis, parameters are replicated, and the compiled step computes over
the *global* batch, so gradients are all-reduced and BatchNorm statistics and the loss cover every example:
the numbers do not depend on the device count. Multi-host runs use the same path after
`jax.distributed.initialize()`; each process contributes its slice of every global batch.
"""

from __future__ import annotations

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
    sharding = batch_sharding(mesh)
    n = jax.process_count()
    if n == 1:  # the same arrays; one call for the whole batch is ~3x faster on the host
        return jax.device_put(batch, sharding)

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(sharding, x, (x.shape[0] * n, *x.shape[1:]))

    return {k: put(v) for k, v in batch.items()}


def prefetch_to_device(batches, mesh: Mesh, depth: int = 2):
    """Yield `batches` as global device arrays, put on the devices by a background thread `depth` batches
    ahead: the host-to-device transfer of the next batches overlaps the current step, and the loop's thread
    only dispatches steps."""
    return prefetched(lambda: (shard_batch(batch, mesh) for batch in batches), depth)
