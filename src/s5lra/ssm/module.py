"""Flax module for one SSM layer of the S5 family: owns the parameters (canonical names and shapes), calls the
pure function of its kind (`apply_s5`, `apply_selective_s5`, `apply_lru`)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from s5lra.ssm import init as ssm_init
from s5lra.ssm import lru, selective
from s5lra.ssm.config import SSMConfig
from s5lra.ssm.diag_init import adjust_spectrum, diagonal_init
from s5lra.ssm.layer import apply_s5, discretize, project_input, readout

PARAM_NAMES = ("Lambda_re", "Lambda_im", "B", "C", "D", "log_step")


class S5SSM(nn.Module):
    """SSM layer mapping (…, L, H) -> (…, L, H), configured by an `SSMConfig`.

    kind=s5: S5 from the diagonal initialisation `cfg.init`; with cfg.conj_sym it keeps P' = state_size/2 complex
    states; cfg.selective adds the input-dependent step (delta_W1, delta_W2). kind=lru: the LRU with state_size
    complex states. `step` runs the layer as an RNN, one input at a time (unidirectional layers only).
    """

    cfg: SSMConfig
    d_model: int

    def setup(self):
        cfg = self.cfg
        if cfg.kind == "lru":
            self._setup_lru()
            return
        lam, v, vinv = diagonal_init(cfg.init, cfg.state_size, cfg.blocks, cfg.conj_sym, ptd=cfg.ptd_settings())
        lam = adjust_spectrum(lam, cfg.freq_scale, cfg.force_neg)
        self.Lambda_re = self.param("Lambda_re", lambda _: jnp.asarray(lam.real, jnp.float32))
        self.Lambda_im = self.param("Lambda_im", lambda _: jnp.asarray(lam.imag, jnp.float32))
        self.B = self.param("B", lambda k: ssm_init.init_B(k, vinv, self.d_model))
        self.C = self.param("C", lambda k: ssm_init.init_C(k, v, self.d_model, cfg.C_init, cfg.bidirectional))
        self.D = self.param("D", lambda k: ssm_init.init_D(k, self.d_model))
        self.log_step = self.param(
            "log_step", lambda k: ssm_init.init_log_step(k, lam.shape[0], cfg.dt_min, cfg.dt_max)
        )
        if cfg.selective:
            rank = cfg.selective_rank or selective.default_rank(self.d_model)
            self.delta_W1 = self.param("delta_W1", lambda k: selective.init_W1(k, self.d_model, rank))
            self.delta_W2 = self.param("delta_W2", nn.initializers.zeros_init(), (rank, lam.shape[0]))

    def _setup_lru(self):
        cfg, n = self.cfg, self.cfg.state_size
        self.nu_log = self.param("nu_log", lambda k: lru.init_nu_log(k, n, cfg.r_min, cfg.r_max))
        self.theta_log = self.param("theta_log", lambda k: lru.init_theta_log(k, n, cfg.max_phase))
        self.gamma_log = self.param("gamma_log", lambda _: lru.gamma_log_for(self.nu_log))
        self.B = self.param("B", lambda k: lru.init_B(k, n, self.d_model))
        self.C = self.param("C", lambda k: lru.init_C(k, n, self.d_model, cfg.bidirectional))
        self.D = self.param("D", lambda k: ssm_init.init_D(k, self.d_model))

    def _params(self):
        cfg = self.cfg
        names = lru.PARAM_NAMES if cfg.kind == "lru" else PARAM_NAMES + (selective.PARAM_NAMES if cfg.selective
                                                                         else ())
        return {name: getattr(self, name) for name in names}

    def __call__(self, u, lengths=None):
        cfg = self.cfg
        if cfg.kind == "lru":
            return lru.apply_lru(self._params(), u, bidirectional=cfg.bidirectional, scan=cfg.scan, lengths=lengths)
        apply = selective.apply_selective_s5 if cfg.selective else apply_s5
        return apply(self._params(), u, conj_sym=cfg.conj_sym, bidirectional=cfg.bidirectional,
                     discretization=cfg.discretization, clip_eigs=cfg.clip_eigs, step_rescale=cfg.step_rescale,
                     scan=cfg.scan, lengths=lengths)

    def initial_state(self, batch_shape=()):
        """Zero state, complex64 of shape (*batch_shape, P')."""
        n = self.nu_log.shape[0] if self.cfg.kind == "lru" else self.Lambda_re.shape[0]
        return jnp.zeros((*batch_shape, n), jnp.complex64)

    def step(self, state, u_k):
        """One recurrence step: (state (…, P'), u_k (…, H)) -> (new state, y_k (…, H))."""
        cfg = self.cfg
        if cfg.bidirectional:
            raise ValueError("step mode needs a causal layer: set model.ssm.bidirectional=false")
        params = self._params()
        if cfg.kind == "lru":
            state = lru.lru_lambda(params) * state + project_input(lru.input_matrix(params), u_k)
            return state, readout(self.C, state, False) + self.D * u_k
        if cfg.selective:
            lam_bar, bu = selective.selective_system(params, u_k[..., None, :], discretization=cfg.discretization,
                                                     clip_eigs=cfg.clip_eigs, step_rescale=cfg.step_rescale)
            state = lam_bar[..., 0, :] * state + bu[..., 0, :]
        else:
            lam_bar, b_bar = discretize(params, discretization=cfg.discretization, clip_eigs=cfg.clip_eigs,
                                        step_rescale=cfg.step_rescale)
            state = lam_bar * state + project_input(b_bar, u_k)
        return state, readout(self.C, state, cfg.conj_sym) + self.D * u_k
