"""Time one S5 SSM layer per scan method against the official algorithm, on the paper's task shapes.

    python experiments/bench/layer.py                      # paper shapes (batch reduced on CPU, see --batch)
    python experiments/bench/layer.py --shapes pathx --sweep  # plus L = 1K..16K at the Path-X width
    python experiments/bench/layer.py --shapes pathx --batch 2 --methods auto official
    python experiments/bench/layer.py --shapes pathx --scan   # plus the recurrence alone vs copy bandwidth
    python experiments/bench/layer.py --shapes pathx --methods auto --variants   # the S5 family, one row each
    python experiments/bench/layer.py --shapes --ptd-solve 2 16 32 64            # PTD solve time per block size

Forward and forward+backward wall time (median of --repeats after a warm-up, methods interleaved within each
repeat), compile time, and XLA's temporary-buffer size for the fwd+bwd program (a deterministic proxy for peak
memory on any backend). With --scan, also the recurrence alone on the shape's (B, L, P') states, one direction:
its achieved bandwidth counts the ideal traffic (forward: read Bu, write x, 16 bytes per complex state;
forward+backward: 40, docs/performance.md §2 "The GPU floor") against the measured bandwidth of an elementwise
copy of the same size. With --variants, the same measurements for each member of the S5 family (README "Model
variants") through the Flax module, per method; selective S5's per-step decay shows in its temp MB. With
--ptd-solve, the wall time of one perturb-then-diagonalise solve per block size (uncached). Prints tables and
writes JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from s5lra.ssm import S5SSM, SSMConfig, apply_s5, linear_recurrence, ptd
from s5lra.ssm.layer import discretize
from table import print_table, speedup

# (batch, L, H, state_size P, blocks J) from the paper's settings (reference table; retrieval L per document).
PAPER_SHAPES = {
    "listops": (50, 2048, 128, 16, 8),
    "text": (50, 4096, 256, 192, 12),
    "retrieval": (64, 4000, 128, 256, 16),  # 32 pairs = 64 documents
    "image": (50, 1024, 512, 384, 3),
    "pathfinder": (64, 1024, 192, 256, 8),
    "pathx": (32, 16384, 128, 256, 16),
}


def official_layer(params, u):
    """The official code's algorithm: per example (vmapped), Λ̄ broadcast to (L, P'), complex B̄u,
    `associative_scan` forward and a second one in reverse, concatenated states, complex readout."""
    lam_bar, b_bar = discretize(params)
    c = params["C"][..., 0] + 1j * params["C"][..., 1]

    def combine(left, right):
        return right[0] * left[0], right[0] * left[1] + right[1]

    def one(u1):
        lam = lam_bar * jnp.ones((u1.shape[0], lam_bar.shape[0]))
        bu = jax.vmap(lambda uk: b_bar @ uk)(u1.astype(jnp.complex64))
        _, xs = jax.lax.associative_scan(combine, (lam, bu))
        _, xs_rev = jax.lax.associative_scan(combine, (lam, bu), reverse=True)
        xs = jnp.concatenate([xs, xs_rev], axis=-1)
        return jax.vmap(lambda x: 2 * (c @ x).real)(xs) + params["D"] * u1

    return jax.vmap(one)(u)


def layer_fn(method):
    if method == "official":
        return official_layer
    return lambda p, u: apply_s5(p, u, conj_sym=True, bidirectional=True, scan=method)


def build(method, params, u):
    fwd = jax.jit(layer_fn(method))
    loss = lambda p, x: jnp.sum(layer_fn(method)(p, x) ** 2)
    bwd = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    t0 = time.perf_counter()
    compiled = bwd.lower(params, u).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    temp = getattr(mem, "temp_size_in_bytes", None) if mem is not None else None
    jax.block_until_ready(fwd(params, u))
    jax.block_until_ready(bwd(params, u))
    return fwd, bwd, compile_s, temp


def timed(fn, *args):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def bench_shape(name, batch, length, h, p, j, methods, repeats):
    layer = S5SSM(SSMConfig(state_size=p, blocks=j, bidirectional=True), h)
    params = layer.init(jax.random.key(0), jnp.zeros((2, h)))["params"]
    u = jax.random.normal(jax.random.key(1), (batch, length, h), jnp.float32)
    built = {m: build(m, params, u) for m in methods}
    times = {m: {"fwd": [], "fwd_bwd": []} for m in methods}
    for _ in range(repeats):  # interleave the methods so drift hits them alike
        for m in methods:
            fwd, bwd, _, _ = built[m]
            times[m]["fwd"].append(timed(fwd, params, u))
            times[m]["fwd_bwd"].append(timed(bwd, params, u))
    rows = []
    for m in methods:
        fwd_ms = 1e3 * float(np.median(times[m]["fwd"]))
        bwd_ms = 1e3 * float(np.median(times[m]["fwd_bwd"]))
        rows.append(dict(shape=name, batch=batch, L=length, H=h, P=p, J=j, method=m, fwd_ms=fwd_ms,
                         fwd_bwd_ms=bwd_ms, compile_s=built[m][2], temp_mb=(built[m][3] or 0) / 2**20,
                         tokens_per_s=batch * length / (bwd_ms / 1e3)))
    base = next((r for r in rows if r["method"] == "official"), None)
    for r in rows:
        r["speedup_vs_official"] = base["fwd_bwd_ms"] / r["fwd_bwd_ms"] if base else None
    return rows


# model.ssm settings per member of the family (PTD and LRU without conjugate pairs: twice S5's stored states).
VARIANTS = {
    "s5": {}, "s5_ptd": {"init": "ptd", "conj_sym": False}, "s4d_lin": {"init": "s4d_lin"},
    "s4d_inv": {"init": "s4d_inv"}, "lru": {"kind": "lru"}, "selective": {"selective": True},
}


def bench_variants(name, batch, length, h, p, j, variants, methods, repeats):
    """One row per (variant, method): the Flax layer's forward and forward+backward, compile time, temp MB."""
    u = jax.random.normal(jax.random.key(1), (batch, length, h), jnp.float32)
    rows = []
    for v in variants:
        for m in methods:
            layer = S5SSM(SSMConfig(state_size=p, blocks=j, bidirectional=True, scan=m, **VARIANTS[v]), h)
            params = layer.init(jax.random.key(0), jnp.zeros((2, h)))["params"]
            apply = lambda q, x, layer=layer: layer.apply({"params": q}, x)
            fwd = jax.jit(apply)
            bwd = jax.jit(jax.value_and_grad(lambda q, x: jnp.sum(apply(q, x) ** 2), argnums=(0, 1)))
            t0 = time.perf_counter()
            compiled = bwd.lower(params, u).compile()
            compile_s = time.perf_counter() - t0
            mem = compiled.memory_analysis()
            jax.block_until_ready(fwd(params, u))
            jax.block_until_ready(bwd(params, u))
            fwd_ms = 1e3 * float(np.median([timed(fwd, params, u) for _ in range(repeats)]))
            bwd_ms = 1e3 * float(np.median([timed(bwd, params, u) for _ in range(repeats)]))
            rows.append(dict(shape=name, batch=batch, L=length, H=h, P=p, J=j, variant=v, method=m,
                             states=int(params["B"].shape[0]), fwd_ms=fwd_ms,
                             fwd_bwd_ms=bwd_ms, compile_s=compile_s,
                             temp_mb=(getattr(mem, "temp_size_in_bytes", 0) or 0) / 2**20,
                             tokens_per_s=batch * length / (bwd_ms / 1e3)))
    return rows


