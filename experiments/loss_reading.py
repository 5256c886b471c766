r"""The loss reading (issue 16 item 5): Weston–Watkins vs one-vs-rest L2-SVM, side by side.

    python -m experiments.loss_reading \
        --ww_standard='/work/runs/seeds_standard_lr1e-4/standard_seed*' \
        --ww_binarized='/work/runs/seeds_binarized_lr1e-4/binarized_seed*' \
        --ovr_standard=/work/runs/ovr_lr1e-4/standard_seed0 \
        --ovr_binarized=/work/runs/ovr_lr1e-4/binarized_seed0 \
        --analysis_dir=/work/runs/analysis16 --out=docs/results --figures=docs/figures

The paper's "L2 multi-class hinge loss, margin 10" (citing Boser et al. and Tang 2013) has two
readings, both in :mod:`tapjax.losses`: the Weston–Watkins form (today's default,
``MultiMarginLoss(p=2, margin=10)``) and Tang's one-vs-rest L2-SVM
(:math:`\sum_j \max(0, \Delta - t_j s_j)^2`, :math:`t_j = \pm 1`). This script

1. summarizes the Weston–Watkins seed groups with :func:`experiments.seeds.summarize_group`
   (the cached analyses under ``--analysis_dir/<group>`` are reused, not recomputed);
2. analyzes each one-vs-rest run with :func:`tapjax.analysis.analyze_run` and the settings of
   ``experiments/seeds.py`` (recurrence root search, ``num_betas`` = 128, no level spacing) on
   at most ``--max_checkpoints`` checkpoints: every checkpoint with t ≥ 1 epoch (the fit range,
   hence the same fit inputs as the Weston–Watkins runs) plus t = 0 and as many evenly spread
   sub-epoch ones as fit; cached as ``--analysis_dir/ovr_<kind>/<run>``;
3. compares, per network kind, the one-vs-rest run against the Weston–Watkins seed spread:
   Table 1 validation error (which reading is closer to the paper), T_c(0)/MSK, the
   piecewise power law of T_c(t) and λ_max(J)(t) (:func:`experiments.seeds.fit_seeds`, the
   number of breaks the Weston–Watkins BIC majority selects *and* the one-vs-rest run's own BIC
   choice), "smaller exponent after the error plateau", split-off eigenvalues of J, λ_min(R)
   drift. A one-vs-rest value is *inside* the Weston–Watkins spread when it lies in the one-seed
   95% interval (mean ± t·std·√(1 + 1/n)) of the seeds.

Binarized: the Weston–Watkins seeds ran 40 of 500 epochs, the one-vs-rest run 60; the
comparison is made at equal epochs (one-vs-rest truncated to t ≤ ``--equal_epochs``) and the full
60-epoch one-vs-rest run is reported beside it, labelled as such.

Writes ``OUT/loss_reading.json``, ``OUT/loss_reading.md`` and ``FIGURES/loss_reading_<kind>.png``.
"""

from __future__ import annotations

import json
import os
import shlex

import numpy as np
from absl import app, flags

from . import seeds
from .figures import load_history, log_y_axis, time_axis
from tapjax import analysis, fits
from tapjax import checkpoints as ckpt

FLAGS = flags.FLAGS
PAPER_TABLE1 = {"standard": 0.0189, "binarized": 0.0266}   # lr 1e-4; binarized after 500 epochs
PAPER_EPOCHS = {"standard": 60, "binarized": 500}


