"""Multi-seed summaries (experiments/seeds.py) and the level-spacing comparison
(experiments/levels_compare.py) on three seeds of a tiny net trained in the test."""

import dataclasses
import json
import math
import os
import shutil

import numpy as np
import pytest

from experiments import levels_compare, seeds
from experiments.reproduce import subsample_pixels
from tapjax import analysis, spacing
from tapjax.data import load_embedded
from tapjax.models import ModelConfig
from tapjax.multirun import train_many
from tapjax.training import TrainConfig

EPOCHS = 5


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    d = load_embedded()
    d = dataclasses.replace(d, x_train=d.x_train[:640], y_train=d.y_train[:640],
                            x_val=d.x_val[:200], y_val=d.y_val[:200])
    d = subsample_pixels(d, 2)                                   # 14x14 inputs: N = 196 + 32 + 32 + 10
    cfgs = [TrainConfig(model=ModelConfig(kind="standard", input_dim=196, widths=(32, 32, 10)), lr=3e-3,
                        seed=s, epochs=EPOCHS, schedule="every", first_epoch_levels=2) for s in range(3)]
    wds = [str(root / "runs" / f"standard_seed{s}") for s in range(3)]
    train_many(cfgs, d, wds)
    doc = seeds.summarize_group("tiny", seeds.expand_group(str(root / "runs" / "standard_seed*")),
                                str(root / "analysis"), t_min=0.0, num_breaks=1, bootstrap=20,
                                num_betas=32, min_points=2, level_spacing=True)
    return root, wds, doc


def test_spread_closed_form():
    s = seeds.spread([1.0, 2.0, 3.0, None])
    assert s["n"] == 3 and s["dropped"] == 1
    assert s["mean"] == 2.0 and s["std"] == pytest.approx(1.0)
    q = 4.302652729911275                                        # t_{0.975, 2}
    np.testing.assert_allclose(s["mean_ci"], (2 - q / math.sqrt(3), 2 + q / math.sqrt(3)), rtol=1e-6)
    np.testing.assert_allclose(s["one_seed_interval"], (2 - q * math.sqrt(4 / 3), 2 + q * math.sqrt(4 / 3)),
                               rtol=1e-6)
    assert seeds.spread([np.nan])["n"] == 0


def test_fit_seeds_recovers_known_power_laws():
    """Synthetic T_c(t) = t^a1 before t_b and continuous t^a2 after, one exponent pair per seed."""
    t = np.concatenate([[0.0], np.logspace(0, 2, 30)])
    a1s, a2s, tb = [0.10, 0.12, 0.14], [0.05, 0.06, 0.04], 10.0
    fake = []
    for a1, a2 in zip(a1s, a2s):
        y = np.where(t < tb, t ** a1, tb ** (a1 - a2) * t ** a2)
        y[0] = 1.0
        fake.append({"t": t, "T_c": 2.0 * y})
    f = seeds.fit_seeds(fake, "T_c", t_min=1.0, bootstrap=10)
    assert f["num_breaks"] == 1 and f["bic_selected"] == [1, 1, 1]
    np.testing.assert_allclose(f["exponents"][0]["values"], a1s, atol=2e-3)
    np.testing.assert_allclose(f["exponents"][1]["values"], a2s, atol=2e-3)
    assert f["exponents"][0]["mean"] == pytest.approx(0.12, abs=2e-3)
    assert f["exponents"][0]["std"] == pytest.approx(0.02, abs=2e-3)
    np.testing.assert_allclose(f["breaks"][0]["values"], tb, rtol=0.1)
    assert f["last_exponent_smaller"] == [True, True, True]


def test_group_table_and_bands(group):
    root, wds, doc = group
    finals = []
    for wd in wds:
        with open(os.path.join(wd, "history.json")) as fh:
            finals.append(json.load(fh)[-1]["val_error"])
    tab = doc["table1"]
    assert tab["status"] == "complete" and tab["epochs_done"] == [EPOCHS] * 3
    assert tab["final_val_error"]["mean"] == pytest.approx(np.mean(finals))
    assert tab["final_val_error"]["std"] == pytest.approx(np.std(finals, ddof=1))
    assert len(set(finals)) > 1, "the seeds must differ"
    b = doc["bands"]["T_c"]
    a0 = analysis.load_analysis(str(root / "analysis" / "tiny" / "standard_seed0"))
    np.testing.assert_allclose(np.asarray(b["seeds"])[0], a0["T_c"])
    np.testing.assert_allclose(b["mean"], np.mean(b["seeds"], 0))
    assert np.all(np.asarray(b["min"]) <= np.asarray(b["mean"]))
    # T_c(0) of a random net sits near the analytic MSK value, for each seed
    for o in doc["observables"]:
        assert 0.8 < o["T_c0_over_analytic"] < 1.25
    f = doc["fits"]["T_c"]
    assert f["num_breaks"] == 1 and len(f["per_seed"]) == 3
    md = seeds.markdown(doc)
    assert "**tiny** — 3 seeds" in md and f"{np.mean(finals):.4f}" in md
    paths = seeds.write_group(doc, str(root / "out"), str(root / "fig"))
    assert all(os.path.exists(p) for p in paths)
    with open(paths[0]) as fh:
        assert json.load(fh)["table1"]["final_val_error"]["n"] == 3


