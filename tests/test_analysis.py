import json

import jax.numpy as jnp
import numpy as np
import pytest

from tapjax import analysis, spectra, tap
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
    from tapjax import recurrence, reference, sharding, tap
    from tapjax.spin_model import couplings
    half = dc.replace(history, weights=tuple(w * np.float32(0.9) for w in history.weights))
    out = sharding.batch_critical_betas([history, half], num_betas=64, backend="dense")
    assert len(out) == 2
    for h, o in zip((history, half), out):
        c0 = couplings(h.weights_at(0))
        # the batch mode's default range: the largest measured-C range of the runs (eq. 15)
        beta_max = max(reference.beta_range(couplings(r.weights_at(0)))[0] for r in (history, half))
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


# --------------------------------------------------------------------------- tapjax.analyze
def _history64(scales=(1.0, 1.0, 1.0, 1.0), t=(0.0, 0.5, 1.0, 2.0), spikes=(0.0, 2.0, 3.0, 4.0)):
    """A float64 series: a random 30-20-20-10 net, growing spikes, optional overall scales."""
    import jax
    from conftest import spiked
    from tapjax.checkpoints import RunHistory
    from tapjax.spin_model import random_couplings
    c0 = random_couplings(jax.random.PRNGKey(2), (30, 20, 20, 10), dtype=jnp.float64)
    cs = [c0 if s == 0 else spiked(c0, s) for s in spikes]
    ws = tuple(np.stack([np.asarray(c.weights[k]) * f for c, f in zip(cs, scales)]) for k in range(3))
    T = len(t)
    return RunHistory(t=np.asarray(t, float), step=np.arange(T), train_loss=np.ones(T),
                      val_error=np.linspace(0.9, 0.1, T), weights=ws, config={}, paths=(),
                      layer_names=("fc1", "fc2", "fc3"), info={"format": "test arrays"})


def test_analyze_batched_equals_per_checkpoint_loop(x64):
    from tapjax import recurrence
    from tapjax.reference import Reference
    h = _history64()
    ref = Reference(kind="init", backend="dense")
    a = analysis.analyze(h, ref, dtype=jnp.float64, batch_size=3, progress=False, rtol=1e-6,
                         per_layer=False)
    r = a.reference
    assert a.info["reference"] == "init" and a.crossing[0] == "reference"
    assert a.beta_c[0] == r["beta_star"] and a.threshold == r["threshold"]
    assert a.info["timings"]["T_c"]["chunks"] == 2          # one program, a padded second chunk
    for i in range(1, len(h)):
        c = couplings(h.weights_at(i), dtype=jnp.float64)
        bc = recurrence.critical_beta(c, r["threshold"], r["beta_range"], rtol=1e-6, hint=r["beta_star"])
        assert a.beta_c[i] == pytest.approx(bc, rel=1e-9)
        assert a.crossing[i] == "yes"
        ev = np.linalg.eigvalsh(np.asarray(tap.tap_matrix(c, a.beta_c[i])))
        assert ev[0] == pytest.approx(r["threshold"], abs=1e-4)      # λ_min reaches λ* at β_c
        g = np.diff(ev)
        assert a.level_spacing[i] == pytest.approx(g[0] / np.median(g), rel=1e-6)
        w = h.weights_at(i)
        r_min = min(np.min((w[0] ** 2).sum(1)), np.min((w[0] ** 2).sum(0) + (w[1] ** 2).sum(1)),
                    np.min((w[1] ** 2).sum(0) + (w[2] ** 2).sum(1)), np.min((w[2] ** 2).sum(0)))
        assert a.lambda_min_R[i] == pytest.approx(r_min, rel=1e-12)
    assert np.all(np.diff(a.T_c) > 0)


