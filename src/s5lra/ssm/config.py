"""Settings of one SSM layer of the S5 family: the single source of each field's default and allowed values.

Each layer has its own settings (`S5Config` here, `LRUConfig` in ssm/lru.py). `SSMConfig` is the config node
`model.ssm` that users set, one flat key per setting: `kind` picks the layer, which gets only its own settings
(`layer_config()`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

from s5lra.errors import InvalidSetting, check_choice
from s5lra.ssm.diag_init import INITS
from s5lra.ssm.init import C_INITS
from s5lra.ssm.lru import LRUConfig
from s5lra.ssm.ptd import PTDSettings
from s5lra.ssm.layer import DISCRETIZATIONS
from s5lra.ssm.recurrence import METHODS


@dataclass
class S5Config:
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
    # The S5 family (README "Model variants"; docs/variants.md).
    init: str = "hippo"  # hippo | ptd | s4d_lin | s4d_inv | s4d_real (ssm.diag_init.INITS)
    freq_scale: float = 1.0  # S4D-FT's α: the initial imaginary parts × freq_scale
    force_neg: bool = False  # Re Λ → −|Re Λ| at initialisation (S5-PTD: a perturbed spectrum can be unstable)
    ptd_reg: float = 3.0  # init=ptd: the solver's λ in cond(V)² + λ‖E‖_F
    ptd_lr: float = 0.05
    ptd_steps: int = 3000
    selective: bool = False  # Δ_k = Δ₀·exp(W₂W₁u_k), W₂ = 0 at init (the layer starts as S5)
    selective_rank: Optional[int] = None  # r, the width of W₁: H → r; None: ⌈d_model/16⌉

    def ptd_settings(self) -> PTDSettings:
        return PTDSettings(reg=self.ptd_reg, lr=self.ptd_lr, steps=self.ptd_steps)

    def check(self) -> None:
        """Raise InvalidSetting (naming the field) for a value the layer cannot use."""
        for name in ("state_size", "blocks"):
            if getattr(self, name) <= 0:
                raise InvalidSetting(name, getattr(self, name), "must be positive")
        if self.state_size % self.blocks:
            raise InvalidSetting("state_size", self.state_size, f"must divide by blocks={self.blocks}")
        n = self.state_size // self.blocks
        if self.conj_sym and n % 2:
            raise InvalidSetting("state_size", self.state_size, f"state_size/blocks must be even with conj_sym "
                                 f"(one state per conjugate pair); it is {n}")
        check_choice("C_init", self.C_init, C_INITS)
        check_choice("discretization", self.discretization, DISCRETIZATIONS)
        check_choice("scan", self.scan, ("auto", *METHODS))
        if not 0 < self.dt_min <= self.dt_max:
            raise InvalidSetting("dt_min", self.dt_min, f"need 0 < dt_min <= dt_max (dt_max={self.dt_max})")
        if self.step_rescale <= 0:
            raise InvalidSetting("step_rescale", self.step_rescale, "must be positive")
        check_choice("init", self.init, INITS)
        if n % 2 and self.init in ("s4d_lin", "s4d_inv"):
            raise InvalidSetting("state_size", self.state_size, f"state_size/blocks must be even for "
                                 f"init={self.init} (its modes come in conjugate pairs); it is {n}")
        for name in ("freq_scale", "ptd_reg", "ptd_lr", "ptd_steps"):
            if getattr(self, name) <= 0:
                raise InvalidSetting(name, getattr(self, name), "must be positive")
        if self.selective_rank is not None and self.selective_rank <= 0:
            raise InvalidSetting("selective_rank", self.selective_rank, "must be positive (or null)")
        if self.selective and self.scan == "pallas":
            raise InvalidSetting("scan", self.scan, "the Pallas kernel takes a time-invariant decay; a selective "
                                 "layer needs another method (auto picks one)")


LAYER_CONFIGS = {"s5": S5Config, "lru": LRUConfig}
# S5's variant switches: the LRU refuses them, so that an override never silently does nothing. (It ignores S5's
# sizes and ranges — blocks, conj_sym, C_init, discretization, dt_min/dt_max —, which every lra/<task> sets and
# lra_lru/<task> inherits.)
S5_ONLY = ("init", "freq_scale", "force_neg", "selective", "clip_eigs", "step_rescale")


@dataclass
class SSMConfig(LRUConfig, S5Config):
    """`model.ssm`: the settings of every layer of the family, one flat key each; `kind` picks the layer."""

    kind: str = "s5"  # s5 | lru (Orvieto et al. 2023: λ learned directly, no Δ, no conjugate pairing)

    def layer_config(self) -> S5Config | LRUConfig:
        """The chosen layer's own settings."""
        config = LAYER_CONFIGS[self.kind]
        return config(**{f.name: getattr(self, f.name) for f in fields(config)})

    def check(self) -> None:
        """Raise InvalidSetting (naming the field) for a value the chosen layer cannot use."""
        check_choice("kind", self.kind, LAYER_CONFIGS)
        if self.kind != "s5":
            for name in S5_ONLY:
                default = S5Config.__dataclass_fields__[name].default
                if getattr(self, name) != default:
                    raise InvalidSetting(name, getattr(self, name), f"applies to kind=s5 only; kind={self.kind} "
                                         f"needs {name}={default!r}")
        self.layer_config().check()
