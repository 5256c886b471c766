"""End-to-end: the ``tiny`` preset of experiments/reproduce.py (train → analyze → figures →
fits → Table 1 → claims) on the embedded data, then a resumed re-run over the same runs."""

import json
import os

import numpy as np
import pytest

from experiments import figures as figures_lib
from experiments import reproduce as reproduce_lib
from tapjax.analysis import load_analysis

pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("reproduce") / "tiny")
    summary = reproduce_lib.reproduce("tiny", out, progress=False)
    return out, summary


def _json(path):
    with open(path) as f:
        return json.load(f)


def test_every_figure_is_a_png(tiny):
    out, summary = tiny
    names = list(figures_lib.FIGURE_FILES.values()) + ["fig3_msk.png", "fits.png"]
    for name in names:
        path = os.path.join(out, "figures", name)
        assert os.path.getsize(path) > 5000, name
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC, name
    assert set(summary["figures"]) >= {"fig3", "fig4", "fig5", "fig6", "fig7", "fig8", "fig9", "fits"}


def test_training_runs_complete(tiny):
    out, summary = tiny
    preset = reproduce_lib.PRESETS["tiny"]
    for name in figures_lib.CONFIG_NAMES:
        hist = _json(os.path.join(out, "runs", name, "history.json"))
        assert len(hist) == preset["epochs"][name]
        t = np.array([h["t"] for h in hist])
        assert np.all(np.diff(t) > 0)
        assert all(0.0 <= h["val_error"] <= 1.0 for h in hist)
        assert summary["train"][name]["epochs_done"] == preset["epochs"][name]


@pytest.mark.parametrize("name", figures_lib.CONFIG_NAMES)
def test_analysis_tables(tiny, name):
    out, _ = tiny
    a = load_analysis(os.path.join(out, "analysis", name))
    t = a["t"]
    n_ckpt = len(os.listdir(os.path.join(out, "runs", name, "checkpoints")))
    assert t.shape == (n_ckpt,) and t[0] == 0.0 and np.all(np.diff(t) > 0)
    for key in ("val_error", "beta_c", "T_c", "lambda_max_J", "lambda_min_R", "level_spacing"):
        assert a[key].shape == t.shape, key
        assert np.all(np.isfinite(a[key])), (key, a[key])
    assert np.all(a["T_c"] > 0) and np.all(a["lambda_max_J"] > 0) and np.all(a["lambda_min_R"] > 0)
    np.testing.assert_allclose(a["T_c"] * a["beta_c"], 1.0, rtol=1e-6)
    rows = a["json"]["rows"]
    assert len(rows) == n_ckpt and a["json"]["analytic_T_c"] > 0

    e = load_analysis(os.path.join(out, "analysis", name + "_ends"))
    n_spins = sum(a["json"]["info"]["sizes"])
    nb = reproduce_lib.PRESETS["tiny"]["num_betas"]
    np.testing.assert_array_equal(e["t"], t[[0, -1]])
    assert e["betas"].shape == (nb,) and np.all(np.diff(e["betas"]) > 0)
    assert e["curves"].shape == (2, nb) and np.all(np.isfinite(e["curves"]))
    # I − M = I − βJ + β²R with R ≥ 0:  1 − β λ_max(J) ≤ λ_min(I − M) < 1 at small β
    b0 = e["betas"][0]
    assert 1 - b0 * a["lambda_max_J"][0] - 1e-3 <= e["curves"][0, 0] < 1
    assert e["tap_spectra"].shape == (2, n_spins) and np.all(np.isfinite(e["tap_spectra"]))
    assert e["bond_spectra"].shape == (2, n_spins) and np.all(np.isfinite(e["bond_spectra"]))
    # J is bipartite: its spectrum is symmetric about zero
    np.testing.assert_allclose(np.sort(e["bond_spectra"][1]), -np.sort(e["bond_spectra"][1])[::-1], atol=1e-3)


def test_fig3_data(tiny):
    out, _ = tiny
    d = _json(os.path.join(out, "figures", "fig3_msk.json"))
    b, h, lam = (np.array(d[k]) for k in ("betas", "hessian_lambda_min", "tap_lambda_min"))
    assert b.shape == h.shape == lam.shape and np.all(np.diff(b) > 0)
    assert np.all(np.isfinite(h)) and np.all(np.isfinite(lam))
    # the analytic Hessian's least eigenvalue vanishes at the analytic β_c
    np.testing.assert_allclose(d["hessian_zero_beta"], d["analytic_beta_c"], rtol=2e-2)
    assert b[0] < d["tap_min_beta"] < b[-1]


def test_figure_data_time_axes(tiny):
    out, _ = tiny
    d = _json(os.path.join(out, "figures", "figures.json"))["data"]
    assert set(d["fig4"]) == {"binarized_lr1e-4", "standard_lr1e-4"}
    for series in d["fig4"].values():
        t = np.array(series["t"])
        assert t[0] == 0.0 and np.all(np.diff(t) > 0)
        assert np.all(np.isfinite(series["val_error"]))
    for fig in ("fig6", "fig8"):
        assert len(d[fig]) == 2
        for series in d[fig].values():
            assert np.all(np.diff(series["t"]) > 0)
            assert len(series["T_c"]) == len(series["t"]) == len(series["level_spacing"])


