"""The S5 stack for LRA: encoder -> scanned S5 blocks -> pooling -> head -> log-probabilities."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from s5lra.model.block import SequenceBlock
from s5lra.model.config import ModelConfig
from s5lra.model.heads import ClassifierHead, RetrievalHead, TokenEncoder, pool


class S5Model(nn.Module):
    """Sequence classifier (or retrieval dual encoder when `dual`).

    inputs: (B, L) integer tokens when vocab_size is set; (B, L) uint8 pixels when `normalize` = (mean, std) is
    set (the model takes (x / 255 - mean) / std, so the pixels travel as a quarter of the bytes); else
    (B, L, D) real features. dual: (B, 2, L) tokens with lengths (B, 2), both documents through the same
    encoder and stack (stacked as 2B rows, so BatchNorm sees both). Layers are one `nn.scan` over identical
    blocks, so compile time does not grow with depth (unless cfg.unroll_layers without cfg.remat); their
    parameters carry a leading n_layers axis either way.
    """

    cfg: ModelConfig
    n_classes: int
    vocab_size: int | None = None
    dual: bool = False
    normalize: tuple[float, float] | None = None
    dtype: Any = jnp.float32  # compute dtype of the non-SSM matmuls ("bf16" precision); params stay f32

    @nn.compact
    def __call__(self, inputs, lengths=None, train: bool = False):
        cfg = self.cfg
        batch = inputs.shape[0]
        if self.dual:
            inputs = jnp.swapaxes(inputs, 0, 1).reshape(2 * batch, *inputs.shape[2:])
            lengths = jnp.swapaxes(lengths, 0, 1).reshape(2 * batch)
        if self.normalize is not None:
            mean, std = self.normalize
            inputs = ((inputs.astype(jnp.float32) / 255.0 - mean) / std)[..., None]
        if self.vocab_size is not None:
            x = TokenEncoder(self.vocab_size, cfg.d_model, name="encoder")(inputs)
        else:
            x = nn.Dense(cfg.d_model, name="encoder")(inputs)  # width 1 for pixels: keep f32
        block = nn.remat(SequenceBlock) if cfg.remat else SequenceBlock
        layers = nn.scan(
            block,
            variable_axes={"params": 0, "batch_stats": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=nn.broadcast,
            length=cfg.n_layers,
            unroll=cfg.n_layers if cfg.unroll_layers and not cfg.remat else 1,  # unrolled, remat saved nothing
        )(cfg, train, self.dtype, name="layers")
        x, _ = layers(x, lengths)
        pooled = pool(x, lengths, cfg.pooling)
        if self.dual:
            head = RetrievalHead(cfg.d_model, self.n_classes, self.dtype, name="decoder")
            logits = head(pooled[:batch], pooled[batch:])
        else:
            logits = ClassifierHead(self.n_classes, self.dtype, name="decoder")(pooled)
        return jax.nn.log_softmax(logits.astype(jnp.float32))


PRECISIONS = {"fp32": jnp.float32, "bf16": jnp.bfloat16}


def build_model(cfg: ModelConfig, spec, precision: str = "fp32") -> S5Model:
    """The model for a task; sizes (classes, vocabulary, dual inputs, pixel normalisation) come from the data's
    TaskSpec. The settings are checked by `cfg.check()` (the training entry point runs it for every run).

    precision "bf16" runs the encoder-side GLU and head matmuls in bfloat16 (parameters, norms, the SSM
    projections and the recurrence stay float32/complex64).
    """
    normalize = getattr(spec, "normalize", None) if spec.vocab_size is None else None
    return S5Model(cfg, n_classes=spec.n_classes, vocab_size=spec.vocab_size, dual=spec.dual,
                   normalize=None if normalize is None else tuple(normalize), dtype=PRECISIONS[precision])


def count_params(params) -> int:
    """Number of trainable scalars in a parameter tree."""
    return int(sum(leaf.size for leaf in jax.tree.leaves(params)))
