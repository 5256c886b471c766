import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tapjax import msk, tap
from tapjax.spin_model import random_couplings


@pytest.mark.parametrize("L,n,C", [(1, 10, 1.0), (3, 512, 2.0), (6, 100, 0.7)])
def test_eq16_toeplitz_eigenvalues(x64, L, n, C):
    for beta in (0.1, 0.5, 0.9):
        H = np.asarray(msk.hessian(beta, (n,) * (L + 1), C))
        np.testing.assert_allclose(np.linalg.eigvalsh(H),
                                   np.asarray(msk.equal_layer_eigenvalues(beta, n, L, C)), rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("L", [1, 2, 3, 10, 50])
def test_eq17_tc_and_eq18_limit(L):
    tc = msk.equal_layer_critical_temperature(L, 2.0)
    assert msk.critical_temperature((300,) * (L + 1), 2.0) == pytest.approx(tc, rel=1e-12)
    # λ_min of eq 15 vanishes at T_c
    lam = msk.hessian_least_eigenvalue(np.array([1 / tc]), (300,) * (L + 1), 2.0)
    assert abs(float(lam[0])) < 1e-5
    assert msk.equal_layer_critical_temperature(10 ** 6, 2.0) == pytest.approx(np.sqrt(4.0), rel=1e-9)


def test_paper_widths_analytic_beta_c():
    assert msk.critical_beta((784, 512, 512, 512, 10), 2.0) == pytest.approx(0.569, abs=5e-4)


def test_random_paper_net_matches_analytic():
    """λ_min(I − M) of one Kaiming net (C=2) has its minimum near the analytic β_c (Fig. 3)."""
    c = random_couplings(jax.random.PRNGKey(0), (784, 512, 512, 512, 10), 2.0)
    betas = np.linspace(0.4, 0.75, 36)
    curve = np.asarray(tap.least_eigenvalue(c, betas, "lanczos", num_iter=100))
    b_min = betas[np.argmin(curve)]
    analytic = msk.critical_beta(c.sizes, 2.0)
    assert abs(b_min - analytic) / analytic < 0.03, (b_min, analytic)
    assert 0 < curve.min() < 0.05        # "vanishes or nearly vanishes" (finite size)
    assert curve[0] > curve.min() and curve[-1] > curve.min()  # not monotone: rises again


def test_bad_sizes():
    with pytest.raises(ValueError, match="sizes"):
        msk.critical_beta((10,), 2.0)
    with pytest.raises(ValueError, match="scale"):
        msk.critical_beta((10, 10), -1.0)
