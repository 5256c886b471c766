"""Power-law fits and break detection (tapjax.fits) on synthetic data with known answers."""

import math

import numpy as np
import pytest

from tapjax import fits


def broken(t, t_b, a1, a2, amp=2.0):
    return amp * np.where(t < t_b, (t / t_b) ** a1, (t / t_b) ** a2)


def noisy(y, sigma, seed):
    return y * np.exp(sigma * np.random.default_rng(seed).normal(size=y.shape))


@pytest.mark.parametrize("p,dof,expected", [
    (0.975, 1, 12.706204736174705), (0.975, 5, 2.570581835636314), (0.95, 10, 1.8124611228107335),
    (0.995, 30, 2.749995653567264), (0.5, 7, 0.0), (0.025, 5, -2.570581835636314)])
def test_student_t_quantile_matches_tables(p, dof, expected):
    np.testing.assert_allclose(fits.student_t_quantile(p, dof), expected, atol=1e-8)


def test_student_t_cdf_is_a_cdf():
    xs = np.linspace(-6, 6, 49)
    c = np.array([fits.student_t_cdf(x, 4) for x in xs])
    assert np.all(np.diff(c) > 0) and c[0] > 0 and c[-1] < 1
    np.testing.assert_allclose(c + c[::-1], 1.0, atol=1e-12)


