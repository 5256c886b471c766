r"""The level-spacing readings of issue 16 side by side on the same checkpoints.

    python -m experiments.levels_compare --workdir=/work/runs/seeds_standard_lr1e-4/standard_seed0 \
        --analysis=/work/runs/analysis16/standard_seed0 --label=standard_seed0 \
        --out=docs/results --figures=docs/figures

For ≤ ``--max_checkpoints`` checkpoints of one run (all of the first epoch, then evenly spaced
in checkpoint index, i.e. in log t) this computes dense spectra of :math:`I - M` at
:math:`T_c` (β_c from ``--analysis``, the output of ``experiments/analyze.py``, or searched
afresh), of :math:`I - M` at fixed β's, and of the bond matrix J, and reads off
(:mod:`tapjax.spacing`):

* ``median``: s0/s_typ, s_typ = median spacing of the whole spectrum (today's reading, the
  paper's "which we define as the median level spacing");
* ``edge_unfolded``: s0/s_typ, s_typ = mean unfolded spacing of the lowest k levels (soft-edge
  law N̄ = (a + bλ)^{3/2} fitted to the lowest 2k levels; ``edge_unfolded_cubic``: degree-3 P,
  NaN where that fit is not monotone, as happens once levels split off), and ``edge_raw`` (raw
  mean spacing of the k levels);
* the same at fixed β: ``beta_final`` (β_c of the last checkpoint — the highest T_c, so every
  checkpoint is in its paramagnetic phase there) and ``beta_init`` (β* of the t = 0 net);
* ``s0`` in raw units;
* ⟨r⟩ of I − M at T_c, whole spectrum and lowest k levels, and of J (positive half, the zero
  modes of the bipartite J removed), whole and top k levels.

For each reading it reports the value at t = 0, the largest ratio to it within the first
epoch and overall, and the largest jump between consecutive checkpoints, and calls an
**early jump** a rise by ``--jump_factor`` (default 3) over the t = 0 value at some t ≤
``--early_t`` (default 1 epoch).

Writes ``OUT/levels_compare_<label>.{json,csv}``, ``FIGURES/levels_<label>.png`` (readings
normalized to t = 0) and ``FIGURES/r_<label>.png`` (⟨r⟩ vs t with the Poisson and GOE values).
"""

from __future__ import annotations

import csv
import json
import os
import time

import numpy as np
from absl import app, flags

from tapjax import analysis, fits, spacing, spectra
from tapjax import checkpoints as ckpt
from tapjax.spin_model import couplings
from tapjax.pytrees import jsonable

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("workdir", None, "Run directory with checkpoints/ (read only).")
    flags.DEFINE_string("analysis", None, "Prefix of an analysis of the run (experiments/analyze.py "
                        "output, <prefix>.npz/.json) to take β_c from; default: search β_c afresh.")
    flags.DEFINE_string("label", None, "Name used in the output files (default: the run directory's name).")
    flags.DEFINE_string("out", "docs/results", "Directory of the json/csv output.")
    flags.DEFINE_string("figures", "docs/figures", "Directory of the figures ('' for none).")
    flags.DEFINE_integer("max_checkpoints", 25, "Most checkpoints analyzed.")
    flags.DEFINE_list("ks", ["20", "50", "100"], "Edge-window sizes k (levels) for the unfolded reading and the ⟨r⟩ windows.")
    flags.DEFINE_integer("k_plot", 50, "Window size shown in the figures.")
    flags.DEFINE_float("jump_factor", 3.0, "Rise over the t = 0 value that counts as a jump.")
    flags.DEFINE_float("early_t", 1.0, "'Early' means t <= early_t epochs.")
    flags.DEFINE_string("spectra_cache", None, "An .npz path to store (and reuse) the dense spectra.")


