"""tapjax.recurrence: the shared bracket refinement (RefineState, refine_step) on closed-form margins."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tapjax import levels, recurrence
from tapjax.recurrence import RefineState, refine_step


def _bracket(lo, hi, g, dtype=jnp.float64):
    z = jnp.zeros((), dtype)
    a = lambda v: jnp.asarray(v, dtype)
    return RefineState(lo=a(lo), g_lo=g(a(lo)), prev=a(0.0), g_prev=g(a(0.0)), hi=a(hi), g_hi=g(a(hi)),
                       w_lo=g(a(lo)), w_hi=g(a(hi)), side=z, width1=z, width2=z,
                       found=jnp.asarray(True), num_tests=jnp.int32(0))


def _refine(s, g, rtol, **kw):
    step = jax.jit(lambda s: refine_step(s, g, rtol, **kw))
    for _ in range(60):
        if float(s.hi - s.lo) <= rtol * float(s.hi):
            break
        s = step(s)
    return s


def test_refine_step_brackets_closed_form_root(x64):
    """g(β) = 1 − (β/β_c)²: root β_c = 0.7; the bracket always holds it and closes to rtol;
    the secant needs fewer tests than bisection's log2(width / (rtol β_c))."""
    bc, rtol = 0.7, 1e-6
    g = lambda b: 1.0 - (b / bc) ** 2
    tests = {}
    for method in ("secant", "bisect"):
        s = _refine(_bracket(0.1, 3.0, g), g, rtol, method=method)
        assert float(s.lo) < bc <= float(s.hi) and float(s.hi - s.lo) <= rtol * float(s.hi)
        assert float(g(s.lo)) > 0 >= float(g(s.hi))
        tests[method] = int(s.num_tests)
    assert tests["bisect"] == int(np.ceil(np.log2(2.9 / (rtol * 0.7))))
    assert tests["secant"] < tests["bisect"]


def test_refine_step_nan_far_side_and_step_down(x64):
    """NaN past the crossing (an early pivot failed) is a failing test; with lo = 0 the step-down
    variant descends geometrically (hi/64) — both variants still bracket the root."""
    bc = 0.02
    g = lambda b: jnp.where(b > 5 * bc, jnp.nan, bc - b)
    for kw in ({}, {"step_down": False, "nan_side_guard": False}):
        s = _refine(_bracket(0.0, 3.0, g), g, 1e-5, **kw)
        assert float(s.lo) < bc <= float(s.hi) <= bc * (1 + 1e-5)
    s1 = jax.jit(lambda s: refine_step(s, g, 1e-5))(_bracket(0.0, 3.0, g))
    assert float(s1.hi) == pytest.approx(3.0 / 64)     # geometric step from lo = 0


def test_smooth_and_secant_searches_share_the_state(x64):
    """Both T_c searches return the same crossing (to rtol) through the one refinement step."""
    from tapjax import msk
    from tapjax.spin_model import random_couplings
    sizes = (16,) * 9
    c = random_couplings(jax.random.PRNGKey(6), sizes, 2.0, dtype=jnp.float64)
    thr, bmax = 0.3, 2 * msk.critical_beta(sizes, 2.0)
    a = recurrence.critical_beta_search(c, thr, bmax, 1e-6)
    b = levels.critical_beta_smooth(c, thr, bmax, 1e-6)
    assert bool(a.crossed) and bool(b.crossed)
    assert max(float(a.lower), float(b.lower)) <= min(float(a.beta), float(b.beta))
    with pytest.warns(DeprecationWarning):
        assert levels.SmoothSearch is RefineState


def test_entry_points_scale_in_a_shared_program_with_the_inline_bits():
    """The entry points scale W in one program of its own (spin_model.scaled) and run a kernel on
    (W / s, s): the same bits as the inline scaling a traced call does; logdet, inertia and
    recurrence share one kernel, and a Python number compiles no other kernel than a jnp scalar."""
    from tapjax import tap
    from tapjax.spin_model import random_couplings
    c = random_couplings(jax.random.PRNGKey(11), (7, 6, 5), dtype=jnp.float32)
    betas = jnp.linspace(0.2, 1.4, 5, dtype=jnp.float32)

    def calls(c):
        return (recurrence.positive_definite(c, 0.7, 0.1), recurrence.recurrence(c, 0.7, 0.1),
                recurrence.logdet(c, 0.7, 0.1), recurrence.inertia(c, 0.7, 0.1),
                recurrence.last_pivot_margin(c, 0.7, 0.1), tap.least_eigenvalue_dense(c, betas),
                tap.least_eigenvalue_lanczos(c, betas, num_iter=18)[0],
                recurrence.critical_beta_search(c, 0.0, 4.0, 1e-5))

    kernel = recurrence._recurrence_scaled
    n0 = kernel._cache_size()
    for big in (1.0, 2.0 ** 70):   # 2^70: Σw² overflows float32 unless scaled
        cb = jax.tree_util.tree_map(lambda w: w * np.float32(big), c)
        eager = jax.tree_util.tree_leaves(calls(cb))
        inline = jax.tree_util.tree_leaves(jax.jit(calls)(cb))
        for a, b in zip(eager, inline):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    n1 = kernel._cache_size()
    assert n1 - n0 <= 2   # one kernel per mode (Cholesky, eigh) for this net, however called
    for shift in (0.25, jnp.float32(0.25), 1):
        recurrence.logdet(c, 0.7, shift), recurrence.inertia(c, jnp.float32(0.7), shift)
    assert kernel._cache_size() == n1
