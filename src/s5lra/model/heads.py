"""Input encoders, pooling over time, and output heads."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class TokenEncoder(nn.Module):
    """Embedding lookup plus bias: the official one-hot + Dense, with the same initialisation, minus the matmul."""

    vocab_size: int
    d_model: int

    @nn.compact
    def __call__(self, tokens):
        kernel = self.param("kernel", jax.nn.initializers.lecun_normal(), (self.vocab_size, self.d_model))
        bias = self.param("bias", nn.initializers.zeros, (self.d_model,))
        return jnp.take(kernel, tokens, axis=0) + bias


def pool(x, lengths, mode: str):
    """(B, L, H) -> (B, H): mean over the true length, or the last valid position (mode: mean | last)."""
    length = x.shape[-2]
    if lengths is None:
        lengths = jnp.full(x.shape[:-2], length)
    if mode == "last":
        idx = jnp.clip(lengths - 1, 0, length - 1)
        return jnp.take_along_axis(x, idx[..., None, None], axis=-2)[..., 0, :]
    mask = (jnp.arange(length) < lengths[..., None])[..., None]
    return jnp.sum(x * mask, axis=-2) / jnp.maximum(lengths, 1)[..., None]


class ClassifierHead(nn.Module):
    """Pooled features -> Dense(n_classes)."""

    n_classes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, pooled):
        return nn.Dense(self.n_classes, dtype=self.dtype, name="out")(pooled)


class RetrievalHead(nn.Module):
    """Two pooled documents -> [u1, u2, u1 - u2, u1 ⊙ u2] -> Dense(H) -> gelu -> Dense(n_classes)."""

    d_model: int
    n_classes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, u1, u2):
        features = jnp.concatenate([u1, u2, u1 - u2, u1 * u2], axis=-1)
        hidden = nn.gelu(nn.Dense(self.d_model, dtype=self.dtype, name="hidden")(features))
        return nn.Dense(self.n_classes, dtype=self.dtype, name="out")(hidden)
