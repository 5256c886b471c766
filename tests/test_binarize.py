import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tapjax.binarize import htanh, step, ste_step


@pytest.mark.parametrize("jit", [False, True])
def test_step_forward_is_exactly_pm1_with_step0_plus1(jit):
    f = jax.jit(ste_step) if jit else ste_step
    x = jnp.array([-3.0, -1.0, -1e-8, 0.0, -0.0, 1e-8, 0.5, 7.0])
    y = np.asarray(f(x))
    np.testing.assert_array_equal(y, [-1, -1, -1, 1, 1, 1, 1, 1])
    assert set(np.unique(y)) <= {-1.0, 1.0}


@pytest.mark.parametrize("jit", [False, True])
def test_ste_gradient_is_hard_tanh_derivative(jit):
    g = jax.vmap(jax.grad(ste_step))
    g = jax.jit(g) if jit else g
    x = jnp.array([-2.0, -1.5, -0.99, -0.3, 0.0, 0.4, 0.999, 1.2, 5.0])
    want = jax.vmap(jax.grad(htanh))(x)   # 1 inside (-1, 1), 0 outside
    np.testing.assert_array_equal(np.asarray(g(x)), np.asarray(want))
    np.testing.assert_array_equal(np.asarray(g(x)), [0, 0, 1, 1, 1, 1, 1, 0, 0])
    # boundary convention: 1{|x| <= 1}
    np.testing.assert_array_equal(np.asarray(g(jnp.array([-1.0, 1.0]))), [1, 1])


def test_ste_chain_rule_scales_cotangent():
    x = jnp.array([0.2, -0.5, 3.0])
    _, vjp = jax.vjp(ste_step, x)
    (ct,) = vjp(jnp.array([2.0, -3.0, 4.0]))
    np.testing.assert_array_equal(np.asarray(ct), [2.0, -3.0, 0.0])


def test_plain_step_matches():
    x = jnp.linspace(-2, 2, 11)
    np.testing.assert_array_equal(np.asarray(step(x)), np.asarray(ste_step(x)))
