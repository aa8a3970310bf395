"""One job of `run_train.py`, under whichever Hydra launcher runs it (basic, submitit's slurm/local, Optuna).

- It returns the run's best validation accuracy: the objective of `hparams_search=lra_optuna` (None when the run
  did not complete; a stuck run's, at chance, is a result too).
- With trainer.estimate=true it estimates the run's cost instead (s5lra.train.estimate), with the SLURM time
  limits of the launcher it runs under (configs/hydra/launcher/slurm.yaml's defaults under any other).
- In a sweep a failing job's results.json says `failed` (or `diverged`) with its error and traceback (the run
  records that itself; a job that fails before its run starts, e.g. on a bad value, gets it here), and the job
  returns, so the other jobs still run; s5lra.train.sweep summarises the sweep at its end. A single run fails as before:
  `error: <message>` and exit status 1 for the project's own errors, a traceback for anything else.
- Under submitit (hydra/launcher=slurm|local) every job runs with trainer.resume=auto, so a requeued job
  continues its own run directory; a job of several ranks joins jax.distributed (SLURM: JAX reads srun's
  variables itself; local: from submitit's); and submitit's pre-timeout signal SIGUSR2 stops training the way
  SIGTERM does (checkpoints/last, status preempted) before submitit's own handler requeues the job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import traceback
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from s5lra.errors import USER_ERRORS, RunDirectoryError, errors_to_exit
from s5lra.atomic import write_json
from s5lra.train.rundir import read_results

log = logging.getLogger("s5lra")
SUBMITIT_LAUNCHERS = "hydra_plugins.hydra_submitit_launcher."
# A basic-launcher sweep runs its jobs in its own process: the SIGTERM that stopped one job stops the sweep
# (an interrupted run, Ctrl-C, exits by itself: s5lra.train.loop).
STOP_SWEEP_EXIT = 128 + signal.SIGTERM
JAX_PORT_BASE, JAX_PORT_RANGE = 61440, 4096  # JAX's own SLURM default: 61440 + job id % 4096
JAX_PROCESS_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


# Config choices that need an optional extra (requirements-extras.txt), and the plugin that provides each.
EXTRAS = {"hydra/launcher=slurm": "hydra_plugins.hydra_submitit_launcher",
          "hydra/launcher=local": "hydra_plugins.hydra_submitit_launcher",
          "hparams_search=lra_optuna": "hydra_plugins.hydra_optuna_sweeper"}


def check_command_line(argv: list[str], configs: Path) -> str | None:
    """What Hydra would report unhelpfully, said in one line (None: nothing): an experiment that does not exist
    (Hydra lists only the top folder's), a launcher or search whose optional extra is not installed."""
    for arg in argv:
        choice = arg.lstrip("+")
        if choice in EXTRAS and not _installed(EXTRAS[choice]):
            return f"{choice} needs the optional extras: make install-extras (or pip install -e '.[cluster,search]')"
        key, _, value = choice.partition("=")
        if key == "experiment" and "(" not in value and not any(a.startswith("hydra.searchpath") for a in argv):
            folder = configs / "experiment"
            known = sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml"))
            missing = [v for v in value.split(",") if v not in known]
            if missing:
                return f"experiment={missing[0]}: no such experiment; available: {', '.join(known)}"
    return None


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def run_job(cfg: DictConfig) -> float | None:
    """Train the composed config in Hydra's output directory; returns the best validation accuracy."""
    from s5lra.train import train

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    job = SubmititJob.current(hydra_cfg)
    overrides = list(hydra_cfg.overrides.task)
    try:
        config = OmegaConf.to_object(cfg)
        if config.trainer.estimate:
            return estimate_job(config, run_dir, hydra_cfg, job, overrides)
        if job is None:
            results = train(config, run_dir, overrides=overrides)
        else:
            results = job.train(train, config, run_dir, overrides)
    except Exception as err:
        if not in_sweep:
            with errors_to_exit(log):  # the project's errors: one line and exit 1; anything else: traceback
                raise
        # RunDirectoryError: the directory holds another run, whose results.json is not ours to change
        recorded = (job is None or job.rank == 0) and not isinstance(err, RunDirectoryError)
        if recorded:
            record_failure(run_dir, err)
        where = f" (recorded in {run_dir / 'results.json'})" if recorded else ""
        if isinstance(err, USER_ERRORS):
            log.error("job failed: %s%s", err, where)
        else:
            log.exception("job failed%s", where)
        return None
    status = results.get("status")
    if in_sweep and job is None and status == "preempted":
        log.warning("sweep stopped by SIGTERM (checkpoints/last of this job saved in %s)", run_dir)
        raise SystemExit(STOP_SWEEP_EXIT)
    return results.get("best_val_accuracy") if status in ("completed", "stuck") else None


def estimate_job(config, run_dir: Path, hydra_cfg, job: SubmititJob | None, overrides: list[str]) -> None:
    """trainer.estimate=true: estimate.json and the printed table, nothing trained (ranks join as in training)."""
    from s5lra.train.estimate import Allocation, estimate

    estimate(config if job is None else job.prepare(config), run_dir,
             allocation=Allocation.from_launcher(hydra_cfg.launcher), overrides=overrides)


def record_failure(run_dir: Path, err: BaseException) -> None:
    """A sweep job that failed before its run started (e.g. a bad value): results.json says `failed`, with the
    error. A run that started records its own ending (s5lra.train.loop); returns whether this wrote one."""
    if (run_dir / "results.json").exists():
        return False
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "results.json", {"status": "failed", "error": f"{type(err).__name__}: {err}",
                                          "traceback": traceback.format_exc()})


