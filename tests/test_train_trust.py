"""Runs never mix, never silently change their data, and say what they were (tiny generated ListOps)."""

import json
import re
import shutil
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

from s5lra.data import listops_gen, load_task
from s5lra.errors import DataError, RunDirectoryError
from s5lra.train import EvalConfig, evaluate_run, train
from s5lra.train import checkpoint
from s5lra.train import loop as loop_module
from s5lra.train.sharding import make_mesh, replicated
from s5lra.train.steps import TrainState

from helpers import GENERATE, compose_cfg, events, run_cli, signal_after_train_events, tiny_overrides

pytestmark = pytest.mark.usefixtures("shared_compilation_cache")


def run(run_dir, overrides):
    return train(OmegaConf.to_object(compose_cfg(overrides)), run_dir, overrides=list(overrides))


def snapshot(run_dir):
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_a_directory_holding_a_run_is_refused_and_left_untouched(listops_root, tmp_path):
    run_dir = tmp_path / "run"
    run(run_dir, tiny_overrides(listops_root, "trainer.max_steps=2"))
    before = snapshot(run_dir)
    proc = run_cli("run_train.py", tiny_overrides(listops_root, "trainer.max_steps=3", f"hydra.run.dir={run_dir}"))
    assert proc.returncode == 1
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: {run_dir} already holds a run") and "trainer.resume=auto" in message
    assert snapshot(run_dir) == before  # .hydra/ included: Hydra writes nothing there itself
    with pytest.raises(RunDirectoryError):
        run(run_dir, tiny_overrides(listops_root, "trainer.max_steps=3"))


def test_resume_auto_without_a_checkpoint_says_it_starts_fresh(listops_root, tmp_path, caplog):
    with caplog.at_level("INFO", logger="s5lra"):
        results = run(tmp_path, tiny_overrides(listops_root, "trainer.max_steps=2", "trainer.resume=auto"))
    assert results["steps"] == 2 and results["status"] == "completed"
    assert any("no checkpoint" in r.message and "starting fresh" in r.message for r in caplog.records)


def test_results_say_what_the_run_was(listops_root, tmp_path):
    overrides = tiny_overrides(listops_root, "trainer.max_steps=3", "seed=5", "trainer.checkpoint_every=1")
    tic = time.time()
    results = run(tmp_path, overrides)
    assert 0 < results["wall_time_s"] <= time.time() - tic  # four saves: each must not count the time again
    assert results["seed"] == 5 and results["overrides"] == overrides
    assert re.fullmatch(r"[0-9a-f]{40}", results["git_commit"]) and isinstance(results["git_dirty"], bool)
    assert results["jax_version"] and results["flax_version"] and results["device_kind"] == "cpu"
    assert results["n_devices"] == 4 and results["epochs"] == results["steps"] / results["steps_per_epoch"]
    saved = OmegaConf.load(tmp_path / ".hydra" / "config.yaml")
    assert saved.dataset.root == str(listops_root) and saved.paths.data_dir.startswith("/")
    assert list(OmegaConf.load(tmp_path / ".hydra" / "overrides.yaml")) == overrides


def test_saved_paths_are_absolute_and_evaluation_never_generates(tmp_path, monkeypatch):
    """Trained with a relative data root, evaluated from another directory: the same data, nothing generated."""
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    monkeypatch.chdir(work)
    results = run(work / "run", tiny_overrides("rel_data", "trainer.max_steps=3"))
    monkeypatch.chdir(elsewhere)
    metrics = evaluate_run(EvalConfig(run_dir=str(work / "run"), checkpoint="last"))
    assert metrics["examples"] == 20 and metrics["accuracy"] == results["final_test_accuracy"]
    assert not (elsewhere / "rel_data").exists()


