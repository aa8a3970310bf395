"""`experiments/wandb_pull.py --offline` on a resumed run: its offline folders (one per process, same run id)
become one run directory with the whole history."""

import importlib.util
from pathlib import Path

import pytest

from s5lra.report import load_run
from s5lra.report.wandb_offline import read_offline_run, read_offline_runs

from test_report import _wandb_row


def _segment(tmp_path, run_id, events, summary, started):
    import wandb

    run = wandb.init(mode="offline", dir=str(tmp_path), project="s5lra", id=run_id, resume="allow",
                     group="lra/listops", config={"name": "lra/listops", "seed": 0, "dataset": {"name": "listops"}})
    run.define_metric("step")
    run.define_metric("*", step_metric="step")
    for event in events:
        run.log(_wandb_row(event))
    run.summary.update(summary)
    run.finish()
    folder = max((p for p in (tmp_path / "wandb").glob(f"offline-run-*-{run_id}") if "-2000" not in p.name),
                 key=lambda p: p.stat().st_mtime)  # the folder this process just wrote
    return folder.rename(folder.with_name(f"offline-run-{started}-{run_id}"))  # distinct start times


def _events(steps, epoch_of):
    out = []
    for step in steps:
        out.append(dict(step=step, epoch=epoch_of(step), split="train", loss=1.0 / step, accuracy=0.2))
        if step % 100 == 0:
            out.append(dict(step=step, epoch=epoch_of(step), split="val", loss=1.0, accuracy=step / 1000))
            out.append(dict(step=step, epoch=epoch_of(step), split="test", loss=1.0, accuracy=step / 1000 - 0.01))
    return out


def test_offline_folders_of_a_resumed_run_merge_into_one_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    epoch_of = lambda step: (step - 1) // 100  # noqa: E731
    # preempted after step 350; the last checkpoint was at step 300, so the second process logs 310.. again
    first = _events(range(10, 351, 10), epoch_of)
    second = _events(range(310, 601, 10), epoch_of)
    a = _segment(tmp_path, "res123", first, {}, "20000101_000000")
    b = _segment(tmp_path, "res123", second, {"best_val_accuracy": 0.6, "test_accuracy": 0.59,
                                              "final_test_accuracy": 0.59}, "20000101_010000")
    assert len(list((tmp_path / "wandb").glob("offline-run-*-res123"))) == 2

    [merged] = read_offline_runs([tmp_path / "wandb"])
    spec = importlib.util.spec_from_file_location("wandb_pull", Path(__file__).parents[1] / "experiments" /
                                                  "wandb_pull.py")
    pull = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pull)
    out = tmp_path / "pulled"
    pull.main(["--offline", str(tmp_path / "wandb"), "--out", str(out)])
    [run_dir] = [p for p in out.rglob("results.json")]
    back = load_run(run_dir.parent)
    expected = [e for e in first if e["step"] < 310] + second
    assert back.events == expected  # both halves, the re-logged steps once
    assert [e["step"] for e in back.events if e["split"] == "val"] == [100, 200, 300, 400, 500, 600]
    r = back.results
    assert (r["steps"], r["epochs"], r["test_accuracy"]) == (600, 6, 0.59)
    runtime = sum(read_offline_run(f).summary["_runtime"] for f in (a, b))  # each process's own time
    assert r["wall_time_s"] == pytest.approx(runtime) and merged.summary["_runtime"] == pytest.approx(runtime)
