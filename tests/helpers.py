"""Helpers shared by the test modules (no test module imports another): the repository root, composing the
configs, tiny run configs, running the entry points in-process and as subprocesses, reading run outputs
(metrics.jsonl; offline W&B runs by W&B's own reader), and writers of tiny data in the LRA release formats."""

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from s5lra.train import train
from s5lra.train.config import register_configs

REPO = Path(__file__).resolve().parents[1]

# A tiny generated ListOps (as a Hydra override value) shared by the training tests.
GENERATE = "{n_train:64,n_val:12,n_test:20,max_depth:3,max_args:3,min_length:2,max_length:20,seed:0}"

TINY = ["model.n_layers=1", "model.d_model=8", "model.ssm.state_size=4", "model.ssm.blocks=1",
        "trainer.batch_size=8", "trainer.epochs=2", "trainer.log_every=1", "trainer.progress=false", "logger=none"]


def tiny_overrides(root, *extra):
    """A tiny ListOps run: 8 steps per epoch of a one-layer, eight-wide S5."""
    return [f"dataset.root={root}", "dataset.max_len=20", f"dataset.generate={GENERATE}", *TINY, *extra]


def compose_cfg(overrides=(), config="train", return_hydra_config=False):
    """`configs/<config>.yaml` composed with `overrides` as the entry point composes it (unresolved)."""
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(config, overrides=list(overrides), return_hydra_config=return_hydra_config)


def run_inprocess(run_dir, overrides):
    """What run_train.py does, minus Hydra's process: compose, save the config, train."""
    conf = compose_cfg(overrides)
    (Path(run_dir) / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(conf, Path(run_dir) / ".hydra" / "config.yaml")
    return train(OmegaConf.to_object(conf), run_dir)


def run_cli(script, args, timeout=240, env=None):
    return subprocess.run([sys.executable, str(REPO / script), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def events(run_dir, split=None):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if split is None or e["split"] == split]


def wandb_records(path):
    """The records of an offline W&B run — a run directory, its offline-run-* folder or the run-*.wandb file — as
    W&B's own reader prints them (`wandb leet inspect --json`): dicts with a `type` (run, history, alert, ...)."""
    path = Path(path)
    if (path / "wandb").is_dir():
        (path,) = (path / "wandb").glob("offline-run-*")
    proc = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "WANDB_MODE": "offline",
                                                       "WANDB_ERROR_REPORTING": "false"})
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def read_wandb(path):
    """(run, history rows, config, summary) of an offline W&B run (`wandb_records`)."""
    records = wandb_records(path)
    (run,) = [r["run"] for r in records if r["type"] == "run"]
    summary = {}
    for r in records:
        if r["type"] == "summary":
            summary.update(r["summary"]["update"])
    return run, [r["history"]["item"] for r in records if r["type"] == "history"], run["config"]["update"], summary


def write_cifar(folder, n_per_batch=10, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n_per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * n_per_batch}, f)
        batches[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane"] * 10}, f)
    return batches


def write_pathfinder(base, side=32, difficulty="curv_contour_length_14", per_batch=6):
    """Two generator batches: batch 0 with text metadata, batch 1 with binary .npy metadata; image k's
    pixels are all equal to k, label k % 2; batch 0 sample 2 is an empty (0-byte) PNG."""
    folder = base / f"pathfinder{side}" / difficulty
    (folder / "metadata").mkdir(parents=True)
    rows = {0: [], 1: []}
    for batch in (0, 1):
        (folder / "imgs" / str(batch)).mkdir(parents=True)
        for j in range(per_batch):
            k = batch * per_batch + j
            path = folder / "imgs" / str(batch) / f"sample_{j}.png"
            Image.fromarray(np.full((side, side), k, np.uint8), "L").save(path)
            rows[batch].append([f"imgs/{batch}", f"sample_{j}.png", str(j), str(k % 2), "1.0", "14", "4", "2",
                                "0.5", "1", "1"])
    (folder / "imgs" / "0" / "sample_2.png").write_bytes(b"")
    (folder / "metadata" / "0.npy").write_text("".join(" ".join(r) + "\n" for r in rows[0]))
    np.save(folder / "metadata" / "1.npy", np.array(rows[1]))
    return folder


def signal_after_train_events(run_dir, args, signum, n_events=3):
    """Start `run_train.py args`, send `signum` once it has logged `n_events` train events; (returncode, stderr)."""
    proc = subprocess.Popen([sys.executable, str(REPO / "run_train.py"), *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not (
                (Path(run_dir) / "metrics.jsonl").exists() and len(events(run_dir, "train")) >= n_events):
            time.sleep(0.2)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, stderr
