"""Numerical reliability of the engine: huge/tiny weights, Lanczos breakdown, bad inputs, and
bit-identity of the named-state T_c search with the tuple-state version it replaced."""

import importlib.util
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import spiked
from tapjax import errors, recurrence, spectra, tap
from tapjax.spin_model import (LayeredCouplings, coupling_scale, dense_bond_matrix,
                               random_couplings)

SIZES = (20, 15, 15, 6)


def _net(dtype=jnp.float32, strength=2.5):
    return spiked(random_couplings(jax.random.PRNGKey(3), SIZES, dtype=dtype), strength)


def _as(c, scale, dtype):
    return LayeredCouplings(tuple(jnp.asarray(np.asarray(w, np.float64) * scale, dtype) for w in c.weights))


@pytest.mark.parametrize("scale", [1e20, 1e-20, 2.0 ** 70 * 3])
def test_huge_and_tiny_weights_vs_float64_reference(scale):
    """β_c(sW) = β_c(W)/s (eqs. 23–25): float32 on W·s against float64 on W, divided by s.
    Unscaled, Σw² overflows (1e40) or underflows (1e-40) in float32."""
    c64 = _net()   # float32 weights; the reference runs on exactly these values in float64
    with jax.enable_x64(True):
        ref = recurrence.critical_beta(_as(c64, 1.0, jnp.float64), 0.1, 1.5, rtol=1e-8)
        lam_ref = np.asarray(tap.least_eigenvalue(_as(c64, 1.0, jnp.float64), [0.2, 0.4]))
        lmax_ref = float(spectra.lambda_max_bond(_as(c64, 1.0, jnp.float64), "dense"))
        rmin_ref = float(spectra.lambda_min_r(_as(c64, 1.0, jnp.float64)))
    cs = _as(c64, scale, jnp.float32)
    got = recurrence.critical_beta(cs, 0.1, 1.5 / scale, rtol=1e-5)
    assert got * scale == pytest.approx(ref, rel=2e-4)
    for backend in ("dense", "lanczos"):
        lam = np.asarray(tap.least_eigenvalue(cs, np.array([0.2, 0.4]) / scale, backend))
        np.testing.assert_allclose(lam, lam_ref, atol=3e-5)
    assert float(spectra.lambda_max_bond(cs, "lanczos")) / scale == pytest.approx(lmax_ref, rel=1e-5)
    assert float(spectra.lambda_max_bond(cs, "dense")) / scale == pytest.approx(lmax_ref, rel=1e-5)
    if 1e-15 < scale < 1e15:   # λ_min(R) itself ~ s² must be representable in float32
        assert float(spectra.lambda_min_r(cs)) / scale ** 2 == pytest.approx(rmin_ref, rel=1e-5)
    thr = tap.reference_threshold(cs, np.linspace(0.05, 1.5, 30) / scale)
    with jax.enable_x64(True):
        thr64 = tap.reference_threshold(_as(c64, 1.0, jnp.float64), np.linspace(0.05, 1.5, 30))
    assert thr.value == pytest.approx(thr64.value, abs=1e-4)
    assert thr.beta * scale == pytest.approx(thr64.beta, rel=1e-3)


def test_one_huge_entry_closed_form():
    """One bond w = 1e30 dominates: its 2×2 block of I − M has λ_min = 1 + x² − x (x = βw), so
    λ_min = λ* first at x = (1 − √(4λ* − 3))/2; every other spin sits at λ ≈ 1."""
    ws = [np.array(w) for w in random_couplings(jax.random.PRNGKey(0), (30, 20, 10)).weights]
    ws[1][3, 4] = 1e30
    lam_star = 0.8
    x = (1 - np.sqrt(4 * lam_star - 3)) / 2
    assert recurrence.critical_beta(ws, lam_star, 2e-30, rtol=1e-6) == pytest.approx(x / 1e30, rel=1e-5)
    # the 2×2 block never goes below 3/4: no crossing for λ* < 3/4 — an error, never 0.0
    with pytest.raises(errors.NoCrossingError):
        recurrence.critical_beta(ws, 0.3, 2e-30)
    # beta_max chosen for ordinary weights: β²Σw² is not representable over the scan
    with pytest.raises(errors.NoCrossingError, match="lower beta_max"):
        recurrence.critical_beta(ws, lam_star, 2.0)
    r = recurrence.critical_beta_search(LayeredCouplings(tuple(map(jnp.asarray, ws))), lam_star, 2.0)
    assert not bool(r.crossed) and int(r.status) == recurrence.SearchStatus.OUT_OF_RANGE


def test_subnormal_couplings_are_refused():
    c = _as(_net(), 1e-41, jnp.float32)     # subnormal in float32
    with pytest.raises(errors.CouplingsError, match="subnormal.*float64"):
        recurrence.critical_beta(c, 0.1, 1.0)