def _define_flags() -> None:
    flags.DEFINE_string("ww_standard", "/work/runs/seeds_standard_lr1e-4/standard_seed*",
                        "Glob of the Weston–Watkins standard seed runs.")
    flags.DEFINE_string("ww_binarized", "/work/runs/seeds_binarized_lr1e-4/binarized_seed*",
                        "Glob of the Weston–Watkins binarized seed runs.")
    flags.DEFINE_string("ovr_standard", "/work/runs/ovr_lr1e-4/standard_seed0", "One-vs-rest standard run.")
    flags.DEFINE_string("ovr_binarized", "/work/runs/ovr_lr1e-4/binarized_seed0", "One-vs-rest binarized run.")
    flags.DEFINE_string("analysis_dir", "/work/runs/analysis16", "Cache of the per-run analyses.")
    flags.DEFINE_string("out", "docs/results", "Directory of loss_reading.{json,md}.")
    flags.DEFINE_string("figures", "docs/figures", "Directory of the figures ('' for none).")
    flags.DEFINE_integer("max_checkpoints", 25, "Most checkpoints analyzed per one-vs-rest run.")
    flags.DEFINE_float("equal_epochs", 40.0, "Binarized comparison at t <= this many epochs.")
    flags.DEFINE_float("t_min", 1.0, "Fit only t >= t_min epochs.")
    flags.DEFINE_integer("bootstrap", 200, "Bootstrap replicates of each fit.")
    flags.DEFINE_integer("num_betas", 128, "β grid of the analysis (as experiments/seeds.py).")
    flags.DEFINE_bool("analyze_only", False, "Only analyze (and cache) the one-vs-rest runs.")
    flags.DEFINE_bool("progress", False, "Progress bars of the analysis.")


# ----------------------------------------------------------------------------- analysis


def choose_indices(t: np.ndarray, max_checkpoints: int, t_min: float = 1.0) -> list[int]:
    """Checkpoint rows to analyze: t = 0, every row with t ≥ ``t_min`` (the fit range), and the
    sub-epoch rows evenly thinned to fill ``max_checkpoints``. Error if the fit range alone
    exceeds the budget (raise ``--max_checkpoints`` or accept a thinner fit)."""
    t = np.asarray(t, float)
    fit_rows = [i for i in range(t.size) if t[i] >= t_min and i != 0]
    if len(fit_rows) + 1 > max_checkpoints:
        raise ValueError(f"{len(fit_rows)} checkpoints have t >= {t_min}: more than --max_checkpoints="
                         f"{max_checkpoints} - 1; raise --max_checkpoints")
    early = [i for i in range(1, t.size) if t[i] < t_min]
    room = max_checkpoints - 1 - len(fit_rows)
    if room < len(early):
        early = [early[int(j)] for j in np.unique(np.linspace(0, len(early) - 1, room).round().astype(int))] \
            if room > 0 else []
    return sorted({0, *early, *fit_rows})


def analyze_ovr(workdir: str, cache_prefix: str, *, max_checkpoints: int, num_betas: int, t_min: float,
                equal_epochs: float | None, progress: bool = False) -> dict:
    """:func:`tapjax.analysis.analyze_run` on the rows of :func:`choose_indices` (cached at
    ``cache_prefix``) plus dense spectra of J and of I − M at β_c of the first, the last and (with
    ``equal_epochs``) the last row with t ≤ ``equal_epochs`` (``<prefix>_ends.npz``, keys
    ``bond_spectra``/``tap_spectra``; ``<prefix>_ends_equal.npz`` for the equal-epoch end)."""
    hist = ckpt.load_run(workdir)
    rows = choose_indices(hist.t, max_checkpoints, t_min)
    need = [cache_prefix + s for s in (".json", ".npz", "_ends.npz")]
    cached = None
    if all(os.path.exists(p) for p in need):
        cached = analysis.load_analysis(cache_prefix)
        if not np.allclose(np.asarray(cached["t"], float), np.asarray(hist.t, float)[rows]):
            cached = None
    if cached is None:
        os.makedirs(os.path.dirname(cache_prefix), exist_ok=True)
        a = analysis.analyze_run(hist, num_betas=num_betas, level_spacing=False, progress=progress, indices=rows)
        a.info["workdir"] = os.path.abspath(workdir)
        a.info["analyzed_rows"] = rows
        analysis.save_analysis(a, cache_prefix)
        ckpt.atomic_write_npz(cache_prefix + "_ends.npz", seeds._ends(hist, np.asarray(a.beta_c), rows))  # pylint: disable=protected-access
        cached = analysis.load_analysis(cache_prefix)
    cached["ends"] = ckpt.read_npz(cache_prefix + "_ends.npz")
    if equal_epochs is not None:
        t = np.asarray(cached["t"], float)
        k = int(np.nonzero(t <= equal_epochs + 1e-9)[0][-1])
        path = cache_prefix + f"_ends_equal{int(equal_epochs)}.npz"
        if not os.path.exists(path):
            bc = np.asarray(cached["beta_c"], float)
            ckpt.atomic_write_npz(path, seeds._ends(hist, bc[[0, k]], [rows[0], rows[k]]))  # pylint: disable=protected-access
        cached["ends_equal"] = ckpt.read_npz(path)
        cached["equal_row"] = k
    return cached


