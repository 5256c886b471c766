import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tapjax.spin_model import (bond_matvec, couplings, dense_bond_matrix, energy, join_layers,
                               random_couplings, row_square_sums, split_layers)


def test_dense_j_structure_and_matvec(x64):
    c = random_couplings(jax.random.PRNGKey(0), (5, 4, 6, 3), dtype=jnp.float64)
    J = np.asarray(dense_bond_matrix(c))
    assert J.shape == (18, 18)
    np.testing.assert_array_equal(J, J.T)
    np.testing.assert_array_equal(J[:5, :5], 0)           # no intra-layer bonds
    np.testing.assert_array_equal(J[:5, 9:], 0)           # no bonds beyond neighbours
    np.testing.assert_array_equal(J[5:9, 9:15], np.asarray(c.weights[1]))
    v = np.random.default_rng(0).normal(size=18)
    np.testing.assert_allclose(np.asarray(join_layers(bond_matvec(c, split_layers(c, jnp.asarray(v))))), J @ v, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(join_layers(row_square_sums(c))), (J ** 2).sum(1), rtol=1e-12)
    # eq. 1 == eq. 3
    s = np.sign(v)
    np.testing.assert_allclose(float(energy(c, split_layers(c, jnp.asarray(s)))), -0.5 * s @ J @ s, rtol=1e-12)
    # bipartite: spectrum symmetric about 0
    ev = np.linalg.eigvalsh(J)
    np.testing.assert_allclose(ev, -ev[::-1], atol=1e-12)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"W\^\(1\) has shape \(4, 5\) but W\^\(2\) has shape \(6, 3\)"):
        couplings([np.zeros((4, 5)), np.zeros((6, 3))])
    with pytest.raises(ValueError, match=r"W\^\(2\) contains NaN or Inf"):
        couplings([np.zeros((4, 5)), np.full((5, 3), np.inf)])
    with pytest.raises(ValueError, match="at least one"):
        couplings([])
    with pytest.raises(ValueError, match="must be"):
        couplings([np.zeros(4)], name="ckpt_7.npz")


def test_pytree_stacks_for_vmap():
    cs = [random_couplings(jax.random.PRNGKey(i), (6, 4, 2)) for i in range(3)]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *cs)
    r = jax.vmap(lambda c: jnp.min(join_layers(row_square_sums(c))))(stacked)
    np.testing.assert_allclose(np.asarray(r), [float(jnp.min(join_layers(row_square_sums(c)))) for c in cs], rtol=1e-6)


def test_half_precision_and_list_inputs():
    from tapjax.spin_model import LayeredCouplings, as_couplings
    w16 = [np.ones((4, 3), np.float16), np.ones((3, 2), np.float16)]
    assert couplings(w16).dtype == jnp.float32                      # documented upcast
    assert couplings([jnp.ones((4, 3), jnp.bfloat16)]).dtype == jnp.float32
    assert couplings(w16, dtype=jnp.float16).dtype == jnp.float16   # an explicit dtype wins
    c = as_couplings(w16)
    assert isinstance(c, LayeredCouplings) and c.dtype == jnp.float32 and c.sizes == (4, 3, 2)
    assert as_couplings(c).weights[0] is c.weights[0]               # float32 kept as is
    with pytest.raises(TypeError, match="expected LayeredCouplings or a list"):
        as_couplings({"layer1": np.ones((4, 3))})
    with pytest.raises(TypeError, match="≥2-D"):
        as_couplings([np.ones(3)])


def test_coupling_scale_leaves_the_tap_matrix_unchanged(x64):
    """I − M(β; c) = I − M(sβ; c/s) (eqs. 23–25) holds bit for bit with s a power of two."""
    from tapjax import tap
    from tapjax.spin_model import coupling_scale
    c = random_couplings(jax.random.PRNGKey(0), (6, 5, 4), dtype=jnp.float64).scale(37.0)
    s = float(coupling_scale(c))
    assert s == 64.0
    J = np.asarray(dense_bond_matrix(c))
    b = 0.7
    A = np.eye(15) - b * J + np.diag(b * b * (J ** 2).sum(1))
    np.testing.assert_allclose(np.asarray(tap.tap_matrix(c, b)), A, rtol=1e-13)
    cn = c.scale(1.0 / s)
    np.testing.assert_array_equal(np.asarray(tap.tap_matrix(c, b)), np.asarray(tap.tap_matrix(cn, b * s)))


def _runs_by_definition(shapes, first):
    """Groups of consecutive equal shapes (itertools.groupby); a non-square group splits into ones."""
    import itertools
    runs = []
    for shape, grp in itertools.groupby(range(first, len(shapes)), key=lambda i: shapes[i]):
        idx = list(grp)
        runs += [(idx[0], idx[-1] + 1)] if shape[0] == shape[1] else [(i, i + 1) for i in idx]
    return runs


@pytest.mark.parametrize("sizes", [(5,), (5, 7), (4, 6, 6, 6, 3), (3, 3, 3, 3), (6, 6, 6, 4, 4, 4), (2, 5, 5, 2, 2, 2)])
def test_block_runs_and_equal_block_runs(sizes):
    from tapjax.spin_model import LayeredCouplings, block_runs, equal_block_runs
    sizes = (3,) + sizes
    c = LayeredCouplings(tuple(jnp.zeros((a, b)) for a, b in zip(sizes[:-1], sizes[1:])))
    shapes = [w.shape for w in c.weights]
    assert block_runs(c) == _runs_by_definition(shapes, 0)
    # recurrence steps k = 2..L use W^(k) = weights[k-1]: runs of blocks 1.. shifted by one
    steps = equal_block_runs(c)
    assert steps == [(a + 1, b + 1) for a, b in _runs_by_definition(shapes, 1)]
    assert [k for k0, k1 in steps for k in range(k0, k1)] == list(range(2, c.num_layers + 1))
    for k0, k1 in steps:
        assert len({c.weights[k - 1].shape for k in range(k0, k1)}) == 1


def test_pytree_registration_leaves_order_and_structure():
    """register_dataclass: leaves are the blocks in layer order, no static data, lists become tuples."""
    from tapjax.spin_model import LayeredCouplings
    ws = [jnp.full((3, 4), 1.0), jnp.full((4, 2), 2.0), jnp.full((2, 5), 3.0)]
    a, b = LayeredCouplings(tuple(ws)), LayeredCouplings(list(ws))
    assert isinstance(b.weights, tuple)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    leaves, tree = jax.tree_util.tree_flatten(a)
    assert [float(x[0, 0]) for x in leaves] == [1.0, 2.0, 3.0]
    back = jax.tree_util.tree_unflatten(tree, [2 * x for x in leaves])
    assert isinstance(back, LayeredCouplings) and float(back.weights[2][0, 0]) == 6.0
    stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), a, back)
    assert stacked.sizes == (3, 4, 2, 5)
    got = jax.lax.map(lambda c: sum(jnp.sum(w) for w in c.weights), stacked)
    np.testing.assert_allclose(np.asarray(got), [12 + 16 + 30, 2 * (12 + 16 + 30)])
    got = jax.jit(jax.vmap(lambda c: c.weights[1].sum()))(stacked)
    np.testing.assert_allclose(np.asarray(got), [16.0, 32.0])
