"""The seed-budget sweeper (hydra/sweeper=seed_budget): its stopping rule, through the real run_train.py with a
scripted launcher (each seed's results.json written from a script, no training), and once for real with
submitit's local launcher and tiny runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import HydraException

from hydra_plugins.s5lra_seed_budget.seed_budget import SeedBudget

REPO = Path(__file__).resolve().parents[1]

# A Hydra launcher plugin that launches nothing: it writes each job's results.json as SCRIPT (seed -> results)
# says, and appends each wave's seeds to LAUNCHES.
SCRIPTED_LAUNCHER = '''
import json, os
from dataclasses import dataclass
from pathlib import Path
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import OmegaConf


@dataclass
class ScriptedConf:
    _target_: str = "hydra_plugins.scripted_launcher.ScriptedLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="scripted", node=ScriptedConf)


class ScriptedLauncher(Launcher):
    def setup(self, *, hydra_context, task_function, config):
        self.config = config

    def launch(self, job_overrides, initial_job_idx):
        script = json.loads(os.environ["SCRIPT"])
        seeds, returns = [], []
        for i, overrides in enumerate(job_overrides):
            seed = next(o.split("=", 1)[1] for o in overrides if o.startswith("seed="))
            run_dir = Path(self.config.hydra.sweep.dir) / str(initial_job_idx + i)
            run_dir.mkdir(parents=True)
            (run_dir / "results.json").write_text(json.dumps(script[seed]))
            ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=None)
            ret.hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(run_dir)}}})
            seeds.append(int(seed))
            returns.append(ret)
        with open(os.environ["LAUNCHES"], "a") as f:
            f.write(json.dumps(seeds) + "\\n")
        return returns
'''

LEARNED = {"status": "completed", "learned": True, "best_val_accuracy": 0.9, "test_accuracy": 0.9}
CHANCE = {"status": "completed", "learned": False, "best_val_accuracy": 0.5, "test_accuracy": 0.5}
STUCK = {"status": "stuck", "learned": False, "best_val_accuracy": 0.5, "test_accuracy": 0.5}
FAILED = {"status": "failed", "error": "ValueError: scripted"}


def scripted_sweep(tmp_path, script: dict, *args):
    plugins = tmp_path / "plugins" / "hydra_plugins" / "scripted_launcher"
    plugins.mkdir(parents=True)
    (plugins / "__init__.py").write_text(SCRIPTED_LAUNCHER)
    launches = tmp_path / "launches.jsonl"
    env = {**os.environ, "SCRIPT": json.dumps({str(k): v for k, v in script.items()}), "LAUNCHES": str(launches),
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "plugins"), os.environ.get("PYTHONPATH", "")])}
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, str(REPO / "run_train.py"), "-m", "hydra/sweeper=seed_budget",
                           "hydra/launcher=scripted", f"hydra.sweep.dir={sweep_dir}", "logger=none", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    waves = [json.loads(line) for line in launches.read_text().splitlines()] if launches.exists() else []
    tally = json.loads((sweep_dir / "seed_budget.json").read_text()) if (sweep_dir / "seed_budget.json").exists() \
        else None
    return proc, waves, tally


def test_waves_stop_once_enough_seeds_learned(tmp_path):
    script = {0: STUCK, 1: LEARNED, 2: CHANCE, 3: LEARNED, 4: LEARNED, 5: LEARNED}
    proc, waves, tally = scripted_sweep(tmp_path, script, "hydra.sweeper.learned=2", "hydra.sweeper.max_seeds=6",
                                        "hydra.sweeper.parallel=2", "trainer.epochs=3")
    assert waves == [[0, 1], [2, 3]], proc.stderr
    assert (tally["learned"], tally["tried"]) == (2, 4)
    assert [s["outcome"] for s in tally["seeds"]] == ["stuck", "learned", "chance", "learned"]
    assert tally["stop_reason"].startswith("2 of 4 seeds learned")
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    assert "seed budget: 2 of 4 seeds learned" in proc.stderr + proc.stdout
    assert "4 job(s): 3 completed, 1 stuck" in proc.stdout and proc.returncode == 0  # stuck is an outcome


def test_a_wave_of_failures_ends_the_budget(tmp_path):
    proc, waves, tally = scripted_sweep(tmp_path, {5: FAILED, 6: FAILED, 7: LEARNED}, "hydra.sweeper.learned=1",
                                        "hydra.sweeper.max_seeds=3", "hydra.sweeper.parallel=2",
                                        "hydra.sweeper.first_seed=5")
    assert waves == [[5, 6]], proc.stderr
    assert tally["stop_reason"].startswith("every job of the last wave failed")
    assert proc.returncode == 1  # the sweep summary: not every job completed


def test_refuses_other_sweeps_and_a_seed(tmp_path):
    proc, waves, _ = scripted_sweep(tmp_path, {}, "optimizer.lr=0.1,0.2")
    assert proc.returncode == 1 and waves == [] and "sweeps seeds only" in proc.stderr
    proc, waves, _ = scripted_sweep(tmp_path / "b", {}, "seed=3")
    assert proc.returncode == 1 and waves == [] and "chooses the seeds" in proc.stderr


def test_budget_rule_spends_at_most_max_seeds():
    budget = SeedBudget(learned=3, max_seeds=5, parallel=2)
    sizes = []
    while n := budget.next_wave():
        sizes.append(n)
        budget.record(["stuck"] * n)
    assert sizes == [2, 2, 1] and budget.stop_reason.startswith("budget spent: 5 seeds tried, 0 learned")
    budget = SeedBudget(learned=1, max_seeds=5, parallel=3)
    budget.record(["chance", "learned", "stuck"])
    assert budget.next_wave() == 0
    with pytest.raises(HydraException, match="learned=4 exceeds"):
        SeedBudget(learned=4, max_seeds=3, parallel=1)
    with pytest.raises(HydraException, match="parallel=0"):
        SeedBudget(learned=1, max_seeds=3, parallel=0)


@pytest.mark.slow  # three training processes in two waves: about 25 s
@pytest.mark.usefixtures("shared_compilation_cache")
def test_for_real_with_the_local_launcher(listops_root, tmp_path):
    """Tiny runs as submitit-local jobs, a margin no accuracy can clear: every seed stops stuck after its first
    epoch, two per wave, until the budget of three is spent."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the cluster extra (requirements-extras.txt)")
    from test_cluster import run_train, tiny

    sweep = tmp_path / "sweep"
    proc = run_train(["-m", "hydra/sweeper=seed_budget", "hydra/launcher=local", f"hydra.sweep.dir={sweep}",
                      *tiny(listops_root), "trainer.stop_if_stuck=true", "trainer.stuck_after_epochs=1",
                      "trainer.stuck_margin=0.99", "hydra.sweeper.learned=1", "hydra.sweeper.max_seeds=3",
                      "hydra.sweeper.parallel=2"])
    tally = json.loads((sweep / "seed_budget.json").read_text())
    assert [(s["seed"], s["outcome"]) for s in tally["seeds"]] == [(0, "stuck"), (1, "stuck"), (2, "stuck")], \
        proc.stdout[-3000:]
    assert tally["stop_reason"] == "budget spent: 3 seeds tried, 0 learned (target 1)"
    for seed in range(3):
        results = json.loads((sweep / str(seed) / "results.json").read_text())
        assert (results["seed"], results["status"], results["steps"]) == (seed, "stuck", 8)
    assert proc.returncode == 0 and "3 job(s): 3 stuck" in proc.stdout
