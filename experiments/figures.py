r"""Figures 4–9 of the paper from analyzed runs.

    python -m experiments.figures --analysis_dir=results/analysis --runs_root=results/runs \
        --out=results/figures

Reads ``ANALYSIS_DIR/<run>.{npz,json}`` and ``ANALYSIS_DIR/<run>_ends.{npz,json}`` written by
:mod:`experiments.analyze` and the per-epoch ``RUNS_ROOT/<run>/history.json``; ``<run>`` is one
of :data:`CONFIG_NAMES` (``binarized_lr1e-4`` ...). A missing run leaves its curves out and
the panel says so, so every figure file is always written.

* ``fig4_val_error.png``: validation error vs t (lr 1e-4);
* ``fig5_lambda_min.png``: λ_min(I − M) vs β before/after training (lr 1e-4);
* ``fig6_lr1e-4.png`` / ``fig8_lr1e-6.png``: T_c, λ_max(J), s0/s_typ vs t;
* ``fig7_tap_spectrum.png``: spectrum of I − M at T_c before/after (lr 1e-4);
* ``fig9_bond_spectrum.png``: spectral density of J before/after (lr 1e-4).

Time axes are symlog with a linear piece on [0, 1] (``linthresh=1``), as in the paper.

Single-run mode, for any run or network (not only the four paper configurations)::

    python -m experiments.figures --run=PATH --out=DIR

``PATH`` is an analysis prefix written by :mod:`experiments.analyze` (``PATH.npz`` + ``PATH.json``),
a run directory (its ``analysis.*`` if present, else analyzed now), or any source
:func:`tapjax.analyze` reads. Writes ``DIR/<name>_series.png`` (T_c, λ_max(J), s0/s_typ vs t,
:meth:`tapjax.analysis.Analysis.plot`) and ``DIR/<name>_val_error.png`` when the validation error
is known. Both modes exit non-zero with a message when there is nothing to draw.
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags

from .common import pyplot, save_figure
from tapjax import analysis as analysis_lib
from tapjax.analysis import load_analysis

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("analysis_dir", "results/analysis", "Directory of analysis outputs.")
    flags.DEFINE_string("runs_root", "results/runs", "Directory holding the run directories (for history.json).")
    flags.DEFINE_string("out", "results/figures", "Output directory for the PNGs.")
    flags.DEFINE_string("run", None, "Single-run mode: an analysis prefix, a run directory or any "
                        "network/series tapjax.analyze reads.")
    flags.DEFINE_enum("reference", "auto", ["auto", "init", "shuffled", "gaussian", "msk"],
                      "Reference of the §3.2 rule when --run has to be analyzed first.")


class NothingToDraw(ValueError):
    """No finite value to plot: the figure would be empty."""


KINDS = ("binarized", "standard")
LRS = ("1e-4", "1e-6")
CONFIG_NAMES = tuple(f"{k}_lr{lr}" for k in KINDS for lr in LRS)
COLORS = {"binarized": "C0", "standard": "C3"}


def config_name(kind: str, lr: str) -> str:
    return f"{kind}_lr{lr}"


def load_results(analysis_dir: str, name: str, ends: bool = False) -> dict | None:
    """Analysis arrays of run ``name`` (``_ends`` variant with ``ends``), or None if absent."""
    prefix = os.path.join(analysis_dir, name + ("_ends" if ends else ""))
    if not (os.path.exists(prefix + ".npz") and os.path.exists(prefix + ".json")):
        return None
    return load_analysis(prefix)


def load_history(workdir: str | None) -> list[dict] | None:
    if not workdir:
        return None
    path = os.path.join(workdir, "history.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def error_curve(analysis: dict | None, history: list[dict] | None) -> tuple[np.ndarray, np.ndarray]:
    """Validation error vs t: checkpoints inside the first epoch (and t = 0) plus every epoch."""
    ts, es = [], []
    if analysis is not None:
        for t, e in zip(analysis["t"], analysis["val_error"]):
            if np.isfinite(e) and (t < 1 or history is None):
                ts.append(float(t))
                es.append(float(e))
    if history:
        for h in history:
            if h.get("val_error") is not None:
                ts.append(float(h["t"]))
                es.append(float(h["val_error"]))
    t, e = np.asarray(ts), np.asarray(es)
    order = np.argsort(t, kind="stable")
    t, e = t[order], e[order]
    keep = np.concatenate([[True], np.diff(t) > 0]) if t.size else np.zeros(0, bool)
    return t[keep], e[keep]




def time_axis(ax) -> None:
    ax.set_xscale("symlog", linthresh=1.0, linscale=1.0)
    ax.set_xlim(left=0)
    ax.axvline(1.0, color="0.85", lw=0.6, zorder=0)


def log_y_axis(ax) -> None:
    """Log y axis; plain tick labels when the data span less than a decade."""
    from matplotlib import ticker  # pylint: disable=import-outside-toplevel
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo < 10:
        fmt = ticker.FuncFormatter(lambda v, _: f"{v:.4g}")
        ax.yaxis.set_major_formatter(fmt)
        ax.yaxis.set_minor_formatter(fmt)


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no data: {what}", ha="center", va="center", transform=ax.transAxes,
            color="0.4", fontsize=9)


def _run_label(name: str, a: dict | None) -> str:
    if a is None:
        return name
    t = np.asarray(a["t"])
    return f"{name.split('_')[0]} (t ≤ {t.max():g})"


def _end_panels(axes, analysis_dir, lr, key):
    """One panel per net kind (Figs. 5, 7, 9): yields ``(ax, kind, name, ends)`` with the run's
    end-point results, or ``ends=None`` (the panel then says "no data") where they lack ``key``."""
    for ax, kind in zip(axes, KINDS):
        name = config_name(kind, lr)
        e = load_results(analysis_dir, name, ends=True)
        if e is None or key not in e:
            _no_data(ax, name)
            e = None
        yield ax, kind, name, e


def fig4(analysis_dir, runs, path, lr="1e-4") -> dict:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    data = {}
    for kind in KINDS:
        name = config_name(kind, lr)
        a = load_results(analysis_dir, name)
        t, e = error_curve(a, load_history(runs.get(name)))
        if t.size == 0:
            continue
        pos = e > 0
        ax.plot(t[pos], e[pos], "o-", ms=2.5, color=COLORS[kind], label=f"{kind} (t ≤ {t.max():g})")
        data[name] = {"t": t.tolist(), "val_error": e.tolist()}
    if not data:
        _no_data(ax, f"lr={lr} runs")
    time_axis(ax)
    ax.set_yscale("log")
    ax.set_xlabel("training time t (epochs)")
    ax.set_ylabel("validation error rate")
    ax.set_title(f"Fig. 4: validation error, lr={lr}")
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return data


def fig5(analysis_dir, path, lr="1e-4") -> dict:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    data = {}
    for ax, kind, name, e in _end_panels(axes, analysis_dir, lr, "curves"):
        if e is not None:
            b = e["betas"]
            for row, (ls, when) in enumerate((("--", "before"), ("-", "after"))):
                row = 0 if when == "before" else len(e["t"]) - 1
                ax.plot(b, e["curves"][row], ls, color=COLORS[kind],
                        label=f"{when} (t={e['t'][row]:g}), $\\beta_c$={e['beta_c'][row]:.4f}")
                if np.isfinite(e["beta_c"][row]):
                    ax.axvline(e["beta_c"][row], color=COLORS[kind], ls=":", lw=0.8)
            ax.axhline(float(e["threshold"]), color="k", lw=0.6, label=f"threshold λ*={float(e['threshold']):.3g}")
            ax.legend(fontsize=7)
            data[name] = {"betas": b.tolist(), "before": e["curves"][0].tolist(),
                          "after": e["curves"][-1].tolist()}
        ax.set_xlabel(r"$\beta$")
        ax.set_ylabel(r"$\lambda_{\min}(I_N - M)$")
        ax.set_title(f"Fig. 5: {kind}, lr={lr}")
    save_figure(fig, path)
    return data


def fig_time_series(analysis_dir, path, lr: str, title: str) -> dict:
    """Figs. 6 and 8: T_c, λ_max(J), s0/s_typ vs t."""
    plt = pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(5.5, 9), sharex=True)
    data = {}
    analytic = None
    for kind in KINDS:
        name = config_name(kind, lr)
        a = load_results(analysis_dir, name)
        if a is None:
            continue
        t = a["t"]
        kw = dict(marker="o", ms=2.5, color=COLORS[kind], label=_run_label(name, a))
        axes[0].plot(t, a["T_c"], **kw)
        axes[1].plot(t, a["lambda_max_J"], **kw)
        axes[2].plot(t, a["level_spacing"], **kw)
        analytic = 1.0 / float(a["analytic_beta_c"])
        data[name] = {k: np.asarray(a[k]).tolist() for k in ("t", "T_c", "lambda_max_J", "level_spacing")}
    if analytic is not None:
        axes[0].axhline(analytic, color="k", ls=":", lw=0.8, label=f"analytic MSK $T_c$={analytic:.3f}")
    if not data:
        for ax in axes:
            _no_data(ax, f"lr={lr} runs")
    for ax, lab in zip(axes, (r"$T_c$", r"$\lambda_{\max}(J)$", r"$s_0/s_{\rm typ}$")):
        time_axis(ax)
        if data:
            log_y_axis(ax)
        ax.set_ylabel(lab)
    axes[0].legend(fontsize=7)
    axes[0].set_title(title)
    axes[-1].set_xlabel("training time t (epochs)")
    save_figure(fig, path)
    return data


def _spectrum_fig(analysis_dir, path, lr, key, xlabel, title, bins=80) -> dict:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    data = {}
    for ax, kind, name, e in _end_panels(axes, analysis_dir, lr, key):
        if e is not None:
            sp = e[key]
            finite = sp[np.isfinite(sp)]
            rng = (finite.min(), finite.max()) if finite.size else None
            edges = np.histogram_bin_edges(finite, bins=bins, range=rng)
            for row, when, color in ((0, "before", "0.45"), (len(e["t"]) - 1, "after", COLORS[kind])):
                ev = sp[row][np.isfinite(sp[row])]
                if ev.size == 0:
                    continue
                ax.hist(ev, bins=edges, density=True, histtype="step", color=color, lw=1.2,
                        label=f"{when} (t={e['t'][row]:g})")
                # a single eigenvalue is invisible in a histogram: mark the extremes too
                ext = np.concatenate([np.sort(ev)[:3], np.sort(ev)[-3:]])
                ax.plot(ext, np.full(ext.shape, 0.5 / (ev.size * (edges[1] - edges[0]))), "|",
                        color=color, ms=10)
                data.setdefault(name, {})[when] = {"t": float(e["t"][row]),
                                                   "min": float(ev.min()), "max": float(ev.max()),
                                                   "n": int(ev.size)}
            ax.set_yscale("log")
            ax.legend(fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("spectral density")
        ax.set_title(f"{title}: {kind}, lr={lr}")
    save_figure(fig, path)
    return data


FIGURE_FILES = {"fig4": "fig4_val_error.png", "fig5": "fig5_lambda_min.png",
                "fig6": "fig6_lr1e-4.png", "fig7": "fig7_tap_spectrum.png",
                "fig8": "fig8_lr1e-6.png", "fig9": "fig9_bond_spectrum.png"}


def make_figures(analysis_dir: str, runs: dict[str, str], out_dir: str) -> dict:
    """Writes Figs. 4–9 to ``out_dir``; ``runs`` maps config name → run directory.

    Returns ``{"files": {fig: path}, "data": {fig: plotted numbers}}`` (also saved as
    ``out_dir/figures.json``).
    """
    os.makedirs(out_dir, exist_ok=True)
    p = {k: os.path.join(out_dir, v) for k, v in FIGURE_FILES.items()}
    data = {
        "fig4": fig4(analysis_dir, runs, p["fig4"]),
        "fig5": fig5(analysis_dir, p["fig5"]),
        "fig6": fig_time_series(analysis_dir, p["fig6"], "1e-4", "Fig. 6: lr=1e-4"),
        "fig7": _spectrum_fig(analysis_dir, p["fig7"], "1e-4", "tap_spectra",
                              r"eigenvalue of $I_N - M(\beta_c)$", "Fig. 7"),
        "fig8": fig_time_series(analysis_dir, p["fig8"], "1e-6", "Fig. 8: lr=1e-6"),
        "fig9": _spectrum_fig(analysis_dir, p["fig9"], "1e-4", "bond_spectra",
                              "eigenvalue of J", "Fig. 9"),
    }
    from tapjax.checkpoints import atomic_write_json  # pylint: disable=import-outside-toplevel
    atomic_write_json(os.path.join(out_dir, "figures.json"), {"files": p, "data": data})
    return {"files": p, "data": data}


def _single_run_analysis(path: str, reference: str = "auto", progress: bool = True):
    """→ ``(Analysis, name, where it came from)`` for :func:`single_run_figures`."""
    p = path.rstrip("/")
    for prefix in (p, os.path.join(p, "analysis")):
        if os.path.exists(prefix + ".npz") and os.path.exists(prefix + ".json"):
            name = os.path.basename(p if prefix == p else p)
            return analysis_lib.read_analysis(prefix), name, f"saved analysis {prefix}.npz"
    if not os.path.exists(p):
        raise NothingToDraw(f"{path}: no such file or directory (expected an analysis prefix with "
                            ".npz/.json, a run directory, or a network file)")
    a = analysis_lib.analyze(p, reference, progress=progress)
    return a, os.path.splitext(os.path.basename(p))[0], "analyzed now (tapjax.analyze)"


def single_run_figures(path: str, out_dir: str, *, reference: str = "auto", progress: bool = True) -> dict:
    """Figures of one run or network → ``{"files": {...}, "source": str, "summary": str}``.

    Raises:
      NothingToDraw: every T_c, λ_max(J) and s0/s_typ is NaN (nothing is written).
    """
    a, name, where = _single_run_analysis(path, reference, progress)
    os.makedirs(out_dir, exist_ok=True)
    files = {}
    try:
        files["series"] = a.plot(os.path.join(out_dir, f"{name}_series.png"))
    except ValueError as e:
        raise NothingToDraw(f"{path}: {e} ({where})") from e
    err = np.asarray(a.val_error, float)
    if np.isfinite(err).any() and np.isfinite(np.asarray(a.t, float)).all():
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        ok = np.isfinite(err) & (err > 0)
        ax.plot(np.asarray(a.t)[ok], err[ok], "o-", ms=3)
        if ok.any():
            ax.set_yscale("log")
        if np.all(np.asarray(a.t) >= 0):
            time_axis(ax)
        ax.set_xlabel("training time t")
        ax.set_ylabel("validation error")
        ax.set_title(name)
        files["val_error"] = os.path.join(out_dir, f"{name}_val_error.png")
        save_figure(fig, files["val_error"])
    return {"files": files, "source": where, "summary": a.summary()}


def main(argv):
    del argv
    import sys  # pylint: disable=import-outside-toplevel
    if FLAGS.run:
        try:
            res = single_run_figures(FLAGS.run, FLAGS.out, reference=FLAGS.reference)
        except NothingToDraw as e:
            print(f"experiments.figures: nothing to draw: {e}", file=sys.stderr)
            sys.exit(1)
        print(res["summary"])
        print(json.dumps(res["files"], indent=1))
        return
    runs = {n: os.path.join(FLAGS.runs_root, n) for n in CONFIG_NAMES}
    res = make_figures(FLAGS.analysis_dir, runs, FLAGS.out)
    if not any(res["data"].values()):
        print(f"experiments.figures: nothing to draw: none of the paper runs {list(CONFIG_NAMES)} has an "
              f"analysis in {FLAGS.analysis_dir} (for any other run use --run=PATH)", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(res["files"], indent=1))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
