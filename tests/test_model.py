"""The sequence block, encoders, pooling, heads and the stacked model."""

from dataclasses import replace
from functools import partial
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from s5lra.model import ModelConfig, SequenceBlock, SSMConfig, build_model, count_params
from s5lra.model.heads import TokenEncoder, pool
from s5lra.train.config import TrainConfig, TrainerConfig, validate

SMALL = ModelConfig(n_layers=2, d_model=8, ssm=SSMConfig(state_size=8, blocks=2))


def spec(n_classes=3, vocab_size=11, dual=False):
    return SimpleNamespace(n_classes=n_classes, vocab_size=vocab_size, dual=dual)


def tokens(batch=4, length=12, vocab=11, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(3, vocab, size=(batch, length)), jnp.int32)


def init(model, x, lengths):
    # jitted: an eager init dispatches every op of the HiPPO/SSM setup one by one (seconds per model)
    return jax.jit(partial(model.init, train=False))({"params": jax.random.key(0), "dropout": jax.random.key(1)},
                                                     x, lengths)


# The paper's six settings (reference table): layers, H, P, J, activation, C_init, vocabulary, classes, dual,
# and the trainable-parameter counts it reports.
PAPER = {
    "listops": (8, 128, 16, 8, "half_glu2", "lecun_normal", 18, 10, False, 0.19e6),
    "text": (6, 256, 192, 12, "half_glu2", "lecun_normal", 135, 2, False, 1.32e6),
    "retrieval": (6, 128, 256, 16, "half_glu1", "trunc_standard_normal", 98, 2, True, 0.77e6),
    "image": (6, 512, 384, 3, "half_glu1", "lecun_normal", None, 10, False, 5.13e6),
    "pathfinder": (6, 192, 256, 8, "half_glu1", "trunc_standard_normal", None, 2, False, 1.11e6),
    "pathx": (6, 128, 256, 16, "half_glu1", "complex_normal", None, 2, False, 0.69e6),
}


@pytest.mark.parametrize("task", PAPER)
def test_parameter_counts_match_paper(task):
    layers, h, p, j, act, c_init, vocab, n_classes, dual, expected = PAPER[task]
    cfg = ModelConfig(n_layers=layers, d_model=h, activation=act, ssm=SSMConfig(state_size=p, blocks=j, C_init=c_init))
    model = build_model(cfg, spec(n_classes, vocab, dual))
    if dual:
        x, lengths = jnp.zeros((1, 2, 4), jnp.int32), jnp.full((1, 2), 4)
    elif vocab:
        x, lengths = jnp.zeros((1, 4), jnp.int32), jnp.full((1,), 4)
    else:
        x, lengths = jnp.zeros((1, 4, 1)), jnp.full((1,), 4)
    shapes = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, x, lengths))
    assert abs(count_params(shapes["params"]) / expected - 1) < 0.03


def test_classifier_outputs_log_probabilities_and_layout():
    model = build_model(SMALL, spec())
    x, lengths = tokens(), jnp.array([12, 5, 1, 9])
    variables = init(model, x, lengths)
    logp = model.apply(variables, x, lengths)
    assert logp.shape == (4, 3)
    assert np.allclose(jnp.exp(logp).sum(-1), 1.0, atol=1e-5)
    params = variables["params"]
    assert set(params) == {"encoder", "layers", "decoder"}
    ssm = params["layers"]["ssm"]
    assert ssm["B"].shape == (2, 4, 8, 2)  # leading n_layers axis from the scan over layers
    assert set(ssm) == {"Lambda_re", "Lambda_im", "B", "C", "D", "log_step"}
    assert variables["batch_stats"]["layers"]["norm"]["mean"].shape == (2, 8)


def test_real_valued_inputs_use_dense_encoder():
    model = build_model(SMALL, spec(vocab_size=None))
    x = jnp.ones((2, 10, 1))
    variables = init(model, x, None)
    assert variables["params"]["encoder"]["kernel"].shape == (1, 8)
    assert model.apply(variables, x, None).shape == (2, 3)


