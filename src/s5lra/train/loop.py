"""The training run: epochs of sharded steps, evaluation, best-validation bookkeeping, checkpoints, logs.

The reported number is the test accuracy at the evaluation with the best validation accuracy (the paper's
protocol). Every evaluation (each epoch end, every `eval_every` steps, and at `max_steps`) is a candidate.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from s5lra.model import build_model, count_params
from s5lra.train import checkpoint
from s5lra.train.config import TrainConfig, validate
from s5lra.train.data import open_task
from s5lra.train.loggers import RunLogger, write_json
from s5lra.train.optim import make_optimizer
from s5lra.train.schedule import make_schedule
from s5lra.train.sharding import check_batch_size, initialize_distributed, make_mesh, shard_batch
from s5lra.train.steps import TrainState, init_state, make_eval_step, make_train_step, model_inputs


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class _Preemption:
    """SIGTERM sets a flag; the loop saves `last` and returns at the next step boundary."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        signal.signal(signal.SIGTERM, self._previous)

    def check(self) -> bool:
        """True on every process as soon as any process got SIGTERM (they must stop at the same step)."""
        if jax.process_count() == 1:
            return self.requested
        return bool(np.any(multihost_utils.process_allgather(np.array(self.requested))))


def evaluate(eval_step, state, batches, mesh) -> dict:
    """Loss and accuracy over a whole split (zero-weight padding rows count for nothing)."""
    sums = {"nll": 0.0, "correct": 0.0, "weight": 0.0}
    for batch in batches:
        out = jax.device_get(eval_step(state.params, state.batch_stats, shard_batch(batch, mesh)))
        for k in sums:
            sums[k] += float(out[k])
    weight = max(sums["weight"], 1.0)
    return {"loss": sums["nll"] / weight, "accuracy": sums["correct"] / weight, "examples": int(sums["weight"])}


def _resume_path(resume: str | None, ckpt_dir: Path) -> Path | None:
    """trainer.resume: null (fresh), auto (this run directory's last checkpoint, if any) or a checkpoint path."""
    if resume is None:
        return None
    if resume == "auto":
        try:
            return checkpoint.resolve(ckpt_dir / "last")
        except checkpoint.CheckpointError:
            return None  # nothing saved yet: a fresh start
    return checkpoint.resolve(resume)


@dataclasses.dataclass
class Setup:
    model: Any
    tx: Any
    state: TrainState  # freshly initialised, replicated over the mesh
    lr_at: Callable
    ssm_lr_at: Callable


def build(cfg: TrainConfig, data, mesh) -> Setup:
    """Model, schedules, optimizer and initial state for a task (training and evaluation share it)."""
    model = build_model(cfg.model, data.spec, cfg.trainer.precision)
    sched = dict(steps_per_epoch=data.steps_per_epoch(cfg.trainer.batch_size), epochs=cfg.trainer.epochs,
                 **dataclasses.asdict(cfg.scheduler))
    lr_at = make_schedule(cfg.optimizer.lr, **sched)
    ssm_lr_at = make_schedule(cfg.optimizer.ssm_lr, **sched)
    example = data.example()
    inputs = model_inputs(example["inputs"], data.normalize)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), inputs, example["lengths"]))
    tx = make_optimizer(shapes["params"], cfg.optimizer, lr_at, ssm_lr_at)
    state = init_state(model, tx, example, cfg.seed, mesh, data.normalize)
    return Setup(model, tx, state, lr_at, ssm_lr_at)