def bench_ptd_solve(block_sizes):
    """Seconds for one uncached solve (the default settings: λ = 3, lr 0.05, 3000 steps) per block size N."""
    import os
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["S5LRA_CACHE_DIR"] = tmp  # a fresh cache: time the solve, not the load
        for n in block_sizes:
            ptd.solve_ptd.cache_clear()
            t0 = time.perf_counter()
            sol = ptd.solve_ptd(n)
            rows.append(dict(N=n, solve_s=time.perf_counter() - t0, cond=sol.cond, rel_E=sol.rel_perturbation,
                             n_real=int(np.sum(sol.lam.imag == 0)), max_re=float(sol.lam.real.max())))
    return rows


SCAN_BYTES = {"fwd": 16, "fwd_bwd": 40}  # ideal traffic per complex64 state: see the module docstring


def copy_gbps(n_floats, repeats):
    """Bandwidth of an elementwise pass over n float32s (read + write), the floor a scan can approach."""
    x = jnp.ones((n_floats,), jnp.float32)
    double = jax.jit(lambda v: v * 2)
    jax.block_until_ready(double(x))
    seconds = float(np.median([timed(double, x) for _ in range(max(repeats, 3))]))
    return 2 * 4 * n_floats / seconds / 1e9


def bench_scan(name, batch, length, p, methods, repeats):
    """The recurrence alone, one direction, on (batch, L, P') complex64 with a time-invariant decay."""
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.uniform(0.9, 1.0, p) * np.exp(1j * rng.uniform(-1, 1, p)), jnp.complex64)
    b = jnp.asarray(rng.normal(size=(batch, length, p)) + 1j * rng.normal(size=(batch, length, p)), jnp.complex64)
    fns = {}
    for m in methods:
        fwd = jax.jit(lambda a, b, m=m: linear_recurrence(a, b, method=m))
        bwd = jax.jit(jax.grad(lambda a, b, m=m: jnp.sum(linear_recurrence(a, b, method=m).real), argnums=(0, 1)))
        jax.block_until_ready(fwd(a, b))
        jax.block_until_ready(bwd(a, b))
        fns[m] = {"fwd": fwd, "fwd_bwd": bwd}
    times = {m: {k: [] for k in SCAN_BYTES} for m in methods}
    for _ in range(repeats):
        for m in methods:
            for k in SCAN_BYTES:
                times[m][k].append(timed(fns[m][k], a, b))
    copy = copy_gbps(2 * batch * length * p, repeats)
    rows = []
    for m in methods:
        row = dict(shape=name, batch=batch, L=length, P=p, method=m, copy_gbps=copy)
        for k, per_state in SCAN_BYTES.items():
            seconds = float(np.median(times[m][k]))
            row[f"{k}_ms"] = 1e3 * seconds
            row[f"{k}_gbps"] = per_state * batch * length * p / seconds / 1e9
            row[f"{k}_of_copy"] = row[f"{k}_gbps"] / copy
        rows.append(row)
    return rows


