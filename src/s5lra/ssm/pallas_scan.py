"""A Pallas kernel for the time-invariant diagonal recurrence x_k = a ⊙ x_{k-1} + b_k (the S5 case).

Layout: real and imaginary parts as separate float32 arrays (Pallas has no complex type). The grid runs over
(batch, blocks of `block_p` states, chunks of `chunk` steps); each program walks its chunk sequentially with
the state in registers. Two passes give parallelism across chunks without storing every intermediate:
  1. each chunk's end state from a zero start (only (batch, chunks, P) is written),
  2. a short `lax.scan` over chunks turns those into each chunk's incoming state (a^chunk per hop),
  3. each chunk is re-run from its incoming state, writing x.
The reverse direction walks each chunk backwards inside the kernel (no flipped copies of b). The backward pass
is the same kernel in the opposite direction over the output cotangent with conj(a), which also reduces
da = Σ_k λ_k conj(x_prev) over its chunk in registers (only (batch, chunks, P) partial sums are written).
Λ̄ is never broadcast to (L, P). Under a batch-sharded jit each device runs its own rows, and a vmapped axis
joins the rows (`_per_row`).

On CPU the kernel runs in Pallas's interpret mode (for the parity tests); it is meant for GPUs (Triton).
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.custom_batching import custom_vmap
from jax.experimental.custom_partitioning import custom_partitioning
from jax.experimental.pallas import triton as pltriton
from jax.sharding import NamedSharding, PartitionSpec

CHUNK = 256
BLOCK_P = 32
NUM_WARPS = 1  # one state vector of BLOCK_P lanes per program: a single warp holds it

# JAX 0.11 deprecates Pallas's Triton backend and warns at every Triton lowering. The kernel needs Triton (Mosaic
# GPU rejects its blocks, see _scan_padded), and scan=auto only uses it once it passed its self-check on this
# JAX and GPU (s5lra.ssm.selfcheck), which also catches the day the backend is gone: silence just this warning.
warnings.filterwarnings("ignore", message="The Pallas Triton backend is deprecated", category=DeprecationWarning)


def _walk(a_re, a_im, b_re_ref, b_im_ref, x_re, x_im, chunk, reverse, out_refs=None, prev=None):
    """Run the recurrence over one chunk's rows from state (x_re, x_im); optionally store every state.

    prev = (x_re_ref, x_im_ref, edge_re, edge_im) turns this into the backward pass: the states written are
    λ, and Σ_t λ_t · conj(x_prev(t)) is accumulated, x_prev(t) being the forward state the step at t started
    from: the row walked just after t (t + 1 when walking forward, t - 1 when walking backward), or `edge`
    (the neighbouring chunk's row, or zero at the sequence's ends) at the chunk's last row.
    Returns (state, accumulated (re, im)).
    """
    step = 1 if reverse else -1  # row of x_prev relative to t: the forward recurrence ran the other way

    def body(i, carry):
        x_re, x_im, acc_re, acc_im = carry
        t = chunk - 1 - i if reverse else i
        b_re = b_re_ref[pl.ds(t, 1), :][0]
        b_im = b_im_ref[pl.ds(t, 1), :][0]
        x_re, x_im = a_re * x_re - a_im * x_im + b_re, a_im * x_re + a_re * x_im + b_im
        if out_refs is not None:
            out_refs[0][pl.ds(t, 1), :] = x_re[None]
            out_refs[1][pl.ds(t, 1), :] = x_im[None]
        if prev is not None:
            xs_re, xs_im, edge_re, edge_im = prev
            row = jnp.clip(t - step, 0, chunk - 1)
            inside = i < chunk - 1
            p_re = jnp.where(inside, xs_re[pl.ds(row, 1), :][0], edge_re)
            p_im = jnp.where(inside, xs_im[pl.ds(row, 1), :][0], edge_im)
            acc_re = acc_re + x_re * p_re + x_im * p_im
            acc_im = acc_im + x_im * p_re - x_re * p_im
        return x_re, x_im, acc_re, acc_im

    zero = jnp.zeros_like(a_re)
    x_re, x_im, acc_re, acc_im = lax.fori_loop(0, chunk, body, (x_re, x_im, zero, zero))
    return (x_re, x_im), (acc_re, acc_im)


def _end_state_kernel(a_re_ref, a_im_ref, b_re_ref, b_im_ref, h_re_ref, h_im_ref, *, chunk, reverse):
    zero = jnp.zeros(a_re_ref.shape, jnp.float32)
    (h_re, h_im), _ = _walk(a_re_ref[...], a_im_ref[...], b_re_ref, b_im_ref, zero, zero, chunk, reverse)
    h_re_ref[...] = h_re
    h_im_ref[...] = h_im


def _scan_kernel(a_re_ref, a_im_ref, b_re_ref, b_im_ref, c_re_ref, c_im_ref, x_re_ref, x_im_ref, *, chunk,
                 reverse):
    _walk(a_re_ref[...], a_im_ref[...], b_re_ref, b_im_ref, c_re_ref[...], c_im_ref[...], chunk, reverse,
          out_refs=(x_re_ref, x_im_ref))


def _grad_kernel(a_re_ref, a_im_ref, g_re_ref, g_im_ref, c_re_ref, c_im_ref, x_re_ref, x_im_ref, e_re_ref,
                 e_im_ref, lam_re_ref, lam_im_ref, da_re_ref, da_im_ref, *, chunk, reverse):
    """Backward pass: λ over the chunk (like _scan_kernel) and this chunk's share of dΛ̄, reduced here."""
    _, (da_re, da_im) = _walk(
        a_re_ref[...], a_im_ref[...], g_re_ref, g_im_ref, c_re_ref[...], c_im_ref[...], chunk, reverse,
        out_refs=(lam_re_ref, lam_im_ref), prev=(x_re_ref, x_im_ref, e_re_ref[...], e_im_ref[...]),
    )
    da_re_ref[...] = da_re
    da_im_ref[...] = da_im


