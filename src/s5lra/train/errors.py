"""Errors a user can fix from the command line, and how the entry points report them (one line, no traceback)."""

from __future__ import annotations

import contextlib
import sys


class ConfigError(ValueError):
    """A setting that cannot work; the message names the key."""


@contextlib.contextmanager
def errors_to_exit():
    """Turn the project's own errors into `error: <message>` and exit status 1; anything else is a bug."""
    from s5lra.data.errors import DataError
    from s5lra.train.checkpoint import CheckpointError
    from s5lra.train.loop import TrainingDiverged

    try:
        yield
    except (ConfigError, DataError, CheckpointError, TrainingDiverged) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
