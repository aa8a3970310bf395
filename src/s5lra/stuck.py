"""Seeds that never leave chance: the rule that stops them (`trainer.stop_if_stuck`) and what a run's outcome was.

Some seeds of Pathfinder and Path-X never learn: validation accuracy stays at the majority baseline for the whole
schedule (docs/stuck-seeds.md has the public reports and the reasoning behind the defaults below). The rule: once
`after_epochs` epochs are done, a run whose best validation accuracy so far has never exceeded the validation
split's majority baseline by more than `margin` is stuck. The loop checks it at each evaluation; a stuck run saves
checkpoints/last and ends with status `stuck` (continue it with the check off: trainer.resume=<run>/checkpoints
trainer.stop_if_stuck=false). At the end of every run the same margin says whether it `learned`, which the
seed-budget sweeper and the report count. (Beside s5lra.overrides, not under train/: the report and the sweeper
plugin use it without importing JAX.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Epochs after which the check runs, per task (docs/stuck-seeds.md): about an eighth of Path-X's 75 epochs and a
# tenth of Pathfinder's 200, well after their one-epoch warm-up. Other tasks: a tenth of the schedule.
AFTER_EPOCHS = {"pathx": 10, "pathfinder": 20}
SCHEDULE_FRACTION = 0.1
# Accuracy (a fraction) above the majority baseline that counts as having learned: far above the noise of a
# chance-level classifier on LRA's validation splits (binomial std 0.35 points on Path-X's 20,000 examples),
# far below what a learning seed reaches on every task.
MARGIN = 0.05

# What a run came to, for the seed-budget sweeper and the report.
OUTCOMES = ("learned", "chance", "stuck", "failed", "unfinished")


@dataclass(frozen=True)
class StuckRule:
    after_epochs: float  # epochs done before the check can fire
    margin: float  # accuracy (fraction) the best validation accuracy must exceed the majority baseline by

    @classmethod
    def for_task(cls, task: str, epochs: int, after_epochs: float | None = None,
                 margin: float | None = None) -> "StuckRule":
        """The rule for a task: the given values, else the task's defaults (AFTER_EPOCHS, MARGIN)."""
        if after_epochs is None:
            after_epochs = AFTER_EPOCHS.get(task, max(1, math.ceil(SCHEDULE_FRACTION * epochs)))
        return cls(float(after_epochs), MARGIN if margin is None else float(margin))

    def learned(self, best_val: float | None, baseline: float) -> bool | None:
        """Whether the best validation accuracy exceeds the baseline by more than the margin (None: no evaluation)."""
        return None if best_val is None else best_val > baseline + self.margin

    def stuck(self, epochs_done: float, best_val: float | None, baseline: float) -> bool:
        """Whether to stop now: the check's epoch has come and the run has not learned."""
        return epochs_done >= self.after_epochs and self.learned(best_val, baseline) is False

    def describe(self, baseline: float) -> str:
        return (f"stop if best validation accuracy <= {100 * (baseline + self.margin):.2f}% (majority baseline "
                f"{100 * baseline:.2f}% + {100 * self.margin:.2f} points) after {self.after_epochs:g} epochs")


def outcome(results: dict) -> str:
    """One of OUTCOMES from a run's results.json: learned / chance (completed without learning) / stuck /
    failed (failed or diverged) / unfinished (preempted, interrupted, still running, or never evaluated).

    A results.json without `learned` (written before it existed) is judged with the default margin against its
    recorded majority baseline."""
    status = results.get("status") or "completed"
    if status == "stuck":
        return "stuck"
    if status in ("failed", "diverged"):
        return "failed"
    if status != "completed":
        return "unfinished"
    learned = results.get("learned")
    if learned is None and results.get("majority_baseline") is not None:
        learned = StuckRule(0, MARGIN).learned(results.get("best_val_accuracy"), results["majority_baseline"])
    if learned is None:
        return "unfinished"
    return "learned" if learned else "chance"