def test_chunk_programs_serve_every_series_length(x64):
    """A chunk is a buffer of batch_size snapshots looped over its first n (analysis._map_prefix):
    a series of 2 runs the programs compiled for one of 4, row for row with the same bits, and
    the loop equals ``lax.map`` bitwise (padding rows are not computed: zero)."""
    import jax
    from tapjax.reference import Reference
    from tapjax.spin_model import LayeredCouplings
    h = _history64()
    kw = dict(dtype=jnp.float64, batch_size=4, progress=False, rtol=1e-6, keep_spectra=True)
    ref = Reference(kind="init", backend="dense")
    full = analysis.analyze(h, ref, **kw)
    from tapjax import recurrence
    progs = (recurrence._critical_beta_search, analysis._bond, analysis._tap_matrices)
    sizes = [f._cache_size() for f in progs]
    part = analysis.analyze(h, ref, indices=(1, 2), **kw)
    assert [f._cache_size() for f in progs] == sizes
    for k in ("beta_c", "lambda_max_J", "lambda_min_R", "level_spacing", "tap_spectra"):
        np.testing.assert_array_equal(getattr(part, k), getattr(full, k)[1:3], err_msg=k)
    np.testing.assert_array_equal(part.layers.sigma_max, full.layers.sigma_max[1:3])

    ws = tuple(jnp.asarray(w) for w in h.weights)
    betas = jnp.asarray([0.3, 0.4, 0.5, 0.6])
    one = lambda a: jnp.linalg.eigvalsh(tap.tap_matrix(LayeredCouplings(tuple(a[0])), a[1]))
    want = jax.jit(lambda w, b: jax.lax.map(one, (w, b)))(ws, betas)
    got = np.asarray(analysis._chunk_spectra_device(ws, betas, 3))
    np.testing.assert_array_equal(got[:3], want[:3])
    assert not got[3].any()


def test_layer_table_against_numpy(x64):
    h = _history64()
    a = analysis.analyze(h, "msk", dtype=jnp.float64, progress=False, level_spacing=False)
    L = a.layers
    assert L.names == ("input", "fc1", "fc2", "fc3")
    np.testing.assert_array_equal(L.shapes, [[0, 30], [30, 20], [20, 20], [20, 10]])
    for i in range(len(h)):
        ws = h.weights_at(i)
        J = np.zeros((80, 80))
        off = np.cumsum([0, 30, 20, 20, 10])
        for k, w in enumerate(ws):
            J[off[k]:off[k + 1], off[k + 1]:off[k + 2]] = w
        J = J + J.T
        lam, V = np.linalg.eigh(J)
        v = V[:, -1]
        share = [np.sum(v[off[k]:off[k + 1]] ** 2) for k in range(4)]
        np.testing.assert_allclose(L.top_share[i], share, atol=1e-8)
        assert a.lambda_max_J[i] == pytest.approx(lam[-1], rel=1e-9)
        assert np.sum(L.top_share[i]) == pytest.approx(1.0)
        for k, w in enumerate(ws, start=1):
            assert L.sigma_max[i, k] == pytest.approx(np.linalg.svd(w, compute_uv=False)[0], rel=1e-10)
            assert L.frobenius[i, k] == pytest.approx(np.linalg.norm(w), rel=1e-12)
            assert L.C[i, k] == pytest.approx(w.shape[0] * np.var(w), rel=1e-10)
        assert np.isnan(L.sigma_max[i, 0])
    df = a.layers_to_pandas()
    assert len(df) == 4 * len(h) and list(df["name"][:4]) == ["input", "fc1", "fc2", "fc3"]


def test_no_crossing_rows_are_flagged(x64):
    from tapjax.reference import Reference
    # snapshot 2: couplings × 0.1 move its λ_min minimum to 10 β*, far beyond β_max
    h = _history64(scales=(1.0, 1.0, 0.1, 1.0))
    a = analysis.analyze(h, Reference(kind="init", backend="dense"), dtype=jnp.float64, progress=False)
    assert a.crossing[2] == "none ≤ β_max"
    assert np.isnan(a.beta_c[2]) and np.isnan(a.T_c[2]) and np.isnan(a.level_spacing[2])
    assert a.closest_margin[2] > 0.1 and np.isnan(a.closest_margin[1])
    assert list(a.crossing[[0, 1, 3]]) == ["reference", "yes", "yes"]
    df = a.to_pandas()
    assert df["crossing"].tolist() == list(a.crossing) and np.isnan(df["T_c"][2])
    assert a.rows()[2]["T_c"] is None and "no crossing" in a.info["errors"]["1.0"]
    assert "none" in a.summary().splitlines()[4]


