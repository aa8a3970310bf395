"""The run directory: one run per directory, its composed config, and what it records about its provenance."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from s5lra.atomic import write_text
from s5lra.errors import CheckpointError, RunDirectoryError
from s5lra.train import checkpoint

RUN_FILES = ("metrics.jsonl", "results.json", "checkpoints")  # present once a run has started here


def claim(run_dir: Path, resume: str | None) -> Path | None:
    """Check the directory before anything is written; returns the checkpoint to resume from (None: fresh).

    resume: None refuses a directory that holds a run; "auto" continues this directory's `checkpoints/last`
    (starting fresh if there is none); a path continues that checkpoint here.
    """
    found = [name for name in RUN_FILES if (run_dir / name).exists()]
    if resume == "auto":
        try:
            return checkpoint.resolve(run_dir / "checkpoints" / "last")
        except CheckpointError:
            return None  # nothing saved yet: the caller says it starts fresh
    if found and (resume is None or run_dir not in Path(resume).absolute().parents):
        raise RunDirectoryError(
            f"{run_dir} already holds a run ({', '.join(found)}); nothing in it was changed. To continue that "
            f"run: trainer.resume=auto hydra.run.dir={run_dir}. For a new run leave hydra.run.dir unset: "
            f"every run gets a directory of its own.")
    return None if resume is None else checkpoint.resolve(resume)


def write_config(run_dir: Path, cfg, overrides: list[str]) -> None:
    """`.hydra/config.yaml` (the composed config, absolute data paths) and `.hydra/overrides.yaml`."""
    folder = run_dir / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    for name, node in (("config.yaml", OmegaConf.structured(cfg)), ("overrides.yaml", OmegaConf.create(overrides))):
        write_text(folder / name, OmegaConf.to_yaml(node))


def with_absolute_paths(cfg):
    """The config with its data paths made absolute, so the run reads the same data from any directory."""
    absolute = lambda p: str(Path(p).expanduser().absolute())  # noqa: E731
    return dataclasses.replace(cfg, paths=dataclasses.replace(cfg.paths, data_dir=absolute(cfg.paths.data_dir)),
                               dataset=dataclasses.replace(cfg.dataset, root=absolute(cfg.dataset.root)))


def provenance() -> dict:
    """Git commit of the code (and whether its tree had changes), the command line, library versions."""
    import flax
    import jax

    repo = Path(__file__).resolve().parents[3]

    def git(*args):
        try:
            out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = None if commit is None else bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"git_commit": commit, "git_dirty": dirty, "command": sys.argv, "jax_version": jax.__version__,
            "flax_version": flax.__version__}
