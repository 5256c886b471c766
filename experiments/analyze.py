r"""TAP analysis of every checkpoint of a training run (paper sections 3.2–3.4).

    python -m experiments.analyze --workdir=runs/standard_lr1e-4 --out=runs/analysis/standard_lr1e-4

Writes, for the run in ``--workdir`` (which is only read):

* ``OUT.npz`` / ``OUT.json`` — one row per checkpoint: t, validation error, β_c, T_c,
  λ_max(J), λ_min(R), s0/s_typ (root search on the block recurrence, eqs. 26–27, with the
  section-3.2 finite-size threshold; Lanczos for the threshold and λ_max(J));
* ``OUT_ends.npz`` / ``OUT_ends.json`` — the first and last checkpoints only, with the whole
  λ_min(I − M(β)) curve (Fig. 5) and the dense spectra of I − M at T_c (Fig. 7) and of J
  (Fig. 9). Dense spectra are kept only there because each is an N×N ``eigvalsh``.

Checkpoints where the root search's β scan (with the reference β* as hint) finds no crossing
(a nearly untrained net: the curve only just touches λ* near its minimum) get β_c from a local
search near the reference β* instead of NaN (:func:`fill_no_crossing`; listed under ``info.beta_c_filled``).

Re-running skips each output that exists and is newer than the run's last checkpoint
(``--force`` recomputes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np
from absl import app, flags

from tapjax import analysis
from tapjax import checkpoints as ckpt
from tapjax import recurrence, spectra, tap
from tapjax.spin_model import couplings

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("workdir", None, "Run directory with checkpoints/ (read only).")
    flags.DEFINE_string("out", None, "Output prefix (default: WORKDIR/analysis).")
    flags.DEFINE_enum("method", "recurrence", ["recurrence", "bisection", "grid"],
                      "β_c search: recurrence root search (secant), recurrence bisection, or the paper's grid.")
    flags.DEFINE_enum("backend", "lanczos", ["lanczos", "dense"], "λ_min(I − M) backend for threshold and curves.")
    flags.DEFINE_integer("num_betas", 128, "β grid size (threshold search and the Fig. 5 curves).")
    flags.DEFINE_float("beta_max", None, "Largest β (default: 2× the analytic MSK β_c).")
    flags.DEFINE_bool("ends", True, "Also write OUT_ends.* (curves and dense spectra of first/last checkpoint).")
    flags.DEFINE_bool("curves", False, "Also store λ_min(I − M(β)) on the β grid for every checkpoint in OUT.npz.")
    flags.DEFINE_bool("x64", False, "Analyze in float64 (enables jax_enable_x64).")
    flags.DEFINE_bool("force", False, "Recompute even when the outputs are up to date.")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")


def output_paths(out_prefix: str, ends: bool = True) -> list[str]:
    """Files :func:`analyze_workdir` writes for ``out_prefix``."""
    prefixes = [out_prefix] + ([out_prefix + "_ends"] if ends else [])
    return [p + ext for p in prefixes for ext in (".npz", ".json")]


def _fresh(workdir: str, outputs: list[str]) -> bool:
    paths = ckpt.list_checkpoints(workdir)
    if not paths or not all(os.path.exists(p) for p in outputs):
        return False
    newest = max(os.path.getmtime(p) for p in paths)
    return min(os.path.getmtime(p) for p in outputs) >= newest


def is_up_to_date(workdir: str, out_prefix: str, ends: bool = True) -> bool:
    """True when every output exists and is newer than the run's newest checkpoint."""
    return _fresh(workdir, output_paths(out_prefix, ends))


def _from_saved(d: dict) -> analysis.Analysis:
    """An :class:`~tapjax.analysis.Analysis` back from :func:`~tapjax.analysis.load_analysis`."""
    fields = {f.name for f in dataclasses.fields(analysis.Analysis)}
    kw = {k: v for k, v in d.items() if k in fields and k not in ("threshold", "analytic_beta_c", "info")}
    return analysis.Analysis(threshold=float(d["threshold"]), analytic_beta_c=float(d["analytic_beta_c"]),
                             info=d["json"]["info"], **kw)


def _couplings(hist: ckpt.RunHistory, i: int, dtype=None):
    return couplings(hist.weights_at(i), name=hist.paths[i], dtype=dtype)