def test_save_round_trip_pandas(x64, tmp_path):
    pd = pytest.importorskip("pandas")
    h = _history64(scales=(1.0, 1.0, 0.1, 1.0))
    a = analysis.analyze(h, "init", dtype=jnp.float64, progress=False)
    npz, js = analysis.save_analysis(a, str(tmp_path / "an"))
    files = analysis.table_paths(str(tmp_path / "an"))
    df = a.to_pandas()
    for back in (pd.read_json(files["table_json"]), pd.read_csv(files["csv"])):
        assert list(back.columns) == list(analysis.TABLE_COLUMNS)
        for k in ("t", "beta_c", "T_c", "lambda_max_J", "level_spacing", "val_error"):
            np.testing.assert_allclose(back[k].to_numpy(float), df[k].to_numpy(float), rtol=1e-12)
        assert back["crossing"].tolist() == df["crossing"].tolist()
    lay = pd.read_csv(files["layers_csv"])
    np.testing.assert_allclose(lay["sigma_max"].to_numpy(float), a.layers_to_pandas()["sigma_max"].to_numpy(float))
    d = analysis.load_analysis(str(tmp_path / "an"))
    np.testing.assert_array_equal(d["T_c"], a.T_c)
    assert list(d["crossing"]) == list(a.crossing)
    assert d["json"]["reference"]["kind"] == "init" and len(d["json"]["rows"]) == len(h)
    png = a.plot(str(tmp_path / "tc.png"))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_foreign_series_defaults_to_a_null_model(x64, capsys):
    import dataclasses as dc
    h = dc.replace(_history64(), t=np.array([3.0, 4.0, 5.0, 6.0]))
    a = analysis.analyze(h, dtype=jnp.float64, batch_size=2, progress=True, level_spacing=False)
    assert a.info["reference"] == "shuffled" and "no t = 0" in a.info["reference_why"]
    assert a.reference["threshold_spread"] > 0 and "reference" not in set(a.crossing)
    assert a.info["timings"]["T_c"]["chunks"] == 2
    err = capsys.readouterr().err
    assert "T_c" in err and "compile" in err
    s = a.summary()
    assert "'shuffled'" in s and len(s.splitlines()) == 2 + len(h)


def test_analyze_errors(history):
    with pytest.raises(ValueError, match="method"):
        analysis.analyze(history, method="guess", progress=False)
    with pytest.raises(ValueError, match="reference"):
        analysis.analyze(history, reference="flat", progress=False)
    with pytest.raises(ValueError, match="indices"):
        analysis.analyze(history, indices=[7], progress=False)
    with pytest.raises(ValueError, match="nothing to draw"):
        analysis.Analysis(*(np.full(2, np.nan) for _ in range(7)), threshold=0.1,
                          analytic_beta_c=0.5).plot()


def test_figures_single_run_mode(x64, tmp_path):
    from experiments import figures
    h = _history64()
    a = analysis.analyze(h, "init", dtype=jnp.float64, progress=False, per_layer=False)
    analysis.save_analysis(a, str(tmp_path / "run1"))
    res = figures.single_run_figures(str(tmp_path / "run1"), str(tmp_path / "figs"))
    assert set(res["files"]) == {"series", "val_error"} and "saved analysis" in res["source"]
    for p in res["files"].values():
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    back = analysis.read_analysis(str(tmp_path / "run1"))
    np.testing.assert_array_equal(back.T_c, a.T_c)
    assert list(back.crossing) == list(a.crossing) and back.reference["kind"] == "init"
    empty = analysis.Analysis(*(np.full(2, np.nan) for _ in range(7)), threshold=0.1, analytic_beta_c=0.5)
    analysis.save_analysis(empty, str(tmp_path / "empty"))
    with pytest.raises(figures.NothingToDraw, match="nothing to draw"):
        figures.single_run_figures(str(tmp_path / "empty"), str(tmp_path / "figs2"))
    with pytest.raises(figures.NothingToDraw, match="no such file"):
        figures.single_run_figures(str(tmp_path / "missing"), str(tmp_path / "figs2"))


# --------------------------------------------------------------------------- search outcomes, λ_max, scale
def _series(ws_list, t=None):
    from tapjax.checkpoints import RunHistory
    T = len(ws_list)
    ws = tuple(np.stack([np.asarray(w[k]) for w in ws_list]) for k in range(len(ws_list[0])))
    return RunHistory(t=np.arange(T, dtype=float) if t is None else np.asarray(t, float), step=np.arange(T),
                      train_loss=np.ones(T), val_error=np.ones(T), weights=ws, config={}, paths=(),
                      info={"format": "test arrays"})


