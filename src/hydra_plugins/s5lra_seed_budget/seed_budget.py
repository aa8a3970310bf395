"""`hydra/sweeper=seed_budget`: run seeds in waves until enough of them learned, or the budget is spent.

    python run_train.py -m hydra/sweeper=seed_budget experiment=lra/pathx trainer.stop_if_stuck=true \
        hydra.sweeper.learned=3 hydra.sweeper.max_seeds=8 hydra.sweeper.parallel=4

Seeds first_seed, first_seed + 1, ... are launched `parallel` at a time (one wave = one call of whichever launcher
is configured: basic, hydra/launcher=local or slurm), until `learned` seeds have learned or `max_seeds` were
tried. After each wave every job's outcome is read from its run directory's results.json
(s5lra.stuck.outcome: learned, chance, stuck, failed, unfinished); a wave whose jobs all failed ends the
sweep, since more seeds of a failing setting fail too. The tally goes to `<sweep dir>/seed_budget.json` after
every wave. A wave always launches `parallel` seeds (fewer only at the end of the budget): a stuck seed stops
early (trainer.stop_if_stuck), so an extra seed that learns costs a full run while waiting for another wave
costs a wall-clock run.

Every other override is fixed for all seeds; a sweep over anything else (`a=1,2`) is refused, as is a `seed=`
override (the sweeper chooses the seeds).

No `from __future__ import annotations` here: Hydra's plugin scan executes this module without registering it in
sys.modules, where dataclasses cannot resolve string annotations.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
TALLY = "seed_budget.json"


@dataclass
class SeedBudgetConf:
    _target_: str = "hydra_plugins.s5lra_seed_budget.seed_budget.SeedBudgetSweeper"
    learned: int = 3  # stop once this many seeds learned
    max_seeds: int = 8  # ... or this many were tried
    parallel: int = 4  # seeds per wave
    first_seed: int = 0  # seeds first_seed, first_seed + 1, ...


ConfigStore.instance().store(group="hydra/sweeper", name="seed_budget", node=SeedBudgetConf, provider="s5lra")


class SeedBudget:
    """The stopping rule, apart from any launcher: how many seeds the next wave gets (0: done) and why it ended."""

    def __init__(self, learned: int, max_seeds: int, parallel: int):
        for name, value in (("learned", learned), ("max_seeds", max_seeds), ("parallel", parallel)):
            if not isinstance(value, int) or value < 1:
                raise HydraException(f"hydra.sweeper.{name}={value!r}: must be a positive integer")
        if learned > max_seeds:
            raise HydraException(f"hydra.sweeper.learned={learned} exceeds hydra.sweeper.max_seeds={max_seeds}")
        self.target, self.max_seeds, self.parallel = learned, max_seeds, parallel
        self.outcomes: List[str] = []  # one per tried seed, in seed order
        self.waves: List[List[str]] = []

    @property
    def n_learned(self) -> int:
        return self.outcomes.count("learned")

    @property
    def stop_reason(self) -> Optional[str]:
        if self.n_learned >= self.target:
            return f"{self.n_learned} of {len(self.outcomes)} seeds learned (target {self.target})"
        if len(self.outcomes) >= self.max_seeds:
            return f"budget spent: {self.max_seeds} seeds tried, {self.n_learned} learned (target {self.target})"
        if self.waves and all(o == "failed" for o in self.waves[-1]):
            return "every job of the last wave failed; more seeds of this setting would fail too"
        return None

    def next_wave(self) -> int:
        return 0 if self.stop_reason else min(self.parallel, self.max_seeds - len(self.outcomes))

    def record(self, outcomes: List[str]) -> None:
        self.waves.append(list(outcomes))
        self.outcomes.extend(outcomes)


class SeedBudgetSweeper(Sweeper):
    def __init__(self, learned: int, max_seeds: int, parallel: int, first_seed: int = 0) -> None:
        self.budget = SeedBudget(learned, max_seeds, parallel)
        self.first_seed = first_seed
        self.hydra_context: Optional[HydraContext] = None
        self.config: Optional[DictConfig] = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def _fixed_overrides(self, arguments: List[str]) -> List[str]:
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        fixed = []
        for override in parser.parse_overrides(arguments):
            key = override.get_key_element()
            if override.is_sweep_override():
                raise HydraException(f"{override.input_line}: hydra/sweeper=seed_budget sweeps seeds only; run one "
                                     f"sweep per value of {key.lstrip('+~')}")
            if key.lstrip("+~") == "seed":
                raise HydraException(f"{override.input_line}: hydra/sweeper=seed_budget chooses the seeds "
                                     f"(hydra.sweeper.first_seed={self.first_seed}, then the next ones)")
            fixed.append(override.input_line)
        return fixed

    def sweep(self, arguments: List[str]) -> Any:
        from s5lra.stuck import outcome
        from s5lra.train.rundir import read_results  # a missing or unreadable results.json: {} -> unfinished

        fixed = self._fixed_overrides(arguments)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns, seeds, dirs = [], [], []
        while n := self.budget.next_wave():
            first = self.first_seed + len(seeds)
            wave_seeds = list(range(first, first + n))
            batch = [[*fixed, f"seed={seed}"] for seed in wave_seeds]
            self.validate_batch_is_legal(batch)
            log.info("seed budget: wave %d, seeds %s (%d of %d learned so far, %d of %d seeds tried)",
                     len(self.budget.waves) + 1, ", ".join(map(str, wave_seeds)), self.budget.n_learned,
                     self.budget.target, len(seeds), self.budget.max_seeds)
            results = self._launch(batch, len(seeds))
            returns.append(results)
            wave_dirs = _job_dirs(results, sweep_dir, len(seeds), n)
            self.budget.record([outcome(read_results(d)) for d in wave_dirs])
            seeds += wave_seeds
            dirs += wave_dirs
            _write_tally(sweep_dir / TALLY, self.budget, seeds, dirs)
            log.info("seed budget: wave %d: %s", len(self.budget.waves),
                     ", ".join(f"seed {s} {o}" for s, o in zip(wave_seeds, self.budget.waves[-1])))
        log.info("seed budget: %s (%s)", self.budget.stop_reason, sweep_dir / TALLY)
        return returns

    def _launch(self, batch, first_job) -> Optional[Sequence]:
        """The launcher's job returns; None when it raised (a submitit job killed by the cluster raises for
        the whole wave): the jobs' own run directories still say what happened to each."""
        try:
            return self.launcher.launch(batch, initial_job_idx=first_job)
        except Exception as err:  # noqa: BLE001 -- the outcomes are read from the run directories
            log.warning("seed budget: the launcher raised %s: %s; reading the outcomes from the run directories",
                        type(err).__name__, err)
            return None


def _job_dirs(results, sweep_dir: Path, first_job: int, n: int) -> List[Path]:
    """Each job's run directory: Hydra's record of it, else `<sweep dir>/<job number>` (configs/hydra/default.yaml's
    hydra.sweep.subdir)."""
    dirs = []
    for i in range(n):
        ret = results[i] if results is not None and i < len(results) else None
        hydra_cfg = getattr(ret, "hydra_cfg", None)
        if hydra_cfg is not None and OmegaConf.select(hydra_cfg, "hydra.runtime.output_dir"):
            dirs.append(Path(hydra_cfg.hydra.runtime.output_dir))
        else:
            dirs.append(sweep_dir / str(first_job + i))
    return dirs


def _write_tally(path: Path, budget: SeedBudget, seeds: List[int], dirs: List[Path]) -> None:
    from s5lra.atomic import write_json

    write_json(path, {"target_learned": budget.target, "max_seeds": budget.max_seeds, "parallel": budget.parallel,
                      "learned": budget.n_learned, "tried": len(seeds), "stop_reason": budget.stop_reason,
                      "seeds": [{"seed": s, "outcome": o, "run_dir": str(d)}
                                for s, o, d in zip(seeds, budget.outcomes, dirs)]})
