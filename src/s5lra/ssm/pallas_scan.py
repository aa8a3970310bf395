"""A Pallas kernel for the time-invariant diagonal recurrence x_k = a ⊙ x_{k-1} + b_k (the S5 case).

Layout: real and imaginary parts as separate float32 arrays (Pallas has no complex type). The grid runs over
(batch, blocks of `block_p` states, chunks of `chunk` steps); each program walks its chunk sequentially with
the state in registers. Two passes give parallelism across chunks without storing every intermediate:
  1. each chunk's end state from a zero start (only (batch, chunks, P) is written),
  2. a short `lax.scan` over chunks turns those into each chunk's incoming state (a^chunk per hop),
  3. each chunk is re-run from its incoming state, writing x.
The reverse direction walks each chunk backwards inside the kernel (no flipped copies of b). The backward pass
is the same kernel in the opposite direction over the output cotangent with conj(a); da = Σ_k λ_k conj(x_prev)
is one fused XLA reduction. Λ̄ is never broadcast to (L, P).

On CPU the kernel runs in Pallas's interpret mode (for the parity tests); it is meant for GPUs (Triton).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

CHUNK = 256
BLOCK_P = 32


def _walk(a_re, a_im, b_re_ref, b_im_ref, x_re, x_im, chunk, reverse, out_refs=None):
    """Run the recurrence over one chunk's rows from state (x_re, x_im); optionally store every state."""

    def body(i, carry):
        x_re, x_im = carry
        t = chunk - 1 - i if reverse else i
        b_re = b_re_ref[pl.ds(t, 1), :][0]
        b_im = b_im_ref[pl.ds(t, 1), :][0]
        x_re, x_im = a_re * x_re - a_im * x_im + b_re, a_im * x_re + a_re * x_im + b_im
        if out_refs is not None:
            out_refs[0][pl.ds(t, 1), :] = x_re[None]
            out_refs[1][pl.ds(t, 1), :] = x_im[None]
        return x_re, x_im

    return lax.fori_loop(0, chunk, body, (x_re, x_im))


def _end_state_kernel(a_re_ref, a_im_ref, b_re_ref, b_im_ref, h_re_ref, h_im_ref, *, chunk, reverse):
    zero = jnp.zeros(a_re_ref.shape, jnp.float32)
    h_re, h_im = _walk(a_re_ref[...], a_im_ref[...], b_re_ref, b_im_ref, zero, zero, chunk, reverse)
    h_re_ref[...] = h_re
    h_im_ref[...] = h_im


def _scan_kernel(a_re_ref, a_im_ref, b_re_ref, b_im_ref, c_re_ref, c_im_ref, x_re_ref, x_im_ref, *, chunk,
                 reverse):
    _walk(a_re_ref[...], a_im_ref[...], b_re_ref, b_im_ref, c_re_ref[...], c_im_ref[...], chunk, reverse,
          out_refs=(x_re_ref, x_im_ref))


def _specs(chunk, block_p):
    state = pl.BlockSpec((block_p,), lambda n, p, c: (p,))
    seq = pl.BlockSpec((None, chunk, block_p), lambda n, p, c: (n, c, p))
    carry = pl.BlockSpec((None, None, block_p), lambda n, p, c: (n, c, p))
    return state, seq, carry