SHAPE_COLUMNS = [("shape", "<11", "shape"), ("B", ">4", "batch"), ("L", ">7", "L")]
LAYER_COLUMNS = SHAPE_COLUMNS + [
    ("H", ">5", "H"), ("P", ">5", "P"), ("method", "<13", "method"), ("fwd ms", ">9.1f", "fwd_ms"),
    ("f+b ms", ">9.1f", "fwd_bwd_ms"), ("compile s", ">10.2f", "compile_s"), ("temp MB", ">9.1f", "temp_mb"),
    ("vs off.", ">8", speedup("speedup_vs_official"))]
SCAN_COLUMNS = SHAPE_COLUMNS + [
    ("P'", ">5", "P"), ("method", "<13", "method"), ("fwd ms", ">9.2f", "fwd_ms"), ("f+b ms", ">9.2f", "fwd_bwd_ms"),
    ("fwd GB/s", ">10.1f", "fwd_gbps"), ("f+b GB/s", ">10.1f", "fwd_bwd_gbps"),
    ("f+b/copy", ">9.0%", "fwd_bwd_of_copy")]


VARIANT_COLUMNS = SHAPE_COLUMNS + [
    ("variant", "<10", "variant"), ("method", "<11", "method"), ("P'", ">5", "states"), ("fwd ms", ">9.1f", "fwd_ms"),
    ("f+b ms", ">9.1f", "fwd_bwd_ms"), ("compile s", ">10.2f", "compile_s"), ("temp MB", ">9.1f", "temp_mb")]
PTD_COLUMNS = [("N", ">4", "N"), ("solve s", ">9.1f", "solve_s"), ("cond(V)", ">9.1f", "cond"),
               ("|E|/|A|", ">8.3f", "rel_E"), ("real eigs", ">10", "n_real"), ("max Re", ">8.3f", "max_re")]


def print_scan_table(rows):
    print_table(rows, SCAN_COLUMNS)
    print(f"copy bandwidth: {rows[-1]['copy_gbps']:.1f} GB/s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="*", default=list(PAPER_SHAPES), choices=list(PAPER_SHAPES))
    ap.add_argument("--methods", nargs="+", default=["official", "associative", "sequential", "chunked", "auto"])
    ap.add_argument("--batch", type=int, default=None,
                    help="override the batch size (default: the paper's on GPU, 2 on CPU)")
    ap.add_argument("--sweep", action="store_true", help="also sweep L = 1K..16K at the Path-X width")
    ap.add_argument("--scan", action="store_true",
                    help="also time the recurrence alone (every method but official) against copy bandwidth")
    ap.add_argument("--variants", nargs="*", choices=list(VARIANTS), default=None,
                    help="also time these members of the S5 family (no names: all) with --methods")
    ap.add_argument("--ptd-solve", nargs="*", type=int, default=[], metavar="N",
                    help="time one PTD solve for each block size N")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="experiments/bench/results/layer.json")
    args = ap.parse_args()
    backend = jax.default_backend()
    rows, scan_rows, variant_rows = [], [], []
    scan_methods = [m for m in args.methods if m != "official"]  # its scan is `associative`
    for name in args.shapes:
        batch, length, h, p, j = PAPER_SHAPES[name]
        batch = args.batch or (batch if backend != "cpu" else 2)
        if args.variants is not None:
            variant_rows += bench_variants(name, batch, length, h, p, j, args.variants or list(VARIANTS),
                                           scan_methods, args.repeats)
            print_table(variant_rows, VARIANT_COLUMNS)
            continue
        rows += bench_shape(name, batch, length, h, p, j, args.methods, args.repeats)
        print_table(rows[-len(args.methods):], LAYER_COLUMNS)
        if args.scan and scan_methods:
            scan_rows += bench_scan(name, batch, length, p // 2, scan_methods, args.repeats)  # P' = P/2
            print_scan_table(scan_rows[-len(scan_methods):])
    if args.sweep:
        _, _, h, p, j = PAPER_SHAPES["pathx"]
        for length in (1024, 2048, 4096, 8192, 16384):
            rows += bench_shape("sweep", args.batch or 2, length, h, p, j, args.methods, args.repeats)
    ptd_rows = bench_ptd_solve(args.ptd_solve)
    if ptd_rows:
        print_table(ptd_rows, PTD_COLUMNS)
    if rows:
        print()
        print_table(rows, LAYER_COLUMNS)
    if scan_rows:
        print()
        print_scan_table(scan_rows)
    device = jax.devices()[0]
    out = dict(backend=backend, device=getattr(device, "device_kind", str(device)), jax=jax.__version__,
               host=platform.processor() or platform.machine(), repeats=args.repeats, rows=rows,
               scan_rows=scan_rows, variant_rows=variant_rows, ptd_rows=ptd_rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
