"""The default experiment (`python run_train.py`, `make demo`) learns: >= 2.5x the majority class, < 10 minutes
(also with bf16 matmuls, trainer.precision=bf16)."""

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_demo_learns_on_cpu(tmp_path, precision):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "run_train.py", f"paths.data_dir={tmp_path / 'data'}",
                           f"hydra.run.dir={tmp_path / 'run'}", "trainer.progress=false",
                           f"trainer.precision={precision}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["name"] == "demo" and results["status"] == "completed"
    assert results["test_accuracy"] >= 2.5 * results["majority_baseline"], results
    assert results["wall_time_s"] < 600, results