def test_retrieval_dual_encoder():
    model = build_model(SMALL, spec(n_classes=2, dual=True))
    x = jnp.stack([tokens(3, 10, seed=1), tokens(3, 10, seed=2)], axis=1)
    lengths = jnp.array([[10, 4], [7, 7], [2, 9]])
    variables = init(model, x, lengths)
    head = variables["params"]["decoder"]
    assert head["hidden"]["kernel"].shape == (4 * 8, 8) and head["out"]["kernel"].shape == (8, 2)
    logp = model.apply(variables, x, lengths)
    assert logp.shape == (3, 2)
    # Swapping the documents changes the features (u1 - u2 is antisymmetric), so the output changes.
    swapped = model.apply(variables, x[:, ::-1], lengths[:, ::-1])
    assert not np.allclose(logp, swapped)


def test_token_encoder_equals_one_hot_dense():
    enc = TokenEncoder(vocab_size=7, d_model=5)
    t = jnp.array([[0, 3, 6, 2]])
    variables = enc.init(jax.random.key(0), t)
    p = variables["params"]
    expected = jax.nn.one_hot(t, 7) @ p["kernel"] + p["bias"]
    assert np.allclose(enc.apply(variables, t), expected, atol=1e-6)


def test_pooling():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 6, 2)), jnp.float32)
    lengths = jnp.array([6, 2, 1])
    mean = pool(x, lengths, "mean")
    last = pool(x, lengths, "last")
    for i, n in enumerate([6, 2, 1]):
        assert np.allclose(mean[i], np.asarray(x[i, :n]).mean(0), atol=1e-6)
        assert np.allclose(last[i], x[i, n - 1])
    assert np.allclose(pool(x, None, "mean"), x.mean(1), atol=1e-6)
    with pytest.raises(ValueError, match="pooling=.max.: expected one of"):  # checked once, by the config
        replace(SMALL, pooling="max").check()


@pytest.mark.parametrize("mask_padding", [True, False])
def test_padding_is_invisible_only_with_mask_padding(mask_padding):
    cfg = replace(SMALL, mask_padding=mask_padding)
    model = build_model(cfg, spec())
    x, lengths = tokens(), jnp.array([12, 5, 3, 9])
    variables = init(model, x, lengths)
    pad = jnp.arange(12) >= lengths[:, None]
    other = jnp.where(pad, (x + 5) % 11, x)  # different junk after each sequence's end
    rngs = {"dropout": jax.random.key(2)}
    out_a, _ = model.apply(variables, x, lengths, train=True, rngs=rngs, mutable=["batch_stats"])
    out_b, _ = model.apply(variables, other, lengths, train=True, rngs=rngs, mutable=["batch_stats"])
    assert np.allclose(out_a, out_b, atol=1e-5) == mask_padding


@pytest.mark.parametrize("activation,dense", [("full_glu", {"W1", "W2"}), ("half_glu1", {"W2"}),
                                              ("half_glu2", {"W2"}), ("gelu", set())])
def test_block_activations(activation, dense):
    cfg = replace(SMALL, activation=activation, norm="layer")
    block = SequenceBlock(cfg, train=False)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 9, 8)), jnp.float32)
    variables = block.init(jax.random.key(0), x, None)
    assert set(variables["params"]) == {"norm", "ssm"} | dense
    y, _ = block.apply(variables, x, None)
    assert y.shape == x.shape
    # Recompute the activation by hand from the block's own submodules.
    p = variables["params"]
    from flax import linen as nn
    from s5lra.ssm import apply_s5
    h = nn.LayerNorm(epsilon=1e-6).apply({"params": p["norm"]}, x)
    s = apply_s5(p["ssm"], h, conj_sym=True, bidirectional=True)
    z = nn.gelu(s)
    dense_fn = lambda name, v: v @ p[name]["kernel"] + p[name]["bias"]
    expected = {
        "full_glu": lambda: dense_fn("W1", z) * jax.nn.sigmoid(dense_fn("W2", z)),
        "half_glu1": lambda: z * jax.nn.sigmoid(dense_fn("W2", z)),
        "half_glu2": lambda: s * jax.nn.sigmoid(dense_fn("W2", z)),
        "gelu": lambda: z,
    }[activation]()
    assert np.allclose(y, x + expected, atol=1e-5)


