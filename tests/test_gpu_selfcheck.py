"""scan=auto on a GPU: the Pallas kernel's self-check in a subprocess, its verdict, warning and cache.

The child's outcome is faked (pass, an exception, a crash, a timeout, wrong numbers) by replacing the function
that launches it; one (slow) test runs the real child on CPU (Pallas interpret mode) through the command line.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from s5lra.ssm import recurrence, selfcheck

from helpers import REPO

GOOD = {f"{d}/{o}": 3e-7 for d in ("forward", "reverse") for o in ("x", "grad_a", "grad_b")}


class FakeChild:
    """Stands in for `_launch_child`: records its calls, writes a log, returns (or raises) a given outcome."""

    def __init__(self, returncode=0, errors=None, stdout=None, stderr="", raises=None):
        self.returncode, self.raises, self.stderr = returncode, raises, stderr
        self.stdout = stdout if stdout is not None else json.dumps({"errors": errors or GOOD}) + "\n"
        self.calls = []

    def __call__(self, log_path, timeout):
        self.calls.append(timeout)
        Path(log_path).write_text(self.stderr)
        if self.raises:
            raise self.raises
        return subprocess.CompletedProcess(["child"], self.returncode, self.stdout)


@pytest.fixture
def gpu(monkeypatch, tmp_path):
    """A process that sees a GPU, with no verdict yet and its cache under tmp_path."""
    monkeypatch.setenv("S5LRA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(selfcheck, "_verdict", None)
    return tmp_path / "cache" / "selfcheck"


def fake(monkeypatch, **outcome):
    child = FakeChild(**outcome)
    monkeypatch.setattr(selfcheck, "_launch_child", child)
    return child


def new_process(monkeypatch):
    """What a later run starts with: the disk cache, but no verdict in memory."""
    monkeypatch.setattr(selfcheck, "_verdict", None)


def test_a_passing_kernel_is_what_auto_uses(gpu, monkeypatch, caplog):
    child = fake(monkeypatch)
    with caplog.at_level(logging.INFO, logger=selfcheck.__name__):
        assert recurrence.resolve_method("auto") == "pallas"
        assert recurrence.resolve_method("auto") == "pallas"  # decided once per process
    assert len(child.calls) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "passed its self-check" in caplog.text


@pytest.mark.parametrize("outcome,cause", [
    (dict(returncode=1, stderr="Traceback ...\nRuntimeError: Triton compilation failed\n"),
     "raised an error (exit 1): RuntimeError: Triton compilation failed"),
    (dict(returncode=-11, stderr="Segmentation fault\n"), "crashed with signal 11"),
    (dict(raises=subprocess.TimeoutExpired("child", 120)), "timed out after 120 s"),
    (dict(errors={**GOOD, "reverse/grad_a": 0.31}), "wrong results: relative error 0.31 > 1e-05 (reverse/grad_a)"),
    (dict(errors={**GOOD, "forward/x": float("nan")}), "wrong results: relative error nan > 1e-05 (forward/x)"),
    (dict(stdout="Segfault handler installed\n"), "printed no result"),
], ids=["exception", "crash", "timeout", "wrong-numbers", "nan", "no-result"])
def test_a_failing_kernel_falls_back_with_one_warning(gpu, monkeypatch, caplog, outcome, cause):
    fake(monkeypatch, **outcome)
    with caplog.at_level(logging.WARNING, logger=selfcheck.__name__):
        assert recurrence.resolve_method("auto") == "associative"
        recurrence.resolve_method("auto")
    [record] = caplog.records  # one line, once per process
    message = record.getMessage()
    log_file = next(gpu.glob("*.log"))
    assert "\n" not in message
    assert f"({cause})" in message and f"Log: {log_file}" in message and "using scan=associative" in message
    if "stderr" in outcome:  # the log holds what the child printed
        assert outcome["stderr"] in log_file.read_text()


def test_auto_falls_back_inside_linear_recurrence(gpu, monkeypatch):
    """The path a model takes: linear_recurrence(method="auto") while tracing runs the associative scan."""
    fake(monkeypatch, returncode=-6)
    calls = []
    monkeypatch.setattr(recurrence, "associative", lambda a, b, reverse: calls.append(reverse) or b)
    jax.make_jaxpr(lambda a, b: recurrence.linear_recurrence(a, b, reverse=True))(jnp.ones(4), jnp.ones((5, 4)))
    assert calls == [True]


def test_verdict_is_cached_on_disk_by_jax_device_and_kernel(gpu, monkeypatch, tmp_path, caplog):
    child = fake(monkeypatch, returncode=-11)
    assert selfcheck.resolve_scan("auto") == "associative"
    [cached] = gpu.glob("*.json")
    saved = json.loads(cached.read_text())
    assert saved["scan"] == "associative" and saved["cause"] == "crashed with signal 11"
    assert (saved["jax"], saved["device_kind"]) == (jax.__version__, jax.devices()[0].device_kind)
    assert len(saved["kernel"]) == 16

    new_process(monkeypatch)  # a later run reads the verdict instead of checking again, and says so
    with caplog.at_level(logging.WARNING, logger=selfcheck.__name__):
        assert selfcheck.resolve_scan("auto") == "associative"
    assert len(child.calls) == 1
    assert f"delete {cached} to check again" in caplog.text

    new_process(monkeypatch)  # another JAX version: check again
    monkeypatch.setattr(jax, "__version__", "99.0.0")
    fake(monkeypatch)
    assert selfcheck.resolve_scan("auto") == "pallas"
    assert len(list(gpu.glob("*.json"))) == 2

    new_process(monkeypatch)  # another device
    monkeypatch.setattr(jax, "devices", lambda: [type("Device", (), {"device_kind": "NVIDIA H200"})()])
    third = fake(monkeypatch)
    selfcheck.resolve_scan("auto")
    assert len(third.calls) == 1

    new_process(monkeypatch)  # a changed kernel source
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pallas_scan.py", "selfcheck.py"):
        shutil.copy(Path(selfcheck.__file__).parent / name, src / name)
    monkeypatch.setattr(selfcheck, "__file__", str(src / "selfcheck.py"))
    fourth = fake(monkeypatch)
    selfcheck.resolve_scan("auto")
    assert len(fourth.calls) == 0  # same source, same key: cached
    with open(src / "pallas_scan.py", "a") as f:
        f.write("# changed\n")
    selfcheck.resolve_scan("auto")  # the in-memory verdict holds for this process ...
    new_process(monkeypatch)
    selfcheck.resolve_scan("auto")  # ... a new one checks again
    assert len(fourth.calls) == 1


def test_unreadable_cache_is_checked_again(gpu, monkeypatch):
    fake(monkeypatch)
    selfcheck.resolve_scan("auto")
    [cached] = gpu.glob("*.json")
    cached.write_text("{not json")
    new_process(monkeypatch)
    child = fake(monkeypatch, returncode=-9)
    assert selfcheck.resolve_scan("auto") == "associative"
    assert len(child.calls) == 1 and json.loads(cached.read_text())["cause"] == "crashed with signal 9"


def test_timeout_comes_from_the_environment(gpu, monkeypatch):
    child = fake(monkeypatch)
    monkeypatch.setenv("S5LRA_SELFCHECK_TIMEOUT", "7.5")
    selfcheck.resolve_scan("auto")
    assert child.calls == [7.5]


def test_cache_dir_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv("S5LRA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert selfcheck.cache_dir() == tmp_path / "xdg" / "s5lra"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert selfcheck.cache_dir() == Path.home() / ".cache" / "s5lra"
    monkeypatch.setenv("S5LRA_CACHE_DIR", str(tmp_path / "mine"))
    assert selfcheck.cache_dir() == tmp_path / "mine"


@pytest.mark.parametrize("method", ["associative", "pallas", "sequential", "chunked", "checkpointed"])
def test_an_explicit_scan_is_used_as_given(gpu, monkeypatch, method):
    child = fake(monkeypatch, returncode=-11)
    assert selfcheck.resolve_scan(method) == method
    assert recurrence.resolve_method(method) == method
    assert child.calls == []


def test_unknown_scan_is_an_error(gpu):
    with pytest.raises(ValueError, match="unknown scan method 'fft'"):
        selfcheck.resolve_scan("fft")


def test_off_gpu_auto_needs_no_check(monkeypatch, tmp_path):
    monkeypatch.setenv("S5LRA_CACHE_DIR", str(tmp_path))
    child = fake(monkeypatch)
    assert selfcheck.resolve_scan("auto") == "sequential"  # tests run on CPU
    assert child.calls == [] and not list(tmp_path.iterdir())


@pytest.mark.parametrize("index,broadcast,expected",
                         [(0, None, "associative"), (1, 1, "pallas"), (1, 0, "associative")])
def test_process_zero_decides_for_all(gpu, monkeypatch, index, broadcast, expected):
    from jax.experimental import multihost_utils

    child = fake(monkeypatch, returncode=-11)
    sent = []

    def broadcast_one_to_all(code):
        sent.append(int(code))
        return code if index == 0 else broadcast  # process 0's value reaches every process

    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "process_index", lambda: index)
    monkeypatch.setattr(multihost_utils, "broadcast_one_to_all", broadcast_one_to_all)
    assert selfcheck.resolve_scan("auto") == expected
    assert recurrence.resolve_method("auto") == expected  # later, while tracing: the same verdict
    assert len(child.calls) == (1 if index == 0 else 0)
    assert sent == ([selfcheck.SCANS.index("associative")] if index == 0 else [0])


def test_multi_process_without_resolve_scan_agrees_on_associative(gpu, monkeypatch, caplog):
    child = fake(monkeypatch)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with caplog.at_level(logging.WARNING, logger=selfcheck.__name__):
        assert recurrence.resolve_method("auto") == "associative"
        assert recurrence.resolve_method("auto") == "associative"  # every layer asks while tracing: one warning
    [record] = caplog.records
    assert child.calls == [] and "call s5lra.ssm.selfcheck.resolve_scan at start-up" in record.getMessage()


@pytest.mark.slow  # the fast suite runs the real child too, through check.sh (tests/test_gpu_check_script.py)
def test_the_real_child_passes_on_cpu(tmp_path):
    """The child itself (Pallas interpret mode on CPU) and the command-line entry, end to end."""
    env = {**os.environ, "S5LRA_CACHE_DIR": str(tmp_path), "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    proc = subprocess.run([sys.executable, "-m", "s5lra.ssm.selfcheck", "--force"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    verdict = json.loads(proc.stdout.splitlines()[-1])
    assert verdict["scan"] == "pallas" and verdict["cause"] is None, verdict
    assert sorted(verdict["errors"]) == sorted(GOOD)
    assert max(verdict["errors"].values()) < selfcheck.TOLERANCE
    assert Path(verdict["log"]).exists() and verdict["seconds"] > 0
    saved = json.loads(next((tmp_path / "selfcheck").glob("*.json")).read_text())
    assert {k: saved[k] for k in ("scan", "jax", "kernel")} == {k: verdict[k] for k in ("scan", "jax", "kernel")}

