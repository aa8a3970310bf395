"""Whether the Pallas scan kernel works on this GPU: checked once, in a subprocess, remembered on disk.

XLA's Triton compile has crashed processes and returned wrong results on GPUs before (openxla/xla#17356,
#19780), so `scan=auto` never trusts the kernel untested. The first time a process needs the recurrence on a
GPU, a child process (`python -m s5lra.ssm.selfcheck --child`) runs the kernel's forward pass and gradient in
both directions on awkward shapes (L not a multiple of the chunk, an odd number of states, batch 3) and
compares them with `lax.scan`. Pass -> "pallas"; an error, a crash, a timeout or a wrong answer ->
"associative", with one warning line naming the cause and the child's log file.

The verdict is cached as JSON under $S5LRA_CACHE_DIR (default ${XDG_CACHE_HOME:-~/.cache}/s5lra), keyed by the
JAX version, the device kind and a hash of the kernel's source and this check's, so later runs skip the
check; delete the file to check again. Training entry points call `resolve_scan(cfg.model.ssm.scan)` once at
start-up, outside any jit trace: in a multi-process run process 0 decides and every process uses its verdict.
`recurrence.resolve_method("auto")`, which runs while tracing, reads the verdict through `gpu_scan()`.

    python -m s5lra.ssm.selfcheck [--force]   # run the check (or read the cache); print the verdict as JSON
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from s5lra.atomic import write_text
from s5lra.cache import cache_dir

log = logging.getLogger(__name__)

SCANS = ("associative", "pallas")  # index = the code broadcast from process 0
TOLERANCE = 1e-5  # relative error (2-norm) against lax.scan; a broken kernel is off by O(1)
TIMEOUT_S = 120.0
# The child's problem: 3 chunks of 256 with a partial last one, 37 states = one full and one partial block of
# 32; decays |a| <= 0.99 keep float32 round-off near 1e-6, well inside the tolerance.
BATCH, LENGTH, STATES = 3, 600, 37
_SOURCES = ("pallas_scan.py", "selfcheck.py")

_verdict: "Verdict | None" = None  # this process's verdict, once known


@dataclasses.dataclass
class Verdict:
    scan: str  # "pallas" or "associative"
    cause: str | None  # why not "pallas"; None when the check passed
    seconds: float  # how long the check took (when it ran)
    log: str  # the child's output
    jax: str
    device_kind: str
    kernel: str  # hash of the kernel's and this check's source
    errors: dict | None = None  # relative error per direction and output
    cached: str | None = None  # the cache file, when read from there


def timeout_s() -> float:
    return float(os.environ.get("S5LRA_SELFCHECK_TIMEOUT", TIMEOUT_S))


def cache_key() -> dict:
    """What the verdict depends on: JAX, the device, and the kernel's (and this check's) code."""
    digest = hashlib.sha256()
    for name in _SOURCES:
        digest.update((Path(__file__).parent / name).read_bytes())
    return {"jax": jax.__version__, "device_kind": jax.devices()[0].device_kind, "kernel": digest.hexdigest()[:16]}


def _paths(key: dict) -> tuple[Path, Path]:
    tag = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_dir() / "selfcheck"
    return folder / f"{tag}.json", folder / f"{tag}.log"


def _launch_child(log_path: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run the child check; its stderr goes to `log_path`, its stdout (the JSON result) comes back.

    Raises subprocess.TimeoutExpired after `timeout` seconds (the child is killed)."""
    src = str(Path(__file__).resolve().parents[2])  # so the child imports this very package
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
           "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}  # the parent may already hold most of the GPU's memory
    with open(log_path, "w") as stderr:
        return subprocess.run([sys.executable, "-m", "s5lra.ssm.selfcheck", "--child"], stdout=subprocess.PIPE,
                              stderr=stderr, text=True, timeout=timeout, env=env)


def _last_line(path: Path) -> str:
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def _judge(proc: subprocess.CompletedProcess, log_path: Path) -> tuple[str | None, dict | None]:
    """(cause of failure or None, relative errors) from the child's exit status and output."""
    error = _last_line(log_path)  # an exception's last line, from stderr
    with open(log_path, "a") as f:  # keep the child's stdout with its stderr
        f.write(proc.stdout or "")
    if proc.returncode < 0:
        return f"crashed with signal {-proc.returncode}", None
    if proc.returncode != 0:
        return f"raised an error (exit {proc.returncode}): {error}", None
    try:
        errors = json.loads(proc.stdout.strip().splitlines()[-1])["errors"]
    except (ValueError, IndexError, KeyError, TypeError):
        return "printed no result", None
    bad = {name: err for name, err in errors.items() if not err <= TOLERANCE}  # NaN fails too
    if bad:
        worst = max(bad, key=lambda name: bad[name] if np.isfinite(bad[name]) else np.inf)
        return f"wrong results: relative error {bad[worst]:.2g} > {TOLERANCE:g} ({worst})", errors
    return None, errors


