import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tapjax.losses import mean_loss, multiclass_squared_hinge


def test_hand_examples():
    # K=3, margin 10. All-zero scores: each of the 2 wrong classes violates by 10 -> 2*100/3.
    s = jnp.array([[0.0, 0.0, 0.0]])
    np.testing.assert_allclose(multiclass_squared_hinge(s, jnp.array([0])), [200 / 3], rtol=1e-6)
    # s_y = 12: class 1 (s=1): 10-12+1 = -1 -> 0; class 2 (s=3): 10-12+3 = 1 -> 1; total 1/3.
    s = jnp.array([[12.0, 1.0, 3.0]])
    np.testing.assert_allclose(multiclass_squared_hinge(s, jnp.array([0])), [1 / 3], rtol=1e-6)
    # margin satisfied everywhere -> 0
    s = jnp.array([[0.0, 25.0, 14.9]])
    np.testing.assert_allclose(multiclass_squared_hinge(s, jnp.array([1])), [0.0], atol=0)
    # custom margin 1, K=2: 1-0+0.5 = 1.5 -> 2.25/2
    s = jnp.array([[0.0, 0.5]])
    np.testing.assert_allclose(multiclass_squared_hinge(s, jnp.array([0]), margin=1.0), [1.125])


def test_mean_and_gradient():
    s = jnp.array([[0.0, 0.0, 0.0], [12.0, 1.0, 3.0]])
    y = jnp.array([0, 0])
    np.testing.assert_allclose(mean_loss(s, y), (200 / 3 + 1 / 3) / 2, rtol=1e-6)
    # d/ds of (1/3)(10 - s0 + s2)^2 at the second sample: s2 -> 2/3, s0 -> -2/3, s1 -> 0.
    g = jax.grad(lambda s: multiclass_squared_hinge(s, y)[1])(s)
    np.testing.assert_allclose(np.asarray(g[1]), [-2 / 3, 0.0, 2 / 3], rtol=1e-6)


def test_matches_pytorch_multimargin_if_available():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    s = rng.normal(0, 5, (16, 10)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    ref = torch.nn.MultiMarginLoss(p=2, margin=10.0)(torch.tensor(s), torch.tensor(y)).item()
    np.testing.assert_allclose(float(mean_loss(jnp.asarray(s), jnp.asarray(y))), ref, rtol=1e-5)
