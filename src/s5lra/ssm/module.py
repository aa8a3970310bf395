"""Flax modules of the S5 family: `S5SSM` owns S5's parameters (canonical names and shapes) and calls
`apply_s5` or `apply_selective_s5`; `ssm_layer` builds the layer `model.ssm.kind` picks (S5SSM or lru.LRU)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from s5lra.ssm import init as ssm_init
from s5lra.ssm import selective
from s5lra.ssm.config import S5Config, SSMConfig
from s5lra.ssm.diag_init import adjust_spectrum, diagonal_init
from s5lra.ssm.layer import apply_s5, discretize, project_input, readout
from s5lra.ssm.lru import LRU

PARAM_NAMES = ("Lambda_re", "Lambda_im", "B", "C", "D", "log_step")


class S5SSM(nn.Module):
    """S5 layer mapping (…, L, H) -> (…, L, H), configured by an `S5Config`.

    S5 from the diagonal initialisation `cfg.init`; with cfg.conj_sym it keeps P' = state_size/2 complex states;
    cfg.selective adds the input-dependent step (delta_W1, delta_W2). `step` runs the layer as an RNN, one input
    at a time (unidirectional layers only).
    """

    cfg: S5Config
    d_model: int

    def setup(self):
        cfg = self.cfg
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

    def _params(self):
        names = PARAM_NAMES + (selective.PARAM_NAMES if self.cfg.selective else ())
        return {name: getattr(self, name) for name in names}

    def __call__(self, u, lengths=None):
        cfg = self.cfg
        apply = selective.apply_selective_s5 if cfg.selective else apply_s5
        return apply(self._params(), u, conj_sym=cfg.conj_sym, bidirectional=cfg.bidirectional,
                     discretization=cfg.discretization, clip_eigs=cfg.clip_eigs, step_rescale=cfg.step_rescale,
                     scan=cfg.scan, lengths=lengths)

    def initial_state(self, batch_shape=()):
        """Zero state, complex64 of shape (*batch_shape, P')."""
        return jnp.zeros((*batch_shape, self.Lambda_re.shape[0]), jnp.complex64)

    def step(self, state, u_k):
        """One recurrence step: (state (…, P'), u_k (…, H)) -> (new state, y_k (…, H))."""
        cfg = self.cfg
        if cfg.bidirectional:
            raise ValueError("step mode needs a causal layer: set model.ssm.bidirectional=false")
        params = self._params()
        if cfg.selective:
            lam_bar, bu = selective.selective_system(params, u_k[..., None, :], discretization=cfg.discretization,
                                                     clip_eigs=cfg.clip_eigs, step_rescale=cfg.step_rescale)
            state = lam_bar[..., 0, :] * state + bu[..., 0, :]
        else:
            lam_bar, b_bar = discretize(params, discretization=cfg.discretization, clip_eigs=cfg.clip_eigs,
                                        step_rescale=cfg.step_rescale)
            state = lam_bar * state + project_input(b_bar, u_k)
        return state, readout(self.C, state, cfg.conj_sym) + self.D * u_k


LAYERS = {"s5": S5SSM, "lru": LRU}


def ssm_layer(cfg: SSMConfig, d_model: int, **module_args) -> nn.Module:
    """The layer `cfg.kind` picks, given its own settings (`cfg.layer_config()`)."""
    return LAYERS[cfg.kind](cfg.layer_config(), d_model, **module_args)
