"""The optimizer: parameter groups by leaf name (reference section 5), one optax transform per group.

| groups         | Adam at ssm_lr, no decay        | AdamW at ssm_lr | AdamW at lr            |
| standard       | B, Lambda_re, Lambda_im, log_step | -             | everything else        |
| BandCdecay     | Lambda_re, Lambda_im, log_step  | B               | C, D, everything else  |
| BfastandCdecay | Lambda_re, Lambda_im, log_step  | -               | B, C, D, everything else |
| noBCdecay      | B, C, D, Lambda, log_step       | -               | everything else        |

`dt_global` moves log_step to the AdamW-at-lr group. Norm parameters follow `norm_decay` (see OptimizerConfig).
"""

from __future__ import annotations

import jax
import optax

from s5lra.train.config import OptimizerConfig
from s5lra.errors import ConfigError

LAMBDA = ("Lambda_re", "Lambda_im")
SSM_NO_DECAY = {
    "standard": {"B", *LAMBDA, "log_step"},
    "BandCdecay": {*LAMBDA, "log_step"},
    "BfastandCdecay": {*LAMBDA, "log_step"},
    "noBCdecay": {"B", "C", "D", *LAMBDA, "log_step"},
}
SSM_DECAY = {"BandCdecay": {"B"}}
GROUPS = tuple(SSM_NO_DECAY)


def _key_name(entry) -> str:
    return str(getattr(entry, "key", getattr(entry, "name", entry)))


def param_labels(params, cfg: OptimizerConfig):
    """Pytree of group labels ("ssm", "ssm_decay", "regular") matching `params`."""
    if cfg.groups not in SSM_NO_DECAY:
        raise ConfigError(f"optimizer.groups={cfg.groups!r}; expected one of {GROUPS}")
    no_decay = set(SSM_NO_DECAY[cfg.groups])
    if cfg.dt_global:
        no_decay.discard("log_step")
    decay = SSM_DECAY.get(cfg.groups, set())

    def label(path, _):
        names = [_key_name(p) for p in path]
        leaf = names[-1]
        if leaf in no_decay:
            return "ssm"
        if leaf in decay:
            return "ssm_decay"
        if not cfg.norm_decay and any("norm" in n.lower() for n in names[:-1]):
            return "ssm"  # what the official name list ("norm" among the SSM keys) meant
        return "regular"

    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(params, cfg: OptimizerConfig, lr_schedule, ssm_lr_schedule) -> optax.GradientTransformation:
    """Adam for the SSM group at ssm_lr, AdamW elsewhere; optional global-norm clipping before all groups."""
    adam = dict(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    groups = optax.multi_transform(
        {
            "ssm": optax.adam(ssm_lr_schedule, **adam),
            "ssm_decay": optax.adamw(ssm_lr_schedule, weight_decay=cfg.weight_decay, **adam),
            "regular": optax.adamw(lr_schedule, weight_decay=cfg.weight_decay, **adam),
        },
        param_labels(params, cfg),
    )
    if cfg.grad_clip is None:
        return groups
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), groups)
