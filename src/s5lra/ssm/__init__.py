"""The S5 layer and its family (S5-PTD, S4D initialisations, LRU, selective S5): initialisations, discretisation,
linear recurrence backends, the Flax module."""

from s5lra.ssm.config import S5Config, SSMConfig
from s5lra.ssm.diag_init import INITS, diagonal_init
from s5lra.ssm.init import hippo_init
from s5lra.ssm.layer import apply_s5, discretize
from s5lra.ssm.lru import LRU, LRUConfig
from s5lra.ssm.module import S5SSM, ssm_layer
from s5lra.ssm.recurrence import METHODS, linear_recurrence

__all__ = ["apply_s5", "diagonal_init", "discretize", "hippo_init", "INITS", "linear_recurrence", "LRU", "LRUConfig",
           "METHODS", "S5Config", "S5SSM", "SSMConfig", "ssm_layer"]
