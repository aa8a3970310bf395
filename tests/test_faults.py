"""Every ending tells the truth: real `run_train.py`/`run_eval.py` processes hit by real faults (SIGKILL at random
moments and in the middle of a checkpoint write, an exception, a double Ctrl-C, a full disk, corrupt checkpoints,
a corrupt data cache, two runs started in one directory, a resume from an earlier checkpoint). Faults inside a
process are injected by tests/faults/sitecustomize.py (no hook in the project's code)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from s5lra.data import load_task
from s5lra.train import checkpoint, rundir
from s5lra.train.launch import EXTRAS, check_command_line
from s5lra.train.loop import Window

from helpers import GENERATE, REPO, events, run_cli, tiny_overrides

pytestmark = pytest.mark.usefixtures("shared_compilation_cache")
FAULTS = str(Path(__file__).parent / "faults")
TIMING = ("examples_per_s",)


def start(run_dir, *extra, fault=None, env=None):
    """`run_train.py` on the tiny ListOps in `run_dir`, not waited for; `fault`: S5LRA_FAULT (see sitecustomize)."""
    env = {**os.environ, **(env or {})}
    if fault:
        env.update(S5LRA_FAULT=fault, PYTHONPATH=os.pathsep.join(filter(None, [FAULTS, env.get("PYTHONPATH")])))
    return subprocess.Popen([sys.executable, str(REPO / "run_train.py"), *extra, f"hydra.run.dir={run_dir}"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=240):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def results(run_dir):
    return json.loads((Path(run_dir) / "results.json").read_text())


def stable_events(run_dir):
    return [{k: v for k, v in e.items() if k not in TIMING} for e in events(run_dir)]


def temporaries(run_dir):
    return [p for p in Path(run_dir).rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]


def last_line(text):
    return text.strip().splitlines()[-1]


def wait_for(predicate, proc, timeout=180):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)


def n_train_events(run_dir):
    try:
        return (Path(run_dir) / "metrics.jsonl").read_text().count('"split": "train"')
    except FileNotFoundError:
        return 0


# A run of 3 epochs x 8 steps that saves `last` every 2 steps, with dropout (the RNG must resume exactly too).
def kill_args(root):
    return tiny_overrides(root, "trainer.epochs=3", "trainer.checkpoint_every=2", "model.dropout=0.1")


@pytest.fixture(scope="module")
def reference(listops_root, tmp_path_factory):
    """The uninterrupted run that every killed-and-resumed run must reproduce."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    code, _, err = finish(start(run_dir, *kill_args(listops_root)))
    assert code == 0, err[-3000:]
    return run_dir


def resume_until_done(run_dir, args, kills=()):
    """Resume with trainer.resume=auto, first killing each attempt after the given number of train events
    (plus a random delay), then once to the end. Returns the last attempt's stderr."""
    for after in kills:
        proc = start(run_dir, *args, "trainer.resume=auto")
        wait_for(lambda: n_train_events(run_dir) >= after, proc)
        time.sleep(random.uniform(0, 0.05))
        proc.kill()
        proc.wait()
    code, _, err = finish(start(run_dir, *args, "trainer.resume=auto"))
    assert code == 0, err[-3000:]
    return err


def assert_reproduces(run_dir, reference):
    assert results(run_dir)["status"] == "completed"
    assert stable_events(run_dir) == stable_events(reference)
    for key in ("best_val_accuracy", "test_accuracy", "final_test_accuracy", "best_step", "steps"):
        assert results(run_dir)[key] == results(reference)[key], key
    assert not temporaries(run_dir)


def test_a_kill_in_the_middle_of_a_checkpoint_write_loses_nothing(listops_root, reference, tmp_path):
    run_dir = tmp_path / "run"
    # numpy.savez calls: last/2, last/4, last/6, last/8 + best/8, ...: the 4th dies half-way through last/8
    code, _, _ = finish(start(run_dir, *kill_args(listops_root), fault="kill-in-save:4"))
    assert code == -signal.SIGKILL
    assert results(run_dir)["status"] == "running" and not rundir.is_active(run_dir)  # killed: nobody holds it
    assert temporaries(run_dir)  # the half-written save, never under a final name
    assert sorted(int(p.name) for p in (run_dir / "checkpoints" / "last").iterdir() if p.name.isdigit()) == [4, 6]
    resume_until_done(run_dir, kill_args(listops_root))
    log = (run_dir / "run_train.log").read_text()
    assert "ended without closing it (killed?)" in log and "left by an interrupted write" in log
    assert_reproduces(run_dir, reference)