def test_postnorm_normalises_the_output():
    cfg = replace(SMALL, prenorm=False, norm="layer")
    block = SequenceBlock(cfg, train=False)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 9, 8)) * 3 + 1, jnp.float32)
    variables = block.init(jax.random.key(0), x, None)
    y, _ = block.apply(variables, x, None)
    assert np.allclose(y.mean(-1), 0, atol=1e-4) and np.allclose(y.std(-1), 1, atol=1e-2)


def test_dropout_mask_is_shared_over_time():
    cfg = replace(SMALL, activation="gelu", norm="layer", dropout=0.5)
    block = SequenceBlock(cfg, train=True)
    x = jnp.asarray(np.random.default_rng(3).normal(size=(4, 16, 8)), jnp.float32)
    variables = block.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x, None)
    y, _ = block.apply(variables, x, None, rngs={"dropout": jax.random.key(5)})
    dropped = np.isclose(np.asarray(y - x), 0.0, atol=1e-7)  # (B, L, H)
    assert dropped.any() and not dropped.all()
    assert np.all(dropped == dropped[:, :1, :])  # same pattern at every time step


def test_batchnorm_statistics_use_valid_positions_only():
    model = build_model(SMALL, spec())
    x, lengths = tokens(), jnp.array([12, 5, 3, 9])
    variables = init(model, x, lengths)
    _, updates = model.apply(variables, x, lengths, train=True, rngs={"dropout": jax.random.key(0)},
                             mutable=["batch_stats"])
    other = jnp.where(jnp.arange(12) >= lengths[:, None], 0, x)
    _, updates_b = model.apply(variables, other, lengths, train=True, rngs={"dropout": jax.random.key(0)},
                               mutable=["batch_stats"])
    a, b = ravel_pytree(updates)[0], ravel_pytree(updates_b)[0]
    assert np.allclose(a, b, atol=1e-6)
    assert not np.allclose(a, ravel_pytree(variables["batch_stats"])[0])  # statistics did move


def test_depth_does_not_grow_the_program():
    """Layers are scanned: the traced program has the same size for 2 and 8 layers (flat compile time)."""
    sizes = []
    for depth in (2, 8):
        model = build_model(replace(SMALL, n_layers=depth), spec())
        x, lengths = tokens(), jnp.array([12, 5, 3, 9])
        variables = jax.eval_shape(lambda: init(model, x, lengths))
        jaxpr = jax.make_jaxpr(lambda v: model.apply(v, x, lengths))(variables)
        sizes.append(len(str(jaxpr).splitlines()))
    assert sizes[0] == sizes[1]


def test_remat_and_the_pallas_kernel_give_the_same_gradients():
    """Per-layer remat, and the Pallas kernel inside the layer scan (with and without remat)."""
    x, lengths = tokens(), jnp.array([12, 5, 3, 9])
    grads = []
    for scan, remat in (("sequential", False), ("sequential", True), ("pallas", False), ("pallas", True)):
        cfg = replace(SMALL, remat=remat, dropout=0.1, ssm=replace(SMALL.ssm, scan=scan))
        model = build_model(cfg, spec())
        variables = init(model, x, lengths)

        def loss(params):
            out, _ = model.apply({**variables, "params": params}, x, lengths, train=True,
                                 rngs={"dropout": jax.random.key(3)}, mutable=["batch_stats"])
            return -out[:, 0].mean()

        grads.append(ravel_pytree(jax.jit(jax.grad(loss))(variables["params"]))[0])
    # float32 at the gradient's scale: remat's reordered sums leave ~2e-6 on one element under jax 0.12
    atol = 1e-5 * np.abs(grads[0]).max()
    for other in grads[1:]:
        assert np.allclose(grads[0], other, rtol=1e-5, atol=atol)