def test_partial_run_is_labelled(group):
    root, wds, _ = group
    wd = str(root / "partial_seed9")
    shutil.copytree(wds[0], wd)
    cfg_path = os.path.join(wd, "config.json")
    with open(cfg_path) as fh:
        cfg = json.load(fh)
    cfg["epochs"] = 500
    with open(cfg_path, "w") as fh:
        json.dump(cfg, fh)
    st = seeds.run_status(wd)
    assert st["status"] == "partial" and st["epochs_done"] == EPOCHS and st["epochs_planned"] == 500
    assert seeds.seed_table([st, seeds.run_status(wds[1])])["status"] == "partial"
    with pytest.raises(ValueError, match="matches no run"):
        seeds.expand_group(str(root / "nothing_*"))


def test_levels_compare_on_tiny_run(group):
    root, wds, _ = group
    prefix = str(root / "analysis" / "tiny" / "standard_seed0")
    cache = str(root / "levels_spectra.npz")
    doc = levels_compare.compare_levels(wds[0], analysis_prefix=prefix, max_checkpoints=5, ks=(10, 20),
                                        spectra_cache=cache, progress=False)
    again = levels_compare.compare_levels(wds[0], analysis_prefix=prefix, max_checkpoints=5, ks=(10, 20),
                                          spectra_cache=cache, progress=False)
    assert json.dumps(again["rows"]) == json.dumps(doc["rows"])   # read back from the spectra cache
    a = analysis.load_analysis(prefix)
    assert len(doc["rows"]) == 5 and doc["N"] == 196 + 32 + 32 + 10
    by_t = dict(zip(a["t"].tolist(), a["level_spacing"].tolist()))
    for r in doc["rows"]:
        # reading (a) at T_c is today's s0/s_typ of the analysis
        assert r["median_Tc"] == pytest.approx(by_t[r["t"]], rel=1e-3)
        for k in ("r_IM_global", "r_J_global", "r_IM_low_k10", "r_J_top_k20"):
            assert 0.0 < r[k] < 1.0
        assert r["J_zero_modes"] == (196 + 32) - (32 + 10)        # |N_even - N_odd| for a 4-layer chain
    assert doc["fixed_betas"]["beta_final"] == pytest.approx(doc["rows"][-1]["beta_c"])
    # at beta = beta_c(last) the last checkpoint's readings equal its T_c readings
    last = doc["rows"][-1]
    assert last["median_beta_final"] == pytest.approx(last["median_Tc"], rel=1e-6)
    paths = levels_compare.write_outputs(doc, str(root / "out"), "tiny", str(root / "fig"), 20)
    assert all(os.path.exists(p) for p in paths)


def test_jump_summary():
    t = np.array([0.0, 0.1, 0.5, 1.0, 10.0])
    s = levels_compare.jump_summary(t, [1.0, 1.2, 5.0, 4.0, 2.0])
    assert s["early_jump"] and s["max_ratio_early"] == 5.0 and s["t_max_ratio_early"] == 0.5
    assert s["largest_jump_t"] == 0.5 and s["largest_jump_factor"] == pytest.approx(5.0 / 1.2)
    s = levels_compare.jump_summary(t, [1.0, 1.2, 1.5, 2.0, 9.0])
    assert not s["early_jump"] and s["max_ratio"] == 9.0
    assert levels_compare.jump_summary(t, [np.nan] * 5)["early_jump"] is None


def test_select_checkpoints():
    t = np.concatenate([[0, 1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2], np.arange(1, 61)])
    idx = levels_compare.select_checkpoints(t, 25)
    assert len(idx) <= 25 and idx[0] == 0 and idx[-1] == t.size - 1
    assert all(i in idx for i in range(8))                        # the whole first epoch
    assert spacing.R_POISSON < spacing.R_GOE
