"""One residual sequence block (the official "SequenceLayer"): norm, S5, activation, dropout, residual."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from s5lra.model.config import ModelConfig
from s5lra.ssm import ssm_layer
from s5lra.ssm.layer import valid_mask


class SequenceBlock(nn.Module):
    """x -> x + act(SSM(norm(x))) with prenorm, or norm(x + act(SSM(x))) with postnorm.

    `lengths` marks the valid positions; with cfg.mask_padding they are the only ones the SSM and the
    BatchNorm statistics see. Dropout masks are shared over time (one per example and channel).
    Returns (x, None) so the block can be the body of `nn.scan` over layers.
    """

    cfg: ModelConfig
    train: bool = False
    dtype: Any = jnp.float32  # compute dtype of the GLU matmuls (bf16 for mixed precision); the SSM stays f32

    def _norm(self, x, mask):
        if self.cfg.norm == "batch":
            norm = nn.BatchNorm(momentum=self.cfg.bn_momentum, epsilon=1e-5, name="norm")
            return norm(x, use_running_average=not self.train, mask=mask)
        return nn.LayerNorm(epsilon=1e-6, name="norm")(x)  # Flax's default, as the official code

    @nn.compact
    def __call__(self, x, lengths):
        cfg = self.cfg
        masked = cfg.mask_padding and lengths is not None
        mask = None
        if masked:
            mask = jnp.broadcast_to(valid_mask(lengths, x.shape[-2]) > 0, x.shape)
        drop = nn.Dropout(cfg.dropout, broadcast_dims=(x.ndim - 2,), deterministic=not self.train)
        skip = x
        if cfg.prenorm:
            x = self._norm(x, mask)
        x = ssm_layer(cfg.ssm, cfg.d_model, name="ssm")(x, lengths if masked else None)
        x = self._activation(x, drop)
        x = skip + x.astype(skip.dtype)
        if not cfg.prenorm:
            x = self._norm(x, mask)
        return x, None

    def _activation(self, x, drop):
        act = self.cfg.activation
        z = drop(nn.gelu(x))
        if act == "gelu":
            return z
        gate = nn.sigmoid(nn.Dense(self.cfg.d_model, dtype=self.dtype, name="W2")(z))
        if act == "full_glu":
            return drop(nn.Dense(self.cfg.d_model, dtype=self.dtype, name="W1")(z) * gate)
        if act == "half_glu1":
            return drop(z * gate)
        return drop(x * gate)  # half_glu2: gate on the GELU'd signal, multiply the raw SSM output
