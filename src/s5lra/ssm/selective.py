"""Selective S5: an input-dependent step Δ_k = Δ₀ · exp(W₂ W₁ u_k), so each step has its own Λ̄_k and B̄_k.

log Δ_k = log_step + (u_k W₁) W₂ with W₁ (H, r) and W₂ (r, P') = 0 at initialisation, which makes the layer S5
exactly (bit for bit) until W₂ learns. Λ̄_k = exp(Δ_k Λ) (ZOH) is a (…, L, P') decay instead of S5's (P',);
both directions use the same Δ_k (docs/variants.md, section 5).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from s5lra.ssm.layer import continuous_lambda, discrete_system, discretize, project_input, recur_and_read, \
    valid_mask

PARAM_NAMES = ("delta_W1", "delta_W2")


def default_rank(d_model: int) -> int:
    return -(-d_model // 16)


def init_W1(key, d_model: int, rank: int):
    return jax.nn.initializers.lecun_normal()(key, (d_model, rank), jnp.float32)


def selective_system(params, u, *, discretization: str, clip_eigs: bool, step_rescale: float):
    """(Λ̄_k (…, L, P'), B̄_k u_k (…, L, P')) for inputs u (…, L, H).

    B̄_k u_k = B̄₀ u_k + (s_k − s₀) ⊙ (B̃ u_k), with B̄₀ and s₀ S5's at Δ₀: one more projection than s_k ⊙ (B̃ u_k),
    but with W₂ = 0 the difference term is exactly zero, so the layer reproduces S5 bit for bit.
    """
    lam = continuous_lambda(params, clip_eigs)
    _, b_bar0 = discretize(params, discretization=discretization, clip_eigs=clip_eigs, step_rescale=step_rescale)
    b_tilde = params["B"][..., 0] + 1j * params["B"][..., 1]
    log_delta = params["log_step"] + (u @ params["delta_W1"]) @ params["delta_W2"]
    lam_bar, scale = discrete_system(lam, step_rescale * jnp.exp(log_delta), discretization)
    _, scale0 = discrete_system(lam, step_rescale * jnp.exp(params["log_step"]), discretization)
    return lam_bar, project_input(b_bar0, u) + (scale - scale0) * project_input(b_tilde, u)


def apply_selective_s5(params, u, *, conj_sym: bool, bidirectional: bool, discretization: str = "zoh",
                       clip_eigs: bool = False, step_rescale: float = 1.0, scan: str = "auto", lengths=None):
    """`apply_s5` with the per-step Δ_k; params add delta_W1 (H, r) and delta_W2 (r, P')."""
    if lengths is not None:
        u = u * valid_mask(lengths, u.shape[-2])
    lam_bar, bu = selective_system(params, u, discretization=discretization, clip_eigs=clip_eigs,
                                   step_rescale=step_rescale)
    return recur_and_read(lam_bar, bu, params["C"], conj_sym, bidirectional, scan) + params["D"] * u