def test_coupling_scale_is_an_exact_power_of_two():
    c = _as(_net(), 1e20, jnp.float32)
    s = float(coupling_scale(c))
    m = max(float(jnp.max(jnp.abs(w))) for w in c.weights)
    assert np.log2(s) == int(np.log2(s)) and 0.5 <= m / s < 1
    assert float(coupling_scale(LayeredCouplings((jnp.zeros((3, 2)),)))) == 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_coupling_scale_traced_equals_frexp_rule_over_the_whole_range(x64, dtype):
    """The in-program scale (exponent bit mask) is numpy's frexp rule for every binade,
    zero/subnormal/non-finite maxima → 1 and max ≥ 2^emax → inf, per batch element."""
    fi = np.finfo(dtype)
    with np.errstate(over="ignore"):
        m = np.array([np.ldexp(dtype(f), e) for e in range(fi.minexp, fi.maxexp)
                      for f in (1.0, 1.5, np.nextafter(dtype(2), dtype(0)))]
                     + [fi.max, 0.0, fi.smallest_subnormal, np.inf, np.nan], dtype)
    w = np.zeros((len(m), 2, 3), dtype)
    w[:, 1, 2] = -m
    c = LayeredCouplings((jnp.asarray(w), jnp.zeros((len(m), 3, 1), dtype)))
    traced = np.asarray(jax.jit(coupling_scale)(c))
    normal = np.isfinite(m) & (m >= fi.tiny)
    with np.errstate(over="ignore"):
        expect = np.where(normal, np.ldexp(np.ones_like(m), np.frexp(np.where(normal, m, 0))[1]), 1)
    np.testing.assert_array_equal(traced, expect.astype(dtype))
    np.testing.assert_array_equal(np.asarray(coupling_scale(c)), traced)   # host path, same value


def test_unvalidated_nan_couplings_give_no_result():
    c = _net()
    bad = LayeredCouplings((c.weights[0], c.weights[1].at[2, 3].set(jnp.nan), *c.weights[2:]))
    r = recurrence.critical_beta_search(bad, 0.1, 1.5)
    assert not bool(r.crossed) and np.isnan(float(r.beta)) and int(r.status) == recurrence.SearchStatus.NONFINITE
    with pytest.raises(ValueError, match=r"W\^\(2\) contains NaN"):
        recurrence.critical_beta(bad, 0.1, 1.5)
    with pytest.raises(ValueError, match=r"W\^\(2\) contains NaN"):
        tap.reference_threshold(bad, np.linspace(0.1, 1.0, 5))
    with pytest.raises(ValueError, match=r"W\^\(2\)"):
        tap.critical_beta_grid(bad, np.linspace(0.1, 1.0, 5), 0.1)
    # array-valued observables: a visible NaN (LAPACK alone returns finite garbage here)
    assert np.isnan(np.asarray(tap.least_eigenvalue(bad, [0.3]))).all()
    assert np.isnan(np.asarray(tap.least_eigenvalue(bad, [0.3], "lanczos"))).all()
    assert np.isnan(float(spectra.lambda_max_bond(bad, "dense")))
    assert np.isnan(float(spectra.lambda_max_bond(bad, "lanczos")))
    assert np.isnan(np.asarray(spectra.tap_spectrum(bad, 0.3))).all()
    # a stack with one corrupt checkpoint: only that one is "no result"
    stack = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), c, bad)
    rs = jax.lax.map(lambda cc: recurrence.critical_beta_search(cc, 0.1, 1.5), stack)
    assert np.asarray(rs.crossed).tolist() == [True, False]


@pytest.mark.parametrize("half", [jnp.float16, jnp.bfloat16])
def test_half_precision_is_computed_in_float32(half):
    ws = [np.asarray(w.astype(half)) for w in _net().weights]
    up = LayeredCouplings(tuple(jnp.asarray(w, jnp.float32) for w in ws))
    assert recurrence.critical_beta(ws, 0.1, 1.5) == recurrence.critical_beta(up, 0.1, 1.5)
    half_c = LayeredCouplings(tuple(jnp.asarray(w) for w in ws))
    np.testing.assert_array_equal(np.asarray(tap.least_eigenvalue(half_c, [0.3])),
                                  np.asarray(tap.least_eigenvalue(up, [0.3])))
    assert float(spectra.lambda_max_bond(half_c)) == float(spectra.lambda_max_bond(up))


def test_lists_and_tuples_are_couplings():
    c = _net()
    ref = recurrence.critical_beta(c, 0.1, 1.5)
    assert recurrence.critical_beta(list(c.weights), 0.1, 1.5) == ref
    assert recurrence.critical_beta([np.asarray(w) for w in c.weights], 0.1, 1.5) == ref
    assert float(tap.least_eigenvalue(tuple(c.weights), [0.3])[0]) == float(tap.least_eigenvalue(c, [0.3])[0])
    assert float(spectra.lambda_max_bond(list(c.weights))) == float(spectra.lambda_max_bond(c))
    assert bool(recurrence.positive_definite(list(c.weights), 0.1))
    with pytest.raises(TypeError, match="expected LayeredCouplings or a list"):
        recurrence.critical_beta("weights.npz", 0.1, 1.5)
    with pytest.raises(TypeError, match="couplings"):
        tap.least_eigenvalue(42, [0.3])


