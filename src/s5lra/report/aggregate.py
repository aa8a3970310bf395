"""Seeds of one experiment folded into one row: mean ± std, best seed, the paper's number and the gap.

"Best" is the seed with the highest validation accuracy (its test accuracy is reported), not the highest test
accuracy: choosing on test would flatter us. Accuracies here are percentages; run files hold fractions.
"""

from __future__ import annotations

import statistics
import warnings
from dataclasses import asdict, dataclass, field

from s5lra.report.paper import PAPER_ACCURACY, PAPER_AVERAGE, PAPER_EPOCHS, TASKS
from s5lra.report.runs import Run


@dataclass
class Group:
    experiment: str
    task: str
    seeds: list
    test: list[float]          # test accuracy at best validation, %, one per run
    val: list[float]           # best validation accuracy, %
    final_test: list[float]    # test accuracy at the last evaluation, %
    epochs: list[float]
    wall_time_s: list[float]
    hardware: list[str]
    run_dirs: list[str]
    runs: list[Run] = field(repr=False, default_factory=list)

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
    def best(self) -> float:
        """Test accuracy of the run with the best validation accuracy."""
        return max(zip(self.val, self.test))[1]

    @property
    def paper(self) -> float | None:
        return PAPER_ACCURACY.get(self.task)

    @property
    def gap(self) -> float | None:
        return None if self.paper is None else self.mean - self.paper

    @property
    def paper_epochs(self) -> int | None:
        return PAPER_EPOCHS.get(self.task)

    def summary(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "runs"}
        out.update(n_seeds=self.n, mean=self.mean, std=self.std, best=self.best, max_test=max(self.test),
                   paper=self.paper, gap=self.gap, paper_epochs=self.paper_epochs)
        return out


def _task_order(group: Group):
    return (TASKS.index(group.task) if group.task in TASKS else len(TASKS), group.task, group.experiment)


def group_runs(runs: list[Run]) -> list[Group]:
    """One Group per (experiment, task), in the paper's task order."""
    groups: dict[tuple, Group] = {}
    for run in sorted(runs, key=lambda r: (str(r.seed), str(r.path))):
        key = (run.experiment, run.task)
        g = groups.setdefault(key, Group(run.experiment, run.task, [], [], [], [], [], [], [], []))
        r = run.results
        if run.seed in g.seeds:
            warnings.warn(f"{run.experiment}: seed {run.seed} appears in several runs ({run.path} and "
                          f"{g.run_dirs[g.seeds.index(run.seed)]}); each counts as one run")
        g.seeds.append(run.seed)
        g.test.append(100 * r["test_accuracy"])
        g.val.append(100 * r["best_val_accuracy"])
        g.final_test.append(100 * r["final_test_accuracy"] if r.get("final_test_accuracy") is not None else None)
        g.epochs.append(r.get("epochs"))
        g.wall_time_s.append(r.get("wall_time_s"))
        g.hardware.append(run.hardware)
        g.run_dirs.append(str(run.path))
        g.runs.append(run)
    return sorted(groups.values(), key=_task_order)


def lra_average(groups: list[Group]) -> dict | None:
    """Mean over the six tasks of each task's seed mean; None unless every task has one experiment to use.

    A task with several experiments (full runs beside reduced ones) uses the paper-setting `lra/<task>` one.
    """
    chosen = {}
    for task in TASKS:
        found = [g for g in groups if g.task == task]
        if len(found) > 1:
            found = [g for g in found if g.experiment == f"lra/{task}"]
        if len(found) != 1:
            return None
        chosen[task] = found[0]
    mean = statistics.fmean(g.mean for g in chosen.values())
    return {"mean": mean, "paper": PAPER_AVERAGE, "gap": mean - PAPER_AVERAGE,
            "experiments": {t: g.experiment for t, g in chosen.items()}}
