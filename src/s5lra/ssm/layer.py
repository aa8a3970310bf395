"""The S5 layer as a pure function of its parameters: discretise, project, recur, read out."""

from __future__ import annotations

import jax.numpy as jnp

from s5lra.errors import check_choice
from s5lra.ssm.recurrence import linear_recurrence

DISCRETIZATIONS = ("zoh", "bilinear")


def continuous_lambda(params, clip_eigs: bool = False):
    """Λ as complex64; clip_eigs uses min(Re Λ, -1e-4) so the system stays strictly stable."""
    re = params["Lambda_re"]
    if clip_eigs:
        re = jnp.minimum(re, -1e-4)
    return re + 1j * params["Lambda_im"]


def discrete_system(lam, delta, discretization: str = "zoh"):
    """(Λ̄, s) for steps Δ of any shape broadcasting against Λ; B̄ = s ⊙ B̃ (row i of B̃ scaled by s_i)."""
    if discretization == "zoh":
        lam_bar = jnp.exp(lam * delta)
        return lam_bar, (lam_bar - 1.0) / lam
    inv = 1.0 / (1.0 - delta / 2.0 * lam)  # bilinear
    return inv * (1.0 + delta / 2.0 * lam), inv * delta


def discretize(params, *, discretization: str = "zoh", clip_eigs: bool = False, step_rescale: float = 1.0):
    """(Λ̄ (P',), B̄ (P', H)) complex64 for the step Δ = step_rescale · exp(log_step)."""
    lam = continuous_lambda(params, clip_eigs)
    b_tilde = params["B"][..., 0] + 1j * params["B"][..., 1]
    lam_bar, scale = discrete_system(lam, step_rescale * jnp.exp(params["log_step"]), discretization)
    return lam_bar, scale[:, None] * b_tilde


def project_input(b_bar, u):
    """B̄ u_k for every k as two real matmuls (u is real; a complex matmul would cost twice as much)."""
    return u @ jnp.real(b_bar).T + 1j * (u @ jnp.imag(b_bar).T)


def readout(c, x, conj_sym: bool):
    """2·Re(C~ x) with conjugate symmetry (each state stands for a conjugate pair), else Re(C~ x).

    The factor and the sign go on the states, (2·Re x)·C_reᵀ + (−2·Im x)·C_imᵀ: applied to the (…, L, H)
    output instead, the backward pass makes two extra transposed copies of the output gradient per layer.
    Scaling by 2 and negating are exact, so the result is the same bit for bit.
    """
    scale = 2.0 if conj_sym else 1.0
    return (scale * jnp.real(x)) @ c[..., 0].T + (-scale * jnp.imag(x)) @ c[..., 1].T


def valid_mask(lengths, length: int):
    """(…, L, 1) float mask of positions < length."""
    return (jnp.arange(length) < jnp.asarray(lengths)[..., None])[..., None].astype(jnp.float32)


def apply_s5(
    params,
    u,
    *,
    conj_sym: bool,
    bidirectional: bool,
    discretization: str = "zoh",
    clip_eigs: bool = False,
    step_rescale: float = 1.0,
    scan: str = "auto",
    lengths=None,
):
    """Run an S5 layer over u of shape (L, H) or (batch, L, H); returns y of the same shape.

    params: Lambda_re (P',), Lambda_im (P',), B (P', H, 2), C (H, P', 2) or (H, 2P', 2) when bidirectional
    (forward columns first), D (H,), log_step (P',).
    lengths: optional true lengths ((batch,) or a scalar). Inputs at positions >= length are zeroed, so the
    forward states at valid positions are unchanged and the reverse direction starts at each sequence's end.
    """
    check_choice("discretization", discretization, DISCRETIZATIONS)
    lam_bar, b_bar = discretize(
        params, discretization=discretization, clip_eigs=clip_eigs, step_rescale=step_rescale
    )
    if lengths is not None:
        u = u * valid_mask(lengths, u.shape[-2])
    y = recur_and_read(lam_bar, project_input(b_bar, u), params["C"], conj_sym, bidirectional, scan)
    return y + params["D"] * u


def recur_and_read(lam_bar, bu, c, conj_sym: bool, bidirectional: bool, scan: str):
    """Σ over directions of readout(C_dir, x_dir): x from the recurrence over (Λ̄, B̄u), forward then reversed
    (the same Λ̄ and B̄u; only C's columns differ). Λ̄ is (P',) or per step (…, L, P')."""
    n_states = lam_bar.shape[-1]
    y = readout(c[:, :n_states], linear_recurrence(lam_bar, bu, method=scan), conj_sym)
    if bidirectional:
        # Read out each direction separately rather than concatenating (L, 2P') states.
        y = y + readout(c[:, n_states:], linear_recurrence(lam_bar, bu, reverse=True, method=scan), conj_sym)
    return y
