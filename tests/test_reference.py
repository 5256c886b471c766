"""The §3.2 reference rule (tapjax.reference) on small random nets, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tapjax import msk, tap
from tapjax.reference import (Reference, ReferenceRangeError, auto_kind, beta_range, measured_scales,
                              shuffled_couplings)
from tapjax.spin_model import couplings, random_couplings

SIZES = (40, 30, 30, 10)


@pytest.fixture
def net(x64):
    return random_couplings(jax.random.PRNGKey(1), SIZES, 2.0, dtype=jnp.float64)


def torch_like(sizes, seed=0):
    """PyTorch's default nn.Linear init: U(−1/√fan_in, 1/√fan_in), i.e. C = 1/3."""
    rng = np.random.default_rng(seed)
    return couplings([rng.uniform(-1, 1, (a, b)) / np.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:])],
                     dtype=jnp.float64)


def test_init_equals_todays_threshold(net):
    betas = np.linspace(0.0, 2.0 * msk.critical_beta(SIZES, 2.0), 65)[1:]
    old = tap.reference_threshold(net, betas, "dense")
    new = Reference(kind="init", betas=tuple(betas), backend="dense").compute(net)
    assert new.kind == "init" and new.threshold_spread == 0.0
    assert new.threshold == old.value and new.beta_star == old.beta
    # the default grid (measured C, 48 points) finds the same polished minimum
    d = Reference(kind="init", backend="dense")(net)
    assert d.threshold == pytest.approx(old.value, abs=1e-7)
    assert d.beta_star == pytest.approx(old.beta, rel=1e-3)


def test_beta_range_uses_measured_scale(x64):
    c = torch_like(SIZES)
    C = measured_scales(c)
    np.testing.assert_allclose(C, 1 / 3, rtol=0.1)
    for kind in ("msk", "init"):
        r = Reference(kind=kind, backend="dense").compute(c)
        assert r.beta_range == pytest.approx(2.0 * msk.critical_beta(SIZES, C), rel=1e-12)
        # around the MSK β_c of C = 1/3, far from the assumed C = 2 one (√6 = 2.45x smaller)
        assert r.beta_range == pytest.approx(2.0 * msk.critical_beta(SIZES, 1 / 3), rel=0.1)
        assert r.info["analytic_beta_c"] > 2.0 * msk.critical_beta(SIZES, 2.0)
    r = Reference(kind="init", backend="dense").compute(c)
    assert 0 < r.beta_star < r.beta_range and r.info["extensions"] == []
    assert r.beta_star == pytest.approx(msk.critical_beta(SIZES, C), rel=0.3)


def test_msk_kind_is_analytic(net):
    r = Reference(kind="msk").compute(net)
    assert r.threshold == 0.0 and r.threshold_spread == 0.0
    assert r.beta_star == pytest.approx(msk.critical_beta(SIZES, measured_scales(net)), rel=1e-12)
    assert r.per_layer_C == tuple(measured_scales(net))


def test_edge_of_range_extends_or_raises(net):
    full = Reference(kind="init", backend="dense").compute(net)
    short = tuple(np.linspace(0.0, 0.7 * full.beta_star, 33)[1:])    # minimum beyond the grid
    with pytest.raises(ReferenceRangeError, match="last grid point.*extension is disabled"):
        Reference(kind="init", betas=short, backend="dense", max_extensions=0).compute(net)
    r = Reference(kind="init", betas=short, backend="dense").compute(net)
    assert len(r.info["extensions"]) == 1 and r.info["extensions"][0]["edge"] == "last"
    assert r.beta_star == pytest.approx(full.beta_star, rel=1e-3)
    assert r.threshold == pytest.approx(full.threshold, abs=1e-7)
    assert r.beta_range >= 1.4 * full.beta_star - 1e-12
    with pytest.raises(ReferenceRangeError, match="after 1 automatic extension"):
        Reference(kind="init", betas=tuple(np.linspace(0.0, 0.3 * full.beta_star, 17)[1:]),
                  backend="dense", max_extensions=1).compute(net)


def test_null_models(net):
    init = Reference(kind="init", backend="dense").compute(net)
    for kind in ("shuffled", "gaussian"):
        r = Reference(kind=kind, num_seeds=3, backend="dense").compute(net)
        assert r.kind == kind and len(r.info["seed_thresholds"]) == 3
        assert r.threshold == pytest.approx(np.mean(r.info["seed_thresholds"]))
        assert r.threshold_spread == pytest.approx(np.std(r.info["seed_thresholds"], ddof=1))
        assert r.threshold_spread > 0
        # a random net is its own null model: same λ* and β* up to finite-size fluctuations
        assert abs(r.threshold - init.threshold) < 0.5 * init.threshold + 3 * r.threshold_spread
        assert r.beta_star == pytest.approx(init.beta_star, rel=0.15)
    s = shuffled_couplings(net, jax.random.PRNGKey(3))
    for a, b in zip(s.weights, net.weights):
        np.testing.assert_array_equal(np.sort(np.asarray(a).ravel()), np.sort(np.asarray(b).ravel()))
        assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_auto_kind():
    assert auto_kind(0.0, 5, True)[0] == "init"
    assert auto_kind(0.0, 3, False)[0] == "init"
    assert auto_kind(0.0, 1, False)[0] == "shuffled"     # a lone foreign snapshot
    kind, why = auto_kind(3.0, 4, False)
    assert kind == "shuffled" and "no t = 0" in why
    assert auto_kind(float("nan"), 4, True)[0] == "shuffled"


def test_bad_arguments(net):
    with pytest.raises(ValueError, match="kind"):
        Reference(kind="flat")
    with pytest.raises(ValueError, match="range_factor"):
        Reference(range_factor=1.0)
    with pytest.raises(ValueError, match="betas"):
        Reference(betas=(0.3, 0.2, 0.1))
    flat = couplings([np.ones((4, 3)), np.ones((3, 2))])
    with pytest.raises(ValueError, match=r"W\^\(1\).*constant"):
        beta_range(flat)


def test_beta_grid_is_the_section_3_2_grid():
    from tapjax.reference import Reference, beta_grid
    g = beta_grid(2.0, 4)
    np.testing.assert_array_equal(g, [0.5, 1.0, 1.5, 2.0])           # β = 0 (I − M = I) left out
    np.testing.assert_array_equal(Reference(num_betas=7).grid(3.5), beta_grid(3.5, 7))
    for bad in ((0.0, 4), (-1.0, 4), (float("nan"), 4), (2.0, 0)):
        with pytest.raises(ValueError, match="beta_grid: need beta_max > 0"):
            beta_grid(*bad)