def truncate(a: dict, history: list | None, t_max: float) -> tuple[dict, list | None]:
    """The analysis rows and history epochs with t ≤ ``t_max`` (``ends`` → ``ends_equal``)."""
    t = np.asarray(a["t"], float)
    keep = t <= t_max + 1e-9
    out = {k: (np.asarray(v)[keep] if isinstance(v, np.ndarray) and v.shape[:1] == t.shape else v)
           for k, v in a.items()}
    out["ends"] = a.get("ends_equal", a.get("ends"))
    hist = [h for h in history if float(h["t"]) <= t_max + 1e-9] if history else history
    return out, hist


# ----------------------------------------------------------------------------- comparison


def _val_errors(history: list | None) -> dict:
    errs = [(float(h["t"]), float(h["val_error"])) for h in history or [] if h.get("val_error") is not None]
    if not errs:
        return {"final_val_error": None, "best_val_error": None, "epochs_done": 0}
    return {"final_val_error": errs[-1][1], "best_val_error": min(e for _, e in errs), "epochs_done": errs[-1][0]}


def against_spread(value, s: dict) -> dict:
    """Where one value sits in a seed spread: z = (value − mean)/std, inside the one-seed 95%
    interval, inside min–max."""
    if value is None or not np.isfinite(value) or not s.get("n"):
        return {"value": value, "z": None, "in_one_seed_interval": None, "in_min_max": None}
    z = (value - s["mean"]) / s["std"] if s.get("std") else None
    iv = s.get("one_seed_interval")
    return {"value": float(value), "ww_mean": s["mean"], "ww_std": s.get("std"), "ww_min": s["min"], "ww_max": s["max"],
            "ww_one_seed_interval": iv, "z": None if z is None else float(z),
            "in_one_seed_interval": None if iv is None else bool(iv[0] <= value <= iv[1]),
            "in_min_max": bool(s["min"] <= value <= s["max"])}


def _fit_values(f: dict) -> dict:
    p = f["per_seed"][0]
    if "error" in p:
        return {"error": p["error"]}
    return {"exponents": p["exponents"], "breaks": p["breaks"], "bootstrap_exponent_ci": p["bootstrap_exponent_ci"],
            "breaks_ci": p["breaks_ci"], "bic_selected": f["bic_selected"][0],
            "last_exponent_smaller": bool(p["exponents"][-1] < p["exponents"][-2]) if len(p["exponents"]) > 1 else None}