@pytest.mark.parametrize("trial", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_sigkill_at_random_moments_then_resume_reproduces_the_uninterrupted_run(listops_root, reference, tmp_path,
                                                                               trial):
    rng = random.Random(trial)
    kills = sorted(rng.sample(range(1, 24), 2 + trial))
    run_dir = tmp_path / "run"
    proc = start(run_dir, *kill_args(listops_root))
    wait_for(lambda: n_train_events(run_dir) >= kills[0], proc)
    proc.kill()
    proc.wait()
    resume_until_done(run_dir, kill_args(listops_root), kills[1:])
    assert_reproduces(run_dir, reference)


def test_an_exception_mid_run_is_recorded_as_failed(listops_root, tmp_path):
    run_dir = tmp_path / "run"
    # evaluations: val and test at step 8, then val at step 16 raises
    code, _, err = finish(start(run_dir, *tiny_overrides(listops_root), fault="raise-in-eval:3"))
    assert code == 1 and "RuntimeError: injected fault in evaluation" in err
    record = results(run_dir)
    assert record["status"] == "failed" and record["steps"] == 16
    assert record["error"] == "RuntimeError: injected fault in evaluation" and "Traceback" in record["traceback"]
    assert record["last_checkpoint"] == "checkpoints/last/8" and not record["last_saved"]
    assert "demo: failed at step 16 (RuntimeError: injected fault in evaluation)" in (run_dir / "run_train.log").read_text()
    checkpoint.verify(run_dir / "checkpoints" / "last")


def test_out_of_memory_is_one_line_that_says_what_to_try(listops_root, tmp_path):
    run_dir = tmp_path / "run"
    code, _, err = finish(start(run_dir, *tiny_overrides(listops_root), fault="oom-in-eval:1"))
    assert code == 1 and "Traceback" not in err
    assert last_line(err).startswith("error: out of device memory (RESOURCE_EXHAUSTED: Out of memory allocating")
    record = results(run_dir)
    assert record["status"] == "failed" and record["error"].startswith("DeviceMemoryError: out of device memory")
    assert "model.remat=true, a smaller trainer.batch_size or more devices" in record["error"]
    assert "JaxRuntimeError" in record["traceback"]  # XLA's own error stays in the record


def test_a_double_ctrl_c_stops_at_once_and_says_nothing_was_saved(listops_root, tmp_path):
    run_dir, mark = tmp_path / "run", tmp_path / "evaluating"
    proc = start(run_dir, *tiny_overrides(listops_root), fault="slow-eval:3", env={"S5LRA_FAULT_MARK": str(mark)})
    wait_for(mark.exists, proc)  # inside the evaluation at step 16
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc, timeout=30)
    assert code == 130, err[-3000:]
    record = results(run_dir)
    assert record["status"] == "interrupted" and record["steps"] == 16 and "error" not in record
    assert record["last_checkpoint"] == "checkpoints/last/8" and not record["last_saved"]
    assert not temporaries(run_dir)
    assert "checkpoints/last is not at this step" in (run_dir / "run_train.log").read_text()


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("a full disk needs a small tmpfs, which only root can mount here")
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)]).returncode:
        pytest.skip("mount -t tmpfs failed (no mount permission in this container)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)])


def test_a_full_disk_fails_the_run_in_one_line_and_keeps_the_previous_checkpoints(listops_root, small_disk):
    run_dir = small_disk / "run"
    code, _, err = finish(start(run_dir, *tiny_overrides(listops_root, "trainer.epochs=100",
                                                         "trainer.checkpoint_every=1")))
    assert code == 1
    line = last_line(err)
    assert line.startswith(f"error: cannot save checkpoint {run_dir}/checkpoints/") and "No space left on device" in line
    assert "Traceback" not in err
    record = results(run_dir)
    assert record["status"] == "failed" and record["error"].startswith("StorageError: cannot save checkpoint")
    assert "No space left on device" in (run_dir / "run_train.log").read_text()
    assert not temporaries(run_dir)
    saved = checkpoint.saves(run_dir / "checkpoints" / "last")
    assert len(saved) == 2 and record["last_checkpoint"] == str(saved[0].relative_to(run_dir))
    for path in saved:
        checkpoint.verify(path)


@pytest.fixture
def finished_run(listops_root, tmp_path):
    run_dir = tmp_path / "run"
    code, _, err = finish(start(run_dir, *tiny_overrides(listops_root, "trainer.checkpoint_every=3")))
    assert code == 0, err[-3000:]
    return run_dir  # last/{15, 16}, best/<8 or 16>


def test_resume_passes_over_a_damaged_checkpoint_and_says_so(listops_root, finished_run):
    state = finished_run / "checkpoints" / "last" / "16" / "state.npz"
    state.write_bytes(state.read_bytes()[:-100])  # truncated
    code, _, err = finish(start(finished_run, *tiny_overrides(listops_root, "trainer.epochs=3",
                                                              "trainer.checkpoint_every=3", "trainer.resume=auto")))
    assert code == 0, err[-3000:]
    log = (finished_run / "run_train.log").read_text()
    assert f"skipping a damaged checkpoint: cannot read {state}" in log
    record = results(finished_run)
    assert record["resumed_from"].endswith("checkpoints/last/15") and record["steps"] == 24
    assert [e["step"] for e in events(finished_run, "train")] == list(range(1, 25))


def test_a_damaged_checkpoint_is_named_with_the_intact_ones(listops_root, finished_run):
    state = finished_run / "checkpoints" / "last" / "16" / "state.npz"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit pattern in the middle of some leaf
    state.write_bytes(bytes(data))
    proc = run_cli("run_eval.py", [f"run_dir={finished_run}", "checkpoint=last"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    line = last_line(proc.stderr)
    assert line.startswith(f"error: damaged checkpoint: {state} is damaged (bad CRC in ")
    assert f"intact checkpoints of this run: {finished_run / 'checkpoints' / 'last' / '15'}" in line
    code, _, err = finish(start(finished_run / "new", *tiny_overrides(listops_root, f"trainer.resume={state.parent}")))
    assert code == 1 and last_line(err).startswith("error: damaged checkpoint:") and "last/15" in last_line(err)
    assert not (finished_run / "new" / "results.json").exists()


def test_a_damaged_data_cache_is_rebuilt_and_missing_sources_are_named(tmp_path):
    root = tmp_path / "data"
    generate = OmegaConf.to_container(OmegaConf.create(GENERATE.replace(":", ": ")))
    task = load_task("listops", root, generate=generate, max_len=20)
    inputs = task.cache_dir / "train.inputs.npy"
    reference = np.array(task.splits["train"].inputs)
    del task
    inputs.write_bytes(inputs.read_bytes()[:-7])  # truncated: mapping it would kill the process with SIGBUS
    run_dir = tmp_path / "run"
    code, _, err = finish(start(run_dir, *tiny_overrides(root, "trainer.max_steps=2")))
    assert code == 0, err[-3000:]
    assert f"data cache: building {inputs.parent} (it is damaged: {inputs}: train.inputs.npy has" in \
        (run_dir / "run_train.log").read_text()
    np.testing.assert_array_equal(load_task("listops", root, max_len=20).splits["train"].inputs, reference)
    data = bytearray(inputs.read_bytes())
    data[-1] ^= 0xFF  # same size, other content: the sampled checksum differs
    inputs.write_bytes(bytes(data))
    np.testing.assert_array_equal(load_task("listops", root, max_len=20).splits["train"].inputs, reference)
    source = next(root.rglob("basic_test.tsv"))
    source.unlink()
    code, _, err = finish(start(tmp_path / "run2", *tiny_overrides(root, "trainer.max_steps=2", "dataset.generate=null")))
    assert code == 1 and last_line(err) == f"error: {source}: file not found (a source of this task; restore it " \
                                           f"or get the data again)"


def test_two_runs_started_in_one_directory_never_share_it(listops_root, tmp_path):
    run_dir = tmp_path / "run"
    procs = [start(run_dir, *tiny_overrides(listops_root, f"seed={seed}")) for seed in (1, 2)]
    outcomes = [finish(p) for p in procs]
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0, 1], [err[-2000:] for _, _, err in outcomes]
    (winner,) = [seed for seed, (code, _, _) in zip((1, 2), outcomes) if code == 0]
    (refused,) = [err for code, _, err in outcomes if code == 1]
    line = last_line(refused)
    assert line.startswith(f"error: {run_dir} is in use by another run (pid ") or \
        line.startswith(f"error: {run_dir} already holds a run")
    assert "nothing in it was changed" in line
    assert results(run_dir)["seed"] == winner and results(run_dir)["status"] == "completed"
    steps = [(e["step"], e["split"]) for e in events(run_dir)]
    assert len(steps) == len(set(steps))  # one run's events, once each


def test_resuming_from_an_earlier_checkpoint_makes_that_branch_the_run(listops_root, tmp_path):
    """The old branch runs to step 24 (last/{22, 24}); a new one starts from last/22 with another learning rate
    and stops at 23: last/23 is the run's newest save, the old last/24 is set aside, metrics.jsonl is cut at 22,
    and resume=auto continues the new branch."""
    run_dir = tmp_path / "run"
    args = tiny_overrides(listops_root, "trainer.epochs=3", "trainer.checkpoint_every=2")
    code, _, err = finish(start(run_dir, *args))
    assert code == 0, err[-3000:]
    old_events = events(run_dir)
    branch_point = run_dir / "checkpoints" / "last" / "22"
    code, _, err = finish(start(run_dir, *args, "optimizer.lr=0.01", "trainer.max_steps=23",
                                f"trainer.resume={branch_point}"))
    assert code == 0, err[-3000:]
    assert [p.name for p in checkpoint.saves(run_dir / "checkpoints" / "last")] == ["23", "22"]
    assert list((run_dir / "checkpoints" / checkpoint.ABANDONED).glob("*/last/24"))
    moved = "later checkpoints (another branch, or damaged ones passed over) were moved to"
    assert moved in (run_dir / "run_train.log").read_text()
    new_events = events(run_dir)
    assert [e for e in new_events if e["step"] <= 22] == [e for e in old_events if e["step"] <= 22]
    assert [e["step"] for e in new_events if e["step"] > 22] == [23, 23, 23]  # train, val, test
    code, _, err = finish(start(run_dir, *args, "optimizer.lr=0.01", "trainer.resume=auto"))
    assert code == 0, err[-3000:]
    assert results(run_dir)["resumed_from"] == str(run_dir / "checkpoints" / "last" / "23")
    assert results(run_dir)["steps"] == 24 and results(run_dir)["status"] == "completed"


@pytest.mark.parametrize("args, message", [
    (["model.ssm.scan=foo"], "error: model.ssm.scan='foo': expected one of"),
    (["batch_size=-1"], "error: batch_size=-1: must be positive"),
    (["batch_size=0"], "error: batch_size=0: must be positive"),
    (["split=dev"], "error: split='dev': expected one of"),
    ([], "error: run_dir is required"),
])
def test_run_eval_refuses_bad_values_in_one_line(reference, args, message):
    proc = run_cli("run_eval.py", [*([f"run_dir={reference}"] if "run_dir is required" not in message else []), *args])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert last_line(proc.stderr).startswith(message), proc.stderr[-2000:]
    assert not list(reference.glob("eval_*.json"))


def test_bad_values_and_names_are_refused_before_anything_is_written(listops_root, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli("run_train.py", tiny_overrides(listops_root, "seed=-5", f"hydra.run.dir={run_dir}"))
    assert proc.returncode == 1 and last_line(proc.stderr).startswith("error: seed=-5: must be an integer in [0, 2**32)")
    assert [p.name for p in run_dir.iterdir()] == ["run_train.log"]  # the error, and no run: no .lock, no results
    assert "error: seed=-5" in (run_dir / "run_train.log").read_text()
    other = tmp_path / "other"
    proc = run_cli("run_train.py", ["experiment=lra/foo", f"hydra.run.dir={other}"])
    assert proc.returncode == 1 and not other.exists()
    assert last_line(proc.stderr).startswith("error: experiment=lra/foo: no such experiment; available: demo, lra/image")
    assert "lra_ptd/pathx" in proc.stderr and "smoke/text" in proc.stderr


def test_a_launcher_without_its_extra_says_how_to_install_it(monkeypatch):
    assert check_command_line(["hydra/launcher=slurm", "experiment=lra/text"], REPO / "configs") is None
    monkeypatch.setitem(EXTRAS, "hydra/launcher=slurm", "hydra_plugins.not_installed_launcher")
    assert check_command_line(["-m", "hydra/launcher=slurm"], REPO / "configs") == (
        "hydra/launcher=slurm needs the optional extras: make install-extras (or pip install -e '.[cluster,search]')")


def test_throughput_windows_leave_out_evaluation_and_checkpoint_time(monkeypatch):
    clock = iter([100.0, 103.0, 110.0, 112.0, 112.0])  # window start, pause begins and ends, flush, next window
    monkeypatch.setattr("s5lra.train.loop.time.time", lambda: next(clock))
    window = Window()
    window.add({"loss": 1.0, "accuracy": 0.5, "weight": 50.0})
    with window.paused():
        pass
    assert window.flush()["examples_per_s"] == pytest.approx(50.0 / 5.0)  # 12 s, 7 of them paused


@pytest.mark.parametrize("field, value, message", [
    ("options", {"min_freq": 0}, "dataset: min_freq=0: expected a positive integer"),
    ("options", {"colour": True}, "dataset: unknown option(s) ['colour'] for task 'listops'"),
    ("generate", {"n_train": -1}, "the split sizes must not be negative"),
    ("generate", {"depth": 3}, "dataset: dataset.generate: unknown key(s) ['depth'] for listops"),
])
def test_dataset_options_and_generator_settings_are_checked_before_the_run(field, value, message):
    from s5lra.train.config import ConfigError, TrainConfig, validate

    cfg = TrainConfig()
    if field == "options" and "min_freq" in value:
        cfg.dataset.name = "text"
    setattr(cfg.dataset, field, value)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert message in str(err.value)
