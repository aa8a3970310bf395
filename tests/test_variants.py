"""The S5 family: S4D and PTD initialisations, the LRU, selective S5 — against references written here."""

import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

from s5lra.errors import InvalidSetting
from s5lra.model import ModelConfig, SSMConfig, build_model, count_params
from s5lra.ssm import METHODS, S5SSM, apply_s5, diagonal_init, hippo_init, linear_recurrence, ssm_layer
from s5lra.ssm import ptd
from s5lra.ssm.lru import apply_lru, gamma_log_for, init_nu_log, init_theta_log
from s5lra.ssm.selective import apply_selective_s5
from s5lra.train.config import OptimizerConfig, validate
from s5lra.train.optim import make_optimizer, param_labels

from helpers import REPO, compose_cfg

SCANS = tuple(m for m in METHODS if m != "pallas")  # the kernel takes a time-invariant decay only ("auto" falls back)


def grid(fast, rest):
    """Parameter cases: `fast` always, `rest` only with -m slow (keeps the default run short)."""
    return list(fast) + [pytest.param(*c, marks=pytest.mark.slow) for c in rest]


S5_STATIC = ("conj_sym", "bidirectional", "discretization", "clip_eigs", "step_rescale", "scan")
s5 = jax.jit(apply_s5, static_argnames=S5_STATIC)
selective_s5 = jax.jit(apply_selective_s5, static_argnames=S5_STATIC)
lru = jax.jit(apply_lru, static_argnames=("bidirectional", "scan"))


def legs(n):
    """The full HiPPO-LegS matrix, entry by entry."""
    a = np.zeros((n, n))
    for i in range(n):
        for k in range(i + 1):
            a[i, k] = -(i + 1) if i == k else -np.sqrt(2 * i + 1) * np.sqrt(2 * k + 1)
    return a


def rel_err(y, ref):
    return float(np.max(np.abs(np.asarray(y, np.complex128) - ref)) / np.max(np.abs(ref)))


def loop(lam_bar, bu, reverse=False):
    """x_k = Λ̄_k x_{k−1} + (B̄u)_k in complex128; lam_bar (L, P) or (P,), bu (L, P)."""
    lam_bar = np.broadcast_to(lam_bar, bu.shape)
    out, x = np.zeros(bu.shape, complex), np.zeros(bu.shape[-1], complex)
    for k in (reversed(range(len(bu))) if reverse else range(len(bu))):
        x = lam_bar[k] * x + bu[k]
        out[k] = x
    return out


def layer_params(cfg, h=6, seed=0):
    return dict(ssm_layer(cfg, h).init(jax.random.key(seed), jnp.zeros((3, h)))["params"])


@pytest.fixture(scope="session")
def ptd_cache(tmp_path_factory):
    """One PTD cache folder for the session, so each solve runs once."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("S5LRA_CACHE_DIR", str(tmp_path_factory.mktemp("s5lra-cache")))
        ptd.solve_ptd.cache_clear()
        yield
    ptd.solve_ptd.cache_clear()


@pytest.fixture(scope="session")
def ptd16(ptd_cache):
    """The authors' reproduced setting: N = 16, λ = 3, lr 0.05, 3000 Adam steps (seconds on a CPU)."""
    return ptd.solve_ptd(16)


# ---------------------------------------------------------------- S4D initialisations and hippo


