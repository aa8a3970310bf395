"""The Linear Recurrent Unit (Orvieto et al. 2023) on S5's pipeline: λ learned directly, no Δ, no pairing.

λ = exp(−exp(ν_log) + i·exp(θ_log)); x_k = λ ⊙ x_{k−1} + exp(γ_log) ⊙ (B u_k); y_k = Re(C x_k) + D ⊙ u_k, both
directions through the same recurrence backends and readout as S5 (docs/variants.md, section 3).
Parameters: nu_log, theta_log, gamma_log (N,), B (N, H, 2), C (H, N, 2) or (H, 2N, 2) bidirectional, D (H,).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from s5lra.errors import InvalidSetting, check_choice
from s5lra.ssm.init import init_D
from s5lra.ssm.layer import project_input, readout, recur_and_read, valid_mask
from s5lra.ssm.recurrence import METHODS

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


@dataclass
class LRUConfig:
    """One LRU layer: `state_size` complex states (no conjugate pairs, no blocks), |λ| uniform on the annulus
    [r_min, r_max], arg λ uniform on (0, max_phase]."""

    state_size: int = 64
    bidirectional: bool = True
    scan: str = "auto"  # auto | one of ssm.recurrence.METHODS
    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 2 * math.pi

    def check(self) -> None:
        """Raise InvalidSetting (naming the field) for a value the layer cannot use."""
        if self.state_size <= 0:
            raise InvalidSetting("state_size", self.state_size, "must be positive")
        check_choice("scan", self.scan, ("auto", *METHODS))
        if not 0 <= self.r_min <= self.r_max <= 1:
            raise InvalidSetting("r_min", self.r_min, f"need 0 <= r_min <= r_max <= 1 (r_max={self.r_max})")
        if not 0 < self.max_phase <= 2 * math.pi:
            raise InvalidSetting("max_phase", self.max_phase, "must lie in (0, 2π]")


class LRU(nn.Module):
    """LRU layer mapping (…, L, H) -> (…, L, H), configured by an `LRUConfig`; owns the parameters and calls
    `apply_lru`. `step` runs a unidirectional layer as an RNN, one input at a time."""

    cfg: LRUConfig
    d_model: int

    def setup(self):
        cfg, n = self.cfg, self.cfg.state_size
        self.nu_log = self.param("nu_log", lambda k: init_nu_log(k, n, cfg.r_min, cfg.r_max))
        self.theta_log = self.param("theta_log", lambda k: init_theta_log(k, n, cfg.max_phase))
        self.gamma_log = self.param("gamma_log", lambda _: gamma_log_for(self.nu_log))
        self.B = self.param("B", lambda k: init_B(k, n, self.d_model))
        self.C = self.param("C", lambda k: init_C(k, n, self.d_model, cfg.bidirectional))
        self.D = self.param("D", lambda k: init_D(k, self.d_model))

    def _params(self):
        return {name: getattr(self, name) for name in PARAM_NAMES}

    def __call__(self, u, lengths=None):
        return apply_lru(self._params(), u, bidirectional=self.cfg.bidirectional, scan=self.cfg.scan, lengths=lengths)

    def initial_state(self, batch_shape=()):
        """Zero state, complex64 of shape (*batch_shape, N)."""
        return jnp.zeros((*batch_shape, self.cfg.state_size), jnp.complex64)

    def step(self, state, u_k):
        """One recurrence step: (state (…, N), u_k (…, H)) -> (new state, y_k (…, H))."""
        if self.cfg.bidirectional:
            raise ValueError("step mode needs a causal layer: set model.ssm.bidirectional=false")
        params = self._params()
        state = lru_lambda(params) * state + project_input(input_matrix(params), u_k)
        return state, readout(self.C, state, False) + self.D * u_k
