"""Flax module for one S5 layer: owns the parameters (canonical names and shapes), calls `apply_s5`."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from s5lra.ssm import init as ssm_init
from s5lra.ssm.layer import apply_s5, discretize, project_input, readout


class S5SSM(nn.Module):
    """S5 SSM layer mapping (…, L, H) -> (…, L, H).

    state_size is the paper's P; with conj_sym the layer keeps P' = P/2 complex states.
    `step` runs it as an RNN, one input at a time (unidirectional layers only).
    """

    d_model: int
    state_size: int
    blocks: int = 1
    conj_sym: bool = True
    bidirectional: bool = True
    C_init: str = "lecun_normal"
    discretization: str = "zoh"
    dt_min: float = 1e-3
    dt_max: float = 0.1
    clip_eigs: bool = False
    step_rescale: float = 1.0
    scan: str = "auto"

    def setup(self):
        lam, v, vinv = ssm_init.hippo_init(self.state_size, self.blocks, self.conj_sym)
        n = lam.shape[0]
        self.Lambda_re = self.param("Lambda_re", lambda _: jnp.asarray(lam.real, jnp.float32))
        self.Lambda_im = self.param("Lambda_im", lambda _: jnp.asarray(lam.imag, jnp.float32))
        self.B = self.param("B", lambda k: ssm_init.init_B(k, vinv, self.d_model))
        self.C = self.param("C", lambda k: ssm_init.init_C(k, v, self.d_model, self.C_init, self.bidirectional))
        self.D = self.param("D", lambda k: ssm_init.init_D(k, self.d_model))
        self.log_step = self.param(
            "log_step", lambda k: ssm_init.init_log_step(k, n, self.dt_min, self.dt_max)
        )

    def _params(self):
        names = ("Lambda_re", "Lambda_im", "B", "C", "D", "log_step")
        return {name: getattr(self, name) for name in names}

    def _discretized(self):
        return discretize(
            self._params(),
            discretization=self.discretization,
            clip_eigs=self.clip_eigs,
            step_rescale=self.step_rescale,
        )

    def __call__(self, u, lengths=None):
        return apply_s5(
            self._params(),
            u,
            conj_sym=self.conj_sym,
            bidirectional=self.bidirectional,
            discretization=self.discretization,
            clip_eigs=self.clip_eigs,
            step_rescale=self.step_rescale,
            scan=self.scan,
            lengths=lengths,
        )

    def initial_state(self, batch_shape=()):
        """Zero state, complex64 of shape (*batch_shape, P')."""
        return jnp.zeros((*batch_shape, self.Lambda_re.shape[0]), jnp.complex64)

    def step(self, state, u_k):
        """One recurrence step: (state (…, P'), u_k (…, H)) -> (new state, y_k (…, H))."""
        if self.bidirectional:
            raise ValueError("step mode needs a causal layer: set model.ssm.bidirectional=false")
        lam_bar, b_bar = self._discretized()
        state = lam_bar * state + project_input(b_bar, u_k)
        return state, readout(self.C, state, self.conj_sym) + self.D * u_k