def _betainc_continued_fraction(a, b, x):
    """The hand-written regularized incomplete beta tapjax.fits used before scipy (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc_continued_fraction(b, a, 1.0 - x)
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(lbeta + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(1.0 - c * d) < 1e-14:
            break
    return front * (f - 1.0)


def _old_t_cdf(x, dof):
    tail = 0.5 * _betainc_continued_fraction(0.5 * dof, 0.5, dof / (dof + x * x))
    return 1.0 - tail if x >= 0 else tail


def _old_t_quantile(p, dof):
    if p < 0.5:
        return -_old_t_quantile(1.0 - p, dof)
    lo, hi = 0.0, 1.0
    while _old_t_cdf(hi, dof) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _old_t_cdf(mid, dof) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@pytest.mark.parametrize("dof", [1, 2, 3, 5, 7.5, 10, 28, 60, 200])
def test_student_t_from_scipy_equals_the_former_continued_fraction(dof):
    """scipy.special replaces the hand-written Student t with the same numbers (to 1e-10)."""
    xs = np.linspace(-8.0, 8.0, 81)
    np.testing.assert_allclose([fits.student_t_cdf(x, dof) for x in xs],
                               [_old_t_cdf(x, dof) for x in xs], rtol=0, atol=1e-10)
    for p in (0.005, 0.025, 0.05, 0.3, 0.5, 0.8, 0.95, 0.975, 0.995):
        np.testing.assert_allclose(fits.student_t_quantile(p, dof), _old_t_quantile(p, dof),
                                   rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="p=1.5"):
        fits.student_t_quantile(1.5, dof)
    with pytest.raises(ValueError, match="dof=0"):
        fits.student_t_quantile(0.5, 0)


def test_broken_power_law_fit_alias_is_deprecated():
    with pytest.warns(DeprecationWarning, match="PiecewisePowerLawFit"):
        assert fits.BrokenPowerLawFit is fits.PiecewisePowerLawFit


def test_single_power_law_exact():
    t = np.logspace(-2, 2, 30)
    f = fits.fit_power_law(t, 3.0 * t ** 0.37)
    np.testing.assert_allclose([f.exponent, f.prefactor], [0.37, 3.0], rtol=1e-10)
    assert f.exponent_ci[0] <= 0.37 <= f.exponent_ci[1]
    np.testing.assert_allclose(f.predict(t), 3.0 * t ** 0.37, rtol=1e-10)


def test_power_law_ignores_nonpositive_and_nan():
    t = np.array([0.0, 0.5, 1, 2, 4, np.nan, 8])
    y = np.array([1.0, 0.5 ** 0.5, 1, 2 ** 0.5, 2, 3.0, 8 ** 0.5])
    f = fits.fit_power_law(t, y)
    assert f.n == 5
    np.testing.assert_allclose(f.exponent, 0.5, rtol=1e-10)


def test_broken_exact_recovers_break_and_exponents():
    t = np.logspace(-1.8, 2, 45)
    f = fits.fit_broken_power_law(t, broken(t, 4.0, 0.6, 0.15), bootstrap=0, grid_size=2000)
    np.testing.assert_allclose(f.t_break, 4.0, rtol=0.01)
    np.testing.assert_allclose(f.exponents, (0.6, 0.15), atol=2e-3)
    np.testing.assert_allclose(f.predict(t), broken(t, 4.0, 0.6, 0.15), rtol=1e-2)
    assert f.break_detected and f.exponent_drop_significant


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("t_b,a1,a2", [(3.0, 0.5, 0.1), (0.3, 0.8, 0.3), (20.0, 0.25, 0.05)])
def test_broken_noisy_break_within_bootstrap_ci(seed, t_b, a1, a2):
    t = np.logspace(-1.8, 2, 40)
    y = noisy(broken(t, t_b, a1, a2), 0.02, seed)
    f = fits.fit_broken_power_law(t, y, bootstrap=300, seed=seed)
    lo, hi = f.t_break_ci
    assert lo <= t_b <= hi, (f.t_break, f.t_break_ci)
    assert abs(np.log(f.t_break / t_b)) < np.log(1.6)
    for a, (clo, chi) in zip((a1, a2), f.bootstrap_exponent_ci):
        assert clo - 0.02 <= a <= chi + 0.02
    assert f.break_detected
    assert f.exponent_drop_significant
    assert f.n_before >= 3 and f.n_after >= 3


@pytest.mark.parametrize("seed", range(5))
def test_no_break_in_a_single_power_law(seed):
    t = np.logspace(-1.8, 2, 40)
    y = noisy(2.0 * t ** 0.3, 0.03, seed)
    f = fits.fit_broken_power_law(t, y, bootstrap=200, seed=seed)
    assert not f.break_detected, f.delta_bic
    assert not f.exponent_drop_significant
    lo, hi = f.single.exponent_ci
    assert lo <= 0.3 <= hi


def test_covariance_ci_coverage_is_roughly_nominal():
    t = np.logspace(-1.5, 2, 30)
    hits = 0
    for seed in range(200):
        f = fits.fit_power_law(t, noisy(t ** 0.4, 0.1, seed))
        hits += f.exponent_ci[0] <= 0.4 <= f.exponent_ci[1]
    assert 0.88 <= hits / 200 <= 0.99


def test_broken_fit_rejects_too_few_points():
    with pytest.raises(ValueError, match="at least"):
        fits.fit_broken_power_law([1, 2, 3, 4], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="at least 3"):
        fits.fit_power_law([1, 2], [1, 2])


def test_min_points_respected():
    t = np.logspace(0, 1, 12)
    y = broken(t, t[1] * 1.01, 1.0, 0.1)      # true break near the second point
    f = fits.fit_broken_power_law(t, y, min_points=4, bootstrap=0)
    assert f.n_before >= 4 and f.n_after >= 4


def test_plateau_time():
    t = np.arange(1, 101, dtype=float)
    err = np.maximum(0.5 * t ** -0.8, 0.02)          # reaches 0.02 at t = 25^(1/0.8) ≈ 55.9
    tp = fits.plateau_time(t, err, rel_tol=0.1)
    # within 10%: 0.5 t^-0.8 <= 0.022  ->  t >= 49.6
    assert tp == 50.0
    assert fits.plateau_time(t, np.full_like(t, 0.1)) == 1.0
    noisy_err = err * (1 + 0.03 * np.sin(t))
    assert 45 <= fits.plateau_time(t, noisy_err) <= 60


def test_onset_and_jump():
    t = np.array([0, 0.1, 0.5, 1, 2, 5, 10])
    y = np.array([1.0, 1.01, 1.02, 1.04, 1.2, 2.0, 3.0])
    assert fits.onset_time(t, y, rel=0.05) == 2.0
    assert np.isnan(fits.onset_time(t, np.ones_like(t)))
    tj, f = fits.largest_jump(t, np.array([1, 1.1, 9, 10, 11, 12, 13.0]))
    assert tj == 0.5 and np.isclose(f, 9 / 1.1)


def three_segments(t, t1, t2, a1, a2, a3):
    return fits.piecewise_power_law(t, 0.5, (a1, a2, a3), (t1, t2))


def test_two_breaks_exact():
    t = np.logspace(-1.5, 2, 50)
    y = three_segments(t, 0.5, 25.0, 0.05, 0.3, 0.1)
    f = fits.fit_piecewise_power_law(t, y, num_breaks=2, bootstrap=0, grid_size=300)
    np.testing.assert_allclose(f.breaks, (0.5, 25.0), rtol=0.03)
    np.testing.assert_allclose(f.exponents, (0.05, 0.3, 0.1), atol=5e-3)
    np.testing.assert_allclose(f.predict(t), y, rtol=1e-2)
    assert f.exponent_drop_significant and f.t_break == f.breaks[-1]


@pytest.mark.parametrize("seed", [0, 1])
def test_two_breaks_noisy_cis_and_selection(seed):
    t = np.logspace(-1.5, 2, 45)
    y = noisy(three_segments(t, 0.4, 20.0, 0.0, 0.35, 0.1), 0.015, seed)
    k, fs = fits.select_power_law(t, y, max_breaks=2, bootstrap=200, seed=seed)
    assert k == 2
    f = fs[2]
    for b, (lo, hi) in zip((0.4, 20.0), f.breaks_ci):
        assert lo <= b <= hi, (f.breaks, f.breaks_ci)
    for a, (lo, hi) in zip((0.0, 0.35, 0.1), f.bootstrap_exponent_ci):
        assert lo - 0.02 <= a <= hi + 0.02
    assert f.exponent_drop_significant
    d = f.to_dict()
    assert d["t_break"] == f.breaks[-1] and d["num_breaks"] == 2 and len(d["exponents"]) == 3


@pytest.mark.parametrize("kind,expected", [("single", 0), ("one", 1), ("two", 2)])
def test_select_power_law_counts_breaks(kind, expected):
    t = np.logspace(-1.5, 2, 45)
    y = {"single": 2 * t ** 0.2, "one": broken(t, 3.0, 0.5, 0.1),
         "two": three_segments(t, 0.3, 20.0, 0.6, 0.2, 0.02)}[kind]
    k, fs = fits.select_power_law(t, noisy(y, 0.01, 3), bootstrap=0)
    assert k == expected, [f.bic if f else None for f in fs]
