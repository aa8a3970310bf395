"""Seeds of one setting folded into one row: mean ± std, best seed, the paper's number and the gap.

A setting is an experiment plus the overrides that change what it computes (`s5lra.overrides`), so a sweep
over optimizer.lr gives one row per learning rate and only seeds are averaged. Only completed runs with an
evaluation count, and stuck ones; the others (preempted, interrupted, diverged, failed, or not evaluated yet)
are listed apart (`left_out`) and never enter a mean. A row is compared with the paper only when it is the paper's
setting: experiment `lra/<task>`, no semantic overrides, not partial (trainer.max_steps). The demo and the
smoke/reduced experiments are other settings and get no paper number.

Seeds are counted honestly (docs/stuck-seeds.md, section 4): a seed stopped by `trainer.stop_if_stuck` (status
`stuck`) is an outcome of the method, so it enters the means like a completed run; per setting the report also
counts every run by outcome (s5lra.stuck.outcome: learned, chance, stuck, failed, unfinished) and gives the mean
over the learned seeds apart, labelled as such.

"Best" is the seed with the highest validation accuracy (its test accuracy is reported), not the highest test
accuracy: choosing on test would flatter us. Accuracies here are percentages; run files hold fractions.
"""

from __future__ import annotations

import statistics
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from s5lra.overrides import overrides_label, partial_overrides, semantic_overrides
from s5lra.report.paper import PAPER_ACCURACY, PAPER_AVERAGE, PAPER_EPOCHS, TASKS
from s5lra.report.runs import Run
from s5lra.stuck import OUTCOMES, outcome

AVERAGED = ("completed", "stuck")  # statuses whose evaluated runs enter the means


@dataclass
class Group:
    experiment: str
    task: str
    overrides: list[str]       # the semantic overrides shared by its runs (sorted)
    seeds: list
    test: list[float]          # test accuracy at best validation, %, one per run
    val: list[float]           # best validation accuracy, %
    final_test: list[float]    # test accuracy at the last evaluation, %
    epochs: list[float]
    wall_time_s: list[float]
    hardware: list[str]
    run_dirs: list[str]
    runs: list[Run] = field(repr=False, default_factory=list)
    outcomes: list[str] = field(default_factory=list)  # per averaged run: learned | chance | stuck
    counts: dict = field(default_factory=dict)  # every run of the setting: started, then one count per outcome

    @property
    def n(self) -> int:
        return len(self.test)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.test)

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds; None for a single run."""
        return statistics.stdev(self.test) if self.n > 1 else None

    @property
    def learned_test(self) -> list[float]:
        """Test accuracies (%) of the seeds that learned (s5lra.stuck): a separate, labelled statistic."""
        return [t for t, o in zip(self.test, self.outcomes) if o == "learned"]

    @property
    def learned_mean(self) -> float | None:
        return statistics.fmean(self.learned_test) if self.learned_test else None

    @property
    def learned_std(self) -> float | None:
        return statistics.stdev(self.learned_test) if len(self.learned_test) > 1 else None

    @property
    def best(self) -> float:
        """Test accuracy of the run with the best validation accuracy."""
        return max(zip(self.val, self.test))[1]

    @property
    def label(self) -> str:
        return overrides_label(self.overrides, max_len=None)

    @property
    def not_compared(self) -> str | None:
        """Why this row is not compared with the paper; None when it is the paper's setting."""
        if self.task not in PAPER_ACCURACY:
            return f"the paper has no number for task {self.task!r}"
        if self.experiment == "demo":
            return "the demo (a small model on short ListOps) is not the paper's ListOps"
        if self.experiment != f"lra/{self.task}":
            return f"`{self.experiment}` is not the paper's setting (`lra/{self.task}`)"
        max_steps = {(r.config.get("trainer") or {}).get("max_steps") for r in self.runs} - {None}
        partial = partial_overrides(self.overrides) or [f"trainer.max_steps={m}" for m in sorted(max_steps)]
        if partial:
            return f"partial run ({', '.join(partial)}: stops before the schedule ends)"
        if self.overrides:
            return f"overrides {self.label}"
        return None

    @property
    def paper(self) -> float | None:
        return None if self.not_compared else PAPER_ACCURACY.get(self.task)

    @property
    def gap(self) -> float | None:
        return None if self.paper is None else self.mean - self.paper

    @property
    def paper_epochs(self) -> int | None:
        return None if self.not_compared else PAPER_EPOCHS.get(self.task)

    def summary(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "runs"}
        out.update(label=self.label, n_seeds=self.n, mean=self.mean, std=self.std, best=self.best,
                   max_test=max(self.test), paper=self.paper, gap=self.gap, paper_epochs=self.paper_epochs,
                   not_compared=self.not_compared, n_learned=len(self.learned_test), learned_mean=self.learned_mean,
                   learned_std=self.learned_std)
        return out


