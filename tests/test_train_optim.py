"""Optimizer groups (docs/s5.md, section 6), the warmup+cosine schedule and its official quirks, clipping."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s5lra.train.config import OptimizerConfig, TrainConfig, validate
from s5lra.errors import ConfigError
from s5lra.train.optim import make_optimizer, param_labels
from s5lra.train.schedule import make_schedule

SSM = ("B", "C", "D", "Lambda_re", "Lambda_im", "log_step")


def params():
    leaf = jnp.ones((2,))
    return {
        "encoder": {"kernel": leaf, "bias": leaf},
        "layers": {"ssm": {k: leaf for k in SSM}, "norm": {"scale": leaf, "bias": leaf},
                   "W2": {"kernel": leaf, "bias": leaf}},
        "decoder": {"out": {"kernel": leaf, "bias": leaf}},
    }


def labels_of(**kw):
    labels = param_labels(params(), OptimizerConfig(**kw))
    ssm = labels["layers"]["ssm"]
    rest = {labels["encoder"]["kernel"], labels["decoder"]["out"]["bias"], labels["layers"]["W2"]["kernel"]}
    assert rest == {"regular"}
    return ssm, labels["layers"]["norm"]["scale"]


@pytest.mark.parametrize("groups, ssm, ssm_decay", [
    ("standard", {"B", "Lambda_re", "Lambda_im", "log_step"}, set()),
    ("BandCdecay", {"Lambda_re", "Lambda_im", "log_step"}, {"B"}),
    ("BfastandCdecay", {"Lambda_re", "Lambda_im", "log_step"}, set()),
    ("noBCdecay", {"B", "C", "D", "Lambda_re", "Lambda_im", "log_step"}, set()),
])
def test_groups_follow_the_reference_table(groups, ssm, ssm_decay):
    labels, norm = labels_of(groups=groups)
    assert {k for k, v in labels.items() if v == "ssm"} == ssm
    assert {k for k, v in labels.items() if v == "ssm_decay"} == ssm_decay
    assert {k for k, v in labels.items() if v == "regular"} == set(SSM) - ssm - ssm_decay
    assert norm == "regular"  # official quirk: norms decayed at lr


def test_dt_global_and_norm_switch():
    labels, _ = labels_of(groups="standard", dt_global=True)
    assert labels["log_step"] == "regular" and labels["B"] == "ssm"
    _, norm = labels_of(norm_decay=False)
    assert norm == "ssm"
    with pytest.raises(ConfigError, match="optimizer.groups"):  # checked once, by the config
        validate(TrainConfig(optimizer=OptimizerConfig(groups="fast")))


def test_rates_and_decay_per_group():
    """With zero gradients Adam does nothing and AdamW shrinks by rate * weight_decay."""
    p = params()
    cfg = OptimizerConfig(groups="BandCdecay", weight_decay=0.5)
    tx = make_optimizer(cfg, lambda _: 0.1, lambda _: 0.01)
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, p), tx.init(p), p)
    ssm = updates["layers"]["ssm"]
    np.testing.assert_allclose(ssm["Lambda_re"], 0.0)
    np.testing.assert_allclose(ssm["B"], -0.01 * 0.5)
    np.testing.assert_allclose(ssm["C"], -0.1 * 0.5)
    np.testing.assert_allclose(updates["encoder"]["kernel"], -0.1 * 0.5)


def test_ssm_group_uses_ssm_lr_and_clipping_is_optional():
    p = params()
    grads = jax.tree.map(lambda x: 100.0 * x, p)
    for clip in (None, 1.0):
        tx = make_optimizer(OptimizerConfig(weight_decay=0.0, grad_clip=clip), lambda _: 0.1, lambda _: 0.01)
        updates, _ = tx.update(grads, tx.init(p), p)
        # Adam's first step is -lr * sign(g) whatever the scale, so clipping shows only in the state.
        np.testing.assert_allclose(updates["layers"]["ssm"]["Lambda_im"], -0.01, rtol=1e-5)
        np.testing.assert_allclose(updates["decoder"]["out"]["kernel"], -0.1, rtol=1e-5)


def rates(**kw):
    s = make_schedule(1.0, steps_per_epoch=10, epochs=5, warmup_epochs=1, **kw)
    return np.array([float(s(k)) for k in range(52)])


def test_schedule_official_quirks():
    r = rates()
    assert r[0] == 1.0  # the first update runs at the full rate
    np.testing.assert_allclose(r[1:11], np.arange(1, 11) / 10)  # update k uses warmup(k - 1)
    # cosine over T = 40 steps counted from the global step: at update 11 (s = 10) it is already 1/4 in
    np.testing.assert_allclose(r[11], 0.5 * (1 + np.cos(np.pi * 10 / 40)), rtol=1e-6)
    assert r[41] == pytest.approx(0.0, abs=1e-7) and np.all(r[41:] < 1e-6)  # ends an epoch early


def test_schedule_fixed_variants():
    r = rates(first_step_full_lr=False, cosine_from_global_step=False)
    np.testing.assert_allclose(r[:10], np.arange(1, 11) / 10)
    np.testing.assert_allclose(r[10], 1.0)
    np.testing.assert_allclose(r[30], 0.5, atol=1e-6)  # halfway through the 40 cosine steps
    assert r[49] > 0 and r[50] == pytest.approx(0.0, abs=1e-7)


def test_schedule_lr_min_and_no_warmup():
    s = make_schedule(2.0, steps_per_epoch=4, epochs=3, warmup_epochs=0, lr_min=0.5)
    assert float(s(0)) == 2.0 and float(s(1)) == pytest.approx(2.0)
    assert float(s(100)) == pytest.approx(0.5)
