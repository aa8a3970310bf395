"""s5lra.report: tables equal their inputs, seeds aggregate, plots exist, bad runs are skipped, W&B runs pull back."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import yaml

from s5lra.report import build_report, load_run, load_runs
from s5lra.report.aggregate import group_runs, lra_average
from s5lra.report.paper import PAPER_ACCURACY, TASKS
from s5lra.report.wandb_runs import WandbRun, write_run_dir

from helpers import REPO

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(path: Path, task="listops", seed=0, test=0.6, val=0.61, experiment=None, epochs=4, steps_per_epoch=10):
    """A run directory in the training loop's format, with curves that end at the given accuracies."""
    path.mkdir(parents=True)
    (path / ".hydra").mkdir()
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"name": experiment or f"lra/{task}", "seed": seed, "dataset": {"name": task}}))
    events = []
    for epoch in range(epochs):
        for k in range(1, steps_per_epoch + 1, 5):
            step = epoch * steps_per_epoch + k
            events.append(dict(step=step, epoch=epoch, split="train", loss=2.0 / (1 + step), accuracy=0.1 + 0.01 * step,
                               lr=1e-3, ssm_lr=5e-4, examples_per_s=100.0))
        frac = (epoch + 1) / epochs
        end = (epoch + 1) * steps_per_epoch
        events.append(dict(step=end, epoch=epoch, split="val", loss=1.0, accuracy=val * frac, examples_per_s=1.0))
        events.append(dict(step=end, epoch=epoch, split="test", loss=1.0, accuracy=test * frac, examples_per_s=1.0))
    (path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    results = dict(best_val_accuracy=val, test_accuracy=test, final_test_accuracy=test, majority_baseline=0.1,
                   steps=epochs * steps_per_epoch, epochs=float(epochs), wall_time_s=3600.0, n_params=1000,
                   n_devices=1, device_kind="NVIDIA H100", name=experiment or f"lra/{task}", status="completed")
    (path / "results.json").write_text(json.dumps(results))
    return path


def test_table_equals_inputs_and_seeds_aggregate(tmp_path):
    tests, vals = [0.60, 0.62, 0.64], [0.61, 0.65, 0.63]
    for seed, (t, v) in enumerate(zip(tests, vals)):
        make_run(tmp_path / "runs" / f"s{seed}", seed=seed, test=t, val=v)
    [group] = group_runs(load_runs([tmp_path / "runs"]))
    assert group.seeds == [0, 1, 2] and group.n == 3
    assert group.mean == pytest.approx(62.0)
    assert group.std == pytest.approx(2.0)                # sample std of 60, 62, 64
    assert group.best == pytest.approx(62.0)              # the seed with the best validation (65), not max test
    assert group.gap == pytest.approx(62.0 - PAPER_ACCURACY["listops"])

    build_report([tmp_path / "runs"], tmp_path / "out")
    md = (tmp_path / "out" / "results.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| ListOps"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:8] == ["62.00 ± 2.00", "3", "62.00", "62.15", "-0.15", "4.0 / 40"]
    assert cells[8:] == ["60 min", "1 x NVIDIA H100"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["groups"][0]["test"] == pytest.approx([60.0, 62.0, 64.0])
    assert summary["groups"][0]["max_test"] == pytest.approx(64.0)
    assert summary["lra_average"] is None


def test_six_tasks_average_row_and_plots(tmp_path):
    accs = {t: (PAPER_ACCURACY[t] - 1) / 100 for t in TASKS}
    for t in TASKS:
        for seed in (0, 1):
            make_run(tmp_path / t / str(seed), task=t, seed=seed, test=accs[t] + 0.01 * seed, val=0.5)
    written = build_report([tmp_path], tmp_path / "out")
    average = lra_average(group_runs(load_runs([tmp_path])))
    assert average["mean"] == pytest.approx(87.46 - 0.5, abs=0.01)
    assert "| **LRA average** |" in (tmp_path / "out" / "results.md").read_text()
    pngs = [p for p in written if p.suffix == ".png"]
    assert {p.name for p in pngs} == {f"curves_lra_{t}.png" for t in TASKS} | {"lra_summary.png"}
    for p in pngs:
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_multirun_sweep_is_found_and_checkpoints_ignored(tmp_path):
    sweep = tmp_path / "outputs" / "lra" / "listops" / "2026-01-01_00-00-00"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("{}")
    for job in range(3):
        run = make_run(sweep / str(job), seed=job)
        (run / "checkpoints" / "best" / "7").mkdir(parents=True)
    runs = load_runs([tmp_path / "outputs"])
    assert sorted(r.seed for r in runs) == [0, 1, 2]
    assert all(r.experiment == "lra/listops" and r.task == "listops" for r in runs)


def test_bad_runs_are_skipped_with_a_warning_naming_the_file(tmp_path):
    make_run(tmp_path / "good")
    (make_run(tmp_path / "no_results") / "results.json").unlink()
    with (make_run(tmp_path / "bad_line") / "metrics.jsonl").open("a") as f:
        f.write("{not json\n")
    bad_acc = make_run(tmp_path / "bad_acc")
    (bad_acc / "results.json").write_text(json.dumps({"best_val_accuracy": 61.0, "test_accuracy": 0.6}))
    (make_run(tmp_path / "no_config") / ".hydra" / "config.yaml").write_text("- a list\n")
    with pytest.warns(UserWarning) as caught:
        runs = load_runs([tmp_path])
    messages = "\n".join(str(w.message) for w in caught)
    assert [r.path.name for r in runs] == ["good"]
    assert str(tmp_path / "no_results" / "results.json") + ": missing" in messages
    assert str(tmp_path / "bad_line" / "metrics.jsonl") + ":17" in messages
    assert "best_val_accuracy=61.0" in messages
    assert str(tmp_path / "no_config" / ".hydra" / "config.yaml") in messages


class FakeApiRun:
    """The attributes of `wandb.apis.public.Run` that the pull script uses."""
    id, group, tags = "abc123", "lra/image", ["image", "seed1"]
    config = {"name": "lra/image", "seed": 1, "dataset": {"name": "image"}, "_wandb": {}}
    summary = {"best_val_accuracy": 0.8, "test_accuracy": 0.79, "final_test_accuracy": 0.78, "_runtime": 7200.5,
               "_wandb": {"runtime": 7200}}
    metadata = {"gpu": "NVIDIA H100 80GB HBM3", "gpu_count": 1}

    def scan_history(self):
        yield {"_step": 0, "step": 10, "epoch": 0, "train/loss": 2.0, "train/accuracy": 0.2, "lr": 1e-3,
               "ssm_lr": 1e-4, "_runtime": 1.0, "val/accuracy": None}
        yield {"_step": 1, "step": 20, "epoch": 0, "val/loss": 1.0, "val/accuracy": 0.8, "test/accuracy": 0.79}
        yield {"_step": 2, "step": 40, "epoch": 1, "val/loss": 1.1, "val/accuracy": 0.75, "test/accuracy": 0.78}


def test_pull_conversion_from_an_api_run(tmp_path):
    spec = importlib.util.spec_from_file_location("wandb_pull", REPO / "experiments" /
                                                  "wandb_pull.py")
    pull = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pull)
    converted = pull.api_run_to_wandb_run(FakeApiRun())
    assert isinstance(converted, WandbRun) and "_wandb" not in converted.config
    back = load_run(write_run_dir(converted, tmp_path))
    assert back.path == tmp_path / "lra_image" / "abc123"
    assert [(e["split"], e["step"]) for e in back.events] == [("train", 10), ("val", 20), ("test", 20), ("val", 40),
                                                              ("test", 40)]
    assert back.events[0] == dict(step=10, epoch=0, split="train", loss=2.0, accuracy=0.2, lr=1e-3, ssm_lr=1e-4)
    r = back.results
    assert (r["best_val_accuracy"], r["test_accuracy"], r["final_test_accuracy"]) == (0.8, 0.79, 0.78)
    assert r["best_step"] == 20 and r["epochs"] == 2 and r["steps"] == 40
    assert math.isclose(r["wall_time_s"], 7200.5) and back.hardware == "1 x NVIDIA H100 80GB HBM3"
