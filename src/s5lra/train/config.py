"""Training settings as typed dataclasses.

Hydra registers them in its ConfigStore as the schema of `configs/train.yaml` and `configs/eval.yaml`, so a
misspelt key or a value of the wrong type fails at composition, naming the key, before any data is read.
The library itself only needs the dataclasses (no Hydra below the entry points).
"""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from s5lra.model.config import ModelConfig
from s5lra.ssm.config import SSMConfig
from s5lra.errors import ConfigError, DataError, InvalidSetting, check_choice

__all__ = [
    "DatasetConfig", "EvalConfig", "LoggerConfig", "ModelConfig", "OptimizerConfig", "PathsConfig",
    "SSMConfig", "SchedulerConfig", "TrainConfig", "TrainerConfig", "register_configs",
]


@dataclass
class PathsConfig:
    data_dir: str = "data"  # relative paths are taken from the directory you run in


@dataclass
class DatasetConfig:
    """Which task and where; the remaining fields go to `s5lra.data.load_task` unchanged."""

    name: str = "listops"
    root: str = "${paths.data_dir}"  # the saved config holds it as an absolute path
    max_len: Optional[int] = None  # truncate/pad length (None: the task's standard length)
    generate: Optional[Dict[str, Any]] = None  # generator settings: create the data on first use
    options: Dict[str, Any] = field(default_factory=dict)  # task-specific loader knobs


@dataclass
class OptimizerConfig:
    """Parameter groups as in docs/s5.md, section 6 "Optimizer groups"."""

    lr: float = 3e-3  # AdamW rate for the regular group (the official lr_factor * ssm_lr)
    ssm_lr: float = 1e-3  # rate of the SSM group (Lambda, log_step, and B unless the groups say otherwise)
    weight_decay: float = 0.04
    groups: str = "standard"  # standard | BandCdecay | BfastandCdecay | noBCdecay
    dt_global: bool = False  # log_step leaves the SSM group: AdamW at lr with decay
    selective_lr_factor: float = 0.1  # selective S5's delta_W1/delta_W2: Adam, no decay, at this × ssm_lr
    # Official quirk (kept by default): the norm parameters were meant to sit in the undecayed SSM group, but
    # the name test never matches, so they get AdamW at lr with decay. False = what the official code meant.
    norm_decay: bool = True
    grad_clip: Optional[float] = None  # global-norm clipping; the official code has none
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8


@dataclass
class SchedulerConfig:
    """Linear warmup then cosine to lr_min, per step, for both rates alike."""

    warmup_epochs: int = 1
    lr_min: float = 0.0
    # Official quirk: the first update uses the full rate (the schedule lags one step behind).
    first_step_full_lr: bool = True
    # Official quirk: the cosine counts the global step, reaching lr_min `warmup_epochs` epochs early.
    cosine_from_global_step: bool = True


@dataclass
class TrainerConfig:
    batch_size: int = 50  # global, over all devices and processes
    eval_batch_size: Optional[int] = None  # None: batch_size
    epochs: int = 40
    max_steps: Optional[int] = None  # stop early; the schedule still follows `epochs`
    eval_every: Optional[int] = None  # also evaluate every this many steps (val and test)
    log_every: int = 50  # steps between train-metric events
    checkpoint_every: Optional[int] = None  # also save checkpoints/last every this many steps
    resume: Optional[str] = None  # null | auto (this run directory's last checkpoint) | a checkpoint path
    distributed: bool = False  # jax.distributed.initialize() from the environment (SLURM, TPU pod, ...)
    progress: bool = True  # tqdm progress bar (process 0 only)
    precision: str = "fp32"  # fp32 | bf16 (bfloat16 for the non-SSM matmuls; SSM and norms stay float32)
    # Cost before launching (s5lra.train.estimate): time this many steps, write estimate.json, train nothing.
    estimate: bool = False
    estimate_steps: int = 10
    # Stop a seed that has not left chance (s5lra.stuck, docs/stuck-seeds.md): status `stuck`. The official
    # code has no such check. null: the task's default (Path-X 10 epochs, Pathfinder 20, else a tenth of the
    # schedule; margin 0.05 accuracy above the validation split's majority baseline).
    stop_if_stuck: bool = False
    stuck_after_epochs: Optional[float] = None
    stuck_margin: Optional[float] = None


@dataclass
class LoggerConfig:
    backend: str = "wandb"  # wandb | none
    mode: Optional[str] = None  # online | offline | disabled; None: WANDB_MODE, else online iff an API key
    project: str = "s5lra"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    name: Optional[str] = None


