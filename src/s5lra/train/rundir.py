"""The run directory: one run per directory (locked while it runs), its composed config, and its provenance.

A run holds an exclusive lock (`flock`) on `<run_dir>/.lock` from before it writes anything until it ends; the
operating system drops the lock when the process dies, however it dies, so a lock is never stale: a run
that was killed leaves `results.json` saying `running` with nobody holding the lock (`is_active`), and the
next start in that directory says so. The lock file holds the holder's pid, host and start time, for the
message that refuses a second run. It is never deleted or replaced (that would hand out a second lock).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import jax
import numpy as np
from omegaconf import OmegaConf

from s5lra.atomic import remove, temporaries, write_text
from s5lra.errors import RunDirectoryError, StorageError
from s5lra.train import checkpoint

log = logging.getLogger("s5lra")

LOCK = ".lock"
RUN_FILES = ("metrics.jsonl", "results.json", "checkpoints")  # present once a run has started here
RUNNING = "running"  # results.json's status while the run is alive


@dataclasses.dataclass
class Claim:
    """What `claimed` found: the checkpoint to start from (None: fresh) and its record."""

    checkpoint: Path | None = None
    record: dict | None = None


def process() -> str:
    """This process, as the lock file and a running results.json name it."""
    return f"pid {os.getpid()} on host {socket.gethostname()}"


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode(errors="replace").strip()
    return text or "unknown process"


def _lock(run_dir: Path) -> int | None:
    """The locked descriptor of `<run_dir>/.lock` (None where the filesystem cannot lock: a warning)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise StorageError(f"cannot create the run directory's lock {run_dir / LOCK}: {err.strerror or err}") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            holder = _holder(fd)
            os.close(fd)
            raise RunDirectoryError(f"{run_dir} is in use by another run ({holder}); nothing in it was changed. "
                                    f"Leave hydra.run.dir unset for a new run, or wait for that one to end.") from None
        os.close(fd)
        log.warning("cannot lock %s (%s): this filesystem does not stop two runs from sharing the directory",
                    run_dir / LOCK, err.strerror or err)
        return None
    return fd


def is_active(run_dir: str | Path) -> bool:
    """Whether a live process holds the run directory's lock."""
    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError as err:
        return err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    finally:
        os.close(fd)  # closing drops a lock taken here


def read_results(run_dir: Path) -> dict:
    try:
        results = json.loads((run_dir / "results.json").read_text())
        return results if isinstance(results, dict) else {}
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def claimed(run_dir: Path, resume: str | None) -> Iterator[Claim]:
    """Hold the run directory for the block (process 0 locks it; all processes agree on the outcome) and find
    the checkpoint to start from. Nothing is written unless the directory may be used.

    resume: None refuses a directory that holds a run; "auto" continues this directory's newest intact
    `checkpoints/last` (fresh if there is none; a damaged save is skipped with a log line); a path continues
    that checkpoint (refused if damaged, naming the intact ones). A checkpoint of this directory that is older
    than its newest saves starts a new branch: the later saves are moved to `checkpoints/abandoned/`.
    """
    lead = jax.process_index() == 0
    fd, refusal = None, None
    if lead:
        try:
            fd = _lock(run_dir)
            _check_free(run_dir, resume)
        except (RunDirectoryError, StorageError) as err:
            refusal = err
            if fd is not None:
                os.close(fd)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        ok = multihost_utils.broadcast_one_to_all(np.int32(refusal is None))
        if not ok and not lead:
            raise RunDirectoryError(f"process 0 could not use the run directory {run_dir} (see its log)")
    if refusal is not None:
        raise refusal
    try:
        claim = _find_checkpoint(run_dir, resume)
        if lead:
            _tidy(run_dir, claim)
            if fd is not None:  # in place: replacing the file would hand out a second lock
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{process()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        yield claim
    finally:
        if fd is not None:
            os.close(fd)  # drops the lock


def _check_free(run_dir: Path, resume: str | None) -> None:
    found = [name for name in RUN_FILES if (run_dir / name).exists()]
    if not found or resume == "auto" or (resume is not None and run_dir in Path(resume).absolute().parents):
        return
    raise RunDirectoryError(
        f"{run_dir} already holds a run ({', '.join(found)}); nothing in it was changed. To continue that "
        f"run: trainer.resume=auto hydra.run.dir={run_dir}. For a new run leave hydra.run.dir unset: "
        f"every run gets a directory of its own.")


def _find_checkpoint(run_dir: Path, resume: str | None) -> Claim:
    if resume is None:
        return Claim()
    if resume == "auto":
        found = checkpoint.newest_intact(run_dir / "checkpoints" / "last")
        if found is None:
            log.info("trainer.resume=auto: no checkpoint (intact) in %s; starting fresh", run_dir)
            return Claim()
        return Claim(*found)
    path = checkpoint.resolve(resume)
    return Claim(path, checkpoint.verify(path))


def _tidy(run_dir: Path, claim: Claim) -> None:
    """Before a run writes: say if the previous process of this run was killed, remove what killed writers
    left, and move the saves of an abandoned branch aside."""
    previous = read_results(run_dir)
    if previous.get("status") == RUNNING:
        log.warning("the previous process of this run (%s) ended without closing it (killed?) at or after step %s",
                    previous.get("process", "unknown"), previous.get("steps"))
    for folder in (run_dir, run_dir / ".hydra", *(run_dir / "checkpoints" / kind for kind in checkpoint.KINDS)):
        for tmp in temporaries(folder):
            log.info("removing %s (left by an interrupted write)", tmp)
            remove(tmp)
    ckpts = run_dir / "checkpoints"
    if claim.checkpoint is not None and ckpts in claim.checkpoint.parents:
        step = int(claim.record["step"])
        aside = checkpoint.Checkpoints(ckpts).abandon_after(step)
        if aside is not None:
            log.warning("resuming from step %d of this run: its later checkpoints (another branch, or damaged ones "
                        "passed over) were moved to %s", step, aside)


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
