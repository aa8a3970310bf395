"""trainer.estimate: every paper config estimated on CPU (random batches of the release's shapes, a tiny model, one
timed step), the schedule arithmetic against a real short run, and the memory check's remat suggestion."""

import json
import statistics

import pytest
from omegaconf import OmegaConf

from helpers import TINY, compose_cfg, run_inprocess, tiny_overrides
from s5lra.report.paper import TASKS
from s5lra.train import estimate as est

pytestmark = pytest.mark.usefixtures("shared_compilation_cache")

ONE_STEP = ["trainer.estimate_steps=1"]


@pytest.fixture(autouse=True)
def no_warmup_seconds(monkeypatch):
    """Steady-state timing is not what these tests check: warm up for WARMUP_STEPS only (in-process estimates)."""
    monkeypatch.setattr(est, "WARMUP_S", 0.0)


def estimate(run_dir, overrides, **kwargs):
    return est.estimate(OmegaConf.to_object(compose_cfg(overrides)), run_dir, **kwargs)


# one task in the fast suite, the other five (about 45 s of compiling) with `make test-slow`
@pytest.mark.parametrize("task", [t if t == "pathfinder" else pytest.param(t, marks=pytest.mark.slow) for t in TASKS])
def test_every_paper_config_without_its_data(task, tmp_path):
    """No data under the root: random batches of the task's shapes, the LRA release's split sizes, the paper's
    batch size, epochs and evaluation count; a one-layer model so that CPU time stays small."""
    overrides = [f"experiment=lra/{task}", f"paths.data_dir={tmp_path / 'nothing'}", *TINY[:4], *ONE_STEP,
                 "trainer.eval_batch_size=100"]  # TINY without its batch size and epochs
    cfg = OmegaConf.to_object(compose_cfg(overrides))
    if cfg.trainer.batch_size % 4:  # the tests' four CPU devices (conftest.py) split ListOps' and Image's 50 unevenly
        overrides.append(f"trainer.batch_size={cfg.trainer.batch_size - cfg.trainer.batch_size % 4}")
        cfg = OmegaConf.to_object(compose_cfg(overrides))
    e = est.estimate(cfg, tmp_path / "run", overrides=overrides)
    sizes, length, _, _ = est.RELEASE[task]
    assert e["data"].startswith("synthetic") and tuple(e["split_sizes"].values()) == sizes
    assert e["steps_per_epoch"] == sizes[0] // cfg.trainer.batch_size
    assert e["total_steps"] == e["steps_per_epoch"] * cfg.trainer.epochs and e["evaluations"] == cfg.trainer.epochs
    assert e["eval_batches_per_evaluation"] == -(-sizes[1] // 100) + -(-sizes[2] // 100)
    assert e["step_s"] > 0 and e["eval_batch_s"] > 0 and e["memory"]["fits"] and e["memory"]["peak_bytes"] > 0
    assert e["schedule_s"] == pytest.approx(e["total_steps"] * e["step_s"] + e["evaluations"] * e["evaluation_s"])
    assert e["slurm"]["timeout_min_one_allocation"] >= e["run_s"] / 60
    written = json.loads((tmp_path / "run" / est.FILE).read_text())
    assert written["total_steps"] == e["total_steps"] and sorted(p.name for p in (tmp_path / "run").iterdir()) == \
        [".hydra", est.FILE]  # no checkpoint, no metrics, no W&B


def test_schedule_arithmetic_against_a_real_run(tmp_path, capsys):
    overrides = tiny_overrides(tmp_path / "data", "trainer.epochs=3", "trainer.eval_every=5", "trainer.max_steps=20")
    e = estimate(tmp_path / "estimate", [*overrides, "trainer.estimate_steps=8"])
    results = run_inprocess(tmp_path / "run", overrides)
    evaluations = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert e["data"] == "the task's data" and e["steps_per_epoch"] == results["steps_per_epoch"] == 8
    assert e["total_steps"] == results["steps"] == 20
    # evaluations at steps 5, 8, 10, 15, 16 and the last, 20
    assert e["evaluations"] == sum(ev["split"] == "val" for ev in evaluations) == 6
    rate = statistics.median(ev["examples_per_s"] for ev in evaluations if ev["split"] == "train")
    with capsys.disabled():  # for the record, not asserted: a tiny model's step time is mostly dispatch noise
        print(f"\ntiny ListOps: estimated {e['step_s'] * 1e3:.1f} ms per step, {e['epoch_s']:.3f} s per epoch; "
              f"measured (median train event) {8e3 / rate:.1f} ms per step; wall {results['wall_time_s']:.1f} s "
              f"for {results['epochs']:g} epochs, compilation included")


def test_schedule_evaluation_count():
    assert est.evaluations(total_steps=100, steps_per_epoch=10, eval_every=None) == 10
    assert est.evaluations(total_steps=95, steps_per_epoch=10, eval_every=None) == 10  # the last step too
    assert est.evaluations(total_steps=100, steps_per_epoch=10, eval_every=4) == 10 + 25 - 5
    assert est.evaluations(total_steps=7, steps_per_epoch=10, eval_every=5) == 2


def test_a_step_that_does_not_fit_suggests_remat(tmp_path, monkeypatch):
    overrides = [*tiny_overrides(tmp_path / "data"), *ONE_STEP]
    monkeypatch.setattr(est, "device_capacity", lambda: (1, "a one-byte test device"))
    e = estimate(tmp_path / "a", overrides)
    assert not e["memory"]["fits"] and e["remat"]["override"] == "model.remat=true" and not e["remat"]["fits"]
    assert e["step_s"] is None and e["timed_variant"] is None and e["schedule_s"] is None
    assert e["remat"]["peak_bytes"] < e["memory"]["peak_bytes"]
    fits_remat = e["remat"]["peak_bytes"]
    monkeypatch.setattr(est, "device_capacity", lambda: (fits_remat, "a small test device"))
    e = estimate(tmp_path / "b", overrides)
    assert not e["memory"]["fits"] and e["remat"]["fits"] and e["timed_variant"] == "model.remat=true"
    assert e["step_s"] > 0
    lines = est.table(e)
    assert any("DOES NOT FIT" in line for line in lines) and any("add model.remat=true" in line for line in lines)


def test_run_train_estimates_and_trains_nothing(listops_root, tmp_path):
    from helpers import run_cli

    run_dir = tmp_path / "run"
    proc = run_cli("run_train.py", [*tiny_overrides(listops_root), "logger=wandb", "logger.mode=offline",
                                    "trainer.estimate=true", "trainer.estimate_steps=2", f"hydra.run.dir={run_dir}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in run_dir.iterdir()) == [".hydra", est.FILE, "run_train.log"]  # no W&B, no checkpoint
    e = json.loads((run_dir / est.FILE).read_text())
    assert e["timed_steps"] == len(e["step_times_s"]) == 2 and e["warmup_steps"] >= est.WARMUP_STEPS
    assert e["steps_per_epoch"] == 8 and e["slurm"]["timeout_min"] == 1440
    assert "training step" in proc.stderr + proc.stdout and "SLURM" in (run_dir / "run_train.log").read_text()
