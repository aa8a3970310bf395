"""Time one S5 SSM layer per scan method against the official algorithm, on the paper's task shapes.

    python experiments/bench/layer.py                      # paper shapes (batch reduced on CPU, see --batch)
    python experiments/bench/layer.py --shapes pathx --sweep  # plus L = 1K..16K at the Path-X width
    python experiments/bench/layer.py --shapes pathx --batch 2 --methods auto official

Forward and forward+backward wall time (median of --repeats after a warm-up, methods interleaved within each
repeat), compile time, and XLA's temporary-buffer size for the fwd+bwd program (a deterministic proxy for peak
memory on any backend). Prints a table and writes JSON (--out).
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

from s5lra.ssm import S5SSM, apply_s5
from s5lra.ssm.layer import discretize

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
    layer = S5SSM(d_model=h, state_size=p, blocks=j, bidirectional=True)
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


def print_table(rows):
    head = f"{'shape':<11}{'B':>4}{'L':>7}{'H':>5}{'P':>5} {'method':<12}{'fwd ms':>9}{'f+b ms':>9}" \
           f"{'compile s':>10}{'temp MB':>9}{'vs off.':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        speed = f"{r['speedup_vs_official']:.2f}x" if r["speedup_vs_official"] else "-"
        print(f"{r['shape']:<11}{r['batch']:>4}{r['L']:>7}{r['H']:>5}{r['P']:>5} {r['method']:<12}"
              f"{r['fwd_ms']:>9.1f}{r['fwd_bwd_ms']:>9.1f}{r['compile_s']:>10.2f}{r['temp_mb']:>9.1f}{speed:>8}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=list(PAPER_SHAPES), choices=list(PAPER_SHAPES))
    ap.add_argument("--methods", nargs="+", default=["official", "associative", "sequential", "chunked", "auto"])
    ap.add_argument("--batch", type=int, default=None,
                    help="override the batch size (default: the paper's on GPU, 2 on CPU)")
    ap.add_argument("--sweep", action="store_true", help="also sweep L = 1K..16K at the Path-X width")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="experiments/bench/results/layer.json")
    args = ap.parse_args()
    backend = jax.default_backend()
    rows = []
    for name in args.shapes:
        batch, length, h, p, j = PAPER_SHAPES[name]
        batch = args.batch or (batch if backend != "cpu" else 2)
        rows += bench_shape(name, batch, length, h, p, j, args.methods, args.repeats)
        print_table(rows[-len(args.methods):])
    if args.sweep:
        _, _, h, p, j = PAPER_SHAPES["pathx"]
        for length in (1024, 2048, 4096, 8192, 16384):
            rows += bench_shape("sweep", args.batch or 2, length, h, p, j, args.methods, args.repeats)
    print()
    print_table(rows)
    device = jax.devices()[0]
    out = dict(backend=backend, device=getattr(device, "device_kind", str(device)), jax=jax.__version__,
               host=platform.processor() or platform.machine(), repeats=args.repeats, rows=rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