@pytest.mark.parametrize("conj_sym", [True, False])
@pytest.mark.parametrize("blocks", [1, 3])
@pytest.mark.parametrize("kind", ["s4d_lin", "s4d_inv", "s4d_real"])
def test_s4d_eigenvalues_equal_closed_forms(kind, blocks, conj_sym):
    n = 8  # block size N; the formulas index the N/2 modes of a block
    lam, v, vinv = diagonal_init(kind, n * blocks, blocks, conj_sym)
    modes = []
    for m in range(n // 2 if conj_sym or kind != "s4d_real" else n):
        if kind == "s4d_lin":
            modes.append(complex(-0.5, math.pi * m))
        elif kind == "s4d_inv":
            modes.append(complex(-0.5, n / math.pi * (n / (2 * m + 1) - 1)))
        else:
            modes.append(complex(-(m + 1), 0))
    if not conj_sym and kind != "s4d_real":
        modes += [z.conjugate() for z in modes]
    np.testing.assert_allclose(lam, np.tile(modes, blocks), atol=1e-12)
    # No eigenbasis: V and V⁻¹ select states (identity blocks), so B̃ = B and C̃ = C.
    keep = len(modes)
    eye = np.eye(n, keep)
    np.testing.assert_array_equal(v, np.kron(np.eye(blocks), eye))
    np.testing.assert_array_equal(vinv, v.T)


def test_hippo_is_unchanged():
    lam, v, vinv = diagonal_init("hippo", 16, 2, True)
    ref = hippo_init(16, 2, True)
    for a, b in zip((lam, v, vinv), ref):
        np.testing.assert_array_equal(a, b)
    p = np.sqrt(np.arange(8) + 0.5)
    normal = legs(8) + np.outer(p, p)
    dense = np.linalg.eigvals(normal)
    by_imag = lambda z: z[np.argsort(z.imag)]
    np.testing.assert_allclose(by_imag(lam[:4]), by_imag(dense[dense.imag < 0]), atol=1e-10)


def test_freq_scale_scales_only_the_imaginary_parts():
    params = layer_params(SSMConfig(state_size=8, init="s4d_lin", freq_scale=3.0))
    lam = diagonal_init("s4d_lin", 8, 1)[0]
    np.testing.assert_allclose(params["Lambda_im"], 3 * lam.imag, rtol=1e-6)
    np.testing.assert_array_equal(params["Lambda_re"], np.float32(lam.real))


# ---------------------------------------------------------------- PTD


def test_ptd_without_perturbation_has_the_legs_eigenvalues():
    np.testing.assert_array_equal(ptd.legs_matrix(16), legs(16))
    sol = ptd.decompose(np.zeros((16, 16)))
    np.testing.assert_allclose(sol.lam, -np.arange(16, 0, -1.0), atol=1e-9)  # sorted by (Im, Re)
    assert sol.cond > 1e8  # why S5 could not use the full matrix


def test_ptd_solve_is_well_conditioned_and_small(ptd16):
    a = legs(16)
    assert ptd16.cond <= 10
    assert np.linalg.norm(ptd16.e, 2) / np.linalg.norm(a, 2) <= 0.1
    assert ptd16.rel_perturbation == pytest.approx(np.linalg.norm(ptd16.e, 2) / np.linalg.norm(a, 2))
    np.testing.assert_allclose(ptd16.v @ np.diag(ptd16.lam) @ ptd16.vinv, a + ptd16.e, atol=1e-8)
    # Real E: the spectrum is closed under conjugation.
    np.testing.assert_allclose(np.sort_complex(ptd16.lam), np.sort_complex(ptd16.lam.conj()), atol=1e-9)


def transfer(c, b, lam, v, vinv, omegas, pairs_weight=None):
    """G(iω) = cᵀ V (iω − Λ)⁻¹ V⁻¹ b; with conjugate symmetry, the kept states plus their conjugates."""
    cv, wb = c @ v, vinv @ b
    g = np.array([np.sum(cv * wb / (1j * w - lam)) for w in omegas])
    if pairs_weight:
        g = g + np.array([np.sum(np.conj(cv * wb) / (1j * w - lam.conj())) for w in omegas])
    return g


def test_ptd_transfer_function_is_far_closer_to_hippo_than_s5s(ptd16):
    n = 16
    a, b = legs(n), np.sqrt(2 * np.arange(n) + 1.0)  # LegS (A, B)
    c = np.random.default_rng(0).normal(0, 1 / np.sqrt(n), n)
    omegas = np.concatenate([-np.logspace(5, -1, 400), np.logspace(-1, 5, 400)])
    g_true = np.array([c @ np.linalg.solve(1j * w * np.eye(n) - a, b) for w in omegas])
    g_ptd = transfer(c, b, ptd16.lam, ptd16.v, ptd16.vinv, omegas)
    g_s5 = transfer(c, b, *hippo_init(n, 1, conj_sym=False), omegas)
    err_ptd, err_s5 = np.max(np.abs(g_ptd - g_true)), np.max(np.abs(g_s5 - g_true))
    assert err_ptd * 10 <= err_s5, (err_ptd, err_s5)
    # conj_sym with real E: one state per complex pair, real eigenvalues kept at half weight — the same system.
    lam_c, v_c, vinv_c = diagonal_init("ptd", n, 1, conj_sym=True)
    n_real = int(np.sum(ptd16.lam.imag == 0))
    assert len(lam_c) == (n - n_real) // 2 + n_real
    g_c = transfer(c, b, lam_c, v_c, vinv_c, omegas, pairs_weight=True)
    assert np.max(np.abs(g_c - g_ptd)) < 1e-8 * np.max(np.abs(g_ptd))


def test_ptd_cache_round_trips_and_is_keyed_by_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("S5LRA_CACHE_DIR", str(tmp_path))
    ptd.solve_ptd.cache_clear()
    small = ptd.PTDSettings(steps=20)
    first = ptd.solve_ptd(4, small)
    files = list((tmp_path / "ptd").iterdir())
    assert [f.suffix for f in files] == [".npz"]  # one file, no temporary left behind
    assert ptd.cache_path(4, small) == files[0]
    assert len({ptd.cache_path(4, s) for s in (small, ptd.PTDSettings(steps=21), ptd.PTDSettings(steps=20, reg=1),
                                               ptd.PTDSettings(steps=20, seed=1))} | {ptd.cache_path(6, small)}) == 5
    ptd.solve_ptd.cache_clear()
    monkeypatch.setattr(ptd, "optimise_perturbation", lambda *a: pytest.fail("solved again instead of loading"))
    again = ptd.solve_ptd(4, small)
    for name in ("lam", "v", "vinv", "e"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
    assert ptd.solve_ptd(4, small) is again  # and once per process
    ptd.solve_ptd.cache_clear()


def test_ptd_layer_and_force_neg(ptd16):
    params = layer_params(SSMConfig(state_size=32, blocks=2, init="ptd", conj_sym=False, force_neg=True))
    assert params["Lambda_re"].shape == (32,) and np.all(params["Lambda_re"] <= 0)
    np.testing.assert_allclose(params["Lambda_re"][:16], -np.abs(ptd16.lam.real), rtol=1e-6)
    np.testing.assert_allclose(params["Lambda_im"], np.tile(ptd16.lam.imag, 2), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- LRU


def lru_lambda64(p):
    return np.exp(-np.exp(np.float64(p["nu_log"])) + 1j * np.exp(np.float64(p["theta_log"])))


@pytest.mark.parametrize("r_min,r_max,max_phase", [(0.0, 0.9, 2 * np.pi), (0.9, 0.999, np.pi), (0.999, 0.9999, np.pi / 10)])
def test_lru_ring_initialisation(r_min, r_max, max_phase):
    n, (k1, k2) = 20000, jax.random.split(jax.random.key(0))
    nu_log = init_nu_log(k1, n, r_min, r_max)
    p = {"nu_log": nu_log, "theta_log": init_theta_log(k2, n, max_phase), "gamma_log": gamma_log_for(nu_log)}
    lam = lru_lambda64(p)
    mag, phase = np.abs(lam), np.exp(np.float64(p["theta_log"]))
    assert mag.min() >= r_min * (1 - 1e-6) and mag.max() <= r_max * (1 + 1e-6)
    assert phase.min() > 0 and phase.max() <= max_phase * (1 + 1e-6)
    # E|λ|² of the uniform distribution on the annulus; standard error of the mean ≈ (r_max² − r_min²)/√(12·20000)
    assert abs(np.mean(mag**2) - (r_min**2 + r_max**2) / 2) < 5 * (r_max**2 - r_min**2) / np.sqrt(12 * 20000)
    np.testing.assert_allclose(np.exp(2 * np.float64(p["gamma_log"])), 1 - mag**2, rtol=1e-4)


def test_lru_normalisation_keeps_each_states_variance():
    """Simulate white input: each state's stationary variance equals that of its input γ⁻¹·(γBu)."""
    h, n, length, batch = 4, 6, 3000, 64
    p = layer_params(SSMConfig(kind="lru", state_size=n, r_min=0.5, r_max=0.9, bidirectional=False), h=h)
    u = np.random.default_rng(0).normal(size=(batch, length, h))
    b = (np.float64(p["B"][..., 0]) + 1j * np.float64(p["B"][..., 1]))
    bu = u @ b.T  # (batch, L, N) input to each state, before γ
    lam, gamma = lru_lambda64(p), np.exp(np.float64(p["gamma_log"]))
    x, acc = np.zeros((batch, n), complex), np.zeros(n)
    for k in range(length):  # |λ| ≤ 0.9: stationary long before step 200; average |x|² over batch and time
        x = lam * x + gamma * bu[:, k]
        if k >= 200:
            acc += np.mean(np.abs(x) ** 2, axis=0)
    np.testing.assert_allclose(acc / (length - 200), np.sum(np.abs(b) ** 2, axis=1), rtol=0.1)


@pytest.mark.parametrize("scan,bidirectional", grid([(m, True) for m in SCANS], [(m, False) for m in SCANS]))
def test_lru_matches_float64_loop(scan, bidirectional):
    p = layer_params(SSMConfig(kind="lru", state_size=5, r_min=0.5, r_max=0.99, bidirectional=bidirectional))
    u = np.random.default_rng(1).normal(size=(2, 40, 6)).astype(np.float32)
    lengths = np.array([40, 23])
    y = lru(p, jnp.asarray(u), bidirectional=bidirectional, scan=scan, lengths=jnp.asarray(lengths))
    q = {k: np.float64(v) for k, v in p.items()}
    lam = lru_lambda64(p)
    b = np.exp(q["gamma_log"])[:, None] * (q["B"][..., 0] + 1j * q["B"][..., 1])
    c = q["C"][..., 0] + 1j * q["C"][..., 1]
    for i, n_valid in enumerate(lengths):
        v = u[i, :n_valid].astype(np.float64)
        states = loop(lam, v @ b.T)
        if bidirectional:
            states = np.concatenate([states, loop(lam, v @ b.T, reverse=True)], axis=1)
        ref = (states @ c.T).real + q["D"] * v
        assert rel_err(y[i, :n_valid], ref) < 2e-5


def test_lru_ignores_conj_sym_and_refuses_s5_settings():
    u = jnp.asarray(np.random.default_rng(2).normal(size=(2, 9, 6)), jnp.float32)
    ys = []
    for conj_sym in (True, False):
        layer = ssm_layer(SSMConfig(kind="lru", state_size=5, conj_sym=conj_sym), 6)
        ys.append(layer.apply(layer.init(jax.random.key(0), u), u))
    np.testing.assert_array_equal(*ys)
    for field, value in (("init", "ptd"), ("selective", True), ("freq_scale", 2.0), ("step_rescale", 2.0),
                         ("r_min", 0.95), ("max_phase", 7.0)):
        with pytest.raises(InvalidSetting, match=field):
            SSMConfig(kind="lru", r_max=0.9, **{field: value}).check()
    with pytest.raises(InvalidSetting, match="ssm.kind"):
        ModelConfig(ssm=SSMConfig(kind="rwkv")).check()


# ---------------------------------------------------------------- selective S5


def selective_params(seed=0, w2_scale=0.0, conj_sym=True, bidirectional=True, h=6, state_size=8):
    cfg = SSMConfig(state_size=state_size, blocks=2, conj_sym=conj_sym, bidirectional=bidirectional, selective=True,
                    selective_rank=2)
    p = layer_params(cfg, h=h, seed=seed)
    p["delta_W2"] = w2_scale * jax.random.normal(jax.random.key(seed + 1), p["delta_W2"].shape)
    return p


def ref_selective(p, u, conj_sym, bidirectional):
    """The time-varying recurrence in float64: log Δ_k = log Δ₀ + (u_k W₁) W₂, ZOH per step."""
    q = {k: np.asarray(v, np.float64) for k, v in p.items()}
    lam = q["Lambda_re"] + 1j * q["Lambda_im"]
    b = q["B"][..., 0] + 1j * q["B"][..., 1]
    c = q["C"][..., 0] + 1j * q["C"][..., 1]
    delta = np.exp(q["log_step"] + u @ q["delta_W1"] @ q["delta_W2"])  # (L, P')
    lam_bar = np.exp(lam * delta)
    bu = (lam_bar - 1) / lam * (u @ b.T)
    states = loop(lam_bar, bu)
    if bidirectional:
        states = np.concatenate([states, loop(lam_bar, bu, reverse=True)], axis=1)
    y = (states @ c.T).real
    return (2 * y if conj_sym else y) + q["D"] * u


@pytest.mark.parametrize("scan", SCANS)
def test_selective_with_zero_W2_is_s5_bit_for_bit(scan):
    p = selective_params()
    u = jnp.asarray(np.random.default_rng(3).normal(size=(3, 30, 6)), jnp.float32)
    kw = dict(conj_sym=True, bidirectional=True, scan=scan, lengths=jnp.array([30, 17, 1]))
    s5_params = {k: v for k, v in p.items() if not k.startswith("delta_")}
    ours, theirs = selective_s5(p, u, **kw), s5(s5_params, u, **kw)
    if scan == "associative":
        # The same products, but XLA compiles the tree of a (…, L, P') decay differently from a broadcast (P')
        # one: equal to float32 rounding, not bit for bit (measured: 2.4e-7 absolute).
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_array_equal(ours, theirs)


def test_selective_layer_starts_as_the_s5_layer():
    """Same seed: the S5 parameters are drawn alike, W₂ = 0, so the layers' outputs are identical."""
    u = jnp.asarray(np.random.default_rng(4).normal(size=(2, 20, 6)), jnp.float32)
    outs = []
    for sel in (False, True):
        layer = S5SSM(SSMConfig(state_size=8, blocks=2, selective=sel), 6)
        variables = layer.init(jax.random.key(5), u)
        outs.append(layer.apply(variables, u))
    np.testing.assert_array_equal(*outs)
    assert variables["params"]["delta_W1"].shape == (6, 1)  # ⌈6/16⌉
    assert not np.any(variables["params"]["delta_W2"])


@pytest.mark.parametrize("scan,conj_sym,bidirectional", grid(
    [("sequential", True, True), ("associative", True, True), ("chunked", False, False),
     ("checkpointed", False, False)],
    [("checkpointed", True, True), ("chunked", True, True), ("sequential", False, False),
     ("associative", False, False)]))
def test_selective_matches_float64_loop_values_and_gradients(scan, conj_sym, bidirectional):
    p = selective_params(w2_scale=0.5, conj_sym=conj_sym, bidirectional=bidirectional)
    u = np.random.default_rng(5).normal(size=(2, 33, 6)).astype(np.float32)
    w = np.random.default_rng(6).normal(size=u.shape)
    kw = dict(conj_sym=conj_sym, bidirectional=bidirectional, scan=scan)
    y = selective_s5(p, jnp.asarray(u), **kw)
    refs = [ref_selective(p, u[i].astype(np.float64), conj_sym, bidirectional) for i in range(2)]
    for i in range(2):
        assert rel_err(y[i], refs[i]) < 3e-5
    # Gradient along a random direction of every parameter against a central difference of the float64 loop.
    grads = jax.grad(lambda q: jnp.sum(jnp.asarray(w, jnp.float32) * selective_s5(q, jnp.asarray(u), **kw)))(p)
    rng = np.random.default_rng(7)
    direction = {k: rng.normal(size=np.shape(v)) for k, v in p.items()}
    p64 = {k: np.asarray(v, np.float64) for k, v in p.items()}

    def f64_loss(eps):
        q = {k: p64[k] + eps * direction[k] for k in p64}
        return sum(np.sum(w[i] * ref_selective(q, u[i].astype(np.float64), conj_sym, bidirectional))
                   for i in range(2))

    numeric = (f64_loss(1e-6) - f64_loss(-1e-6)) / 2e-6
    analytic = sum(float(np.sum(np.asarray(grads[k], np.float64) * direction[k])) for k in p)
    assert analytic == pytest.approx(numeric, rel=1e-3)


def test_selective_one_state_gate_identity():
    """N = 1, Λ = −1, B̃ = 1, Δ = softplus(z): the ZOH step is h_t = (1 − σ(z_t)) h_{t−1} + σ(z_t) x_t."""
    from s5lra.ssm.layer import discrete_system

    z = np.random.default_rng(8).normal(size=50) * 3
    x = np.random.default_rng(9).normal(size=50)
    lam_bar, scale = discrete_system(jnp.complex64(-1.0), jnp.asarray(np.log1p(np.exp(z)), jnp.float32))
    h = np.asarray(linear_recurrence(lam_bar[:, None], (scale * x)[:, None], method="sequential")[:, 0])
    g = 1 / (1 + np.exp(-z))
    ref, state = np.zeros(50), 0.0
    for t in range(50):
        state = (1 - g[t]) * state + g[t] * x[t]
        ref[t] = state
    np.testing.assert_allclose(h.real, ref, atol=1e-5)
    np.testing.assert_allclose(h.imag, 0, atol=1e-6)


def test_selective_refuses_the_time_invariant_kernel():
    with pytest.raises(InvalidSetting, match="scan"):
        SSMConfig(selective=True, scan="pallas").check()
    with pytest.raises(InvalidSetting, match="selective_rank"):
        SSMConfig(selective=True, selective_rank=0).check()


# ---------------------------------------------------------------- every variant in the layer and the model

VARIANTS = {
    "s5": {},
    "ptd": {"init": "ptd", "conj_sym": False},
    "s4d_lin": {"init": "s4d_lin"},
    "s4d_inv": {"init": "s4d_inv"},
    "s4d_real": {"init": "s4d_real"},
    "lru": {"kind": "lru"},
    "selective": {"selective": True},
}


@pytest.mark.parametrize("variant", ["lru", "selective"])  # the inits share S5's step (tests/test_ssm.py)
def test_step_mode_equals_parallel(variant):
    kw = VARIANTS[variant]
    layer = ssm_layer(SSMConfig(state_size=16, bidirectional=False, **kw), 6)
    u = jnp.asarray(np.random.default_rng(10).normal(size=(2, 15, 6)), jnp.float32)
    variables = layer.init(jax.random.key(1), u)
    if variant == "selective":  # make the step input-dependent
        params = dict(variables["params"])
        params["delta_W2"] = jnp.full(params["delta_W2"].shape, 0.3)
        variables = {"params": params}
    y = layer.apply(variables, u)
    state = layer.apply(variables, (2,), method=type(layer).initial_state)
    outs = []
    for k in range(u.shape[1]):
        state, y_k = layer.apply(variables, state, u[:, k], method=type(layer).step)
        outs.append(y_k)
    np.testing.assert_allclose(jnp.stack(outs, axis=1), y, atol=1e-5)


def expected_params(variant, n_layers, h, p, vocab, n_classes):
    """Closed-form count: encoder, per layer (SSM + BatchNorm + half_glu1's W2), decoder."""
    n = p // 2  # complex states kept with conj_sym
    ssm = {
        "s5": 2 * n + 2 * n * h + 2 * h * 2 * n + h + n,  # Λ re/im, B̃, C̃ (both directions), D, log Δ
        "ptd": 2 * p + 2 * p * h + 2 * h * 2 * p + h + p,  # no conjugate symmetry: all p states
        "lru": 3 * p + 2 * p * h + 2 * h * 2 * p + h,  # ν, θ, γ, B, C (both directions), D; p states, no pairs
    }
    ssm["s4d_lin"] = ssm["s4d_inv"] = ssm["s4d_real"] = ssm["s5"]
    r = -(-h // 16)
    ssm["selective"] = ssm["s5"] + h * r + r * n
    per_layer = ssm[variant] + 2 * h + h * h + h
    return vocab * h + h + n_layers * per_layer + h * n_classes + n_classes


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_counts(variant, ptd16):
    h, p, layers = 32, 16, 2
    cfg = ModelConfig(n_layers=layers, d_model=h, ssm=SSMConfig(state_size=p, **VARIANTS[variant]))
    model = build_model(cfg, SimpleNamespace(n_classes=10, vocab_size=18, dual=False))
    shapes = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, jnp.zeros((1, 4), jnp.int32),
                                               jnp.full((1,), 4)))
    assert count_params(shapes["params"]) == expected_params(variant, layers, h, p, 18, 10)


# ---------------------------------------------------------------- optimizer groups


def variant_params(*ssm_names):
    leaf = jnp.ones((2,))
    return {"layers": {"ssm": {k: leaf for k in ssm_names}, "W2": {"kernel": leaf}}}


LRU_NAMES = ("nu_log", "theta_log", "gamma_log", "B", "C", "D")
SELECTIVE_NAMES = ("Lambda_re", "Lambda_im", "B", "C", "D", "log_step", "delta_W1", "delta_W2")


def test_lru_groups():
    labels = param_labels(variant_params(*LRU_NAMES), OptimizerConfig(groups="standard"))["layers"]
    assert {k for k, v in labels["ssm"].items() if v == "ssm"} == {"nu_log", "theta_log", "gamma_log", "B"}
    assert labels["ssm"]["C"] == labels["ssm"]["D"] == labels["W2"]["kernel"] == "regular"
    # ν, θ, γ stay undecayed under every table; B follows it as S5's does.
    labels = param_labels(variant_params(*LRU_NAMES), OptimizerConfig(groups="BandCdecay"))["layers"]["ssm"]
    assert labels["nu_log"] == labels["theta_log"] == labels["gamma_log"] == "ssm" and labels["B"] == "ssm_decay"


def test_selective_group_rate():
    """Adam's first update is −rate·sign(g): W₁, W₂ move at selective_lr_factor × ssm_lr, without decay."""
    p = variant_params(*SELECTIVE_NAMES)
    cfg = OptimizerConfig(selective_lr_factor=0.25, weight_decay=0.5)
    labels = param_labels(p, cfg)["layers"]["ssm"]
    assert labels["delta_W1"] == labels["delta_W2"] == "selective" and labels["Lambda_re"] == "ssm"
    tx = make_optimizer(cfg, lambda _: 0.1, lambda _: 0.01)
    grads = jax.tree.map(jnp.ones_like, p)
    updates, _ = tx.update(grads, tx.init(p), p)
    ssm = updates["layers"]["ssm"]
    np.testing.assert_allclose(ssm["delta_W2"], -0.25 * 0.01, rtol=1e-5)
    np.testing.assert_allclose(ssm["delta_W1"], -0.25 * 0.01, rtol=1e-5)
    np.testing.assert_allclose(ssm["Lambda_im"], -0.01, rtol=1e-5)


# ---------------------------------------------------------------- experiment files and the zoo driver

LRA_TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")


def composed(overrides):
    cfg = OmegaConf.to_object(compose_cfg(overrides))
    validate(cfg)
    return cfg


@pytest.mark.parametrize("task", LRA_TASKS)
def test_variant_experiments_are_s5s_plus_their_diffs(task):
    s5, ptd_cfg, lru_cfg = (composed([f"experiment={e}/{task}"]) for e in ("lra", "lra_ptd", "lra_lru"))
    assert (ptd_cfg.model.ssm.init, ptd_cfg.model.ssm.conj_sym) == ("ptd", False)
    assert ptd_cfg.model.ssm.force_neg == (task == "pathx")
    assert (ptd_cfg.model.n_layers, ptd_cfg.model.d_model, ptd_cfg.model.ssm.state_size, ptd_cfg.model.ssm.blocks) \
        == (s5.model.n_layers, s5.model.d_model, s5.model.ssm.state_size, s5.model.ssm.blocks)
    epochs = {"listops": 35, "text": 40, "pathfinder": 230, "pathx": 90}.get(task, s5.trainer.epochs)
    assert ptd_cfg.trainer.epochs == epochs
    assert lru_cfg.model.ssm.kind == "lru" and lru_cfg.optimizer.groups == "standard"
    assert lru_cfg.optimizer.weight_decay == 0.05 and lru_cfg.optimizer.ssm_lr == lru_cfg.optimizer.lr / 2
    assert 0 <= lru_cfg.model.ssm.r_min < lru_cfg.model.ssm.r_max < 1


def test_zoo_driver_variants_compose_for_both_tasks():
    import sys

    sys.path.insert(0, str(REPO / "experiments"))
    import zoo_reduced

    for task in zoo_reduced.TASKS:
        for variant in zoo_reduced.VARIANTS:
            cfg = composed([f"experiment=zoo_reduced/{task}", *zoo_reduced.VARIANTS[variant]])
            assert cfg.model.ssm.kind == ("lru" if variant == "lru" else "s5")
    table = zoo_reduced.zoo_table({("listops", "s5"): [{"test_accuracy": 0.5, "n_params": 10},
                                                       {"test_accuracy": 0.7, "n_params": 10}]},
                                  ["listops", "listops_long"], ["s5", "lru"])
    assert "| s5 | 60.0 ± 14.1 (n=2) | — | 10 |" in table and "| lru | — | — | — |" in table