def _task_order(group: Group):
    return (TASKS.index(group.task) if group.task in TASKS else len(TASKS), group.task, group.experiment,
            group.label)


def counts(run: Run) -> bool:
    """Whether a run enters the means: completed or stuck, with an evaluation."""
    return run.status in AVERAGED and run.evaluated


def _setting(run: Run) -> tuple:
    return run.experiment, run.task, tuple(semantic_overrides(run.overrides))


def group_runs(runs: list[Run]) -> list[Group]:
    """One Group per (experiment, task, semantic overrides) over the runs that count, in the paper's task order;
    each with the outcome counts of all of its setting's runs."""
    tallies: dict[tuple, Counter] = {}
    for run in runs:
        tallies.setdefault(_setting(run), Counter())[outcome(run.results)] += 1
    groups: dict[tuple, Group] = {}
    for run in sorted((r for r in runs if counts(r)), key=lambda r: (str(r.seed), str(r.path))):
        key = _setting(run)
        overrides = list(key[2])
        tally = tallies[key]
        g = groups.setdefault(key, Group(run.experiment, run.task, overrides, [], [], [], [], [], [], [], [],
                                         counts={"started": sum(tally.values()), **{o: tally[o] for o in OUTCOMES}}))
        r = run.results
        if run.seed in g.seeds:
            warnings.warn(f"{run.experiment}{' [' + g.label + ']' if g.label else ''}: seed {run.seed} appears in "
                          f"several runs ({run.path} and {g.run_dirs[g.seeds.index(run.seed)]}); each counts as "
                          f"one run")
        g.seeds.append(run.seed)
        g.test.append(100 * r["test_accuracy"])
        g.val.append(100 * r["best_val_accuracy"])
        g.final_test.append(100 * r["final_test_accuracy"] if r.get("final_test_accuracy") is not None else None)
        g.epochs.append(r.get("epochs"))
        g.wall_time_s.append(r.get("wall_time_s"))
        g.hardware.append(run.hardware)
        g.run_dirs.append(_shown(run.path))
        g.runs.append(run)
        g.outcomes.append(outcome(run.results))
    return sorted(groups.values(), key=_task_order)


def left_out(runs: list[Run]) -> list[dict]:
    """The runs that do not count, each with its status and why, for the table's second section."""
    out = []
    for run in sorted((r for r in runs if not counts(r)), key=lambda r: (r.experiment, str(r.seed), str(r.path))):
        epochs, target = run.results.get("epochs"), (run.config.get("trainer") or {}).get("epochs")
        where = f" at epoch {epochs:.1f}" + (f" of {target}" if target else "") if epochs is not None else ""
        if run.status != "completed":
            reason = f"{run.status}{where}" + ("" if run.evaluated else "; no evaluation yet")
        else:
            reason = f"no evaluation yet{where}"
        out.append({"run_dir": str(run.path), "experiment": run.experiment, "task": run.task, "seed": run.seed,
                    "overrides": semantic_overrides(run.overrides), "status": run.status,
                    "evaluated": run.evaluated, "reason": reason})
    return out


def lra_average(groups: list[Group]) -> dict | None:
    """Mean over the six tasks of each task's seed mean, over the paper's settings only (`lra/<task>`, no
    overrides, not partial); None unless every task has exactly one such row."""
    chosen = {}
    for task in TASKS:
        found = [g for g in groups if g.task == task and g.not_compared is None]
        if len(found) != 1:
            return None
        chosen[task] = found[0]
    mean = statistics.fmean(g.mean for g in chosen.values())
    return {"mean": mean, "paper": PAPER_AVERAGE, "gap": mean - PAPER_AVERAGE,
            "experiments": {t: g.experiment for t, g in chosen.items()}}


def _shown(path) -> str:
    """A run directory as a report shows it: relative to where the report runs when it lies below, so a
    committed report holds no machine's absolute paths."""
    path = Path(path).absolute()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)