def compare(kind: str, ww: dict, a: dict, history: list | None, *, label: str, t_min: float, bootstrap: int) -> dict:
    """One-vs-rest run (analysis ``a``, ``history``) against the Weston–Watkins group ``ww``."""
    analytic_tc = 1.0 / float(a["analytic_beta_c"])
    obs = seeds.run_observables(a, history, analytic_tc)
    ve = _val_errors(history)
    paper = PAPER_TABLE1[kind]
    ww_fe = ww["table1"]["final_val_error"]
    out = {"label": label, "kind": kind, "t_max": float(np.max(a["t"])), "num_checkpoints": int(np.asarray(a["t"]).size),
           "val_error": ve, "paper_table1": paper, "paper_epochs": PAPER_EPOCHS[kind],
           "ww_final_val_error": ww_fe,
           "closer_to_table1": None if ve["final_val_error"] is None else
           ("one_vs_rest" if abs(ve["final_val_error"] - paper) < abs(ww_fe["mean"] - paper) else "weston_watkins"),
           "abs_diff_to_table1": {"one_vs_rest": None if ve["final_val_error"] is None else abs(ve["final_val_error"] - paper),
                                  "weston_watkins_mean": abs(ww_fe["mean"] - paper)},
           "val_error_vs_ww": against_spread(ve["final_val_error"], ww_fe),
           "observables": obs,
           "observables_vs_ww": {k: against_spread(v, ww["observables_spread"].get(k, {}))
                                 for k, v in obs.items() if isinstance(v, (int, float)) and v is not None},
           "fits": {}}
    for q in seeds.QUANTITIES:
        wf = ww["fits"][q]
        nb = wf["num_breaks"]
        same = seeds.fit_seeds([a], q, num_breaks=nb, t_min=t_min, bootstrap=bootstrap)
        own = seeds.fit_seeds([a], q, num_breaks=None, t_min=t_min, bootstrap=bootstrap)
        sv = _fit_values(same)
        vs = {}
        if "error" not in sv:
            vs = {"exponents": [against_spread(x, s) for x, s in zip(sv["exponents"], wf["exponents"])],
                  "breaks": [against_spread(x, s) for x, s in zip(sv["breaks"], wf["breaks"])]}
        out["fits"][q] = {"num_breaks_ww": nb, "ww_bic_selected": wf["bic_selected"], "same_breaks": sv,
                          "own_bic": _fit_values(own), "own_num_breaks": own["num_breaks"], "vs_ww": vs,
                          "ww_last_exponent_smaller": wf["last_exponent_smaller"]}
    fit = out["fits"]["T_c"]["same_breaks"]
    pt = obs.get("plateau_time")
    out["smaller_exponent_after_plateau"] = None if "error" in fit or pt is None else {
        "last_exponent_smaller": fit["last_exponent_smaller"], "last_break": fit["breaks"][-1] if fit["breaks"] else None,
        "plateau_time": pt, "holds": bool(fit["last_exponent_smaller"] and fit["breaks"] and fit["breaks"][-1] >= pt)}
    return out


def paired_seed0(ww_analysis: dict, a: dict) -> dict:
    """Same seed (same init): T_c(t) ratio one-vs-rest / Weston–Watkins seed 0 at shared times."""
    tw = {float(t): float(v) for t, v in zip(ww_analysis["t"], ww_analysis["T_c"])}
    rows = [(float(t), float(v) / tw[float(t)]) for t, v in zip(a["t"], a["T_c"]) if float(t) in tw and tw[float(t)]]
    return {"t": [r[0] for r in rows], "T_c_ratio": [r[1] for r in rows]}


# ----------------------------------------------------------------------------- outputs


def plot_kind(ww: dict, runs: list[tuple[str, dict, list | None]], path: str, title: str,
              vline: float | None = None) -> None:
    """T_c(t), λ_max(J)(t), validation error: the Weston–Watkins seed band and the one-vs-rest run(s)."""
    from .common import pyplot, save_figure  # pylint: disable=import-outside-toplevel
    from .figures import error_curve  # pylint: disable=import-outside-toplevel
    plt = pyplot()
    keys = (("T_c", r"$T_c$"), ("lambda_max_J", r"$\lambda_{\max}(J)$"), ("val_error", "validation error"))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    n = ww["table1"]["final_val_error"]["n"]
    for ax, (k, lab) in zip(axes, keys):
        b = ww["bands"][k]
        t = np.asarray(b["t"])
        for y in b["seeds"]:
            ax.plot(t, y, "-", lw=0.5, color="0.6")
        ax.fill_between(t, b["min"], b["max"], color="C0", alpha=0.25, lw=0,
                        label=f"Weston–Watkins, {n} seeds (min–max)")
        for j, (lab_run, a, hist) in enumerate(runs):
            if k == "val_error":
                te, e = error_curve(a, hist)
                ax.plot(te, e, "-", color=f"C{3 + j}", lw=1.2, label=lab_run)
            else:
                ax.plot(a["t"], a[k], "o-", ms=2.5, color=f"C{3 + j}", lw=1.2, label=lab_run)
        if vline is not None:
            ax.axvline(vline, color="k", ls=":", lw=0.8)
        time_axis(ax)
        if k == "val_error":
            ax.set_yscale("log")
        else:
            log_y_axis(ax)
        ax.set_xlabel("t (epochs)")
        ax.set_ylabel(lab)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, dpi=110)


