"""PNG figures: learning curves per experiment and one LRA summary against the paper and published models.

Figures are built on `matplotlib.figure.Figure` and saved with the Agg renderer, without pyplot: no display
needed and no global backend switched under a notebook that imports this. Legends sit outside the axes so they
never hide a curve.
"""

from __future__ import annotations

import re
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure

from s5lra.overrides import overrides_label
from s5lra.report.aggregate import Group
from s5lra.report.paper import PAPER_ACCURACY, PUBLISHED_AVERAGES, TASKS, task_title
from s5lra.stuck import MARGIN

PAPER_STYLE = dict(color="black", linestyle="--", linewidth=1.2)
COLOURS = colormaps["tab10"].colors


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def _seed_label(seed) -> str:
    return f"seed {seed}" if seed is not None else "seed ?"


def _learned_line(group: Group) -> float | None:
    """The accuracy (%) a seed must exceed to count as learned (results.json's learned_threshold, else the
    majority baseline + the default margin); None when the runs do not say."""
    found = [r.results.get("learned_threshold") for r in group.runs]
    if not all(t is not None for t in found):
        found = [r.results["majority_baseline"] + MARGIN for r in group.runs
                 if r.results.get("majority_baseline") is not None]
    return 100 * max(found) if found else None


def learning_curves(group: Group, out: Path) -> Path:
    """Train loss and val/test accuracy (%) against epoch, one colour per seed, the paper as a dashed line; a
    stuck seed (stopped at chance, s5lra.stuck) is labelled so and ends in a cross, the line it never crossed dotted."""
    fig = Figure(figsize=(11, 4.2))
    ax_loss, ax_acc = fig.subplots(1, 2, sharex=True)
    for i, (run, seed, result) in enumerate(zip(group.runs, group.seeds, group.outcomes)):
        c = COLOURS[i % len(COLOURS)]
        stuck = result == "stuck"
        ax_loss.plot(*run.curve("train", "loss"), color=c, linewidth=1)
        for split, style, face in (("val", "-", c), ("test", ":", "none")):
            xs, ys = run.curve(split, "accuracy")
            ax_acc.plot(xs, [100 * y for y in ys], style, color=c, marker="o" if len(xs) <= 60 else None,
                        markersize=4, markerfacecolor=face,
                        label=f"{_seed_label(seed)}{' (stuck)' if stuck else ''} {split}")
            if stuck and split == "val" and xs:
                ax_acc.plot(xs[-1], 100 * ys[-1], "x", color=c, markersize=10, markeredgewidth=2)
    if group.paper is not None:
        ax_acc.axhline(group.paper, label=f"S5 paper test ({group.paper:.2f}%)", **PAPER_STYLE)
    threshold = _learned_line(group)
    if threshold is not None:
        ax_acc.axhline(threshold, color="grey", linestyle=":", linewidth=1,
                       label=f"learned above ({threshold:.1f}%: majority + margin)")
    ax_loss.set(title="Training loss", xlabel="epoch", ylabel="cross-entropy (nats)")
    ax_acc.set(title="Accuracy (val solid, test dotted/hollow)", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    setting = f"{group.experiment} [{group.label}]" if group.label else group.experiment
    fig.suptitle(f"{task_title(group.task)} — {setting} ({group.n} run{'s' * (group.n != 1)})")
    handles, labels = ax_acc.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.04 * ((len(labels) - 1) // 4), 1, 1))
    label = overrides_label(group.overrides)  # capped: a file name
    path = out / f"curves_{slug(group.experiment + ('_' + label if label else ''))}.png"
    fig.savefig(path, dpi=110)
    return path


def _bars(ax, groups: list[Group]) -> None:
    """Only the paper's settings stand next to the paper's bars (see aggregate.Group.not_compared)."""
    groups = [g for g in groups if g.not_compared is None]
    tasks = TASKS  # every task keeps its slot, so a missing one shows as a paper bar alone
    experiments = sorted({g.experiment for g in groups if g.task in tasks})
    colours = dict(zip(experiments, COLOURS * 10))
    width = 0.8 / (1 + max(sum(g.task == t for g in groups) for t in tasks))
    labelled = set()
    for t_i, task in enumerate(tasks):
        bars = [("S5 paper", PAPER_ACCURACY[task], None, "lightgray")]
        bars += [(g.experiment, g.mean, g.std, colours[g.experiment]) for g in groups if g.task == task]
        for b_i, (label, value, err, colour) in enumerate(bars):
            x = t_i + (b_i - (len(bars) - 1) / 2) * width
            ax.bar(x, value, width, yerr=err, color=colour, edgecolor="black", linewidth=0.5, capsize=3,
                   label=None if label in labelled else label)
            labelled.add(label)
            ax.annotate(f"{value:.1f}", (x, value + (err or 0)), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", rotation=90, fontsize=7)
    ax.set_xticks(range(len(tasks)), [task_title(t) for t in tasks])
    ax.set(ylim=(0, 115), ylabel="test accuracy (%)", title="Per task: ours (mean ± std over seeds) vs paper")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=4, fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)


def _averages(ax, average: dict | None) -> None:
    entries = sorted(PUBLISHED_AVERAGES.items(), key=lambda kv: kv[1])
    ours_label = "S5 (ours)" if average else None
    if average:
        entries = sorted(entries + [(ours_label, average["mean"])], key=lambda kv: kv[1])
    for i, (name, value) in enumerate(entries):
        ours = name == ours_label
        ax.plot(value, i, "o", color="tab:red" if ours else "tab:blue", markersize=8)
        ax.annotate(f"{value:.2f}", (value, i), xytext=(7, -3), textcoords="offset points", fontsize=8)
    ax.set_yticks(range(len(entries)), [name for name, _ in entries])
    low = min(v for _, v in entries)
    ax.set(xlim=(min(low - 1, 85), 90), ylim=(-0.6, len(entries) - 0.4), xlabel="LRA average accuracy (%)",
           title="LRA average" + ("" if average else "\n(ours: needs all six tasks in the paper's settings)"))
    ax.grid(axis="x", alpha=0.3)


def summary_plot(groups: list[Group], average: dict | None, out: Path) -> Path:
    """Bars of every task against the paper, and the LRA average against published models."""
    fig = Figure(figsize=(13, 4.8))
    ax_bars, ax_avg = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=(2.6, 1)))
    _bars(ax_bars, groups)
    _averages(ax_avg, average)
    fig.tight_layout()
    path = out / "lra_summary.png"
    fig.savefig(path, dpi=110)
    return path
