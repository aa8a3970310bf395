"""`run_train.py -m hydra/launcher=slurm` on a real single-node SLURM cluster on this machine
(experiments/cluster/local_slurm.sh): a job array, a failing job, a time limit with requeue and exact resume,
scancel, a two-task job under srun, and the one-line refusal of a GPU request on a cluster without GPUs.

Marker `slurm`. The module brings the cluster up itself (root only; installs slurm-wlm and munge with apt when
missing) and stops it again at the end if it started it. Without root, or when the cluster cannot start, every
test is skipped with the reason, except under S5LRA_REQUIRE_SLURM=1 (CI), where that is a failure.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import tiny_overrides

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the cluster extra (requirements-extras.txt)")

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "experiments" / "cluster" / "local_slurm.sh"
# What a CPU-only single node can give each job (the launcher's defaults ask for a GPU node).
SLURM = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.tasks_per_node=1",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2"]
TIMING = ("examples_per_s",)
STOPPED = ("preempted", "interrupted")  # statuses that say a run was stopped and can continue
COMPARED = ("best_val_accuracy", "test_accuracy", "best_step", "final_test_accuracy", "steps")

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("shared_compilation_cache", "cluster")]


REQUIRED = os.environ.get("S5LRA_REQUIRE_SLURM") == "1"  # CI: no cluster is a failure, not a skip
if os.geteuid() != 0 and not REQUIRED:
    pytest.skip("the slurm tests start a local SLURM cluster, which needs root (experiments/cluster/local_slurm.sh up)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def cluster():
    def unavailable(why):
        if REQUIRED:
            pytest.fail(f"S5LRA_REQUIRE_SLURM=1 but {why}", pytrace=False)
        pytest.skip(why)

    if os.geteuid() != 0:
        unavailable("the local SLURM cluster needs root (experiments/cluster/local_slurm.sh up)")
    running = subprocess.run([CLUSTER, "status"], capture_output=True).returncode == 0
    if not running:
        up = subprocess.run([CLUSTER, "up"], capture_output=True, text=True, timeout=900)
        if up.returncode != 0:
            unavailable(f"the local SLURM cluster did not start: {(up.stderr or up.stdout).strip()}")
    yield
    if not running:
        subprocess.run([CLUSTER, "down"], capture_output=True, timeout=120)


def run_train(args, env=None, timeout=600, wait=True):
    cmd = [sys.executable, str(REPO / "run_train.py"), *args]
    env = {**os.environ, **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def sweep(sweep_dir, *args, **kwargs):
    return run_train(["-m", *SLURM, f"hydra.sweep.dir={sweep_dir}", *args], **kwargs)


def results(run_dir):
    return json.loads((Path(run_dir) / "results.json").read_text())


def events(run_dir):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def job_dirs(sweep_dir):
    return sorted((p for p in Path(sweep_dir).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def job_id(run_dir):
    return json.loads((Path(run_dir) / "job.json").read_text())["job_id"]


def job_log(sweep_dir, run_dir):
    """The job's own log (.submitit/<job id>/), every rank's stdout and stderr."""
    folder = Path(sweep_dir) / ".submitit" / job_id(run_dir)
    return "".join(p.read_text() for p in sorted(folder.glob("*_log.*")))


def wait_for_train_events(proc, metrics, n, timeout=300):
    deadline = time.monotonic() + timeout
    while not (metrics.exists() and metrics.read_text().count('"train"') >= n):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.2)


def test_a_gpu_request_on_a_cluster_without_gpus_is_one_line(listops_root, tmp_path):
    proc = run_train(["-m", "hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path / 'sweep'}", "seed=0,1",
                      *tiny_overrides(listops_root)])
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: partition 'debug' cannot run these jobs: hydra.launcher.gpus_per_node=1 but "
                           "its nodes have no GPUs (set hydra.launcher.gpus_per_node=0"), line
    assert not (tmp_path / "sweep").exists()  # nothing submitted


def test_an_array_of_two_seeds(listops_root, tmp_path):
    proc = sweep(tmp_path, "seed=0,1", *tiny_overrides(listops_root))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    runs = job_dirs(tmp_path)
    assert [p.name for p in runs] == ["0", "1"]
    assert [results(p)["status"] for p in runs] == ["completed", "completed"]
    assert events(runs[0]) != events(runs[1])
    ids = [job_id(p) for p in runs]
    array = ids[0].split("_")[0]
    assert ids == [f"{array}_0", f"{array}_1"]  # one array, one element per seed
    assert f"sweep {tmp_path}: 2 job(s): 2 completed" in proc.stdout
    for run, i in zip(runs, ids):
        assert f"completed   {run} (slurm job {i})  best val" in proc.stdout
    assert "Job completed successfully" in job_log(tmp_path, runs[0])
    assert "keeps no job accounting" in proc.stderr and proc.stderr.count("sacct") <= 1  # said once, not per poll


def test_a_failing_job_is_recorded_and_the_other_completes(listops_root, tmp_path):
    """Job 0 cannot split 6 examples over the 4 devices of each job."""
    proc = sweep(tmp_path, *tiny_overrides(listops_root, "trainer.epochs=1", "trainer.batch_size=6,8"))
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    failed, completed = job_dirs(tmp_path)
    assert results(completed)["status"] == "completed"
    record = results(failed)
    assert record["status"] == "failed" and "trainer.batch_size=6 does not divide" in record["error"]
    assert "2 job(s): 1 completed, 1 failed" in proc.stdout
    assert f"failed      {failed} (slurm job {job_id(failed)})  ConfigError: trainer.batch_size=6" in proc.stdout
    assert "trainer.batch_size=6 does not divide" in job_log(tmp_path, failed)


def slowed_steps(folder, seconds):
    """PYTHONPATH for a job whose every training batch takes `seconds` longer (a sitecustomize that wraps the
    loop's batch iterator; the numbers stay the same): a run longer than a time limit at little CPU cost."""
    Path(folder).mkdir(parents=True)
    (Path(folder) / "sitecustomize.py").write_text(
        "import time\n"
        "import s5lra.train.loop as loop\n"
        "_prefetch = loop.prefetch_to_device\n"
        "def slowed(*args, **kwargs):\n"
        "    for batch in _prefetch(*args, **kwargs):\n"
        f"        time.sleep({seconds})\n"
        "        yield batch\n"
        "loop.prefetch_to_device = slowed\n")
    return {"PYTHONPATH": str(folder)}


def release_requeued_jobs(proc):
    """While `proc` runs: start requeued jobs at once. SLURM holds a requeued job for two minutes
    (Reason=BeginTime) before it may start again; the test need not wait for that."""
    while proc.poll() is None:
        queue = subprocess.run(["squeue", "--noheader", "--format=%i %r"], capture_output=True, text=True).stdout
        for job in (line.split()[0] for line in queue.splitlines() if line.endswith(" BeginTime")):
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
        time.sleep(1)


def test_a_time_limit_saves_requeues_and_resumes_exactly(listops_root, tmp_path):
    """A run of ~50 s of training under a 1-minute limit with SIGUSR2 20 s before it: SLURM signals the job
    (its timer ticks every ~30 s, so ~10 s to ~40 s in), the job saves checkpoints/last and is requeued, and the
    requeued job continues its own directory to exactly the events and results of an uninterrupted run."""
    args = tiny_overrides(listops_root, "trainer.epochs=40", "trainer.log_every=8")
    with open(tmp_path / "reference.out", "w") as out:  # meanwhile, at full speed
        reference = subprocess.Popen([sys.executable, str(REPO / "run_train.py"),
                                      f"hydra.run.dir={tmp_path / 'reference'}", *args], cwd=REPO, stdout=out,
                                     stderr=subprocess.STDOUT)
    proc = sweep(tmp_path / "sweep", "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=20", *args,
                 env=slowed_steps(tmp_path / "slow", 0.1), wait=False)
    release_requeued_jobs(proc)
    out = proc.communicate(timeout=60)[0]
    assert reference.wait(timeout=300) == 0, (tmp_path / "reference.out").read_text()[-3000:]
    assert proc.returncode == 0, out[-3000:]
    run = tmp_path / "sweep" / "0"
    log, run_log = job_log(tmp_path / "sweep", run), (run / "run_train.log").read_text()
    assert "Caught signal SIGUSR2" in log and "Requeued job" in log, log[-3000:]
    assert "SIGTERM: saving checkpoints/last" in run_log and "(resuming from" in run_log, run_log[-3000:]
    assert results(run)["status"] == "completed"
    assert events(run) == events(tmp_path / "reference")
    for key in COMPARED:
        assert results(run)[key] == results(tmp_path / "reference")[key], key


def test_scancel_saves_and_records_a_stop(listops_root, tmp_path):
    proc = sweep(tmp_path, *tiny_overrides(listops_root, "trainer.epochs=500", "trainer.log_every=8"), wait=False)
    run = tmp_path / "0"
    wait_for_train_events(proc, run / "metrics.jsonl", 2)
    subprocess.run(["scancel", job_id(run)], check=True, timeout=60)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, out[-3000:]  # the sweep did not complete
    record = results(run)
    assert record["status"] in STOPPED and 0 < record["steps"] < 4000
    assert (run / "checkpoints" / "last").is_dir()
    assert f"{record['status']:<11} {run} (slurm job {job_id(run)})  checkpoints/last saved" in out


def test_two_tasks_under_srun_give_the_numbers_of_one_process(listops_root, tmp_path):
    one = run_train([f"hydra.run.dir={tmp_path / 'one'}", *tiny_overrides(listops_root)],
                    env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert one.returncode == 0, one.stderr[-3000:]
    proc = sweep(tmp_path / "sweep", "hydra.launcher.tasks_per_node=2", "seed=0", *tiny_overrides(listops_root),
                 env={"XLA_FLAGS": "--xla_force_host_platform_device_count=1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    (job,) = job_dirs(tmp_path / "sweep")
    record = results(job)
    assert (record["n_devices"], record["n_processes"]) == (2, 2) and results(tmp_path / "one")["n_devices"] == 2
    log = job_log(tmp_path / "sweep", job)
    assert "global_rank=1(2)" in log  # submitit's line of the second task
    a, b = events(tmp_path / "one"), events(job)
    assert [(e["step"], e["split"]) for e in a] == [(e["step"], e["split"]) for e in b]
    np.testing.assert_allclose([e["loss"] for e in a], [e["loss"] for e in b], rtol=1e-5)
    assert [e["accuracy"] for e in a] == [e["accuracy"] for e in b]