def _f(x, d=4):
    return "—" if x is None else f"{x:.{d}f}"


def _spread_cell(s: dict, d=4) -> str:
    if not s.get("n"):
        return "—"
    return f"{s['mean']:.{d}f} ± {s.get('std', float('nan')):.{d}f} [{s['min']:.{d}f}–{s['max']:.{d}f}]"


def _fit_cells(comps, q: str, key: str, ci_key: str, j: int, d: int, failed: str | None) -> list[str]:
    """Table cells of the j-th ``key`` ("exponents" / "breaks") of each comparison's same-breaks
    fit of quantity ``q``: value [CI], where it falls against the Weston–Watkins seeds; a failed
    fit shows ``failed`` (None: its error message)."""
    cells = []
    for c in comps:
        fv = c["fits"][q]
        sv = fv["same_breaks"]
        if "error" in sv:
            cells.append(sv["error"] if failed is None else failed)
            continue
        ci = sv[ci_key][j]
        cells.append(f"{sv[key][j]:.{d}f} [{ci[0]:.{d}f}, {ci[1]:.{d}f}], {_where(fv['vs_ww'][key][j])}")
    return cells


def _where(v: dict) -> str:
    if v.get("z") is None:
        return "—"
    tag = "inside" if v["in_one_seed_interval"] else "**outside**"
    return f"z = {v['z']:+.1f} ({tag})"