def train(cfg: TrainConfig, run_dir: str | Path, *, config_dict: dict | None = None) -> dict:
    """Train as configured, writing everything into `run_dir`; returns the results (also results.json)."""
    started = time.time()
    validate(cfg)
    tcfg = cfg.trainer
    if tcfg.distributed:
        initialize_distributed()
    run_dir = Path(run_dir).absolute()
    run_dir.mkdir(parents=True, exist_ok=True)
    lead = jax.process_index() == 0
    mesh = make_mesh()
    eval_batch = tcfg.eval_batch_size or tcfg.batch_size
    check_batch_size(tcfg.batch_size, mesh)
    check_batch_size(eval_batch, mesh, "trainer.eval_batch_size")

    data = open_task(cfg.dataset)
    steps_per_epoch = data.steps_per_epoch(tcfg.batch_size)
    total_steps = steps_per_epoch * tcfg.epochs
    if tcfg.max_steps is not None:
        total_steps = min(total_steps, tcfg.max_steps)
    setup = build(cfg, data, mesh)
    state = setup.state
    train_step = make_train_step(setup.model, setup.tx, mesh, data.normalize)
    eval_step = make_eval_step(setup.model, mesh, data.normalize)

    ckpts = checkpoint.Checkpoints(run_dir / "checkpoints")
    record = {"epoch": 0, "batch": 0, "best_val_accuracy": None, "test_accuracy": None, "best_step": None,
              "final_test_accuracy": None, "wall_time_s": 0.0, "wandb_run_id": None}
    resume_from = _resume_path(tcfg.resume, ckpts.directory)
    if resume_from is not None:
        state, saved = checkpoint.restore(resume_from, state)
        record.update({k: saved[k] for k in record if k in saved})

    logger = None
    if lead:
        logger = RunLogger(run_dir, cfg.logger, config_dict or dataclasses.asdict(cfg),
                           run_id=record["wandb_run_id"],
                           defaults={"name": f"{cfg.name}/seed{cfg.seed}", "group": cfg.name,
                                     "tags": [cfg.dataset.name, f"seed{cfg.seed}"]})
        record["wandb_run_id"] = logger.run_id
        logger.metrics.truncate_after(int(state.step) if resume_from is not None else -1)

    n_params = count_params(state.params)
    run = _Run(cfg, state, record, data, mesh, train_step, eval_step, ckpts, logger, setup.lr_at, setup.ssm_lr_at,
               started)
    status = "failed"
    try:
        with _Preemption() as preemption:
            status = run.loop(steps_per_epoch, total_steps, eval_batch, preemption)
    except TrainingDiverged:
        status = "diverged"
        raise
    finally:
        results = run.results(status, n_params, data.majority_baseline("test"))
        if lead:
            write_json(run_dir / "results.json", results)
            logger.summary({k: results[k] for k in ("best_val_accuracy", "test_accuracy", "final_test_accuracy")})
            logger.close()
        ckpts.close()
    if lead:
        print(f"{cfg.name}: {status}; test accuracy at best validation {_pct(results['test_accuracy'])} "
              f"(best val {_pct(results['best_val_accuracy'])}, majority baseline "
              f"{_pct(results['majority_baseline'])}), {results['steps']} steps in {results['wall_time_s']:.0f} s"
              f"\nrun directory: {run_dir}")
    return results


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