def run_check(key: dict) -> Verdict:
    """Run the child once and judge it (no cache involved)."""
    _, log_path = _paths(key)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    errors = None
    try:
        cause, errors = _judge(_launch_child(log_path, timeout_s()), log_path)
    except subprocess.TimeoutExpired:
        cause = f"timed out after {timeout_s():g} s"
    except OSError as err:
        cause = f"could not start: {err}"
    return Verdict("associative" if cause else "pallas", cause, time.perf_counter() - started, str(log_path),
                   errors=errors, **key)


def _save(path: Path, verdict: Verdict) -> None:
    write_text(path, json.dumps(dataclasses.asdict(verdict), indent=1) + "\n")


def check(force: bool = False) -> Verdict:
    """The cached verdict for this JAX, device and kernel, or a fresh check (saved) if there is none."""
    key = cache_key()
    path, _ = _paths(key)
    if not force and path.exists():
        try:
            fields = json.loads(path.read_text())
            return dataclasses.replace(Verdict(**fields), cached=str(path))
        except (ValueError, TypeError):
            pass  # unreadable: check again and overwrite it
    verdict = run_check(key)
    _save(path, verdict)
    return verdict


def _announce(verdict: Verdict) -> None:
    if verdict.cause is None:
        log.info("scan=auto: the Pallas scan kernel passed its self-check on %s; using scan=pallas",
                 verdict.device_kind)
        return
    again = f" (cached: delete {verdict.cached} to check again)" if verdict.cached else ""
    log.warning("scan=auto: the Pallas scan kernel failed its self-check on %s (%s); using scan=associative. "
                "Log: %s%s", verdict.device_kind, verdict.cause, verdict.log, again)


def _decide() -> Verdict:
    global _verdict
    _verdict = check()
    _announce(_verdict)
    return _verdict


def gpu_scan() -> str:
    """What `auto` means on this GPU; runs (or reads) the check the first time in a single-process run.

    A multi-process run must have called `resolve_scan` at start-up (a collective: it cannot run while
    tracing); if it did not, every process takes the associative scan, so all of them run the same program."""
    global _verdict
    if _verdict is not None:
        return _verdict.scan
    if jax.process_count() > 1:
        log.warning("scan=auto: no self-check verdict in this multi-process run (call "
                    "s5lra.ssm.selfcheck.resolve_scan at start-up); using scan=associative")
        _verdict = Verdict("associative", "resolve_scan was not called", 0.0, "", **cache_key())  # warn once
        return _verdict.scan
    return _decide().scan


def resolve_scan(method: str) -> str:
    """The scan method to use for `model.ssm.scan=method`: an explicit method as given; "auto" resolved,
    on a GPU by the self-check (process 0 decides in a multi-process run). Call once, outside any trace."""
    from s5lra.ssm.recurrence import resolve_method

    global _verdict
    if method != "auto" or jax.default_backend() != "gpu":
        return resolve_method(method)
    if _verdict is None and jax.process_count() > 1:
        from jax.experimental import multihost_utils

        code = SCANS.index(_decide().scan) if jax.process_index() == 0 else 0
        scan = SCANS[int(multihost_utils.broadcast_one_to_all(np.int32(code)))]
        if jax.process_index() != 0:
            key = cache_key()
            _verdict = Verdict(scan, None if scan == "pallas" else "process 0's self-check failed", 0.0,
                               "(on process 0)", **key)
    return gpu_scan()


def _child() -> None:
    """Kernel against lax.scan (forward and gradient, both directions); prints {"errors": {...}} as JSON."""
    import jax.numpy as jnp

    from s5lra.ssm.pallas_scan import pallas_recurrence
    from s5lra.ssm.recurrence import sequential

    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.uniform(0.5, 0.99, STATES) * np.exp(1j * rng.uniform(-1, 1, STATES)), jnp.complex64)
    b, w = (jnp.asarray(rng.normal(size=(BATCH, LENGTH, STATES)) + 1j * rng.normal(size=(BATCH, LENGTH, STATES)),
                        jnp.complex64) for _ in range(2))

    def outputs(scan, reverse):
        fwd = jax.jit(lambda a, b: scan(a, b, reverse=reverse))
        loss = lambda a, b: jnp.sum((scan(a, b, reverse=reverse) * jnp.conj(w)).real)
        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        return [np.asarray(v) for v in (fwd(a, b), *grad(a, b))]

    errors = {}
    for reverse in (False, True):
        got = outputs(pallas_recurrence, reverse)
        want = outputs(sequential, reverse)
        for name, g, r in zip(("x", "grad_a", "grad_b"), got, want):
            errors[f"{'reverse' if reverse else 'forward'}/{name}"] = float(np.linalg.norm(g - r) / np.linalg.norm(r))
    print(json.dumps({"errors": errors, "backend": jax.default_backend()}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m s5lra.ssm.selfcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="check again even if a verdict is cached")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child()
        return 0
    verdict = check(force=args.force)
    print(json.dumps(dataclasses.asdict(verdict)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
