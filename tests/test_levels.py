"""tapjax.levels: block LDLᵀ solve, shift-invert edge eigenvalues, smooth margin, s_typ — vs dense."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import spiked
from tapjax import levels, msk, recurrence, spectra, spin_model, tap
from tapjax.spin_model import LayeredCouplings, random_couplings

# unequal first/last widths, a scanned run of square blocks, a lone square block, a 1-block net
SHAPES = [(7, 5, 5, 5, 3), (3, 8, 8, 2, 2, 5)]


def _dense(c, b):
    return np.asarray(tap.tap_matrix(c, b))


@pytest.mark.parametrize("sizes", SHAPES)
def test_factorize_solve_inertia_vs_dense(x64, sizes):
    c = random_couplings(jax.random.PRNGKey(len(sizes)), sizes, dtype=jnp.float64)
    N = sum(sizes)
    rhs = np.random.default_rng(0).normal(size=(N, 3))
    for b in (0.3, 1.2):
        A0 = _dense(c, b)
        ev = np.linalg.eigvalsh(A0)
        for s, kind in ((0.5 * ev[0], "cholesky"), (0.5 * (ev[2] + ev[3]), "eigh"),
                        (0.5 * (ev[0] + ev[1]), "eigh")):
            A = A0 - s * np.eye(N)
            f = levels.factorize(c, b, s, kind)
            assert int(f.num_negative) == int((ev < s).sum())
            assert bool(f.positive_definite) == bool(ev[0] > s)
            np.testing.assert_allclose(float(f.logdet), np.linalg.slogdet(A)[1], rtol=1e-10, atol=1e-10)
            x = np.asarray(levels.solve(f, jnp.asarray(rhs)))
            np.testing.assert_allclose(x, np.linalg.solve(A, rhs), rtol=1e-9, atol=1e-9)
            x1 = np.asarray(levels.solve(f, jnp.asarray(rhs[:, 0])))
            np.testing.assert_allclose(x1, x[:, 0], rtol=1e-12, atol=1e-12)


def test_cholesky_last_pivot_fallback_and_failed_pivot(x64):
    c = random_couplings(jax.random.PRNGKey(1), SHAPES[0], dtype=jnp.float64)
    b = 0.8
    A0 = _dense(c, b)
    ev = np.linalg.eigvalsh(A0)
    # just past λ_1 only the last pivot is indefinite (interlacing): the solve still works
    s = ev[0] + 1e-3 * (ev[1] - ev[0])
    f = levels.factorize(c, b, s)
    if bool(f.earlier_ok):
        assert not bool(f.positive_definite) and bool(f.last_eigh)
        rhs = np.ones(len(ev))
        np.testing.assert_allclose(np.asarray(levels.solve(f, jnp.asarray(rhs))),
                                   np.linalg.solve(A0 - s * np.eye(len(ev)), rhs), rtol=1e-8)
    # far past the crossing D_0 = diag(1 − σ + β² r_0) is not PD: NaN, not a wrong number
    f = levels.factorize(c, b, 1.0 + b * b * float(np.max(np.sum(np.asarray(c.weights[0]) ** 2, 1))) + 1.0)
    assert not bool(f.earlier_ok)
    assert np.all(np.isnan(np.asarray(levels.solve(f, jnp.ones(len(ev))))))


def test_factorize_float32():
    c = random_couplings(jax.random.PRNGKey(2), SHAPES[0], dtype=jnp.float32)
    f = levels.factorize(c, 0.5, 0.0)
    rhs = jnp.asarray(np.random.default_rng(1).normal(size=sum(SHAPES[0])), jnp.float32)
    x = levels.solve(f, rhs)
    assert x.dtype == jnp.float32
    r = tap.tap_matvec(c, 0.5, x) - rhs
    assert float(jnp.linalg.norm(r) / jnp.linalg.norm(rhs)) < 1e-5


LOWEST = [(7, 5, 5, 5, 3), (6, 4), (20, 12, 12, 12, 12, 12, 4)]


@pytest.mark.parametrize("sizes", LOWEST)
def test_lowest_eigenvalues_vs_dense(x64, sizes):
    c0 = random_couplings(jax.random.PRNGKey(3), sizes, dtype=jnp.float64)
    for c in (c0, spiked(c0, 3.0)):
        for b in (0.4, 1.0):
            ev = np.asarray(spectra.tap_spectrum(c, b))
            out = levels.lowest_eigenvalues(c, b, 3)
            lam, res = np.asarray(out.eigenvalues), np.asarray(out.residuals)
            np.testing.assert_allclose(lam, ev[:3], rtol=1e-8, atol=1e-10)
            assert np.all(np.abs(lam - ev[:3]) <= res + 1e-12)   # the stated error bound
            assert float(out.shift) < ev[0]


@pytest.mark.parametrize("sizes", [(64,) * 5, (100, 80, 80, 80, 20)])
def test_lowest_eigenvalues_block_path_vs_dense(x64, sizes):
    """With a shift and N ≥ BLOCK_MIN_SPINS·4: block solves of 4 right-hand sides; the stated
    residual bound holds, and the values agree with single-vector Lanczos."""
    c0 = random_couplings(jax.random.PRNGKey(8), sizes, dtype=jnp.float64)
    assert c0.num_spins >= levels.BLOCK_MIN_SPINS * 4
    for c, b in ((c0, 0.45), (spiked(c0, 3.0), 0.35)):
        ev = np.asarray(spectra.tap_spectrum(c, b))
        out = levels.lowest_eigenvalues(c, b, 2, shift=ev[0] + 0.3 * (ev[1] - ev[0]))  # backed off
        lam, res = np.asarray(out.eigenvalues), np.asarray(out.residuals)
        assert np.all(np.abs(lam - ev[:2]) <= res + 1e-12)             # the stated error bound
        np.testing.assert_allclose(lam, ev[:2], atol=1e-8 * ev[-1])    # s0 to ≪ the gap
        one = levels.lowest_eigenvalues(c, b, 2, shift=ev[0] - 0.01, block_size=1)
        np.testing.assert_allclose(lam, np.asarray(one.eigenvalues), atol=1e-8 * ev[-1])
        # no shift: round 1 single-vector from the Weyl bound, later rounds by blocks
        auto = levels.lowest_eigenvalues(c, b, 2)
        lam3, res3 = np.asarray(auto.eigenvalues), np.asarray(auto.residuals)
        assert np.all(np.abs(lam3 - ev[:2]) <= res3 + 1e-12) and float(auto.shift) < ev[0]
        np.testing.assert_allclose(lam3, ev[:2], atol=1e-8 * ev[-1])


def test_lowest_eigenvalues_shift_argument(x64):
    c = random_couplings(jax.random.PRNGKey(4), LOWEST[0], dtype=jnp.float64)
    ev = np.asarray(spectra.tap_spectrum(c, 0.7))
    for shift in (ev[0] - 1e-3, ev[0] + 0.3):   # good shift; a shift above λ_min is moved down
        out = levels.lowest_eigenvalues(c, 0.7, 2, shift=shift)
        np.testing.assert_allclose(np.asarray(out.eigenvalues), ev[:2], rtol=1e-8)
        assert float(out.shift) < ev[0]
    with pytest.raises(ValueError, match="k=0"):
        levels.lowest_eigenvalues(c, 0.7, 0)


def test_smooth_margin_contract(x64):
    sizes = LOWEST[2]
    c = random_couplings(jax.random.PRNGKey(5), sizes, dtype=jnp.float64)
    thr = 0.3   # λ_min(β) of this small net dips to ≈ 0.21 at β ≈ 0.5
    betas = np.linspace(0.05, 1.0, 24)
    lam = np.asarray(tap.least_eigenvalue_dense(c, jnp.asarray(betas)))
    g = np.asarray([float(levels.smooth_margin(c, b, thr)) for b in betas])
    pd = lam > thr
    fin = np.isfinite(g)
    assert np.all((g[fin] > 0) == pd[fin])
    assert np.all(fin[pd])          # NaN only past the crossing (an earlier pivot failed)
    # an upper bound while PD, and accurate near the crossing
    assert np.all(g[pd] >= lam[pd] - thr - 1e-10)
    near = fin & (np.abs(lam - thr) < 0.1)
    assert near.any()
    np.testing.assert_allclose(g[near], lam[near] - thr, atol=1e-3)
    # same sign contract as the last-pivot margin
    lpm = jax.jit(recurrence.last_pivot_margin)
    lp = np.asarray([float(lpm(c, b, thr)) for b in betas])
    both = fin & np.isfinite(lp)
    assert np.all((g[both] > 0) == (lp[both] > 0))


def test_critical_beta_smooth_brackets_bisection(x64):
    for sizes, scale in (((16,) * 9, 2.0),):
        c = random_couplings(jax.random.PRNGKey(6), sizes, scale, dtype=jnp.float64)
        thr, bmax = 0.3, 2 * msk.critical_beta(sizes, scale)  # small nets: λ_min dips to ≈ 0.15
        sm = levels.critical_beta_smooth(c, thr, bmax, 1e-6)
        bi = recurrence.critical_beta_search(c, thr, bmax, 1e-6, method="bisect")
        se = recurrence.critical_beta_search(c, thr, bmax, 1e-6)
        assert bool(sm.crossed) and bool(bi.crossed)
        assert float(sm.beta) - float(sm.lower) <= 1e-6 * float(sm.beta)
        # the two brackets overlap, and dense eigvalsh confirms the smooth one
        assert max(float(sm.lower), float(bi.lower)) <= min(float(sm.beta), float(bi.beta))
        lo_hi = np.asarray(tap.least_eigenvalue_dense(c, jnp.asarray([float(sm.lower), float(sm.beta)])))
        assert lo_hi[0] > thr >= lo_hi[1]
        assert int(sm.num_tests) < int(se.num_tests)
        assert int(sm.status) == int(recurrence.SearchStatus.OK)
        # the one search path: method="smooth" of critical_beta_search is this search
        via = recurrence.critical_beta_search(c, thr, bmax, 1e-6, method="smooth")
        assert float(via.beta) == float(sm.beta) and int(via.num_tests) == int(sm.num_tests)
    # no crossing below beta_max: crossed is False
    r = levels.critical_beta_smooth(c, thr, 0.2 * bmax)
    assert not bool(r.crossed) and int(r.status) == int(recurrence.SearchStatus.NO_CROSSING)
    # NaN couplings: no result, flagged
    bad = type(c)((c.weights[0].at[0, 0].set(jnp.nan),) + c.weights[1:])
    r = levels.critical_beta_smooth(bad, thr, bmax)
    assert not bool(r.crossed) and int(r.status) == int(recurrence.SearchStatus.NONFINITE)


def _dense_counts(ev, x):
    return np.searchsorted(ev, x).astype(float)


@pytest.mark.parametrize("sizes,strength", [((64,) * 5, 0.0), ((64,) * 5, 3.0),
                                            ((100, 64, 64, 64, 10), 0.0), ((32,) * 9, 3.0),
                                            ((200, 200), 0.0)])
def test_median_spacing_estimator_vs_dense(x64, sizes, strength):
    """The s_typ estimator on the exact counting function, K equal-count bins: within 7 %."""
    c = random_couplings(jax.random.PRNGKey(2), sizes, dtype=jnp.float64)
    if strength:
        c = spiked(c, strength)
    ev = np.asarray(spectra.tap_spectrum(c, msk.critical_beta(sizes, 2.0)))
    true = np.median(np.diff(ev))
    N = len(ev)
    for K in (16, 32):
        lo, hi = ev[0] - 1e-9, ev[-1] + 1e-9
        xs = np.linspace(lo, hi, K + 1)
        xq = levels._equal_count_points(xs, _dense_counts(ev, xs), N, K)
        xq[0], xq[-1] = lo, hi
        est = levels.median_spacing_from_counts(xq, _dense_counts(ev, xq))
        assert abs(est / true - 1) < levels.S_TYP_REL_ERROR["inertia"], (K, est / true - 1)


def test_median_spacing_flat_goe():
    """A flat density: s_typ = 0.9394 × the mean spacing (the Wigner-surmise median)."""
    x = np.linspace(0.0, 1.0, 11)
    counts = np.linspace(0.0, 1000.0, 11)
    np.testing.assert_allclose(levels.median_spacing_from_counts(x, counts),
                               np.sqrt(4 * np.log(2) / np.pi) * 1e-3, rtol=1e-9)
    with pytest.raises(ValueError, match="increase"):
        levels.median_spacing_from_counts(x[::-1], counts)


def test_counting_function_is_inertia(x64):
    c = random_couplings(jax.random.PRNGKey(7), SHAPES[0], dtype=jnp.float64)
    ev = np.asarray(spectra.tap_spectrum(c, 0.9))
    xs = 0.5 * (ev[1:] + ev[:-1])[::4]
    np.testing.assert_array_equal(np.asarray(levels.counting_function(c, 0.9, xs)),
                                  _dense_counts(ev, xs))


def test_level_spacing_methods_vs_dense(x64):
    sizes = (64,) * 5
    c = spiked(random_couplings(jax.random.PRNGKey(2), sizes, dtype=jnp.float64), 3.0)
    b = msk.critical_beta(sizes, 2.0)
    d, dinfo = levels.level_spacing(c, b, "dense")
    assert np.isclose(d, spectra.first_level_spacing(spectra.tap_spectrum(c, b)), rtol=1e-12)
    a, ainfo = levels.level_spacing(c, b, "auto")
    assert ainfo["method"] == "dense" and "AUTO_DENSE_MAX_N" in ainfo["auto_reason"] and a == d
    for m in ("inertia", "slq"):
        v, info = levels.level_spacing(c, b, m)
        assert info["method"] == m
        np.testing.assert_allclose(info["s0"], dinfo["s0"], rtol=1e-8)
        assert info["s0_error"] < 1e-8 * info["s0"]
        assert abs(info["s_typ"] / dinfo["s_typ"] - 1) < info["s_typ_rel_error"]
        assert abs(v / d - 1) < 1.5 * info["s_typ_rel_error"]
    with pytest.raises(ValueError, match="method='eig'"):
        levels.level_spacing(c, b, "eig")


def test_tap_levels_float64_eigenvalues_of_a_float32_net(x64):
    """Level statistics need float64 eigenvalues even for float32 weights: the spacing of a
    float32 net's matrix from spectra.tap_levels stays within 2e-5 of the float64 net's (measured
    ≤ 3.6e-6), where float32 solvers were off by up to 7e-5 (jnp) and 4.4e-4 (scipy ssyevd)."""
    sizes = (196, 32, 32, 10)
    b = msk.critical_beta(sizes, 2.0)
    for k in (0, 1):
        c = spiked(random_couplings(jax.random.PRNGKey(k), sizes, dtype=jnp.float64), 3.0)
        ev = np.linalg.eigvalsh(_dense(c, b))
        np.testing.assert_allclose(spectra.tap_levels(c, b), ev, rtol=0, atol=1e-12)
        c32 = LayeredCouplings(tuple(w.astype(jnp.float32) for w in c.weights))
        lv = spectra.tap_levels(c32, b)
        assert lv.dtype == np.float64
        assert spectra.first_level_spacing(lv) == pytest.approx(spectra.first_level_spacing(ev), rel=2e-5)
        jv = np.linalg.eigvalsh(np.asarray(spin_model.dense_bond_matrix(c32), np.float64))
        np.testing.assert_allclose(spectra.bond_levels(c32), jv, rtol=0, atol=1e-12)
    bad = LayeredCouplings((c32.weights[0].at[0, 0].set(jnp.nan),) + c32.weights[1:])
    assert np.isnan(spectra.tap_levels(bad, b)).all() and np.isnan(spectra.bond_levels(bad)).all()
