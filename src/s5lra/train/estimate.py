"""A run's cost before it runs (`trainer.estimate=true`): time per step, epoch and schedule, memory, SLURM limits.

The same set-up as training (s5lra.train.loop.set_up: data, model, optimizer, state, the steps on the real
devices), then:
compile the train and eval steps (timed), read XLA's memory analysis of the compiled train step, run
untimed warm-up steps (WARMUP_STEPS, WARMUP_S) and `trainer.estimate_steps` timed training steps on the task's own batches (through the
loop's prefetch, so the host's share is in the figure; each step waited for, and the median taken, so that a
passing disturbance — another process, a data cache just written back to disk — does not skew it), and one
timed evaluation batch. From these and the
schedule (steps per epoch, epochs or max_steps, every evaluation the loop will run) it prints a table and writes
`estimate.json` in the run directory. No checkpoint, no metrics.jsonl, no W&B run: the report and the sweep
summary know such a directory as estimate-only.

Without the data (e.g. on a GPU machine before any download), it times random batches of the task's shapes
with the LRA release's split sizes (RELEASE) and says so. A compiled step that does not fit the device's memory
is not run; with `model.remat` off, the rematerialised step is compiled too and, if it fits, timed instead.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from s5lra.atomic import write_json
from s5lra.data.tasks import Split, TaskData, TaskSpec
from s5lra.errors import DataError
from s5lra.model import count_params
from s5lra.train import checkpoint, rundir
from s5lra.train.config import TrainConfig, validate
from s5lra.train.data import TaskBatches, open_task
from s5lra.train.loop import set_up
from s5lra.train.sharding import initialize_distributed, prefetch_to_device
from s5lra.train.steps import build, make_train_step

log = logging.getLogger("s5lra")

# Untimed steps first: at least WARMUP_STEPS and WARMUP_S seconds. The first calls after compiling are slower
# (autotuning, allocator growth), and on a small CPU so are the first seconds after a data cache was built.
WARMUP_STEPS, WARMUP_S = 2, 3.0
SAFETY = 1.25  # the suggested SLURM time limit: measured time x this (the loop's logging and checkpoints, noise)
FILE = "estimate.json"

# The LRA release as docs/data.md (sections 3 and 4) describes it: examples per split, length, vocabulary
# (None: pixels), classes. Pathfinder / Path-X: 80/10/10 of 200,000 images.
RELEASE = {
    "listops": ((96_000, 2_000, 2_000), 2048, 18, 10),
    "text": ((25_000, 25_000, 25_000), 4096, 135, 2),
    "retrieval": ((147_086, 18_090, 17_437), 4000, 98, 2),
    "image": ((45_000, 5_000, 10_000), 1024, None, 10),
    "pathfinder": ((160_000, 20_000, 20_000), 1024, None, 2),
    "pathx": ((160_000, 20_000, 20_000), 16384, None, 2),
}


@dataclass(frozen=True)
class Allocation:
    """The SLURM side (configs/hydra/launcher/slurm.yaml's defaults unless the job runs under that launcher)."""

    timeout_min: int = 1440
    signal_delay_s: int = 120
    max_num_timeout: int = 20

    @classmethod
    def from_launcher(cls, launcher) -> "Allocation":
        """From a composed hydra.launcher config (anything with .get); the defaults where it has no such keys."""
        default = cls()
        return cls(**{f.name: int(launcher.get(f.name) or getattr(default, f.name)) for f in dataclasses.fields(cls)})


def synthetic_task(name: str, max_len: int | None) -> TaskBatches:
    """Random-looking batches of a task's shapes with the release's split sizes, no data on disk: every row of a
    split is one random row (a zero-stride view), so even Path-X's 160,000 x 16,384 training split costs nothing."""
    if name not in RELEASE:
        raise DataError(f"dataset.name={name!r}: no data found and no release sizes known to estimate without it")
    sizes, length, vocab, classes = RELEASE[name]
    length = max_len if vocab and max_len else length
    rng = np.random.default_rng(0)
    dual = name == "retrieval"
    row_shape = (2, length) if dual else (length,)
    row = rng.integers(3, vocab, row_shape) if vocab else rng.integers(0, 256, row_shape)
    splits = {}
    for split, n in zip(("train", "val", "test"), sizes):
        splits[split] = Split(inputs=np.broadcast_to(row.astype(np.uint8), (n, *row_shape)),
                              lengths=np.broadcast_to(np.full(row_shape[:-1], length, np.int32), (n, *row_shape[:-1])),
                              labels=np.broadcast_to(np.int32(1), (n,)))
    spec = TaskSpec(name=name, seq_len=length, n_classes=classes, vocab_size=vocab,
                    normalize=None if vocab else (0.5, 0.5), dual=dual)
    return TaskBatches(TaskData(spec=spec, splits=splits, vocab=None, skipped={}, cache_dir=Path("."), settings={}))


def evaluations(total_steps: int, steps_per_epoch: int, eval_every: int | None) -> int:
    """How many evaluations the loop runs: at each epoch end, every `eval_every` steps, and at the last step."""
    def multiples(k):
        return total_steps // k

    n = multiples(steps_per_epoch)
    if eval_every:
        n += multiples(eval_every) - multiples(math.lcm(steps_per_epoch, eval_every))
    last_counted = total_steps % steps_per_epoch == 0 or bool(eval_every and total_steps % eval_every == 0)
    return n + (0 if last_counted else 1)


def _memory(compiled) -> dict:
    """XLA's memory analysis of a compiled step, per device: arguments + outputs - donated aliases + temporaries."""
    m = compiled.memory_analysis()
    if m is None:
        return {"peak_bytes": None}
    fields = {k: int(getattr(m, f"{k}_size_in_bytes", 0)) for k in ("argument", "output", "alias", "temp")}
    return {"peak_bytes": fields["argument"] + fields["output"] - fields["alias"] + fields["temp"],
            **{f"{k}_bytes": v for k, v in fields.items()}}


def device_capacity() -> tuple[int | None, str]:
    """Bytes one device may use, and where that number comes from (a CPU's device memory is the host's RAM)."""
    device = jax.local_devices()[0]
    stats = device.memory_stats() or {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"{device.device_kind} memory limit"
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "host RAM"
    except (ValueError, OSError):
        return None, "unknown"


def _abstract(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def _timed(fn):
    tic = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - tic


def estimate(cfg: TrainConfig, run_dir: str | Path, *, allocation: Allocation = Allocation(),
             overrides: list[str] | None = None) -> dict:
    """Measure and extrapolate as the module docstring says; returns what estimate.json holds."""
    started = time.perf_counter()
    validate(cfg)
    cfg = rundir.with_absolute_paths(cfg)
    tcfg = cfg.trainer
    run_dir = Path(run_dir).absolute()
    if tcfg.distributed:
        initialize_distributed()
    try:
        data, source = open_task(cfg.dataset), "the task's data"
    except DataError as err:
        log.warning("estimate: no data (%s); timing random batches of the task's shapes with the LRA release's "
                    "split sizes instead", err)
        data, source = synthetic_task(cfg.dataset.name, cfg.dataset.max_len), "synthetic (LRA release sizes)"
    sizes = {s: len(data.task.splits[s]) for s in ("train", "val", "test")}
    setup = set_up(cfg, data=data)
    state, mesh, steps_per_epoch = setup.state, setup.mesh, setup.steps_per_epoch
    eval_batch, total_steps = setup.eval_batch, setup.total_steps
    batches = prefetch_to_device(data.train_batches_from(tcfg.batch_size, cfg.seed, 0), mesh)
    batch = next(batches)
    setup_s = time.perf_counter() - started

    capacity, capacity_source = device_capacity()
    train_step, compile_s = _timed(lambda: setup.train_step.lower(state, batch).compile())
    memory = _memory(train_step)
    fits = memory["peak_bytes"] is None or capacity is None or memory["peak_bytes"] <= capacity
    remat = None
    if not fits and not cfg.model.remat:
        remat_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, remat=True))
        remat_model, remat_tx, remat_schedules = build(remat_cfg, data.spec, steps_per_epoch)
        compiled, seconds = _timed(lambda: make_train_step(remat_model, remat_tx, mesh, remat_schedules).lower(
            _abstract(state), _abstract(batch)).compile())
        remat = {"compile_s": seconds, **_memory(compiled), "override": "model.remat=true"}
        remat["fits"] = remat["peak_bytes"] is None or remat["peak_bytes"] <= capacity
        if remat["fits"]:
            train_step, compile_s = compiled, seconds
    timed_variant = "configured" if fits else ("model.remat=true" if remat and remat["fits"] else None)

    step_s = eval_s = eval_compile_s = None
    step_times, warmup_steps = [], 0
    if timed_variant:
        tic, warmup_steps = time.perf_counter(), 0
        while warmup_steps < WARMUP_STEPS or time.perf_counter() - tic < WARMUP_S:
            state, metrics = train_step(state, next(batches))
            jax.block_until_ready(metrics)
            warmup_steps += 1
        step_times = []
        for _ in range(tcfg.estimate_steps):
            tic = time.perf_counter()
            state, metrics = train_step(state, next(batches))
            jax.block_until_ready(metrics)
            step_times.append(time.perf_counter() - tic)
        step_s = statistics.median(step_times)
        eval_host = next(iter(data.eval_batches("val", eval_batch)))
        (eval_device,) = prefetch_to_device([eval_host], mesh)
        eval_step, eval_compile_s = _timed(lambda: setup.eval_step.lower(state.params, state.batch_stats,
                                                                          eval_device).compile())
        jax.block_until_ready(eval_step(state.params, state.batch_stats, eval_device))  # untimed first call
        _, eval_s = _timed(lambda: jax.block_until_ready(eval_step(state.params, state.batch_stats, eval_device)))
    del batches

    n_eval_batches = sum(-(-sizes[s] // eval_batch) for s in ("val", "test"))
    n_evaluations = evaluations(total_steps, steps_per_epoch, tcfg.eval_every)
    checkpoint_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(state))
    out = {
        "name": cfg.name, "task": cfg.dataset.name, "overrides": list(overrides or []), "data": source,
        "split_sizes": sizes, "batch_size": tcfg.batch_size, "eval_batch_size": eval_batch,
        "n_devices": jax.device_count(), "n_processes": jax.process_count(), "scan": setup.scan,
        "device_kind": jax.devices()[0].device_kind, "n_params": count_params(state.params),
        "setup_s": setup_s, "compile_s": compile_s, "eval_compile_s": eval_compile_s,
        "warmup_steps": warmup_steps, "timed_steps": tcfg.estimate_steps if timed_variant else 0,
        "timed_variant": timed_variant, "step_s": step_s, "step_times_s": step_times,
        "examples_per_s": tcfg.batch_size / step_s if step_s else None,
        "eval_batch_s": eval_s, "eval_batches_per_evaluation": n_eval_batches,
        "steps_per_epoch": steps_per_epoch, "epochs": tcfg.epochs, "total_steps": total_steps,
        "evaluations": n_evaluations,
        "memory": {**memory, "capacity_bytes": capacity, "capacity_source": capacity_source, "fits": fits},
        "remat": remat, "checkpoint_bytes": checkpoint_bytes,
    }
    out.update(_extrapolate(out, allocation))
    if jax.process_index() == 0:
        rundir.write_config(run_dir, cfg, list(overrides or []))
        write_json(run_dir / FILE, out)
        for line in table(out):
            log.info("%s", line)
        log.info("estimate written to %s (no training was run)", run_dir / FILE)
    return out


def _extrapolate(e: dict, allocation: Allocation) -> dict:
    """Epoch and schedule times from the measured step and evaluation batch; the SLURM limits they need."""
    if e["step_s"] is None:
        return {"evaluation_s": None, "epoch_s": None, "schedule_s": None, "run_s": None, "slurm": None}
    evaluation_s = e["eval_batches_per_evaluation"] * e["eval_batch_s"]
    epoch_s = e["steps_per_epoch"] * e["step_s"] + evaluation_s * e["evaluations"] * e["steps_per_epoch"] / max(
        e["total_steps"], 1)
    schedule_s = e["total_steps"] * e["step_s"] + e["evaluations"] * evaluation_s
    start_s = e["setup_s"] + e["compile_s"] + (e["eval_compile_s"] or 0)  # every allocation pays it again
    run_s = start_s + schedule_s
    one_allocation_min = math.ceil((SAFETY * run_s + allocation.signal_delay_s) / 60)
    usable_s = allocation.timeout_min * 60 - allocation.signal_delay_s - start_s
    allocations = math.ceil(SAFETY * schedule_s / usable_s) if usable_s > 0 else None
    slurm = {"timeout_min_one_allocation": one_allocation_min, "timeout_min": allocation.timeout_min,
             "signal_delay_s": allocation.signal_delay_s, "max_num_timeout": allocation.max_num_timeout,
             "requeues": None if allocations is None else allocations - 1}
    return {"evaluation_s": evaluation_s, "epoch_s": epoch_s, "schedule_s": schedule_s, "run_s": run_s,
            "slurm": slurm}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _gib(n: int | None) -> str:
    return "—" if n is None else f"{n / 2**30:.2f} GiB"


def table(e: dict) -> list[str]:
    """The printed estimate, one line per figure."""
    mem = e["memory"]
    rows = [f"estimate of {e['name']} on {e['n_devices']} x {e['device_kind']} ({e['data']}; "
            f"{e['n_params']:,} parameters, batch {e['batch_size']})",
            ("compile", f"train step {_duration(e['compile_s'])}, eval step {_duration(e['eval_compile_s'])}; "
                        f"set-up (data, state) {_duration(e['setup_s'])}"),
            ("peak device memory", f"{_gib(mem['peak_bytes'])} of {_gib(mem['capacity_bytes'])} "
                                   f"({mem['capacity_source']}; XLA memory analysis of the compiled step): "
                                   + ("fits" if mem["fits"] else "DOES NOT FIT"))]
    if e["remat"]:
        r = e["remat"]
        rows.append(("with model.remat=true", f"{_gib(r['peak_bytes'])}: " + (
            "fits; timed with it — add model.remat=true" if r["fits"] else "does not fit either: lower "
            "trainer.batch_size or use more devices")))
    if e["step_s"] is None:
        rows.append(("timing", "not run: the step does not fit the device" + (
            "" if e["remat"] else "; lower trainer.batch_size or use more devices")))
    else:
        rows += [
            ("training step", f"{1e3 * e['step_s']:.1f} ms (median of {e['timed_steps']} timed after "
                              f"{e['warmup_steps']} warm-up), {e['examples_per_s']:,.1f} examples/s"),
            ("evaluation", f"{1e3 * e['eval_batch_s']:.1f} ms per batch of {e['eval_batch_size']}, "
                           f"{e['eval_batches_per_evaluation']:,} batches (val {e['split_sizes']['val']:,} + "
                           f"test {e['split_sizes']['test']:,}): {_duration(e['evaluation_s'])}"),
            ("epoch", f"{e['steps_per_epoch']:,} steps: {_duration(e['epoch_s'])} with evaluation"),
            ("schedule", f"{e['total_steps']:,} steps ({e['total_steps'] / e['steps_per_epoch']:g} of "
                         f"{e['epochs']} epochs), {e['evaluations']:,} evaluations: {_duration(e['schedule_s'])}"
                         f" (+ set-up and compile {_duration(e['run_s'] - e['schedule_s'])})")]
        s = e["slurm"]
        requeues = ("the start-up alone exceeds it" if s["requeues"] is None else
                    "no requeue" if s["requeues"] == 0 else f"{s['requeues']} requeue(s)"
                    + (f", MORE than max_num_timeout={s['max_num_timeout']}" if s["requeues"] > s["max_num_timeout"]
                       else ""))
        rows.append(("SLURM", f"hydra.launcher.timeout_min={s['timeout_min_one_allocation']} for one allocation; "
                              f"at timeout_min={s['timeout_min']}: {requeues}"))
    saves = sum(checkpoint.KEEP.values())
    rows.append(("checkpoint", f"{e['checkpoint_bytes'] / 2**20:.1f} MiB per save; {saves} kept (checkpoints/last "
                               f"and best): {saves * e['checkpoint_bytes'] / 2**20:.1f} MiB"))
    return [rows[0]] + [f"  {k:<22} {v}" for k, v in rows[1:]]