def test_changed_data_stops_evaluation_and_resume_unless_allowed(tmp_path):
    root = tmp_path / "data"
    run(tmp_path / "run", tiny_overrides(root, "trainer.max_steps=3"))
    vocab = checkpoint.read_record(tmp_path / "run" / "checkpoints" / "last")["data"]["vocab"]
    # Regenerate the data with another seed (other trees, other token frequencies) in the same root.
    shutil.rmtree(root / listops_gen.FOLDER)
    other = compose_cfg(tiny_overrides(root, f"dataset.generate={GENERATE.replace('seed:0', 'seed:1')}")).dataset
    load_task("listops", root, generate=OmegaConf.to_container(other.generate), max_len=20)
    with pytest.raises(DataError, match="the data differs from the run's own: .*allow_data_change=true"):
        evaluate_run(EvalConfig(run_dir=str(tmp_path / "run"), checkpoint="last"))
    with pytest.raises(DataError, match="allow_data_change"):
        run(tmp_path / "run", tiny_overrides(root, "trainer.max_steps=5", "trainer.resume=auto",
                                             f"dataset.generate={GENERATE.replace('seed:0', 'seed:1')}"))
    metrics = evaluate_run(EvalConfig(run_dir=str(tmp_path / "run"), checkpoint="last", allow_data_change=True))
    assert metrics["examples"] == 20
    assert load_task("listops", root, vocab=vocab).vocab == vocab  # encoded with the run's own ids


def test_metrics_after_a_resume_equal_an_uninterrupted_run(listops_root, tmp_path, monkeypatch):
    """Stopped at a checkpoint inside a logging window: the resumed run's events, train windows included,
    equal the uninterrupted run's."""
    extra = ["trainer.log_every=3", "trainer.checkpoint_every=4", "model.dropout=0.1"]
    run(tmp_path / "full", tiny_overrides(listops_root, *extra))
    calls = []

    def stop_at_the_second_boundary(self):
        calls.append(1)
        return "preempted" if len(calls) == 2 else None  # boundaries at steps 3 and 4: stop at 4

    monkeypatch.setattr(loop_module.StopSignals, "agreed", stop_at_the_second_boundary)
    first = run(tmp_path / "part", tiny_overrides(listops_root, *extra))
    monkeypatch.undo()
    assert first["status"] == "preempted" and first["steps"] == 4 and first["epochs"] == 0.5
    run(tmp_path / "part", tiny_overrides(listops_root, *extra, "trainer.resume=auto"))
    strip = lambda d: [{k: v for k, v in e.items() if k != "examples_per_s"} for e in events(d)]  # noqa: E731
    assert strip(tmp_path / "part") == strip(tmp_path / "full")
    assert [e["step"] for e in events(tmp_path / "full", "train")] == [3, 6, 9, 12, 15]


def test_sigint_saves_and_exits_130(listops_root, tmp_path):
    run_dir = tmp_path / "run"
    returncode, stderr = signal_after_train_events(
        run_dir, tiny_overrides(listops_root, "trainer.epochs=500", f"hydra.run.dir={run_dir}"), signal.SIGINT)
    assert returncode == 130, stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "interrupted" and results["epochs"] == results["steps"] / 8
    assert results["last_checkpoint"] == f"checkpoints/last/{results['steps']}" and results["last_saved"]
    assert (run_dir / results["last_checkpoint"] / "state.npz").exists()