def _scan_padded(a_re, a_im, b_re, b_im, reverse, chunk, block_p, interpret):
    """b: (N, L, P) with L % chunk == 0 and P % block_p == 0."""
    n, length, p = b_re.shape
    n_chunks = length // chunk
    grid = (n, p // block_p, n_chunks)
    state, seq, carry = _specs(chunk, block_p)
    kw = dict(grid=grid, interpret=interpret)
    ends = pl.pallas_call(
        functools.partial(_end_state_kernel, chunk=chunk, reverse=reverse),
        out_shape=[jax.ShapeDtypeStruct((n, n_chunks, p), jnp.float32)] * 2,
        in_specs=[state, state, seq, seq], out_specs=[carry, carry], **kw,
    )(a_re, a_im, b_re, b_im)
    # Incoming state of each chunk: H_c = a^chunk H_{c-1} + end_c, taken in the direction of travel.
    a_pow = (a_re + 1j * a_im) ** chunk
    end = ends[0] + 1j * ends[1]

    def hop(h, e):
        return a_pow * h + e, h

    _, incoming = lax.scan(hop, jnp.zeros((n, p), jnp.complex64), jnp.moveaxis(end, 1, 0), reverse=reverse)
    incoming = jnp.moveaxis(incoming, 0, 1)
    return pl.pallas_call(
        functools.partial(_scan_kernel, chunk=chunk, reverse=reverse),
        out_shape=[jax.ShapeDtypeStruct((n, length, p), jnp.float32)] * 2,
        in_specs=[state, state, seq, seq, carry, carry], out_specs=[seq, seq], **kw,
    )(a_re, a_im, b_re, b_im, jnp.real(incoming), jnp.imag(incoming))


def _forward(a_re, a_im, b_re, b_im, reverse, chunk, block_p, interpret):
    n, length, p = b_re.shape
    chunk = min(chunk, pl.next_power_of_2(length))
    pad_l, pad_p = -length % chunk, -p % block_p
    # Zero rows appended at the end leave the valid states unchanged in both directions: forward visits them
    # last, reverse visits them first with a zero state. Padded states are dropped.
    pads = ((0, 0), (0, pad_l), (0, pad_p))
    b_re, b_im = jnp.pad(b_re, pads), jnp.pad(b_im, pads)
    a_re, a_im = jnp.pad(a_re, (0, pad_p)), jnp.pad(a_im, (0, pad_p))
    x_re, x_im = _scan_padded(a_re, a_im, b_re, b_im, reverse, chunk, block_p, interpret)
    return x_re[:, :length, :p], x_im[:, :length, :p]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def _recurrence(a_re, a_im, b_re, b_im, reverse, chunk, block_p, interpret):
    return _forward(a_re, a_im, b_re, b_im, reverse, chunk, block_p, interpret)


def _recurrence_fwd(a_re, a_im, b_re, b_im, reverse, chunk, block_p, interpret):
    x = _forward(a_re, a_im, b_re, b_im, reverse, chunk, block_p, interpret)
    return x, (a_re, a_im, x)


def _recurrence_bwd(reverse, chunk, block_p, interpret, res, g):
    a_re, a_im, (x_re, x_im) = res
    # λ_k = g_k + conj(a) λ_{k±1}: the same recurrence, run the other way with the conjugate decay.
    lam_re, lam_im = _forward(a_re, -a_im, g[0], g[1], not reverse, chunk, block_p, interpret)
    # The state each step started from: x_{k-1} (forward) or x_{k+1} (reverse), zero at the boundary.
    shift = ((0, 0), (0, 1), (0, 0)) if reverse else ((0, 0), (1, 0), (0, 0))
    keep = slice(1, None) if reverse else slice(None, -1)
    prev_re = jnp.pad(x_re[:, keep], shift)
    prev_im = jnp.pad(x_im[:, keep], shift)
    da_re = jnp.sum(lam_re * prev_re + lam_im * prev_im, axis=(0, 1))
    da_im = jnp.sum(lam_im * prev_re - lam_re * prev_im, axis=(0, 1))
    return da_re, da_im, lam_re, lam_im


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def pallas_recurrence(a, b, *, reverse=False, chunk=CHUNK, block_p=BLOCK_P, interpret=None):
    """x_k = a ⊙ x_{k-1} + b_k along axis -2 for a time-invariant a of shape (P,); b complex (..., L, P)."""
    if a.ndim != 1:
        raise ValueError("the pallas scan needs a time-invariant decay of shape (P,) (the S5 case)")
    if interpret is None:
        interpret = jax.default_backend() == "cpu"
    lead, (length, p) = b.shape[:-2], b.shape[-2:]
    b = b.reshape(-1, length, p)
    x_re, x_im = _recurrence(jnp.real(a).astype(jnp.float32), jnp.imag(a).astype(jnp.float32),
                             jnp.real(b).astype(jnp.float32), jnp.imag(b).astype(jnp.float32),
                             reverse, chunk, block_p, interpret)
    return (x_re + 1j * x_im).reshape(*lead, length, p)