def _dense_J(ws):
    sizes = [ws[0].shape[0]] + [w.shape[1] for w in ws]
    off = np.cumsum([0] + sizes)
    J = np.zeros((off[-1], off[-1]))
    for k, w in enumerate(ws):
        J[off[k]:off[k + 1], off[k + 1]:off[k + 2]] = w
    return J + J.T


def test_lambda_max_dense_on_low_rank_784_16_16_10():
    """784-16-16-10: J has rank ≤ 84 ≪ N = 826 (a Lanczos breakdown); auto → dense eigh, exact."""
    import jax
    from conftest import spiked
    from tapjax.spin_model import random_couplings
    c0 = random_couplings(jax.random.PRNGKey(3), (784, 16, 16, 10))
    h = _series([c0.weights, spiked(c0, 3.0).weights])
    a = analysis.analyze(h, "init", progress=False, level_spacing=False)
    assert "dense eigh" in a.info["methods"]["lambda_max_J"]
    for i in range(2):
        ws = [np.asarray(w, np.float64) for w in h.weights_at(i)]
        ev = np.linalg.eigvalsh(_dense_J(ws))
        assert a.lambda_max_J[i] == pytest.approx(ev[-1], rel=1e-5)
        for k, w in enumerate(ws, start=1):
            assert a.layers.sigma_max[i, k] == pytest.approx(np.linalg.svd(w, compute_uv=False)[0], rel=1e-5)
    assert np.all(np.isfinite(a.T_c))


def test_huge_weights_give_the_scaled_values():
    """One snapshot × 1e20 (float32: Σ w² ≈ 1e40 overflows): T_c, λ_max(J), λ_min(R), σ_max and C
    are the exact scaled values of the unscaled snapshot (M(β; sW) = M(sβ; W)), or a flag."""
    import jax
    from conftest import spiked
    from tapjax.spin_model import random_couplings
    c0 = random_couplings(jax.random.PRNGKey(4), (30, 20, 20, 10))
    c1 = spiked(c0, 3.0)
    s = 1e20
    h = _series([c0.weights, c1.weights, tuple(np.asarray(w) * np.float32(s) for w in c1.weights)])
    a = analysis.analyze(h, "init", progress=False)
    assert list(a.crossing) == ["reference", "yes", "yes"]
    assert a.T_c[2] == pytest.approx(s * a.T_c[1], rel=2e-4)
    assert a.lambda_max_J[2] == pytest.approx(s * a.lambda_max_J[1], rel=1e-5)
    assert a.lambda_min_R[2] == pytest.approx(s * s * a.lambda_min_R[1], rel=1e-5)
    np.testing.assert_allclose(a.layers.sigma_max[2, 1:], s * a.layers.sigma_max[1, 1:], rtol=1e-5)
    np.testing.assert_allclose(a.layers.C[2, 1:], s * s * a.layers.C[1, 1:], rtol=1e-4)
    assert a.level_spacing[2] == pytest.approx(a.level_spacing[1], rel=1e-2)


def test_search_status_is_flagged_never_a_number(history):
    """max_iter = 1: the refinement cannot reach rtol → β_c = NaN, crossing 'not converged'."""
    a = analysis.analyze(history, "init", progress=False, max_iter=1, rtol=1e-6, per_layer=False)
    assert a.crossing[0] == "reference"
    assert set(a.crossing[1:]) == {"not converged"}
    assert np.all(np.isnan(a.beta_c[1:])) and np.all(np.isnan(a.T_c[1:]))
    assert np.all(np.isnan(a.level_spacing[1:]))
    assert a.info["search_status"][1:] == ["MAX_ITER"] * 4
    assert all(r["T_c"] is None and r["crossing"] == "not converged" for r in a.rows()[1:])
    assert "MAX_ITER" in next(iter(a.info["search_errors"].values()))


