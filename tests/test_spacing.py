"""Level-spacing statistics against closed forms (tapjax.spacing)."""

import math

import numpy as np
import pytest
from scipy import optimize

from tapjax import spacing as sp
from tapjax import spectra


def _goe(n, rng):
    a = rng.normal(size=(n, n))
    return (a + a.T) / math.sqrt(2.0 * n)   # off-diagonal variance 1/n: semicircle on [-2, 2]


def _semicircle_cdf(x):
    return 0.5 + (x * np.sqrt(4.0 - x * x) / 4.0 + np.arcsin(x / 2.0)) / math.pi


def _quantile_levels(cdf, n, lo, hi):
    """x_n = F^{-1}((n - 1/2)/N): levels with exactly the density F' and unit unfolded spacing."""
    return np.array([optimize.brentq(lambda x: cdf(x) - (i - 0.5) / n, lo, hi) for i in range(1, n + 1)])


def test_constants():
    assert sp.R_POISSON == pytest.approx(0.386294, abs=1e-6)
    assert sp.R_GOE == pytest.approx(0.5307, abs=1e-4)


def test_mean_r_poisson():
    rng = np.random.default_rng(0)
    r = sp.mean_spacing_ratio(rng.uniform(size=60000))
    assert r.n == 59998
    assert abs(r.mean - sp.R_POISSON) < 4 * r.stderr + 1e-3
    # <r> needs no unfolding: a smooth monotone map of the levels leaves it (nearly) unchanged
    x = np.sort(rng.exponential(size=60000))
    assert sp.mean_spacing_ratio(x).mean == pytest.approx(sp.R_POISSON, abs=0.006)


def test_mean_r_goe_bulk_and_scale_invariance():
    rng = np.random.default_rng(1)
    rs = np.concatenate([sp.spacing_ratios(np.linalg.eigvalsh(_goe(300, rng))[50:250]) for _ in range(40)])
    se = rs.std() / math.sqrt(rs.size)
    assert abs(rs.mean() - sp.R_GOE) < 4 * se + 2e-3, (rs.mean(), se)
    ev = np.linalg.eigvalsh(_goe(200, rng))
    a, b = sp.mean_spacing_ratio(ev), sp.mean_spacing_ratio(3.0 * ev - 7.0)
    assert a.mean == pytest.approx(b.mean, rel=1e-12)
    # an upper window of A equals the lower window of -A
    np.testing.assert_allclose(sp.mean_spacing_ratio(ev, 20, "upper").mean,
                               sp.mean_spacing_ratio(-ev, 20, "lower").mean, rtol=1e-12)


def test_spacing_ratio_by_hand():
    r = sp.spacing_ratios([0.0, 1.0, 3.0, 3.5])     # spacings 1, 2, 0.5
    np.testing.assert_allclose(r, [0.5, 0.25])
    assert sp.mean_spacing_ratio([3.5, 0.0, 1.0, 3.0], k=3).mean == pytest.approx(0.5)
    assert sp.mean_spacing_ratio([0.0, 1.0, 3.0, 3.5], k=3, edge="upper").mean == pytest.approx(0.25)


def test_degenerate_and_bad_input():
    with pytest.raises(ValueError, match="0/0"):
        sp.spacing_ratios([0.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="at least 3"):
        sp.spacing_ratios([0.0, 1.0])
    with pytest.raises(ValueError, match="non-finite"):
        sp.mean_spacing_ratio([0.0, np.nan, 1.0])
    with pytest.raises(ValueError, match="k=2"):
        sp.mean_spacing_ratio(np.arange(10.0), k=2)
    with pytest.raises(ValueError, match="edge="):
        sp.edge_window(np.arange(10.0), 5, edge="left")
    with pytest.raises(ValueError, match="degree-3"):
        sp.unfold_edge(np.arange(10.0), k=4, fit=4)


def test_positive_levels_of_bipartite_spectrum():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(30, 20))
    j = np.block([[np.zeros((30, 30)), w], [w.T, np.zeros((20, 20))]])   # kernel of dimension 10
    ev = np.linalg.eigvalsh(j)
    pos = sp.positive_levels(ev)
    np.testing.assert_allclose(pos, np.linalg.svd(w, compute_uv=False)[::-1], rtol=1e-10)


