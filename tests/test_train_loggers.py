"""W&B mode resolution (never left to chance), metrics.jsonl truncation on resume, atomic JSON."""

import json

import pytest

from s5lra.errors import ConfigError
from s5lra.atomic import write_json
from s5lra.train.loggers import MetricsFile, wandb_mode


def test_wandb_mode_defaults_to_offline_without_a_key(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_mode(None) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode(None) == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode(None) == "disabled"
    assert wandb_mode("offline") == "offline"  # the config wins
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.delenv("WANDB_MODE")
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "y" * 40 + "\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert wandb_mode(None) == "online"
    with pytest.raises(ConfigError, match="logger.mode"):
        wandb_mode("sometimes")


def test_metrics_file_truncates_events_past_the_checkpoint(tmp_path):
    metrics = MetricsFile(tmp_path / "metrics.jsonl")
    metrics.truncate_after(3)  # no file yet: nothing to do
    for step in (1, 2, 3, 4, 5):
        metrics.write({"step": step, "split": "train"})
    metrics.truncate_after(3)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]


def test_write_json_leaves_no_temporary_file(tmp_path):
    write_json(tmp_path / "results.json", {"a": 1})
    write_json(tmp_path / "results.json", {"a": 2})
    assert json.loads((tmp_path / "results.json").read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
