"""Sweeps beyond one process, through the real run_train.py: submitit's local launcher (several jobs, several
ranks, requeue after the pre-timeout signal), the SLURM batch script (fake sbatch), failing jobs, Optuna."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import GENERATE, REPO

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the cluster extra (requirements-extras.txt)")

TRAIN_YAML = (REPO / "configs" / "train.yaml").read_text()
# The search is a config group; until configs/train.yaml lists it, add it here.
SEARCH = ("" if "hparams_search:" in TRAIN_YAML else "+") + "hparams_search=lra_optuna"
TIMING = ("examples_per_s",)

pytestmark = pytest.mark.usefixtures("shared_compilation_cache")


def tiny(root, *extra, epochs=2, batch_size=8):
    """A one-layer, eight-wide S5 on the tiny generated ListOps (64 training examples)."""
    return [f"dataset.root={root}", "dataset.max_len=20", f"dataset.generate={GENERATE}", "model.n_layers=1",
            "model.d_model=8", "model.ssm.state_size=4", "model.ssm.blocks=1", f"trainer.batch_size={batch_size}",
            f"trainer.epochs={epochs}", "trainer.log_every=1", "trainer.progress=false", "logger=none", *extra]


def run_train(args, env=None, timeout=400, wait=True):
    cmd = [sys.executable, str(REPO / "run_train.py"), *args]
    env = {**os.environ, **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def results(run_dir):
    return json.loads((Path(run_dir) / "results.json").read_text())


def events(run_dir):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def job_dirs(sweep_dir):
    return sorted((p for p in Path(sweep_dir).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


class FakeJobEnvironment:
    """What submitit.JobEnvironment() says inside a job."""

    USR_SIG = "USR2"

    def __init__(self, cluster, num_tasks, global_rank=0, job_id="4242"):
        self.cluster, self.num_tasks, self.global_rank, self.job_id = cluster, num_tasks, global_rank, job_id


def test_submitit_jobs_resume_and_join_jax_distributed(monkeypatch):
    from s5lra.train.config import TrainConfig
    from s5lra.train.launch import SubmititJob

    for key in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(key, raising=False)
    single = SubmititJob(FakeJobEnvironment("slurm", 1)).prepare(TrainConfig())
    assert single.trainer.resume == "auto" and not single.trainer.distributed
    slurm = SubmititJob(FakeJobEnvironment("slurm", 16, global_rank=5)).prepare(TrainConfig())
    assert slurm.trainer.distributed and "JAX_PROCESS_ID" not in os.environ  # JAX reads srun's variables
    kept = TrainConfig()
    kept.trainer.resume = "/runs/a/checkpoints/last"
    assert SubmititJob(FakeJobEnvironment("slurm", 1)).prepare(kept).trainer.resume == kept.trainer.resume
    local = SubmititJob(FakeJobEnvironment("local", 2, global_rank=1)).prepare(TrainConfig())
    assert local.trainer.distributed
    assert os.environ["JAX_COORDINATOR_ADDRESS"] == f"127.0.0.1:{61440 + 4242 % 4096}"
    assert (os.environ["JAX_NUM_PROCESSES"], os.environ["JAX_PROCESS_ID"]) == ("2", "1")


def test_sweep_summary_cli(tmp_path, capsys):
    from s5lra.train import sweep

    for name, record in (("0", {"status": "completed", "best_val_accuracy": 0.5, "test_accuracy": 0.25}),
                         ("1", {"status": "failed", "error": "DataError: no data"}),
                         ("2", {"status": "preempted"}), ("3", {"status": "running"}), ("10", None)):
        (tmp_path / name).mkdir()
        if record:
            (tmp_path / name / "results.json").write_text(json.dumps(record))
    (tmp_path / ".submitit").mkdir()
    jobs = sweep.collect(tmp_path)
    assert [(j.path.name, j.status) for j in jobs] == [("0", "completed"), ("1", "failed"), ("2", "preempted"),
                                                       ("3", "killed"), ("10", "unfinished")]
    text = sweep.summary(jobs, tmp_path)
    assert "5 job(s): 1 completed, 1 failed, 1 preempted, 1 killed, 1 unfinished" in text
    assert "best val 50.00%, test at best val 25.00%" in text and "DataError: no data" in text
    assert f"trainer.resume=auto hydra.run.dir={tmp_path / '2'}" in text
    assert f"killed      {tmp_path / '3'}  ended without a record" in text
    assert sweep.main([str(tmp_path)]) == 1 and capsys.readouterr().out.strip() == text
    with open(tmp_path / "3" / ".lock", "w") as lock:  # a live process holds the lock: still running
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert [j.status for j in sweep.collect(tmp_path)][3] == "running"
    (tmp_path / "0" / "job.json").write_text(json.dumps({"cluster": "slurm", "job_id": "77_0"}))
    assert f"completed   {tmp_path / '0'} (slurm job 77_0)  best val" in sweep.summary(sweep.collect(tmp_path), tmp_path)
    for name in ("1", "2", "3", "10"):
        (tmp_path / name / "results.json").write_text(json.dumps({"status": "completed"}))
    assert sweep.main([str(tmp_path)]) == 0


def test_slurm_launcher_writes_one_array_with_gpus_tasks_and_setup(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text('#!/bin/sh\nfor a; do last="$a"; done\ncp "$last" "$CAPTURE"\n'
                                 'echo "sbatch: error: fake sbatch, nothing submitted" >&2\nexit 1\n')
    (fake / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit checks that srun exists
    # what the pre-submit check asks: partition gpu's nodes (GPUs with a socket binding, as real sinfo says)
    (fake / "sinfo").write_text('#!/bin/sh\necho "gpu|64|515000|gpu:a100:4(S:0-1)"\n')
    for tool in fake.iterdir():
        tool.chmod(0o755)
    script = tmp_path / "job.sh"
    proc = run_train(["-m", "hydra/launcher=slurm", "experiment=lra/pathx", "seed=0,1,2,3,4",
                      "hydra.launcher.gpus_per_node=4", "hydra.launcher.nodes=2", "hydra.launcher.partition=gpu",
                      "hydra.launcher.setup=['module load cuda/12.4','export WANDB_MODE=offline']",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                     env={"PATH": f"{fake}:{os.environ['PATH']}", "CAPTURE": str(script)})
    assert proc.returncode != 0 and "fake sbatch, nothing submitted" in proc.stderr
    text = script.read_text()
    for line in ("#SBATCH --array=0-4%5", "#SBATCH --gpus-per-node=4", "#SBATCH --ntasks-per-node=4",
                 "#SBATCH --nodes=2", "#SBATCH --partition=gpu", "#SBATCH --signal=USR2@120",
                 "#SBATCH --time=1440", "#SBATCH --cpus-per-task=8", "\nmodule load cuda/12.4\n",
                 "\nexport WANDB_MODE=offline\n"):
        assert line in text, line
    setup, srun = text.index("module load cuda/12.4"), text.index("\nsrun ")
    assert setup < srun and "submitit.core._submit" in text[srun:]


def test_a_request_beyond_the_partition_names_each_setting_to_change():
    from s5lra.train.cluster import Node, parse_gpus, resource_problems

    assert [parse_gpus(g) for g in ("(null)", "gpu:4", "gpu:a100:4(S:0-1)", "gpu:2,shard:8", "gpu")] == [0, 4, 4, 2, 1]
    nodes = [Node(cpus=2, mem_mb=21694, gpus=0), Node(cpus=16, mem_mb=8000, gpus=0)]
    launcher = {"gpus_per_node": 1, "tasks_per_node": 1, "cpus_per_task": 8, "mem_gb": 64}
    problems = resource_problems(launcher, nodes)
    assert problems[0].startswith("hydra.launcher.gpus_per_node=1 but its nodes have no GPUs (set "
                                  "hydra.launcher.gpus_per_node=0 hydra.launcher.tasks_per_node=1")
    assert problems[1:] == ["hydra.launcher.mem_gb=64 but its nodes have at most 21 GB (set hydra.launcher.mem_gb=21)"]
    fits = {"gpus_per_node": 0, "tasks_per_node": 2, "cpus_per_task": 8, "mem_gb": 16}
    assert resource_problems(fits, nodes) == []
    assert "at most 16 CPUs (set hydra.launcher.cpus_per_task=4)" in resource_problems({**fits, "tasks_per_node": 4,
                                                                                          "cpus_per_task": 5}, nodes)[0]
    assert "does not exist" in resource_problems(fits, [])[0]


def test_local_launcher_sweep_of_two_seeds(listops_root, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_train(["-m", "hydra/launcher=local", "seed=0,1", f"hydra.sweep.dir={sweep}",
                      *tiny(listops_root, epochs=1)])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    runs = job_dirs(sweep)
    assert [p.name for p in runs] == ["0", "1"]
    assert [results(p)["status"] for p in runs] == ["completed", "completed"]
    assert [yaml.safe_load((p / ".hydra" / "config.yaml").read_text())["seed"] for p in runs] == [0, 1]
    assert events(runs[0]) != events(runs[1])  # two seeds, two runs
    assert f"sweep {sweep}: 2 job(s): 2 completed" in proc.stdout


def test_failing_job_does_not_end_the_sweep(listops_root, tmp_path):
    """Basic launcher (all jobs in one process): job 0 cannot split 6 examples over 4 devices."""
    sweep = tmp_path / "sweep"
    proc = run_train(["-m", f"hydra.sweep.dir={sweep}", *tiny(listops_root, epochs=1, batch_size="6,8")])
    assert proc.returncode == 1, proc.stderr[-3000:]
    failed, completed = job_dirs(sweep)
    assert results(completed)["status"] == "completed"
    record = results(failed)
    assert record["status"] == "failed" and "trainer.batch_size=6 does not divide" in record["error"]
    assert "ConfigError" in record["error"] and "Traceback" in record["traceback"]
    assert "2 job(s): 1 completed, 1 failed" in proc.stdout
    assert f"failed      {failed}  ConfigError: trainer.batch_size=6" in proc.stdout


@pytest.mark.slow  # three compilations of the training step: about a minute of CPU
def test_optuna_search_returns_a_best_value(listops_root, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the search extra")
    sweep = tmp_path / "search"
    proc = run_train(["-m", SEARCH, "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1",
                      f"hydra.sweep.dir={sweep}", *tiny(listops_root, epochs=1)])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    values = [results(p)["best_val_accuracy"] for p in job_dirs(sweep)]
    assert len(values) == 3 and best["best_value"] == max(values)
    assert set(best["best_params"]) == {"optimizer.lr", "optimizer.ssm_lr", "optimizer.weight_decay", "model.dropout"}
    lrs = {yaml.safe_load((p / ".hydra" / "config.yaml").read_text())["optimizer"]["lr"] for p in job_dirs(sweep)}
    assert len(lrs) == 3 and all(1e-4 <= lr <= 1e-2 for lr in lrs)


@pytest.mark.slow  # three processes, two of them distributed
def test_two_ranks_under_local_give_the_losses_of_one_process(listops_root, tmp_path):
    one = run_train([f"hydra.run.dir={tmp_path / 'one'}", *tiny(listops_root)],
                    env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert one.returncode == 0, one.stderr[-3000:]
    sweep = tmp_path / "sweep"
    two = run_train(["-m", "hydra/launcher=local", "hydra.launcher.tasks_per_node=2", "seed=0",
                     f"hydra.sweep.dir={sweep}", *tiny(listops_root)],
                    env={"XLA_FLAGS": "--xla_force_host_platform_device_count=1"})
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-3000:]
    (job,) = job_dirs(sweep)
    assert results(job)["n_devices"] == 2 and results(tmp_path / "one")["n_devices"] == 2
    a, b = events(tmp_path / "one"), events(job)
    assert [(e["step"], e["split"]) for e in a] == [(e["step"], e["split"]) for e in b]
    np.testing.assert_allclose([e["loss"] for e in a], [e["loss"] for e in b], rtol=1e-5)
    assert [e["accuracy"] for e in a] == [e["accuracy"] for e in b]


def _descendants(pid):
    """Pids of every process below `pid` (from /proc), with their command lines."""
    children = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append((int(entry.name), (entry / "cmdline").read_bytes()))
        except (ValueError, OSError):
            continue
    found, todo = [], [pid]
    while todo:
        for child, cmdline in children.get(todo.pop(), []):
            found.append((child, cmdline.replace(b"\0", b" ").decode()))
            todo.append(child)
    return found


@pytest.mark.slow  # an uninterrupted run, then one run over two starts
def test_pre_timeout_signal_saves_requeues_and_resumes_exactly(listops_root, tmp_path):
    args = tiny(listops_root, epochs=4, batch_size=4)
    reference = run_train([f"hydra.run.dir={tmp_path / 'reference'}", *args])
    assert reference.returncode == 0, reference.stderr[-3000:]
    sweep = tmp_path / "sweep"
    proc = run_train(["-m", "hydra/launcher=local", "seed=0", f"hydra.sweep.dir={sweep}", *args],
                     wait=False)
    metrics = sweep / "0" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.exists() and metrics.read_text().count('"train"') >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    tasks = [pid for pid, cmd in _descendants(proc.pid) if "submitit.core._submit" in cmd]
    assert len(tasks) == 1
    os.kill(tasks[0], signal.SIGUSR2)  # what submitit_local (and SLURM) send signal_delay_s before the limit
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert "Caught signal SIGUSR2" in logs and "Requeued job" in logs  # saved, requeued, started again
    assert results(sweep / "0")["status"] == "completed"
    assert events(sweep / "0") == events(tmp_path / "reference")
    for key in ("best_val_accuracy", "test_accuracy", "final_test_accuracy", "steps"):
        assert results(sweep / "0")[key] == results(tmp_path / "reference")[key]