def test_the_unrolled_layer_stack_has_the_same_parameters_and_gradients():
    """model.unroll_layers (with and without remat): the same parameter tree from the same seed, so checkpoints
    move between the two; the same dropout masks and gradients up to float rounding (XLA fuses the unrolled
    stack differently: measured max difference 1.5e-6 against gradients up to 0.57)."""
    x, lengths = tokens(), jnp.array([12, 5, 3, 9])
    params, grads = [], []
    for unroll, remat in ((False, False), (True, False), (True, True)):
        model = build_model(replace(SMALL, unroll_layers=unroll, remat=remat, dropout=0.1), spec())
        variables = init(model, x, lengths)

        def loss(params):
            out, _ = model.apply({**variables, "params": params}, x, lengths, train=True,
                                 rngs={"dropout": jax.random.key(3)}, mutable=["batch_stats"])
            return -out[:, 0].mean()

        params.append(variables["params"])
        grads.append(ravel_pytree(jax.jit(jax.grad(loss))(variables["params"]))[0])
    for other in params[1:]:
        assert jax.tree.structure(other) == jax.tree.structure(params[0])
        assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params[0]), jax.tree.leaves(other)))
    for other in grads[1:]:
        assert np.allclose(grads[0], other, rtol=1e-4, atol=1e-5)


def test_remat_cuts_the_training_steps_memory_also_when_the_stack_is_unrolled():
    """XLA's temporary buffers of the compiled gradient, Path-X's model at a short length: per-layer remat must
    save memory with the paper experiments' unrolled stack too (unrolled, it once kept every layer's
    activations: 4.2 GB with remat, 3.9 GB without, at Path-X batch 4; scanned with remat 0.9 GB)."""
    x = tokens(batch=4, length=2048, vocab=5)
    lengths = jnp.full(4, 2048)
    cfg = ModelConfig(n_layers=6, d_model=128, ssm=SSMConfig(state_size=256, blocks=16), unroll_layers=True)

    def temp_bytes(remat):
        model = build_model(replace(cfg, remat=remat), spec(n_classes=2, vocab_size=5))
        variables = jax.eval_shape(partial(model.init, train=False),
                                   {"params": jax.random.key(0), "dropout": jax.random.key(1)}, x, lengths)

        def loss(params):
            out, _ = model.apply({**variables, "params": params}, x, lengths, train=True, mutable=["batch_stats"])
            return -out[:, 0].mean()

        compiled = jax.jit(jax.grad(loss)).lower(variables["params"]).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    assert temp_bytes(True) < 0.5 * temp_bytes(False)


@pytest.mark.parametrize("key,value", [("norm", "group"), ("activation", "relu")])
def test_bad_choices_name_the_argument(key, value):
    with pytest.raises(ValueError, match=f"^{key}='{value}': expected one of"):
        replace(SMALL, **{key: value}).check()


def test_bf16_precision_runs_glu_in_bf16_and_stays_close():
    x, lengths = tokens(), jnp.array([12, 5, 3, 9])
    cfg = replace(SMALL, activation="full_glu")
    f32 = build_model(cfg, spec())
    bf16 = build_model(cfg, spec(), precision="bf16")
    variables = init(f32, x, lengths)
    out32 = f32.apply(variables, x, lengths)
    out16 = bf16.apply(variables, x, lengths)
    assert out16.dtype == jnp.float32
    assert not np.array_equal(out32, out16)  # really computed differently
    assert np.allclose(out32, out16, atol=5e-2)
    jaxpr = str(jax.make_jaxpr(lambda v: bf16.apply(v, x, lengths))(variables))
    assert "bf16" in jaxpr and "complex64" in jaxpr
    with pytest.raises(ValueError, match="precision='fp8'"):
        validate(TrainConfig(trainer=TrainerConfig(precision="fp8")))
