"""tapjax.spectra: the stacked bond operator, bond_top (λ_max(J) on one sublattice), σ_max per layer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import spiked
from tapjax import spectra
from tapjax.spin_model import dense_bond_matrix, random_couplings

# unequal first/last widths, a run of square blocks, lone blocks, a 1-block net, odd/even run starts
SHAPES = [(7, 5, 5, 5, 3), (3, 8, 8, 2, 2, 5), (6, 4), (4, 4, 4, 4, 4, 9, 9, 9), (10,) * 7]


@pytest.mark.parametrize("sizes", SHAPES)
def test_bond_operator_vs_dense(x64, sizes):
    c = random_couplings(jax.random.PRNGKey(len(sizes)), sizes, dtype=jnp.float64)
    J = np.asarray(dense_bond_matrix(c))
    op = spectra.BondOperator.of(c)
    v = np.random.default_rng(0).normal(size=(sum(sizes), 3))
    np.testing.assert_allclose(np.asarray(op(jnp.asarray(v))), J @ v, atol=1e-13)
    np.testing.assert_allclose(np.asarray(op(jnp.asarray(v[:, 0]))), J @ v[:, 0], atol=1e-13)
    for p in (0, 1):
        m = np.concatenate([np.full(n, float(k % 2 == p)) for k, n in enumerate(sizes)])
        np.testing.assert_allclose(np.asarray(op.from_parity(jnp.asarray(v[:, 0]), p)), J @ (v[:, 0] * m),
                                   atol=1e-13)


@pytest.mark.parametrize("sizes", [(3, 8, 8, 2, 2, 5), (40, 30, 30, 30, 30, 20)])
def test_bond_top_vs_dense(x64, sizes):
    c0 = random_couplings(jax.random.PRNGKey(7), sizes, dtype=jnp.float64)
    for c in (c0, spiked(c0, 2.0)):
        J = np.asarray(dense_bond_matrix(c))
        ev = np.linalg.eigvalsh(J)
        t = spectra.bond_top(c, 100, 1e-8)
        lam, err = float(t.value), float(t.error)
        assert lam <= ev[-1] * (1 + 1e-12) and ev[-1] <= lam + err + 1e-12   # the stated bracket
        assert err <= 1e-8 * lam * 1.01 or int(t.num_steps) == 100
        x = np.asarray(t.vector)
        assert np.linalg.norm(J @ x - ev[-1] * x) < 1e-3 * ev[-1]
        assert float(spectra.lambda_max_bond(c, "lanczos")) == pytest.approx(ev[-1], rel=1e-6)


def test_bond_top_float32_and_nonfinite():
    c = spiked(random_couplings(jax.random.PRNGKey(3), (64, 48, 48, 48, 10)), 1.5)
    ev = np.linalg.eigvalsh(np.asarray(dense_bond_matrix(c), np.float64))
    t = spectra.bond_top(c)
    assert float(t.value) == pytest.approx(ev[-1], rel=2e-6) and float(t.error) < 1e-5 * ev[-1]
    bad = type(c)((c.weights[0].at[0, 0].set(jnp.nan),) + c.weights[1:])
    assert np.isnan(float(spectra.bond_top(bad).value))


def test_layer_sigma_max_exact(x64):
    c = random_couplings(jax.random.PRNGKey(2), (7, 5, 5, 5, 3, 9), dtype=jnp.float64)
    want = [np.linalg.svd(np.asarray(w), compute_uv=False)[0] for w in c.weights]
    np.testing.assert_allclose(np.asarray(spectra.layer_sigma_max(c)), want, rtol=1e-12)


def test_bond_top_under_vmap_matches_single(x64):
    """Batched over stacked checkpoints (while_loop under vmap): each member keeps its own stop."""
    cs = [spiked(random_couplings(jax.random.PRNGKey(k), (12, 9, 9, 9, 5), dtype=jnp.float64), 1.0 * k)
          for k in range(2)]
    stacked = type(cs[0])(tuple(jnp.stack([c.weights[i] for c in cs]) for i in range(4)))
    got = jax.vmap(lambda c: spectra.bond_top(c, 40, 1e-9))(stacked)
    for k, c in enumerate(cs):
        one = spectra.bond_top(c, 40, 1e-9)
        assert float(got.value[k]) == pytest.approx(float(one.value), rel=1e-12)
        assert int(got.num_steps[k]) == int(one.num_steps)