def fill_no_crossing(hist: ckpt.RunHistory, a: analysis.Analysis, backend: str = "lanczos",
                     bracket: float = 0.4, rtol: float = 1e-4, dtype=None) -> analysis.Analysis:
    r"""Fills NaN β_c of checkpoints where the root search's scan found no crossing.

    A nearly untrained net (small lr, early times) has a λ_min(β) curve that only just touches
    the threshold λ* near the reference β* (the t = 0 minimum), in a window narrower than the
    scan spacing — or, within numerical noise, not at all. For each such checkpoint:

    * if :math:`(1-\lambda^*)I - M(\beta^*)` is not positive definite, the crossing is bracketed in
      ``[(1 − bracket) β*, β*]`` and bisected with the same recurrence PD test (``rtol``);
    * otherwise β_c is put at the minimum of λ_min(β) (golden section on
      ``[(1 − bracket) β*, (1 + bracket) β*]``), the temperature of closest approach.

    s0/s_typ is computed at the new β_c. Every filled time, the rule used and (for the second
    rule) how far the minimum stays above λ* are listed in ``a.info["beta_c_filled"]``.
    """
    bad = np.nonzero(~np.isfinite(a.beta_c))[0]
    if bad.size == 0:
        return a
    b_star = float(a.info.get("threshold_beta", a.analytic_beta_c))
    lo0, hi0 = (1 - bracket) * b_star, (1 + bracket) * b_star
    t_index = {float(t): i for i, t in enumerate(hist.t)}
    filled = []
    for row in bad:
        c = _couplings(hist, t_index[float(a.t[row])], dtype)
        pd = lambda b: bool(recurrence.positive_definite(c, b, a.threshold))
        if not pd(b_star) and pd(lo0):
            lo, hi = lo0, b_star
            while hi - lo > rtol * hi:
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if pd(mid) else (lo, mid)
            b, info = hi, {"rule": "narrow crossing bisected near beta*"}
        else:
            f = lambda b: float(tap.least_eigenvalue(c, np.array([b]), backend)[0])
            b, v = tap.golden_min(f, lo0, hi0, rtol=1e-3)
            info = {"rule": "minimum of lambda_min (no crossing)", "above_threshold": v - a.threshold}
        a.beta_c[row] = b
        a.level_spacing[row] = spectra.first_level_spacing(np.asarray(spectra.tap_spectrum(c, b)))
        filled.append({"t": float(a.t[row]), "beta_c": float(b), **info})
    a.T_c = 1.0 / a.beta_c
    a.info["beta_c_filled"] = filled
    return a


def analyze_ends(hist: ckpt.RunHistory, a: analysis.Analysis, betas: np.ndarray,
                 backend: str = "lanczos", dtype=None) -> analysis.Analysis:
    """First and last checkpoint of ``a`` with the λ_min(β) curve (Fig. 5), and the dense spectra
    of I − M at their β_c (Fig. 7) and of J (Fig. 9); β_c is taken from ``a``."""
    rows = [0, len(a.t) - 1]
    t_index = {float(t): i for i, t in enumerate(hist.t)}
    curves, tap_sp, bond_sp = [], [], []
    for row in rows:
        c = _couplings(hist, t_index[float(a.t[row])], dtype)
        curves.append(np.asarray(tap.least_eigenvalue(c, betas, backend)))
        bc = a.beta_c[row]
        tap_sp.append(np.asarray(spectra.tap_spectrum(c, bc)) if np.isfinite(bc)
                      else np.full(c.num_spins, np.nan))
        bond_sp.append(np.asarray(spectra.bond_spectrum(c)))
    pick = lambda v: np.asarray(v)[rows]
    return analysis.Analysis(
        t=pick(a.t), val_error=pick(a.val_error), beta_c=pick(a.beta_c), T_c=pick(a.T_c),
        lambda_max_J=pick(a.lambda_max_J), lambda_min_R=pick(a.lambda_min_R),
        level_spacing=pick(a.level_spacing), threshold=a.threshold, analytic_beta_c=a.analytic_beta_c,
        betas=np.asarray(betas), curves=np.stack(curves), tap_spectra=np.stack(tap_sp),
        bond_spectra=np.stack(bond_sp), info={**a.info, "rows": "first and last checkpoint"})


_ROW_FIELDS = ("t", "val_error", "beta_c", "T_c", "lambda_max_J", "lambda_min_R", "level_spacing")


def merge_analyses(old: analysis.Analysis, new: analysis.Analysis) -> analysis.Analysis:
    """Rows of ``old`` plus the rows of ``new`` at times ``old`` lacks (sorted by t).

    Used to extend the analysis of a run that is still training; both must share the
    reference threshold (same t = 0 checkpoint and settings).
    """
    if not np.isclose(old.threshold, new.threshold, rtol=1e-6, atol=1e-9):
        raise ValueError(f"thresholds differ ({old.threshold} vs {new.threshold}): not the same run/settings")
    have = {float(t) for t in old.t}
    add = np.array([float(t) not in have for t in new.t])
    cols = {k: np.concatenate([np.asarray(getattr(old, k)), np.asarray(getattr(new, k))[add]])
            for k in _ROW_FIELDS}
    order = np.argsort(cols["t"], kind="stable")
    info = {**old.info, **new.info}
    info["errors"] = {str(k): v for d in (old.info.get("errors", {}), new.info.get("errors", {}))
                      for k, v in d.items()}
    filled = old.info.get("beta_c_filled", []) + [f for f in new.info.get("beta_c_filled", [])
                                                  if float(f["t"]) not in have]
    if filled:
        info["beta_c_filled"] = filled
    curves = None
    if old.curves is not None and new.curves is not None:
        curves = np.concatenate([np.asarray(old.curves), np.asarray(new.curves)[add]])[order]
    return analysis.Analysis(**{k: v[order] for k, v in cols.items()}, threshold=old.threshold,
                             analytic_beta_c=old.analytic_beta_c, info=info,
                             betas=old.betas if curves is not None else None, curves=curves)


