"""How much of the bare compiled step's speed the real training loop keeps.

    python experiments/bench/loop_overhead.py                       # demo and tiny, on the demo's data
    python experiments/bench/loop_overhead.py --configs listops --json results/loop_overhead_gpu.json

Per config, in one process: the bare step (the loop's own jitted train step, run back to back on batches
already on the device) against `s5lra.train.train` itself (data iterator, prefetch to device, metrics read
every log_every steps, progress bar, metrics file, a periodic checkpoint). The loop's rate is taken between
its first and last train event, where the loop has just read the device's metrics back (so no queued work
flatters it). Bare and loop alternate `--repeats` times; the table gives their medians. Configs:
- demo: the default experiment (4 layers, H 64, P 32, batch 50, L 128);
- tiny: a step of about a millisecond on a CPU, the regime of a GPU step (1 layer, H 16, P 8, J 1, batch 8);
- listops: the paper's ListOps model and batch (experiment=lra/listops) on generated ListOps at L 2048.
Prints a table, writes JSON, and ends with `loop overhead: real loop at X% of the bare step (min over configs)`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from s5lra.train import loop
from s5lra.train.config import register_configs
from s5lra.train.data import open_task
from s5lra.train.loggers import RunLogger
from s5lra.train.sharding import make_mesh, shard_batch
from s5lra.train.steps import build, create_train_state, make_train_step
from table import print_table

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"
TINY = ["model.n_layers=1", "model.d_model=16", "model.ssm.state_size=8", "model.ssm.blocks=1", "trainer.batch_size=8"]
# name -> (overrides, timed steps); the data comes from --data-dir (generated there on first use)
CONFIGS = {
    "demo": (["experiment=demo"], 200),
    "tiny": (["experiment=demo", *TINY], 2000),
    "listops": (["experiment=lra/listops", "dataset=listops_demo", "dataset.max_len=2048",
                 "dataset.root=${paths.data_dir}/listops_bench", "dataset.generate.n_train=20000",
                 "dataset.generate.min_length=500", "dataset.generate.max_length=2000",
                 "dataset.generate.max_depth=10", "dataset.generate.max_args=10"], 300),
}
COLUMNS = [("config", "<9", "config"), ("batch", ">6", "batch"), ("L", ">6", "L"), ("steps", ">6", "steps"),
           ("bare ms", ">9.3f", "bare_ms"), ("loop ms", ">9.3f", "loop_ms"), ("loop/bare", ">10.1%", "fraction")]


def compose_cfg(overrides):
    register_configs()
    with initialize_config_dir(str(CONFIGS_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose("train", overrides=list(overrides)))


def bare_ms(cfg, steps: int) -> float:
    """Median ms per step of the loop's own step function on device-resident batches."""
    data = open_task(cfg.dataset)
    mesh = make_mesh()
    model, tx, schedules = build(cfg, data.spec, data.steps_per_epoch(cfg.trainer.batch_size))
    state = create_train_state(model, tx, data.example(), cfg.seed, mesh)
    step = make_train_step(model, tx, mesh, schedules)
    batches = [shard_batch(b, mesh) for b, _ in zip(data.train_batches_from(cfg.trainer.batch_size, 0, 0), range(8))]
    state, metrics = step(state, batches[0])  # compile and warm up
    jax.block_until_ready(metrics)
    rounds = []
    for _ in range(3):
        tic = time.perf_counter()
        for i in range(steps // 3):
            state, metrics = step(state, batches[i % len(batches)])
        jax.block_until_ready((state, metrics))
        rounds.append((time.perf_counter() - tic) / (steps // 3))
    return 1e3 * statistics.median(rounds)


def loop_ms(cfg_overrides, steps: int, log_every: int) -> float:
    """ms per step of `train()` between its first and last train event."""
    marks = []
    original = RunLogger.log

    def timed(self, event):
        if event["split"] == "train":
            marks.append((event["step"], time.perf_counter()))
        original(self, event)

    RunLogger.log = timed
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            cfg = compose_cfg(["logger=none", f"trainer.log_every={log_every}", f"trainer.max_steps={steps + log_every}",
                               f"trainer.checkpoint_every={steps // 2}", "trainer.epochs=1000", *cfg_overrides])
            loop.train(cfg, run_dir)
    finally:
        RunLogger.log = original
    (s0, t0), (s1, t1) = marks[0], marks[-1]
    return 1e3 * (t1 - t0) / (s1 - s0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["demo", "tiny"], choices=list(CONFIGS))
    ap.add_argument("--data-dir", default="data", help="data root (paths.data_dir); data is generated there")
    ap.add_argument("--steps", type=int, help="timed steps per config (default: per config)")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3, help="bare/loop measurements alternated per config (medians)")
    ap.add_argument("--json", default="experiments/bench/results/loop_overhead_cpu.json")
    args = ap.parse_args()
    rows = []
    for name in args.configs:
        overrides, steps = CONFIGS[name]
        steps = args.steps or steps
        overrides = [*overrides, f"paths.data_dir={args.data_dir}", "trainer.progress=true"]
        cfg = compose_cfg(overrides)
        bares, reals = [], []
        for _ in range(args.repeats):  # alternated, so a slow spell of a shared machine hits both
            bares.append(bare_ms(cfg, steps))
            reals.append(loop_ms(overrides, steps, args.log_every))
            print(f"{name}: bare {bares[-1]:.3f} ms, loop {reals[-1]:.3f} ms per step", file=sys.stderr)
        bare, real = statistics.median(bares), statistics.median(reals)
        rows.append(dict(config=name, batch=cfg.trainer.batch_size, L=cfg.dataset.max_len, steps=steps,
                         bare_ms=bare, loop_ms=real, fraction=bare / real, bare_ms_each=bares, loop_ms_each=reals))
    print_table(rows, COLUMNS)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    device = jax.devices()[0]
    out.write_text(json.dumps(dict(backend=jax.default_backend(), device=device.device_kind, jax=jax.__version__,
                                   n_devices=jax.device_count(), rows=rows), indent=1))
    print(f"wrote {out}")
    print(f"loop overhead: real loop at {100 * min(r['fraction'] for r in rows):.1f}% of the bare step "
          f"(min over configs)")


if __name__ == "__main__":
    main()
