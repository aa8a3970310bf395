"""The S5 layer against an independent float64 NumPy reference, and its initialisation."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from s5lra.ssm import METHODS, S5SSM, SSMConfig, hippo_init, linear_recurrence
from s5lra.ssm import apply_s5 as _apply_s5
from s5lra.ssm.init import init_B

SCANS = ("auto",) + METHODS
STATIC = ("conj_sym", "bidirectional", "discretization", "clip_eigs", "step_rescale", "scan")
apply_s5 = jax.jit(_apply_s5, static_argnames=STATIC)  # one compile per case instead of eager op dispatch


# ---------------------------------------------------------------- float64 reference, written from the paper


def ref_hippo_normal(n):
    a = np.zeros((n, n))
    for i in range(n):
        for k in range(n):
            if i > k:
                a[i, k] = -np.sqrt(2 * i + 1) * np.sqrt(2 * k + 1)
            elif i == k:
                a[i, k] = -(i + 1)
    p = np.sqrt(np.arange(n) + 0.5)
    return a + np.outer(p, p)


def ref_s5(params, u, *, conj_sym, bidirectional, discretization, clip_eigs, step_rescale):
    """Loop over time in float64 with complex128 states; u is (L, H)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    re = np.minimum(p["Lambda_re"], -1e-4) if clip_eigs else p["Lambda_re"]
    lam = re + 1j * p["Lambda_im"]
    b = p["B"][..., 0] + 1j * p["B"][..., 1]
    c = p["C"][..., 0] + 1j * p["C"][..., 1]
    dt = step_rescale * np.exp(p["log_step"])
    if discretization == "zoh":
        lam_bar = np.exp(lam * dt)
        b_bar = ((lam_bar - 1) / lam)[:, None] * b
    else:
        lam_bar = (1 + dt * lam / 2) / (1 - dt * lam / 2)
        b_bar = (dt / (1 - dt * lam / 2))[:, None] * b
    n_len, n = u.shape[0], lam.shape[0]
    fwd = np.zeros((n_len, n), complex)
    bwd = np.zeros((n_len, n), complex)
    x = np.zeros(n, complex)
    for k in range(n_len):
        x = lam_bar * x + b_bar @ u[k]
        fwd[k] = x
    x = np.zeros(n, complex)
    for k in reversed(range(n_len)):
        x = lam_bar * x + b_bar @ u[k]
        bwd[k] = x
    states = np.concatenate([fwd, bwd], axis=1) if bidirectional else fwd
    y = (states @ c.T).real
    return (2 * y if conj_sym else y) + p["D"] * u


def make_params(key, h=6, state_size=8, blocks=2, conj_sym=True, bidirectional=True, C_init="lecun_normal"):
    layer = S5SSM(SSMConfig(state_size=state_size, blocks=blocks, conj_sym=conj_sym,
                  bidirectional=bidirectional, C_init=C_init), h)
    params = layer.init(key, jnp.zeros((3, h)))["params"]
    # Spread the time steps and push some eigenvalues to the unstable side so clip_eigs matters.
    params = dict(params)
    params["log_step"] = jnp.linspace(np.log(1e-3), np.log(0.5), params["log_step"].shape[0])
    params["Lambda_re"] = params["Lambda_re"].at[0].set(0.01)
    return params


def rel_err(y, ref):
    return float(np.max(np.abs(np.asarray(y).astype(np.complex128) - ref)) / (np.max(np.abs(ref)) + 1e-30))


# ---------------------------------------------------------------- hippo_init