def test_the_log_says_what_the_run_uses_and_why_it_failed(listops_root, tmp_path):
    proc = run_cli("run_train.py", tiny_overrides(listops_root, "trainer.max_steps=2", f"hydra.run.dir={tmp_path}",
                                                  "trainer.progress=true"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (tmp_path / "run_train.log").read_text()
    for words in ("devices: 4 x cpu", "parameters", "task listops: train 64 / val 12 / test 20 examples",
                  "data cache", f"run directory: {tmp_path}", "metrics: ", "step 2/2 (epoch 0.25): loss ",
                  "demo: completed; test accuracy at best validation"):
        assert words in log, words
    assert "\r" not in log and "it/s" not in proc.stderr  # not a terminal: log lines instead of a progress bar
    failed = tmp_path / "failed"
    proc = run_cli("run_train.py", [*tiny_overrides(tmp_path / "no_data", f"hydra.run.dir={failed}"),
                                    "dataset.generate=null"])
    assert proc.returncode == 1
    assert "error: " in (failed / "run_train.log").read_text()


def tiny_state(step):
    state = TrainState(step=jnp.int32(step), params={"w": jnp.arange(6.0).reshape(2, 3) * step,
                                                      "half": jnp.full(3, step, jnp.bfloat16)},
                       batch_stats={}, opt_state=(jnp.zeros(2, jnp.int32),), rng=jax.random.PRNGKey(step))
    return jax.device_put(state, replicated(make_mesh()))


def test_a_checkpoint_round_trips_every_leaf_and_keeps_the_newest_saves(tmp_path):
    """`last` keeps its two newest saves and `best` one; newest means last written, not the highest step."""
    ckpts = checkpoint.Checkpoints(tmp_path / "checkpoints")
    for step, acc in ((3, 0.5), (7, 0.75), (5, 0.25)):
        ckpts.save("last", tiny_state(step), {"best_val_accuracy": acc})
        ckpts.save("best", tiny_state(step), {"best_val_accuracy": acc})
    assert sorted(p.name for p in (tmp_path / "checkpoints" / "last").iterdir()) == ["5", "7"]  # no temporaries
    assert [p.name for p in (tmp_path / "checkpoints" / "best").iterdir()] == ["5"]
    assert ckpts.latest("last") == tmp_path / "checkpoints" / "last" / "5"
    target = tiny_state(0)
    restored, record = checkpoint.restore(tmp_path / "checkpoints", target)
    assert record["best_val_accuracy"] == 0.25 and record["step"] == 5
    for got, want, like in zip(jax.tree.leaves(restored), jax.tree.leaves(tiny_state(5)), jax.tree.leaves(target)):
        assert got.dtype == want.dtype and got.sharding == like.sharding
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_an_unreadable_checkpoint_names_its_file(tmp_path):
    checkpoint.Checkpoints(tmp_path).save("last", tiny_state(2), {})
    (tmp_path / "last" / "2" / "state.npz").write_bytes(b"not a zip file")
    with pytest.raises(checkpoint.CheckpointError, match=r"last/2/state\.npz"):
        checkpoint.restore(tmp_path / "last", tiny_state(0))
    (tmp_path / "last" / "2" / "record.json").write_text("{")
    with pytest.raises(checkpoint.CheckpointError, match=r"last/2/record\.json"):
        checkpoint.read_record(tmp_path / "last")


def test_a_run_resumed_from_another_runs_checkpoint_is_a_new_wandb_run(listops_root, tmp_path):
    wandb = ["logger=wandb", "logger.mode=offline"]
    source = tmp_path / "source"
    run(source, tiny_overrides(listops_root, *wandb, "trainer.max_steps=2"))
    results = run(tmp_path / "new", tiny_overrides(listops_root, *wandb, "trainer.max_steps=4",
                                                   f"trainer.resume={source / 'checkpoints'}"))
    run_id = lambda d: {p.name.rsplit("-", 1)[1] for p in (d / "wandb").glob("offline-run-*")}  # noqa: E731
    assert len(run_id(source)) == len(run_id(tmp_path / "new")) == 1 and run_id(source) != run_id(tmp_path / "new")
    assert results["resumed_from"] == str(source / "checkpoints" / "last" / "2") and results["steps"] == 4
    assert checkpoint.read_record(tmp_path / "new" / "checkpoints")["wandb_run_id"] == run_id(tmp_path / "new").pop()
    assert [e["step"] for e in events(tmp_path / "new", "train")] == [3, 4]  # its own metrics from the branch point
