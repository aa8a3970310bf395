"""Flax module for one S5 layer: owns the parameters (canonical names and shapes), calls `apply_s5`."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from s5lra.ssm import init as ssm_init
from s5lra.ssm.config import SSMConfig
from s5lra.ssm.layer import apply_s5, discretize, project_input, readout

PARAM_NAMES = ("Lambda_re", "Lambda_im", "B", "C", "D", "log_step")


class S5SSM(nn.Module):
    """S5 SSM layer mapping (…, L, H) -> (…, L, H), configured by an `SSMConfig`.

    With cfg.conj_sym the layer keeps P' = state_size/2 complex states.
    `step` runs it as an RNN, one input at a time (unidirectional layers only).
    """

    cfg: SSMConfig
    d_model: int

    def setup(self):
        cfg = self.cfg
        lam, v, vinv = ssm_init.hippo_init(cfg.state_size, cfg.blocks, cfg.conj_sym)
        self.Lambda_re = self.param("Lambda_re", lambda _: jnp.asarray(lam.real, jnp.float32))
        self.Lambda_im = self.param("Lambda_im", lambda _: jnp.asarray(lam.imag, jnp.float32))
        self.B = self.param("B", lambda k: ssm_init.init_B(k, vinv, self.d_model))
        self.C = self.param("C", lambda k: ssm_init.init_C(k, v, self.d_model, cfg.C_init, cfg.bidirectional))
        self.D = self.param("D", lambda k: ssm_init.init_D(k, self.d_model))
        self.log_step = self.param(
            "log_step", lambda k: ssm_init.init_log_step(k, lam.shape[0], cfg.dt_min, cfg.dt_max)
        )

    def _params(self):
        return {name: getattr(self, name) for name in PARAM_NAMES}

    def __call__(self, u, lengths=None):
        cfg = self.cfg
        return apply_s5(self._params(), u, conj_sym=cfg.conj_sym, bidirectional=cfg.bidirectional,
                        discretization=cfg.discretization, clip_eigs=cfg.clip_eigs,
                        step_rescale=cfg.step_rescale, scan=cfg.scan, lengths=lengths)

    def initial_state(self, batch_shape=()):
        """Zero state, complex64 of shape (*batch_shape, P')."""
        return jnp.zeros((*batch_shape, self.Lambda_re.shape[0]), jnp.complex64)

    def step(self, state, u_k):
        """One recurrence step: (state (…, P'), u_k (…, H)) -> (new state, y_k (…, H))."""
        cfg = self.cfg
        if cfg.bidirectional:
            raise ValueError("step mode needs a causal layer: set model.ssm.bidirectional=false")
        lam_bar, b_bar = discretize(self._params(), discretization=cfg.discretization, clip_eigs=cfg.clip_eigs,
                                    step_rescale=cfg.step_rescale)
        state = lam_bar * state + project_input(b_bar, u_k)
        return state, readout(self.C, state, cfg.conj_sym) + self.D * u_k
