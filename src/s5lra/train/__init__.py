"""Training and evaluation: optimizer groups, schedules, sharded steps, the loop, checkpoints, loggers.

Plain dataclasses in, files in the run directory out; Hydra stays in the entry points (run_train.py,
run_eval.py), which compose `configs/` into these dataclasses.
"""

from s5lra.errors import ConfigError, TrainingDiverged, errors_to_exit
from s5lra.train.config import EvalConfig, TrainConfig, validate
from s5lra.train.evaluate import evaluate_run, load_run_config
from s5lra.train.loop import train

__all__ = [
    "ConfigError", "EvalConfig", "TrainConfig", "TrainingDiverged", "errors_to_exit", "evaluate_run",
    "load_run_config", "train", "validate",
]
