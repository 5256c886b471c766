import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import spiked
from tapjax import recurrence, spectra, tap
from tapjax.spin_model import dense_bond_matrix, random_couplings

SIZES = [(7, 5, 5, 5, 3), (6, 4), (3, 8, 8, 2, 2, 5), (10, 10, 10), (12, 9, 9, 9, 9, 9, 4)]


def test_tap_matrix_is_eq23(x64):
    c = random_couplings(jax.random.PRNGKey(0), (6, 5, 4), dtype=jnp.float64)
    J = np.asarray(dense_bond_matrix(c))
    b = 0.7
    M = b * J - b * b * np.diag((J ** 2).sum(1))
    np.testing.assert_allclose(np.asarray(tap.tap_matrix(c, b)), np.eye(15) - M, rtol=1e-13)
    v = np.random.default_rng(1).normal(size=15)
    np.testing.assert_allclose(np.asarray(tap.tap_matvec(c, b, jnp.asarray(v))), (np.eye(15) - M) @ v, rtol=1e-12)


@pytest.mark.parametrize("sizes", SIZES)
def test_recurrence_logdet_inertia_pd_vs_dense(x64, sizes):
    c = random_couplings(jax.random.PRNGKey(len(sizes)), sizes, dtype=jnp.float64)
    for b in (0.2, 0.8, 1.6):
        A = np.asarray(tap.tap_matrix(c, b))
        ev = np.linalg.eigvalsh(A)
        for s in (0.0, 0.5 * (ev[0] + ev[1]), 0.5 * (ev[3] + ev[4]), ev[len(ev) // 2] + 1e-3):
            r = recurrence.recurrence(c, b, s)
            sign, ld = np.linalg.slogdet(A - s * np.eye(len(A)))
            np.testing.assert_allclose(float(r.logdet), ld, rtol=1e-10, atol=1e-9)
            assert int(r.num_negative) == int((ev < s).sum())
            assert int(recurrence.inertia(c, b, s)) == int((ev < s).sum())
            assert bool(recurrence.positive_definite(c, b, s)) == bool(ev[0] > s)
            if ev[0] > s:
                np.testing.assert_allclose(float(recurrence.logdet(c, b, s)), ld, rtol=1e-10)


def test_least_eigenvalue_by_inertia_bisection(x64):
    c = random_couplings(jax.random.PRNGKey(3), (20, 15, 15, 6), dtype=jnp.float64)
    lam = recurrence.least_eigenvalue_bisect(c, 0.9, -5.0, 1.0, tol=1e-10)
    assert lam == pytest.approx(float(np.linalg.eigvalsh(np.asarray(tap.tap_matrix(c, 0.9)))[0]), abs=1e-9)


def test_dense_backend_vs_eigvalsh_and_lanczos(x64):
    c = random_couplings(jax.random.PRNGKey(1), (60, 40, 40, 40, 10), dtype=jnp.float64)
    betas = np.linspace(0.1, 1.5, 9)
    ref = np.array([np.linalg.eigvalsh(np.asarray(tap.tap_matrix(c, b)))[0] for b in betas])
    np.testing.assert_allclose(np.asarray(tap.least_eigenvalue(c, betas, "dense")), ref, rtol=1e-11)
    lam, err = tap.least_eigenvalue_lanczos(c, jnp.asarray(betas), num_iter=120)
    np.testing.assert_allclose(np.asarray(lam), ref, atol=1e-8)
    assert np.all(np.asarray(err) < 1e-6)


def test_lanczos_float32_paper_size_vs_dense():
    c = random_couplings(jax.random.PRNGKey(4), (784, 512, 512, 512, 10))
    betas = jnp.array([0.3, 0.57, 0.9])
    dense = np.asarray(tap.least_eigenvalue(c, betas, "dense"))
    lz = np.asarray(tap.least_eigenvalue(c, betas, "lanczos", num_iter=120))
    np.testing.assert_allclose(lz, dense, atol=2e-5)


def test_bisection_matches_grid_within_one_spacing():
    c0 = random_couplings(jax.random.PRNGKey(2), (60, 40, 40, 40, 10))
    betas = np.linspace(0, 1.4, 71)[1:]
    thr = tap.reference_threshold(c0, betas, "dense")
    # reference net: its β_c is the curve's minimum, near the analytic value
    assert thr.value < 0.2
    for strength in (2.0, 3.0, 4.0):
        c = spiked(c0, strength)
        b_grid = tap.critical_beta_grid(c, betas, thr.value, "dense")
        b_bis = recurrence.critical_beta_bisect(c, thr.value, 1.4, rtol=1e-5)
        assert b_bis <= b_grid + 1e-6 and b_grid - b_bis <= (betas[1] - betas[0]) + 1e-6, (b_grid, b_bis)
        lam = float(tap.least_eigenvalue(c, np.array([b_bis]), "dense")[0])
        assert lam == pytest.approx(thr.value, abs=2e-3)
        assert b_bis < thr.beta                   # training-like spikes raise T_c


@pytest.mark.parametrize("sizes", [(60, 40, 40, 40, 10), (24,) * 9])
def test_secant_and_bisect_find_the_same_crossing(x64, sizes):
    """Both refinements land on the first β where λ_min(I − M) = λ* (dense eigvalsh check),
    and the secant on the last-pivot margin needs fewer recurrence evaluations on a shallow net."""
    c0 = random_couplings(jax.random.PRNGKey(2), sizes, dtype=jnp.float64)
    betas = np.linspace(0, 1.4, 71)[1:]
    thr = tap.reference_threshold(c0, betas, "dense")
    for strength in (2.0, 3.0):
        c = spiked(c0, strength)
        res = {m: recurrence.critical_beta_search(c, thr.value, 1.4, 1e-7, method=m)
               for m in ("secant", "bisect")}
        for m, r in res.items():
            assert bool(r.crossed) and float(r.lower) < float(r.beta) <= float(r.lower) * (1 + 1e-7) + 1e-15
            lam_hi, lam_lo = np.asarray(tap.least_eigenvalue(c, np.array([float(r.beta), float(r.lower)]), "dense"))
            assert lam_hi <= thr.value < lam_lo, (m, lam_hi, lam_lo)  # a true bracket of the crossing
        assert float(res["secant"].beta) == pytest.approx(float(res["bisect"].beta), rel=2e-7)
        if len(sizes) == 5:
            assert int(res["secant"].num_tests) < int(res["bisect"].num_tests)


def test_last_pivot_margin_has_the_sign_of_the_least_eigenvalue(x64):
    c = spiked(random_couplings(jax.random.PRNGKey(3), (20, 15, 15, 6), dtype=jnp.float64), 2.5)
    shift = 0.05
    for b in np.linspace(0.05, 0.8, 16):
        lam = float(tap.least_eigenvalue(c, np.array([b]), "dense")[0])
        g = float(recurrence.last_pivot_margin(c, b, shift))
        if np.isnan(g):  # an earlier pivot failed: only possible past the crossing (interlacing)
            assert lam < shift
        else:
            assert (g > 0) == (lam > shift), (b, g, lam)


def test_hint_finds_a_dip_narrower_than_the_scan(x64):
    """λ_min of the reference net touches its own minimum λ* at β* only: with a threshold a hair
    above λ* the dip below it is far narrower than a 4-point scan, which misses it."""
    c = random_couplings(jax.random.PRNGKey(2), (60, 40, 40, 40, 10), dtype=jnp.float64)
    thr = tap.reference_threshold(c, np.linspace(0, 1.4, 71)[1:], "dense")
    level = thr.value + 1e-4
    with pytest.raises(tap.NoCrossingError, match="pass hint"):
        recurrence.critical_beta(c, level, 1.4, num_scan=4)
    b = recurrence.critical_beta(c, level, 1.4, rtol=1e-8, num_scan=4, hint=thr.beta)
    assert b < thr.beta
    assert float(tap.least_eigenvalue(c, np.array([b]), "dense")[0]) == pytest.approx(level, abs=1e-7)


def test_first_crossing_not_last():
    """λ_min dips below threshold twice; the FIRST crossing must be reported."""
    curve = np.array([1.0, 0.6, 0.2, 0.05, 0.3, 0.6, 0.01, 0.5])
    assert tap.first_crossing_index(curve, 0.1) == 3
    with pytest.raises(tap.NoCrossingError, match="never reaches the threshold 0.001"):
        tap.first_crossing_index(curve, 0.001)


def test_no_crossing_errors():
    c = random_couplings(jax.random.PRNGKey(0), (30, 20, 10))
    with pytest.raises(tap.NoCrossingError, match="raise beta_max"):
        recurrence.critical_beta_bisect(c, -0.5, 0.2)
    with pytest.raises(tap.NoCrossingError, match="raise beta_max"):
        recurrence.critical_beta(c, -0.5, 0.2)
    with pytest.raises(ValueError, match="method"):
        recurrence.critical_beta(c, 0.1, 0.2, method="newton")
    with pytest.raises(ValueError, match="threshold=nan is not finite"):
        recurrence.critical_beta(c, float("nan"), 0.2)
    with pytest.raises(ValueError, match="beta_max > 0"):
        recurrence.critical_beta(c, 0.1, -1.0)
    with pytest.raises(ValueError, match="backend"):
        tap.least_eigenvalue(c, [0.1], "magic")


def test_spectra_observables(x64):
    c = random_couplings(jax.random.PRNGKey(0), (40, 30, 30, 5), dtype=jnp.float64)
    J = np.asarray(dense_bond_matrix(c))
    ev = np.linalg.eigvalsh(J)
    assert float(spectra.lambda_max_bond(c, "dense")) == pytest.approx(ev[-1], rel=1e-12)
    assert float(spectra.lambda_max_bond(c, "lanczos", num_iter=80)) == pytest.approx(ev[-1], rel=1e-8)
    assert float(spectra.lambda_min_r(c)) == pytest.approx((J ** 2).sum(1).min(), rel=1e-12)
    assert spectra.first_level_spacing([0.0, 3.0, 4.0, 5.0, 6.0]) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="at least 3"):
        spectra.first_level_spacing([1.0, 2.0])
