"""The S5 layer: HiPPO initialisation, discretisation, linear recurrence backends, the Flax module."""

from s5lra.ssm.config import SSMConfig
from s5lra.ssm.init import hippo_init
from s5lra.ssm.layer import apply_s5, discretize
from s5lra.ssm.module import S5SSM
from s5lra.ssm.recurrence import METHODS, linear_recurrence

__all__ = ["apply_s5", "discretize", "hippo_init", "linear_recurrence", "METHODS", "S5SSM", "SSMConfig"]
