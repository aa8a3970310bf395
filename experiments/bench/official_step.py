"""Our whole training step against the official S5 code's own jitted `train_step`, same paper model, same
batch shape, steps interleaved.

    git clone https://github.com/lindermanlab/S5 ../S5        # once; nothing from it is installed
    python experiments/bench/official_step.py --official ../S5 experiment=lra/listops --batch 8
    python experiments/bench/official_step.py --official ../S5 experiment=lra/image --variants auto remat

The official package is imported from --official (it needs only jax, flax, optax and tqdm for these modules)
and built from the composed config with the arguments its run script passes for the task: the model from
`init_S5SSM` + `BatchClassificationModel`/`RetrievalModel`, the optimizer from its `create_train_state`, the
step from its `train_step`. Its inputs are what its data pipeline hands the model: one-hot floats for tokens
(widths 20 and 135 as its loaders hard-code them; for AAN, whose width is its vocabulary's size, ours: 98),
floats for pixels. Three shims let the 2022 code run on this JAX/Flax (`jax.tree_leaves`,
`jax.numpy.DeviceArray`, frozen init variables); they change no arithmetic. Default variants: the configured
step (`auto`) and the associative-scan variant (`official`).

`train_step.py` runs the same comparison against our own re-implementation of the official algorithm
(`official` there), which needs no clone. Prints a table and writes JSON (--out).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from functools import partial
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np

from table import print_table, speedup
from train_step import CLASSES, PAPER_LEN, VARIANTS, load_config, prepare, take_turns, timed_step

ONE_HOT_WIDTH = {"listops": 20, "text": 135, "retrieval": 98}  # the official loaders' IN_DIM (AAN: ours)
COLUMNS = [
    ("task", "<11", "task"), ("code", "<18", "code"), ("B", ">4", "batch"), ("L", ">7", "L"),
    ("compile s", ">10.1f", "compile_s"), ("step ms", ">10.1f", "step_ms"), ("ex/s", ">9.1f", "examples_per_s"),
    ("vs official", ">12", speedup("speedup_vs_official"))]


def import_official(path: Path):
    """The official modules, imported from a clone; fails naming the path when it is not one."""
    if not (path / "s5" / "train_helpers.py").is_file():
        sys.exit(f"{path}: not a clone of lindermanlab/S5 (no s5/train_helpers.py); pass --official PATH")
    # Both removed from JAX after the official release; the official code uses them as a function and an annotation.
    jax.tree_leaves = getattr(jax, "tree_leaves", jax.tree.leaves)
    jnp.DeviceArray = jax.Array
    sys.path.insert(0, str(path))
    from s5 import seq_model, ssm, ssm_init, train_helpers  # noqa: E402 (needs the shim and the path first)
    return seq_model, ssm, ssm_init, train_helpers


class _FrozenInit:
    """Wraps an official model class so `init` returns FrozenDicts (the official code calls `.unfreeze()`)."""

    def __init__(self, model):
        self.model = model
        self.apply = model.apply

    def init(self, *args, **kwargs):
        return flax.core.freeze(self.model.init(*args, **kwargs))


def official_model(cfg, modules, training: bool):
    """The official model of the composed config, built as its train.py builds it."""
    seq_model, ssm, ssm_init, _ = modules
    m, s, task = cfg.model, cfg.model.ssm, cfg.dataset.name
    block = s.state_size // s.blocks
    lam, _, _, v, _ = ssm_init.make_DPLR_HiPPO(block)
    if s.conj_sym:
        block //= 2
    lam, v = lam[:block], v[:, :block]
    vinv = v.conj().T
    lam = (lam * jnp.ones((s.blocks, block))).ravel()
    ssm_fn = ssm.init_S5SSM(
        H=m.d_model, P=s.state_size // 2 if s.conj_sym else s.state_size, Lambda_re_init=lam.real,
        Lambda_im_init=lam.imag, V=jax.scipy.linalg.block_diag(*[v] * s.blocks),
        Vinv=jax.scipy.linalg.block_diag(*[vinv] * s.blocks), C_init=s.C_init, discretization=s.discretization,
        dt_min=s.dt_min, dt_max=s.dt_max, conj_sym=s.conj_sym, clip_eigs=s.clip_eigs, bidirectional=s.bidirectional)
    common = dict(ssm=ssm_fn, d_output=CLASSES.get(task, 2),
                  d_model=m.d_model, n_layers=m.n_layers, padded=task in ONE_HOT_WIDTH, activation=m.activation,
                  dropout=m.dropout, prenorm=m.prenorm, batchnorm=m.norm == "batch", bn_momentum=m.bn_momentum,
                  training=training)
    if task == "retrieval":
        return seq_model.RetrievalModel(**common)
    return seq_model.BatchClassificationModel(mode="pool" if m.pooling == "mean" else "last", **common)


def official_batch(task, batch, length, rng):
    """(inputs, labels, integration timesteps) as the official pipeline hands them to `train_step`."""
    rows = 2 * batch if task == "retrieval" else batch
    labels = jnp.asarray(rng.integers(0, CLASSES.get(task, 2), batch).astype(np.float32))
    steps = jnp.ones((rows, length))
    if task in ONE_HOT_WIDTH:
        tokens = rng.integers(3, ONE_HOT_WIDTH[task], (rows, length))
        inputs = (jax.nn.one_hot(tokens, ONE_HOT_WIDTH[task]), jnp.full((rows,), float(length)))
    else:
        inputs = jnp.asarray(rng.standard_normal((rows, length, 1)).astype(np.float32))
    return inputs, labels, steps


def prepare_official(cfg, modules, batch, length):
    train_helpers = modules[3]
    task, opt = cfg.dataset.name, cfg.optimizer
    model = official_model(cfg, modules, training=True)
    width = ONE_HOT_WIDTH.get(task, 1)
    with contextlib.redirect_stdout(io.StringIO()):  # its prints while it builds the state
        state = train_helpers.create_train_state(
            lambda training: _FrozenInit(official_model(cfg, modules, training)), jax.random.PRNGKey(0),
            padded=task in ONE_HOT_WIDTH, retrieval=task == "retrieval", in_dim=width, bsz=batch, seq_len=length,
            weight_decay=opt.weight_decay, batchnorm=cfg.model.norm == "batch", opt_config=opt.groups,
            ssm_lr=opt.ssm_lr, lr=opt.lr, dt_global=opt.dt_global)
    if hasattr(state, "batch_stats"):  # as its steps return them, or the second step compiles again
        state = state.replace(batch_stats=flax.core.unfreeze(state.batch_stats))
    inputs, labels, steps = official_batch(task, batch, length, np.random.default_rng(0))
    step = partial(train_helpers.train_step, model=model, batchnorm=cfg.model.norm == "batch")
    rng = jax.random.PRNGKey(1)

    def official_step(state, _):
        return step(state, rng, inputs, labels, steps)

    t0 = time.perf_counter()  # the first call compiles (and runs one step)
    state = jax.block_until_ready(official_step(state, None))[0]
    row = dict(task=task, code="official S5", batch=batch, L=length, compile_s=time.perf_counter() - t0)
    return {"state": state, "step": official_step, "batch": None, "times": [], "row": row}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=lra/listops")
    ap.add_argument("--official", type=Path, required=True, help="path of a clone of lindermanlab/S5")
    ap.add_argument("--variants", nargs="+", default=["auto", "official"], choices=list(VARIANTS),
                    help="our variants to time beside the official step (train_step.py's names)")
    ap.add_argument("--batch", type=int, default=2, help="global batch")
    ap.add_argument("--seq-len", type=int, help="sequence length (default: the task's)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per code, taken in turns")
    ap.add_argument("--out", default=None,
                    help="JSON path (default experiments/bench/results/official_step_<task>.json)")
    args = ap.parse_args()
    modules = import_official(args.official.resolve())
    cfg = load_config(args.overrides)
    task = cfg.dataset.name
    length = args.seq_len or PAPER_LEN[task]
    runs = [prepare_official(cfg, modules, args.batch, length)]
    for variant in args.variants:
        run = prepare(cfg, variant, args.batch, length)
        run["row"]["code"] = f"s5lra {variant}"
        runs.append(run)
    for run in runs:  # warm-up
        timed_step(run)
        run["times"].clear()
    take_turns(runs, args.steps)
    rows = []
    for run in runs:
        step_s = float(np.median(run["times"]))
        rows.append(dict(run["row"], step_ms=1e3 * step_s, examples_per_s=args.batch / step_s))
    for r in rows:
        r["speedup_vs_official"] = rows[0]["step_ms"] / r["step_ms"]
    print_table(rows, COLUMNS)
    out = Path(args.out or f"experiments/bench/results/official_step_{task}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(backend=jax.default_backend(), jax=jax.__version__, flax=flax.__version__,
                                   overrides=args.overrides, steps=args.steps, rows=rows), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
