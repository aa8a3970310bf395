"""The Markdown results table and its JSON twin (the same numbers, unrounded, for other tools)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from s5lra.report.aggregate import Group
from s5lra.report.paper import task_title

HEADER = ("Task", "Experiment", "Test acc. at best val (%)", "Seeds", "Best seed (%)", "Paper (%)", "Gap (pts)",
          "Epochs (done / paper)", "Wall time / run", "Hardware")


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


def _row(g: Group) -> tuple:
    acc = f"{g.mean:.2f}" + (f" ± {g.std:.2f}" if g.std is not None else "")
    epochs = _mean(g.epochs)
    done = "—" if epochs is None else f"{epochs:.4g}"
    return (task_title(g.task), f"`{g.experiment}`", acc, str(g.n), f"{g.best:.2f}", _num(g.paper),
            _num(g.gap, "+.2f"), f"{done} / {g.paper_epochs or '—'}", format_duration(_mean(g.wall_time_s)),
            ", ".join(sorted(set(g.hardware))))


def markdown(groups: list[Group], average: dict | None) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_row(g)) + " |" for g in groups]
    if average:
        used = average["experiments"]
        paper_setting = all(e == f"lra/{t}" for t, e in used.items())
        which = "`lra/*`" if paper_setting else ", ".join(f"`{e}`" for e in used.values())
        cells = ["**LRA average**", which, f"**{average['mean']:.2f}**", "", "", f"{average['paper']:.2f}",
                 f"{average['gap']:+.2f}", "", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Accuracy: test accuracy at the epoch of best validation accuracy, mean ± sample std over seeds. "
              "Best seed: the test accuracy of the seed with the best validation accuracy (chosen on validation, "
              "not test). Gap: mean minus the paper's number. Wall time: mean per run."]
    if not average:
        lines.append("The LRA average row appears when all six tasks are present "
                     "(one experiment each, or `lra/<task>`).")
    return "\n".join(lines) + "\n"


def write_tables(groups: list[Group], average: dict | None, out: Path) -> tuple[Path, Path]:
    """<out>/results.md and <out>/summary.json."""
    md, js = out / "results.md", out / "summary.json"
    md.write_text("# S5 on LRA: our results against the paper\n\n" + markdown(groups, average))
    js.write_text(json.dumps({"groups": [g.summary() for g in groups], "lra_average": average}, indent=2) + "\n")
    return md, js
