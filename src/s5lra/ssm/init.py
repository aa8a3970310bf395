"""Initialisation of the S5 parameters, as in the paper and the official code.

Everything here returns NumPy (HiPPO, computed once per layer shape) or samples with JAX initialisers so the
random draws match the official implementation's distributions.
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp
from scipy.linalg import block_diag

from s5lra.errors import InvalidSetting

C_INITS = ("trunc_standard_normal", "lecun_normal", "complex_normal")


def hippo_legs_normal(n: int) -> np.ndarray:
    """Normal part S = A + p pᵀ of the HiPPO-LegS matrix A (size n); its diagonal is -1/2 everywhere."""
    k = np.arange(n)
    q = np.sqrt(2 * k + 1.0)
    a = -np.tril(np.outer(q, q), -1) - np.diag(k + 1.0)
    p = np.sqrt(k + 0.5)
    return a + np.outer(p, p)


def hippo_init(state_size: int, blocks: int, conj_sym: bool = True):
    """Block-diagonal diagonalised HiPPO-LegS normal part.

    Each of the `blocks` blocks has size N = state_size / blocks. S = -1/2 I + (skew-symmetric), so its
    eigenvalues are -1/2 + i·eig(-i S_skew), found with a Hermitian eigensolver (ascending). With conj_sym only
    the first N/2 (negative imaginary parts, one per conjugate pair) are kept.

    Returns (Lambda (P',) complex128, V (state_size, P') complex128, Vinv (P', state_size)), P' = state_size/2
    with conj_sym, else state_size. V's blocks have orthonormal columns, so Vinv = Vᴴ.
    """
    if state_size % blocks:
        raise InvalidSetting("state_size", state_size, f"is not divisible by blocks={blocks}")
    n = state_size // blocks
    if conj_sym and n % 2:
        raise InvalidSetting("state_size", state_size, f"conj_sym needs an even block size; state_size/blocks = {n}")
    s = hippo_legs_normal(n)
    lambda_re = np.mean(np.diag(s))
    lambda_im, v = np.linalg.eigh(-1j * (s - np.diag(np.diag(s))))
    keep = n // 2 if conj_sym else n
    lam = lambda_re + 1j * lambda_im[:keep]
    v = v[:, :keep]
    return np.tile(lam, blocks), block_diag(*[v] * blocks), block_diag(*[v.conj().T] * blocks)


def as_pairs(z) -> jnp.ndarray:
    """Complex array -> float32 array with a trailing (real, imag) axis."""
    return jnp.stack([jnp.real(z), jnp.imag(z)], axis=-1).astype(jnp.float32)


def init_B(key, vinv: np.ndarray, d_model: int) -> jnp.ndarray:
    """B~ = V⁻¹ B with B real (P, H) from lecun_normal (truncated normal, variance 1/P); returns (P', H, 2)."""
    b = jax.nn.initializers.lecun_normal()(key, (vinv.shape[1], d_model), jnp.float32)
    return as_pairs(jnp.asarray(vinv, jnp.complex64) @ b.astype(jnp.complex64))


def init_C(key, v: np.ndarray, d_model: int, C_init: str, bidirectional: bool) -> jnp.ndarray:
    """Readout C~, shape (H, P', 2), or (H, 2P', 2) when bidirectional (forward columns first).

    - trunc_standard_normal: per output row, lecun_normal on (1, P, 2): std ≈ 1/sqrt(P) (not unit variance,
      despite the official name); then C~ = C V.
    - lecun_normal: one lecun_normal draw on (H, P, 2) (fan_in = P·H); then C~ = C V.
    - complex_normal: real and imaginary parts N(0, 1/2) directly in the eigenbasis (no V).
    Bidirectional draws the two directions' C independently.
    """
    full, half = v.shape
    if C_init == "complex_normal":
        width = 2 * half if bidirectional else half
        return jax.random.normal(key, (d_model, width, 2), jnp.float32) * np.sqrt(0.5)

    def one(k):
        if C_init == "lecun_normal":
            c = jax.nn.initializers.lecun_normal()(k, (d_model, full, 2), jnp.float32)
        else:  # trunc_standard_normal
            rows = jax.random.split(k, d_model)
            c = jax.vmap(lambda r: jax.nn.initializers.lecun_normal()(r, (1, full, 2), jnp.float32)[0])(rows)
        return (c[..., 0] + 1j * c[..., 1]) @ jnp.asarray(v, jnp.complex64)

    if bidirectional:
        k1, k2 = jax.random.split(key)
        return as_pairs(jnp.concatenate([one(k1), one(k2)], axis=-1))
    return as_pairs(one(key))


def init_D(key, d_model: int) -> jnp.ndarray:
    """Feedthrough D ~ N(0, 1) per feature."""
    return jax.random.normal(key, (d_model,), jnp.float32)


def init_log_step(key, n_states: int, dt_min: float, dt_max: float) -> jnp.ndarray:
    """One log time step per state, uniform on [log dt_min, log dt_max]."""
    return jax.random.uniform(key, (n_states,), jnp.float32, np.log(dt_min), np.log(dt_max))
