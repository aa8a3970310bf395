"""Settings of one S5 layer: the single source of each field's default and allowed values."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from s5lra.errors import InvalidSetting, check_choice
from s5lra.ssm.diag_init import INITS
from s5lra.ssm.init import C_INITS
from s5lra.ssm.ptd import PTDSettings
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
    # The S5 family (README "Model variants"; docs/variants.md).
    kind: str = "s5"  # s5 | lru (Orvieto et al. 2023: λ learned directly, no Δ, no conjugate pairing)
    init: str = "hippo"  # kind=s5: hippo | ptd | s4d_lin | s4d_inv | s4d_real (ssm.diag_init.INITS)
    freq_scale: float = 1.0  # S4D-FT's α: the initial imaginary parts × freq_scale
    force_neg: bool = False  # Re Λ → −|Re Λ| at initialisation (S5-PTD: a perturbed spectrum can be unstable)
    ptd_reg: float = 3.0  # init=ptd: the solver's λ in cond(V)² + λ‖E‖_F
    ptd_lr: float = 0.05
    ptd_steps: int = 3000
    # kind=lru: |λ| uniform on the annulus [r_min, r_max], arg λ uniform on (0, max_phase]. The LRU keeps
    # state_size complex states and ignores conj_sym and blocks (it has neither pairs nor an eigenbasis).
    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 2 * math.pi
    selective: bool = False  # kind=s5: Δ_k = Δ₀·exp(W₂W₁u_k), W₂ = 0 at init (the layer starts as S5)
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
        if self.kind == "s5" and self.conj_sym and (self.state_size // self.blocks) % 2:
            raise InvalidSetting("state_size", self.state_size, f"state_size/blocks must be even with conj_sym "
                                 f"(one state per conjugate pair); it is {self.state_size // self.blocks}")
        check_choice("C_init", self.C_init, C_INITS)
        check_choice("discretization", self.discretization, DISCRETIZATIONS)
        check_choice("scan", self.scan, ("auto", *METHODS))
        if not 0 < self.dt_min <= self.dt_max:
            raise InvalidSetting("dt_min", self.dt_min, f"need 0 < dt_min <= dt_max (dt_max={self.dt_max})")
        if self.step_rescale <= 0:
            raise InvalidSetting("step_rescale", self.step_rescale, "must be positive")
        self._check_variant()

    def _check_variant(self) -> None:
        check_choice("kind", self.kind, ("s5", "lru"))
        check_choice("init", self.init, INITS)
        n = self.state_size // self.blocks
        if not self.conj_sym and n % 2 and self.init in ("s4d_lin", "s4d_inv"):
            raise InvalidSetting("state_size", self.state_size, f"state_size/blocks must be even for "
                                 f"init={self.init} (its modes come in conjugate pairs); it is {n}")
        if self.freq_scale <= 0:
            raise InvalidSetting("freq_scale", self.freq_scale, "must be positive")
        for name in ("ptd_reg", "ptd_lr", "ptd_steps"):
            if getattr(self, name) <= 0:
                raise InvalidSetting(name, getattr(self, name), "must be positive")
        if self.selective_rank is not None and self.selective_rank <= 0:
            raise InvalidSetting("selective_rank", self.selective_rank, "must be positive (or null)")
        if self.selective and self.scan == "pallas":
            raise InvalidSetting("scan", self.scan, "the Pallas kernel takes a time-invariant decay; a selective "
                                 "layer needs another method (auto picks one)")
        if self.kind == "lru":
            # Settings of S5's Δ, discretisation and spectrum have no meaning for the LRU: refuse them, so that
            # an override never silently does nothing. (conj_sym and blocks are ignored: see the field comment.)
            for name, default in (("init", "hippo"), ("freq_scale", 1.0), ("force_neg", False),
                                  ("selective", False), ("clip_eigs", False), ("step_rescale", 1.0)):
                if getattr(self, name) != default:
                    raise InvalidSetting(name, getattr(self, name), f"applies to kind=s5 only; the LRU "
                                         f"needs {name}={default!r}")
            if not 0 <= self.r_min <= self.r_max <= 1:
                raise InvalidSetting("r_min", self.r_min, f"need 0 <= r_min <= r_max <= 1 (r_max={self.r_max})")
            if not 0 < self.max_phase <= 2 * math.pi:
                raise InvalidSetting("max_phase", self.max_phase, "must lie in (0, 2π]")
