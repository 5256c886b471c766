r"""Multi-seed summaries: Table 1 as mean ± std, T_c(t) bands, power-law fits per seed.

    python -m experiments.seeds \
        --group='standard_mnist=/work/runs/seeds_standard_lr1e-4/standard_seed*' \
        --group='binarized_mnist=/work/runs/seeds_binarized_lr1e-4/binarized_seed*' \
        --group='fashion_standard=/work/runs/fashion_lr1e-4/standard_seed*' \
        --analysis_dir=/work/runs/analysis16 --out=docs/results --figures=docs/figures

A *group* is a set of run directories that differ only in the training seed (a glob). For
each group:

1. every run is analyzed (:func:`tapjax.analysis.analyze_run`: β_c, T_c, λ_max(J), λ_min(R)
   per checkpoint, s0/s_typ with ``--level_spacing``; dense spectra of J and of I − M at T_c of
   the first and last checkpoint; cached under ``--analysis_dir/<group>/<run>``);
2. **Table 1**: final (and best) validation error per seed → mean ± std (ddof = 1), min–max,
   epochs done / planned (a run short of its planned epochs is labelled *partial*);
3. **bands**: T_c(t), λ_max(J)(t), s0/s_typ(t) across seeds at the checkpoint times all seeds
   share (mean, std, min, max);
4. **fits**: the continuous piecewise power law of :mod:`tapjax.fits` (``--num_breaks``, default
   the number of breaks most seeds' BIC selects) fitted to every seed on t ≥ ``--t_min``, with
   each seed's residual-bootstrap interval; across seeds the mean ± std of every exponent and
   break, the 95% Student-t interval of the mean, the min–max, and a 95% interval for *one*
   seed (mean ± t·std·√(1 + 1/n)), to set beside a single-seed bootstrap interval;
5. the per-run observables the paper's claims rest on (T_c(0) vs the analytic MSK value,
   largest λ_min(R) drift, split-off eigenvalues of J and of I − M at T_c, error plateau).

Writes ``OUT/seeds_<group>.json``, ``OUT/seeds_<group>_table1.csv``, ``OUT/seeds_<group>_band.csv``
and ``FIGURES/seeds_<group>.png``.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os

import numpy as np
from absl import app, flags

from .figures import error_curve, load_history, log_y_axis, time_axis
from tapjax import analysis, fits, spectra
from tapjax import checkpoints as ckpt
from tapjax.spin_model import couplings
from tapjax.pytrees import jsonable

FLAGS = flags.FLAGS
QUANTITIES = ("T_c", "lambda_max_J")
BAND_KEYS = ("T_c", "lambda_max_J", "level_spacing", "lambda_min_R", "val_error")


def _define_flags() -> None:
    flags.DEFINE_multi_string("group", [], "LABEL=GLOB of the seed run directories (repeatable).")
    flags.DEFINE_string("analysis_dir", "results/seeds_analysis", "Cache of the per-run analyses.")
    flags.DEFINE_string("out", "docs/results", "Directory of the json/csv outputs.")
    flags.DEFINE_string("figures", "docs/figures", "Directory of the figures ('' for none).")
    flags.DEFINE_float("t_min", 1.0, "Fit only t >= t_min epochs.")
    flags.DEFINE_integer("num_breaks", -1, "Breaks of the per-seed fits (-1: the BIC majority).")
    flags.DEFINE_integer("bootstrap", 200, "Bootstrap replicates of each seed's fit.")
    flags.DEFINE_integer("num_betas", 128, "β grid of the analysis (threshold search).")
    flags.DEFINE_bool("level_spacing", False, "Also s0/s_typ at every checkpoint (one dense eigvalsh each).")
    flags.DEFINE_bool("progress", False, "Progress bars of the analysis.")


# ----------------------------------------------------------------------------- inputs


def expand_group(pattern: str) -> list[str]:
    """Run directories matching ``pattern`` (a glob), sorted; each must hold checkpoints."""
    dirs = sorted(d for d in glob.glob(pattern) if os.path.isdir(d))
    if not dirs:
        raise ValueError(f"--group pattern {pattern!r} matches no run directory")
    return dirs


def run_status(workdir: str) -> dict:
    """Seed, epochs done / planned, final and best validation error (from history.json)."""
    with open(os.path.join(workdir, "config.json")) as f:
        cfg = json.load(f)
    hist = load_history(workdir) or []
    errs = [h["val_error"] for h in hist if h.get("val_error") is not None]
    done = int(hist[-1]["epoch"]) if hist else 0
    return {"run": os.path.basename(os.path.normpath(workdir)), "workdir": os.path.abspath(workdir),
            "seed": int(cfg.get("seed", -1)), "kind": cfg.get("model", {}).get("kind"),
            "lr": cfg.get("lr"), "dataset": cfg.get("dataset"), "epochs_done": done,
            "epochs_planned": int(cfg.get("epochs", 0)),
            "status": "complete" if done >= int(cfg.get("epochs", 0)) else "partial",
            "final_val_error": float(errs[-1]) if errs else None,
            "best_val_error": float(min(errs)) if errs else None}


def _ends(hist: ckpt.RunHistory, beta_c: np.ndarray, rows: list[int]) -> dict:
    """Dense spectra of J and of I − M at β_c for the first and last analyzed checkpoint."""
    bond, tap_ = [], []
    for row in (0, len(rows) - 1):
        c = couplings(hist.weights_at(rows[row]), name=hist.paths[rows[row]])
        bond.append(spectra.bond_levels(c))
        tap_.append(spectra.tap_levels(c, float(beta_c[row]))
                    if np.isfinite(beta_c[row]) else np.full(c.num_spins, np.nan))
    return {"bond_spectra": np.stack(bond), "tap_spectra": np.stack(tap_)}


def analyze_group(workdirs, analysis_dir: str, *, num_betas: int = 128, level_spacing: bool = False,
                  progress: bool = False) -> list[dict]:
    """Analyzes (or reads the cached analyses of) every run; ``load_analysis``-style dicts with
    ``"ends"`` (dense spectra of the first and last checkpoint) added.

    Each run: :func:`tapjax.analysis.analyze_run` on every checkpoint (β_c by the recurrence
    root search, λ_max(J), λ_min(R); s0/s_typ only with ``level_spacing``, one dense eigvalsh
    per checkpoint; a checkpoint without a crossing gets NaN and is listed in ``info["errors"]``,
    the no-crossing rule of :mod:`tapjax.analysis`), cached as
    ``ANALYSIS_DIR/<run>.{npz,json}`` plus ``<run>_ends.npz``; a cache holding exactly the run's
    checkpoint times is reused, otherwise the run is analyzed again.
    """
    os.makedirs(analysis_dir, exist_ok=True)
    out = []
    for wd in workdirs:
        prefix = os.path.join(analysis_dir, os.path.basename(os.path.normpath(wd)))
        hist = ckpt.load_run(wd)
        cached = None
        if os.path.exists(prefix + ".json") and os.path.exists(prefix + "_ends.npz"):
            cached = analysis.load_analysis(prefix)
            if (np.asarray(cached["t"]).size != len(hist) or not np.allclose(cached["t"], hist.t)
                    or (level_spacing and not np.isfinite(cached["level_spacing"]).any())):
                cached = None
        if cached is None:
            a = analysis.analyze_run(hist, num_betas=num_betas, level_spacing=level_spacing, progress=progress)
            a.info["workdir"] = os.path.abspath(wd)
            analysis.save_analysis(a, prefix)
            ckpt.atomic_write_npz(prefix + "_ends.npz", _ends(hist, a.beta_c, list(range(len(hist)))))
            cached = analysis.load_analysis(prefix)
        cached["ends"] = ckpt.read_npz(prefix + "_ends.npz")
        out.append(cached)
    return out


# ----------------------------------------------------------------------------- summaries


def spread(values) -> dict:
    """Mean, std (ddof = 1), min, max, n; the 95% Student-t interval of the mean and the 95%
    interval for one further seed (mean ± t·std·√(1 + 1/n)). NaNs are dropped (and counted)."""
    v = np.asarray([np.nan if x is None else x for x in values], float)
    bad = int(np.sum(~np.isfinite(v)))
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return {"n": 0, "dropped": bad}
    d = {"n": n, "dropped": bad, "mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
         "values": v.tolist()}
    if n >= 2:
        sd = float(v.std(ddof=1))
        q = fits.student_t_quantile(0.975, n - 1)
        d.update(std=sd, mean_ci=(d["mean"] - q * sd / math.sqrt(n), d["mean"] + q * sd / math.sqrt(n)),
                 one_seed_interval=(d["mean"] - q * sd * math.sqrt(1 + 1 / n),
                                    d["mean"] + q * sd * math.sqrt(1 + 1 / n)))
    return d


def seed_table(statuses: list[dict]) -> dict:
    """Table 1 across seeds: final and best validation error spread, epochs, status."""
    return {"runs": statuses, "final_val_error": spread([s["final_val_error"] for s in statuses]),
            "best_val_error": spread([s["best_val_error"] for s in statuses]),
            "epochs_done": [s["epochs_done"] for s in statuses],
            "epochs_planned": statuses[0]["epochs_planned"] if statuses else None,
            "status": "complete" if all(s["status"] == "complete" for s in statuses) else "partial"}


def band(analyses: list[dict], key: str) -> dict:
    """Across-seed mean/std/min/max of ``key`` at the checkpoint times every seed has."""
    common = sorted(set.intersection(*[{float(t) for t in a["t"]} for a in analyses]))
    ys = []
    for a in analyses:
        by_t = {float(t): float(y) for t, y in zip(a["t"], a[key])}
        ys.append([by_t[t] for t in common])
    y = np.asarray(ys, float)                                   # (seeds, T)
    sd = np.nanstd(y, axis=0, ddof=1) if y.shape[0] > 1 else np.full(y.shape[1], np.nan)
    return {"t": common, "mean": np.nanmean(y, 0).tolist(), "std": sd.tolist(),
            "min": np.nanmin(y, 0).tolist(), "max": np.nanmax(y, 0).tolist(), "seeds": y.tolist()}


def fit_seeds(analyses: list[dict], quantity: str, *, num_breaks: int | None = None, t_min: float = 1.0,
              min_points: int = 3, bootstrap: int = 200) -> dict:
    """Per-seed piecewise power laws of ``quantity`` with ``num_breaks`` breaks (None: the
    number most seeds' BIC selects), their bootstrap intervals, and the spread across seeds."""
    selected = []
    for a in analyses:
        try:
            k, _ = fits.select_power_law(a["t"], a[quantity], max_breaks=2, t_min=t_min, min_points=min_points)
        except ValueError:
            k = None
        selected.append(k)
    if num_breaks is None:
        ks = [k for k in selected if k is not None]
        if not ks:
            raise ValueError(f"{quantity}: no seed has enough points for a fit on t >= {t_min}")
        num_breaks = max(set(ks), key=lambda k: (ks.count(k), k))
    per_seed = []
    for i, a in enumerate(analyses):
        try:
            if num_breaks == 0:
                f = fits.fit_power_law(a["t"], a[quantity], t_min=t_min)
                per_seed.append({"exponents": [f.exponent], "breaks": [], "bootstrap_exponent_ci": [f.exponent_ci],
                                 "breaks_ci": [], "delta_bic": 0.0})
            else:
                f = fits.fit_piecewise_power_law(a["t"], a[quantity], num_breaks=num_breaks, t_min=t_min,
                                                 min_points=min_points, bootstrap=bootstrap, seed=i)
                per_seed.append({"exponents": list(f.exponents), "breaks": list(f.breaks),
                                 "bootstrap_exponent_ci": [list(c) for c in f.bootstrap_exponent_ci],
                                 "breaks_ci": [list(c) for c in f.breaks_ci], "delta_bic": f.delta_bic})
        except ValueError as e:
            per_seed.append({"error": str(e)})
    ok = [p for p in per_seed if "error" not in p]
    nseg = num_breaks + 1
    return {"quantity": quantity, "num_breaks": num_breaks, "t_min": t_min, "bic_selected": selected,
            "per_seed": per_seed,
            "exponents": [spread([p["exponents"][j] for p in ok]) for j in range(nseg)],
            "bootstrap_exponent_ci_width": [spread([p["bootstrap_exponent_ci"][j][1] - p["bootstrap_exponent_ci"][j][0]
                                                    for p in ok]) for j in range(nseg)],
            "bootstrap_break_ci_width": [spread([p["breaks_ci"][j][1] - p["breaks_ci"][j][0] for p in ok])
                                         for j in range(num_breaks)],
            "breaks": [spread([p["breaks"][j] for p in ok]) for j in range(num_breaks)],
            "last_exponent_smaller": [bool(p["exponents"][-1] < p["exponents"][-2]) for p in ok] if nseg > 1 else []}


def run_observables(a: dict, history: list | None, analytic_tc: float) -> dict:
    """Claim-relevant numbers of one run: T_c(0)/MSK, growth, λ_min(R) drift, split-offs, plateau."""
    tc, lr = np.asarray(a["T_c"], float), np.asarray(a["lambda_min_R"], float)
    te, err = error_curve(a, history)
    out = {"T_c0": float(tc[0]), "T_c0_over_analytic": float(tc[0] / analytic_tc),
           "T_c_final": float(tc[-1]), "T_c_growth": float(tc[-1] / tc[0]),
           "T_c_monotone_fraction": float(np.mean(np.diff(tc[np.isfinite(tc)]) >= 0)),
           "T_c_no_crossing": int(np.sum(~np.isfinite(tc))),
           "lambda_min_R_max_rel_change": float(np.nanmax(np.abs(lr / lr[0] - 1.0))),
           "level_spacing0": float(a["level_spacing"][0]),
           "plateau_time": fits.plateau_time(te, err) if err.size else None}
    ends = a.get("ends")
    if ends is not None and ends.get("bond_spectra") is not None:
        b0, b1 = np.asarray(ends["bond_spectra"][0]), np.asarray(ends["bond_spectra"][-1])
        edge0 = float(b0.max())
        out["J_edge0"], out["J_max_final"] = edge0, float(b1.max())
        out["J_split_off"] = int(np.sum(b1 > edge0))
        out["J_bulk_p90_rel_change"] = float(np.percentile(np.abs(b1), 90) / np.percentile(np.abs(b0), 90) - 1)
    if ends is not None and ends.get("tap_spectra") is not None:
        def near_bottom(ev):
            ev = np.sort(np.asarray(ev))
            return int(np.sum(ev <= ev[0] + 0.1 * (np.median(ev) - ev[0])))
        out["IM_near_bottom_first"] = near_bottom(ends["tap_spectra"][0])
        out["IM_near_bottom_last"] = near_bottom(ends["tap_spectra"][-1])
    return out


def summarize_group(label: str, workdirs, analysis_dir: str, *, t_min: float = 1.0,
                    num_breaks: int | None = None, bootstrap: int = 200, num_betas: int = 128,
                    min_points: int = 3, level_spacing: bool = False, progress: bool = False) -> dict:
    """Everything above for one group of seed runs."""
    statuses = [run_status(wd) for wd in workdirs]
    analyses = analyze_group(workdirs, os.path.join(analysis_dir, label), num_betas=num_betas,
                             level_spacing=level_spacing, progress=progress)
    cfg = analyses[0]["json"]["info"].get("config") or {}
    analytic_tc = 1.0 / float(analyses[0]["analytic_beta_c"])
    obs = [run_observables(a, load_history(wd), analytic_tc) for a, wd in zip(analyses, workdirs)]
    obs_spread = {k: spread([o.get(k) for o in obs]) for k in obs[0]}
    return {"label": label, "config": cfg, "analytic_T_c": analytic_tc, "table1": seed_table(statuses),
            "num_checkpoints": [int(np.asarray(a["t"]).size) for a in analyses],
            "t_max": [float(np.max(a["t"])) for a in analyses],
            "bands": {k: band(analyses, k) for k in BAND_KEYS
                      if any(np.isfinite(np.asarray(a[k], float)).any() for a in analyses)},
            "fits": {q: fit_seeds(analyses, q, num_breaks=num_breaks, t_min=t_min, min_points=min_points,
                                  bootstrap=bootstrap) for q in QUANTITIES},
            "observables": obs, "observables_spread": obs_spread}


# ----------------------------------------------------------------------------- outputs


def plot_group(doc: dict, path: str) -> None:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    keys = (("T_c", r"$T_c$"), ("lambda_max_J", r"$\lambda_{\max}(J)$"),
            ("level_spacing", r"$s_0/s_{\rm typ}$"), ("val_error", "validation error"))
    keys = tuple((k, lab) for k, lab in keys if k in doc["bands"])
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.6))
    n = doc["table1"]["final_val_error"]["n"]
    for ax, (k, lab) in zip(axes, keys):
        b = doc["bands"][k]
        t = np.asarray(b["t"])
        m, s = np.asarray(b["mean"]), np.asarray(b["std"])
        for y in b["seeds"]:
            ax.plot(t, y, "-", lw=0.5, color="0.6")
        ax.fill_between(t, b["min"], b["max"], color="C0", alpha=0.15, lw=0, label="min–max")
        ax.fill_between(t, m - s, m + s, color="C0", alpha=0.35, lw=0, label="mean ± std")
        ax.plot(t, m, "C0-", lw=1.2, label=f"mean of {n} seeds")
        time_axis(ax)
        if k != "val_error":
            log_y_axis(ax)
        else:
            ax.set_yscale("log")
        ax.set_ylabel(lab)
        ax.set_xlabel("t (epochs)")
    axes[0].legend(fontsize=7)
    st = doc["table1"]
    fig.suptitle(f"{doc['label']}: epochs {min(st['epochs_done'])}–{max(st['epochs_done'])} of "
                 f"{st['epochs_planned']} ({st['status']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_group(doc: dict, out_dir: str, figures_dir: str | None) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    label = doc["label"]
    paths = [os.path.join(out_dir, f"seeds_{label}.json"), os.path.join(out_dir, f"seeds_{label}_table1.csv"),
             os.path.join(out_dir, f"seeds_{label}_band.csv")]
    ckpt.atomic_write_json(paths[0], _jsonable(doc))
    with open(paths[1], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "seed", "epochs_done", "epochs_planned", "status", "final_val_error", "best_val_error"])
        for r in doc["table1"]["runs"]:
            w.writerow([r["run"], r["seed"], r["epochs_done"], r["epochs_planned"], r["status"],
                        r["final_val_error"], r["best_val_error"]])
    with open(paths[2], "w", newline="") as f:
        w = csv.writer(f)
        bands = doc["bands"]
        w.writerow(["t"] + [f"{k}_{s}" for k in bands for s in ("mean", "std", "min", "max")])
        for i, t in enumerate(bands["T_c"]["t"]):
            w.writerow([t] + [bands[k][s][i] for k in bands for s in ("mean", "std", "min", "max")])
    if figures_dir:
        os.makedirs(figures_dir, exist_ok=True)
        p = os.path.join(figures_dir, f"seeds_{label}.png")
        plot_group(doc, p)
        paths.append(p)
    return paths