class SubmititJob:
    """The submitit side of a job: its ranks, resuming, and requeueing on submitit's pre-timeout signal."""

    FILE = "job.json"  # in the run directory: the scheduler's job id (the sweep summary shows it)

    def __init__(self, env):
        self.env = env  # submitit.JobEnvironment: cluster, job_id, num_tasks, global_rank, USR_SIG

    @classmethod
    def current(cls, hydra_cfg) -> SubmititJob | None:
        """The running submitit job, or None under any other launcher."""
        if not str(hydra_cfg.launcher.get("_target_", "")).startswith(SUBMITIT_LAUNCHERS):
            return None
        import submitit

        return cls(submitit.JobEnvironment())

    @property
    def rank(self) -> int:
        return self.env.global_rank

    def prepare(self, cfg):
        """resume=auto (a requeued job finds its checkpoints/last; a first start finds none and starts fresh);
        distributed when the job has several ranks."""
        changes = {"resume": "auto"} if cfg.trainer.resume is None else {}
        if self.env.num_tasks > 1:
            changes["distributed"] = True
            if self.env.cluster == "local":
                # JAX detects SLURM but not submitit_local: say where rank 0 listens and who is who
                port = JAX_PORT_BASE + int(self.env.job_id) % JAX_PORT_RANGE
                os.environ.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                                  JAX_NUM_PROCESSES=str(self.env.num_tasks), JAX_PROCESS_ID=str(self.rank))
            else:
                # JAX reads srun's variables; values inherited from the submitting shell would override them
                # (every task the same process id: no coordinator, and the job hangs in initialize())
                stale = [key for key in JAX_PROCESS_VARIABLES if os.environ.pop(key, None) is not None]
                if stale and self.rank == 0:
                    log.warning("ignoring %s from the submitting environment: JAX takes the processes from %s",
                                ", ".join(stale), self.env.cluster)
        return dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, **changes))

    def record(self, run_dir: Path) -> None:
        """job.json: which scheduler job runs (or ran) this directory, for the sweep summary; a requeued
        SLURM array element keeps its id."""
        if self.rank == 0:
            write_json(run_dir / self.FILE, {"cluster": self.env.cluster, "job_id": str(self.env.job_id)})

    def train(self, train, cfg, run_dir: Path, overrides: list[str]) -> dict:
        self.record(run_dir)
        signum = getattr(signal, f"SIG{self.env.USR_SIG}")
        submitit_handler = signal.getsignal(signum)
        with _signal_as_sigterm(signum) as received:
            results = train(self.prepare(cfg), run_dir, overrides=overrides)
        if received and results.get("status") == "preempted" and callable(submitit_handler):
            from submitit.core.utils import UncompletedJobError

            try:  # rank 0: submit this job again and exit; the other ranks return
                submitit_handler(signum, None)
            except UncompletedJobError as err:  # e.g. its max_num_timeout requeues are used up
                log.warning("not requeued: %s", err)
                if self.rank == 0:
                    write_json(run_dir / "results.json", {**read_results(run_dir), "error": f"not requeued: {err}"})
        return results


@contextlib.contextmanager
def _signal_as_sigterm(signum: int):
    """While training, `signum` sends this process SIGTERM, which the training loop answers by saving
    checkpoints/last and returning `preempted`; yields a list that records the signal's arrival."""
    received = []

    def handle(sig, frame):
        received.append(sig)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signum, handle)
    try:
        yield received
    finally:
        signal.signal(signum, previous)
