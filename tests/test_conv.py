"""Conv layers as exact coupling blocks: against the frameworks' own convolutions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tapjax import conv

CASES_2D = [  # (c_in, c_out, (H, W), (kh, kw), stride, padding, dilation, groups)
    (1, 3, (6, 5), (3, 3), 1, 0, 1, 1),
    (2, 4, (7, 6), (3, 2), 2, 1, 1, 1),
    (3, 2, (8, 8), (3, 3), (2, 1), (1, 2), 2, 1),
    (4, 6, (5, 5), (2, 2), 1, 0, 1, 2),
]
CASES_1D = [(2, 3, (9,), (3,), 2, 1, 1, 1), (3, 3, (10,), (4,), 1, 2, 2, 3)]


def _rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("case", CASES_2D + CASES_1D)
def test_matches_torch_conv(case):
    torch = pytest.importorskip("torch")
    c_in, c_out, hw, ks, stride, pad, dil, groups = case
    rng = _rng(1)
    k = rng.normal(size=(c_out, c_in // groups, *ks))
    x = rng.normal(size=(3, c_in, *hw))
    f = torch.nn.functional.conv2d if len(hw) == 2 else torch.nn.functional.conv1d
    y = f(torch.tensor(x), torch.tensor(k), stride=stride, padding=pad, dilation=dil,
          groups=groups).numpy()
    w, g = conv.conv_coupling(k, hw, stride=stride, padding=pad, dilation=dil, groups=groups)
    assert w.shape == (c_in * np.prod(hw), y[0].size) and w.dtype == np.float64
    assert g.out_shape == y.shape[1:]
    np.testing.assert_allclose(x.reshape(3, -1) @ w, y.reshape(3, -1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding", ["SAME", "VALID", ((1, 0), (2, 1))])
@pytest.mark.parametrize("stride", [1, 2])
def test_matches_lax_conv_channels_last(padding, stride):
    """Keras/Flax storage (kh, kw, C_in, C_out) and NHWC flattening, against lax."""
    rng = _rng(2)
    k = rng.normal(size=(3, 2, 3, 5)).astype(np.float32)
    x = rng.normal(size=(2, 7, 6, 3)).astype(np.float32)
    y = jax.lax.conv_general_dilated(jnp.asarray(x), jnp.asarray(k), (stride, stride), padding,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     precision=jax.lax.Precision.HIGHEST)
    w, g = conv.conv_coupling(k, (7, 6), stride=stride, padding=padding, kernel_layout="keras")
    assert g.channels == "last" and g.out_shape == y.shape[1:]
    np.testing.assert_allclose(x.reshape(2, -1) @ w, np.asarray(y).reshape(2, -1),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_same_padding_matches_torch_same():
    torch = pytest.importorskip("torch")
    rng = _rng(3)
    k, x = rng.normal(size=(2, 3, 4, 3)), rng.normal(size=(1, 3, 6, 6))
    y = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(k), padding="same").numpy()
    w, _ = conv.conv_coupling(k, (6, 6), padding="same")
    np.testing.assert_allclose(x.reshape(1, -1) @ w, y.reshape(1, -1), rtol=1e-12, atol=1e-12)


def test_block_against_unrolled_identity_basis():
    """Dense reference: apply the conv to every basis vector e_i (row i of W is conv(e_i))."""
    rng = _rng(4)
    k = rng.normal(size=(3, 2, 3, 3))
    w, g = conv.conv_coupling(k, (5, 4), stride=2, padding=1)
    ref = np.asarray(conv.conv_matvec(k, g, jnp.eye(g.in_size, dtype=jnp.float32)))
    np.testing.assert_allclose(w, ref, atol=1e-5)
    assert np.count_nonzero(w) == np.count_nonzero(np.abs(ref) > 1e-7)


@pytest.mark.parametrize("channels", ["first", "last"])
def test_matrix_free_products_match_block(channels):
    rng = _rng(5)
    k = rng.normal(size=(4, 3, 3, 2)).astype(np.float32)
    w, g = conv.conv_coupling(k, (6, 5), stride=(2, 1), padding=1, channels=channels)
    x = rng.normal(size=(2, g.in_size)).astype(np.float32)
    y = rng.normal(size=(2, g.out_size)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(conv.conv_matvec(k, g, x)), x @ w, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(conv.conv_rmatvec(k, g, y)), y @ w.T, rtol=1e-4, atol=1e-4)
    jitted = jax.jit(lambda v: conv.conv_matvec(k, g, v))
    np.testing.assert_allclose(np.asarray(jitted(x)), x @ w, rtol=1e-4, atol=1e-4)


def test_bias_broadcast_follows_flattening():
    torch = pytest.importorskip("torch")
    rng = _rng(6)
    k, b, x = rng.normal(size=(3, 2, 2, 2)), rng.normal(size=3), rng.normal(size=(1, 2, 4, 4))
    y = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(k), torch.tensor(b)).numpy()
    w, g = conv.conv_coupling(k, (4, 4))
    np.testing.assert_allclose(x.reshape(1, -1) @ w + conv.conv_bias(b, g), y.reshape(1, -1),
                               rtol=1e-12, atol=1e-12)
    g_last = g._replace(channels="last")
    assert np.array_equal(conv.conv_bias(b, g_last)[:3], b)


def test_size_guard_and_bad_arguments():
    k = np.zeros((8, 8, 3, 3), np.float32)
    with pytest.raises(conv.ConvSizeError, match=r"conv7.*max_bytes"):
        conv.conv_coupling(k, (64, 64), max_bytes=1 << 20, name="conv7")
    with pytest.raises(ValueError, match="empty output"):
        conv.conv_coupling(k, (2, 2))
    with pytest.raises(ValueError, match="circular"):
        conv.conv_coupling(k, (5, 5), padding="circular")
    with pytest.raises(ValueError, match="groups"):
        conv.conv_coupling(np.zeros((3, 1, 2, 2)), (4, 4), groups=2)
    with pytest.raises(ValueError, match="1-D"):
        conv.conv_coupling(np.zeros((2, 2, 2, 2, 2)), (4, 4, 4))
