"""T_c-aware training (tapjax.tc_regularizer + TrainConfig.tc_penalty): gradients, defaults, sign."""

import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tapjax import checkpoints as ckpt
from tapjax.data import Dataset, load_embedded
from tapjax.models import ModelConfig
from tapjax.multirun import check_compatible
from tapjax.tc_regularizer import (TcPenalty, choose_every_k, penalty_reference, penalty_target,
                                   penalty_value_and_grad)
from tapjax.training import TrainConfig, config_fingerprint, initial_params, train
from tapjax.models import weights_from_params


def _weights(seed, sizes, scale=1.0):
    rng = np.random.default_rng(seed)
    return [scale * rng.normal(0, np.sqrt(2.0 / a), (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]


def _pair():
    """A t = 0 net and a 'trained' one (rank-one growth): its λ_min dips below λ* transversally."""
    rng = np.random.default_rng(0)
    sizes = (12, 9, 7, 5)
    w0 = [rng.normal(0, np.sqrt(2 / a), (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    ws = [w + 0.3 * np.outer(rng.normal(size=w.shape[0]), rng.normal(size=w.shape[1])) / np.sqrt(w.shape[0])
          for w in w0]
    return w0, ws


def _params(ws):
    return {f"layer{i + 1}": {"kernel": w} for i, w in enumerate(ws)}


@pytest.fixture(scope="module")
def tiny_data():
    d = load_embedded()
    return Dataset(d.x_train[:320], d.y_train[:320], d.x_val[:200], d.y_val[:200], "embedded[:320]")


def _tiny_cfg(**kw):
    base = dict(model=ModelConfig(kind="standard", widths=(16, 16, 10)), lr=1e-4, epochs=2,
                schedule="every", first_epoch_levels=1)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("target", ["T_c", "lambda_min"])
def test_penalty_gradient_matches_finite_difference_float64(target):
    with jax.enable_x64(True):
        w0, ws = _pair()
        pen = TcPenalty(alpha=-0.7, target=target, beta0=0.5 if target == "lambda_min" else None,
                        backend="dense")
        ref = penalty_reference(pen, w0)
        p = jax.tree_util.tree_map(jnp.asarray, _params(ws))
        val, g = penalty_value_and_grad(pen, ref, p)
        assert np.isfinite(float(val))
        f = lambda q: float(pen.alpha * penalty_target(pen, ref, weights_from_params(q)))
        rng = np.random.default_rng(2)
        h = 1e-5
        for layer in ("layer1", "layer2", "layer3"):
            for _ in range(3):
                i, j = (int(rng.integers(n)) for n in p[layer]["kernel"].shape)
                up = jax.tree_util.tree_map(lambda x: x, p)
                dn = jax.tree_util.tree_map(lambda x: x, p)
                up[layer]["kernel"] = p[layer]["kernel"].at[i, j].add(h)
                dn[layer]["kernel"] = p[layer]["kernel"].at[i, j].add(-h)
                fd = (f(up) - f(dn)) / (2 * h)
                np.testing.assert_allclose(float(g[layer]["kernel"][i, j]), fd, rtol=1e-5, atol=1e-9)


def test_first_order_sign_of_tc_update():
    """One gradient step on α·T_c lowers T_c for α > 0 and raises it for α < 0 (first order)."""
    with jax.enable_x64(True):
        w0, ws = _pair()
        p = jax.tree_util.tree_map(jnp.asarray, _params(ws))
        for alpha in (1.0, -1.0):
            pen = TcPenalty(alpha=alpha, backend="dense")
            ref = penalty_reference(pen, w0)
            t0, g = penalty_value_and_grad(pen, ref, p)
            eta = 1e-4
            q = jax.tree_util.tree_map(lambda a, b: a - eta * b, p, g)
            t1 = penalty_target(pen, ref, weights_from_params(q))
            sq = sum(float(jnp.sum(x ** 2)) for x in jax.tree_util.tree_leaves(g))
            np.testing.assert_allclose(float(t1 - t0), -eta * sq / alpha, rtol=2e-2)
            assert np.sign(float(t1 - t0)) == -np.sign(alpha)


def test_default_none_is_todays_config(tmp_path, tiny_data):
    cfg = _tiny_cfg()
    d = cfg.to_dict()
    assert "tc_penalty" not in d
    # the fingerprint formula of the trainer before the field existed
    d.pop("epochs")
    assert config_fingerprint(cfg) == hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    r = train(cfg, tiny_data, str(tmp_path / "a"), progress=False)
    with open(tmp_path / "a" / "config.json") as f:
        assert "tc_penalty" not in json.load(f)
    assert all("penalty_f" not in row for row in r.history)


def test_zero_alpha_penalty_trains_like_plain(tmp_path, tiny_data):
    """α = 0 adds exactly zero (the search runs): same weights as tc_penalty=None, bit for bit."""
    plain = train(_tiny_cfg(epochs=1), tiny_data, str(tmp_path / "p"), progress=False)
    pen = TcPenalty(0.0, "lambda_min", beta0=0.3, every_k=4, backend="dense")
    zero = train(_tiny_cfg(epochs=1, tc_penalty=pen), tiny_data, str(tmp_path / "z"), progress=False)
    for a, b in zip(jax.tree_util.tree_leaves(plain.params), jax.tree_util.tree_leaves(zero.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.isfinite(zero.history[-1]["penalty_f"])


def test_config_roundtrip_fingerprint_and_refusals(tmp_path, tiny_data):
    pen = TcPenalty(-2.0, "lambda_min", beta0=0.3, every_k=5, backend="dense")
    cfg = _tiny_cfg(tc_penalty=pen)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert TrainConfig.from_dict(d) == cfg
    fps = {config_fingerprint(c) for c in (_tiny_cfg(), cfg,
                                            _tiny_cfg(tc_penalty=TcPenalty(2.0, "lambda_min", beta0=0.3,
                                                                           every_k=5, backend="dense")))}
    assert len(fps) == 3
    with pytest.raises(ValueError, match="beta0"):
        TcPenalty(1.0, "lambda_min")
    with pytest.raises(ValueError, match="every_k"):
        TcPenalty(1.0, every_k=0)
    with pytest.raises(ValueError, match="unknown tc_penalty"):
        TrainConfig.from_dict({**d, "tc_penalty": {**d["tc_penalty"], "beta": 1}})
    with pytest.raises(ValueError, match="tc_penalty"):
        check_compatible([cfg, cfg])
    train(_tiny_cfg(epochs=1), tiny_data, str(tmp_path / "r"), progress=False)
    with pytest.raises(ckpt.CheckpointError, match="tc_penalty"):
        train(cfg, tiny_data, str(tmp_path / "r"), progress=False)
    assert choose_every_k(1e-3, 0.1, 0.5) == 200


def test_penalty_resume_is_bit_identical(tmp_path, tiny_data):
    pen = TcPenalty(50.0, "lambda_min", beta0=0.3, every_k=3, backend="dense")
    cfg = _tiny_cfg(tc_penalty=pen)
    full = train(cfg, tiny_data, str(tmp_path / "full"), progress=False)
    train(cfg, tiny_data, str(tmp_path / "cut"), progress=False, stop_after_step=5)
    res = train(cfg, tiny_data, str(tmp_path / "cut"), progress=False)
    for a, b in zip(jax.tree_util.tree_leaves(full.params), jax.tree_util.tree_leaves(res.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert res.history == full.history
    assert all(np.isfinite(r["penalty_f"]) for r in full.history)


def test_positive_alpha_lowers_lambda_min_over_a_short_run(tmp_path, tiny_data):
    """α·λ_min(β₀): α > 0 pushes λ_min(β₀) below the α = 0 run's, α < 0 above (20 steps)."""
    ref = penalty_reference(TcPenalty(1.0, backend="dense", num_ref_betas=16),
                            weights_from_params(initial_params(_tiny_cfg())))
    vals = {}
    for alpha in (-200.0, 0.0, 200.0):
        pen = TcPenalty(alpha, "lambda_min", beta0=ref.beta, every_k=2, backend="dense")
        r = train(_tiny_cfg(epochs=2, tc_penalty=pen), tiny_data, str(tmp_path / f"a{alpha}"),
                  progress=False)
        vals[alpha] = float(penalty_target(pen, ref, weights_from_params(r.params)))
    assert vals[200.0] < vals[0.0] < vals[-200.0], vals


def test_tc_target_trains_from_t0_with_skip_flag(tmp_path, tiny_data):
    """The T_c penalty runs inside the jitted scan; tangential (NaN) steps at t = 0 are counted."""
    pen = TcPenalty(-1.0, "T_c", every_k=5, backend="dense", num_ref_betas=16, skip_nonfinite=True)
    cfg = _tiny_cfg(epochs=1, tc_penalty=pen)
    r = train(cfg, tiny_data, str(tmp_path / "tc"), progress=False)
    row = r.history[-1]
    assert 0 <= row["penalty_skipped"] <= 2
    assert row["penalty_threshold"] == pytest.approx(penalty_reference(
        pen, weights_from_params(initial_params(cfg))).threshold)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(r.params))
    assert row["penalty_f"] is None or np.isfinite(row["penalty_f"])
