"""Data parallelism: 1 vs 4 devices give the same losses; two processes on localhost equal one process."""

import json
import socket
import subprocess
import sys
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from s5lra.model import ModelConfig, SSMConfig, build_model
from s5lra.train.config import OptimizerConfig
from s5lra.train.optim import make_optimizer
from s5lra.train.schedule import make_schedule
from s5lra.train.sharding import AXIS, batch_sharding, prefetch_to_device, shard_batch
from s5lra.train.steps import create_train_state, make_train_step, metric_names

from helpers import REPO, events, run_inprocess, tiny_overrides

pytestmark = pytest.mark.usefixtures("shared_compilation_cache")


def losses_on(devices, batches, dropout, scan="auto", compiled=None, variant=None):
    """Train on the batches; `compiled`, a list, receives the compiled step's HLO text; `variant`: SSMConfig
    fields of a member of the S5 family."""
    spec = SimpleNamespace(n_classes=10, vocab_size=18, dual=False)
    ssm = SSMConfig(state_size=4, scan=scan, **(variant or {}))
    model = build_model(ModelConfig(n_layers=2, d_model=8, dropout=dropout, ssm=ssm), spec)
    mesh = Mesh(np.array(devices), (AXIS,))
    schedule = make_schedule(3e-3, steps_per_epoch=4, epochs=2, warmup_epochs=1)
    example = {k: batches[0][k][:1] for k in ("inputs", "lengths")}
    tx = make_optimizer(OptimizerConfig(), schedule, schedule)
    state = create_train_state(model, tx, example, 0, mesh)
    step = make_train_step(model, tx, mesh)
    if compiled is not None:
        compiled.append(step.lower(state, shard_batch(batches[0], mesh)).compile().as_text())
    out = []
    for batch in batches:
        state, metrics = step(state, shard_batch(batch, mesh))
        out.append(float(metrics[metric_names().index("loss")]))
    return np.array(out), jax.device_get(state.batch_stats)


def random_batches(n=6, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 17, (n, 8)).astype(np.int32)
    return [{"inputs": rng.integers(0, 18, (8, 16)).astype(np.uint8), "lengths": lengths[i],
             "labels": rng.integers(0, 10, 8).astype(np.int32), "weights": np.ones(8, np.float32)}
            for i in range(n)]


@pytest.mark.parametrize("n,chunk", [(21, 8), (3, 8), (1, 8), (5, 1)])
def test_prefetch_to_device_yields_every_batch_in_order_split_over_the_devices(n, chunk):
    """Batches travel in stacks of `chunk` and are split on the devices: same values, order and sharding."""
    mesh = Mesh(np.array(jax.devices()), (AXIS,))
    batches = random_batches(n)
    got = list(prefetch_to_device(iter(batches), mesh, chunk=chunk))
    assert len(got) == n
    for host, device in zip(batches, got):
        assert set(device) == set(host)
        for key, value in host.items():
            assert device[key].sharding.is_equivalent_to(batch_sharding(mesh), value.ndim), key
            assert device[key].dtype == value.dtype and np.array_equal(np.asarray(device[key]), value), key


@pytest.mark.parametrize("dropout,variant", [(0.0, {}), (0.2, {}), (0.0, {"kind": "lru"}), (0.0, {"selective": True}),
                                             (0.0, {"init": "s4d_lin"})])
def test_one_and_four_devices_give_the_same_losses(dropout, variant):
    assert jax.device_count() == 4
    batches = random_batches()
    one, stats_one = losses_on(jax.devices()[:1], batches, dropout, variant=variant)
    four, stats_four = losses_on(jax.devices(), batches, dropout, variant=variant)
    np.testing.assert_allclose(four, one, rtol=1e-5)  # BatchNorm statistics and the loss cover the global batch
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), stats_four, stats_one)
    assert len(set(one.tolist())) == len(one)  # the parameters moved


def test_the_pallas_kernel_on_four_devices_trains_each_devices_rows():
    """The kernel under the data-parallel step: the losses of a 1-device lax.scan run, and no all-gather
    (each device runs the kernel on its own rows, not on the whole batch)."""
    batches = random_batches(n=3)
    one, _ = losses_on(jax.devices()[:1], batches, 0.0, scan="sequential")
    compiled = []
    four, _ = losses_on(jax.devices(), batches, 0.0, scan="pallas", compiled=compiled)
    np.testing.assert_allclose(four, one, rtol=1e-5)
    assert "all-gather" not in compiled[0]


def train_losses(run_dir):
    return np.array([e["loss"] for e in events(run_dir, "train")])


@pytest.fixture(scope="module")
def four_device_run(listops_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("four")
    results = run_inprocess(run_dir, tiny_overrides(listops_root, "trainer.epochs=1"))
    assert results["n_devices"] == 4
    return run_dir


def test_the_same_run_on_one_device(four_device_run, listops_root, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "run_train.py"), *tiny_overrides(listops_root, "trainer.epochs=1"),
         f"hydra.run.dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=240,
        env={**__import__("os").environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "results.json").read_text())["n_devices"] == 1
    np.testing.assert_allclose(train_losses(tmp_path), train_losses(four_device_run), rtol=1e-5)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_on_localhost_equal_one_process(four_device_run, listops_root, tmp_path):
    """Two processes with two devices each: the same four-device mesh, spread over processes."""
    import os

    port = free_port()
    procs = []
    for pid in range(2):
        env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
               "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(pid)}
        args = tiny_overrides(listops_root, "trainer.epochs=1", "trainer.distributed=true", f"hydra.run.dir={tmp_path}")
        procs.append(subprocess.Popen([sys.executable, str(REPO / "run_train.py"), *args], cwd=REPO, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    try:
        errors = [p.communicate(timeout=240)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], errors[0][-2000:] + errors[1][-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert (results["n_devices"], results["n_processes"]) == (4, 2)
    np.testing.assert_allclose(train_losses(tmp_path), train_losses(four_device_run), rtol=1e-5)
    single = json.loads((four_device_run / "results.json").read_text())
    assert results["test_accuracy"] == single["test_accuracy"]