def test_level_spacing_above_dense_max_spins_uses_levels(history):
    """N = 190 > a lowered dense_max_spins = 150: auto → tapjax.levels 'slq'; s0/s_typ agrees with
    the dense value within levels' stated error (s_typ rel. error S_TYP_REL_ERROR['slq'] plus s0's
    residual bound)."""
    from tapjax import levels
    kw = dict(progress=False, per_layer=False, indices=[0, 3])
    d = analysis.analyze(history, "init", **kw)
    a = analysis.analyze(history, "init", dense_max_spins=150, **kw)
    assert d.info["level_methods"] == ["dense", "dense"]
    assert a.info["level_methods"] == ["slq", "slq"] and "slq" in a.info["methods"]["level_spacing"]
    np.testing.assert_array_equal(a.beta_c, d.beta_c)
    tol = levels.S_TYP_REL_ERROR["slq"]
    for i in range(2):
        e = a.info["level_errors"][i]
        assert e["s_typ_rel_error"] == tol
        s0_rel = e["s0_error"] / e["s0"]                      # ≪ tol here
        assert a.level_spacing[i] == pytest.approx(d.level_spacing[i], rel=tol / (1 - tol) + s0_rel + 1e-3)
    with pytest.raises(ValueError, match="level_method"):
        analysis.analyze(history, "init", level_method="lanczos", **kw)


def test_level_precision_float64_default_and_dtype_opt_in(history):
    """The dense level spectra of a float32 series are float64 eigenvalues by default (equal to
    spectra.tap_levels of each snapshot at β_c); level_precision='dtype' keeps float32, within
    float32 noise of them, and info says which."""
    kw = dict(progress=False, per_layer=False, indices=[0, 3], keep_spectra=True)
    a = analysis.analyze(history, "init", **kw)
    f = analysis.analyze(history, "init", level_precision="dtype", **kw)
    assert a.tap_spectra.dtype == np.float64 and f.tap_spectra.dtype == np.float32
    assert "float64" in a.info["methods"]["level_spacing"] and "float32" in f.info["methods"]["level_spacing"]
    for i, t in enumerate((0, 3)):
        c = couplings(history.weights_at(t))
        np.testing.assert_array_equal(a.tap_spectra[i], spectra.tap_levels(c, np.float32(a.beta_c[i])))
        assert f.level_spacing[i] == pytest.approx(a.level_spacing[i], rel=1e-2)
    with pytest.raises(ValueError, match="level_precision"):
        analysis.analyze(history, "init", level_precision="float16", **kw)


def test_spacing_ratio_columns_against_direct(x64, tmp_path):
    """⟨r⟩ columns (issue 16): r_tap / r_tap_low from eigvalsh of I − M at β_c, r_bond from the
    positive half of J's spectrum (numpy, float64), and they reach rows, pandas and the CSV."""
    pd = pytest.importorskip("pandas")
    from tapjax import spacing
    h = _history64()
    a = analysis.analyze(h, "init", dtype=jnp.float64, progress=False, per_layer=False, spacing_ratio=True)
    assert a.columns[-3:] == analysis.RATIO_COLUMNS
    for i in range(len(h)):
        c = couplings(h.weights_at(i), dtype=jnp.float64)
        ev = np.linalg.eigvalsh(np.asarray(tap.tap_matrix(c, a.beta_c[i])))
        s = np.diff(ev)
        r = np.minimum(s[:-1], s[1:]) / np.maximum(s[:-1], s[1:])
        assert a.r_tap[i] == pytest.approx(r.mean(), rel=1e-8)
        assert a.r_tap_low[i] == pytest.approx(r[:48].mean(), rel=1e-8)
        jev = np.linalg.eigvalsh(_dense_J([np.asarray(w) for w in h.weights_at(i)]))
        assert a.r_bond[i] == pytest.approx(spacing.mean_spacing_ratio(spacing.positive_levels(jev)).mean,
                                            rel=1e-8)
    assert "r_tap" in a.rows()[1] and a.rows()[1]["r_bond"] == pytest.approx(a.r_bond[1])
    np.testing.assert_array_equal(a.to_pandas()["r_tap_low"].to_numpy(), a.r_tap_low)
    analysis.save_analysis(a, str(tmp_path / "an"))
    back = pd.read_csv(analysis.table_paths(str(tmp_path / "an"))["csv"])
    np.testing.assert_allclose(back["r_bond"].to_numpy(float), a.r_bond, rtol=1e-12)
    np.testing.assert_array_equal(analysis.read_analysis(str(tmp_path / "an")).r_tap, a.r_tap)
    plain = analysis.analyze(h, "init", dtype=jnp.float64, progress=False, per_layer=False, level_spacing=False)
    assert plain.columns == analysis.TABLE_COLUMNS and "r_tap" not in plain.rows()[0]


