"""The reduced-scale LRA suite (experiments/smoke_lra.py, `make smoke-lra`) runs all six pipelines and reports
them; two steps per task here, so this checks the plumbing, not learning."""

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO

TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")


@pytest.mark.slow
def test_smoke_suite_trains_and_reports_every_task(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "experiments/smoke_lra.py", "--out-root", str(tmp_path / "runs"),
                           "--report", str(tmp_path / "report"), "trainer.max_steps=2"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for task in TASKS:
        results = json.loads((tmp_path / "runs" / task / "results.json").read_text())
        assert results["name"] == f"smoke/{task}" and results["status"] == "completed" and results["steps"] == 2
    summary = (tmp_path / "report" / "results.md").read_text()
    assert all(f"smoke/{task}" in summary for task in TASKS)
    pngs = sorted((tmp_path / "report").glob("*.png"))
    assert len(pngs) == len(TASKS) + 1 and all(p.stat().st_size > 10_000 for p in pngs)
