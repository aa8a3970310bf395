"""The optimizer: parameter groups by leaf name (docs/s5.md, section 6 "Optimizer groups"), one optax transform per group.

| groups         | Adam at ssm_lr, no decay        | AdamW at ssm_lr | AdamW at lr            |
| standard       | B, Lambda_re, Lambda_im, log_step | -             | everything else        |
| BandCdecay     | Lambda_re, Lambda_im, log_step  | B               | C, D, everything else  |
| BfastandCdecay | Lambda_re, Lambda_im, log_step  | -               | B, C, D, everything else |
| noBCdecay      | B, C, D, Lambda, log_step       | -               | everything else        |

`dt_global` moves log_step to the AdamW-at-lr group. Norm parameters follow `norm_decay` (see OptimizerConfig).

The S5 family (README "Model variants"): the LRU's nu_log, theta_log, gamma_log are always in the SSM group
(Adam at ssm_lr, no decay; its B and C follow the table like S5's); selective S5's delta_W1, delta_W2 get a
group of their own, "selective": Adam, no decay, at selective_lr_factor × ssm_lr (B2S6: a smaller rate on the
Δ parameters keeps training stable).
"""

from __future__ import annotations

import jax
import optax

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from s5lra.train.config import OptimizerConfig

LAMBDA = ("Lambda_re", "Lambda_im")
SSM_NO_DECAY = {
    "standard": {"B", *LAMBDA, "log_step"},
    "BandCdecay": {*LAMBDA, "log_step"},
    "BfastandCdecay": {*LAMBDA, "log_step"},
    "noBCdecay": {"B", "C", "D", *LAMBDA, "log_step"},
}
SSM_DECAY = {"BandCdecay": {"B"}}
LRU_SSM = {"nu_log", "theta_log", "gamma_log"}
SELECTIVE = {"delta_W1", "delta_W2"}
GROUPS = tuple(SSM_NO_DECAY)


def param_labels(params, cfg: OptimizerConfig):
    """Pytree of group labels ("ssm", "ssm_decay", "selective", "regular") matching `params`."""
    no_decay = set(SSM_NO_DECAY[cfg.groups]) | LRU_SSM
    if cfg.dt_global:
        no_decay.discard("log_step")
    decay = SSM_DECAY.get(cfg.groups, set())

    def label(path, _):
        *modules, leaf = jax.tree_util.keystr(path, simple=True, separator="/").split("/")
        if leaf in SELECTIVE:
            return "selective"
        if leaf in no_decay:
            return "ssm"
        if leaf in decay:
            return "ssm_decay"
        if not cfg.norm_decay and any("norm" in n.lower() for n in modules):
            return "ssm"  # what the official name list ("norm" among the SSM keys) meant
        return "regular"

    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(cfg: OptimizerConfig, lr_schedule, ssm_lr_schedule) -> optax.GradientTransformation:
    """Adam for the SSM group at ssm_lr, AdamW elsewhere; optional global-norm clipping before all groups.

    The groups are labelled from the parameter tree when the optimizer is initialised (no model needed here).
    """
    adam = dict(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    groups = optax.multi_transform(
        {
            "ssm": optax.adam(ssm_lr_schedule, **adam),
            "selective": optax.adam(lambda step: cfg.selective_lr_factor * ssm_lr_schedule(step), **adam),
            "ssm_decay": optax.adamw(ssm_lr_schedule, weight_decay=cfg.weight_decay, **adam),
            "regular": optax.adamw(lr_schedule, weight_decay=cfg.weight_decay, **adam),
        },
        lambda params: param_labels(params, cfg),
    )
    if cfg.grad_clip is None:
        return groups
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), groups)
