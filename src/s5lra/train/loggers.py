"""Where metrics go: `metrics.jsonl` in the run directory always, W&B when `logger.backend=wandb`.

W&B must never hang or fail a run: without an explicit mode it runs offline unless WANDB_MODE or an API key
says otherwise, and an online start that fails falls back to offline (sync later with `wandb sync`).
"""

from __future__ import annotations

import json
import logging
import netrc
import os
import warnings
from pathlib import Path

from s5lra.atomic import write_text
from s5lra.errors import ConfigError, StorageError

WANDB_MODES = ("online", "offline", "disabled")
BACKENDS = ("wandb", "none")


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode(mode: str | None) -> str:
    """The configured mode, else WANDB_MODE, else online with an API key and offline without one."""
    mode = mode or os.environ.get("WANDB_MODE") or ("online" if _has_api_key() else "offline")
    mode = {"dryrun": "offline", "run": "online"}.get(mode, mode)
    if mode not in WANDB_MODES:
        raise ConfigError(f"logger.mode={mode!r}; expected one of {WANDB_MODES}")
    return mode


class MetricsFile:
    """Append-only `metrics.jsonl`, one JSON object per event."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def truncate_after(self, step: int) -> None:
        """Drop events past `step` (a resumed run logs them again, identically)."""
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        write_text(self.path, "".join(line + "\n" for line in keep))

    def write(self, event: dict) -> None:
        try:
            with self.path.open("a") as f:
                f.write(json.dumps(event) + "\n")
        except OSError as err:
            raise StorageError(f"cannot write {self.path}: {err.strerror or err}") from err


class RunLogger:
    """Fans events out to metrics.jsonl and W&B. Create it on process 0 only."""

    def __init__(self, run_dir: str | Path, cfg, config: dict, *, run_id: str | None = None,
                 defaults: dict | None = None):
        """defaults: W&B name, group and tags used where the logger config leaves them unset (the loop
        passes the experiment as group and name, the task and seed as tags, so the project view groups
        runs by experiment and filters by task and seed without any override)."""
        if cfg.backend not in BACKENDS:
            raise ConfigError(f"logger.backend={cfg.backend!r}; expected one of {BACKENDS}")
        self.metrics = MetricsFile(Path(run_dir) / "metrics.jsonl")
        self.run = None
        if cfg.backend == "wandb":
            self.run = self._start_wandb(Path(run_dir), cfg, config, run_id, defaults or {})

    @staticmethod
    def _start_wandb(run_dir, cfg, config, run_id, defaults):
        import wandb

        tags = list(dict.fromkeys([*cfg.tags, *defaults.get("tags", [])]))
        kwargs = dict(
            dir=str(run_dir), project=cfg.project, entity=cfg.entity, group=cfg.group or defaults.get("group"),
            tags=tags, name=cfg.name or defaults.get("name"), config=config, id=run_id,
            resume="allow" if run_id else None,
        )
        mode = wandb_mode(cfg.mode)
        try:
            run = wandb.init(mode=mode, settings=wandb.Settings(init_timeout=60, silent=True), **kwargs)
        except Exception as err:  # an online start without network must not cost the run
            if mode != "online":
                raise
            warnings.warn(f"W&B online start failed ({err}); logging offline instead (upload with `wandb sync`)")
            run = wandb.init(mode="offline", settings=wandb.Settings(silent=True), **kwargs)
        run.define_metric("step")
        run.define_metric("*", step_metric="step")
        return run

    @property
    def run_id(self) -> str | None:
        return None if self.run is None else self.run.id

    def describe(self) -> str:
        """Where the metrics go, for the start of a run."""
        if self.run is None:
            return f"metrics: {self.metrics.path} (W&B off)"
        return f"metrics: {self.metrics.path}; W&B {self.run.settings.mode}: {self.run.dir}"

    def sync_hint(self) -> str | None:
        """The command that uploads an offline run (None when it is online or off)."""
        if self.run is None or self.run.settings.mode != "offline":
            return None
        return f"wandb sync {Path(self.run.dir).parent}"

    def log(self, event: dict) -> None:
        """event: step, epoch, split, loss, accuracy and optionally lr, ssm_lr, examples_per_s."""
        self.metrics.write(event)
        if self.run is not None:
            split = event["split"]
            row = {"step": event["step"], "epoch": event["epoch"]}
            row.update({f"{split}/{k}": v for k, v in event.items() if k not in ("step", "epoch", "split",
                                                                                 "lr", "ssm_lr")})
            row.update({k: event[k] for k in ("lr", "ssm_lr") if k in event})
            self.run.log(row)

    def alert(self, title: str, text: str) -> None:
        """A W&B alert (e-mail or Slack, as the user's W&B settings say; offline runs send it at `wandb sync`);
        a failure to send one never costs the run."""
        if self.run is not None:
            import wandb

            try:
                self.run.alert(title=title, text=text, level=wandb.AlertLevel.WARN)
            except Exception as err:  # noqa: BLE001
                logging.getLogger("s5lra").warning("W&B alert not sent: %s", err)

    def summary(self, values: dict) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def close(self) -> None:
        if self.run is not None:
            hint = self.sync_hint()
            self.run.finish()
            self.run = None
            if hint:
                logging.getLogger("s5lra").info("W&B ran offline; upload with: %s", hint)
