import json

import jax.numpy as jnp
import numpy as np
import pytest

from tapjax import analysis, tap
from tapjax.data import load_embedded
from tapjax.models import ModelConfig
from tapjax.spin_model import couplings
from tapjax.training import TrainConfig, train


@pytest.fixture(scope="module")
def history():
    """A synthetic run: a random net plus a rank-one spike that grows with t."""
    import jax
    from conftest import spiked
    from tapjax.checkpoints import RunHistory
    from tapjax.spin_model import random_couplings
    c0 = random_couplings(jax.random.PRNGKey(0), (60, 40, 40, 40, 10))
    ts = np.array([0.0, 0.5, 1.0, 2.0, 4.0])
    cs = [c0] + [spiked(c0, 2.0 + s) for s in ts[1:]]
    weights = tuple(np.stack([np.asarray(c.weights[k]) for c in cs]) for k in range(4))
    return RunHistory(t=ts, step=np.arange(5), train_loss=np.ones(5), val_error=np.ones(5),
                      weights=weights, config={"model": {"init_scale": 2.0}}, paths=())


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(model=ModelConfig(kind="standard", widths=(32, 32, 10)), lr=1e-3, epochs=4,
                      schedule="every", first_epoch_levels=2)
    train(cfg, load_embedded().subset(1000, 200), str(d), progress=False)
    return str(d)


def test_analyze_trained_run(run_dir):
    a = analysis.analyze_run(run_dir, num_betas=64, progress=False)
    assert len(a.t) == 7 and np.all(np.diff(a.t) > 0)
    assert np.all(np.isfinite(a.T_c)) and np.all(np.isfinite(a.level_spacing))
    assert a.T_c[0] == pytest.approx(1 / a.analytic_beta_c, rel=0.15)   # init near MSK
    # λ_min(R) barely moves in a short run (paper: < 1.2 %); λ_max(J) grows
    assert np.all(np.abs(a.lambda_min_R / a.lambda_min_R[0] - 1) < 0.05)


def test_analyze_run_table(history, tmp_path):
    a = analysis.analyze_run(history, curves=True, keep_spectra=True, num_betas=128, lanczos_iter=60,
                             progress=False)
    T = len(a.t)
    assert T == 5 and np.all(np.diff(a.t) > 0)
    for arr in (a.beta_c, a.T_c, a.lambda_max_J, a.lambda_min_R, a.level_spacing):
        assert arr.shape == (T,) and np.all(np.isfinite(arr))
    assert a.curves.shape == (T, 128) and a.tap_spectra.shape == (T, 190)
    # t = 0: β_c is the minimum of its own curve, and that minimum is the threshold
    i0 = np.argmin(a.curves[0])
    assert abs(a.beta_c[0] - a.betas[i0]) <= 2 * (a.betas[1] - a.betas[0])
    assert a.threshold == pytest.approx(a.curves[0].min(), abs=2e-3)
    # every later β_c is where its λ_min curve first reaches the threshold
    for k in range(1, T):
        lam = tap.least_eigenvalue(couplings(history.weights_at(k)),
                                   np.array([a.beta_c[k]]), "dense")
        assert float(lam[0]) == pytest.approx(a.threshold, abs=5e-3)
        assert np.all(a.curves[k][a.betas < a.beta_c[k] - (a.betas[1] - a.betas[0])] > a.threshold)
    assert np.all(np.diff(a.T_c) > 0)      # a growing spike raises T_c
    # λ_max(J) matches the dense bond spectrum
    np.testing.assert_allclose(a.lambda_max_J, a.bond_spectra[:, -1], rtol=1e-4)
    npz, js = analysis.save_analysis(a, str(tmp_path / "an"))
    back = analysis.load_analysis(str(tmp_path / "an"))
    np.testing.assert_array_equal(back["T_c"], a.T_c)
    assert len(json.load(open(js))["rows"]) == T


def test_grid_and_bisection_agree(history):
    kw = dict(progress=False, level_spacing=False, num_betas=128, backend="dense")
    g = analysis.analyze_run(history, method="grid", **kw)
    b = analysis.analyze_run(history, method="bisection", **kw)
    spacing = g.analytic_beta_c * 2 / 128
    assert np.all(np.abs(g.beta_c[1:] - b.beta_c[1:]) <= spacing + 1e-6)


def test_float64_path(history, x64):
    a = analysis.analyze_run(history, indices=[0, 4], dtype=jnp.float64, progress=False, backend="dense",
                             num_betas=64)
    assert a.info["dtype"] == "float64" and np.all(np.isfinite(a.T_c))


def test_bad_method(history):
    with pytest.raises(ValueError, match="method"):
        analysis.analyze_run(history, method="guess", progress=False)


def test_batch_critical_betas_matches_per_run_search(history):
    """The batch mode (all runs' checkpoints in one sharded program, each with its run's own λ*
    and β*) gives what the plain root search gives per checkpoint with that λ* and hint."""
    import dataclasses as dc
    from tapjax import msk, recurrence, sharding, tap
    from tapjax.spin_model import couplings
    half = dc.replace(history, weights=tuple(w * np.float32(0.9) for w in history.weights))
    out = sharding.batch_critical_betas([history, half], num_betas=64, backend="dense")
    assert len(out) == 2
    for h, o in zip((history, half), out):
        c0 = couplings(h.weights_at(0))
        beta_max = 2.0 * msk.critical_beta(c0.sizes, 2.0)  # the batch mode's default range
        betas = np.linspace(0.0, beta_max, 65)[1:]
        curve = np.asarray(tap.least_eigenvalue(c0, betas, "dense"))
        assert o["threshold"] == pytest.approx(float(curve.min()), abs=1e-6)
        assert o["beta_c"][0] == pytest.approx(betas[np.argmin(curve)])
        for i in range(1, len(h)):
            ref = recurrence.critical_beta(couplings(h.weights_at(i)), o["threshold"], beta_max,
                                           hint=betas[np.argmin(curve)])
            assert o["beta_c"][i] == pytest.approx(ref, rel=1e-6)
        assert np.all(np.diff(o["T_c"]) > 0)  # the growing spike raises T_c
    # couplings scaled by 0.9 map M(β) to M(0.9 β): the untrained β* scales by 1/0.9 (grid-limited)
    assert out[1]["beta_c"][0] == pytest.approx(out[0]["beta_c"][0] / 0.9, rel=0.05)