def _specs(chunk, block_p):
    state = pl.BlockSpec((block_p,), lambda n, p, c: (p,))
    seq = pl.BlockSpec((None, chunk, block_p), lambda n, p, c: (n, c, p))
    carry = pl.BlockSpec((None, None, block_p), lambda n, p, c: (n, c, p))
    return state, seq, carry


def _scan_padded(a_re, a_im, b_re, b_im, reverse, chunk, block_p, interpret, x=None):
    """b: (N, L, P) with L % chunk == 0 and P % block_p == 0.

    With x (the forward states, for the backward pass) it also returns each row's dΛ̄ = Σ_t λ_t conj(x_prev(t)).
    """
    n, length, p = b_re.shape
    n_chunks = length // chunk
    grid = (n, p // block_p, n_chunks)
    state, seq, carry = _specs(chunk, block_p)
    # Triton explicitly: since JAX 0.10 a GPU pallas_call defaults to Mosaic GPU, which rejects these blocks.
    kw = dict(grid=grid, interpret=interpret, compiler_params=pltriton.CompilerParams(num_warps=NUM_WARPS))
    per_chunk = jax.ShapeDtypeStruct((n, n_chunks, p), jnp.float32)
    ends = pl.pallas_call(
        functools.partial(_end_state_kernel, chunk=chunk, reverse=reverse),
        out_shape=[per_chunk] * 2, in_specs=[state, state, seq, seq], out_specs=[carry, carry], **kw,
    )(a_re, a_im, b_re, b_im)
    # Incoming state of each chunk: H_c = a^chunk H_{c-1} + end_c, taken in the direction of travel.
    a_pow = (a_re + 1j * a_im) ** chunk
    end = ends[0] + 1j * ends[1]

    def hop(h, e):
        return a_pow * h + e, h

    _, incoming = lax.scan(hop, jnp.zeros((n, p), jnp.complex64), jnp.moveaxis(end, 1, 0), reverse=reverse)
    incoming = jnp.moveaxis(incoming, 0, 1)
    inputs = [a_re, a_im, b_re, b_im, jnp.real(incoming), jnp.imag(incoming)]
    if x is None:
        return pl.pallas_call(
            functools.partial(_scan_kernel, chunk=chunk, reverse=reverse),
            out_shape=[jax.ShapeDtypeStruct((n, length, p), jnp.float32)] * 2,
            in_specs=[state, state, seq, seq, carry, carry], out_specs=[seq, seq], **kw,
        )(*inputs)
    # Each chunk's edge row of x_prev: the neighbouring chunk's first (walking forward) or last row.
    edges = [_edge_rows(xi, chunk, reverse) for xi in x]
    lam_re, lam_im, da_re, da_im = pl.pallas_call(
        functools.partial(_grad_kernel, chunk=chunk, reverse=reverse),
        out_shape=[jax.ShapeDtypeStruct((n, length, p), jnp.float32)] * 2 + [per_chunk] * 2,
        in_specs=[state, state, seq, seq, carry, carry, seq, seq, carry, carry],
        out_specs=[seq, seq, carry, carry], **kw,
    )(*inputs, *x, *edges)
    return lam_re, lam_im, da_re.sum(1), da_im.sum(1)  # per row: the caller sums over the batch


def _edge_rows(x, chunk, reverse):
    """(N, n_chunks, P): for chunk c, x's row just past the chunk in the walking direction (zero at the end)."""
    if reverse:  # walking backward: the previous chunk's last row
        inner = x[:, chunk - 1::chunk][:, :-1]
        return jnp.pad(inner, ((0, 0), (1, 0), (0, 0)))
    inner = x[:, chunk::chunk]  # walking forward: the next chunk's first row
    return jnp.pad(inner, ((0, 0), (0, 1), (0, 0)))


def _pad(chunk, length, block_p, p, *arrays):
    """Zero rows appended at the end leave the valid states unchanged in both directions: forward visits them
    last, reverse visits them first with a zero state. Padded states are dropped by the caller."""
    pads = ((0, 0), (0, -length % chunk), (0, -p % block_p))
    return [jnp.pad(a, pads) for a in arrays]


def _chunk_for(length, chunk):
    return min(chunk, pl.next_power_of_2(length))


def _per_row(fn, rule):
    """Make fn(*arrays, *static), which treats each row of its arrays' leading (batch) axis independently, run
    on each device's own rows under a batch-sharded jit. Otherwise XLA, which cannot see into the kernel,
    gathers the whole batch onto every device and each one runs all of it."""
    n_arrays, n_static = len(rule.split("->")[0].split(",")), 4  # static: reverse, chunk, block_p, interpret
    wrapped = custom_partitioning(fn, static_argnums=tuple(range(n_arrays, n_arrays + n_static)))

    def shardings(mesh, arg_shapes, result_shape):
        spec = next(s.sharding.spec for s in arg_shapes if len(s.shape) > 1)
        batch = spec[0] if len(spec) else None

        def row_sharded(shape):  # (n, ...) arrays split by rows; the decay (p,) on every device
            rank = len(shape.shape)
            return NamedSharding(mesh, PartitionSpec(batch, *[None] * (rank - 1)) if rank > 1 else PartitionSpec())

        return (jax.tree.map(row_sharded, result_shape), tuple(row_sharded(s) for s in arg_shapes))

    def partition(*static_mesh_shapes):
        static, (mesh, arg_shapes, result_shape) = static_mesh_shapes[:n_static], static_mesh_shapes[n_static:]
        results, args = shardings(mesh, arg_shapes, result_shape)
        return mesh, lambda *arrays: fn(*arrays, *static), results, args

    def infer(*static_mesh_shapes):  # the GSPMD partitioner's question (Shardy reads `rule`)
        return shardings(*static_mesh_shapes[n_static:])[0]

    wrapped.def_partition(partition, infer_sharding_from_operands=infer, sharding_rule=rule,
                          need_replication_factors=("p", "l"))  # in order of first use

    @functools.cache
    def vmappable(static):
        """custom_partitioning has no vmap rule: a vmapped axis joins the rows (one launch), or, when the
        per-state decay itself is vmapped, the instances run one after another."""
        op = custom_vmap(lambda *arrays: wrapped(*arrays, *static))

        @op.def_vmap
        def rule(axis_size, batched, *arrays):
            def stacked(x, b):
                return x if b else jnp.broadcast_to(x, (axis_size, *x.shape))

            if any(batched[:2]):  # the decay (re, im) differs per instance: one instance after another
                outs = lax.map(lambda xs: op(*xs), [stacked(x, b) for x, b in zip(arrays, batched)])
            else:  # all instances' rows side by side in one call
                rows = [stacked(x, b).reshape(-1, *x.shape[-2:]) for x, b in zip(arrays[2:], batched[2:])]
                outs = [y.reshape(axis_size, -1, *y.shape[1:]) for y in op(*arrays[:2], *rows)]
            return tuple(outs), (True,) * len(outs)

        return op

    return lambda *args: vmappable(tuple(args[n_arrays:]))(*args[:n_arrays])


def _forward_rows(a_re, a_im, b_re, b_im, reverse, chunk, block_p, interpret):
    n, length, p = b_re.shape
    chunk = _chunk_for(length, chunk)
    b_re, b_im = _pad(chunk, length, block_p, p, b_re, b_im)
    a_re, a_im = (jnp.pad(a, (0, -p % block_p)) for a in (a_re, a_im))
    x_re, x_im = _scan_padded(a_re, a_im, b_re, b_im, reverse, chunk, block_p, interpret)
    return x_re[:, :length, :p], x_im[:, :length, :p]


def _backward_rows(a_re, a_im, g_re, g_im, x_re, x_im, reverse, chunk, block_p, interpret):
    """Each row's (dΛ̄ re, im) and the cotangent of b (λ re, im)."""
    n, length, p = x_re.shape
    chunk = _chunk_for(length, chunk)
    # λ_t = g_t + conj(a) λ_(t∓1): the same recurrence, walked the other way with the conjugate decay; the
    # kernel also reduces dΛ̄ = Σ λ_t conj(x_prev(t)). Zero padding adds nothing: there λ or x_prev is zero.
    g_re, g_im, xp_re, xp_im = _pad(chunk, length, block_p, p, g_re, g_im, x_re, x_im)
    ca_re, ca_im = (jnp.pad(a, (0, -p % block_p)) for a in (a_re, -a_im))
    lam_re, lam_im, da_re, da_im = _scan_padded(ca_re, ca_im, g_re, g_im, not reverse, chunk, block_p, interpret,
                                                x=(xp_re, xp_im))
    return da_re[:, :p], da_im[:, :p], lam_re[:, :length, :p], lam_im[:, :length, :p]


_forward = _per_row(_forward_rows, "p, p, n l p, n l p -> n l p, n l p")
_backward = _per_row(_backward_rows, "p, p, n l p, n l p, n l p, n l p -> n p, n p, n l p, n l p")


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def _recurrence(a_re, a_im, b_re, b_im, reverse, chunk, block_p, interpret):
    return _forward(a_re, a_im, b_re, b_im, reverse, chunk, block_p, interpret)


def _recurrence_fwd(a_re, a_im, b_re, b_im, reverse, chunk, block_p, interpret):
    x = _forward(a_re, a_im, b_re, b_im, reverse, chunk, block_p, interpret)
    return x, (a_re, a_im, x)


def _recurrence_bwd(reverse, chunk, block_p, interpret, res, g):
    a_re, a_im, (x_re, x_im) = res
    da_re, da_im, db_re, db_im = _backward(a_re, a_im, g[0], g[1], x_re, x_im, reverse, chunk, block_p, interpret)
    return da_re.sum(0), da_im.sum(0), db_re, db_im  # the batch sum: an all-reduce when rows are sharded


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