def select_checkpoints(t, max_checkpoints: int) -> list[int]:
    """Indices: t = 0 and the first epoch (up to half the budget), the rest evenly in index."""
    t = np.asarray(t, float)
    n = t.size
    if n <= max_checkpoints:
        return list(range(n))
    early = [i for i in range(n) if t[i] <= 1.0][: max(2, max_checkpoints // 2)]
    rest = [i for i in range(n) if i not in early]
    m = max_checkpoints - len(early)
    pick = [rest[int(round(j))] for j in np.linspace(0, len(rest) - 1, m)] if m > 0 else []
    return sorted(set(early) | set(pick) | {n - 1})


def readings_of(ev_tc, ev_j, ev_fixed: dict, ks) -> dict:
    """All readings for one checkpoint from its spectra (I − M at T_c, J, I − M at fixed β's).

    ``edge_unfolded``: soft-edge unfolding with the two-parameter edge law
    N̄ = (a + bλ)^{3/2} (degree 1), which stays monotone when split-off levels sit below the
    bulk; ``edge_unfolded_cubic``: the degree-3 fit, NaN where it is not monotone. Both are NaN
    where λ_1 lies below the fitted edge; ``below_edge`` counts such split-off levels.
    """
    row = {}
    for where, ev in [("Tc", ev_tc)] + [(name, e) for name, e in ev_fixed.items()]:
        for k in ks:
            fs = spacing.first_spacing_readings(ev, k, degree=1)
            f3 = spacing.first_spacing_readings(ev, k, degree=3)
            if k == ks[0]:
                row[f"s0_{where}"] = fs.s0
                row[f"median_{where}"] = fs.median
            row[f"edge_unfolded_k{k}_{where}"] = fs.edge_unfolded if fs.monotone else float("nan")
            row[f"edge_unfolded_cubic_k{k}_{where}"] = f3.edge_unfolded if f3.monotone else float("nan")
            row[f"edge_raw_k{k}_{where}"] = fs.edge_raw
            row[f"below_edge_k{k}_{where}"] = fs.below_edge
    r = spacing.mean_spacing_ratio(ev_tc)
    row["r_IM_global"], row["r_IM_global_se"] = r.mean, r.stderr
    pos = spacing.positive_levels(ev_j)
    r = spacing.mean_spacing_ratio(pos)
    row["r_J_global"], row["r_J_global_se"] = r.mean, r.stderr
    row["J_zero_modes"] = int(np.asarray(ev_j).size - 2 * pos.size)
    for k in ks:
        r = spacing.mean_spacing_ratio(ev_tc, k, "lower")
        row[f"r_IM_low_k{k}"], row[f"r_IM_low_k{k}_se"] = r.mean, r.stderr
        r = spacing.mean_spacing_ratio(pos, k, "upper")
        row[f"r_J_top_k{k}"], row[f"r_J_top_k{k}_se"] = r.mean, r.stderr
    return row


def jump_summary(t, y, *, jump_factor: float = 3.0, early_t: float = 1.0) -> dict:
    """Value at t = 0, largest ratio to it (first ``early_t`` epochs and overall), largest
    consecutive jump, and whether the reading jumps early (ratio >= ``jump_factor``)."""
    t, y = np.asarray(t, float), np.asarray(y, float)
    ok = np.isfinite(y)
    if not ok.any() or not np.isfinite(y[0]) or y[0] <= 0:
        return {"y0": None, "early_jump": None, "reason": "no finite positive value at t = 0"}
    ratio = y / y[0]
    early = ok & (t <= early_t)
    jt, jf = fits.largest_jump(t, y)
    k_early = int(np.nanargmax(np.where(early, ratio, -np.inf)))
    return {"y0": float(y[0]), "max_ratio_early": float(ratio[k_early]), "t_max_ratio_early": float(t[k_early]),
            "min_ratio_early": float(np.nanmin(np.where(early, ratio, np.inf))),
            "max_ratio": float(np.nanmax(ratio)), "t_max_ratio": float(t[int(np.nanargmax(ratio))]),
            "largest_jump_t": jt, "largest_jump_factor": jf,
            "early_jump": bool(ratio[k_early] >= jump_factor)}


def compare_levels(workdir: str, *, analysis_prefix: str | None = None, max_checkpoints: int = 25,
                   ks=(20, 50, 100), jump_factor: float = 3.0, early_t: float = 1.0,
                   spectra_cache: str | None = None, progress: bool = True) -> dict:
    """Readings per selected checkpoint and their jump summaries (see the module docstring).

    ``spectra_cache``: an ``.npz`` path; the dense spectra are stored there (and read back on a
    re-run with the same checkpoints and β's, so new readings cost no eigvalsh)."""
    t0 = time.monotonic()
    hist = ckpt.load_run(workdir)
    idx = select_checkpoints(hist.t, max_checkpoints)
    if analysis_prefix:
        a = analysis.load_analysis(analysis_prefix)
        by_t = {float(tt): float(b) for tt, b in zip(a["t"], a["beta_c"])}
        missing = [float(hist.t[i]) for i in idx if float(hist.t[i]) not in by_t]
        if missing:
            raise ValueError(f"{analysis_prefix}: analysis lacks checkpoints t = {missing[:5]}...; "
                             "re-run experiments/analyze.py on the run first")
        beta_c = np.array([by_t[float(hist.t[i])] for i in idx])
        beta_star = float(a["json"]["info"].get("threshold_beta", beta_c[0]))
        source = f"analysis {analysis_prefix}"
    else:
        res = analysis.analyze_run(hist, indices=idx, level_spacing=False, progress=progress)
        beta_c, beta_star, source = res.beta_c, float(res.info["threshold_beta"]), "analyze_run"
    if not np.all(np.isfinite(beta_c)):
        raise ValueError(f"{workdir}: β_c is NaN at t = {hist.t[idx][~np.isfinite(beta_c)]}; cannot take T_c spectra")
    fixed = {"beta_final": float(beta_c[-1]), "beta_init": beta_star}
    ks = [int(k) for k in ks]
    rows = []
    cache = None
    if spectra_cache and os.path.exists(spectra_cache):
        cache = ckpt.read_npz(spectra_cache)
        if (cache["t"].shape != (len(idx),) or not np.allclose(cache["t"], hist.t[idx])
                or not np.allclose(cache["beta_c"], beta_c)
                or cache["Tc"].dtype != np.float64):     # a cache of float32 spectra: recomputed
            cache = None
    store = {"t": hist.t[idx], "beta_c": beta_c, "Tc": [], "J": [], **{name: [] for name in fixed}}
    for n, (i, bc) in enumerate(zip(idx, beta_c)):
        if cache is not None:
            ev_tc, ev_j = cache["Tc"][n], cache["J"][n]
            ev_fixed = {name: cache[name][n] for name in fixed}
        else:
            c = couplings(hist.weights_at(i), name=hist.paths[i])
            ev_tc = spectra.tap_levels(c, float(bc))
            ev_fixed = {name: spectra.tap_levels(c, b) for name, b in fixed.items()}
            ev_j = spectra.bond_levels(c)
        store["Tc"].append(ev_tc)
        store["J"].append(ev_j)
        for name in fixed:
            store[name].append(ev_fixed[name])
        row = {"t": float(hist.t[i]), "beta_c": float(bc), "T_c": 1.0 / float(bc),
               "val_error": float(hist.val_error[i]), **readings_of(ev_tc, ev_j, ev_fixed, ks)}
        rows.append(row)
        if progress:
            print(f"[levels] {n + 1}/{len(idx)} t={row['t']:.4g} T_c={row['T_c']:.4f} "
                  f"median={row['median_Tc']:.3g} edge={row.get(f'edge_unfolded_k{ks[0]}_Tc', np.nan):.3g} "
                  f"r_J={row['r_J_global']:.3f}", flush=True)
    if spectra_cache and cache is None:
        ckpt.atomic_write_npz(spectra_cache, {k: np.asarray(v) for k, v in store.items()})
    t = np.array([r["t"] for r in rows])
    keys = [k for k in rows[0] if k not in ("t", "beta_c", "val_error") and not k.endswith("_se")
            and k != "J_zero_modes" and not k.startswith("below_edge")]
    summary = {k: jump_summary(t, [r[k] for r in rows], jump_factor=jump_factor, early_t=early_t)
               for k in keys}
    return {"workdir": os.path.abspath(workdir), "beta_c_source": source, "fixed_betas": fixed,
            "ks": ks, "checkpoints": idx, "jump_factor": jump_factor, "early_t": early_t,
            "rows": rows, "summary": summary, "seconds": time.monotonic() - t0,
            "N": int(sum(w.shape[2] for w in hist.weights) + hist.weights[0].shape[1])}


def _time_panel(ax, ylabel: str, title: str, **legend) -> None:
    """The dressing of every panel here: training time on x (symlog), labels, title, legend."""
    from .figures import time_axis  # pylint: disable=import-outside-toplevel
    time_axis(ax)
    ax.set_xlabel("t (epochs)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, **legend)


def plot(doc: dict, k: int, path_levels: str, path_r: str, label: str) -> None:
    from .common import pyplot, save_figure  # pylint: disable=import-outside-toplevel
    plt = pyplot()
    rows = doc["rows"]
    t = np.array([r["t"] for r in rows])
    col = lambda key: np.array([r.get(key, np.nan) for r in rows], float)
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    ax = axes[2]
    for where, lab, st in (("Tc", r"at $T_c$", "o-"), ("beta_final", r"at $\beta_c$(last)", "s--")):
        ax.plot(t, col(f"below_edge_k{k}_{where}"), st, ms=3, lw=1, label=f"levels below the fitted edge, {lab}")
    ax2 = ax.twinx()
    ax2.plot(t, col("T_c") / col("T_c")[0], "k:", lw=1, label=r"$T_c/T_c(0)$")
    ax2.set_ylabel(r"$T_c/T_c(0)$")
    _time_panel(ax, f"split-off levels (edge law fitted to lowest {2 * k})",
                f"{label}: levels below the bulk's soft edge", loc="upper left")
    ax2.legend(fontsize=7, loc="lower right")
    for ax, where, title in ((axes[0], "Tc", r"$I-M$ at $T_c$"),
                             (axes[1], "beta_final", r"$I-M$ at fixed $\beta$ = $\beta_c$(last)")):
        for key, lab, st in ((f"median_{where}", "(a) median spacing", "o-"),
                             (f"edge_unfolded_k{k}_{where}", f"(b) unfolded edge, k={k}", "s-"),
                             (f"edge_unfolded_cubic_k{k}_{where}", f"(b) cubic unfolding, k={k}", "d-"),
                             (f"edge_raw_k{k}_{where}", f"raw mean of lowest {k}", "^--"),
                             (f"s0_{where}", "$s_0$ (raw)", "x:")):
            y = col(key)
            ax.plot(t, y / y[0], st, ms=3, lw=1, label=lab)
        ax.axhline(doc["jump_factor"], color="0.6", ls="--", lw=0.8)
        _time_panel(ax, r"$s_0/s_{\rm typ}$ relative to t = 0", f"{label}: {title}")
        ax.set_yscale("log")
    save_figure(fig, path_levels)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for key, lab, st in (("r_IM_global", r"$I-M$ at $T_c$, all levels", "o-"),
                         (f"r_IM_low_k{k}", rf"$I-M$ at $T_c$, lowest {k}", "s-"),
                         ("r_J_global", r"$J$, positive half", "^-"),
                         (f"r_J_top_k{k}", rf"$J$, top {k}", "v-")):
        ax.errorbar(t, col(key), yerr=col(key + "_se"), fmt=st, ms=3, lw=1, capsize=2, label=lab)
    ax.axhline(spacing.R_GOE, color="k", ls="--", lw=0.8, label=f"GOE {spacing.R_GOE}")
    ax.axhline(spacing.R_POISSON, color="k", ls=":", lw=0.8, label=f"Poisson {spacing.R_POISSON:.3f}")
    _time_panel(ax, r"$\langle r\rangle$", f"{label}: spacing ratio")
    save_figure(fig, path_r)


def write_outputs(doc: dict, out_dir: str, label: str, figures_dir: str | None, k_plot: int) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, f"levels_compare_{label}.json"),
             os.path.join(out_dir, f"levels_compare_{label}.csv")]
    ckpt.atomic_write_json(paths[0], _jsonable(doc))
    with open(paths[1], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(doc["rows"][0]))
        w.writeheader()
        w.writerows(doc["rows"])
    if figures_dir:
        os.makedirs(figures_dir, exist_ok=True)
        pl = os.path.join(figures_dir, f"levels_{label}.png")
        pr = os.path.join(figures_dir, f"r_{label}.png")
        plot(doc, k_plot if k_plot in doc["ks"] else doc["ks"][0], pl, pr, label)
        paths += [pl, pr]
    return paths


def _jsonable(x):
    return jsonable(x, nonfinite="null")  # strict JSON: NaN/inf → null


def main(argv):
    del argv
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required")
    label = FLAGS.label or os.path.basename(os.path.normpath(FLAGS.workdir))
    doc = compare_levels(FLAGS.workdir, analysis_prefix=FLAGS.analysis, max_checkpoints=FLAGS.max_checkpoints,
                         ks=[int(k) for k in FLAGS.ks], jump_factor=FLAGS.jump_factor, early_t=FLAGS.early_t,
                         spectra_cache=FLAGS.spectra_cache)
    paths = write_outputs(doc, FLAGS.out, label, FLAGS.figures or None, FLAGS.k_plot)
    brief = {k: {kk: v.get(kk) for kk in ("y0", "max_ratio_early", "max_ratio", "early_jump")}
             for k, v in doc["summary"].items()}
    print(json.dumps({"outputs": paths, "seconds": round(doc["seconds"], 1), "summary": brief}, indent=1))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
