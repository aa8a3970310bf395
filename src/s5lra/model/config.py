"""Model settings as plain dataclasses (Hydra uses them as structured configs; the library needs no Hydra)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SSMConfig:
    """One S5 layer. `state_size` is the paper's P (before halving for conjugate symmetry)."""

    state_size: int = 64
    blocks: int = 1
    conj_sym: bool = True
    bidirectional: bool = True
    C_init: str = "lecun_normal"  # trunc_standard_normal | lecun_normal | complex_normal
    discretization: str = "zoh"  # zoh | bilinear
    dt_min: float = 1e-3
    dt_max: float = 0.1
    clip_eigs: bool = False
    step_rescale: float = 1.0
    scan: str = "auto"  # auto | associative | sequential | chunked | checkpointed | pallas


@dataclass
class ModelConfig:
    """The stack: encoder -> n_layers S5 blocks -> pooling -> head."""

    n_layers: int = 4
    d_model: int = 64
    dropout: float = 0.0
    prenorm: bool = True
    norm: str = "batch"  # batch | layer
    bn_momentum: float = 0.95
    activation: str = "half_glu1"  # full_glu | half_glu1 | half_glu2 | gelu
    pooling: str = "mean"  # mean | last
    # Deliberate difference from the official code (which leaks padding into the reverse direction and the
    # BatchNorm statistics): padded positions are zeroed before the SSM, the reverse scan starts at each
    # sequence's true end, and BatchNorm statistics use valid positions only. False = official behaviour.
    mask_padding: bool = True
    remat: bool = False  # rematerialise each layer in the backward pass (memory for long sequences)
    ssm: SSMConfig = field(default_factory=SSMConfig)
