"""The training run, top to bottom: set up, then steps with evaluation, logging and checkpoints at boundaries,
then a record of how it ended.

The step counter is the only position: epoch and batch are divmod(step, steps_per_epoch). The host never
waits on the device inside a logging window: each step's metrics (with its learning rates) stay on the
device and are read every `trainer.log_every` steps, where the non-finite check and the stop-signal check
(all hosts agreeing) run too; both also run before every checkpoint, so a non-finite state is never saved.
The reported number is the test accuracy at the evaluation with the best validation accuracy (the paper's
protocol); every evaluation (each epoch end, every `eval_every` steps, and the last step) is a candidate.

How a run ends (results.json `status`, the closing log line and the exit code agree):
completed (the schedule or max_steps finished; exit 0), preempted (SIGTERM: `last` saved; exit 0, for the
scheduler to requeue), interrupted (Ctrl-C: `last` saved, or a second Ctrl-C: not; exit 130), diverged (a
non-finite loss; exit 1), failed (any exception, with its type, message and traceback; exit 1), stuck
(`trainer.stop_if_stuck`: still at chance at the check's epoch, s5lra.stuck; `last` saved; exit 0, an outcome
like completed). While the run lives, results.json says `running`; a run killed outright (SIGKILL, power) keeps
saying so, with its lock free.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from tqdm import tqdm

from s5lra.atomic import write_json
from s5lra.errors import DeviceMemoryError, StorageError, TrainingDiverged
from s5lra.model import count_params
from s5lra.overrides import overrides_label
from s5lra.ssm.selfcheck import resolve_scan
from s5lra.stuck import StuckRule
from s5lra.train import checkpoint, rundir
from s5lra.train.config import TrainConfig, validate
from s5lra.train.data import TaskBatches, check_data, open_task
from s5lra.train.loggers import RunLogger
from s5lra.train.sharding import check_batch_size, initialize_distributed, make_mesh, prefetch_to_device
from s5lra.train.steps import (TrainState, build, create_train_state, evaluate, make_eval_step, make_train_step,
                               metric_names)

log = logging.getLogger("s5lra")

STOP_SIGNALS = {signal.SIGTERM: "preempted", signal.SIGINT: "interrupted"}
EXIT_CODES = {"interrupted": 130}  # like a shell's Ctrl-C; a preempted run exits 0 (its scheduler requeues it)


@dataclasses.dataclass
class Setup:
    """What a run computes with, built from its config: training and `trainer.estimate` share it."""

    cfg: TrainConfig
    mesh: Mesh
    data: TaskBatches
    model: Any
    tx: Any
    schedules: dict
    state: TrainState  # fresh, from cfg.seed
    steps_per_epoch: int
    total_steps: int
    eval_batch: int
    scan: str  # the recurrence backend `auto` resolved to
    train_step: Callable  # jitted (compiled at its first call)
    eval_step: Callable


def set_up(cfg: TrainConfig, saved_data: dict | None = None, data: TaskBatches | None = None) -> Setup:
    """Devices, data, model, optimizer, a fresh state and the step functions for a validated config.

    saved_data: a checkpoint record's `data` (vocabulary and fingerprint): the data is encoded with the run's
    own vocabulary and must match its fingerprint (unless cfg.allow_data_change).
    data: the task's batches when the caller has them (the estimate's stand-in without data); else opened here.
    """
    tcfg = cfg.trainer
    mesh = make_mesh()
    eval_batch = tcfg.eval_batch_size or tcfg.batch_size
    check_batch_size(tcfg.batch_size, mesh)
    check_batch_size(eval_batch, mesh, "trainer.eval_batch_size")
    scan = resolve_scan(cfg.model.ssm.scan)  # on a GPU, `auto` runs the kernel's self-check once, here
    data = data or open_task(cfg.dataset, vocab=saved_data["vocab"] if saved_data else None)
    if saved_data:
        check_data(saved_data, data, cfg.allow_data_change, "trainer.resume")
    steps_per_epoch = data.steps_per_epoch(tcfg.batch_size)
    total_steps = steps_per_epoch * tcfg.epochs
    if tcfg.max_steps is not None:
        total_steps = min(total_steps, tcfg.max_steps)
    model, tx, schedules = build(cfg, data.spec, steps_per_epoch)
    state = create_train_state(model, tx, data.example(), cfg.seed, mesh)
    return Setup(cfg, mesh, data, model, tx, schedules, state, steps_per_epoch, total_steps, eval_batch, scan,
                 make_train_step(model, tx, mesh, schedules), make_eval_step(model, mesh))


def train(cfg: TrainConfig, run_dir: str | Path, *, overrides: list[str] | None = None) -> dict:
    """Train as configured, writing everything into `run_dir`; returns the results (also results.json).

    overrides: the command-line overrides, recorded with the run (Hydra's `overrides.task`).
    Raises on diverged and failed runs (after recording them); SystemExit(130) when interrupted.
    """
    started = time.time()
    validate(cfg)
    cfg = rundir.with_absolute_paths(cfg)
    run_dir = Path(run_dir).absolute()
    if cfg.trainer.distributed:
        initialize_distributed()
    with rundir.claimed(run_dir, cfg.trainer.resume) as claim:
        return Run(cfg, run_dir, claim, list(overrides or []), started).execute()


class Run:
    """One training run in its claimed directory: the state, the record its checkpoints carry, how it ends."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, claim: rundir.Claim, overrides: list[str], started: float):
        self.cfg, self.run_dir, self.claim, self.overrides, self.started = cfg, run_dir, claim, overrides, started
        self.lead = jax.process_index() == 0
        self.ckpts = checkpoint.Checkpoints(run_dir / "checkpoints")
        self.same_run = claim.checkpoint is not None and self.ckpts.directory in claim.checkpoint.parents
        self.setup: Setup | None = None
        self.state = None
        self.step = 0
        self.n_params = None
        self.logger: RunLogger | None = None
        self.provenance = rundir.provenance()
        self.record = {"best_val_accuracy": None, "test_accuracy": None, "best_step": None,
                       "final_test_accuracy": None, "wall_time_s": 0.0, "wandb_run_id": None,
                       "window": Window().to_record()}
        self.window = Window()
        self.pending = []  # this window's per-step metrics vectors, still on the device
        self.wall_before = 0.0
        self.stop: StopSignals | None = None
        self.stuck_rule = StuckRule.for_task(cfg.dataset.name, cfg.trainer.epochs, cfg.trainer.stuck_after_epochs,
                                             cfg.trainer.stuck_margin)
        self.stuck = False  # the last evaluation found the run stuck (trainer.stop_if_stuck)

    # --- the run's life ---------------------------------------------------------------------------------
    def execute(self) -> dict:
        status, error = "failed", None
        try:
            with StopSignals() as self.stop:
                self.start()
                status = self.loop()
        except Stop as stop:  # a signal before the loop, or a second Ctrl-C: stop at once, unsaved
            status = stop.status
        except TrainingDiverged as err:
            status, error = "diverged", err
            raise
        except BaseException as err:
            error = out_of_memory(err) or err
            if error is err:
                raise
            raise error from err
        finally:
            results, write_error = self.finish(status, error)
        if write_error is not None:  # the run itself went well: its record could not be written
            raise write_error
        if status in EXIT_CODES:
            raise SystemExit(EXIT_CODES[status])
        return results

    def start(self) -> None:
        cfg, claim = self.cfg, self.claim
        s = self.setup = set_up(cfg, claim.record["data"] if claim.record else None)
        self.state = s.state
        self.record["data"] = s.data.identity()
        if claim.checkpoint is not None:
            self.state, saved = checkpoint.restore(claim.checkpoint, s.state)
            self.record.update({k: saved[k] for k in self.record if k != "data" and k in saved})
            if not self.same_run:  # a new run from another run's checkpoint: a W&B run of its own
                self.record["wandb_run_id"] = None
        self.step = int(jax.device_get(self.state.step))
        self.wall_before = self.record["wall_time_s"]
        self.window = Window.from_record(self.record["window"])
        self.n_params = count_params(self.state.params)
        if self.lead:
            rundir.write_config(self.run_dir, cfg, self.overrides)
            label = overrides_label(self.overrides)  # runs that differ in more than the seed group apart
            group = f"{cfg.name}/{label}" if label else cfg.name
            config = {**dataclasses.asdict(cfg), "resumed_from": str(claim.checkpoint) if claim.checkpoint else None}
            self.logger = RunLogger(self.run_dir, cfg.logger, config, run_id=self.record["wandb_run_id"],
                                    defaults={"name": f"{group}/seed{cfg.seed}", "group": group,
                                              "tags": [cfg.dataset.name, f"seed{cfg.seed}"]})
            self.record["wandb_run_id"] = self.logger.run_id
            self.logger.metrics.truncate_after(self.step if claim.checkpoint is not None else -1)
            log.info("devices: %d x %s (%d process%s); model: %d layers, %s parameters, recurrence %s",
                     jax.device_count(), jax.devices()[0].device_kind, jax.process_count(),
                     "es" if jax.process_count() > 1 else "", cfg.model.n_layers, f"{self.n_params:,}", s.scan)
            log.info("%s", s.data.describe())
            log.info("run directory: %s%s", self.run_dir,
                     f" (resuming from {claim.checkpoint}, step {self.step})" if claim.checkpoint else "")
            log.info("%s", self.logger.describe())
            if cfg.trainer.stop_if_stuck:
                log.info("trainer.stop_if_stuck: %s", self.stuck_rule.describe(s.data.majority_baseline("val")))
            self.write_results(rundir.RUNNING)
        if cfg.trainer.resume not in (None, "auto"):  # the checkpoint it continues is this run's newest `last`
            self.save("last")

    def loop(self) -> str:
        s, tcfg = self.setup, self.cfg.trainer
        progress = Progress(s.total_steps, self.step, tcfg.progress and self.lead)
        stop = self.stop
        stop.defer()
        with progress:
            epoch, start = divmod(self.step, s.steps_per_epoch)
            batches = prefetch_to_device(s.data.train_batches_from(tcfg.batch_size, self.cfg.seed, epoch, start),
                                         s.mesh)
            for batch in batches if self.step < s.total_steps else ():
                self.state, metrics = s.train_step(self.state, batch)
                self.step += 1
                self.pending.append(metrics)
                progress.update()
                step, done = self.step, self.step >= s.total_steps
                evaluate_now = step % s.steps_per_epoch == 0 or done or bool(tcfg.eval_every and step % tcfg.eval_every == 0)
                save_now = evaluate_now or bool(tcfg.checkpoint_every and step % tcfg.checkpoint_every == 0)
                if step % tcfg.log_every and not save_now:
                    continue
                last = self.read_pending()
                if step % tcfg.log_every == 0:
                    event = self.window.flush()
                    progress.show(step, event, last["lr"], s.steps_per_epoch)
                    if self.logger:
                        self.logger.log(dict(step=step, epoch=(step - 1) // s.steps_per_epoch, split="train",
                                             **event, lr=last["lr"], ssm_lr=last["ssm_lr"]))
                with self.window.paused():  # evaluation and checkpoints are not training throughput
                    if evaluate_now:
                        self.evaluate()
                    stopped = stop.agreed()
                    stuck = self.stuck and not done
                    if save_now or stopped or stuck:
                        self.save("last")
                if stopped:
                    return stopped
                if stuck:
                    return "stuck"
                if done:
                    break
        return "completed"

    def finish(self, status: str, error: BaseException | None) -> tuple[dict, StorageError | None]:
        """Record how the run ended: results.json, the W&B summary, the closing log line (process 0)."""
        results = self.results(status, error)
        if not self.lead:
            return results, None
        write_error = None
        try:
            self.write_results(status, results)
        except StorageError as err:
            write_error = err
            log.error("error: %s", err)
        if self.logger is not None:
            try:
                self.logger.summary({k: results[k] for k in ("best_val_accuracy", "test_accuracy",
                                                             "final_test_accuracy")})
                self.logger.close()
            except Exception as err:  # W&B must never cost the record
                log.warning("W&B did not close cleanly: %s", err)
        ended = status + (f" at step {self.step} ({results['error']})" if error is not None else "")
        log.info("%s: %s; test accuracy at best validation %s (best val %s, majority baseline %s), %d of %s steps "
                 "in %.0f s%s; run directory: %s", self.cfg.name, ended, _pct(results["test_accuracy"]),
                 _pct(results["best_val_accuracy"]), _pct(results["majority_baseline"]), self.step,
                 results["total_steps"], results["wall_time_s"],
                 "" if results["last_saved"] or status == "completed" else "; checkpoints/last is not at this step",
                 self.run_dir)
        return results, None if error is not None else write_error

    # --- boundaries -------------------------------------------------------------------------------------
    def read_pending(self) -> dict:
        """Bring this window's metrics to the host; stop on a non-finite loss before anything is saved."""
        names = metric_names(self.setup.schedules)
        for offset, row in enumerate(jax.device_get(self.pending)):
            at = self.step - len(self.pending) + offset + 1
            metrics = dict(zip(names, row.tolist()))
            if not math.isfinite(metrics["loss"]):
                last = self.ckpts.latest("last")
                raise TrainingDiverged(
                    f"training loss is {metrics['loss']} at step {at} (epoch {(at - 1) // self.setup.steps_per_epoch});"
                    f" stopped. The last good checkpoint is {last or 'none (nothing saved yet)'}. Lower "
                    f"optimizer.lr / optimizer.ssm_lr or set optimizer.grad_clip, then resume with "
                    f"trainer.resume=<that checkpoint> or start afresh.")
            self.window.add(metrics)
        self.pending.clear()
        return self.window.last

    def evaluate(self) -> None:
        s, step = self.setup, self.step
        epoch = (step - 1) // s.steps_per_epoch
        metrics = {}
        for split in ("val", "test"):
            tic = time.time()
            metrics[split] = evaluate(s.eval_step, self.state, prefetch_to_device(s.data.eval_batches(split, s.eval_batch),
                                                                                 s.mesh))
            if self.logger:
                self.logger.log(dict(step=step, epoch=epoch, split=split, loss=metrics[split]["loss"],
                                     accuracy=metrics[split]["accuracy"],
                                     examples_per_s=metrics[split]["examples"] / max(time.time() - tic, 1e-9)))
        record = self.record
        record["final_test_accuracy"] = metrics["test"]["accuracy"]
        if record["best_val_accuracy"] is None or metrics["val"]["accuracy"] > record["best_val_accuracy"]:
            record.update(best_val_accuracy=metrics["val"]["accuracy"], test_accuracy=metrics["test"]["accuracy"],
                          best_step=step)
            self.save("best")
        log.info("step %d epoch %d: val acc %.4f, test acc %.4f (best val %.4f, test there %.4f)", step, epoch,
                 metrics["val"]["accuracy"], metrics["test"]["accuracy"], record["best_val_accuracy"],
                 record["test_accuracy"])
        if self.cfg.trainer.stop_if_stuck:
            self.check_stuck()

    def check_stuck(self) -> None:
        """trainer.stop_if_stuck: mark the run stuck (the loop saves `last` and stops) and say so, W&B included.
        Every process evaluates the same global batches, so all of them reach the same verdict."""
        s, baseline = self.setup, self.setup.data.majority_baseline("val")
        epochs = self.step / s.steps_per_epoch
        self.stuck = self.stuck_rule.stuck(epochs, self.record["best_val_accuracy"], baseline)
        if self.stuck and self.step < s.total_steps:
            message = (f"{self.cfg.name} seed {self.cfg.seed}: best validation accuracy "
                       f"{_pct(self.record['best_val_accuracy'])} after {epochs:.1f} epochs; "
                       f"{self.stuck_rule.describe(baseline)}. Stopping with status stuck (checkpoints/last saved; "
                       f"continue it with trainer.stop_if_stuck=false trainer.resume=auto "
                       f"hydra.run.dir={self.run_dir})")
            log.warning("%s", message)
            if self.logger:
                self.logger.alert("s5lra: stuck seed stopped", message)

    def save(self, kind: str) -> None:
        self.record.update(wall_time_s=self.wall_time(), window=self.window.to_record())
        self.ckpts.save(kind, self.state, self.record)
        if kind == "last" and self.lead:
            self.write_results(rundir.RUNNING)

    # --- the record ---------------------------------------------------------------------------------------
    def wall_time(self) -> float:
        """Training wall time over all of the run's processes: earlier ones' (restored) plus this one's."""
        return self.wall_before + time.time() - self.started

    def results(self, status: str, error: BaseException | None = None) -> dict:
        s, record = self.setup, self.record
        latest = self.ckpts.latest("last")
        out = {
            "name": self.cfg.name, "status": status, "seed": self.cfg.seed, "overrides": self.overrides,
            **{k: record[k] for k in ("best_val_accuracy", "test_accuracy", "best_step", "final_test_accuracy")},
            "majority_baseline": s.data.majority_baseline("test") if s else None, "steps": self.step,
            "epochs": self.step / s.steps_per_epoch if s else None, "steps_per_epoch": s.steps_per_epoch if s else None,
            "total_steps": s.total_steps if s else None, "wall_time_s": self.wall_time(), "n_params": self.n_params,
            "n_devices": jax.device_count(), "n_processes": jax.process_count(),
            "device_kind": jax.devices()[0].device_kind,
            "resumed_from": str(self.claim.checkpoint) if self.claim.checkpoint else None,
            "last_checkpoint": str(latest.relative_to(self.run_dir)) if latest else None,
            "last_saved": latest is not None and int(latest.name) == self.step, **self.provenance,
        }
        if s:  # whether it learned (s5lra.stuck): the seed-budget sweeper and the report count it
            baseline = s.data.majority_baseline("val")
            out.update(learned=self.stuck_rule.learned(record["best_val_accuracy"], baseline),
                       learned_threshold=baseline + self.stuck_rule.margin,
                       stuck_rule={"enabled": self.cfg.trainer.stop_if_stuck,
                                   "after_epochs": self.stuck_rule.after_epochs, "margin": self.stuck_rule.margin,
                                   "val_majority_baseline": baseline})
        if status == rundir.RUNNING:
            out["process"] = rundir.process()
        if error is not None:
            out["error"] = f"{type(error).__name__}: {error}"
            out["traceback"] = "".join(traceback.format_exception(error))
        return out

    def write_results(self, status: str, results: dict | None = None) -> None:
        """results.json, atomically, with Ctrl-C and SIGTERM held back while it is written."""
        results = results or self.results(status)
        path = self.run_dir / "results.json"
        with _signals_held():
            try:
                write_json(path, results)
            except OSError as err:
                raise StorageError(f"cannot write {path}: {err.strerror or err}") from err


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


@contextlib.contextmanager
def _signals_held():
    held = set(STOP_SIGNALS)
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


class Window:
    """Training loss/accuracy since the last train event (host sums, part of every checkpoint so that a
    resumed run logs the same events as an uninterrupted one), and its training time (pauses excluded)."""

    def __init__(self, loss=0.0, correct=0.0, weight=0.0):
        self.loss, self.correct, self.weight = loss, correct, weight
        self.tic = time.time()
        self.paused_s = 0.0
        self.last = None

    def add(self, metrics: dict):
        weight = metrics["weight"]
        self.loss += metrics["loss"] * weight
        self.correct += metrics["accuracy"] * weight
        self.weight += weight
        self.last = metrics

    @contextlib.contextmanager
    def paused(self):
        tic = time.time()
        try:
            yield
        finally:
            self.paused_s += time.time() - tic

    def flush(self) -> dict:
        seconds = time.time() - self.tic - self.paused_s
        out = dict(loss=self.loss / self.weight, accuracy=self.correct / self.weight,
                   examples_per_s=self.weight / max(seconds, 1e-9))
        self.__init__()
        return out

    def to_record(self) -> dict:
        return {"loss": self.loss, "correct": self.correct, "weight": self.weight}

    @classmethod
    def from_record(cls, saved: dict) -> "Window":
        return cls(saved["loss"], saved["correct"], saved["weight"])


class Progress:
    """A tqdm bar when stderr is a terminal; elsewhere (a log file, a cluster job) one log line per train event."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.total, self.enabled = total, enabled
        self.bar = tqdm(total=total, initial=initial, disable=not (enabled and sys.stderr.isatty()), unit="step",
                        dynamic_ncols=True)
        self.lines = enabled and self.bar.disable

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()

    def update(self):
        self.bar.update(1)

    def show(self, step: int, event: dict, lr: float, steps_per_epoch: int) -> None:
        self.bar.set_postfix(loss=f"{event['loss']:.4f}", acc=f"{event['accuracy']:.3f}", lr=f"{lr:.2e}",
                             ex_s=f"{event['examples_per_s']:.0f}", refresh=False)
        if self.lines:
            log.info("step %d/%d (epoch %.2f): loss %.4f, acc %.3f, lr %.2e, %.0f examples/s", step, self.total,
                     step / steps_per_epoch, event["loss"], event["accuracy"], lr, event["examples_per_s"])


class Stop(BaseException):
    """A stop signal that cannot wait for the next boundary (before the loop, or a second Ctrl-C)."""

    def __init__(self, status: str):
        super().__init__(status)
        self.status = status


def out_of_memory(err: BaseException) -> DeviceMemoryError | None:
    """XLA's out-of-memory error (at compile, initialisation or a step) as a user error that says what to try."""
    if not (isinstance(err, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(err)):
        return None
    xla = str(err).strip().splitlines()[0]
    return DeviceMemoryError(f"out of device memory ({xla}): trainer.estimate=true shows the step's peak memory; "
                             f"model.remat=true, a smaller trainer.batch_size or more devices lower it")


class StopSignals:
    """SIGTERM (preemption) and SIGINT (Ctrl-C). Once the loop runs (`defer`), a signal asks the run to save
    `last` and stop at the next boundary, and a second Ctrl-C stops at once without saving; before that (data,
    compilation), a signal stops at once: nothing new would be saved."""

    def __init__(self):
        self.requested = None
        self.deferred = False
        self._previous = {}

    def __enter__(self):
        self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        return self

    def defer(self):
        self.deferred = True

    def _handle(self, signum, frame):
        status = STOP_SIGNALS[signal.Signals(signum)]
        if not self.deferred or (self.requested == "interrupted" and status == "interrupted"):
            raise Stop(status)
        self.requested = status
        log.warning("%s: saving checkpoints/last at the next log boundary, then stopping%s",
                    signal.Signals(signum).name, " (Ctrl-C again: stop now, unsaved)" if status == "interrupted" else "")

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
