"""The diagonal linear recurrence x_k = a_k ⊙ x_{k-1} + b_k (x_0 = 0), in several interchangeable forms.

Time is axis -2 of b, e.g. (L, P) or (batch, L, P). `a` broadcasts against b: (P,) or (1, P) for a
time-invariant system (the S5 case: never expanded to (L, P) by "sequential" and "chunked"), or (..., L, P).
All methods compute the same thing; they differ in speed, memory and compile time (experiments/bench).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

METHODS = ("associative", "sequential", "chunked", "checkpointed", "pallas")
DEFAULT_CHUNK = 64
CHECKPOINT_CHUNK = 128


def resolve_method(method: str) -> str:
    """"auto" -> the method for the default backend.

    CPU: `lax.scan` (faster than the associative scan, less memory, faster to compile: docs/performance.md,
    section 4). GPU: the Pallas/Triton kernel, since a host-driven `lax.scan` pays per step there
    (docs/performance.md, section 3), but only once it has passed its self-check on this GPU (s5lra.ssm.selfcheck: run in a
    subprocess the first time, then cached on disk); otherwise the associative scan. TPU: the associative scan
    (the kernel targets Triton).
    """
    if method == "auto":
        backend = jax.default_backend()
        if backend == "gpu":
            from s5lra.ssm.selfcheck import gpu_scan  # the check's machinery only where it can matter

            return gpu_scan()
        return "sequential" if backend == "cpu" else "associative"
    if method not in METHODS:
        raise ValueError(f"unknown scan method {method!r}; expected 'auto' or one of {METHODS}")
    return method


def _time_invariant(a, b) -> bool:
    return a.ndim < 2 or a.shape[-2] == 1 and b.shape[-2] != 1


def _decay(a):
    """The per-state decay of a time-invariant `a`, as (..., P) without the time axis."""
    return a if a.ndim < 2 else a[..., 0, :]


def associative(a, b, reverse=False):
    """The official algorithm: `lax.associative_scan` over (a, b) pairs with `a` broadcast to b's shape."""
    a = jnp.broadcast_to(a, jnp.broadcast_shapes(a.shape, b.shape))

    def combine(left, right):
        a_l, b_l = left
        a_r, b_r = right
        return a_r * a_l, a_r * b_l + b_r

    return lax.associative_scan(combine, (a, b), axis=b.ndim - 2, reverse=reverse)[1]


def sequential(a, b, reverse=False):
    """`lax.scan` over time with the state as the carry; O(1) extra memory per step in the forward pass."""
    bt = jnp.moveaxis(b, -2, 0)
    init = jnp.zeros(bt.shape[1:], jnp.result_type(a, b))
    if _time_invariant(a, b):
        decay = _decay(a)

        def step(x, b_k):
            x = decay * x + b_k
            return x, x

        _, xs = lax.scan(step, init, bt, reverse=reverse)
    else:
        at = jnp.moveaxis(jnp.broadcast_to(a, jnp.broadcast_shapes(a.shape, b.shape)), -2, 0)

        def step(x, ab):
            x = ab[0] * x + ab[1]
            return x, x

        _, xs = lax.scan(step, init, (at, bt), reverse=reverse)
    return jnp.moveaxis(xs, 0, -2)