# --------------------------------------------------------------------------- experiments: missing rows, stale files
def test_claims_treat_no_crossing_rows_as_missing():
    """Rows without a crossing (T_c = NaN) are missing in the fits and claims: no crash, no fill,
    never a pass; the same after fits.json's NaN → null."""
    from experiments import fits as fits_lib, reproduce as rep
    t = np.array([0, .1, .2, .5, 1, 2, 4, 8, 16, 32.])
    tc = 1.0 + t ** 0.5
    tc[[3, 9]] = np.nan                                   # e.g. crossing "none ≤ β_max" / "not converged"
    s = np.where(t > .5, 8.0, 1.0)
    s[4] = np.nan
    a = {"t": t, "T_c": tc, "lambda_max_J": 2 + t ** 0.3, "lambda_min_R": np.ones(10), "level_spacing": s,
         "analytic_beta_c": np.asarray(1.0), "val_error": np.linspace(.5, .1, 10)}
    o = fits_lib.run_observables(a, None, bootstrap=10)
    assert o["T_c"]["ok"]                                # the fit runs on the finite rows
    rows = [{"config": "binarized_lr1e-4", "val_error": None, "paper_val_error": 0.0266, "status": "complete"}]
    for doc in ({"runs": {"binarized_lr1e-4": o, "binarized_lr1e-6": o}},
                fits_lib.jsonable({"runs": {"binarized_lr1e-4": o, "binarized_lr1e-6": o}})):
        claims = {c["claim"]: c for c in rep.evaluate_claims(doc, rows, "/nonexistent")}
        assert claims["Table 1 validation error rates (0.0266, 0.0742, 0.0189, 0.0267)"]["verdict"] == "not reproduced"
        tc_claim = claims["T_c grows as a power law, with a smaller exponent after the error plateaus"]
        assert tc_claim["verdict"] != "reproduced"       # T_c(t_last) is NaN: growth unknown
        assert tc_claim["evidence"]["binarized_lr1e-4"]["missing"] == ["T_c_growth"]
        assert tc_claim["evidence"]["binarized_lr1e-4"]["T_c_growth"] in (None,) or np.isnan(
            tc_claim["evidence"]["binarized_lr1e-4"]["T_c_growth"])


def test_analyze_workdir_recomputes_a_corrupt_output(run_dir, tmp_path):
    """A truncated .npz / garbage .json left by a killed run is recomputed with a note naming the
    file, whether it looks fresh (newer than the last checkpoint) or stale; reading one directly
    raises a CheckpointError naming it."""
    from experiments import analyze as an
    from tapjax.checkpoints import CheckpointError
    prefix = str(tmp_path / "an")
    kw = dict(num_betas=32, ends=False, progress=False)
    first = an.analyze_workdir(run_dir, prefix, **kw)
    assert "notes" not in first and an.analyze_workdir(run_dir, prefix, **kw)["skipped"]
    good = an._from_saved(prefix).T_c
    for ext, junk in ((".npz", None), (".json", b'{"rows": [')):
        path = prefix + ext
        data = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2] if junk is None else junk)
        with pytest.raises(CheckpointError, match=ext.replace(".", r"\.")):
            an._from_saved(prefix)
        out = an.analyze_workdir(run_dir, prefix, **kw)
        assert not out["skipped"] and path in out["notes"][0] and "recomputed" in out["notes"][0]
        back = an._from_saved(prefix)
        np.testing.assert_allclose(back.T_c, good, rtol=1e-6)
        assert path in back.info["recomputed"][0]


def test_a_foreign_snapshot_with_a_config_is_not_its_own_reference():
    """A loader may attach a config ({"module": "Sequential"}); only a tapjax run (format
    "tapjax…", or a TrainConfig with "model") defaults to the "init" reference."""
    import dataclasses as dc
    from tapjax.checkpoints import RunHistory
    rng = np.random.default_rng(3)
    ws = tuple(rng.normal(0, 0.2, (1, m, n)).astype(np.float32) for m, n in ((12, 8), (8, 4)))
    nan = np.full(1, np.nan)
    h = RunHistory(t=np.zeros(1), step=np.zeros(1, int), train_loss=nan, val_error=nan, weights=ws,
                   config={"module": "Sequential"}, paths=("net",), info={"format": "torch-module"})
    a = analysis.analyze(h, progress=False, level_spacing=False, per_layer=False)
    assert a.reference["kind"] == "shuffled"
    a = analysis.analyze(dc.replace(h, info={"format": "tapjax-run"}), progress=False,
                         level_spacing=False, per_layer=False)
    assert a.reference["kind"] == "init"


