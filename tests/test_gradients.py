"""Gradients of λ_min, log det, β_c and T_c (tapjax.melting) against physics references.

References: central finite differences in float64 (relative error ≤ 1e-6), the closed form
∂ log det A/∂W = tr(A⁻¹ ∂A/∂W), Euler's theorem for the degree-1 homogeneity T_c(sW) = s T_c(W)
(equivalently d T_c/dC = T_c/(2C) of the MSK eq. 17 scaling), the envelope theorem for the
reference threshold, and jit / vmap / float32 consistency.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import spiked
from tapjax import melting as mt
from tapjax import spin_model as sm
from tapjax import tap

# (sizes, seed): depths 1–4, unequal widths; the last has a run of equal square blocks (scan path)
NETS = [((5, 7), 3), ((6, 9, 7, 5), 1), ((4, 6, 6, 6, 3), 2)]
SPIKE = {(5, 7): 2.0, (4, 6, 6, 6, 3): 3.0}   # spikes that make these nets cross λ* (default 1.0)


def _net(sizes, seed, dtype=jnp.float64, spike=1.0):
    c = sm.random_couplings(jax.random.PRNGKey(seed), sizes, 2.0, dtype)
    return c, spiked(c, spike, jax.random.PRNGKey(seed + 10))


def _direction(c, seed=7):
    keys = jax.random.split(jax.random.PRNGKey(seed), c.num_layers)
    d = [jax.random.normal(k, w.shape, w.dtype) for k, w in zip(keys, c.weights)]
    n = np.sqrt(sum(float(jnp.sum(x * x)) for x in d))
    return sm.LayeredCouplings(tuple(x / n for x in d))


def _axpy(c, d, h):
    return sm.LayeredCouplings(tuple(w + h * x for w, x in zip(c.weights, d.weights)))


def _fd(f, c, d, h):
    return (float(f(_axpy(c, d, h))) - float(f(_axpy(c, d, -h)))) / (2 * h)


def _dot(g, d):
    return float(sum(jnp.vdot(a, b) for a, b in zip(g.weights, d.weights)))


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


@pytest.fixture(scope="module")
def refs():
    """Reference levels of the unspiked nets (float64), computed once."""
    with jax.enable_x64(True):
        out = {}
        for sizes, seed in NETS:
            c0, c1 = _net(sizes, seed, spike=SPIKE.get(sizes, 1.0))
            out[sizes] = (c0, c1, mt.reference_level(c0, beta_max=3.0))
        yield out


# --------------------------------------------------------------------------- λ_min
@pytest.mark.parametrize("sizes,seed,backend", [(*NETS[0], "dense"), (*NETS[1], "dense"),
                                                (*NETS[2], "lanczos")])
def test_least_eigenvalue_gradient_matches_finite_differences(x64, sizes, seed, backend):
    c, _ = _net(sizes, seed)
    beta = 0.45
    f = jax.jit(lambda cc: mt.least_eigenvalue(cc, beta, backend=backend))
    g = jax.jit(jax.grad(f))(c)
    d = _direction(c)
    assert _rel(_dot(g, d), _fd(f, c, d, 1e-5)) < 1e-6
    fb = jax.jit(lambda b: mt.least_eigenvalue(c, b, backend=backend))
    gb = float(jax.jit(jax.grad(fb))(jnp.float64(beta)))
    assert _rel(gb, (float(fb(beta + 1e-5)) - float(fb(beta - 1e-5))) / 2e-5) < 1e-6
    # the value is the true λ_min (dense eigvalsh)
    np.testing.assert_allclose(float(f(c)), float(tap.least_eigenvalue(c, [beta])[0]), rtol=1e-10)


def test_hellmann_feynman_formula_single_entry(x64):
    """∂λ/∂W_ij = −2β v_i v_j + 2β² W_ij (v_i² + v_j²), checked on one entry of each block."""
    c, _ = _net((6, 9, 7, 5), 1)
    beta = 0.5
    pair = mt.least_eigenpair(c, beta)
    g, _ = mt.eigenvalue_derivatives(c, beta, pair.vector)
    f = lambda cc: float(tap.least_eigenvalue(cc, jnp.asarray([beta]))[0])
    for k, w in enumerate(c.weights):
        e = [jnp.zeros_like(x) for x in c.weights]
        e[k] = e[k].at[1, 2].set(1.0)
        fd = _fd(f, c, sm.LayeredCouplings(tuple(e)), 1e-5)
        assert _rel(float(g.weights[k][1, 2]), fd) < 1e-6


# --------------------------------------------------------------------------- log det
@pytest.mark.parametrize("sizes,seed", NETS)
def test_log_det_gradient_closed_form_and_beta(x64, sizes, seed):
    c, _ = _net(sizes, seed)
    beta = 0.3
    g = jax.grad(lambda cc: mt.log_det(cc, beta))(c)
    Ainv = np.linalg.inv(np.asarray(tap.tap_matrix(c, beta)))
    off = c.offsets
    for k, w in enumerate(c.weights):
        i0, j0 = off[k], off[k + 1]
        ni, nj = w.shape
        blk = Ainv[i0:i0 + ni, j0:j0 + nj]
        di, dj = np.diag(Ainv)[i0:i0 + ni], np.diag(Ainv)[j0:j0 + nj]
        want = -2 * beta * blk + 2 * beta ** 2 * np.asarray(w) * (di[:, None] + dj[None, :])
        np.testing.assert_allclose(np.asarray(g.weights[k]), want, rtol=1e-9, atol=1e-12)
    gb = float(jax.grad(lambda b: mt.log_det(c, b))(jnp.float64(beta)))
    A = np.asarray(tap.tap_matrix(c, beta))
    dA = -np.asarray(sm.dense_bond_matrix(c)) + 2 * beta * np.diag(np.asarray(sm.join_layers(sm.row_square_sums(c))))
    assert _rel(gb, float(np.trace(np.linalg.solve(A, dA)))) < 1e-9


# --------------------------------------------------------------------------- β_c, T_c
@pytest.mark.parametrize("sizes,seed,backend", [(*NETS[0], "dense"), (*NETS[1], "lanczos"),
                                                (*NETS[1], "recurrence"), (*NETS[2], "dense"),
                                                (*NETS[2], "recurrence")])
def test_melting_temperature_gradient_matches_finite_differences(x64, refs, sizes, seed, backend):
    _, c, ref = refs[sizes]
    lam = float(mt.reference_value(ref))
    T = jax.jit(lambda cc: mt.melting_temperature(cc, lam, beta_max=3 * float(ref.beta),
                                                  hint=float(ref.beta), rtol=1e-13, backend=backend))
    val, g = jax.jit(jax.value_and_grad(T))(c)
    assert np.isfinite(float(val))
    d = _direction(c)
    assert _rel(_dot(g, d), _fd(T, c, d, 1e-5)) < 1e-6
    # d T_c/dλ* from the threshold argument
    Tl = jax.jit(lambda l: mt.melting_temperature(c, l, beta_max=3 * float(ref.beta), rtol=1e-13,
                                                  backend=backend))
    gl = float(jax.jit(jax.grad(Tl))(jnp.float64(lam)))
    assert _rel(gl, (float(Tl(lam + 1e-6)) - float(Tl(lam - 1e-6))) / 2e-6) < 1e-6


@pytest.mark.parametrize("sizes,seed", NETS[1:])
def test_reference_weights_gradient_envelope_theorem(x64, refs, sizes, seed):
    """∂T_c/∂W_ref through λ* = min_β λ_min(β; W_ref); FD re-minimizes over β each time."""
    c0, c, ref = refs[sizes]
    Tg = lambda r0: mt.melting_temperature(c, mt.ReferenceLevel(r0, ref.beta), beta_max=3.0, rtol=1e-13)
    Tj = jax.jit(lambda r0, b: mt.melting_temperature(c, mt.ReferenceLevel(r0, b), beta_max=3.0, rtol=1e-13))
    Tfd = lambda r0: Tj(r0, mt.reference_level(r0, beta_max=3.0).beta)
    g = jax.jit(jax.grad(Tg))(c0)
    d = _direction(c0, seed=3)
    assert _rel(_dot(g, d), _fd(Tfd, c0, d, 1e-5)) < 1e-6
    # the envelope: λ* gradient equals the fixed-β* Hellmann–Feynman gradient, and ∂λ/∂β(β*) = 0
    pair = mt.least_eigenpair(c0, ref.beta)
    assert abs(float(mt.eigenvalue_derivatives(c0, ref.beta, pair.vector)[1])) < 1e-9


@pytest.mark.parametrize("sizes,seed", NETS)
def test_homogeneity_euler_identity(x64, refs, sizes, seed):
    """λ_min(β; sW) = λ_min(sβ; W) ⇒ T_c(sW) = s T_c(W) at fixed λ* ⇒ Σ W ⊙ ∂T_c/∂W = T_c.

    For MSK weights W = √C W̃ this is d T_c/dC = T_c/(2C), the C-dependence of eq. 17.
    """
    _, c, ref = refs[sizes]
    lam = float(mt.reference_value(ref))
    T = lambda cc: mt.melting_temperature(cc, lam, beta_max=3 * float(ref.beta), rtol=1e-13)
    val, g = jax.jit(jax.value_and_grad(T))(c)
    assert _rel(_dot(g, c), float(val)) < 1e-9
    # the analytic MSK formula has the same C-derivative: d log T_c / d log C = 1/2
    L = c.num_layers
    Tm = lambda C: jnp.sqrt(2 * C * jnp.cos(jnp.pi / (L + 2)))
    assert _rel(float(jax.grad(Tm)(2.0)) * 2.0 / float(Tm(2.0)), 0.5) < 1e-12
    Ts = lambda s: mt.melting_temperature(c.scale(s), lam, beta_max=3 * float(ref.beta), rtol=1e-13)
    assert _rel(float(jax.jit(jax.grad(Ts))(jnp.float64(1.0))), float(val)) < 1e-9


def test_jit_vmap_and_float32(x64, refs):
    sizes = (6, 9, 7, 5)
    _, c, ref = refs[sizes]
    lam, bmax = float(mt.reference_value(ref)), 3 * float(ref.beta)
    T = lambda cc: mt.melting_temperature(cc, lam, beta_max=bmax, rtol=1e-12)
    g = jax.grad(T)(c)
    grad_jit = jax.jit(jax.grad(T))
    gj = grad_jit(c)
    for a, b in zip(g.weights, gj.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9)
    stack = [spiked(c, s, jax.random.PRNGKey(i)) for i, s in enumerate((0.0, 0.5))]
    batched = sm.LayeredCouplings(tuple(jnp.stack(ws) for ws in zip(*(x.weights for x in stack))))
    gv = jax.vmap(jax.grad(T))(batched)
    for i, ci in enumerate(stack):
        gi = grad_jit(ci)
        for a, b in zip(gi.weights, gv.weights):
            np.testing.assert_allclose(np.asarray(b[i]), np.asarray(a), rtol=1e-8, atol=1e-12)
    # float32: same gradient to float32 accuracy, for each backend
    c32 = c.astype(jnp.float32)
    for backend in ("dense", "lanczos", "recurrence"):
        g32 = jax.jit(jax.grad(lambda cc: mt.melting_temperature(
            cc, jnp.float32(lam), beta_max=bmax, backend=backend)))(c32)
        for a, b in zip(g32.weights, g.weights):
            assert a.dtype == jnp.float32
            np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b),
                                       rtol=2e-3, atol=2e-3 * float(jnp.max(jnp.abs(b))))


def test_degenerate_least_eigenvalue_gives_nan(x64):
    """Two identical disconnected copies: every eigenvalue is double, ∂λ_min/∂W is undefined."""
    c, _ = _net((4, 5, 3), 4)
    ws = [jnp.block([[w, jnp.zeros_like(w)], [jnp.zeros_like(w), w]]) for w in c.weights]
    g = jax.jit(jax.grad(lambda w: mt.least_eigenvalue(w, 0.4)))(ws)
    assert all(bool(jnp.all(jnp.isnan(x))) for x in g)
    pair = mt.least_eigenpair(sm.couplings(ws), 0.4)
    assert float(pair.gap) < 1e-10
    gi = jax.jit(jax.grad(lambda w: mt.least_eigenvalue(w, 0.4, degenerate="ignore")))(ws)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in gi)


def test_no_crossing_is_nan_and_errors(x64, refs):
    c0, c, ref = refs[(6, 9, 7, 5)]
    T = lambda cc: mt.melting_temperature(cc, -5.0, beta_max=1.0)
    val, g = jax.jit(jax.value_and_grad(T))(c)
    assert np.isnan(float(val)) and all(bool(jnp.all(jnp.isnan(x))) for x in g.weights)
    with pytest.raises(ValueError, match="beta_max"):
        mt.melting_temperature(c, 0.1)
    with pytest.raises(ValueError, match="backend"):
        mt.critical_beta_fn(c, 0.1, 1.0, backend="qr")
    with pytest.raises(ValueError, match="W\\^\\(2\\)"):
        mt.melting_temperature([jnp.ones((3, 4)), jnp.ones((5, 2))], 0.1, beta_max=1.0)
    cp = mt.critical_point(c, float(mt.reference_value(ref)), 3.0, backend="recurrence")
    assert bool(cp.crossed) and float(cp.slope) < 0 and float(cp.gap) > 0 and float(cp.residual) < 1e-8


def test_attribution_maps(x64, refs):
    c0, c, ref = refs[(6, 9, 7, 5)]
    a = mt.attribution(c, ref, rtol=1e-12)
    T = mt.melting_temperature(c, ref, rtol=1e-12)
    np.testing.assert_allclose(float(a.T_c), float(T), rtol=1e-12)
    assert [p.shape for p in a.per_neuron] == [(n,) for n in c.sizes]
    total = sum(float(jnp.sum(p)) for p in a.per_weight)
    np.testing.assert_allclose(sum(float(jnp.sum(p)) for p in a.per_neuron), 2 * total, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(a.per_neuron[0]), np.asarray(a.per_weight[0].sum(1)), rtol=1e-12)


def test_recurrence_eigenpair_on_levels_factors_and_fallback(x64):
    """backend="recurrence": inverse iteration on levels.factorize/solve gives the dense eigenpair
    at β_c; where a leading pivot is not PD (shift far above λ_min) it falls back to Lanczos."""
    c0, c = _net(*NETS[2], spike=SPIKE[NETS[2][0]])
    ref = mt.reference_level(c0, beta_max=3.0)
    thr = float(mt.reference_value(ref))
    cp = mt.critical_point(c, thr, 3.0, backend="dense")
    b = jnp.asarray(float(cp.beta), c.dtype)
    dense = mt.least_eigenpair(c, b, "dense")
    rec = mt._eigenpair_recurrence(c, b, thr, 4, 4, 0)
    assert abs(float(rec.value - dense.value)) < 1e-12 and float(rec.residual) < 1e-10
    assert abs(abs(float(jnp.vdot(rec.vector, dense.vector))) - 1.0) < 1e-10
    # Rayleigh–Ritz on 4 vectors: λ2 from above (min-max), so the gap is an overestimate, here by 0.14 %
    assert float(dense.gap) - 1e-12 <= float(rec.gap) < 1.01 * float(dense.gap)
    from tapjax import levels
    assert not bool(levels.factorize(c, b, 50.0).earlier_ok)      # D_0 = diag(1 − 50 + β² r) < 0
    fb = mt._eigenpair_recurrence(c, b, 50.0, 4, 4, 0)
    assert abs(float(fb.value - dense.value)) < 1e-9


def test_attribute_run_on_a_tiny_run(x64, tmp_path):
    """attribute_run on two checkpoints: t = 0 is the reference (tangency: ∂λ_min/∂β ≈ 0 at β*),
    the later T_c is the library search's 1/β_c against the same λ*, and the maps add up."""
    from tapjax import checkpoints as ckpt
    from tapjax import recurrence
    c0, c1 = _net((8, 10, 10, 4), 4, spike=2.0)
    for step, c in ((0, c0), (10, c1)):
        params = {f"layer{k + 1}": {"kernel": np.asarray(w)} for k, w in enumerate(c.weights)}
        ckpt.save_checkpoint(str(tmp_path), params, {"step": step, "t": step / 10, "val_error": 0.5})
    ra = mt.attribute_run(str(tmp_path), backend="dense", reference_backend="dense", dtype=jnp.float64)
    assert ra.quantity == ["lambda_star", "T_c"] and list(ra.step) == [0, 10]
    assert ra.T_c[0] == pytest.approx(1.0 / ra.threshold_beta)
    assert abs(ra.slope[0]) < 1e-2 * abs(ra.slope[1]) and ra.slope[1] < 0
    r = recurrence.critical_beta_search(c1, ra.threshold, 3.0 * ra.threshold_beta, 1e-11)
    assert ra.T_c[1] == pytest.approx(1.0 / float(r.beta), rel=1e-9)
    for i in range(2):   # every bond touches two spins: Σ_neurons = 2 Σ_bonds
        assert sum(float(p[i].sum()) for p in ra.per_neuron) == pytest.approx(2 * ra.per_layer[i].sum())
    assert [p.shape for p in ra.per_neuron] == [(2, 8), (2, 10), (2, 10), (2, 4)]
