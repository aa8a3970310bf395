"""The user-facing error types, and how the entry points report them (one line, no traceback).

Library code (`ssm/`, `model/`, `data/`) raises `InvalidSetting` naming its own argument; `validate()` in
`s5lra.train.config` turns that into a `ConfigError` naming the config key (`model.ssm.state_size=...`).
"""

from __future__ import annotations

import contextlib
import sys


class ConfigError(ValueError):
    """A setting that cannot work; the message names the config key."""


class InvalidSetting(ValueError):
    """A bad argument value of a library function or dataclass; `name` is the argument's name."""

    def __init__(self, name: str, value, reason: str):
        self.name, self.value, self.reason = name, value, reason
        super().__init__(f"{name}={value!r}: {reason}")


class DataError(Exception):
    """A user-fixable data problem; the message names the file (and line) or key and what to do."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used for this run."""


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class RunDirectoryError(RuntimeError):
    """The run directory already holds another run, is in use, or cannot be used."""


class StorageError(OSError):
    """Writing a run's files failed (a full disk, a missing or read-only folder); the message names the path."""


class DeviceMemoryError(RuntimeError):
    """The run does not fit its devices' memory (XLA's RESOURCE_EXHAUSTED); the message says what to try."""


def check_choice(name: str, value, choices) -> None:
    """Raise InvalidSetting unless `value` is one of `choices`."""
    if value not in choices:
        raise InvalidSetting(name, value, f"expected one of {list(choices)}")


USER_ERRORS = (ConfigError, InvalidSetting, DataError, CheckpointError, TrainingDiverged, RunDirectoryError,
               StorageError, DeviceMemoryError)


@contextlib.contextmanager
def errors_to_exit(log=None):
    """Turn the project's own errors into `error: <message>` and exit status 1; anything else is a bug.

    `log` (a logging.Logger) gets the message too, so the run's log file records why it stopped.
    """
    try:
        yield
    except USER_ERRORS as err:
        if log is not None and not isinstance(err, RunDirectoryError):  # that log belongs to another run
            log.error("error: %s", err)
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