@pytest.mark.parametrize("edge", ["lower", "upper"])
def test_unfold_semicircle_quantiles_exact(edge):
    """Levels at the quantiles of the semicircle: the soft-edge fit recovers unit spacings."""
    n = 1500
    x = _quantile_levels(_semicircle_cdf, n, -2.0, 2.0)
    u = sp.unfold_edge(x if edge == "lower" else -x, k=40, edge=edge)
    assert u.monotone
    np.testing.assert_allclose(u.spacings, 1.0, atol=1e-3)
    np.testing.assert_allclose(u.unfolded, np.arange(1, 41) - 0.5, atol=2e-3)
    fs = sp.first_spacing_readings(x if edge == "lower" else -x, k=40, edge=edge)
    assert fs.edge_unfolded == pytest.approx(1.0, abs=2e-3)
    # the raw edge spacing is far larger than the median one: the soft edge's low density
    assert fs.median > 5.0
    assert fs.median == pytest.approx(spectra.first_level_spacing(x if edge == "lower" else -x[::-1]), rel=1e-12)


def test_unfold_edge_law_degree_one():
    """The two-parameter soft-edge law (degree 1) is within a few % of unit spacing on the
    semicircle edge, and stays monotone when a level splits off far below the bulk."""
    x = _quantile_levels(_semicircle_cdf, 2000, -2.0, 2.0)[:200]
    u = sp.unfold_edge(x, k=50, degree=1)
    assert u.monotone
    np.testing.assert_allclose(u.spacings, 1.0, atol=0.03)
    assert u.below_edge == 0
    # two levels far below the bulk: they fall below the fitted edge law, and reading (b) is
    # flagged undefined (NaN) rather than measured from the clamped edge
    gap = x[1] - x[0]
    split = np.concatenate([[x[0] - 80 * gap, x[0] - 60 * gap], x])
    u1 = sp.unfold_edge(split, k=50, degree=1)
    assert u1.monotone and u1.below_edge >= 1
    fs = sp.first_spacing_readings(split, k=50, degree=1)
    assert np.isnan(fs.edge_unfolded) and fs.below_edge == u1.below_edge
    assert fs.median > 5.0 and fs.edge_raw > 0


def test_unfold_polynomial_density_exact():
    """Density rho(x) = 3x^2 on [0, 1] (N(x) = N x^3, a polynomial): both forms must be exact
    for the 'polynomial' fit (degree 3); the soft form is not meant for this edge."""
    n = 800
    x = ((np.arange(1, n + 1) - 0.5) / n) ** (1.0 / 3.0)
    u = sp.unfold_edge(x, k=60, fit=200, degree=3, edge_form="polynomial")
    np.testing.assert_allclose(u.spacings, 1.0, atol=1e-6)
    assert u.mean_spacing == pytest.approx(1.0, abs=1e-6)
    assert u.raw_mean_spacing == pytest.approx((x[59] - x[0]) / 59)


def test_unfold_goe_edge_against_semicircle():
    """GOE lower edge: fitted unfolding vs the exact N F(x) a few levels in from the edge,
    where finite-N edge corrections are small."""
    rng = np.random.default_rng(3)
    ev = np.linalg.eigvalsh(_goe(1500, rng))
    u = sp.unfold_edge(ev, k=100, fit=200)
    exact = 1500 * _semicircle_cdf(np.clip(ev[:100], -2.0, 2.0))
    assert u.monotone
    assert u.mean_spacing == pytest.approx(1.0, abs=0.05)
    # away from the first ~10 levels the fitted and exact staircases agree to about one level
    assert np.max(np.abs(u.unfolded[10:] - exact[10:])) < 2.0
    # the fitted unfolded spacings are GOE-like: mean ~1, first spacing O(1)
    assert 0.05 < sp.first_spacing_readings(ev, 100).edge_unfolded < 5.0