def markdown(doc: dict) -> str:
    """Tables of docs/results/loss_reading.md (one block per network kind)."""
    lines = []
    for kind, blk in doc["kinds"].items():
        ww = blk["ww"]
        comps = blk["ovr"]
        st = ww["table1"]
        lines += [f"**{kind}** — Weston–Watkins: {st['final_val_error']['n']} seeds, epochs {min(st['epochs_done'])}"
                  f"–{max(st['epochs_done'])} of {st['epochs_planned']}; one-vs-rest: 1 seed (seed 0), "
                  + "; ".join(f"{c['label']}" for c in comps), "",
                  "| | Weston–Watkins mean ± std [min–max] | " + " | ".join(c["label"] for c in comps)
                  + " | paper |", "|---|---|" + "---|" * len(comps) + "---|"]
        row = lambda name, s, vals, paper="", d=4: lines.append(  # noqa: E731
            f"| {name} | {_spread_cell(s, d)} | " + " | ".join(vals) + f" | {paper} |")
        row("final val. error", st["final_val_error"],
            [f"{_f(c['val_error']['final_val_error'])}, {_where(c['val_error_vs_ww'])}" for c in comps],
            f"{PAPER_TABLE1[kind]} (t = {PAPER_EPOCHS[kind]})")
        row("best val. error", st["best_val_error"], [_f(c["val_error"]["best_val_error"]) for c in comps])
        row("closer to Table 1", {}, [c["closer_to_table1"] or "—" for c in comps])
        for k, d in (("T_c0_over_analytic", 4), ("T_c_growth", 3), ("J_split_off", 1), ("J_max_final", 3),
                     ("J_bulk_p90_rel_change", 4), ("IM_near_bottom_last", 1), ("lambda_min_R_max_rel_change", 4),
                     ("plateau_time", 1)):
            row(k, ww["observables_spread"].get(k, {}),
                [f"{_f(c['observables'].get(k), d)}, {_where(c['observables_vs_ww'].get(k, {}))}" for c in comps], "", d)
        lines.append("")
        lines += ["| fit | Weston–Watkins mean ± std [min–max] | " + " | ".join(c["label"] for c in comps) + " |",
                  "|---|---|" + "---|" * len(comps)]
        for q in seeds.QUANTITIES:
            wf = ww["fits"][q]
            nb = wf["num_breaks"]
            for j in range(nb + 1):
                cells = _fit_cells(comps, q, "exponents", "bootstrap_exponent_ci", j, 3, None)
                lines.append(f"| {q} α{j + 1} ({nb} breaks) | {_spread_cell(wf['exponents'][j], 3)} | " + " | ".join(cells) + " |")
            for j in range(nb):
                cells = _fit_cells(comps, q, "breaks", "breaks_ci", j, 1, "—")
                lines.append(f"| {q} break t{j + 1} | {_spread_cell(wf['breaks'][j], 1)} | " + " | ".join(cells) + " |")
            cells = []
            for c in comps:
                fv = c["fits"][q]
                ob = fv["own_bic"]
                cells.append(f"BIC: {fv['own_num_breaks']} breaks" + ("" if "error" in ob else
                             f"; α = {', '.join(f'{x:.3f}' for x in ob['exponents'])}; t = "
                             f"{', '.join(f'{x:.1f}' for x in ob['breaks']) or '—'}"))
            lines.append(f"| {q}: breaks by BIC | {wf['bic_selected']} | " + " | ".join(cells) + " |")
            lines.append(f"| {q}: last exponent smaller | {sum(wf['last_exponent_smaller'])}/{len(wf['last_exponent_smaller'])} | "
                         + " | ".join(str(c["fits"][q]["same_breaks"].get("last_exponent_smaller")) for c in comps) + " |")
        cells = []
        for c in comps:
            s = c["smaller_exponent_after_plateau"]
            cells.append("—" if s is None else f"{'holds' if s['holds'] else 'does not hold'} (last break "
                         f"{_f(s['last_break'], 1)}, plateau {_f(s['plateau_time'], 1)})")
        lines.append("| T_c: smaller exponent after the error plateau | | " + " | ".join(cells) + " |")
        ps = blk.get("paired_seed0")
        if ps and ps["t"]:
            r = np.asarray(ps["T_c_ratio"])
            lines += ["", f"Same init (seed 0): T_c one-vs-rest / Weston–Watkins seed 0 = {r[0]:.4f} at t = 0, "
                          f"{r.min():.3f}–{r.max():.3f} over the {r.size} shared checkpoint times, {r[-1]:.3f} at t = {ps['t'][-1]:g}."]
        lines.append("")
    lines.append("z = (one-vs-rest − WW mean)/WW std; *inside* = within the one-seed 95% interval of the WW seeds "
                 "(mean ± t·std·√(1 + 1/n)). Exponent/break brackets: the one-vs-rest run's 95% residual bootstrap.")
    return "\n".join(lines) + "\n"


