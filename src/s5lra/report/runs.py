"""Find run directories and read them into plain records.

A run directory is what `run_train.py` leaves behind: `results.json`, `metrics.jsonl`, `.hydra/config.yaml`,
and `.hydra/overrides.yaml` (the command line's "key=value" overrides; results.json may carry the same list as
`overrides`, which then wins). A run with a missing or malformed file is skipped with a warning naming that
file, so one broken run (still running, killed, half-copied) never costs the whole report. A run that stopped
early keeps its results.json `status` (completed | stuck | running | preempted | interrupted | diverged | failed;
results.json written before statuses existed counts as completed; `running` is a run still going or one killed
outright, an unfinished seed) and may have no accuracy yet (null). A
directory that only holds a cost estimate (`trainer.estimate=true`: estimate.json, no results.json or
metrics.jsonl) trained nothing and is not a run.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml

RUN_FILES = ("results.json", "metrics.jsonl", ".hydra/config.yaml")
OVERRIDES_FILE = ".hydra/overrides.yaml"
ESTIMATE_FILE = "estimate.json"  # s5lra.train.estimate
STATUSES = ("completed", "stuck", "running", "preempted", "interrupted", "diverged", "failed")
SPLITS = ("train", "val", "test")
ACCURACY_KEYS = ("best_val_accuracy", "test_accuracy")
_SKIP_DIRS = {"checkpoints", "wandb", ".hydra"}  # large or never a run of their own


class RunFileError(ValueError):
    """A run file is missing or does not have the documented format."""


@dataclass
class Run:
    path: Path
    experiment: str
    task: str
    seed: int | None
    results: dict
    events: list[dict]
    config: dict
    overrides: list[str] = field(default_factory=list)  # as given on the command line, see s5lra.overrides

    @property
    def status(self) -> str:
        return self.results.get("status") or "completed"

    @property
    def evaluated(self) -> bool:
        return self.results.get("test_accuracy") is not None and self.results.get("best_val_accuracy") is not None

    @property
    def hardware(self) -> str:
        """results.json's `hardware` as written, else 'N x <device kind>' from its device fields."""
        r = self.results
        if r.get("hardware"):
            return str(r["hardware"])
        kind, n = r.get("device_kind") or r.get("device") or r.get("platform"), r.get("n_devices")
        if kind:
            return f"{n} x {kind}" if n else str(kind)
        return f"{n} device(s)" if n else "unknown"

    def curve(self, split: str, key: str) -> tuple[list[float], list[float]]:
        """(epochs, values) of one split's metric; x is fractional epochs when the step rate is known."""
        steps, epochs = self.results.get("steps"), self.results.get("epochs")
        per_epoch = steps / epochs if steps and epochs else None
        xs, ys = [], []
        for e in self.events:
            if e.get("split") == split and e.get(key) is not None:
                xs.append(e["step"] / per_epoch if per_epoch else e["epoch"] + 1)
                ys.append(e[key])
        return xs, ys


def is_estimate_only(path: Path) -> bool:
    """A directory of `trainer.estimate=true`: estimate.json and its config, nothing trained."""
    return (path / ESTIMATE_FILE).is_file() and not any((path / n).exists() for n in ("results.json", "metrics.jsonl"))


def find_run_dirs(paths) -> list[Path]:
    """Every directory under `paths` holding any run file (single runs and multirun job folders alike)."""
    found = []
    for root in map(Path, paths):
        if not root.is_dir():
            warnings.warn(f"{root}: not a directory; skipped")
            continue
        for here, dirs, files in os.walk(root):
            here = Path(here)
            if is_estimate_only(here):
                dirs.clear()
            elif any((here / name).exists() for name in RUN_FILES):
                found.append(here)
                dirs.clear()
            else:
                dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
    return sorted(set(found))


def _read_mapping(path: Path, parse, parse_error) -> dict:
    try:
        obj = parse(path.read_text())
    except (OSError, parse_error) as err:
        raise RunFileError(f"{path}: {err}") from None
    if not isinstance(obj, dict):
        raise RunFileError(f"{path}: expected a mapping")
    return obj


def _read_events(path: Path) -> list[dict]:
    events = []
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise RunFileError(f"{path}: {err}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as err:
            raise RunFileError(f"{path}:{number}: {err}") from None
        if not isinstance(event, dict) or event.get("split") not in SPLITS or "step" not in event:
            raise RunFileError(f"{path}:{number}: expected an object with step and split (train|val|test)")
        events.append(event)
    return events


def load_run(path: str | Path) -> Run:
    """Read one run directory; raises RunFileError naming the offending file."""
    path = Path(path)
    for name in RUN_FILES:
        if not (path / name).is_file():
            raise RunFileError(f"{path / name}: missing")
    results = _read_mapping(path / "results.json", json.loads, json.JSONDecodeError)
    for key in ACCURACY_KEYS:
        value = results.get(key)
        if value is not None and (not isinstance(value, (int, float)) or not 0 <= value <= 1):
            raise RunFileError(f"{path / 'results.json'}: {key}={value!r}; expected a fraction in [0, 1] or null")
    if results.get("status", "completed") not in STATUSES:
        raise RunFileError(f"{path / 'results.json'}: status={results['status']!r}; expected one of {STATUSES}")
    events = _read_events(path / "metrics.jsonl")
    config = _read_mapping(path / ".hydra" / "config.yaml", yaml.safe_load, yaml.YAMLError)
    task = (config.get("dataset") or {}).get("name")
    if not task:
        raise RunFileError(f"{path / '.hydra' / 'config.yaml'}: no dataset.name")
    experiment = results.get("experiment") or results.get("name") or config.get("name") or task
    return Run(path, experiment, task, config.get("seed"), results, events, config, _overrides(path, results))


def _overrides(path: Path, results: dict) -> list[str]:
    listed = results.get("overrides")
    where = path / "results.json"
    if listed is None and (path / OVERRIDES_FILE).is_file():
        where = path / OVERRIDES_FILE
        try:
            listed = yaml.safe_load(where.read_text()) or []
        except (OSError, yaml.YAMLError) as err:
            raise RunFileError(f"{where}: {err}") from None
    listed = [] if listed is None else listed
    if not isinstance(listed, list) or not all(isinstance(o, str) for o in listed):
        raise RunFileError(f"{where}: overrides: expected a list of 'key=value' strings")
    return listed


def load_runs(paths) -> list[Run]:
    """All readable runs under `paths`; unreadable ones are skipped with a warning."""
    runs = []
    for run_dir in find_run_dirs(paths):
        try:
            runs.append(load_run(run_dir))
        except RunFileError as err:
            warnings.warn(f"skipping run {run_dir}: {err}")
    return runs
