"""Settings of one S5 layer: the single source of each field's default and allowed values."""

from __future__ import annotations

from dataclasses import dataclass

from s5lra.errors import InvalidSetting, check_choice
from s5lra.ssm.init import C_INITS
from s5lra.ssm.layer import DISCRETIZATIONS
from s5lra.ssm.recurrence import METHODS


@dataclass
class SSMConfig:
    """One S5 layer. `state_size` is the paper's P (before halving for conjugate symmetry)."""

    state_size: int = 64
    blocks: int = 1  # J: the HiPPO matrix of size state_size/blocks is tiled this many times
    conj_sym: bool = True
    bidirectional: bool = True
    C_init: str = "lecun_normal"  # one of ssm.init.C_INITS
    discretization: str = "zoh"  # zoh | bilinear
    dt_min: float = 1e-3
    dt_max: float = 0.1
    clip_eigs: bool = False
    step_rescale: float = 1.0
    scan: str = "auto"  # auto | one of ssm.recurrence.METHODS

    def check(self) -> None:
        """Raise InvalidSetting (naming the field) for a value the layer cannot use."""
        for name in ("state_size", "blocks"):
            if getattr(self, name) <= 0:
                raise InvalidSetting(name, getattr(self, name), "must be positive")
        if self.state_size % self.blocks:
            raise InvalidSetting("state_size", self.state_size, f"must divide by blocks={self.blocks}")
        if self.conj_sym and (self.state_size // self.blocks) % 2:
            raise InvalidSetting("state_size", self.state_size, f"state_size/blocks must be even with conj_sym "
                                 f"(one state per conjugate pair); it is {self.state_size // self.blocks}")
        check_choice("C_init", self.C_init, C_INITS)
        check_choice("discretization", self.discretization, DISCRETIZATIONS)
        check_choice("scan", self.scan, ("auto", *METHODS))
        if not 0 < self.dt_min <= self.dt_max:
            raise InvalidSetting("dt_min", self.dt_min, f"need 0 < dt_min <= dt_max (dt_max={self.dt_max})")
        if self.step_rescale <= 0:
            raise InvalidSetting("step_rescale", self.step_rescale, "must be positive")