def test_max_iter_is_reported_not_returned():
    c = _net()
    r = recurrence.critical_beta_search(c, 0.1, 1.5, 1e-6, max_iter=1)
    assert bool(r.crossed) and int(r.status) == recurrence.SearchStatus.MAX_ITER
    with pytest.raises(errors.ConvergenceError, match="raise max_iter"):
        recurrence.critical_beta(c, 0.1, 1.5, rtol=1e-6, max_iter=1)


@pytest.mark.parametrize("method", ["secant", "bisect"])
def test_crossing_below_the_first_scan_point(x64, method):
    """One scan point past the crossing: the refinement starts from [0, β_max] and steps down."""
    c = _net(jnp.float64)
    ref = recurrence.critical_beta(c, 0.1, 1.5, rtol=1e-9)
    got = recurrence.critical_beta_search(c, 0.1, 1.5 * ref, 1e-9, num_scan=1, method=method)
    assert int(got.status) == 0 and float(got.beta) == pytest.approx(ref, rel=2e-9)
    lam_hi, lam_lo = np.asarray(tap.least_eigenvalue(c, [float(got.beta), float(got.lower)]))
    assert lam_hi <= 0.1 < lam_lo


def test_lanczos_small_and_low_rank_nets_match_dense(x64):
    # 784-16-16-10 float32 with the default 120 steps: J has rank ≤ 84 (issue 13: NaN before)
    c = random_couplings(jax.random.PRNGKey(1), (784, 16, 16, 10))
    dense = float(spectra.lambda_max_bond(c, "dense"))
    assert float(spectra.lambda_max_bond(c, "lanczos", num_iter=120)) == pytest.approx(dense, rel=1e-5)
    assert float(spectra.lambda_max_bond(c)) == pytest.approx(dense, rel=1e-6)        # auto → dense
    # N = 13 < num_iter = 120, float64: λ_min(I − M) and λ_max(J) against eigvalsh
    c = random_couplings(jax.random.PRNGKey(2), (6, 4, 3), dtype=jnp.float64)
    betas = np.array([0.3, 0.8, 1.5])
    ref = [np.linalg.eigvalsh(np.asarray(tap.tap_matrix(c, b)))[0] for b in betas]
    lam, err = tap.least_eigenvalue_lanczos(c, jnp.asarray(betas), num_iter=120)
    np.testing.assert_allclose(np.asarray(lam), ref, atol=1e-11)
    assert np.all(np.asarray(err) < 1e-10)
    np.testing.assert_allclose(np.asarray(tap.least_eigenvalue(c, betas, "auto")), ref, atol=1e-12)
    # rank-one blocks: J has at most 7 distinct eigenvalues, far below num_iter
    rng = np.random.default_rng(0)
    ws = [np.outer(rng.normal(size=a), rng.normal(size=b)) for a, b in ((50, 40), (40, 30), (30, 20))]
    c = LayeredCouplings(tuple(map(jnp.asarray, ws)))
    ev = np.linalg.eigvalsh(np.asarray(dense_bond_matrix(c)))
    assert float(spectra.lambda_max_bond(c, "lanczos", num_iter=100)) == pytest.approx(ev[-1], rel=1e-11)


def _old_recurrence():
    try:
        src = subprocess.run(["git", "show", "2dd31d1:tapjax/recurrence.py"], capture_output=True,
                             text=True, check=True, cwd=__file__.rsplit("/tests/", 1)[0]).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git history with commit 2dd31d1 not available")
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("_recurrence_tuple_state", f.name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("sizes", [(30, 20, 20, 5), (12,) * 6])
def test_named_state_search_is_bit_identical_to_tuple_state(x64, sizes):
    old = _old_recurrence()
    c0 = random_couplings(jax.random.PRNGKey(2), sizes, dtype=jnp.float64)
    thr = tap.reference_threshold(c0, np.linspace(0, 1.4, 29)[1:]).value
    for strength in (2.0, 3.0):
        c = spiked(c0, strength)
        for method in ("secant", "bisect"):
            for hint in (None, 0.5):
                a = old.critical_beta_search(c, thr, 1.4, 1e-7, hint, method=method)
                b = recurrence.critical_beta_search(c, thr, 1.4, 1e-7, hint, method=method)
                assert bool(b.crossed)
                for x, y in zip(a, b[:4]):
                    assert np.asarray(x).tobytes() == np.asarray(y).tobytes(), (strength, method, hint)