def _jsonable(x):
    return jsonable(x, nonfinite="null")  # strict JSON: NaN/inf → null


def _fmt(s: dict, digits: int = 4) -> str:
    if not s.get("n"):
        return "n/a"
    if s["n"] < 2:
        return f"{s['mean']:.{digits}f} (1 seed)"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"


def brief(doc: dict) -> dict:
    """A short readable summary (what main prints)."""
    out = {"table1_final": _fmt(doc["table1"]["final_val_error"]), "status": doc["table1"]["status"],
           "epochs_done": doc["table1"]["epochs_done"]}
    for q, f in doc["fits"].items():
        out[q] = {"num_breaks": f["num_breaks"], "bic_selected": f["bic_selected"],
                  "exponents": [_fmt(s, 3) for s in f["exponents"]],
                  "breaks": [_fmt(s, 1) for s in f["breaks"]]}
    for k in ("T_c0_over_analytic", "T_c_growth", "lambda_min_R_max_rel_change", "J_split_off",
              "IM_near_bottom_last", "plateau_time"):
        if k in doc["observables_spread"]:
            out[k] = _fmt(doc["observables_spread"][k], 4)
    return out


def _ci(c, digits=3) -> str:
    return f"[{c[0]:.{digits}f}, {c[1]:.{digits}f}]" if c else "n/a"


