r"""Power-law fits of T_c(t) and λ_max(J)(t) with automatic break detection (sections 3.2, 3.4).

    python -m experiments.fits --analysis_dir=results/analysis --runs_root=results/runs \
        --out=results

For every analyzed run (``ANALYSIS_DIR/<run>.npz``) fits continuous piecewise power laws with
0, 1 and 2 breaks in log-log (breaks scanned, :func:`tapjax.fits.select_power_law`) to T_c(t)
and λ_max(J)(t) on ``t >= --t_min``, keeps the one with the lowest BIC, gives covariance and
residual-bootstrap confidence intervals, and compares the last break with the time the
validation error plateaus (:func:`tapjax.fits.plateau_time` on the per-epoch error, plus the
break of a broken power law fitted to the error itself).
It also records the other per-run observables the report's claims rest on: T_c(0) vs the
analytic MSK value, the largest relative change of λ_min(R), the early jump of s0/s_typ and
the onset times of growth (lazy regime).

Writes ``OUT/fits.json`` and ``OUT/figures/fits.png``.
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags

from .figures import (COLORS, CONFIG_NAMES, error_curve, load_history, load_results,
                                 log_y_axis, time_axis)
from tapjax import fits, pytrees
from tapjax.checkpoints import atomic_write_json

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("analysis_dir", "results/analysis", "Directory of analysis outputs.")
    flags.DEFINE_string("runs_root", "results/runs", "Directory holding the run directories (history.json).")
    flags.DEFINE_string("out", "results", "Output directory (fits.json; figures/fits.png).")
    flags.DEFINE_float("t_min", 0.0, "Fit only t >= t_min (t = 0 is always excluded: log t).")
    flags.DEFINE_integer("min_points", 3, "Least number of points on each side of a break.")
    flags.DEFINE_integer("bootstrap", 500, "Bootstrap replicates for the confidence intervals.")


QUANTITIES = ("T_c", "lambda_max_J")


def _fit_models(t, y, *, max_breaks: int = 2, **kw) -> dict:
    """0, 1 and 2-break power laws; the BIC-selected one's fields at top level.

    ``ok`` is False when not even a 1-break fit was possible (too few points).
    """
    try:
        k, fs = fits.select_power_law(t, y, max_breaks=max_breaks, **kw)
    except ValueError as e:
        return {"ok": False, "reason": str(e)}
    models = {str(j): (f.to_dict() if f is not None else None) for j, f in enumerate(fs)}
    if fs[1] is None:
        return {"ok": False, "reason": "too few points for a broken power law", "models": models}
    # the selected model; with no break selected, report the 1-break fit's numbers but say so
    chosen = fs[k] if k > 0 else fs[1]
    return {"ok": True, "selected_num_breaks": k, **chosen.to_dict(), "models": models}


def run_observables(a: dict, history: list | None, *, t_min: float = 0.0, min_points: int = 3,
                    bootstrap: int = 500, seed: int = 0) -> dict:
    """Fits and claim-relevant numbers for one analyzed run (``a`` from ``load_analysis``)."""
    t = np.asarray(a["t"], float)
    out: dict = {"t_max": float(t.max()), "num_checkpoints": int(t.size)}
    kw = dict(min_points=min_points, bootstrap=bootstrap, seed=seed, t_min=t_min or None)
    for q in QUANTITIES:
        out[q] = _fit_models(t, a[q], **kw)
    te, err = error_curve(a, history)
    out["val_error"] = {"final": float(err[-1]) if err.size else None,
                        "t": te.tolist(), "error": err.tolist()}
    if err.size:
        out["val_error"]["plateau_time"] = fits.plateau_time(te, err, rel_tol=0.1)
        out["val_error"]["broken_fit"] = _fit_models(te, err, max_breaks=1, min_points=min_points,
                                                     bootstrap=bootstrap, seed=seed)
    tp = out["val_error"].get("plateau_time")
    for q in QUANTITIES:
        f = out[q]
        if f["ok"] and tp:
            f["break_over_plateau"] = f["t_break"] / tp
            lo, hi = f["t_break_ci"]
            f["plateau_in_break_ci"] = bool(lo <= tp <= hi)
    analytic_tc = 1.0 / float(a["analytic_beta_c"])
    tc = np.asarray(a["T_c"], float)
    lr = np.asarray(a["lambda_min_R"], float)
    s = np.asarray(a["level_spacing"], float)
    out["T_c0"] = float(tc[0])
    out["analytic_T_c"] = analytic_tc
    out["T_c0_over_analytic"] = float(tc[0] / analytic_tc)
    out["T_c_final"] = float(tc[-1])
    out["T_c_growth"] = float(tc[-1] / tc[0])
    out["T_c_monotone_fraction"] = float(np.mean(np.diff(tc) >= 0)) if tc.size > 1 else float("nan")
    out["lambda_max_J0"] = float(a["lambda_max_J"][0])
    out["lambda_max_J_final"] = float(a["lambda_max_J"][-1])
    out["lambda_min_R_max_rel_change"] = float(np.nanmax(np.abs(lr / lr[0] - 1.0)))
    out["level_spacing0"] = float(s[0])
    out["level_spacing_max"] = float(np.nanmax(s))
    jt, jf = fits.largest_jump(t, s)
    out["level_spacing_jump"] = {"t": jt, "factor": jf}
    early = t <= 1.0
    out["level_spacing_max_first_epoch_ratio"] = float(np.nanmax(s[early]) / s[0]) if early.any() else float("nan")
    out["onset_T_c"] = fits.onset_time(t, tc, rel=0.05)
    out["onset_lambda_max_J"] = fits.onset_time(t, a["lambda_max_J"], rel=0.05)
    out["onset_level_spacing"] = fits.onset_time(t, s, rel=1.0)
    return out


def plot_fits(results: dict, analysis_dir: str, path: str) -> None:
    from .common import pyplot, save_figure  # pylint: disable=import-outside-toplevel
    plt = pyplot()
    names = [n for n in CONFIG_NAMES if n in results]
    ncol = max(1, len(names))
    fig, axes = plt.subplots(2, ncol, figsize=(4.2 * ncol, 6.5), squeeze=False)
    for j, name in enumerate(names):
        a = load_results(analysis_dir, name)
        r = results[name]
        color = COLORS[name.split("_")[0]]
        for i, q in enumerate(QUANTITIES):
            ax = axes[i, j]
            ax.plot(a["t"], a[q], "o", ms=3, color=color, label="data")
            f = r[q]
            if f["ok"]:
                lo_t, hi_t = f["single"]["t_range"]
                tt = np.logspace(np.log10(lo_t), np.log10(hi_t), 200)
                ci = f["bootstrap_exponent_ci"]
                if f["selected_num_breaks"] == 0:
                    s1 = f["single"]
                    ax.plot(tt, s1["prefactor"] * tt ** s1["exponent"], "k-", lw=1,
                            label=fr"one power law $\alpha$={s1['exponent']:.3f} (BIC-selected)")
                else:
                    yy = fits.piecewise_power_law(tt, f["intercept"], f["exponents"], f["breaks"])
                    lab = "\n".join(fr"$\alpha_{j + 1}$={a:.3f} [{c[0]:.3f},{c[1]:.3f}]"
                                     for j, (a, c) in enumerate(zip(f["exponents"], ci)))
                    ax.plot(tt, yy, "k-", lw=1, label=lab + "\n" + fr"$\Delta$BIC={f['delta_bic']:.1f}")
                    for b, (lo, hi) in zip(f["breaks"], f["breaks_ci"]):
                        ax.axvline(b, color="k", ls="--", lw=0.8)
                        if np.isfinite(lo):
                            ax.axvspan(lo, hi, color="0.8", alpha=0.5, lw=0)
                    ax.plot([], [], "k--", lw=0.8, label="breaks: " + ", ".join(f"{b:.3g}" for b in f["breaks"]))
            tp = r["val_error"].get("plateau_time")
            if tp:
                ax.axvline(tp, color="C2", ls=":", lw=1.2, label=f"error plateau t={tp:.3g}")
            time_axis(ax)
            log_y_axis(ax)
            ax.set_ylabel(r"$T_c$" if q == "T_c" else r"$\lambda_{\max}(J)$")
            ax.set_title(name, fontsize=9)
            ax.legend(fontsize=6)
        axes[-1, j].set_xlabel("t (epochs)")
    save_figure(fig, path)


def fit_all(analysis_dir: str, runs: dict[str, str], out_dir: str, *, t_min: float = 0.0,
            min_points: int = 3, bootstrap: int = 500) -> dict:
    """Fits every analyzed run; writes ``out_dir/fits.json`` and ``out_dir/figures/fits.png``."""
    results = {}
    for name in CONFIG_NAMES:
        a = load_results(analysis_dir, name)
        if a is None:
            continue
        results[name] = run_observables(a, load_history(runs.get(name)), t_min=t_min,
                                        min_points=min_points, bootstrap=bootstrap)
    os.makedirs(os.path.join(out_dir, "figures"), exist_ok=True)
    plot_fits(results, analysis_dir, os.path.join(out_dir, "figures", "fits.png"))
    doc = {"settings": {"t_min": t_min, "min_points": min_points, "bootstrap": bootstrap,
                        "model": "continuous piecewise line in (log t, log y), 0-2 breaks, selected by BIC",
                        "plateau": "first t after which val error <= 1.1 x median of last 25%"},
           "runs": results}
    atomic_write_json(os.path.join(out_dir, "fits.json"), jsonable(doc))
    return doc


def jsonable(x):
    """``x`` ready for strict JSON: :func:`tapjax.pytrees.jsonable` with NaN/inf as ``null``."""
    return pytrees.jsonable(x, nonfinite="null")


_jsonable = jsonable   # the former private name (experiments/reproduce.py imports it)


def main(argv):
    del argv
    runs = {n: os.path.join(FLAGS.runs_root, n) for n in CONFIG_NAMES}
    doc = fit_all(FLAGS.analysis_dir, runs, FLAGS.out, t_min=FLAGS.t_min,
                  min_points=FLAGS.min_points, bootstrap=FLAGS.bootstrap)
    brief = {n: {q: (r[q].get("exponents"), r[q].get("t_break")) for q in QUANTITIES}
             for n, r in doc["runs"].items()}
    print(json.dumps(brief, indent=1))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
