"""Per-step learning-rate schedule: linear warmup, then cosine to lr_min (docs/s5.md, section 7).

The official code sets the rate *after* each update from the step just taken, so update k runs at
f(k - 1) and the first update at the full rate; its cosine also counts the global step, so it bottoms
out `warmup_epochs` epochs before the end. Both quirks are kept by default and can be switched off.
"""

from __future__ import annotations

import jax.numpy as jnp


def make_schedule(
    base_lr: float,
    *,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: int,
    lr_min: float = 0.0,
    first_step_full_lr: bool = True,
    cosine_from_global_step: bool = True,
):
    """Returns update index k (0-based, int or traced) -> learning rate, usable as an optax schedule."""
    warmup = warmup_epochs * steps_per_epoch
    decay = max(steps_per_epoch * (epochs - warmup_epochs), 1)

    def rate_after(s):
        """The official rate set after update s (warmup while s < W, cosine afterwards)."""
        s = jnp.asarray(s, jnp.float32)
        warm = base_lr * (s + 1) / max(warmup, 1)
        count = s if cosine_from_global_step else s - warmup
        count = jnp.clip(count, 0, decay)
        cosine = lr_min + (base_lr - lr_min) * 0.5 * (1 + jnp.cos(jnp.pi * count / decay))
        return jnp.where(s < warmup, warm, cosine)

    def schedule(k):
        if first_step_full_lr:
            return jnp.where(jnp.asarray(k) == 0, jnp.float32(base_lr), rate_after(jnp.asarray(k) - 1))
        return rate_after(k)

    return schedule