def markdown(doc: dict) -> str:
    """Markdown tables for docs/results.md: Table 1 across seeds, fits across seeds, observables."""
    st = doc["table1"]
    fe, be = st["final_val_error"], st["best_val_error"]
    lines = [f"**{doc['label']}** — {fe['n']} seeds, epochs done {st['epochs_done']} of {st['epochs_planned']} "
             f"({st['status']})", "",
             "| | mean ± std | min–max | per seed |", "|---|---|---|---|",
             f"| final val. error | {fe['mean']:.4f} ± {fe.get('std', float('nan')):.4f} | "
             f"{fe['min']:.4f}–{fe['max']:.4f} | {', '.join(f'{v:.4f}' for v in fe['values'])} |",
             f"| best val. error | {be['mean']:.4f} ± {be.get('std', float('nan')):.4f} | "
             f"{be['min']:.4f}–{be['max']:.4f} | {', '.join(f'{v:.4f}' for v in be['values'])} |", ""]
    lines += ["| quantity | breaks (BIC per seed) | exponents: mean ± std, 95% CI of the mean, one-seed 95% interval "
              "[min–max] | breaks (epochs): same |", "|---|---|---|---|"]
    for q, f in doc["fits"].items():
        ex = "<br>".join(f"α{j + 1} = {s_['mean']:.3f} ± {s_.get('std', float('nan')):.3f}, {_ci(s_.get('mean_ci'))}, "
                         f"{_ci(s_.get('one_seed_interval'))} [{s_['min']:.3f}–{s_['max']:.3f}]"
                         for j, s_ in enumerate(f["exponents"]))
        br = "<br>".join(f"t{j + 1} = {s_['mean']:.1f} ± {s_.get('std', float('nan')):.1f}, "
                         f"{_ci(s_.get('mean_ci'), 1)}, {_ci(s_.get('one_seed_interval'), 1)} "
                         f"[{s_['min']:.1f}–{s_['max']:.1f}]" for j, s_ in enumerate(f["breaks"]))
        lines.append(f"| {q} | {f['num_breaks']} ({f['bic_selected']}) | {ex} | {br or '—'} |")
        wd = ", ".join(f"α{j + 1}: {w_['mean']:.3f}" for j, w_ in enumerate(f["bootstrap_exponent_ci_width"]) if w_.get("n"))
        wb = ", ".join(f"t{j + 1}: {w_['mean']:.1f}" for j, w_ in enumerate(f["bootstrap_break_ci_width"]) if w_.get("n"))
        lines.append(f"| {q}: mean width of the single-seed 95% bootstrap intervals | | {wd} | {wb or '—'} |")
    lines += ["", "| observable | mean ± std [min–max] |", "|---|---|"]
    for k, v in doc["observables_spread"].items():
        if v.get("n"):
            lines.append(f"| {k} | {_fmt(v, 4)} |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    if not FLAGS.group:
        raise app.UsageError("give at least one --group=LABEL=GLOB")
    for g in FLAGS.group:
        if "=" not in g:
            raise app.UsageError(f"--group={g!r}: expected LABEL=GLOB")
        label, pattern = g.split("=", 1)
        doc = summarize_group(label, expand_group(pattern), FLAGS.analysis_dir, t_min=FLAGS.t_min,
                              num_breaks=None if FLAGS.num_breaks < 0 else FLAGS.num_breaks,
                              bootstrap=FLAGS.bootstrap, num_betas=FLAGS.num_betas,
                              level_spacing=FLAGS.level_spacing, progress=FLAGS.progress)
        paths = write_group(doc, FLAGS.out, FLAGS.figures or None)
        md = os.path.join(FLAGS.out, f"seeds_{label}.md")
        ckpt.atomic_write_bytes(md, markdown(doc).encode())
        paths.append(md)
        print(json.dumps({"group": label, "outputs": paths, **brief(doc)}, indent=1), flush=True)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
