"""Perturb-then-diagonalise (S5-PTD, Yu et al. 2024): a small real E makes HiPPO-LegS + E diagonalisable.

The full LegS matrix A has eigenvalues −1…−N but eigenvectors with cond(V) ~ 1e10 (N = 16), so S5 diagonalises
only its normal part. Here E minimises cond₂(V(A + E))² + reg·‖E‖_F with Adam (eigenvector derivatives on), and
the layer starts from the eigendecomposition of A + E instead (docs/variants.md, section 2).

A solve takes seconds (N = 16) to minutes (N = 64), so each result is kept twice: in this process
(functools.cache) and on disk under $S5LRA_CACHE_DIR/ptd (default ${XDG_CACHE_HOME:-~/.cache}/s5lra/ptd), one
.npz per settings, written atomically.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from s5lra.atomic import replacing
from s5lra.cache import cache_dir

CACHE_VERSION = 1  # bump when the solver changes what a given set of settings produces


@dataclass(frozen=True)
class PTDSettings:
    """The solver's knobs; every field is part of the cache key. Defaults: the authors' N = 16 run."""

    reg: float = 3.0  # λ, weight of ‖E‖_F against cond(V)²
    lr: float = 0.05
    steps: int = 3000
    seed: int = 0
    init_scale: float = 1.0  # E starts as N(0, init_scale²) entries; from E ≈ 0 the eigenvectors are too ill-posed


@dataclass(frozen=True)
class PTDSolution:
    """Eigendecomposition of A + E (complex128, numpy's order sorted by (Im, Re)) and how good it is."""

    lam: np.ndarray  # (N,)
    v: np.ndarray  # (N, N), unit columns
    vinv: np.ndarray  # (N, N), the true inverse
    e: np.ndarray  # (N, N) real perturbation
    cond: float  # cond₂(V)
    rel_perturbation: float  # ‖E‖₂ / ‖A‖₂


def legs_matrix(n: int) -> np.ndarray:
    """The full HiPPO-LegS matrix: −√(2n+1)√(2k+1) below the diagonal, −(n+1) on it."""
    k = np.arange(n)
    q = np.sqrt(2 * k + 1.0)
    return -np.tril(np.outer(q, q), -1) - np.diag(k + 1.0)


def cache_path(n: int, settings: PTDSettings) -> Path:
    key = json.dumps({"n": n, "version": CACHE_VERSION, **asdict(settings)}, sort_keys=True)
    return cache_dir() / "ptd" / f"legs{n}_{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def optimise_perturbation(n: int, settings: PTDSettings) -> np.ndarray:
    """Adam on E; returns the iterate with the lowest loss (Adam at lr 0.05 oscillates around the optimum)."""
    import jax
    import jax.numpy as jnp
    import optax
    from jax import lax
    from jax.lax import linalg

    a = jnp.asarray(legs_matrix(n), jnp.float32)
    opt = optax.adam(settings.lr)

    def loss(e):
        # Right eigenvectors only; plain jnp.linalg.eig refuses to differentiate them.
        v = linalg.eig(a + e, compute_left_eigenvectors=False, enable_eigvec_derivs=True)[1]
        s = jnp.linalg.svd(v, compute_uv=False)
        return (s[0] / s[-1]) ** 2 + settings.reg * jnp.linalg.norm(e)

    def step(carry, _):
        e, state, best_e, best = carry
        value, grad = jax.value_and_grad(loss)(e)
        better = value < best
        best_e, best = jnp.where(better, e, best_e), jnp.where(better, value, best)
        updates, state = opt.update(grad, state, e)
        return (optax.apply_updates(e, updates), state, best_e, best), None

    def solve():
        with jax.default_device(jax.devices("cpu")[0]):  # the nonsymmetric eigensolver is a host routine
            e0 = settings.init_scale * jax.random.normal(jax.random.key(settings.seed), (n, n), jnp.float32)
            run = jax.jit(lambda e: lax.scan(step, (e, opt.init(e), e, jnp.inf), None, length=settings.steps)[0])
            return np.asarray(run(e0)[2], np.float64)

    # In a thread of its own: JAX's tracing state is per thread, so the solve runs now even when it is called
    # while a model's init is being traced (the layer's setup asks for its spectrum then).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(solve).result()


def decompose(e: np.ndarray) -> PTDSolution:
    """Float64 eigendecomposition of A + E, sorted by (Im, Re) so that each run lists the spectrum alike."""
    a = legs_matrix(e.shape[0])
    lam, v = np.linalg.eig(a + e)
    order = np.lexsort((lam.real, lam.imag))
    lam, v = lam[order], v[:, order]
    return PTDSolution(lam=lam, v=v, vinv=np.linalg.inv(v), e=e, cond=float(np.linalg.cond(v)),
                       rel_perturbation=float(np.linalg.norm(e, 2) / np.linalg.norm(a, 2)))


def _write_atomic(path: Path, arrays: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


@functools.cache
def solve_ptd(n: int, settings: PTDSettings = PTDSettings()) -> PTDSolution:
    """The PTD decomposition of LegS of size n: from this process, else the disk cache, else a fresh solve.

    The cache stores (Λ̃, Ṽ, Ṽ⁻¹) as solved, not just E, so that every machine starts from the same numbers
    (another LAPACK could order or phase the eigenvectors of A + E differently).
    """
    path = cache_path(n, settings)
    if path.exists():
        try:
            with np.load(path) as f:
                return PTDSolution(lam=f["lam"], v=f["v"], vinv=f["vinv"], e=f["e"], cond=float(f["cond"]),
                                   rel_perturbation=float(f["rel_perturbation"]))
        except (OSError, ValueError, KeyError):
            pass  # unreadable (a damaged or foreign file): solve again and overwrite it
    solution = decompose(optimise_perturbation(n, settings))
    _write_atomic(path, asdict(solution))
    return solution