@pytest.mark.parametrize("n", [2, 4, 8, 16, 64])
def test_hippo_eigenvalues_match_dense_eig(n):
    s = ref_hippo_normal(n)
    dense = np.linalg.eigvals(s)
    lam, _, _ = hippo_init(n, 1, conj_sym=False)
    by_imag = lambda z: z[np.argsort(z.imag)]
    assert np.allclose(by_imag(lam), by_imag(dense), atol=1e-8)
    lam_half, _, _ = hippo_init(n, 1, conj_sym=True)
    neg = dense[dense.imag < 0]
    assert lam_half.shape == (n // 2,)
    assert np.allclose(by_imag(lam_half), by_imag(neg), atol=1e-8)
    assert np.allclose(lam.real, -0.5)


def test_hippo_n2_example():
    lam, _, _ = hippo_init(2, 1)
    assert np.allclose(lam, [-0.5 - np.sqrt(3) / 2 * 1j])


@pytest.mark.parametrize("blocks", [1, 2, 4])
def test_hippo_v_unitary_and_reconstructs_normal_part(blocks):
    state_size = 16
    lam, v, vinv = hippo_init(state_size, blocks, conj_sym=False)
    assert np.allclose(v @ v.conj().T, np.eye(state_size), atol=1e-10)
    assert np.allclose(vinv, v.conj().T)
    n = state_size // blocks
    block = ref_hippo_normal(n)
    expected = np.kron(np.eye(blocks), block)
    assert np.allclose(v @ np.diag(lam) @ vinv, expected, atol=1e-9)


def test_hippo_conj_sym_shapes_and_tiling():
    lam, v, vinv = hippo_init(32, 4, conj_sym=True)
    assert lam.shape == (16,) and v.shape == (32, 16) and vinv.shape == (16, 32)
    assert np.allclose(lam[:4], lam[4:8])
    assert np.all(lam.imag < 0)


def test_hippo_bad_sizes():
    with pytest.raises(ValueError, match="not divisible"):
        hippo_init(10, 3)
    with pytest.raises(ValueError, match="even block size"):
        hippo_init(6, 2, conj_sym=True)


# ---------------------------------------------------------------- initialisers


def test_B_init_is_vinv_times_lecun_normal_real_matrix():
    p = 128
    _, v, vinv = hippo_init(p, 1, conj_sym=False)
    b_tilde = init_B(jax.random.key(1), vinv, 64)
    b = v @ (np.asarray(b_tilde[..., 0], np.float64) + 1j * np.asarray(b_tilde[..., 1]))
    assert np.max(np.abs(b.imag)) < 1e-4  # V B~ recovers a real matrix
    assert abs(np.std(b.real) * np.sqrt(p) - 1.0) < 0.05  # lecun_normal: variance 1/fan_in, fan_in = P


@pytest.mark.parametrize("C_init", ["trunc_standard_normal", "lecun_normal", "complex_normal"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_parameter_names_and_shapes(C_init, bidirectional):
    h, state_size = 32, 64
    layer = S5SSM(SSMConfig(state_size=state_size, blocks=4, bidirectional=bidirectional, C_init=C_init), h)
    params = layer.init(jax.random.key(0), jnp.zeros((5, h)))["params"]
    n = state_size // 2
    shapes = {k: v.shape for k, v in params.items()}
    assert shapes == {
        "Lambda_re": (n,), "Lambda_im": (n,), "B": (n, h, 2),
        "C": (h, 2 * n if bidirectional else n, 2), "D": (h,), "log_step": (n,),
    }
    assert np.all((params["log_step"] >= np.log(1e-3)) & (params["log_step"] <= np.log(0.1)))
    c = np.asarray(params["C"])
    if C_init == "complex_normal":
        assert abs(np.var(c) - 0.5) < 0.1
    elif C_init == "trunc_standard_normal":
        assert np.std(c) < 0.5  # std ~ 1/sqrt(P) per row, not unit variance


def test_bidirectional_C_draws_are_independent():
    layer = S5SSM(SSMConfig(state_size=16, bidirectional=True), 8)
    c = layer.init(jax.random.key(0), jnp.zeros((5, 8)))["params"]["C"]
    assert not np.allclose(c[:, :8], c[:, 8:])


# ---------------------------------------------------------------- apply_s5 against the reference


CASES = [
    dict(conj_sym=cs, bidirectional=bd, discretization=disc, clip_eigs=clip, step_rescale=sr)
    for cs in (True, False)
    for bd in (False, True)
    for disc in ("zoh", "bilinear")
    for clip, sr in ((False, 1.0), (True, 2.0))
]


# Every case with the default method; every method on two contrasting cases (the methods only differ in
# the recurrence, which test_linear_recurrence_all_forms covers on its own).
GRID = [(case, "auto") for case in CASES] + [(CASES[i], m) for i in (6, 9) for m in METHODS]


@pytest.mark.parametrize("case,scan", GRID, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items())
                         if isinstance(c, dict) else c)
def test_apply_s5_matches_float64_reference(case, scan):
    params = make_params(jax.random.key(3), conj_sym=case["conj_sym"], bidirectional=case["bidirectional"])
    u = np.random.default_rng(0).normal(size=(2, 37, 6)).astype(np.float32)
    y = apply_s5(params, jnp.asarray(u), scan=scan, **case)
    assert y.shape == u.shape
    for i in range(2):
        ref = ref_s5(params, u[i], **case)
        assert rel_err(y[i], ref) < 2e-5
    # Unbatched input gives the same as the batch's first row.
    y0 = apply_s5(params, jnp.asarray(u[0]), scan=scan, **case)
    assert np.allclose(y0, y[0], atol=1e-5)


@pytest.mark.parametrize("length", [1, 2, 63, 64, 65, 4096])
@pytest.mark.parametrize("scan", SCANS)
def test_apply_s5_lengths_1_to_4096(length, scan):
    case = dict(conj_sym=True, bidirectional=True, discretization="zoh", clip_eigs=False, step_rescale=1.0)
    params = make_params(jax.random.key(4))
    params["Lambda_re"] = params["Lambda_re"].at[0].set(-0.5)  # stable over 4096 steps
    u = np.random.default_rng(length).normal(size=(length, 6)).astype(np.float32)
    y = apply_s5(params, jnp.asarray(u), scan=scan, **case)
    assert rel_err(y, ref_s5(params, u, **case)) < 1e-5 * max(1.0, np.log2(length))


def test_gradients_agree_across_methods():
    params = make_params(jax.random.key(5))
    u = jnp.asarray(np.random.default_rng(1).normal(size=(2, 50, 6)), jnp.float32)
    w = jnp.asarray(np.random.default_rng(2).normal(size=(2, 50, 6)), jnp.float32)

    def loss(p, u, scan):
        y = apply_s5(p, u, conj_sym=True, bidirectional=True, clip_eigs=True, scan=scan, lengths=jnp.array([50, 31]))
        return jnp.sum(w * y)

    grads = {m: jax.grad(loss, argnums=(0, 1))(params, u, m) for m in METHODS}
    ref_flat, _ = ravel_pytree(grads["sequential"])
    assert np.all(np.isfinite(ref_flat))
    for m in METHODS:
        flat, _ = ravel_pytree(grads[m])
        assert np.allclose(flat, ref_flat, rtol=1e-4, atol=1e-4 * np.abs(ref_flat).max()), m


@pytest.mark.parametrize("scan", SCANS)
def test_lengths_masking_equals_unpadded_runs(scan):
    case = dict(conj_sym=True, bidirectional=True, discretization="zoh", clip_eigs=False, step_rescale=1.0)
    params = make_params(jax.random.key(6))
    rng = np.random.default_rng(3)
    lengths = np.array([20, 7, 1])
    u = rng.normal(size=(3, 20, 6)).astype(np.float32)  # garbage beyond each length
    y = apply_s5(params, jnp.asarray(u), lengths=jnp.asarray(lengths), scan=scan, **case)
    for i, n in enumerate(lengths):
        alone = apply_s5(params, jnp.asarray(u[i, :n]), scan=scan, **case)
        assert np.allclose(y[i, :n], alone, atol=1e-5)
    # Without lengths the padding leaks into the reverse direction (the official behaviour).
    leaky = apply_s5(params, jnp.asarray(u), scan=scan, **case)
    assert not np.allclose(leaky[1, :7], y[1, :7], atol=1e-3)


# ---------------------------------------------------------------- linear_recurrence


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("method", SCANS)
@pytest.mark.parametrize("a_shape,b_shape", [((5,), (3, 100, 5)), ((3, 1, 5), (3, 100, 5)),
                                             ((3, 100, 5), (3, 100, 5)), ((5,), (1, 5)), ((5,), (129, 5)),
                                             ((40,), (2, 600, 40))])  # several Pallas chunks and state blocks
def test_linear_recurrence_all_forms(reverse, method, a_shape, b_shape):
    rng = np.random.default_rng(7)
    a = rng.uniform(0.5, 1.0, a_shape) * np.exp(1j * rng.uniform(-3, 3, a_shape))
    b = rng.normal(size=b_shape) + 1j * rng.normal(size=b_shape)
    if method == "pallas" and len(a_shape) > 1:
        with pytest.raises(ValueError, match="time-invariant"):
            linear_recurrence(jnp.asarray(a), jnp.asarray(b), method=method)
        return
    ab = np.broadcast_to(a, b.shape)
    ref = np.zeros(b.shape, complex)
    x = np.zeros(b.shape[:-2] + b.shape[-1:], complex)
    steps = range(b.shape[-2] - 1, -1, -1) if reverse else range(b.shape[-2])
    for k in steps:
        x = ab[..., k, :] * x + b[..., k, :]
        ref[..., k, :] = x
    out = linear_recurrence(jnp.asarray(a, jnp.complex64), jnp.asarray(b, jnp.complex64),
                            reverse=reverse, method=method)
    assert rel_err(out, ref) < 1e-5


def test_linear_recurrence_unknown_method():
    with pytest.raises(ValueError, match="unknown scan method"):
        linear_recurrence(jnp.ones(3), jnp.ones((4, 3)), method="fft")


def test_apply_s5_unknown_discretization_names_the_argument():
    params = make_params(jax.random.key(0))
    with pytest.raises(ValueError, match="^discretization='euler': expected one of"):
        _apply_s5(params, jnp.ones((4, 6)), conj_sym=True, bidirectional=True, discretization="euler")


# ---------------------------------------------------------------- step (RNN) mode


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
@pytest.mark.parametrize("conj_sym", [True, False])
def test_step_mode_equals_parallel(discretization, conj_sym):
    layer = S5SSM(SSMConfig(state_size=8, blocks=2, conj_sym=conj_sym, bidirectional=False,
                  discretization=discretization), 6)
    u = jnp.asarray(np.random.default_rng(4).normal(size=(2, 25, 6)), jnp.float32)
    variables = layer.init(jax.random.key(8), u)
    y = layer.apply(variables, u)
    state = layer.apply(variables, (2,), method=S5SSM.initial_state)
    outs = []
    for k in range(u.shape[1]):
        state, y_k = layer.apply(variables, state, u[:, k], method=S5SSM.step)
        outs.append(y_k)
    assert np.allclose(jnp.stack(outs, axis=1), y, atol=1e-5)


def test_step_mode_refuses_bidirectional():
    layer = S5SSM(SSMConfig(state_size=4, bidirectional=True), 4)
    variables = layer.init(jax.random.key(0), jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match="bidirectional=false"):
        layer.apply(variables, jnp.zeros((2,), jnp.complex64), jnp.zeros((4,)), method=S5SSM.step)


@pytest.mark.parametrize("reverse", [False, True])
def test_pallas_gradients_across_chunk_edges(reverse):
    """The kernel's VJP (λ and the in-kernel dΛ̄ reduction) over several chunks, padded length and states."""
    from s5lra.ssm.pallas_scan import pallas_recurrence

    rng = np.random.default_rng(11)
    p, length = 40, 300  # 5 chunks of 64 (the last one padded), 2 state blocks of 32 (the last one padded)
    a = jnp.asarray(rng.uniform(0.5, 1.0, p) * np.exp(1j * rng.uniform(-3, 3, p)), jnp.complex64)
    b = jnp.asarray(rng.normal(size=(2, length, p)) + 1j * rng.normal(size=(2, length, p)), jnp.complex64)
    w = jnp.asarray(rng.normal(size=(2, length, p)) + 1j * rng.normal(size=(2, length, p)), jnp.complex64)

    def loss(fn):
        return lambda a, b: jnp.sum(jnp.real(jnp.conj(w) * fn(a, b)))

    got = jax.grad(loss(lambda a, b: pallas_recurrence(a, b, reverse=reverse, chunk=64)), argnums=(0, 1))(a, b)
    want = jax.grad(loss(lambda a, b: linear_recurrence(a, b, reverse=reverse, method="sequential")),
                    argnums=(0, 1))(a, b)
    for g, r in zip(got, want):
        assert rel_err(g, np.asarray(r).astype(np.complex128)) < 1e-5


def test_pallas_kernels_lower_to_triton_for_cuda():
    """Cross-platform lowering on CPU: forward and backward kernels become Triton calls, none Mosaic GPU.

    Catches what interpret mode cannot: a kernel Triton's lowering rejects, or JAX routing the GPU
    pallas_call to another backend (JAX 0.10 defaults to Mosaic GPU, which rejects these block shapes).
    JAX 0.11 lowers Triton only for a named GPU (an abstract H100 here), and an abstract mesh cannot hold the
    kernel's custom partitioning: so the forward and backward row functions inside it are lowered.
    """
    from jax.sharding import AbstractDevice, AbstractMesh, AxisType, use_abstract_mesh

    from s5lra.ssm import pallas_scan

    a = jnp.full((40,), 0.9, jnp.float32)
    b = jnp.ones((2, 300, 40), jnp.float32)
    static = (True, pallas_scan.CHUNK, pallas_scan.BLOCK_P, False)  # reverse, chunk, block_p, interpret
    h100 = AbstractDevice(device_kind="NVIDIA H100", num_cores=None, platform="gpu")
    with use_abstract_mesh(AbstractMesh((1,), ("x",), (AxisType.Explicit,), abstract_device=h100)):
        forward = jax.jit(lambda a, b: pallas_scan._forward_rows(a, a, b, b, *static)).trace(a, b)
        backward = jax.jit(lambda a, b: pallas_scan._backward_rows(a, a, b, b, b, b, *static)).trace(a, b)
        texts = [f.lower(lowering_platforms=("cuda",)).as_text() for f in (forward, backward)]
    # forward: chunk end states, then states; backward: end states, then λ with dΛ̄
    for text, kernels in zip(texts, [("_end_state_kernel", "_scan_kernel"), ("_end_state_kernel", "_grad_kernel")]):
        targets = re.findall(r'custom_call @([\w$.]+)\(', text)
        assert targets == ["__gpu$xla.gpu.triton"] * 2, targets
        assert re.findall(r'name = "(_\w+_kernel)"', text) == list(kernels)


@pytest.mark.parametrize("backend,expected", [("cpu", "sequential"), ("gpu", "pallas"), ("tpu", "associative")])
def test_auto_method_per_backend(monkeypatch, backend, expected):
    from s5lra.ssm import recurrence, selfcheck

    monkeypatch.setattr(recurrence.jax, "default_backend", lambda: backend)
    if backend == "gpu":  # as when the kernel passed its self-check (tests/test_gpu_selfcheck.py)
        monkeypatch.setattr(selfcheck, "gpu_scan", lambda: "pallas")
    assert recurrence.resolve_method("auto") == expected
    if backend == "gpu":  # a time-varying decay cannot use the kernel: auto takes the associative scan
        a, b = jnp.full((3, 10, 4), 0.5 + 0j), jnp.ones((3, 10, 4), jnp.complex64)
        assert np.allclose(linear_recurrence(a, b), recurrence.associative(a, b))


@pytest.fixture(params=[True, False], ids=["shardy", "gspmd"])  # JAX's default partitioner, and the older one
def partitioner(request):
    previous = jax.config.jax_use_shardy_partitioner
    jax.config.update("jax_use_shardy_partitioner", request.param)
    yield
    jax.config.update("jax_use_shardy_partitioner", previous)


@pytest.mark.usefixtures("partitioner")
def test_pallas_keeps_a_sharded_batch_on_its_devices():
    """Under a batch-sharded jit each device runs the kernel on its own rows: no all-gather of the batch
    (XLA's default for a kernel it cannot see into), the b-gradient stays sharded, dΛ̄ is all-reduced."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from s5lra.ssm.pallas_scan import pallas_recurrence

    mesh = Mesh(np.array(jax.devices()), ("data",))
    rows, repl = NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec())
    rng = np.random.default_rng(5)
    p, n = 40, 2 * len(jax.devices())
    a = jnp.asarray(rng.uniform(0.5, 1.0, p) * np.exp(1j * rng.uniform(-3, 3, p)), jnp.complex64)
    b = jnp.asarray(rng.normal(size=(n, 150, p)) + 1j * rng.normal(size=(n, 150, p)), jnp.complex64)

    def loss(fn):
        return lambda a, b: jnp.sum(jnp.abs(fn(a, b)) ** 2)

    grad = jax.jit(jax.grad(loss(lambda a, b: pallas_recurrence(a, b, chunk=64)), argnums=(0, 1)),
                   in_shardings=(repl, rows))
    assert "all-gather" not in grad.lower(a, b).compile().as_text()
    got = grad(a, jax.device_put(b, rows))
    assert got[1].sharding.spec == PartitionSpec("data")
    want = jax.grad(loss(lambda a, b: linear_recurrence(a, b, method="sequential")), argnums=(0, 1))(a, b)
    for g, r in zip(got, want):
        assert rel_err(g, np.asarray(r).astype(np.complex128)) < 1e-5


@pytest.mark.parametrize("per_instance_decay", [False, True])
def test_pallas_under_vmap(per_instance_decay):
    """vmap (as the official code applies its layer per example): a shared decay folds the vmapped axis into
    the kernel's rows; a vmapped decay runs the instances in turn. Values and gradients match sequential."""
    rng = np.random.default_rng(9)
    a = jnp.asarray(rng.uniform(0.5, 1.0, (3, 6)) * np.exp(1j * rng.uniform(-3, 3, (3, 6))), jnp.complex64)
    b = jnp.asarray(rng.normal(size=(3, 2, 70, 6)) + 1j * rng.normal(size=(3, 2, 70, 6)), jnp.complex64)

    def loss(method):
        if per_instance_decay:
            run = jax.vmap(lambda a, b: linear_recurrence(a, b, method=method))
            return lambda a, b: jnp.sum(jnp.abs(run(a, b)) ** 2)
        return lambda a, b: jnp.sum(jnp.abs(jax.vmap(lambda b: linear_recurrence(a[0], b, method=method))(b)) ** 2)

    got = jax.value_and_grad(loss("pallas"), argnums=(0, 1))(a, b)
    want = jax.value_and_grad(loss("sequential"), argnums=(0, 1))(a, b)
    assert got[0] == pytest.approx(float(want[0]), rel=1e-5)
    for g, r in zip(got[1], want[1]):
        assert rel_err(g, np.asarray(r).astype(np.complex128)) < 1e-5
