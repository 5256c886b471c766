"""experiments/common.py (the scripts' shared glue) and the figure writers that use it."""

import numpy as np
import pytest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG_MAGIC


def test_use_precision_switches_jax_and_returns_the_dtype():
    import jax
    import jax.numpy as jnp
    from experiments.common import use_precision
    before = jax.config.jax_enable_x64
    try:
        jax.config.update("jax_enable_x64", False)
        assert use_precision(False) is np.float32 and jnp.zeros(1).dtype == jnp.float32
        assert use_precision(True) is np.float64 and jnp.zeros(1).dtype == jnp.float64
    finally:
        jax.config.update("jax_enable_x64", before)


def test_save_figure_writes_png_and_closes(tmp_path):
    from experiments.common import pyplot, save_figure
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, str(tmp_path / "a.png"), dpi=50)
    assert _is_png(tmp_path / "a.png")
    assert fig.number not in plt.get_fignums()


def test_end_point_panels_say_no_data(tmp_path):
    """Figs. 5 / 7 without analysis outputs: one 'no data' panel per net kind, nothing made up."""
    from experiments import figures
    assert figures.fig5(str(tmp_path), str(tmp_path / "f5.png")) == {}
    assert figures._spectrum_fig(str(tmp_path), str(tmp_path / "f7.png"), "1e-4", "tap_spectrum",
                                 "x", "Fig. 7") == {}
    assert _is_png(tmp_path / "f5.png") and _is_png(tmp_path / "f7.png")
    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 2)
    got = list(figures._end_panels(axes, str(tmp_path), "1e-4", "curves"))
    assert [(k, e) for _, k, _, e in got] == [(k, None) for k in figures.KINDS]
    assert all("no data" in ax.texts[0].get_text() for ax in axes)
    plt.close(fig)


def test_attribution_and_sgtrain_plots(tmp_path):
    from experiments import attribution, sgtrain
    from tapjax.melting import RunAttribution
    rng = np.random.default_rng(0)
    pn = [rng.random((2, n)) for n in (784, 6, 3)]
    ra = RunAttribution(t=np.array([0.0, 1.0]), step=np.array([0, 10]), val_error=np.array([0.9, 0.5]),
                        T_c=np.array([2.0, 2.5]), slope=np.array([0.0, -1.0]), gap=np.array([0.1, 0.2]),
                        quantity=["lambda_star", "T_c"], per_neuron=pn, per_layer=rng.random((2, 2)),
                        threshold=0.3, threshold_beta=0.5, paths=["a", "b"])
    attribution.plot(ra, str(tmp_path / "att.png"))
    assert _is_png(tmp_path / "att.png")
    s = attribution.summarize(ra)
    assert s["rows"][1]["per_layer_share"] == pytest.approx(list(ra.per_layer[1] / ra.per_layer[1].sum()))
    rows = [{"task": "diabetes", "depth": 1, "method": m, "curve": [3.0, 2.0, 1.5]} for m in ("anneal", "exact")]
    summary = [{"task": "diabetes", "depth": 1, "method": m, "val_loss": (1.0, 0.1)} for m in ("anneal", "exact")]
    sgtrain.plot(rows, summary, str(tmp_path / "sg.png"))
    assert _is_png(tmp_path / "sg.png")


def test_loss_reading_fit_cells():
    """The exponent / break cells of the loss-reading table (value [CI], z against the seeds)."""
    from experiments.loss_reading import _fit_cells
    ok = {"fits": {"T_c": {"same_breaks": {"exponents": [0.12345, 0.5], "bootstrap_exponent_ci": [[0.1, 0.2], [0.4, 0.6]],
                                           "breaks": [12.34], "breaks_ci": [[10.0, 15.0]]},
                           "vs_ww": {"exponents": [{"z": 1.25, "in_one_seed_interval": True}, {"z": None}],
                                     "breaks": [{"z": -3.0, "in_one_seed_interval": False}]}}}}
    bad = {"fits": {"T_c": {"same_breaks": {"error": "too few points"}, "vs_ww": {}}}}
    assert _fit_cells([ok, bad], "T_c", "exponents", "bootstrap_exponent_ci", 0, 3, None) == [
        "0.123 [0.100, 0.200], z = +1.2 (inside)", "too few points"]
    assert _fit_cells([ok, bad], "T_c", "exponents", "bootstrap_exponent_ci", 1, 3, None)[0] == \
        "0.500 [0.400, 0.600], —"
    assert _fit_cells([ok, bad], "T_c", "breaks", "breaks_ci", 0, 1, "—") == [
        "12.3 [10.0, 15.0], z = -3.0 (**outside**)", "—"]
