"""Sequence blocks, encoders, pooling and heads around the S5 layer."""

from s5lra.model.block import SequenceBlock
from s5lra.model.config import ModelConfig, SSMConfig
from s5lra.model.model import S5Model, build_model, count_params

__all__ = ["ModelConfig", "S5Model", "SequenceBlock", "SSMConfig", "build_model", "count_params"]
