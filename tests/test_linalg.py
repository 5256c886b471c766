import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tapjax import errors, linalg, recurrence, tap


def _sym(rng, n, rank=None):
    if rank is None:
        a = rng.normal(size=(n, n))
        return (a + a.T) / 2
    u = rng.normal(size=(n, rank))
    return u @ np.diag(rng.normal(size=rank) * 3) @ u.T


def _run(A, num_iter, seed=0):
    A = jnp.asarray(A)
    v0 = jax.random.normal(jax.random.PRNGKey(seed), (A.shape[0],), A.dtype)
    return jax.jit(lambda v: linalg.lanczos(lambda x: A @ x, v, num_iter))(v0)


@pytest.mark.parametrize("rank", [3, 7])
def test_low_rank_breakdown_gives_dense_extremes(x64, rank):
    """A rank-r matrix has r + 1 distinct eigenvalues: the Krylov space is invariant after
    r + 1 steps; with num_iter = 30 the recurrence must stop there, not run on noise."""
    A = _sym(np.random.default_rng(rank), 40, rank)
    ev = np.linalg.eigvalsh(A)
    res = _run(A, 30)
    assert bool(res.breakdown) and int(res.size) == rank + 1
    k = int(res.size)
    V = np.asarray(res.vectors)
    np.testing.assert_allclose(V[:k] @ V[:k].T, np.eye(k), atol=1e-12)
    np.testing.assert_array_equal(V[k:], 0)
    for which, ref in (("min", ev[0]), ("max", ev[-1])):
        theta, err = linalg.ritz_extreme(res, which)
        assert float(theta) == pytest.approx(ref, rel=1e-11, abs=1e-11)
        assert float(err) < 1e-10
    # the historical tuple form: padded so that eigvalsh(T) has the right extremes
    alpha, beta, _ = linalg.lanczos_tridiagonal(lambda x: jnp.asarray(A) @ x,
                                                jax.random.normal(jax.random.PRNGKey(0), (40,), jnp.float64), 30)
    T = np.diag(alpha) + np.diag(beta[:-1], 1) + np.diag(beta[:-1], -1)
    evT = np.linalg.eigvalsh(T)
    np.testing.assert_allclose([evT[0], evT[-1]], [ev[0], ev[-1]], rtol=1e-11)


def test_fewer_spins_than_iterations_float32():
    A = _sym(np.random.default_rng(1), 12).astype(np.float32)
    res = _run(A, 50)
    assert res.alpha.shape == (12,)                     # capped at N
    ev = np.linalg.eigvalsh(A.astype(float))
    assert float(linalg.ritz_extreme(res, "min")[0]) == pytest.approx(ev[0], abs=1e-5)
    assert float(linalg.ritz_extreme(res, "max")[0]) == pytest.approx(ev[-1], abs=1e-5)


def test_generic_matrix_runs_all_steps_and_vmaps(x64):
    A = jnp.asarray(_sym(np.random.default_rng(2), 60))
    v0s = jax.random.normal(jax.random.PRNGKey(3), (2, 60), jnp.float64)
    res = jax.vmap(lambda v: linalg.lanczos(lambda x: A @ x, v, 20))(v0s)
    assert np.all(np.asarray(res.size) == 20) and not np.any(np.asarray(res.breakdown))
    # Ritz values interlace the spectrum: the extremes are inside it
    ev = np.linalg.eigvalsh(np.asarray(A))
    lo = np.asarray(jax.vmap(lambda r: linalg.ritz_extreme(r, "min")[0])(res))
    assert np.all(lo >= ev[0] - 1e-12)