def test_fits_table_claims(tiny):
    out, summary = tiny
    fits_doc = _json(os.path.join(out, "fits.json"))
    assert set(fits_doc["runs"]) == set(figures_lib.CONFIG_NAMES)
    for r in fits_doc["runs"].values():
        for q in ("T_c", "lambda_max_J"):
            f = r[q]
            assert f["ok"], f
            assert f["n_before"] >= 3 and f["n_after"] >= 3
            assert r["val_error"]["t"][0] <= f["t_break"] <= r["t_max"]
            assert all(np.isfinite(f["exponents"]))
        assert r["lambda_min_R_max_rel_change"] >= 0
    rows = _json(os.path.join(out, "table1.json"))
    assert [r["config"] for r in rows] == list(figures_lib.CONFIG_NAMES)
    for r in rows:
        assert r["status"] == "complete" and 0 <= r["val_error"] <= 1
        assert r["paper_val_error"] in (0.0266, 0.0742, 0.0189, 0.0267)
    with open(os.path.join(out, "table1.md")) as f:
        assert f.read().count("\n") == 6
    claims = _json(os.path.join(out, "claims.json"))
    assert len(claims) == 7
    assert all(c["verdict"] in ("reproduced", "partly", "not reproduced", "not tested") for c in claims)
    assert summary["verdicts"] == {c["claim"]: c["verdict"] for c in claims}


def test_rerun_skips_finished_work_and_reads_runs_root(tiny):
    out, _ = tiny
    runs_root = os.path.join(out, "runs")
    stamp = {n: os.path.getmtime(os.path.join(runs_root, n, "config.json")) for n in figures_lib.CONFIG_NAMES}
    s = reproduce_lib.reproduce("tiny", out, runs_root=runs_root, progress=False)
    for name in figures_lib.CONFIG_NAMES:
        assert s["runs"][name]["read_only"]
        assert "skipped" in s["train"][name]
        assert s["analysis"][name]["skipped"]
        assert os.path.getmtime(os.path.join(runs_root, name, "config.json")) == stamp[name]
    assert s["seconds"]["train"] < 5 and s["seconds"]["analyze"] < 5


def test_incremental_analysis_of_a_growing_run(tiny, tmp_path):
    """Analyzing a run, then again after more checkpoints appear, equals one full analysis."""
    import shutil
    from experiments import analyze as analyze_lib
    out, _ = tiny
    src = os.path.join(out, "runs", "standard_lr1e-4")
    run = tmp_path / "run"
    shutil.copytree(src, run)
    ck = sorted(os.listdir(run / "checkpoints"))
    held = tmp_path / "held"
    held.mkdir()
    for name in ck[5:]:
        shutil.move(str(run / "checkpoints" / name), str(held / name))
    nb = reproduce_lib.PRESETS["tiny"]["num_betas"]
    prefix = str(tmp_path / "an")
    r1 = analyze_lib.analyze_workdir(str(run), prefix, num_betas=nb, progress=False)
    assert not r1["skipped"] and len(load_analysis(prefix)["t"]) == 5
    for name in ck[5:]:
        shutil.move(str(held / name), str(run / "checkpoints" / name))
        os.utime(run / "checkpoints" / name)      # newer than the first analysis
    r2 = analyze_lib.analyze_workdir(str(run), prefix, num_betas=nb, progress=False)
    assert not r2["skipped"]
    inc = load_analysis(prefix)
    full = load_analysis(os.path.join(out, "analysis", "standard_lr1e-4"))
    np.testing.assert_array_equal(inc["t"], full["t"])
    for key in ("T_c", "lambda_max_J", "lambda_min_R", "level_spacing"):
        np.testing.assert_allclose(inc[key], full[key], rtol=1e-5, err_msg=key)
    assert analyze_lib.analyze_workdir(str(run), prefix, num_betas=nb, progress=False)["skipped"]


def test_merge_rejects_a_different_threshold():
    from experiments import analyze as analyze_lib
    from tapjax.analysis import Analysis
    mk = lambda thr, ts: Analysis(*(np.asarray(ts, float) for _ in range(7)), threshold=thr,
                                  analytic_beta_c=0.5)
    merged = analyze_lib.merge_analyses(mk(0.1, [0, 1, 3]), mk(0.1, [0, 2, 3, 4]))
    np.testing.assert_array_equal(merged.t, [0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match="thresholds differ"):
        analyze_lib.merge_analyses(mk(0.1, [0]), mk(0.2, [0, 1]))


def test_analysis_curves_for_every_checkpoint(tiny, tmp_path):
    """--curves: λ_min(I − M(β)) on the grid for every checkpoint, consistent with β_c."""
    from experiments import analyze as analyze_lib
    out, _ = tiny
    run = os.path.join(out, "runs", "binarized_lr1e-4")
    nb = reproduce_lib.PRESETS["tiny"]["num_betas"]
    prefix = str(tmp_path / "an")
    analyze_lib.analyze_workdir(run, prefix, num_betas=nb, curves=True, ends=False, progress=False)
    a = load_analysis(prefix)
    assert a["curves"].shape == (len(a["t"]), nb) and np.all(np.isfinite(a["curves"]))
    assert a["json"]["info"]["settings"]["curves"] is True
    filled = {f["t"] for f in a["json"]["info"].get("beta_c_filled", [])}
    spacing = a["betas"][1] - a["betas"][0]
    for i, t in enumerate(a["t"]):
        hit = np.nonzero(a["curves"][i] <= a["threshold"] + 1e-6)[0]
        if i == 0 or t in filled or hit.size == 0:
            continue
        assert abs(a["betas"][hit[0]] - a["beta_c"][i]) <= 1.5 * spacing, (t, a["betas"][hit[0]], a["beta_c"][i])
