"""The seed-budget sweeper with hydra/launcher=slurm on the local SLURM cluster (experiments/cluster/local_slurm.sh,
brought up by test_slurm_real's `cluster` fixture): one job array per wave, stopped once enough seeds learned."""

import json

import pytest

from helpers import tiny_overrides
from test_slurm_real import cluster, sweep  # noqa: F401  (cluster: the module's fixture)

pytestmark = [pytest.mark.slurm, pytest.mark.slow,  # a SLURM array of tiny runs: about half a minute
              pytest.mark.usefixtures("shared_compilation_cache", "cluster")]


def test_a_wave_is_one_array_and_the_budget_stops_once_enough_learned(listops_root, tmp_path):
    # a margin below any accuracy: every evaluated seed counts as learned, so the first wave of two is enough
    sweep_dir = tmp_path / "sweep"
    proc = sweep(sweep_dir, "hydra/sweeper=seed_budget", *tiny_overrides(listops_root), "trainer.stuck_margin=-0.99",
                 "hydra.sweeper.learned=2", "hydra.sweeper.max_seeds=6", "hydra.sweeper.parallel=2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    tally = json.loads((sweep_dir / "seed_budget.json").read_text())
    assert [(s["seed"], s["outcome"]) for s in tally["seeds"]] == [(0, "learned"), (1, "learned")]
    jobs = [json.loads((sweep_dir / str(n) / "job.json").read_text()) for n in (0, 1)]
    assert {j["cluster"] for j in jobs} == {"slurm"} and len({j["job_id"].split("_")[0] for j in jobs}) == 1
    assert not (sweep_dir / "2").exists()