def chunked(a, b, reverse=False, chunk=DEFAULT_CHUNK):
    """Sequential inside chunks of `chunk` steps (all chunks at once), a scan over chunk carries, a fix-up.

    Exposes parallelism over chunks when batch × states is small. The sequence is padded to a whole number of
    chunks (zeros in b, ones in a), which leaves the valid positions unchanged.
    """
    if reverse:
        return jnp.flip(chunked(_flip_time(a, b), jnp.flip(b, -2), chunk=chunk), -2)
    length = b.shape[-2]
    n_chunks = -(-length // chunk)
    pad = n_chunks * chunk - length
    lead = b.shape[:-2]
    bc = jnp.pad(b, [(0, 0)] * len(lead) + [(0, pad), (0, 0)]).reshape(*lead, n_chunks, chunk, b.shape[-1])
    # Local scans from a zero state, over the time-in-chunk axis, vectorised across chunks.
    if _time_invariant(a, b):
        decay = _decay(a)
        local = sequential(decay[..., None, None, :], bc)
        powers = decay[..., None, :] ** jnp.arange(1, chunk + 1)[:, None]  # (…, chunk, P): a^(t+1)
        powers = jnp.expand_dims(powers, -3)
        chunk_decay = powers[..., -1, :]
    else:
        af = jnp.broadcast_to(a, jnp.broadcast_shapes(a.shape, b.shape))
        ac = jnp.pad(af, [(0, 0)] * len(lead) + [(0, pad), (0, 0)], constant_values=1)
        ac = ac.reshape(bc.shape)
        local = sequential(ac, bc)
        powers = jnp.cumprod(ac, axis=-2)
        chunk_decay = powers[..., -1, :]
    # Carries: the true state at each chunk's end, X_c = A_c X_{c-1} + local_c[-1].
    ends = sequential(chunk_decay, local[..., -1, :])
    starts = jnp.concatenate([jnp.zeros_like(ends[..., :1, :]), ends[..., :-1, :]], axis=-2)
    x = local + powers * starts[..., None, :]
    return x.reshape(*lead, n_chunks * chunk, b.shape[-1])[..., :length, :]


def checkpointed(a, b, reverse=False, chunk=CHECKPOINT_CHUNK):
    """`lax.scan` over chunks of `chunk` steps, each chunk rematerialised in the backward pass.

    Plain `sequential` keeps every step's state for the gradient; this keeps only the state entering each
    chunk and recomputes the chunk's steps when differentiating (memory for long sequences at the cost of
    one extra forward pass of the recurrence). Zero rows padded at the end leave valid states unchanged.
    """
    length, p = b.shape[-2:]
    lead = b.shape[:-2]
    n_chunks = -(-length // chunk)
    pad = [(0, 0)] * len(lead) + [(0, n_chunks * chunk - length), (0, 0)]
    # Time-major chunks: (n_chunks, chunk, *lead, P).
    to_chunks = lambda x: jnp.moveaxis(jnp.pad(x, pad).reshape(*lead, n_chunks, chunk, p), (-3, -2), (0, 1))
    invariant = _time_invariant(a, b)
    decay = _decay(a) if invariant else None
    xs_in = to_chunks(b) if invariant else (to_chunks(jnp.broadcast_to(a, b.shape)), to_chunks(b))

    def step(x, inp):
        a_k, b_k = (decay, inp) if invariant else inp
        x = a_k * x + b_k
        return x, x

    @jax.checkpoint
    def run_chunk(x, chunk_in):
        return lax.scan(step, x, chunk_in, reverse=reverse)

    init = jnp.zeros((*lead, p), jnp.result_type(a, b))
    _, xs = lax.scan(run_chunk, init, xs_in, reverse=reverse)
    xs = jnp.moveaxis(xs, (0, 1), (-3, -2)).reshape(*lead, n_chunks * chunk, p)
    return xs[..., :length, :]


def _flip_time(a, b):
    return a if _time_invariant(a, b) else jnp.flip(jnp.broadcast_to(a, b.shape), -2)


def linear_recurrence(a, b, *, reverse: bool = False, method: str = "auto"):
    """x_k = a_k ⊙ x_{k-1} + b_k along axis -2 (x_0 = 0), or from the end when `reverse`.

    a broadcasts against b; complex or real. method: "auto", "associative", "sequential", "chunked",
    "checkpointed" (sequential, keeping only chunk-boundary states for the backward pass), or
    "pallas" (GPU kernel for a time-invariant a of shape (P,); interpret mode on CPU, for tests).
    """
    if method == "auto" and resolve_method(method) == "pallas" and jnp.ndim(a) != 1:
        method = "associative"  # the kernel needs a time-invariant decay (P,); S5's always is
    method = resolve_method(method)
    if method == "associative":
        return associative(a, b, reverse)
    if method == "sequential":
        return sequential(a, b, reverse)
    if method == "checkpointed":
        return checkpointed(a, b, reverse)
    if method == "pallas":
        from s5lra.ssm.pallas_scan import pallas_recurrence  # Pallas import only when asked for

        return pallas_recurrence(a, b, reverse=reverse)
    return chunked(a, b, reverse)
