"""Evaluate a saved run: its composed config and a checkpoint -> metrics JSON (what `run_eval.py` does).

It goes through the same functions as training (build, create_train_state, evaluate), with the run's own
vocabulary, and stops if the data's fingerprint differs from the run's (allow_data_change=true goes on).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
from omegaconf import OmegaConf

from s5lra.errors import ConfigError, InvalidSetting, check_choice
from s5lra.ssm.selfcheck import resolve_scan
from s5lra.train import checkpoint
from s5lra.train.config import EvalConfig, TrainConfig, validate
from s5lra.train.data import check_data, open_task
from s5lra.atomic import write_json
from s5lra.train.sharding import check_batch_size, make_mesh, prefetch_to_device
from s5lra.train.steps import build, create_train_state, evaluate, make_eval_step

SPLITS = ("train", "val", "test")


def load_run_config(run_dir: str | Path, data_dir: str | None = None) -> TrainConfig:
    """The run's composed config (`.hydra/config.yaml`), typed by the schema; `data_dir` relocates the data."""
    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.exists():
        raise ConfigError(f"run_dir={run_dir}: no {path}; point run_dir at a training run's output folder")
    try:
        conf = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.load(path))
    except Exception as err:  # YAML or schema errors of a damaged or foreign file
        raise ConfigError(f"run_dir={run_dir}: {path} is not a run config of this version: {err}") from None
    if data_dir is not None:  # the saved paths are absolute: move the dataset root along with the data dir
        old = Path(conf.paths.data_dir)
        root = Path(conf.dataset.root)
        conf.paths.data_dir = str(Path(data_dir).absolute())
        conf.dataset.root = str(Path(data_dir).absolute() / root.relative_to(old)) if root.is_relative_to(old) \
            else conf.paths.data_dir
    return OmegaConf.to_object(conf)


def check(ecfg: EvalConfig) -> None:
    """The evaluation's own settings; the run's config (with the model overrides) goes through `validate`."""
    try:
        check_choice("split", ecfg.split, SPLITS)
        check_choice("checkpoint", ecfg.checkpoint, checkpoint.KINDS)
        if ecfg.batch_size is not None and ecfg.batch_size <= 0:
            raise InvalidSetting("batch_size", ecfg.batch_size, "must be positive (or null: the run's)")
    except InvalidSetting as err:
        raise ConfigError(str(err)) from None


def evaluate_run(ecfg: EvalConfig) -> dict:
    """Restore `ecfg.checkpoint` of the run, evaluate `ecfg.split`, write and return the metrics."""
    check(ecfg)
    run_dir = Path(ecfg.run_dir).absolute()
    cfg = load_run_config(run_dir, ecfg.data_dir)
    cfg = dataclasses.replace(cfg, dataset=dataclasses.replace(cfg.dataset, generate=None))  # never generate here
    changed = {k: v for k, v in dataclasses.asdict(ecfg.model.ssm).items() if v is not None}
    cfg.model.ssm = dataclasses.replace(cfg.model.ssm, **changed)
    validate(cfg)
    mesh = make_mesh()
    batch_size = ecfg.batch_size or cfg.trainer.eval_batch_size or cfg.trainer.batch_size
    check_batch_size(batch_size, mesh, "batch_size")
    resolve_scan(cfg.model.ssm.scan)  # on a GPU, `auto` runs the kernel's self-check once, here

    path = checkpoint.resolve(run_dir / "checkpoints" / ecfg.checkpoint)
    saved = checkpoint.verify(path)
    data = open_task(cfg.dataset, vocab=saved["data"]["vocab"])
    check_data(saved["data"], data, ecfg.allow_data_change, f"run_dir={run_dir}")
    model, tx, _ = build(cfg, data.spec, data.steps_per_epoch(cfg.trainer.batch_size))
    state, record = checkpoint.restore(path, create_train_state(model, tx, data.example(), cfg.seed, mesh))

    tic = time.time()
    metrics = evaluate(make_eval_step(model, mesh), state,
                       prefetch_to_device(data.eval_batches(ecfg.split, batch_size), mesh))
    out = {
        "run_dir": str(run_dir), "split": ecfg.split, "checkpoint": ecfg.checkpoint, "step": record["step"],
        "loss": metrics["loss"], "accuracy": metrics["accuracy"], "examples": metrics["examples"],
        "step_rescale": cfg.model.ssm.step_rescale, "wall_time_s": time.time() - tic,
    }
    suffix = "".join(f"_{k}={v}" for k, v in sorted(changed.items()))  # a changed model never overwrites another
    if jax.process_index() == 0:
        write_json(ecfg.output or run_dir / f"eval_{ecfg.split}_{ecfg.checkpoint}{suffix}.json", out)
    return out