class _Run:
    """The mutable part of a run, so the loop reads as the protocol it follows."""

    def __init__(self, cfg, state, record, data, mesh, train_step, eval_step, ckpts, logger, lr_at, ssm_lr_at,
                 started):
        self.cfg, self.state, self.record, self.data, self.mesh = cfg, state, record, data, mesh
        self.train_step, self.eval_step, self.ckpts, self.logger = train_step, eval_step, ckpts, logger
        self.lr_at, self.ssm_lr_at = lr_at, ssm_lr_at
        self.started = started  # wall time counts data loading and compilation too
        self.wall_before = record["wall_time_s"]

    @property
    def step(self) -> int:
        return int(jax.device_get(self.state.step))

    def loop(self, steps_per_epoch, total_steps, eval_batch, preemption) -> str:
        tcfg, record = self.cfg.trainer, self.record
        step = self.step
        if step >= total_steps:
            return "completed"
        bar = tqdm(total=total_steps, initial=step, disable=not (tcfg.progress and self.logger), unit="step",
                   dynamic_ncols=True)
        window = _Window()
        with bar:
            for epoch in range(record["epoch"], tcfg.epochs):
                start = record["batch"] if epoch == record["epoch"] else 0
                batches = self.data.train_batches(tcfg.batch_size, self.cfg.seed, epoch, start)
                for index, batch in enumerate(batches, start=start):
                    lr, ssm_lr = float(self.lr_at(step)), float(self.ssm_lr_at(step))
                    self.state, metrics = self.train_step(self.state, shard_batch(batch, self.mesh))
                    step += 1
                    loss, acc = (float(v) for v in jax.device_get((metrics["loss"], metrics["accuracy"])))
                    if not math.isfinite(loss):
                        self._diverged(step, epoch, loss)
                    window.add(loss, acc, len(batch["labels"]) * jax.process_count())  # global batch
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.3f}", lr=f"{lr:.2e}",
                                    ex_s=f"{window.rate():.0f}", refresh=False)
                    if step % tcfg.log_every == 0:
                        self._log(dict(step=step, epoch=epoch, split="train", **window.flush(), lr=lr, ssm_lr=ssm_lr))
                    epoch_end, done = index + 1 == steps_per_epoch, step >= total_steps
                    position = dict(epoch=epoch + 1, batch=0) if epoch_end else dict(epoch=epoch, batch=index + 1)
                    if epoch_end or done or (tcfg.eval_every and step % tcfg.eval_every == 0):
                        self._evaluate(step, epoch, eval_batch, position)
                    elif tcfg.checkpoint_every and step % tcfg.checkpoint_every == 0:
                        self._save("last", position)
                    if preemption.check():
                        self._save("last", position)
                        return "preempted"
                    if done:
                        return "completed"
        return "completed"

    def _log(self, event):
        if self.logger:
            self.logger.log(event)

    def _evaluate(self, step, epoch, eval_batch, position):
        """Val and test, the best-validation bookkeeping, and the checkpoints that go with them."""
        metrics = {}
        for split in ("val", "test"):
            tic = time.time()
            metrics[split] = evaluate(self.eval_step, self.state, self.data.eval_batches(split, eval_batch), self.mesh)
            rate = metrics[split]["examples"] / max(time.time() - tic, 1e-9)
            self._log(dict(step=step, epoch=epoch, split=split, loss=metrics[split]["loss"],
                           accuracy=metrics[split]["accuracy"], examples_per_s=rate))
        record = self.record
        record["final_test_accuracy"] = metrics["test"]["accuracy"]
        improved = record["best_val_accuracy"] is None or metrics["val"]["accuracy"] > record["best_val_accuracy"]
        if improved:
            record.update(best_val_accuracy=metrics["val"]["accuracy"], test_accuracy=metrics["test"]["accuracy"],
                          best_step=step)
            self._save("best", position)
        self._save("last", position)
        if self.logger:
            tqdm.write(f"step {step} epoch {epoch}: val acc {metrics['val']['accuracy']:.4f}, test acc "
                       f"{metrics['test']['accuracy']:.4f} (best val {record['best_val_accuracy']:.4f}, test there "
                       f"{record['test_accuracy']:.4f})")

    def _save(self, kind, position):
        self.record.update(position, wall_time_s=self.wall_time())
        self.ckpts.save(kind, self.state, self.record)

    def _diverged(self, step, epoch, loss):
        last = self.ckpts.latest("last")
        raise TrainingDiverged(
            f"training loss is {loss} at step {step} (epoch {epoch}); stopped. The last good checkpoint is "
            f"{last or 'none (nothing saved yet)'}. Lower optimizer.lr / optimizer.ssm_lr or set "
            f"optimizer.grad_clip, then resume with trainer.resume=<that checkpoint> or start afresh."
        )

    def wall_time(self) -> float:
        return self.wall_before + time.time() - self.started

    def results(self, status, n_params, majority_baseline) -> dict:
        record = self.record
        return {
            "name": self.cfg.name, "status": status,
            "best_val_accuracy": record["best_val_accuracy"], "test_accuracy": record["test_accuracy"],
            "best_step": record["best_step"], "final_test_accuracy": record["final_test_accuracy"],
            "majority_baseline": majority_baseline, "steps": self.step,
            "epochs": record["epoch"] + record["batch"] / max(self.data.steps_per_epoch(self.cfg.trainer.batch_size), 1),
            "wall_time_s": self.wall_time(), "n_params": n_params,
            "n_devices": jax.device_count(), "n_processes": jax.process_count(),
            "device_kind": jax.devices()[0].device_kind,
        }


class _Window:
    """Training loss/accuracy and throughput since the last train event."""

    def __init__(self):
        self._reset()

    def _reset(self):
        self.loss = self.correct = 0.0
        self.n = 0
        self.tic = time.time()

    def add(self, loss, acc, n):
        self.loss += loss * n
        self.correct += acc * n
        self.n += n

    def rate(self) -> float:
        return self.n / max(time.time() - self.tic, 1e-9)

    def flush(self) -> dict:
        out = dict(loss=self.loss / self.n, accuracy=self.correct / self.n, examples_per_s=self.rate())
        self._reset()
        return out
