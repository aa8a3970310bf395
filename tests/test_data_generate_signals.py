"""Generators under signals: SIGTERM/SIGINT stop the workers (no orphans) and leave no partial output folder;
`generate` refuses a non-empty folder unless --overwrite."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from s5lra.data import load_task
from s5lra.data.cli import main


def _start(args, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "s5lra.data", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _children_once_started(proc, want, timeout=60):
    """The process's descendants once `want` of them run (the pool's workers and multiprocessing's helper)."""
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = parent.children(recursive=True)
        if len(children) >= want:
            time.sleep(1.0)  # let the workers take their first tasks
            return parent.children(recursive=True)
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"fewer than {want} child processes after {timeout} s")


def _alive(children, wait=10.0):
    deadline = time.monotonic() + wait
    while True:
        alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_listops_workers_and_leaves_no_folder(tmp_path, signum):
    root = tmp_path / "data"
    proc = _start(["generate", "listops", "--root", str(root), "--n-train", "2000000", "--n-val", "10",
                   "--n-test", "10", "--workers", "2"], tmp_path)
    children = _children_once_started(proc, 3)  # two workers and the resource tracker
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum and "interrupted" in err and "Traceback" not in err
    assert _alive(children) == []
    assert not root.exists() or list(root.iterdir()) == []  # neither listops-1000 nor a temporary sibling


def test_sigterm_stops_pathfinder_workers_and_shows_no_half_dataset(tmp_path):
    root = tmp_path / "data"
    proc = _start(["generate", "pathfinder", "--root", str(root), "--n", "5000", "--batch-size", "20",
                   "--workers", "2"], tmp_path)
    children = _children_once_started(proc, 3)
    time.sleep(3)  # some batches finish
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err
    assert _alive(children) == []
    parent = root / "pathfinder32"
    assert [p.name for p in parent.iterdir()] == [".curv_contour_length_14.partial"]  # staging only
    with pytest.raises(Exception, match="no data found"):
        load_task("pathfinder", root, workers=1)


def test_worker_exits_when_its_parent_is_killed(tmp_path):
    """SIGKILL runs no cleanup at all: the workers notice their parent is gone and exit on their own."""
    root = tmp_path / "data"
    proc = _start(["generate", "listops", "--root", str(root), "--n-train", "2000000", "--workers", "2"], tmp_path)
    children = _children_once_started(proc, 3)
    proc.kill()
    proc.communicate(timeout=30)
    assert _alive(children) == []


def test_generate_into_non_empty_folder_needs_overwrite(tmp_path, capsys):
    args = ["generate", "listops", "--root", str(tmp_path), "--n-train", "20", "--n-val", "5", "--n-test", "5",
            "--min-length", "10", "--max-length", "40", "--max-depth", "3", "--workers", "1"]
    assert main(args) == 0
    first = (tmp_path / "listops-1000" / "basic_train.tsv").read_text()
    capsys.readouterr()
    assert main(args + ["--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "listops-1000 is not empty" in err and "--overwrite" in err
    assert (tmp_path / "listops-1000" / "basic_train.tsv").read_text() == first
    assert main(args + ["--seed", "1", "--overwrite"]) == 0
    assert (tmp_path / "listops-1000" / "basic_train.tsv").read_text() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["listops-1000"]  # no temporary or old folder left
