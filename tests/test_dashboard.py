"""The W&B workspace spec, built offline: its panels read exactly keys that a real training run logs."""

import time
from types import SimpleNamespace

import pytest

pytest.importorskip("wandb_workspaces", reason="the dashboard extra (requirements-extras.txt)")

from omegaconf import OmegaConf  # noqa: E402

from s5lra import dashboard  # noqa: E402
from s5lra.report.paper import PAPER_ACCURACY, PAPER_AVERAGE  # noqa: E402
from s5lra.train import train  # noqa: E402

from helpers import compose_cfg, tiny_overrides  # noqa: E402


class FakeRun:
    """What wandb.init returns, recording what the logger sends."""

    def __init__(self, **kwargs):
        self.init = kwargs
        self.id, self.dir = "fake0001", str(kwargs.get("dir"))
        self.settings = SimpleNamespace(mode="offline")
        self.rows, self.summary = [], {}

    def define_metric(self, *args, **kwargs):
        pass

    def log(self, row):
        self.rows.append(dict(row))

    def finish(self):
        pass


@pytest.fixture(scope="module")
def logged(listops_root, tmp_path_factory, shared_compilation_cache):
    """A tiny real run with W&B on, wandb.init replaced by FakeRun: the history rows, summary and config."""
    import wandb

    runs = []
    cfg = compose_cfg(tiny_overrides(listops_root, "trainer.epochs=1", "trainer.log_every=4", "logger=wandb",
                                     "logger.mode=offline"))
    run_dir = tmp_path_factory.mktemp("dashboard") / "run"
    run_dir.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(wandb, "init", lambda **kw: runs.append(FakeRun(**kw)) or runs[-1])
        train(OmegaConf.to_object(cfg), run_dir)
    (run,) = runs
    history = {k for row in run.rows for k in row}
    config = run.init["config"]
    flat = {f"{a}.{b}" for a, sub in config.items() if isinstance(sub, dict) for b in sub} | set(config)
    return SimpleNamespace(history=history, summary=set(run.summary), config=flat, tags=run.init["tags"],
                           group=run.init["group"])


def test_panels_read_the_keys_the_logger_writes(logged):
    workspace = dashboard.build_workspace("me", "s5lra")
    used = {"history": set(), "summary": set(), "config": set()}
    for section in workspace.sections:
        for panel in section.panels:
            for kind, keys in dashboard.panel_keys(panel).items():
                used[kind] |= set(keys)
    assert used["history"] <= logged.history, used["history"] - logged.history
    assert used["summary"] <= logged.summary, used["summary"] - logged.summary
    assert used["config"] <= logged.config and dashboard.X_AXIS in logged.history
    # what the issue asks for: val/test accuracy and training loss against epoch, both learning rates
    assert {"val/accuracy", "test/accuracy", "train/loss", "lr", "ssm_lr"} <= used["history"]
    assert {"test_accuracy", "best_val_accuracy"} <= used["summary"]
    lines = [p for s in workspace.sections for p in s.panels if hasattr(p, "y")]
    assert lines and all(p.x == "epoch" for p in lines)
    # runs are grouped by experiment: the W&B group the loop sets is the experiment name
    assert [g.name for g in workspace.runset_settings.groupby] == ["Group"] and logged.group == "demo"


def test_tag_filter_and_paper_table(logged):
    workspace = dashboard.build_workspace("me", "s5lra", tags=["listops", "seed0"])
    assert workspace.runset_settings.filters == """Metric("Tags") in ['listops', 'seed0']"""
    assert {"listops", "seed0"} <= set(logged.tags)  # the tags the loop gives every run
    assert dashboard.build_workspace("me", "s5lra").runset_settings.filters == ""
    markdown = [p.markdown for s in workspace.sections for p in s.panels if hasattr(p, "markdown")]
    assert len(markdown) == 1
    for task, accuracy in PAPER_ACCURACY.items():
        assert f"`{task}` | {accuracy:.2f} |" in markdown[0]
    assert f"{PAPER_AVERAGE:.2f}" in markdown[0]


def test_dry_run_prints_the_spec_and_upload_fails_fast_offline(monkeypatch, capsys):
    assert dashboard.main(["me/s5lra", "--tag", "image", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[Accuracy] val accuracy: {'history': ['val/accuracy']}" in out
    assert """runs filter: Metric("Tags") in ['image']""" in out
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there: refused at once
    start = time.monotonic()
    assert dashboard.main(["me/s5lra"]) == 1
    assert time.monotonic() - start < dashboard.CONNECT_TIMEOUT_S
    assert "cannot reach the W&B server http://127.0.0.1:9" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        dashboard.main(["no-slash"])
