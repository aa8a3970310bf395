"""Training state and the compiled train/eval steps (jit over the device mesh).

The loss is the weighted mean NLL over the *global* batch: zero-weight rows (evaluation padding) count for
nothing, and because the step is one SPMD program over sharded arrays, the sums run over every device.
The steps know nothing about tasks: the model takes the task's raw inputs (see `s5lra.model.build_model`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from s5lra.model import build_model
from s5lra.train.optim import make_optimizer
from s5lra.train.schedule import make_schedule
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


def _weighted_stats(log_probs, labels, weights):
    """Sums over the global batch: (weighted NLL, weighted correct, weight)."""
    weights = weights.astype(jnp.float32)
    nll = -jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
    correct = (jnp.argmax(log_probs, axis=-1) == labels).astype(jnp.float32)
    return jnp.sum(weights * nll), jnp.sum(weights * correct), jnp.sum(weights)


def build(cfg, spec, steps_per_epoch: int):
    """(model, optimizer, schedules) for a task; training and evaluation share it."""
    model = build_model(cfg.model, spec, cfg.trainer.precision)
    sched = dict(steps_per_epoch=steps_per_epoch, epochs=cfg.trainer.epochs, **dataclasses.asdict(cfg.scheduler))
    schedules = {"lr": make_schedule(cfg.optimizer.lr, **sched), "ssm_lr": make_schedule(cfg.optimizer.ssm_lr, **sched)}
    return model, make_optimizer(cfg.optimizer, schedules["lr"], schedules["ssm_lr"]), schedules


def create_train_state(model, tx: optax.GradientTransformation, example_batch: dict, seed: int, mesh) -> TrainState:
    """Parameters and optimizer state from `seed`, replicated on every device of the mesh.

    example_batch: inputs and lengths of one or more examples (their shapes and dtypes define the model's).
    """

    def init():
        init_key, rng = jax.random.split(jax.random.PRNGKey(seed))
        variables = model.init({"params": init_key, "dropout": init_key}, example_batch["inputs"],
                               example_batch["lengths"], train=False)
        params = variables["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables.get("batch_stats", {}),
                          opt_state=tx.init(params), rng=rng)

    return jax.jit(init, out_shardings=replicated(mesh))()


def metric_names(lr_schedules: dict | None = None) -> tuple[str, ...]:
    """The entries of the train step's metrics vector, in order."""
    return ("loss", "accuracy", "weight", *(lr_schedules or {}))


def make_train_step(model, tx: optax.GradientTransformation, mesh, lr_schedules: dict | None = None):
    """(state, batch) -> (state, metrics); batch: inputs, lengths, labels, weights (global arrays).

    metrics: one float32 vector, entries `metric_names(lr_schedules)`: loss, accuracy and weight of the batch,
    then the rate of every schedule (name -> step -> rate) at this update, so the host never computes them.
    One array rather than a dict of scalars: reading a logging window back costs per array.
    """

    def step(state: TrainState, batch):
        dropout_key = jax.random.fold_in(state.rng, state.step)

        def loss_fn(params):
            out, updates = model.apply(_variables(params, state.batch_stats), batch["inputs"], batch["lengths"],
                                       train=True, rngs={"dropout": dropout_key}, mutable=["batch_stats"])
            nll, correct, total = _weighted_stats(out, batch["labels"], batch["weights"])
            total = jnp.maximum(total, 1.0)
            return nll / total, (correct / total, total, updates.get("batch_stats", {}))

        (loss, (acc, total, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                                  batch_stats=batch_stats, opt_state=opt_state)
        rates = [fn(state.step) for fn in (lr_schedules or {}).values()]
        return new_state, jnp.stack([jnp.asarray(x, jnp.float32) for x in (loss, acc, total, *rates)])

    repl = replicated(mesh)
    return jax.jit(step, in_shardings=(repl, batch_sharding(mesh)), out_shardings=(repl, repl), donate_argnums=0)


def make_eval_step(model, mesh):
    """(params, batch_stats, batch) -> sums of weighted NLL, correct and weight over the global batch."""

    def step(params, batch_stats, batch):
        out = model.apply(_variables(params, batch_stats), batch["inputs"], batch["lengths"], train=False)
        nll, correct, total = _weighted_stats(out, batch["labels"], batch["weights"])
        return jnp.stack([nll, correct, total])

    repl = replicated(mesh)
    return jax.jit(step, in_shardings=(repl, repl, batch_sharding(mesh)), out_shardings=repl)


def evaluate(eval_step, state: TrainState, batches) -> dict:
    """Loss and accuracy over a whole split of device batches: sums stay on the device, one read at the end."""
    sums = None
    for batch in batches:
        out = eval_step(state.params, state.batch_stats, batch)
        sums = out if sums is None else sums + out
    nll, correct, weight = (float(x) for x in jax.device_get(sums)) if sums is not None else (0.0, 0.0, 0.0)
    weight_ = max(weight, 1.0)
    return {"loss": nll / weight_, "accuracy": correct / weight_, "examples": int(weight)}
