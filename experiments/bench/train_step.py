"""Steady-state training-step time of a paper configuration on synthetic batches, ours vs the official scan.

    python experiments/bench/train_step.py experiment=lra/pathx
    python experiments/bench/train_step.py experiment=lra/image --batch 8 --seq-len 1024 --variants auto official
    python experiments/bench/train_step.py experiment=lra/pathx --variants auto remat bf16 official

Variants: `auto` (the configured model, scan=auto; the paper experiments unroll their layer stack),
`official` (model.ssm.scan=associative: the official algorithm's associative scan), `scanned` / `unrolled`
(model.unroll_layers=false / true), `remat` (model.remat=true), `bf16` (trainer.precision=bf16), `checkpointed`
(model.ssm.scan=checkpointed), `pallas` (model.ssm.scan=pallas: what auto is on GPU). Batches are random with
the task's shapes (no data needed). Reports compile time, median step time, examples/s, tokens/s and XLA's
temporary-buffer size of the compiled step (peak-memory proxy; on GPU also the device's peak bytes in use).
`--steps 0` only compiles: the memory of the paper's batch sizes can be read on a CPU where running them
would take minutes. Prints a table and writes JSON (--out).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from s5lra.model import count_params
from s5lra.train.config import TrainConfig, register_configs
from s5lra.train.sharding import make_mesh, shard_batch
from s5lra.train.steps import build, create_train_state, make_train_step
from table import print_table, speedup

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# Vocabulary sizes of the token tasks under the standard tokenisation (docs/data.md, section 3 "Tokenisation");
# pixel tasks have none.
VOCAB = {"listops": 18, "text": 135, "retrieval": 98}
CLASSES = {"listops": 10, "image": 10}
VARIANTS = {
    "auto": {},
    "official": {"ssm.scan": "associative"},
    "checkpointed": {"ssm.scan": "checkpointed"},
    "pallas": {"ssm.scan": "pallas"},
    "remat": {"remat": True},
    "scanned": {"unroll_layers": False},
    "unrolled": {"unroll_layers": True},
    "bf16": {"precision": "bf16"},
}
PIXEL_NORMALIZE = (0.5, 0.5)
PAPER_LEN = {"listops": 2048, "text": 4096, "retrieval": 4000, "image": 1024, "pathfinder": 1024, "pathx": 16384}


COLUMNS = [
    ("task", "<11", "task"), ("variant", "<13", "variant"), ("B", ">4", "batch"), ("L", ">7", "L"),
    ("compile s", ">10.1f", "compile_s"), ("step ms", ">10.1f", "step_ms"), ("ex/s", ">9.1f", "examples_per_s"),
    ("tok/s", ">11.0f", "tokens_per_s"), ("temp MB", ">9.1f", "temp_mb"),
    ("vs off.", ">8", speedup("speedup_vs_official"))]


def load_config(overrides) -> TrainConfig:
    register_configs()
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    return OmegaConf.to_object(cfg)


def synthetic_batch(task, batch, length, rng):
    vocab = VOCAB.get(task)
    shape = (batch, 2, length) if task == "retrieval" else (batch, length)
    inputs = rng.integers(3, vocab, shape) if vocab else rng.integers(0, 256, shape).astype(np.uint8)
    lengths = np.full(shape[:-1], length, np.int32)
    labels = rng.integers(0, CLASSES.get(task, 2), batch).astype(np.int32)
    return {"inputs": inputs.astype(np.int32) if vocab else inputs, "lengths": lengths, "labels": labels,
            "weights": np.ones(batch, np.float32)}


def with_variant(cfg: TrainConfig, variant: str) -> TrainConfig:
    model, trainer = cfg.model, cfg.trainer
    for key, value in VARIANTS[variant].items():
        if key == "precision":
            trainer = dataclasses.replace(trainer, precision=value)
        elif key.startswith("ssm."):
            model = dataclasses.replace(model, ssm=dataclasses.replace(model.ssm, **{key[4:]: value}))
        else:
            model = dataclasses.replace(model, **{key: value})
    return dataclasses.replace(cfg, model=model, trainer=trainer)


def prepare(cfg: TrainConfig, variant, batch, length):
    """The compiled step of one variant, its state and batch on the device, and its compile figures."""
    task = cfg.dataset.name
    spec = SimpleNamespace(name=task, n_classes=CLASSES.get(task, 2), vocab_size=VOCAB.get(task),
                           dual=task == "retrieval", normalize=None if VOCAB.get(task) else PIXEL_NORMALIZE)
    cfg = with_variant(cfg, variant)
    mesh = make_mesh()
    host_batch = synthetic_batch(task, batch, length, np.random.default_rng(0))
    model, tx, schedules = build(cfg, spec, steps_per_epoch=100)
    state = create_train_state(model, tx, {k: host_batch[k][:1] for k in ("inputs", "lengths")}, 0, mesh)
    step = make_train_step(model, tx, mesh, schedules)
    device_batch = shard_batch(host_batch, mesh)
    t0 = time.perf_counter()
    compiled = step.lower(state, device_batch).compile()
    compile_s = time.perf_counter() - t0
    analysis = compiled.memory_analysis()
    temp = getattr(analysis, "temp_size_in_bytes", 0) if analysis is not None else 0
    docs = 2 if task == "retrieval" else 1
    row = dict(task=task, variant=variant, batch=batch, L=length, n_params=count_params(state.params),
               compile_s=compile_s, temp_mb=temp / 2**20)
    return {"step": step, "state": state, "batch": device_batch, "row": row, "tokens": batch * docs * length,
            "times": []}


def timed_step(run) -> None:
    t0 = time.perf_counter()
    run["state"], metrics = run["step"](run["state"], run["batch"])
    jax.block_until_ready(metrics)
    run["times"].append(time.perf_counter() - t0)


def take_turns(runs, steps: int) -> None:
    """`steps` timed steps of every run, the runs taking turns step by step."""
    for _ in range(steps):
        for run in runs:
            timed_step(run)


def bench(cfg: TrainConfig, variants, batch, length, steps) -> list[dict]:
    """Median step time of each variant. Each variant is compiled and warmed up in turn (its device peak read
    then: peak_bytes_in_use only grows, so list the lowest-memory variant first); then the variants take turns
    step by step, so a machine's drift or a neighbour's load hits them alike."""
    runs = []
    for variant in variants:
        run = prepare(cfg, variant, batch, length)
        if steps:
            timed_step(run)
            run["times"].clear()
        stats = jax.local_devices()[0].memory_stats() or {}
        run["row"]["peak_mb"] = stats.get("peak_bytes_in_use", 0) / 2**20 or None
        runs.append(run)
    take_turns(runs, steps)
    rows = []
    for run in runs:
        step_s = float(np.median(run["times"])) if run["times"] else float("nan")
        rows.append(dict(run["row"], step_ms=1e3 * step_s, examples_per_s=run["row"]["batch"] / step_s,
                         tokens_per_s=run["tokens"] / step_s))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=lra/pathx")
    ap.add_argument("--variants", nargs="+", default=["auto", "official"], choices=list(VARIANTS))
    ap.add_argument("--batch", type=int, help="global batch (default: the config's on GPU, 2 on CPU)")
    ap.add_argument("--seq-len", type=int, help="sequence length (default: the task's)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps; 0 = compile only (memory at any batch)")
    ap.add_argument("--out", default=None, help="JSON path (default experiments/bench/results/train_step_<task>.json)")
    args = ap.parse_args()
    cfg = load_config(args.overrides)
    task = cfg.dataset.name
    cpu = jax.default_backend() == "cpu"
    batch = args.batch or (2 if cpu else cfg.trainer.batch_size)
    length = args.seq_len or PAPER_LEN[task]
    rows = bench(cfg, args.variants, batch, length, args.steps)
    base = next((r for r in rows if r["variant"] == "official"), None)
    for r in rows:
        r["speedup_vs_official"] = base["step_ms"] / r["step_ms"] if base and args.steps else None
    print_table(rows, COLUMNS)
    device = jax.devices()[0]
    out = Path(args.out or f"experiments/bench/results/train_step_{task}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(backend=jax.default_backend(), device=getattr(device, "device_kind", str(device)),
                                   n_devices=jax.device_count(), jax=jax.__version__, overrides=args.overrides,
                                   rows=rows), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
