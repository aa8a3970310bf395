"""Model settings as plain dataclasses (Hydra uses them as structured configs; the library needs no Hydra)."""

from __future__ import annotations

from dataclasses import dataclass, field

from s5lra.errors import InvalidSetting, check_choice
from s5lra.ssm.config import SSMConfig

ACTIVATIONS = ("full_glu", "half_glu1", "half_glu2", "gelu")
NORMS = ("batch", "layer")
POOLINGS = ("mean", "last")


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
    # Rematerialise each layer in the backward pass (memory for long sequences). It keeps the stack scanned even
    # with unroll_layers: unrolled, XLA kept every layer's activations and remat saved nothing (measured).
    remat: bool = False
    # Compile the layer stack unrolled (nn.scan with unroll = n_layers; same parameters): on a CPU the faster
    # step for shallow stacks, at about twice the compile time. XLA then fuses differently, so some losses
    # differ from the scanned stack in the last bit. Ignored under remat (above).
    unroll_layers: bool = False
    ssm: SSMConfig = field(default_factory=SSMConfig)

    def check(self) -> None:
        """Raise InvalidSetting (naming the field; `ssm.` fields prefixed) for a value the model cannot use."""
        for name in ("n_layers", "d_model"):
            if getattr(self, name) <= 0:
                raise InvalidSetting(name, getattr(self, name), "must be positive")
        if not 0 <= self.dropout < 1:
            raise InvalidSetting("dropout", self.dropout, "must lie in [0, 1)")
        if not 0 <= self.bn_momentum <= 1:
            raise InvalidSetting("bn_momentum", self.bn_momentum, "must lie in [0, 1]")
        check_choice("norm", self.norm, NORMS)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("pooling", self.pooling, POOLINGS)
        try:
            self.ssm.check()
        except InvalidSetting as err:
            raise InvalidSetting(f"ssm.{err.name}", err.value, err.reason) from None