def test_one_dimensional_searches():
    x, fx = linalg.golden_min(lambda b: (b - 0.3) ** 2 + 1.0, 0.0, 1.0, rtol=1e-8, max_iter=100)
    assert x == pytest.approx(0.3, abs=1e-6) and fx == pytest.approx(1.0, abs=1e-11)
    lo, hi = linalg.bisect(lambda b: b * b < 2.0, 0.0, 2.0, 1e-12)
    assert lo < np.sqrt(2) <= hi and hi - lo <= 1e-12
    lo, hi = linalg.bisect(lambda b: b < 1e-3, 0.0, 1.0, rtol=1e-6)
    assert lo < 1e-3 <= hi and hi - lo <= 1e-6 * hi
    with pytest.raises(ValueError, match="tol > 0 or rtol > 0"):
        linalg.bisect(lambda b: True, 0.0, 1.0, 0.0)


def test_option_vocabulary():
    assert linalg.resolve_backend("auto", linalg.DENSE_MAX_SPINS) == "dense"
    assert linalg.resolve_backend("auto", linalg.DENSE_MAX_SPINS + 1) == "lanczos"
    assert linalg.resolve_backend("lanczos", 10) == "lanczos"
    with pytest.raises(ValueError, match="'dense', 'lanczos', 'auto'"):
        linalg.resolve_backend("magic", 10)
    assert linalg.check_root_method("bisect") == "bisect"
    with pytest.raises(ValueError, match="'secant', 'bisect'"):
        linalg.check_root_method("newton")


def test_moved_names_stay_importable():
    assert tap.golden_min is linalg.golden_min
    assert tap.lanczos_tridiagonal is linalg.lanczos_tridiagonal
    assert tap.NoCrossingError is errors.NoCrossingError is recurrence.NoCrossingError
    from tapjax.checkpoints import CheckpointError
    from tapjax.data import DataError
    assert errors.DataError is DataError and errors.CheckpointError is CheckpointError
    for cls in (errors.NoCrossingError, errors.ConvergenceError, errors.CouplingsError):
        assert issubclass(cls, ValueError)


@pytest.mark.parametrize("start", [0.05, 2.0])   # 2.0: the scan phase never runs
def test_scan_then_refine_is_the_two_loops(x64, start):
    """One fused loop gives the same states, bit for bit, as the two while_loops it replaces, and
    calls the margin once per iteration (the count is in the state)."""
    margin = lambda x: jnp.cos(3.0 * x) - 0.2          # first root arccos(0.2)/3 ≈ 0.4565
    scan0 = (jnp.float64(start), jnp.float64(margin(start)), jnp.int32(0))
    scan_cond = lambda s: (s[1] > 0) & (s[0] < 1.0)
    scan_point = lambda s: s[0] + 0.1
    scan_update = lambda s, x, g: (x, g, s[2] + 1)
    to_refine = lambda s: (s[0] - 0.1, s[0], s[2])
    refine_cond = lambda sc, r: (sc[1] <= 0) & (r[1] - r[0] > 1e-12) & (r[2] < sc[2] + 80)
    refine_point = lambda r: 0.5 * (r[0] + r[1])
    refine_update = lambda r, x, g: (jnp.where(g > 0, x, r[0]), jnp.where(g > 0, r[1], x), r[2] + 1)

    def two_loops():
        sc = jax.lax.while_loop(scan_cond, lambda s: scan_update(s, scan_point(s), margin(scan_point(s))), scan0)
        rf = jax.lax.while_loop(lambda r: refine_cond(sc, r),
                                lambda r: refine_update(r, refine_point(r), margin(refine_point(r))), to_refine(sc))
        return sc, rf

    fused = jax.jit(lambda: linalg.scan_then_refine(
        margin, scan0, scan_cond=scan_cond, scan_point=scan_point, scan_update=scan_update,
        to_refine=to_refine, refine_cond=refine_cond, refine_point=refine_point,
        refine_update=refine_update))()
    ref = jax.jit(two_loops)()
    for a, b in zip(jax.tree_util.tree_leaves(fused), jax.tree_util.tree_leaves(ref)):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    sc, rf = fused
    if start < 1:
        assert int(sc[2]) == 5 and 0.45 < float(rf[0]) <= np.arccos(0.2) / 3 <= float(rf[1]) < 0.46
    else:
        assert int(sc[2]) == 0 and int(rf[2]) == 0   # nothing to scan, nothing bracketed
