"""The diagonal initialisations of the S5 layer (`model.ssm.init`): one (Λ, V, V⁻¹) per kind, S5's conventions.

Each block of size N = state_size/blocks gets a spectrum and an eigenbasis, tiled `blocks` times; with
conj_sym one state per conjugate pair is kept (the readout's 2·Re supplies the other). Formulas:
docs/variants.md, sections 2 (PTD) and 4 (S4D).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import block_diag

from s5lra.errors import InvalidSetting, check_choice
from s5lra.ssm.init import hippo_init
from s5lra.ssm.ptd import PTDSettings, solve_ptd

INITS = ("hippo", "ptd", "s4d_lin", "s4d_inv", "s4d_real")


def s4d_spectrum(kind: str, n: int) -> np.ndarray:
    """The n/2 modes m = 0 … n/2 − 1 of one block of size n (the S4D formulas count both halves of a pair).

    S4D-Real has no pairs: its n/2 modes are −1 … −n/2 here; `diagonal_init` asks for n of them without conj_sym.
    """
    m = np.arange(n // 2)
    if kind == "s4d_lin":
        return -0.5 + 1j * np.pi * m
    if kind == "s4d_inv":
        return -0.5 + 1j * (n / np.pi) * (n / (2 * m + 1) - 1)
    return -(m + 1.0) + 0j  # s4d_real


def ptd_block(n: int, conj_sym: bool, settings: PTDSettings):
    """(Λ, V, V⁻¹) of one PTD block.

    With real E the spectrum of A + E is closed under conjugation but usually holds a few real eigenvalues,
    which have no partner. With conj_sym each complex pair keeps its Im < 0 member, and each real eigenvalue is
    kept with its V⁻¹ row halved, so that 2·Re(C̃x) counts it once: the system is exact, with one extra state per
    pair of real eigenvalues (tests/test_variants.py measures the count).
    """
    sol = solve_ptd(n, settings)
    if not conj_sym:
        return sol.lam, sol.v, sol.vinv
    real = sol.lam.imag == 0  # numpy returns real eigenvalues of a real matrix with exactly zero imaginary part
    keep = real | (sol.lam.imag < 0)
    weight = np.where(real[keep], 0.5, 1.0)
    return sol.lam[keep], sol.v[:, keep], weight[:, None] * sol.vinv[keep]


def diagonal_init(kind: str, state_size: int, blocks: int, conj_sym: bool = True, *,
                  ptd: PTDSettings = PTDSettings()):
    """(Λ (P',) complex128, V (state_size, P'), V⁻¹ (P', state_size)) for `model.ssm.init=kind`.

    P' = state_size/2 with conj_sym (PTD: one more state per pair of real eigenvalues), else state_size.
    V and V⁻¹ are block-diagonal; V = V⁻¹ = I (its first P' columns/rows per block) for the S4D kinds, which
    have no eigenbasis: B̃ and C̃ are then S5's samples directly.
    """
    check_choice("init", kind, INITS)
    if kind == "hippo":
        return hippo_init(state_size, blocks, conj_sym)  # checks the sizes itself
    if state_size % blocks:
        raise InvalidSetting("state_size", state_size, f"must divide by blocks={blocks}")
    n = state_size // blocks
    if kind == "ptd":
        lam, v, vinv = ptd_block(n, conj_sym, ptd)
    else:
        if n % 2 and (conj_sym or kind != "s4d_real"):
            raise InvalidSetting("state_size", state_size, f"state_size/blocks must be even for {kind} "
                                 f"(its modes come in conjugate pairs); it is {n}")
        lam = s4d_spectrum(kind, 2 * n if kind == "s4d_real" and not conj_sym else n)
        if not conj_sym and kind != "s4d_real":
            lam = np.concatenate([lam, lam.conj()])
        v = np.eye(n, len(lam), dtype=np.complex128)
        vinv = v.T.copy()
    return np.tile(lam, blocks), block_diag(*[v] * blocks), block_diag(*[vinv] * blocks)


def adjust_spectrum(lam: np.ndarray, freq_scale: float = 1.0, force_neg: bool = False) -> np.ndarray:
    """S4D-FT's α (imaginary parts × freq_scale) and PTD's force_neg (Re Λ → −|Re Λ|, a perturbed spectrum
    can have a few Re Λ > 0)."""
    re = -np.abs(lam.real) if force_neg else lam.real
    return re + 1j * freq_scale * lam.imag
