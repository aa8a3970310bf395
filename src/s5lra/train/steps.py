"""Training state and the compiled train/eval steps (jit over the device mesh).

The loss is the weighted mean NLL over the *global* batch: zero-weight rows (evaluation padding) count for
nothing, and because the step is one SPMD program over sharded arrays, the sums run over every device.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from s5lra.train.sharding import batch_sharding, replicated


class TrainState(flax.struct.PyTreeNode):
    """Everything a checkpoint needs to continue bit-exactly (the optimizer itself is rebuilt from config)."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array  # raw PRNG key data; each step's dropout key is fold_in(rng, step)


def _variables(params, batch_stats):
    variables = {"params": params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    return variables


def model_inputs(inputs, normalize):
    """Pixel tasks travel as uint8 (B, L), a quarter of the bytes; the model takes (x / 255 - mean) / std as
    (B, L, 1) floats (TaskSpec.normalize). Token ids pass unchanged (normalize None)."""
    if normalize is None:
        return inputs
    mean, std = normalize
    return ((inputs.astype(jnp.float32) / 255.0 - mean) / std)[..., None]


def _weighted_stats(log_probs, labels, weights):
    """Sums over the global batch: (weighted NLL, weighted correct, weight)."""
    weights = weights.astype(jnp.float32)
    nll = -jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
    correct = (jnp.argmax(log_probs, axis=-1) == labels).astype(jnp.float32)
    return jnp.sum(weights * nll), jnp.sum(weights * correct), jnp.sum(weights)


def init_state(model, tx: optax.GradientTransformation, example: dict, seed: int, mesh, normalize=None) -> TrainState:
    """Initialise parameters and optimizer state, replicated on every device of the mesh."""

    def init():
        key = jax.random.PRNGKey(seed)
        init_key, rng = jax.random.split(key)
        variables = model.init(
            {"params": init_key, "dropout": init_key}, model_inputs(example["inputs"], normalize), example["lengths"],
            train=False,
        )
        params = variables["params"]
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=tx.init(params),
            rng=rng,
        )

    return jax.jit(init, out_shardings=replicated(mesh))()


def make_train_step(model, tx: optax.GradientTransformation, mesh, normalize=None):
    """(state, batch) -> (state, metrics); batch: inputs, lengths, labels, weights (global arrays)."""

    def step(state: TrainState, batch):
        dropout_key = jax.random.fold_in(state.rng, state.step)

        def loss_fn(params):
            out, updates = model.apply(
                _variables(params, state.batch_stats), model_inputs(batch["inputs"], normalize), batch["lengths"],
                train=True,
                rngs={"dropout": dropout_key}, mutable=["batch_stats"],
            )
            nll, correct, total = _weighted_stats(out, batch["labels"], batch["weights"])
            total = jnp.maximum(total, 1.0)
            return nll / total, (correct / total, total, updates.get("batch_stats", {}))

        (loss, (acc, total, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new_state = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            batch_stats=batch_stats,
            opt_state=opt_state,
        )
        return new_state, {"loss": loss, "accuracy": acc, "weight": total}

    repl = replicated(mesh)
    return jax.jit(step, in_shardings=(repl, batch_sharding(mesh)), out_shardings=(repl, repl), donate_argnums=0)


def make_eval_step(model, mesh, normalize=None):
    """(params, batch_stats, batch) -> sums of weighted NLL, correct and weight (to accumulate on the host)."""

    def step(params, batch_stats, batch):
        inputs = model_inputs(batch["inputs"], normalize)
        out = model.apply(_variables(params, batch_stats), inputs, batch["lengths"], train=False)
        nll, correct, total = _weighted_stats(out, batch["labels"], batch["weights"])
        return {"nll": nll, "correct": correct, "weight": total}

    repl = replicated(mesh)
    return jax.jit(step, in_shardings=(repl, repl, batch_sharding(mesh)), out_shardings=repl)
