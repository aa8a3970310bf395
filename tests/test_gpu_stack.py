"""The project on a GPU machine's own stack: no wandb there (logger=none must not need it), and JAX 0.11's
deprecation of Pallas's Triton backend handled without hiding other warnings."""

import json
import os
import subprocess
import sys

from helpers import REPO, tiny_overrides

# A finder ahead of all others that refuses wandb and says so on stderr: catches an import that is attempted
# and its ImportError swallowed, not only one that fails the run.
NO_WANDB = """
import sys
class NoWandb:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "wandb":
            print(f"blocked: import {name}", file=sys.stderr)
            raise ImportError(f"no module named {name!r} on this machine")
sys.meta_path.insert(0, NoWandb())
"""
RUN_TRAIN = NO_WANDB + ("import runpy; sys.argv = ['run_train.py', *sys.argv[1:]]; "
                        "runpy.run_path('run_train.py', run_name='__main__')")


def test_the_blocker_blocks():
    proc = subprocess.run([sys.executable, "-c", NO_WANDB + "import wandb"], capture_output=True, text=True)
    assert proc.returncode != 0 and "blocked: import wandb" in proc.stderr


def test_logger_none_never_imports_wandb(listops_root, tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    proc = subprocess.run([sys.executable, "-c", RUN_TRAIN, *tiny_overrides(listops_root, "trainer.max_steps=3"),
                           f"hydra.run.dir={tmp_path}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "blocked" not in proc.stderr, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "completed" and results["steps"] == 3


def test_only_the_triton_deprecation_is_silenced():
    code = ("import warnings, s5lra.ssm.pallas_scan\n"
            "warnings.warn('The Pallas Triton backend is deprecated and will be removed', DeprecationWarning)\n"
            "print('silenced')\n"
            "warnings.warn('another deprecation', DeprecationWarning)\n")
    proc = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "silenced", proc.stderr[-2000:]
    assert proc.returncode != 0 and "DeprecationWarning: another deprecation" in proc.stderr


def test_gpu_modules_import_without_hydra_or_wandb():
    """What the self-check's child imports must not pull in the training stack."""
    code = ("import sys; sys.modules['wandb'] = sys.modules['hydra'] = sys.modules['omegaconf'] = None\n"
            "import s5lra.ssm.pallas_scan, s5lra.ssm.selfcheck")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
