r"""TAP analysis of every checkpoint of a training run (paper sections 3.2–3.4).

    python -m experiments.analyze --workdir=runs/standard_lr1e-4 --out=runs/analysis/standard_lr1e-4
    python -m experiments.analyze --source=model.safetensors --reference=shuffled

Prints the summary table and writes, for the run in ``--workdir`` (which is only read):

* ``OUT.npz`` / ``OUT.json`` (+ ``OUT.csv``, ``OUT_table.json``, ``OUT_layers.csv`` for pandas) —
  one row per checkpoint: t, validation error, β_c, T_c, λ_max(J), λ_min(R), s0/s_typ, crossing
  (:func:`tapjax.analysis.analyze`: root search on the block recurrence, eqs. 26–27, with the
  §3.2 reference threshold of :mod:`tapjax.reference`);
* ``OUT_ends.npz`` / ``OUT_ends.json`` — the first and last checkpoints only, with the whole
  λ_min(I − M(β)) curve (Fig. 5) and the dense spectra of I − M at T_c (Fig. 7) and of J
  (Fig. 9). Dense spectra are kept only there because each is an N×N ``eigvalsh``.

Checkpoints without a crossing follow the library's one rule (:mod:`tapjax.analysis`): a local
search near β*, then ``crossing`` = ``"near β*"`` / ``"touch"`` / ``"none ≤ β_max"`` (NaN β_c).
With ``--source`` any network or series is analyzed (``OUT_tc.png`` is the T_c(t) figure).

Re-running skips each output that exists and is newer than the run's last checkpoint
(``--force`` recomputes).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import app, flags, logging

from tapjax import analysis
from tapjax import checkpoints as ckpt
from tapjax import spectra, tap
from tapjax.reference import beta_grid
from tapjax.spin_model import couplings

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("workdir", None, "Run directory with checkpoints/ (read only).")
    flags.DEFINE_string("source", None, "Instead of --workdir: any network or series tapjax.analyze reads "
                        "(file, directory of snapshots, tapjax run).")
    flags.DEFINE_enum("reference", None, ["auto", "init", "shuffled", "gaussian", "msk"],
                      "§3.2 reference (tapjax.reference; default init for --workdir, auto for --source).")
    flags.DEFINE_enum("layout", None, ["in_out", "out_in"], "Weight layout of raw array sources.")
    flags.DEFINE_string("out", None, "Output prefix (default: WORKDIR/analysis).")
    flags.DEFINE_enum("method", "recurrence", ["recurrence", "bisection", "grid"],
                      "β_c search: recurrence root search (secant), recurrence bisection, or the paper's grid.")
    flags.DEFINE_enum("backend", "lanczos", ["lanczos", "dense"], "λ_min(I − M) backend for threshold and curves.")
    flags.DEFINE_integer("num_betas", 128, "β grid size (threshold search and the Fig. 5 curves).")
    flags.DEFINE_float("beta_max", None, "Largest β (default: 2× the MSK β_c of the measured init scales).")
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


def _from_saved(prefix: str) -> analysis.Analysis:
    """An :class:`~tapjax.analysis.Analysis` back from :func:`~tapjax.analysis.save_analysis` files.

    Raises:
      ckpt.CheckpointError: a file is missing, truncated or corrupt (e.g. left by a killed run);
        the message names the file.
    """
    for path in (prefix + ".npz", prefix + ".json"):
        if not os.path.exists(path):
            raise ckpt.CheckpointError(f"{path}: file not found")
    try:
        return analysis.read_analysis(prefix)
    except ckpt.CheckpointError:
        raise
    except (ValueError, KeyError, OSError, EOFError, TypeError) as e:
        # json.JSONDecodeError (a ValueError) and a missing array do not name the file: say which
        bad = prefix + ".json"
        try:
            ckpt.read_npz(prefix + ".npz")
        except ckpt.CheckpointError:
            bad = prefix + ".npz"
        raise ckpt.CheckpointError(f"{bad}: unreadable analysis output ({type(e).__name__}: {e}); "
                                   "delete it or re-run with force=True") from e


def _unreadable(prefix: str) -> str | None:
    """None when :func:`_from_saved` reads ``prefix``, else the reason (naming the file)."""
    try:
        _from_saved(prefix)
    except ckpt.CheckpointError as e:
        return str(e)
    return None


def _couplings(hist: ckpt.RunHistory, i: int, dtype=None):
    return couplings(hist.weights_at(i), name=hist.paths[i] if hist.paths else f"snapshot {i}", dtype=dtype)


def fill_no_crossing(hist: ckpt.RunHistory, a: analysis.Analysis, backend: str = "lanczos",
                     bracket: float = 0.4, rtol: float = 1e-4, dtype=None) -> analysis.Analysis:
    """Deprecated: :func:`tapjax.analysis.analyze` (and ``analyze_run``) already apply the library's
    no-crossing rule (:func:`tapjax.analysis.resolve_no_crossing`). This applies that same rule to
    any NaN β_c row of ``a`` and records it in ``a.crossing``; rows with no crossing stay NaN
    (the old filler value — the β of closest approach — is no longer produced)."""
    import warnings  # pylint: disable=import-outside-toplevel
    warnings.warn("experiments.analyze.fill_no_crossing is deprecated: tapjax.analysis.analyze applies "
                  "the no-crossing rule itself", DeprecationWarning, stacklevel=2)
    bad = np.nonzero(~np.isfinite(a.beta_c))[0]
    if bad.size == 0:
        return a
    b_star = float(a.info.get("threshold_beta", a.analytic_beta_c))
    t_index = {float(t): i for i, t in enumerate(hist.t)}
    crossing = np.asarray(a.crossing if a.crossing is not None else
                          ["yes" if np.isfinite(b) else "none ≤ β_max" for b in a.beta_c], dtype=object)
    margin = np.full(len(a.t), np.nan) if a.closest_margin is None else np.asarray(a.closest_margin, float)
    for row in bad:
        c = _couplings(hist, t_index[float(a.t[row])], dtype)
        b, flag, m = analysis.resolve_no_crossing(c, a.threshold, b_star, backend, rtol=rtol, width=bracket)
        a.beta_c[row], crossing[row], margin[row] = b, flag, m
        if np.isfinite(b):
            a.level_spacing[row] = spectra.first_level_spacing(spectra.tap_levels(c, b))
    a.T_c = 1.0 / a.beta_c
    a.crossing, a.closest_margin = np.asarray(crossing, str), margin
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
        tap_sp.append(spectra.tap_levels(c, bc) if np.isfinite(bc)
                      else np.full(c.num_spins, np.nan))
        bond_sp.append(spectra.bond_levels(c))
    pick = lambda v: np.asarray(v)[rows]
    return analysis.Analysis(
        t=pick(a.t), val_error=pick(a.val_error), beta_c=pick(a.beta_c), T_c=pick(a.T_c),
        lambda_max_J=pick(a.lambda_max_J), lambda_min_R=pick(a.lambda_min_R),
        level_spacing=pick(a.level_spacing), threshold=a.threshold, analytic_beta_c=a.analytic_beta_c,
        betas=np.asarray(betas), curves=np.stack(curves), tap_spectra=np.stack(tap_sp),
        bond_spectra=np.stack(bond_sp), info={**a.info, "rows": "first and last checkpoint"},
        crossing=None if a.crossing is None else pick(a.crossing), reference=a.reference)


_ROW_FIELDS = ("t", "val_error", "beta_c", "T_c", "lambda_max_J", "lambda_min_R", "level_spacing")
_OPTIONAL_FIELDS = ("crossing", "closest_margin", "step")


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
    for k in _OPTIONAL_FIELDS:
        if getattr(old, k) is not None and getattr(new, k) is not None:
            cols[k] = np.concatenate([np.asarray(getattr(old, k)), np.asarray(getattr(new, k))[add]])
    order = np.argsort(cols["t"], kind="stable")
    info = {**old.info, **new.info}
    info["errors"] = {str(k): v for d in (old.info.get("errors", {}), new.info.get("errors", {}))
                      for k, v in d.items()}
    layers = None
    if old.layers is not None and new.layers is not None and old.layers.names == new.layers.names:
        cat = lambda k: np.concatenate([getattr(old.layers, k), getattr(new.layers, k)[add]])[order]
        layers = analysis.LayerTable(names=old.layers.names, shapes=old.layers.shapes, sigma_max=cat("sigma_max"),
                                     frobenius=cat("frobenius"), C=cat("C"), top_share=cat("top_share"))
    curves = None
    if old.curves is not None and new.curves is not None:
        curves = np.concatenate([np.asarray(old.curves), np.asarray(new.curves)[add]])[order]
    return analysis.Analysis(**{k: np.asarray(v)[order] for k, v in cols.items()}, threshold=old.threshold,
                             analytic_beta_c=old.analytic_beta_c, info=info, reference=old.reference, layers=layers,
                             betas=old.betas if curves is not None else None, curves=curves)


def default_betas(analytic_beta_c: float, num_betas: int, beta_max: float | None = None) -> np.ndarray:
    """The β grid of :func:`tapjax.analysis.analyze_run`: ``(0, beta_max]``, default 2× analytic."""
    return beta_grid(beta_max or 2.0 * analytic_beta_c, num_betas)


def analyze_workdir(workdir: str, out_prefix: str, *, method: str = "recurrence",
                    backend: str = "lanczos", num_betas: int = 128, beta_max: float | None = None,
                    ends: bool = True, curves: bool = False, dtype=None, force: bool = False,
                    reference: str = "init", progress: bool = True) -> dict:
    """Analyzes one run directory (read only) and writes the outputs under ``out_prefix``.

    The library does the work: :func:`tapjax.analysis.analyze` with the §3.2 reference of
    :class:`tapjax.reference.Reference` (``reference`` kind, default ``"init"``; its β grid
    ``linspace(0, beta_max, num_betas + 1)[1:]``, ``beta_max`` defaulting to twice the MSK β_c of
    the measured init scales) and its no-crossing rule (``crossing`` column; NaN β_c where there
    is none). ``curves`` also stores λ_min(I − M(β)) on the β grid for every checkpoint; ``dtype``
    (e.g. ``jnp.float64`` with x64 enabled) sets the analysis precision.

    Each of the two outputs (all checkpoints; first/last with curves and spectra) is skipped
    when it is newer than the run's last checkpoint, unless ``force``. A stale table computed
    with the same settings is extended with the *same* reference (its saved
    :class:`~tapjax.reference.ReferenceResult`): only checkpoints it lacks are analyzed.

    Returns:
      ``{"outputs": [...], "skipped": bool, "seconds": float, "checkpoints": int}``.
    """
    from tapjax.reference import Reference, ReferenceResult  # pylint: disable=import-outside-toplevel
    main_out, ends_out = output_paths(out_prefix, False), output_paths(out_prefix + "_ends", False)
    main_fresh = not force and _fresh(workdir, main_out)
    ends_fresh = not ends or (not force and _fresh(workdir, ends_out))
    notes: list[str] = []
    # a file newer than the last checkpoint may still be corrupt (an earlier run killed while
    # writing it, a full disk): such an output is recomputed, and the note says so
    for fresh, prefix in ((main_fresh, out_prefix), (ends_fresh and ends, out_prefix + "_ends")):
        why = _unreadable(prefix) if fresh else None
        if why is not None:
            notes.append(f"recomputed: {why}")
            logging.warning("analysis output unreadable, recomputing: %s", why)
            if prefix == out_prefix:
                main_fresh = False
            else:
                ends_fresh = False
    n_ckpt = len(ckpt.list_checkpoints(workdir))
    if main_fresh and ends_fresh:
        return {"outputs": output_paths(out_prefix, ends), "skipped": True, "seconds": 0.0,
                "checkpoints": n_ckpt}
    t0 = time.monotonic()
    hist = ckpt.load_run(workdir)
    settings = {"method": method, "backend": backend, "num_betas": num_betas, "beta_max": beta_max}
    if reference != "init":
        settings["reference"] = reference
    if curves:
        settings["curves"] = True
    if dtype is not None and np.dtype(dtype) != np.float32:
        settings["dtype"] = str(np.dtype(dtype))
    extra = {"dtype": dtype} if dtype is not None else {}
    if main_fresh:
        a = _from_saved(out_prefix)
    else:
        prev = None
        if not force and all(os.path.exists(p) for p in main_out):
            try:
                prev = _from_saved(out_prefix)
            except ckpt.CheckpointError as e:
                prev = None      # unreadable stale output: recompute everything, and say so
                if not any(str(e) in n for n in notes):
                    notes.append(f"recomputed: {e}")
                    logging.warning("stale analysis output unreadable, recomputing: %s", e)
            if prev is not None and (prev.info.get("settings") != settings or prev.reference is None):
                prev = None
        done = set() if prev is None else {float(t) for t in prev.t}
        todo = [i for i, t in enumerate(hist.t) if float(t) not in done]
        if prev is not None:
            ref = ReferenceResult.from_dict(prev.reference)
        else:
            grid = None
            if beta_max is not None:
                grid = tuple(beta_grid(beta_max, num_betas))
            ref = Reference(kind=reference, num_betas=num_betas, betas=grid, backend=backend)
        a = analysis.analyze(hist, ref, method={"recurrence": "secant", "bisection": "bisect",
                                                "grid": "grid"}[method],
                             level_spacing=True, level_method="dense", progress=progress, indices=todo,
                             curves=curves, **extra)
        a.info.update(workdir=os.path.abspath(workdir), settings=settings, backend=backend)
        if notes:
            a.info["recomputed"] = list(notes)
        if prev is not None:
            a = merge_analyses(prev, a)
        analysis.save_analysis(a, out_prefix)
    if not ends_fresh:
        betas = default_betas(a.analytic_beta_c, num_betas, beta_max)
        rb = (a.reference or {}).get("info", {}).get("grid_beta_max")
        if rb and beta_max is None:   # the reference grid after any extension
            betas = beta_grid(rb, num_betas)
        analysis.save_analysis(analyze_ends(hist, a, betas, backend, dtype), out_prefix + "_ends")
    out = {"outputs": output_paths(out_prefix, ends), "skipped": False,
           "seconds": time.monotonic() - t0, "checkpoints": len(hist)}
    if notes:
        out["notes"] = notes
    return out


def analyze_source(source: str, out_prefix: str, *, reference: str = "auto", layout=None,
                   dtype=None, progress: bool = True) -> dict:
    """Any source :func:`tapjax.analyze` reads → ``OUT.{npz,json,csv}``, ``OUT_layers.csv``, ``OUT_tc.png``."""
    a = analysis.analyze(source, reference, layout=layout, dtype=dtype, progress=progress)
    analysis.save_analysis(a, out_prefix)
    files = list(analysis.table_paths(out_prefix).values())
    try:
        files.append(a.plot(out_prefix + "_tc.png"))
    except ValueError as e:      # every value NaN: say so instead of an empty figure
        a.info["plot"] = str(e)
    return {"outputs": files, "analysis": a}


def main(argv):
    del argv
    if not FLAGS.workdir and not FLAGS.source:
        raise app.UsageError("--workdir (a tapjax run) or --source (any network or series) is required")
    dtype = None
    if FLAGS.x64:
        import jax  # pylint: disable=import-outside-toplevel
        jax.config.update("jax_enable_x64", True)
        dtype = np.float64
    if FLAGS.source:
        out = FLAGS.out or os.path.splitext(os.path.abspath(FLAGS.source.rstrip("/")))[0] + "_analysis"
        res = analyze_source(FLAGS.source, out, reference=FLAGS.reference or "auto", layout=FLAGS.layout,
                             dtype=dtype, progress=FLAGS.progress)
    else:
        out = FLAGS.out or os.path.join(FLAGS.workdir, "analysis")
        res = analyze_workdir(FLAGS.workdir, out, method=FLAGS.method, backend=FLAGS.backend,
                              num_betas=FLAGS.num_betas, beta_max=FLAGS.beta_max, ends=FLAGS.ends,
                              curves=FLAGS.curves, dtype=dtype, force=FLAGS.force,
                              reference=FLAGS.reference or "init", progress=FLAGS.progress)
    a = res.pop("analysis", None)
    if a is None:
        a = _from_saved(out)
    print(a.summary())
    print(json.dumps({k: (round(v, 1) if isinstance(v, float) else v) for k, v in res.items()}, indent=1))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
