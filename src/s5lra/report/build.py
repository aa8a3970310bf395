"""Run directories in, results table + JSON + plots out: the whole report in one call."""

from __future__ import annotations

import warnings
from pathlib import Path

from s5lra.report.aggregate import group_runs, left_out, lra_average
from s5lra.report.plots import learning_curves, summary_plot
from s5lra.report.runs import load_runs
from s5lra.report.table import write_tables


def build_report(paths, out: str | Path = "experiments/results") -> list[Path]:
    """Write results.md, summary.json and PNGs under `out`; returns the written files."""
    runs = load_runs(paths)
    if not runs:
        raise SystemExit(f"no readable run directories under {', '.join(map(str, paths))}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs)
    average = lra_average(groups)
    written = list(write_tables(groups, average, out, left_out(runs)))
    for group in groups:
        if not any(run.events for run in group.runs):
            warnings.warn(f"{group.experiment} {group.label}".strip() + ": no metrics events; no learning curves")
            continue
        written.append(learning_curves(group, out))
    written.append(summary_plot(groups, average, out))
    return written
