"""The end of a sweep: each job's status read from its run directory, one summary, exit 1 unless all finished.

Hydra calls `SweepSummary.on_multirun_end` after the last job of a `-m` sweep, whatever the launcher
(configs/hydra/callbacks/sweep_summary.yaml); `python -m s5lra.train.sweep SWEEP_DIR` prints the same summary
at any time, e.g. while a SLURM array is still running. A job's status is its results.json's: completed,
failed or diverged (with the error), preempted or interrupted (checkpoints/last saved; continue with
trainer.resume=auto), stuck (stopped at chance by trainer.stop_if_stuck: an outcome, like completed), running (its
process holds the run directory's lock), or killed (results.json still says running but no process holds the
lock); a job that only estimated its cost (trainer.estimate=true: estimate.json) is `estimated`; a job directory
without results.json is unfinished (not started yet, or killed before it began). Under
hydra/launcher=slurm|local each line names the scheduler's job (its job.json, written by s5lra.train.launch):
`slurm job 1234_0` is the array element whose log is `.submitit/1234_0/` in the sweep directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hydra.experimental.callback import Callback

from s5lra.train.rundir import RUNNING, is_active

ORDER = ("completed", "stuck", "estimated", "failed", "diverged", "preempted", "interrupted", "running", "killed",
         "unfinished")
FINISHED = ("completed", "stuck", "estimated")  # outcomes; anything else makes the sweep exit 1
CONTINUABLE = ("preempted", "interrupted", "killed")  # checkpoints/last (if any) continues them


@dataclass
class Job:
    path: Path
    status: str
    best_val_accuracy: float | None = None
    test_accuracy: float | None = None
    error: str | None = None
    scheduler_job: str | None = None  # e.g. "slurm job 1234_0"


def _job_dirs(sweep_dir: Path) -> list[Path]:
    """The sweep's job directories (Hydra's numbered sub-folders), in job order."""
    dirs = [p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(dirs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def _scheduler_job(path: Path) -> str | None:
    try:
        job = json.loads((path / "job.json").read_text())
        return f"{job['cluster']} job {job['job_id']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not run by a scheduler (basic launcher), or not started yet


def collect(sweep_dir: str | Path) -> list[Job]:
    jobs = []
    for path in _job_dirs(Path(sweep_dir)):
        scheduler_job = _scheduler_job(path)
        try:
            results = json.loads((path / "results.json").read_text())
        except FileNotFoundError:
            status = "estimated" if (path / "estimate.json").is_file() else "unfinished"
            jobs.append(Job(path, status, scheduler_job=scheduler_job))
            continue
        except ValueError as err:
            jobs.append(Job(path, "unfinished", error=f"results.json unreadable ({err})", scheduler_job=scheduler_job))
            continue
        status = results.get("status", "unfinished")
        if status == RUNNING and not is_active(path):  # its process died without recording an ending
            status = "killed"
        jobs.append(Job(path, status, results.get("best_val_accuracy"), results.get("test_accuracy"),
                        results.get("error"), scheduler_job))
    return jobs


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def summary(jobs: list[Job], sweep_dir: str | Path) -> str:
    counts = Counter(j.status for j in jobs)
    ranked = sorted(counts, key=lambda s: ORDER.index(s) if s in ORDER else len(ORDER))
    head = ", ".join(f"{counts[s]} {s}" for s in ranked)
    lines = [f"sweep {sweep_dir}: {len(jobs)} job(s): {head or 'none found'}"]
    for j in jobs:
        if j.status in ("completed", "stuck"):
            detail = f"best val {_pct(j.best_val_accuracy)}%, test at best val {_pct(j.test_accuracy)}%"
            if j.status == "stuck":
                detail += (" (stopped at chance; to continue it: its .hydra/overrides.yaml plus "
                           f"trainer.stop_if_stuck=false trainer.resume=auto hydra.run.dir={j.path})")
        elif j.status == "estimated":
            detail = f"cost estimate in {j.path / 'estimate.json'}"
        elif j.status == "running":
            detail = "still running"
        elif j.status in CONTINUABLE:
            saved = ("ended without a record (killed: out of memory, SIGKILL, a lost node?); its newest "
                     "checkpoints/last" if j.status == "killed" else "checkpoints/last saved")
            detail = (f"{saved}; continue it with its .hydra/overrides.yaml plus "
                      f"trainer.resume=auto hydra.run.dir={j.path}")
        else:
            detail = j.error or "no results.json (still running, or killed)"
        where = f"{j.path} ({j.scheduler_job})" if j.scheduler_job else f"{j.path}"
        lines.append(f"  {j.status:<11} {where}  {detail}")
    return "\n".join(lines)


def all_completed(jobs: list[Job]) -> bool:
    """Every job finished with an outcome (FINISHED): completed, stuck, or estimated."""
    return bool(jobs) and all(j.status in FINISHED for j in jobs)


class SweepSummary(Callback):
    """Print the summary after the sweep; exit status 1 unless every job finished with an outcome."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = collect(sweep_dir)
        print(summary(jobs, sweep_dir), flush=True)
        if not all_completed(jobs):
            raise SystemExit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m s5lra.train.sweep", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="the sweep's directory (hydra.sweep.dir)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir}: not a directory")
    jobs = collect(args.sweep_dir)
    print(summary(jobs, args.sweep_dir))
    return 0 if all_completed(jobs) else 1


if __name__ == "__main__":
    sys.exit(main())
