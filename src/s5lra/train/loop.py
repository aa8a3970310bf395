"""The training run, top to bottom: set up, then steps with evaluation, logging and checkpoints at boundaries.

The step counter is the only position: epoch and batch are divmod(step, steps_per_epoch). The host never
waits on the device inside a logging window: each step's metrics (with its learning rates) stay on the
device and are read every `trainer.log_every` steps, where the non-finite check and the stop-signal check
(all hosts agreeing) run too; both also run before every checkpoint, so a non-finite state is never saved.
The reported number is the test accuracy at the evaluation with the best validation accuracy (the paper's
protocol); every evaluation (each epoch end, every `eval_every` steps, and the last step) is a candidate.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import time
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from s5lra.errors import TrainingDiverged
from s5lra.model import count_params
from s5lra.overrides import overrides_label
from s5lra.ssm.selfcheck import resolve_scan
from s5lra.train import checkpoint, rundir
from s5lra.train.config import TrainConfig, validate
from s5lra.train.data import check_data, open_task
from s5lra.atomic import write_json
from s5lra.train.loggers import RunLogger
from s5lra.train.sharding import check_batch_size, initialize_distributed, make_mesh, prefetch_to_device
from s5lra.train.steps import build, create_train_state, evaluate, make_eval_step, make_train_step, metric_names

log = logging.getLogger("s5lra")

STOP_SIGNALS = {signal.SIGTERM: "preempted", signal.SIGINT: "interrupted"}
EXIT_CODES = {"interrupted": 130}  # like a shell's Ctrl-C; a preempted run exits 0 (its scheduler requeues it)


def train(cfg: TrainConfig, run_dir: str | Path, *, overrides: list[str] | None = None) -> dict:
    """Train as configured, writing everything into `run_dir`; returns the results (also results.json).

    overrides: the command-line overrides, recorded with the run (Hydra's `overrides.task`).
    """
    started = time.time()
    validate(cfg)
    cfg = rundir.with_absolute_paths(cfg)
    tcfg = cfg.trainer
    run_dir = Path(run_dir).absolute()
    resume_from = rundir.claim(run_dir, tcfg.resume)
    if tcfg.distributed:
        initialize_distributed()
    lead = jax.process_index() == 0
    mesh = make_mesh()
    eval_batch = tcfg.eval_batch_size or tcfg.batch_size
    check_batch_size(tcfg.batch_size, mesh)
    check_batch_size(eval_batch, mesh, "trainer.eval_batch_size")
    scan = resolve_scan(cfg.model.ssm.scan)  # on a GPU, `auto` runs the kernel's self-check once, here

    saved = checkpoint.read_record(resume_from) if resume_from else None
    data = open_task(cfg.dataset, vocab=saved["data"]["vocab"] if saved else None)
    if saved:
        check_data(saved["data"], data, cfg.allow_data_change, "trainer.resume")
    steps_per_epoch = data.steps_per_epoch(tcfg.batch_size)
    total_steps = steps_per_epoch * tcfg.epochs if tcfg.max_steps is None else min(steps_per_epoch * tcfg.epochs,
                                                                                    tcfg.max_steps)
    model, tx, schedules = build(cfg, data.spec, steps_per_epoch)
    state = create_train_state(model, tx, data.example(), cfg.seed, mesh)
    record = {"best_val_accuracy": None, "test_accuracy": None, "best_step": None, "final_test_accuracy": None,
              "wall_time_s": 0.0, "wandb_run_id": None, "window": Window().to_record(), "data": data.identity()}
    if resume_from is not None:
        state, saved = checkpoint.restore(resume_from, state)
        record.update({k: saved[k] for k in record if k not in ("data",) and k in saved})  # data: what it is now
    elif tcfg.resume == "auto":
        log.info("trainer.resume=auto: no checkpoint in %s; starting fresh", run_dir)
    step = int(jax.device_get(state.step))

    logger = None
    if lead:
        rundir.write_config(run_dir, cfg, list(overrides or []))
        label = overrides_label(overrides or [])  # runs that differ in more than the seed group apart
        group = f"{cfg.name}/{label}" if label else cfg.name
        logger = RunLogger(run_dir, cfg.logger, dataclasses.asdict(cfg), run_id=record["wandb_run_id"],
                           defaults={"name": f"{group}/seed{cfg.seed}", "group": group,
                                     "tags": [cfg.dataset.name, f"seed{cfg.seed}"]})
        record["wandb_run_id"] = logger.run_id
        logger.metrics.truncate_after(step if resume_from is not None else -1)
    n_params = count_params(state.params)
    log.info("devices: %d x %s (%d process%s); model: %d layers, %s parameters, recurrence %s", jax.device_count(),
             jax.devices()[0].device_kind, jax.process_count(), "es" if jax.process_count() > 1 else "",
             cfg.model.n_layers, f"{n_params:,}", scan)
    log.info("%s", data.describe())
    log.info("run directory: %s%s", run_dir, f" (resuming from step {step})" if resume_from else "")
    if logger:
        log.info("%s", logger.describe())

    train_step = make_train_step(model, tx, mesh, schedules)
    eval_step = make_eval_step(model, mesh)
    ckpts = checkpoint.Checkpoints(run_dir / "checkpoints")
    wall_before = record["wall_time_s"]
    window = Window.from_record(record["window"])
    pending = []  # this window's per-step metrics vectors, still on the device
    names = metric_names(schedules)

    def save(kind):
        record.update(wall_time_s=wall_before + time.time() - started, window=window.to_record())
        ckpts.save(kind, state, record)

    def read_pending():
        """Bring this window's metrics to the host; stop on a non-finite loss before anything is saved."""
        for offset, row in enumerate(jax.device_get(pending)):
            at = step - len(pending) + offset + 1
            metrics = dict(zip(names, row.tolist()))
            if not math.isfinite(metrics["loss"]):
                last = ckpts.latest("last")
                raise TrainingDiverged(
                    f"training loss is {metrics['loss']} at step {at} (epoch {(at - 1) // steps_per_epoch}); "
                    f"stopped. The last good checkpoint is {last or 'none (nothing saved yet)'}. Lower "
                    f"optimizer.lr / optimizer.ssm_lr or set optimizer.grad_clip, then resume with "
                    f"trainer.resume=<that checkpoint> or start afresh.")
            window.add(metrics)
        pending.clear()
        return window.last

    def run_evaluation():
        epoch = (step - 1) // steps_per_epoch
        metrics = {}
        for split in ("val", "test"):
            tic = time.time()
            metrics[split] = evaluate(eval_step, state, prefetch_to_device(data.eval_batches(split, eval_batch), mesh))
            if logger:
                logger.log(dict(step=step, epoch=epoch, split=split, loss=metrics[split]["loss"],
                                accuracy=metrics[split]["accuracy"],
                                examples_per_s=metrics[split]["examples"] / max(time.time() - tic, 1e-9)))
        record["final_test_accuracy"] = metrics["test"]["accuracy"]
        if record["best_val_accuracy"] is None or metrics["val"]["accuracy"] > record["best_val_accuracy"]:
            record.update(best_val_accuracy=metrics["val"]["accuracy"], test_accuracy=metrics["test"]["accuracy"],
                          best_step=step)
            save("best")
        log.info("step %d epoch %d: val acc %.4f, test acc %.4f (best val %.4f, test there %.4f)", step, epoch,
                 metrics["val"]["accuracy"], metrics["test"]["accuracy"], record["best_val_accuracy"],
                 record["test_accuracy"])

    status = "failed"
    bar = tqdm(total=total_steps, initial=step, disable=not (tcfg.progress and lead), unit="step", dynamic_ncols=True)
    try:
        with StopSignals() as stop, bar:
            status = "completed"
            epoch, start = divmod(step, steps_per_epoch)
            batches = prefetch_to_device(data.train_batches_from(tcfg.batch_size, cfg.seed, epoch, start), mesh)
            for batch in batches if step < total_steps else ():
                state, metrics = train_step(state, batch)
                step += 1
                pending.append(metrics)
                bar.update(1)
                done = step >= total_steps
                evaluate_now = step % steps_per_epoch == 0 or done or bool(tcfg.eval_every and step % tcfg.eval_every == 0)
                save_now = evaluate_now or bool(tcfg.checkpoint_every and step % tcfg.checkpoint_every == 0)
                if step % tcfg.log_every and not save_now:
                    continue
                last = read_pending()
                if step % tcfg.log_every == 0:
                    event = window.flush()
                    bar.set_postfix(loss=f"{event['loss']:.4f}", acc=f"{event['accuracy']:.3f}",
                                    lr=f"{last['lr']:.2e}", ex_s=f"{event['examples_per_s']:.0f}", refresh=False)
                    if logger:
                        logger.log(dict(step=step, epoch=(step - 1) // steps_per_epoch, split="train", **event,
                                        lr=last["lr"], ssm_lr=last["ssm_lr"]))
                if evaluate_now:
                    run_evaluation()
                stopped = stop.agreed()
                if save_now or stopped:
                    save("last")
                if stopped:
                    status = stopped
                    break
                if done:
                    break
    except TrainingDiverged:
        status = "diverged"
        raise
    finally:
        wall = wall_before + time.time() - started
        results = _results(cfg, record, status, step, steps_per_epoch, wall, n_params, data, overrides)
        if lead:
            write_json(run_dir / "results.json", results)
            logger.summary({k: results[k] for k in ("best_val_accuracy", "test_accuracy", "final_test_accuracy")})
            logger.close()
            log.info("%s: %s; test accuracy at best validation %s (best val %s, majority baseline %s), %d steps "
                     "in %.0f s; run directory: %s", cfg.name, status, _pct(results["test_accuracy"]),
                     _pct(results["best_val_accuracy"]), _pct(results["majority_baseline"]), step, wall, run_dir)
    if status in EXIT_CODES:
        raise SystemExit(EXIT_CODES[status])
    return results


def _results(cfg, record, status, step, steps_per_epoch, wall, n_params, data, overrides) -> dict:
    return {
        "name": cfg.name, "status": status, "seed": cfg.seed, "overrides": list(overrides or []),
        **{k: record[k] for k in ("best_val_accuracy", "test_accuracy", "best_step", "final_test_accuracy")},
        "majority_baseline": data.majority_baseline("test"), "steps": step, "epochs": step / steps_per_epoch,
        "steps_per_epoch": steps_per_epoch, "wall_time_s": wall, "n_params": n_params,
        "n_devices": jax.device_count(), "n_processes": jax.process_count(),
        "device_kind": jax.devices()[0].device_kind, **rundir.provenance(),
    }


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


class Window:
    """Training loss/accuracy since the last train event (host sums, part of every checkpoint so that a
    resumed run logs the same events as an uninterrupted one)."""

    def __init__(self, loss=0.0, correct=0.0, weight=0.0):
        self.loss, self.correct, self.weight = loss, correct, weight
        self.tic = time.time()
        self.last = None

    def add(self, metrics: dict):
        weight = metrics["weight"]
        self.loss += metrics["loss"] * weight
        self.correct += metrics["accuracy"] * weight
        self.weight += weight
        self.last = metrics

    def flush(self) -> dict:
        out = dict(loss=self.loss / self.weight, accuracy=self.correct / self.weight,
                   examples_per_s=self.weight / max(time.time() - self.tic, 1e-9))
        self.__init__()
        return out

    def to_record(self) -> dict:
        return {"loss": self.loss, "correct": self.correct, "weight": self.weight}

    @classmethod
    def from_record(cls, saved: dict) -> "Window":
        return cls(saved["loss"], saved["correct"], saved["weight"])


class StopSignals:
    """SIGTERM (preemption) and SIGINT (Ctrl-C) ask the run to save `last` and stop at the next boundary;
    a second SIGINT stops at once without saving."""

    def __init__(self):
        self.requested = None
        self._previous = {}

    def __enter__(self):
        self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        return self

    def _handle(self, signum, frame):
        if self.requested == "interrupted" and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = STOP_SIGNALS[signal.Signals(signum)]
        log.warning("%s: saving checkpoints/last at the next log boundary, then stopping%s",
                    signal.Signals(signum).name, " (Ctrl-C again: stop now, unsaved)" if signum == signal.SIGINT else "")

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def agreed(self) -> str | None:
        """The stop status on every process as soon as any process got a signal (they stop at one step)."""
        if jax.process_count() == 1:
            return self.requested
        codes = [None, *STOP_SIGNALS.values()]
        got = multihost_utils.process_allgather(np.array(codes.index(self.requested)))
        return codes[int(np.max(got))]
