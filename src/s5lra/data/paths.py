"""Find a task's source folder in the layouts people actually have on disk.

The LRA archive extracts to `lra_release/` or the doubled `lra_release/lra_release/`, some scripts extract
one level, and S4's README renames folders; the same task is looked for under all of them.
"""

from __future__ import annotations

from pathlib import Path

from s5lra.errors import DataError

RELEASE_PREFIXES = ("", "lra_release", "lra_release/lra_release")


def candidates(root: Path, names: list[str]) -> list[Path]:
    """Every folder that may hold the task, in search order."""
    return [root / prefix / name for prefix in RELEASE_PREFIXES for name in names]


def find_task_dir(root: str | Path, names: list[str], marker: str, how_to: str) -> Path:
    """The first candidate folder containing `marker` (a file or folder name), else a DataError listing
    the searched paths and `how_to` (the command that gets or generates the data)."""
    root = Path(root).expanduser()
    searched = candidates(root, names)
    for folder in searched:
        if (folder / marker).exists():
            return folder
    listing = ", ".join(str(p / marker) for p in searched)
    raise DataError(f"no data found under {root} (searched {listing}); to get it: {how_to}")