def default_betas(analytic_beta_c: float, num_betas: int, beta_max: float | None = None) -> np.ndarray:
    """The β grid of :func:`tapjax.analysis.analyze_run`: ``(0, beta_max]``, default 2× analytic."""
    return np.linspace(0.0, beta_max or 2.0 * analytic_beta_c, num_betas + 1)[1:]


def analyze_workdir(workdir: str, out_prefix: str, *, method: str = "recurrence",
                    backend: str = "lanczos", num_betas: int = 128, beta_max: float | None = None,
                    ends: bool = True, curves: bool = False, dtype=None, force: bool = False,
                    progress: bool = True) -> dict:
    """Analyzes one run directory (read only) and writes the outputs under ``out_prefix``.

    ``curves`` also stores λ_min(I − M(β)) on the β grid for every checkpoint; ``dtype``
    (e.g. ``jnp.float64`` with x64 enabled) sets the analysis precision.

    Each of the two outputs (all checkpoints; first/last with curves and spectra) is skipped
    when it is newer than the run's last checkpoint, unless ``force``. A stale table computed
    with the same settings is extended: only checkpoints it lacks are analyzed (a run that is
    still training costs only its new checkpoints).

    Returns:
      ``{"outputs": [...], "skipped": bool, "seconds": float, "checkpoints": int}``.
    """
    main_out, ends_out = output_paths(out_prefix, False), output_paths(out_prefix + "_ends", False)
    main_fresh = not force and _fresh(workdir, main_out)
    ends_fresh = not ends or (not force and _fresh(workdir, ends_out))
    n_ckpt = len(ckpt.list_checkpoints(workdir))
    if main_fresh and ends_fresh:
        return {"outputs": output_paths(out_prefix, ends), "skipped": True, "seconds": 0.0,
                "checkpoints": n_ckpt}
    t0 = time.monotonic()
    hist = ckpt.load_run(workdir)
    settings = {"method": method, "backend": backend, "num_betas": num_betas, "beta_max": beta_max}
    if curves:
        settings["curves"] = True
    if dtype is not None and np.dtype(dtype) != np.float32:
        settings["dtype"] = str(np.dtype(dtype))
    extra = {"dtype": dtype} if dtype is not None else {}
    if main_fresh:
        a = _from_saved(analysis.load_analysis(out_prefix))
    else:
        prev = None
        if not force and all(os.path.exists(p) for p in main_out):
            prev = _from_saved(analysis.load_analysis(out_prefix))
            if prev.info.get("settings") != settings:
                prev = None
        done = set() if prev is None else {float(t) for t in prev.t}
        todo = [i for i, t in enumerate(hist.t) if float(t) not in done]
        a = analysis.analyze_run(hist, method=method, backend=backend, num_betas=num_betas,
                                 beta_max=beta_max, level_spacing=True, progress=progress,
                                 indices=todo, curves=curves, **extra)
        a = fill_no_crossing(hist, a, backend, dtype=dtype)
        a.info.update(workdir=os.path.abspath(workdir), settings=settings)
        if prev is not None:
            a = merge_analyses(prev, a)
        analysis.save_analysis(a, out_prefix)
    if not ends_fresh:
        betas = default_betas(a.analytic_beta_c, num_betas, beta_max)
        analysis.save_analysis(analyze_ends(hist, a, betas, backend, dtype), out_prefix + "_ends")
    return {"outputs": output_paths(out_prefix, ends), "skipped": False,
            "seconds": time.monotonic() - t0, "checkpoints": len(hist)}


def main(argv):
    del argv
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required")
    out = FLAGS.out or os.path.join(FLAGS.workdir, "analysis")
    dtype = None
    if FLAGS.x64:
        import jax  # pylint: disable=import-outside-toplevel
        jax.config.update("jax_enable_x64", True)
        dtype = np.float64
    res = analyze_workdir(FLAGS.workdir, out, method=FLAGS.method, backend=FLAGS.backend,
                          num_betas=FLAGS.num_betas, beta_max=FLAGS.beta_max, ends=FLAGS.ends,
                          curves=FLAGS.curves, dtype=dtype, force=FLAGS.force,
                          progress=FLAGS.progress)
    print(json.dumps({**res, "seconds": round(res["seconds"], 1)}))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
