"""The end of a sweep: each job's status read from its run directory, one summary, exit 1 unless all completed.

Hydra calls `SweepSummary.on_multirun_end` after the last job of a `-m` sweep, whatever the launcher
(configs/hydra/callbacks/sweep_summary.yaml); `python -m s5lra.train.sweep SWEEP_DIR` prints the same summary
at any time, e.g. while a SLURM array is still running. A job's status is its results.json's: completed,
failed or diverged (with the error, s5lra.train.launch), preempted or interrupted (checkpoints/last saved; continue with
trainer.resume=auto), stuck (stopped at chance by trainer.stop_if_stuck: an outcome, like completed); a job that
only estimated its cost (trainer.estimate=true) is `estimated`; a job directory without results.json is
unfinished (still running, or killed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hydra.experimental.callback import Callback

ORDER = ("completed", "stuck", "estimated", "failed", "diverged", "preempted", "interrupted", "unfinished")
FINISHED = ("completed", "stuck", "estimated")  # outcomes; anything else makes the sweep exit 1


@dataclass
class Job:
    path: Path
    status: str
    best_val_accuracy: float | None = None
    test_accuracy: float | None = None
    error: str | None = None


def _job_dirs(sweep_dir: Path) -> list[Path]:
    """The sweep's job directories (Hydra's numbered sub-folders), in job order."""
    dirs = [p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(dirs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def collect(sweep_dir: str | Path) -> list[Job]:
    jobs = []
    for path in _job_dirs(Path(sweep_dir)):
        try:
            results = json.loads((path / "results.json").read_text())
        except FileNotFoundError:
            jobs.append(Job(path, "estimated" if (path / "estimate.json").is_file() else "unfinished"))
            continue
        except ValueError as err:
            jobs.append(Job(path, "unfinished", error=f"results.json unreadable ({err})"))
            continue
        jobs.append(Job(path, results.get("status", "unfinished"), results.get("best_val_accuracy"),
                        results.get("test_accuracy"), results.get("error")))
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
        elif j.status in ("preempted", "interrupted"):
            detail = ("checkpoints/last saved; continue it with its .hydra/overrides.yaml plus "
                      f"trainer.resume=auto hydra.run.dir={j.path}")
        else:
            detail = j.error or "no results.json (still running, or killed)"
        lines.append(f"  {j.status:<11} {j.path}  {detail}")
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
