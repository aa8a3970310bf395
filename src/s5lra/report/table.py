"""The Markdown results table and its JSON twin (the same numbers, unrounded, for other tools).

Rows are settings (experiment plus semantic overrides); the paper and gap cells are filled only for the
paper's settings and a note says why the others are not compared. Runs that do not count (not completed, or
not evaluated yet) get a section of their own below the table.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from s5lra.overrides import overrides_label
from s5lra.report.aggregate import Group
from s5lra.report.paper import task_title

HEADER = ("Task", "Experiment", "Test acc. at best val (%)", "Seeds", "Best seed (%)", "Paper (%)", "Gap (pts)",
          "Epochs (done / paper)", "Wall time / run", "Hardware")
SEEDS_HEADER = ("Setting", "Started", "Learned", "Stuck", "Failed", "At chance", "Unfinished",
                "All completed seeds (%)", "Learned seeds only (%)")


def _num(x: float | None, fmt: str = ".2f") -> str:
    return "—" if x is None else format(x, fmt)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _setting(experiment: str, label: str) -> str:
    return f"`{experiment}`" + (f" `{label}`" if label else "")


def _mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    std = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.2f}{std} ({len(values)})"


def _seeds_row(g: Group) -> tuple:
    counts = [str(g.counts.get(k, 0)) for k in ("started", "learned", "stuck", "failed", "chance", "unfinished")]
    return (f"{_setting(g.experiment, g.label)} ({task_title(g.task)})", *counts, _mean_std(g.test),
            _mean_std(g.learned_test))


def _row(g: Group) -> tuple:
    acc = f"{g.mean:.2f}" + (f" ± {g.std:.2f}" if g.std is not None else "")
    epochs = _mean(g.epochs)
    done = "—" if epochs is None else f"{epochs:.1f}"
    return (task_title(g.task), _setting(g.experiment, g.label), acc, str(g.n), f"{g.best:.2f}", _num(g.paper),
            _num(g.gap, "+.2f"), f"{done} / {g.paper_epochs or '—'}", format_duration(_mean(g.wall_time_s)),
            ", ".join(sorted(set(g.hardware))))


def markdown(groups: list[Group], average: dict | None, left_out: list[dict] = ()) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_row(g)) + " |" for g in groups]
    if average:
        cells = ["**LRA average**", "`lra/*`", f"**{average['mean']:.2f}**", "", "", f"{average['paper']:.2f}",
                 f"{average['gap']:+.2f}", "", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    if not groups:
        lines.append("| no completed, evaluated runs yet |" + " |" * (len(HEADER) - 1))
    lines += ["", "Accuracy: test accuracy at the epoch of best validation accuracy, mean ± sample std over all "
              "completed seeds, stuck ones included (a seed stopped at chance by trainer.stop_if_stuck is an "
              "outcome, not a failure; a row is one experiment with one set of overrides). Seeds: how many enter "
              "that mean. Best seed: the test accuracy of the seed with the best validation accuracy (chosen on "
              "validation, not test). Gap: mean minus the paper's number. Wall time: mean per run. Seed outcomes of "
              "every setting: the section below."]
    not_compared = [g for g in groups if g.not_compared]
    if not_compared:
        lines += ["", "Not compared with the paper:"]
        lines += [f"- {task_title(g.task)} {_setting(g.experiment, g.label)}: {g.not_compared}" for g in not_compared]
    if not average:
        lines.append("")
        lines.append("The LRA average row appears when all six tasks have a row in the paper's setting "
                     "(`lra/<task>`, no overrides, not partial).")
    if groups:
        lines += ["", "## Seeds per setting", "",
                  "Every run of a setting by outcome (docs/stuck-seeds.md): learned (best validation accuracy above "
                  "the majority baseline by the stuck margin), stuck (stopped at chance by trainer.stop_if_stuck), "
                  "failed (failed or diverged), at chance (completed without learning), unfinished (preempted, "
                  "interrupted, not evaluated). All completed seeds: the table's mean ± std (n), stuck seeds "
                  "included. Learned seeds only: the same over the seeds that learned, a separate figure.", "",
                  "| " + " | ".join(SEEDS_HEADER) + " |", "|" + "---|" * len(SEEDS_HEADER)]
        lines += ["| " + " | ".join(_seeds_row(g)) + " |" for g in groups]
    if left_out:
        lines += ["", "## Runs left out of the means", "",
                  "| Task | Experiment | Seed | Status | Why | Run directory |", "|---|---|---|---|---|---|"]
        lines += [f"| {task_title(r['task'])} | {_setting(r['experiment'], overrides_label(r['overrides'], max_len=None))} | "
                  f"{r['seed']} | {r['status']} | {r['reason']} | `{r['run_dir']}` |" for r in left_out]
    return "\n".join(lines) + "\n"


def write_tables(groups: list[Group], average: dict | None, out: Path, left_out: list[dict] = ()
                 ) -> tuple[Path, Path]:
    """<out>/results.md and <out>/summary.json."""
    md, js = out / "results.md", out / "summary.json"
    md.write_text("# S5 on LRA: our results against the paper\n\n" + markdown(groups, average, left_out))
    js.write_text(json.dumps({"groups": [g.summary() for g in groups], "lra_average": average,
                              "left_out": list(left_out)}, indent=2) + "\n")
    return md, js
