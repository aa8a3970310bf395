"""A W&B run (from the public API: runs that live on W&B only) written back as a run directory.

The training logger sends each metrics event to W&B as `<split>/<metric>` next to `step`, `epoch`, `lr`,
`ssm_lr`; this module inverts that, so W&B runs and local runs go through the same report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from s5lra.report.runs import SPLITS

METRICS = ("loss", "accuracy", "examples_per_s")
HISTORY_KEYS = ("step", "epoch", "lr", "ssm_lr") + tuple(f"{s}/{m}" for s in SPLITS for m in METRICS)
RESULT_KEYS = ("best_val_accuracy", "test_accuracy", "final_test_accuracy", "majority_baseline", "steps", "epochs",
               "wall_time_s", "n_params", "n_devices", "experiment", "hardware", "best_step")


@dataclass
class WandbRun:
    """The parts of a W&B run the report needs, as plain values."""
    id: str
    config: dict
    summary: dict
    history: list[dict]  # rows with (some of) HISTORY_KEYS
    hardware: str | None = None
    tags: list[str] = field(default_factory=list)
    group: str | None = None


def history_to_events(rows: list[dict]) -> list[dict]:
    """metrics.jsonl events from W&B history rows: one event per split present in a row."""
    events = []
    for row in rows:
        if row.get("step") is None:
            continue
        for split in SPLITS:
            values = {m: row[f"{split}/{m}"] for m in METRICS if row.get(f"{split}/{m}") is not None}
            if "loss" not in values and "accuracy" not in values:
                continue
            event = {"step": int(row["step"]), "epoch": int(row.get("epoch") or 0), "split": split, **values}
            if split == "train":
                event.update({k: row[k] for k in ("lr", "ssm_lr") if row.get(k) is not None})
            events.append(event)
    return events


def _results_from_events(events: list[dict]) -> dict:
    """What results.json would say, recomputed from the evaluations (for runs whose summary lacks it)."""
    val = {e["step"]: e for e in events if e["split"] == "val" and "accuracy" in e}
    test = {e["step"]: e for e in events if e["split"] == "test" and "accuracy" in e}
    out = {"steps": max((e["step"] for e in events), default=0)}
    if val:
        best = max(val.values(), key=lambda e: (e["accuracy"], -e["step"]))
        out.update(best_val_accuracy=best["accuracy"], best_step=best["step"],
                   epochs=max(e["epoch"] for e in val.values()) + 1)  # evaluations close epochs
        if best["step"] in test:
            out["test_accuracy"] = test[best["step"]]["accuracy"]
    if test:
        out["final_test_accuracy"] = test[max(test)]["accuracy"]
    return out


def write_run_dir(run: WandbRun, root: str | Path) -> Path:
    """<root>/<experiment>/<run id>/ with results.json, metrics.jsonl and .hydra/config.yaml."""
    events = history_to_events(run.history)
    results = _results_from_events(events)
    results.update({k: run.summary[k] for k in RESULT_KEYS if run.summary.get(k) is not None})
    results.setdefault("wall_time_s", run.summary.get("_runtime"))
    results.setdefault("experiment", run.config.get("name") or run.group or run.id)
    if run.hardware:
        results.setdefault("hardware", run.hardware)
    results.update(wandb_id=run.id, wandb_group=run.group, wandb_tags=list(run.tags))
    path = Path(root) / results["experiment"].replace("/", "_") / run.id
    (path / ".hydra").mkdir(parents=True, exist_ok=True)
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(run.config, sort_keys=False))
    (path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (path / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return path