def build(flags_) -> dict:
    """Everything: the Weston–Watkins summaries, the one-vs-rest analyses and their comparison."""
    doc = {"command": "python -m experiments.loss_reading " + " ".join(
        shlex.quote(f"--{k}={getattr(flags_, k)}") for k in ("ww_standard", "ww_binarized", "ovr_standard", "ovr_binarized",
                                                "analysis_dir", "max_checkpoints", "equal_epochs", "t_min",
                                                "bootstrap", "num_betas")),
           "note": "one-vs-rest: one seed (seed 0) per kind; judged against the Weston–Watkins seed spread", "kinds": {}}
    spec = (("standard", flags_.ww_standard, flags_.ovr_standard, "standard_mnist", None),
            ("binarized", flags_.ww_binarized, flags_.ovr_binarized, "binarized_mnist", flags_.equal_epochs))
    for kind, ww_glob, ovr_dir, group, eq in spec:
        ww_dirs = seeds.expand_group(ww_glob)
        ww = seeds.summarize_group(group, ww_dirs, flags_.analysis_dir, t_min=flags_.t_min, bootstrap=flags_.bootstrap,
                                   num_betas=flags_.num_betas)
        run = os.path.basename(os.path.normpath(ovr_dir))
        a = analyze_ovr(ovr_dir, os.path.join(flags_.analysis_dir, f"ovr_{kind}", run),
                        max_checkpoints=flags_.max_checkpoints, num_betas=flags_.num_betas, t_min=flags_.t_min,
                        equal_epochs=eq, progress=flags_.progress)
        hist = load_history(ovr_dir)
        status = seeds.run_status(ovr_dir)
        if status.get("kind") != kind:
            raise ValueError(f"--ovr_{kind}={ovr_dir}: config.json says model.kind={status.get('kind')!r}")
        with open(os.path.join(ovr_dir, "config.json")) as f:
            loss = json.load(f).get("loss")
        if loss != "one_vs_rest":
            raise ValueError(f"--ovr_{kind}={ovr_dir}: config.json says loss={loss!r}, expected 'one_vs_rest'")
        views = []
        ww_tmax = max(ww["t_max"])
        if eq is not None and float(np.max(a["t"])) > eq + 1e-9:
            av, hv = truncate(a, hist, eq)
            views.append((f"one-vs-rest, t ≤ {eq:g} (equal epochs)", av, hv))
            views.append((f"one-vs-rest, all {status['epochs_done']} epochs", a, hist))
        else:
            views.append((f"one-vs-rest, {status['epochs_done']} epochs", a, hist))
        comps = [compare(kind, ww, av, hv, label=lab, t_min=flags_.t_min, bootstrap=flags_.bootstrap)
                 for lab, av, hv in views]
        ww_seed0 = [x for x, d in zip(seeds.analyze_group(ww_dirs, os.path.join(flags_.analysis_dir, group)), ww_dirs)
                    if seeds.run_status(d)["seed"] == status["seed"]]
        doc["kinds"][kind] = {"ww": ww, "ww_t_max": ww_tmax, "ovr_status": status, "ovr": comps,
                              "ovr_analyzed_t": np.asarray(a["t"], float).tolist(),
                              "paired_seed0": paired_seed0(ww_seed0[0], views[0][1]) if ww_seed0 else None,
                              "_views": views}
    return doc


def main(argv):
    del argv
    if FLAGS.analyze_only:
        for kind, d, eq in (("standard", FLAGS.ovr_standard, None), ("binarized", FLAGS.ovr_binarized, FLAGS.equal_epochs)):
            analyze_ovr(d, os.path.join(FLAGS.analysis_dir, f"ovr_{kind}", os.path.basename(os.path.normpath(d))),
                        max_checkpoints=FLAGS.max_checkpoints, num_betas=FLAGS.num_betas, t_min=FLAGS.t_min,
                        equal_epochs=eq, progress=FLAGS.progress)
        return
    doc = build(FLAGS)
    paths = []
    if FLAGS.figures:
        os.makedirs(FLAGS.figures, exist_ok=True)
        for kind, blk in doc["kinds"].items():
            p = os.path.join(FLAGS.figures, f"loss_reading_{kind}.png")
            plot_kind(blk["ww"], blk["_views"][-1:], p,
                      f"{kind} lr 1e-4: Weston–Watkins seeds (band) vs one-vs-rest seed 0 ({blk['ovr'][-1]['label']})"
                      + (f"; dotted: t = {FLAGS.equal_epochs:g}" if len(blk["ovr"]) > 1 else ""),
                      vline=FLAGS.equal_epochs if len(blk["ovr"]) > 1 else None)
            paths.append(p)
    for blk in doc["kinds"].values():
        blk.pop("_views")
        ww = blk["ww"]
        blk["ww"] = {k: ww[k] for k in ("label", "analytic_T_c", "table1", "num_checkpoints", "t_max", "fits",
                                        "observables_spread")}
        blk["ww"]["bands"] = {k: ww["bands"][k] for k in ("T_c", "lambda_max_J") if k in ww["bands"]}
    os.makedirs(FLAGS.out, exist_ok=True)
    pj, pm = os.path.join(FLAGS.out, "loss_reading.json"), os.path.join(FLAGS.out, "loss_reading.md")
    ckpt.atomic_write_json(pj, seeds._jsonable(doc))  # pylint: disable=protected-access
    ckpt.atomic_write_bytes(pm, (f"```bash\n{doc['command']}\n```\n\n" + markdown(doc)).encode())
    print(json.dumps({"outputs": [pj, pm, *paths]}, indent=1), flush=True)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
