"""Whole runs on tiny generated ListOps: outputs, W&B offline contents, run_eval, resume, SIGTERM, refusals."""

import json
import signal

import jax
import numpy as np
import pytest
from omegaconf import OmegaConf

from s5lra.overrides import overrides_label
from s5lra.train import EvalConfig, TrainingDiverged, evaluate_run
from s5lra.train import loop as loop_module
from s5lra.train.checkpoint import CheckpointError
from s5lra.train.config import EvalModelOverrides, EvalSSMOverrides
from s5lra.train.steps import metric_names

from helpers import events, read_wandb, run_cli, run_inprocess, signal_after_train_events, tiny_overrides

pytestmark = pytest.mark.usefixtures("shared_compilation_cache")


@pytest.fixture(scope="module")
def cli_run(listops_root, tmp_path_factory):
    """One real `run_train.py` run with W&B offline, on 4 devices."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    proc = run_cli("run_train.py", tiny_overrides(listops_root, "logger=wandb", "logger.mode=offline",
                                                  "logger.tags=[tiny]", f"hydra.run.dir={run_dir}"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_run_directory_contents(cli_run):
    assert (cli_run / ".hydra" / "config.yaml").exists()
    results = json.loads((cli_run / "results.json").read_text())
    assert results["status"] == "completed" and results["steps"] == 16 and results["epochs"] == 2
    assert results["n_devices"] == 4 and results["name"] == "demo" and results["n_params"] > 0
    assert 0 < results["majority_baseline"] <= 1 and results["wall_time_s"] > 0
    for key in ("best_val_accuracy", "test_accuracy", "final_test_accuracy"):
        assert 0 <= results[key] <= 1
    train_events = events(cli_run, "train")
    assert [e["step"] for e in train_events] == list(range(1, 17))
    assert {"loss", "accuracy", "lr", "ssm_lr", "examples_per_s", "epoch"} <= set(train_events[0])
    assert [e["step"] for e in events(cli_run, "val")] == [8, 16] == [e["step"] for e in events(cli_run, "test")]
    best = max(events(cli_run, "val"), key=lambda e: e["accuracy"])  # first maximum wins
    test_at_best = [e for e in events(cli_run, "test") if e["step"] == best["step"]][0]
    assert results["test_accuracy"] == test_at_best["accuracy"]
    assert sorted(p.name for p in (cli_run / "checkpoints").iterdir()) == ["best", "last"]
    assert sorted(int(p.name) for p in (cli_run / "checkpoints" / "last").iterdir()) == [8, 16]  # the two newest
    assert results["last_checkpoint"] == "checkpoints/last/16" and results["last_saved"]


def test_wandb_offline_run_contents(cli_run):
    run, rows, config, summary = read_wandb(cli_run)
    # User tags first, then the task and seed; the experiment and the overrides that change what is trained
    # group the runs (the loop's defaults), so only seeds of one setting share a group.
    assert run["project"] == "s5lra" and run["tags"] == ["tiny", "listops", "seed0"]
    overrides = OmegaConf.load(cli_run / ".hydra" / "overrides.yaml")
    group = f"demo/{overrides_label(list(overrides))}"
    assert group != "demo/" and "seed" not in group and "logger" not in group
    assert run["run_group"] == group and run["display_name"] == f"{group}/seed0"
    keys = set().union(*rows)
    assert {"train/loss", "train/accuracy", "val/loss", "val/accuracy", "test/loss", "test/accuracy", "lr",
            "ssm_lr", "step"} <= keys
    assert config["model"]["d_model"] == 8 and config["optimizer"]["groups"] == "BfastandCdecay"
    results = json.loads((cli_run / "results.json").read_text())
    assert summary["test_accuracy"] == results["test_accuracy"]
    assert summary["best_val_accuracy"] == results["best_val_accuracy"]


def test_run_eval_reproduces_the_logged_test_accuracy(cli_run):
    proc = run_cli("run_eval.py", [f"run_dir={cli_run}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((cli_run / "eval_test_best.json").read_text())
    results = json.loads((cli_run / "results.json").read_text())
    assert metrics["accuracy"] == results["test_accuracy"] and metrics["examples"] == 20
    assert json.loads(proc.stdout)["accuracy"] == metrics["accuracy"]


# The S5 family (tests/test_variants.py has their layers): each variant's parameters must checkpoint and resume.
VARIANTS = [[], ["model.ssm.kind=lru"], ["model.ssm.selective=true"],
            pytest.param(["model.ssm.init=ptd", "model.ssm.conj_sym=false"], marks=pytest.mark.slow),
            pytest.param(["model.ssm.init=s4d_inv"], marks=pytest.mark.slow)]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: " ".join(v) or "s5")
def test_resume_equals_an_uninterrupted_run(listops_root, tmp_path, monkeypatch, variant):
    monkeypatch.setenv("S5LRA_CACHE_DIR", str(tmp_path / "cache"))  # a PTD solve stays out of ~/.cache
    full = tmp_path / "full"
    run_inprocess(full, tiny_overrides(listops_root, "model.dropout=0.1", *variant))
    part = tmp_path / "part"
    first = run_inprocess(part, tiny_overrides(listops_root, "model.dropout=0.1", "trainer.max_steps=5", *variant))
    assert first["steps"] == 5
    second = run_inprocess(part, tiny_overrides(listops_root, "model.dropout=0.1", "trainer.resume=auto", *variant))
    assert second["steps"] == 16
    losses = lambda d: [(e["step"], e["loss"]) for e in events(d, "train")]  # noqa: E731
    assert losses(part) == losses(full)  # bit-exact, dropout and BatchNorm included
    assert events(part, "test")[-1]["loss"] == events(full, "test")[-1]["loss"]


def test_checkpoint_of_another_model_is_refused(listops_root, tmp_path):
    run_inprocess(tmp_path / "a", tiny_overrides(listops_root, "trainer.max_steps=2"))
    with pytest.raises(CheckpointError, match=r"params/decoder/out/kernel has shape \(8, 10\) there but \(16, 10\) here"):
        run_inprocess(tmp_path / "b", tiny_overrides(listops_root, "model.d_model=16",
                                                     f"trainer.resume={tmp_path / 'a' / 'checkpoints' / 'last'}"))


def test_evaluate_run_with_step_rescale(listops_root, tmp_path):
    run_inprocess(tmp_path, tiny_overrides(listops_root, "trainer.max_steps=3"))
    plain = evaluate_run(EvalConfig(run_dir=str(tmp_path), checkpoint="last"))
    assert plain["step"] == 3 and plain["examples"] == 20
    overrides = EvalModelOverrides(ssm=EvalSSMOverrides(step_rescale=4.0))
    rescaled = evaluate_run(EvalConfig(run_dir=str(tmp_path), checkpoint="last", model=overrides, split="val"))
    assert rescaled["step_rescale"] == 4.0 and rescaled["examples"] == 12 and rescaled["loss"] != plain["loss"]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(listops_root, tmp_path, monkeypatch):
    make = loop_module.make_train_step

    def poisoned(*args):
        step = make(*args)

        def wrapped(state, batch):
            state, metrics = step(state, batch)
            if int(state.step) == 10:
                metrics = metrics.at[metric_names().index("loss")].set(np.nan)
            return state, metrics

        return wrapped

    monkeypatch.setattr(loop_module, "make_train_step", poisoned)
    with pytest.raises(TrainingDiverged, match=r"step 10 .*checkpoints/last/8"):
        run_inprocess(tmp_path, tiny_overrides(listops_root))
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "diverged"


def test_sigterm_saves_and_exits_cleanly_then_resumes(listops_root, tmp_path):
    run_dir = tmp_path / "run"
    returncode, stderr = signal_after_train_events(
        run_dir, tiny_overrides(listops_root, "trainer.epochs=500", f"hydra.run.dir={run_dir}"), signal.SIGTERM)
    assert returncode == 0, stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "preempted" and results["steps"] >= 3
    assert results["last_checkpoint"] == f"checkpoints/last/{results['steps']}" and results["last_saved"]
    again = run_inprocess(run_dir, tiny_overrides(listops_root, "trainer.epochs=500", "trainer.resume=auto",
                                                  f"trainer.max_steps={results['steps'] + 2}"))
    assert again["steps"] == results["steps"] + 2 and again["status"] == "completed"
    assert [e["step"] for e in events(run_dir, "train")] == list(range(1, again["steps"] + 1))


def test_batch_must_divide_over_devices(listops_root, tmp_path):
    assert jax.device_count() == 4
    from s5lra.train import ConfigError

    with pytest.raises(ConfigError, match=r"trainer.batch_size=10 does not divide by the 4 devices"):
        run_inprocess(tmp_path, tiny_overrides(listops_root, "trainer.batch_size=10"))


def test_multirun_sweep_has_one_folder_per_job(listops_root, tmp_path):
    proc = run_cli("run_train.py", ["-m", *tiny_overrides(listops_root, "trainer.max_steps=2"), "seed=1,2",
                                    f"hydra.sweep.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    seeds = [OmegaConf.load(tmp_path / str(job) / ".hydra" / "config.yaml").seed for job in (0, 1)]
    assert seeds == [1, 2]
    assert all(json.loads((tmp_path / str(job) / "results.json").read_text())["steps"] == 2 for job in (0, 1))


def test_resumed_run_continues_the_same_wandb_run(listops_root, tmp_path):
    wandb = ["logger=wandb", "logger.mode=offline"]
    run_inprocess(tmp_path, tiny_overrides(listops_root, *wandb, "trainer.max_steps=2"))
    run_inprocess(tmp_path, tiny_overrides(listops_root, *wandb, "trainer.max_steps=4", "trainer.resume=auto"))
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and len({p.name.rsplit("-", 1)[1] for p in runs}) == 1
    history = [row for path in runs for row in read_wandb(path)[1]]
    assert sorted(row["step"] for row in history if "train/loss" in row) == [1, 2, 3, 4]