def test_host_eigvalsh_against_float64():
    """linalg.host_eigvalsh / eigvalsh_batch (the CPU dense-spectrum path) vs numpy float64."""
    import jax
    from tapjax import linalg
    rng = np.random.default_rng(3)
    a = rng.standard_normal((3, 40, 40))
    a = a + np.swapaxes(a, 1, 2)
    want = np.linalg.eigvalsh(a)
    got = linalg.host_eigvalsh(a.astype(np.float32))
    assert got.dtype == np.float32 and got.shape == (3, 40)
    np.testing.assert_allclose(got, want, atol=2e-5 * np.abs(want).max())
    np.testing.assert_allclose(np.asarray(jax.jit(linalg.eigvalsh_batch)(a.astype(np.float32))), got, rtol=0, atol=0)
    np.testing.assert_allclose(np.asarray(jax.vmap(linalg.eigvalsh_batch)(a.astype(np.float32))), got, rtol=0, atol=0)
    bad = a.astype(np.float32)
    bad[1, 3, 5] = np.inf
    out = linalg.host_eigvalsh(bad)
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()


def test_dense_spectra_phase_against_float64(x64):
    """The analysis' dense spectrum of I − M(β) (host LAPACK on CPU) equals float64 eigh."""
    rng = np.random.default_rng(4)
    ws = [rng.standard_normal((2, m, n)) / np.sqrt(m) for m, n in ((30, 20), (20, 20), (20, 5))]
    betas = np.array([0.3, 0.45])
    ev = analysis._chunk_spectra(ws, betas)
    for i in range(2):
        m = np.asarray(tap.tap_matrix(couplings([w[i] for w in ws]), betas[i]))
        np.testing.assert_allclose(ev[i], np.linalg.eigvalsh(m), rtol=0, atol=1e-12)


def test_lambda_max_lanczos_path_brackets_dense(x64, monkeypatch):
    """Above linalg.DENSE_MAX_SPINS λ_max(J) comes from spectra.bond_top: the dense value lies
    in [λ_max, λ_max + info['lambda_max_J_error']] (here forced on a small net)."""
    from tapjax import linalg
    from tapjax.spin_model import dense_bond_matrix
    monkeypatch.setattr(linalg, "DENSE_MAX_SPINS", 16)
    rng = np.random.default_rng(5)
    ws = [rng.standard_normal((40, 30)) / np.sqrt(40), rng.standard_normal((30, 20)) / np.sqrt(30),
          rng.standard_normal((20, 5)) / np.sqrt(20)]
    a = analysis.analyze(ws, reference="msk", level_spacing=False, progress=False, dtype=jnp.float64)
    assert "bond_top" in a.info["methods"]["lambda_max_J"]
    want = np.linalg.eigvalsh(np.asarray(dense_bond_matrix(couplings(ws))))[-1]
    err = a.info["lambda_max_J_error"][0]
    assert 0 <= err < 1e-5 * want
    assert a.lambda_max_J[0] - 1e-12 <= want <= a.lambda_max_J[0] + err + 1e-12


def test_precomputed_init_reference_does_not_label_another_net(x64):
    """A ReferenceResult of kind "init" computed from net A, used on net B alone: B's row is
    searched (never the β* shortcut of the reference snapshot)."""
    from tapjax.reference import Reference
    rng = np.random.default_rng(6)
    a = [rng.standard_normal((30, 20)) * np.sqrt(2 / 30), rng.standard_normal((20, 10)) * np.sqrt(2 / 20)]
    u = rng.standard_normal(30)
    v = rng.standard_normal(20)
    b = [a[0] + 1.5 * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v)), a[1]]
    ref = Reference("init").compute(couplings(a))
    got = analysis.analyze(b, reference=ref, level_spacing=False, progress=False)
    assert got.crossing[0] == "yes" and got.T_c[0] > 1.0 / ref.beta_star
    both = analysis.analyze([np.stack([x, y]) for x, y in zip(a, b)], reference="init",
                            level_spacing=False, progress=False)
    assert both.crossing[0] == "reference"
    np.testing.assert_allclose(got.T_c[0], both.T_c[1], rtol=1e-4)   # the search tolerance
