"""Evaluate a saved run: its composed config and a checkpoint -> metrics JSON (what `run_eval.py` does)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
from omegaconf import OmegaConf

from s5lra.train import checkpoint
from s5lra.train.config import EvalConfig, TrainConfig
from s5lra.train.data import open_task
from s5lra.errors import ConfigError
from s5lra.train.loggers import write_json
from s5lra.train.loop import build, evaluate
from s5lra.train.sharding import check_batch_size, make_mesh
from s5lra.train.steps import make_eval_step


def load_run_config(run_dir: str | Path, data_dir: str | None = None) -> TrainConfig:
    """The run's composed config (`.hydra/config.yaml`), typed by the schema; `data_dir` relocates the data."""
    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.exists():
        raise ConfigError(f"run_dir={run_dir}: no {path}; point run_dir at a training run's output folder")
    conf = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.load(path))
    if data_dir is not None:
        conf.paths.data_dir = data_dir  # before resolving, so ${paths.data_dir} in dataset.root follows
    return OmegaConf.to_object(conf)


def evaluate_run(ecfg: EvalConfig) -> dict:
    """Restore `ecfg.checkpoint` of the run, evaluate `ecfg.split`, write and return the metrics."""
    run_dir = Path(ecfg.run_dir).absolute()
    cfg = load_run_config(run_dir, ecfg.data_dir)
    ssm_overrides = {k: v for k, v in dataclasses.asdict(ecfg.model.ssm).items() if v is not None}
    cfg.model.ssm = dataclasses.replace(cfg.model.ssm, **ssm_overrides)
    if ecfg.split not in ("train", "val", "test"):
        raise ConfigError(f"split={ecfg.split!r}; expected train, val or test")
    if ecfg.checkpoint not in checkpoint.KINDS:
        raise ConfigError(f"checkpoint={ecfg.checkpoint!r}; expected one of {checkpoint.KINDS}")
    mesh = make_mesh()
    batch_size = ecfg.batch_size or cfg.trainer.eval_batch_size or cfg.trainer.batch_size
    check_batch_size(batch_size, mesh, "batch_size")

    data = open_task(cfg.dataset)
    setup = build(cfg, data, mesh)  # the optimizer only shapes the restore target
    state, record = checkpoint.restore(run_dir / "checkpoints" / ecfg.checkpoint, setup.state)

    tic = time.time()
    eval_step = make_eval_step(setup.model, mesh, data.normalize)
    metrics = evaluate(eval_step, state, data.eval_batches(ecfg.split, batch_size), mesh)
    out = {
        "run_dir": str(run_dir), "split": ecfg.split, "checkpoint": ecfg.checkpoint, "step": record["step"],
        "loss": metrics["loss"], "accuracy": metrics["accuracy"], "examples": metrics["examples"],
        "step_rescale": cfg.model.ssm.step_rescale, "wall_time_s": time.time() - tic,
    }
    if jax.process_index() == 0:
        write_json(ecfg.output or run_dir / f"eval_{ecfg.split}_{ecfg.checkpoint}.json", out)
    return out
