"""The Linear Recurrent Unit (Orvieto et al. 2023) on S5's pipeline: λ learned directly, no Δ, no pairing.

λ = exp(−exp(ν_log) + i·exp(θ_log)); x_k = λ ⊙ x_{k−1} + exp(γ_log) ⊙ (B u_k); y_k = Re(C x_k) + D ⊙ u_k, both
directions through the same recurrence backends as S5 (docs/variants.md, section 3).
Parameters: nu_log, theta_log, gamma_log (N,), B (N, H, 2), C (H, N, 2) or (H, 2N, 2) bidirectional, D (H,).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from s5lra.ssm.layer import project_input, recur_and_read, valid_mask

PARAM_NAMES = ("nu_log", "theta_log", "gamma_log", "B", "C", "D")


def init_nu_log(key, n_states: int, r_min: float, r_max: float):
    """ν_log (N,) float32 with |λ| = exp(−exp(ν_log)) uniform on the annulus r_min ≤ |λ| ≤ r_max (uniform in |λ|²)."""
    u = jnp.maximum(jax.random.uniform(key, (n_states,)), 1e-7)  # u = 0 with r_min = 0 would make ν infinite
    return jnp.log(-0.5 * jnp.log(u * (r_max**2 - r_min**2) + r_min**2))


def init_theta_log(key, n_states: int, max_phase: float):
    """θ_log (N,) with arg λ = max_phase·u, u uniform on (0, 1] (so arg λ > 0 and θ_log is finite)."""
    return jnp.log(max_phase * (1.0 - jax.random.uniform(key, (n_states,))))


def gamma_log_for(nu_log):
    """γ_log = log √(1 − |λ|²): under white input each state's stationary variance then equals its input's.
    1 − |λ|² = −expm1(−2ν) stays accurate where |λ| rounds to 1 in float32."""
    return 0.5 * jnp.log(-jnp.expm1(-2.0 * jnp.exp(nu_log)))


def init_B(key, n_states: int, d_model: int):
    """Real and imaginary parts N(0, 1/(2H)): (N, H, 2)."""
    return jax.random.normal(key, (n_states, d_model, 2), jnp.float32) / np.sqrt(2 * d_model)


def init_C(key, n_states: int, d_model: int, bidirectional: bool):
    """Real and imaginary parts N(0, 1/N): (H, N, 2), or (H, 2N, 2) (two independent draws, forward first)."""
    width = 2 * n_states if bidirectional else n_states
    return jax.random.normal(key, (d_model, width, 2), jnp.float32) / np.sqrt(n_states)


def lru_lambda(params):
    """λ (N,) complex64 from (ν_log, θ_log)."""
    magnitude = jnp.exp(-jnp.exp(params["nu_log"]))
    phase = jnp.exp(params["theta_log"])
    return jax.lax.complex(magnitude * jnp.cos(phase), magnitude * jnp.sin(phase))


def input_matrix(params):
    """γ ⊙ B as complex (N, H)."""
    return jnp.exp(params["gamma_log"])[:, None] * (params["B"][..., 0] + 1j * params["B"][..., 1])


def apply_lru(params, u, *, bidirectional: bool, scan: str = "auto", lengths=None):
    """Run an LRU layer over u of shape (L, H) or (batch, L, H); returns y of the same shape.

    lengths: as in `apply_s5` (inputs at positions >= length are zeroed; the reverse direction starts at the end).
    """
    if lengths is not None:
        u = u * valid_mask(lengths, u.shape[-2])
    bu = project_input(input_matrix(params), u)
    y = recur_and_read(lru_lambda(params), bu, params["C"], False, bidirectional, scan)
    return y + params["D"] * u
