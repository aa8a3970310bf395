"""Where s5lra keeps what it computes once per machine (PTD solutions, kernel self-check verdicts)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$S5LRA_CACHE_DIR, default ${XDG_CACHE_HOME:-~/.cache}/s5lra."""
    if os.environ.get("S5LRA_CACHE_DIR"):
        return Path(os.environ["S5LRA_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "s5lra"
