"""trainer.stop_if_stuck in real training runs: on labels a model cannot learn (random) the run stops with status
`stuck` at the configured epoch, saving checkpoints/last, and continues with the check off; on a learnable task it
runs to the end and records that it learned."""

import json

import numpy as np
import pytest

from helpers import TINY, events, run_inprocess, wandb_records

pytestmark = pytest.mark.usefixtures("shared_compilation_cache")

STEPS_PER_EPOCH = 8  # 64 training examples, batch 8
STUCK = ["trainer.stop_if_stuck=true", "trainer.stuck_after_epochs=2",
         # 40 validation examples over 10 classes: a margin of 0.25 keeps chance (about 0.1-0.2) far below it
         "trainer.stuck_margin=0.25"]


def write_listops(root, label_of, seed=0):
    """ListOps in its release format: expressions of one repeated digit; the label is label_of(digit, rng)."""
    rng = np.random.default_rng(seed)
    folder = root / "listops-1000"
    folder.mkdir(parents=True)
    for split, n in (("train", 64), ("val", 40), ("test", 40)):
        digits = rng.integers(0, 10, n)
        rows = [f"[MAX {' '.join([str(d)] * 4)} ]\t{label_of(d, rng)}" for d in digits]
        (folder / f"basic_{split}.tsv").write_text("Source\tTarget\n" + "\n".join(rows) + "\n")
    return root


def overrides(root, *extra):
    return [f"dataset.root={root}", "dataset.generate=null", "dataset.max_len=16", *TINY, "trainer.epochs=6",
            "model.d_model=16", "optimizer.lr=0.03", *extra]


def test_random_labels_stop_stuck_at_the_configured_epoch_and_resume_with_the_check_off(tmp_path):
    root = write_listops(tmp_path / "data", lambda d, rng: int(rng.integers(0, 10)))
    run_dir = tmp_path / "run"
    results = run_inprocess(run_dir, [*overrides(root, *STUCK), "logger=wandb", "logger.mode=offline"])
    assert results["status"] == "stuck" and results["learned"] is False
    assert results["steps"] == 2 * STEPS_PER_EPOCH  # the evaluation at the end of epoch 2 (index 1) stopped it
    assert results["last_checkpoint"] == f"checkpoints/last/{2 * STEPS_PER_EPOCH}" and results["last_saved"]
    assert results["stuck_rule"] == {"enabled": True, "after_epochs": 2.0, "margin": 0.25,
                                     "val_majority_baseline": pytest.approx(results["learned_threshold"] - 0.25)}
    assert results["best_val_accuracy"] <= results["learned_threshold"]
    alerts = [r["alert"] for r in wandb_records(run_dir) if r["type"] == "alert"]
    assert len(alerts) == 1 and "stuck" in alerts[0]["title"] and "after 2.0 epochs" in alerts[0]["text"]

    resumed = run_inprocess(run_dir, [*overrides(root, "trainer.stop_if_stuck=false", "trainer.resume=auto")])
    assert resumed["status"] == "completed" and resumed["steps"] == 6 * STEPS_PER_EPOCH
    assert [e["step"] for e in events(run_dir, "val")] == [STEPS_PER_EPOCH * k for k in range(1, 7)]


def test_a_learnable_task_runs_to_the_end(tmp_path):
    root = write_listops(tmp_path / "data", lambda d, rng: int(d))  # the label is the digit: learnable
    results = run_inprocess(tmp_path / "run", overrides(root, *STUCK))
    assert results["status"] == "completed" and results["steps"] == 6 * STEPS_PER_EPOCH
    assert results["learned"] is True and results["best_val_accuracy"] > results["learned_threshold"]
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["learned"] is True and saved["stuck_rule"]["enabled"] is True