@dataclass
class TrainConfig:
    """The composed `configs/train.yaml`."""

    name: str = "demo"  # experiment name: output folder and results.json
    seed: int = 0
    paths: PathsConfig = field(default_factory=PathsConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    # A resumed run whose data fingerprint changed stops and says what changed; true goes on anyway.
    allow_data_change: bool = False


@dataclass
class EvalSSMOverrides:
    """SSM settings `run_eval.py` may change for evaluation (null: keep the run's value)."""

    step_rescale: Optional[float] = None  # evaluate at another sampling rate (the paper's resolution test)
    scan: Optional[str] = None


@dataclass
class EvalModelOverrides:
    ssm: EvalSSMOverrides = field(default_factory=EvalSSMOverrides)


@dataclass
class EvalConfig:
    """The composed `configs/eval.yaml`: which run, which split, which checkpoint."""

    run_dir: str = MISSING
    split: str = "test"
    checkpoint: str = "best"  # best | last
    batch_size: Optional[int] = None  # None: the run's eval batch size
    data_dir: Optional[str] = None  # None: the run's paths.data_dir (relative to where you run)
    model: EvalModelOverrides = field(default_factory=EvalModelOverrides)
    output: Optional[str] = None  # metrics JSON path; None: <run_dir>/eval_<split>_<checkpoint>[_<overrides>].json
    allow_data_change: bool = False  # evaluate even if the data differs from the run's (says what changed)


def run_stamp() -> str:
    """<date>_<time>.<milliseconds>-<8 random hex digits>: run directories of simultaneous starts differ
    (32 random bits: two of 200 starts in one millisecond collide with probability ~5e-6)."""
    now = datetime.datetime.now()
    return f"{now:%Y-%m-%d_%H-%M-%S}.{now.microsecond // 1000:03d}-{secrets.token_hex(4)}"


def register_configs() -> None:
    """Put the schemas into Hydra's ConfigStore (the yaml files list them first in their defaults) and
    register the `s5lra_stamp` resolver of the run directory names (cached: one value per run)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("s5lra_stamp", run_stamp, use_cache=True, replace=True)

    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="eval_schema", node=EvalConfig)


def _check_positive(section, *names, optional=False) -> None:
    for name in names:
        value = getattr(section, name)
        if (value is not None or not optional) and (value is None or value <= 0):
            raise InvalidSetting(name, value, "must be positive" + (" (or null)" if optional else ""))


def _check_dataset(d: DatasetConfig) -> None:
    from s5lra.data.tasks import TASKS, check_settings

    check_choice("name", d.name, TASKS)
    if d.max_len is not None and d.max_len < 2:
        raise InvalidSetting("max_len", d.max_len, "must be at least 2 (one token and <eos>) or null")
    try:
        check_settings(d.name, max_len=d.max_len, generate=d.generate, **d.options)
    except DataError as err:
        raise ConfigError(f"dataset: {err}") from None


def _check_optimizer(o: OptimizerConfig) -> None:
    from s5lra.train.optim import GROUPS

    check_choice("groups", o.groups, GROUPS)
    _check_positive(o, "lr", "ssm_lr", "eps")
    _check_positive(o, "grad_clip", optional=True)
    if o.weight_decay < 0:
        raise InvalidSetting("weight_decay", o.weight_decay, "must not be negative")
    for name in ("b1", "b2"):
        if not 0 <= getattr(o, name) < 1:
            raise InvalidSetting(name, getattr(o, name), "must lie in [0, 1)")


def _check_scheduler(s: SchedulerConfig) -> None:
    if s.warmup_epochs < 0:
        raise InvalidSetting("warmup_epochs", s.warmup_epochs, "must not be negative")
    if s.lr_min < 0:
        raise InvalidSetting("lr_min", s.lr_min, "must not be negative")


def _check_trainer(t: TrainerConfig) -> None:
    from s5lra.model.model import PRECISIONS

    _check_positive(t, "batch_size", "epochs", "log_every", "estimate_steps")
    _check_positive(t, "max_steps", "eval_every", "checkpoint_every", "eval_batch_size", "stuck_after_epochs",
                    optional=True)
    if t.stuck_margin is not None and not -1 < t.stuck_margin < 1:
        raise InvalidSetting("stuck_margin", t.stuck_margin, "must lie in (-1, 1) (an accuracy difference) or null")
    check_choice("precision", t.precision, PRECISIONS)


def _check_logger(cfg: LoggerConfig) -> None:
    from s5lra.train.loggers import BACKENDS, WANDB_MODES

    check_choice("backend", cfg.backend, BACKENDS)
    check_choice("mode", cfg.mode, (None, *WANDB_MODES))


def validate(cfg: TrainConfig) -> None:
    """Check every value before any data is read; a bad one raises ConfigError naming its key.

    Each section's checks live with the code that knows the allowed values (SSMConfig.check,
    ModelConfig.check, ...); this maps the argument they name to the config key.
    """
    sections = [("model", cfg.model.check), ("dataset", lambda: _check_dataset(cfg.dataset)),
                ("optimizer", lambda: _check_optimizer(cfg.optimizer)),
                ("scheduler", lambda: _check_scheduler(cfg.scheduler)),
                ("trainer", lambda: _check_trainer(cfg.trainer)), ("logger", lambda: _check_logger(cfg.logger))]
    if not isinstance(cfg.seed, int) or not 0 <= cfg.seed < 2**32:
        raise ConfigError(f"seed={cfg.seed!r}: must be an integer in [0, 2**32) (it seeds NumPy's and JAX's generators)")
    if not cfg.name:
        raise ConfigError("name='': the experiment needs a name (it names the output folder)")
    for prefix, check in sections:
        try:
            check()
        except InvalidSetting as err:
            raise ConfigError(f"{prefix}.{err}") from None
    if cfg.scheduler.warmup_epochs > cfg.trainer.epochs:
        raise ConfigError(f"scheduler.warmup_epochs={cfg.scheduler.warmup_epochs} must not exceed "
                          f"trainer.epochs={cfg.trainer.epochs}")
