r"""One call from a run's checkpoints to a table of melting temperatures and spectra.

:func:`analyze_run` gives, per checkpoint: :math:`\beta_c`, :math:`T_c = 1/\beta_c` (section 3.2
rule: first β where :math:`\lambda_{\min}(I - M)` reaches the t = 0 minimum :math:`\lambda^*`),
:math:`\lambda_{\max}(J)`, :math:`\lambda_{\min}(R)`, :math:`s_0/s_{\rm typ}` of :math:`I - M`
at :math:`T_c`, and optionally the whole :math:`\lambda_{\min}(\beta)` curve and the spectra.
:func:`save_analysis` writes it as ``.npz`` (arrays) plus ``.json`` (a readable table).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax.numpy as jnp
import numpy as np

from tapjax import checkpoints as ckpt
from tapjax import msk, recurrence, spectra, tap
from tapjax.progress import ProgressBar
from tapjax.spin_model import couplings


@dataclasses.dataclass
class Analysis:
    """Per-checkpoint results (arrays share the leading checkpoint axis T)."""

    t: np.ndarray
    val_error: np.ndarray
    beta_c: np.ndarray
    T_c: np.ndarray
    lambda_max_J: np.ndarray
    lambda_min_R: np.ndarray
    level_spacing: np.ndarray
    threshold: float
    analytic_beta_c: float
    betas: np.ndarray | None = None
    curves: np.ndarray | None = None          # (T, B) λ_min(I − M(β))
    tap_spectra: np.ndarray | None = None     # (T, N) spectrum of I − M at β_c
    bond_spectra: np.ndarray | None = None    # (T, N) spectrum of J
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def rows(self) -> list[dict[str, float]]:
        keys = ("t", "val_error", "beta_c", "T_c", "lambda_max_J", "lambda_min_R", "level_spacing")
        return [{k: (None if not np.isfinite(getattr(self, k)[i]) else float(getattr(self, k)[i]))
                 for k in keys} for i in range(len(self.t))]


def analyze_run(run: str | ckpt.RunHistory, *, method: str = "recurrence", backend: str = "lanczos",
                betas=None, beta_max: float | None = None, num_betas: int = 256,
                curves: bool = False, keep_spectra: bool = False, level_spacing: bool = True,
                rtol: float = 1e-4, lanczos_iter: int = 120, dtype=jnp.float32,
                indices=None, progress: bool = True) -> Analysis:
    """Analyzes every checkpoint of a run (or ``indices`` of them).

    Args:
      run: run directory or a loaded :class:`~tapjax.checkpoints.RunHistory`.
      method: ``"recurrence"`` (root search on the block recurrence, eqs. 26–27:
        :func:`tapjax.recurrence.critical_beta`, secant refinement, the reference β* as a scan
        hint), ``"bisection"`` (same with plain bisection) or ``"grid"`` (the paper's β grid).
      backend: λ_min backend for the reference threshold and curves: ``"lanczos"`` or ``"dense"``.
      betas: β grid; default ``linspace(0, beta_max, num_betas + 1)[1:]`` with ``beta_max``
        defaulting to twice the analytic MSK β_c of the net's sizes.
      curves: also store λ_min(β) for every checkpoint (``(T, B)``).
      keep_spectra: store the full spectra of I − M at β_c and of J (dense; small nets).
      level_spacing: compute s0/s_typ (one dense eigvalsh of I − M per checkpoint).
      rtol: relative precision of β_c (recurrence methods).
      dtype: float32 (default) or float64 (enable ``jax_enable_x64`` first).
      indices: subset of checkpoint indices (the reference t=0 checkpoint is always used).

    Returns:
      :class:`Analysis`. A checkpoint with no crossing in range gets NaN β_c (and the reason
      in ``info["errors"]``).
    """
    hist = ckpt.load_run(run) if isinstance(run, str) else run
    if method not in ("recurrence", "bisection", "grid"):
        raise ValueError(f"method={method!r}: use 'recurrence', 'bisection' or 'grid'")
    cs = lambda i: couplings(hist.weights_at(i), name=hist.paths[i] if hist.paths else f"checkpoint {i}",
                             dtype=dtype)
    c0 = cs(0)
    scale = float(hist.config.get("model", {}).get("init_scale", 2.0)) if hist.config else 2.0
    analytic = msk.critical_beta(c0.sizes, scale)
    if betas is None:
        beta_max = beta_max or 2.0 * analytic
        betas = np.linspace(0.0, beta_max, num_betas + 1)[1:]
    betas = np.asarray(betas, float)
    kw = {"num_iter": lanczos_iter} if backend == "lanczos" else {}
    thr = tap.reference_threshold(c0, betas, backend, **kw)
    idx = list(range(len(hist))) if indices is None else sorted(set(indices) | {0})
    T = len(idx)
    out = {k: np.full(T, np.nan) for k in ("beta_c", "lambda_max_J", "lambda_min_R", "level_spacing")}
    curve_arr = np.full((T, len(betas)), np.nan) if curves else None
    tap_sp, bond_sp, errors = [], [], {}
    bar = ProgressBar(T, "analyze", enabled=progress, min_interval=5.0)
    for row, i in enumerate(idx):
        c = cs(i)
        if curves:
            curve_arr[row] = np.asarray(tap.least_eigenvalue(c, betas, backend, **kw))
        try:
            if i == 0:
                bc = thr.beta
            elif method == "grid":
                cur = curve_arr[row] if curves else np.asarray(tap.least_eigenvalue(c, betas, backend, **kw))
                bc = float(betas[tap.first_crossing_index(cur, thr.value)])
            else:
                bc = recurrence.critical_beta(c, thr.value, float(betas[-1]), rtol=rtol, hint=thr.beta,
                                              method="secant" if method == "recurrence" else "bisect")
        except tap.NoCrossingError as e:
            bc, errors[float(hist.t[i])] = np.nan, str(e)
        out["beta_c"][row] = bc
        out["lambda_max_J"][row] = float(spectra.lambda_max_bond(c, "lanczos", num_iter=lanczos_iter))
        out["lambda_min_R"][row] = float(spectra.lambda_min_r(c))
        if (level_spacing or keep_spectra) and np.isfinite(bc):
            ev = np.asarray(spectra.tap_spectrum(c, bc))
            out["level_spacing"][row] = spectra.first_level_spacing(ev)
            if keep_spectra:
                tap_sp.append(ev)
                bond_sp.append(np.asarray(spectra.bond_spectrum(c)))
        elif keep_spectra:
            tap_sp.append(np.full(c.num_spins, np.nan))
            bond_sp.append(np.asarray(spectra.bond_spectrum(c)))
        bar.update(1, t=float(hist.t[i]), T_c=1.0 / bc if bc else float("nan"))
    bar.close()
    return Analysis(
        t=hist.t[idx], val_error=hist.val_error[idx], beta_c=out["beta_c"], T_c=1.0 / out["beta_c"],
        lambda_max_J=out["lambda_max_J"], lambda_min_R=out["lambda_min_R"],
        level_spacing=out["level_spacing"], threshold=thr.value, analytic_beta_c=analytic,
        betas=betas if curves else None, curves=curve_arr,
        tap_spectra=np.stack(tap_sp) if tap_sp else None,
        bond_spectra=np.stack(bond_sp) if bond_sp else None,
        info={"method": method, "backend": backend, "sizes": list(c0.sizes), "rtol": rtol,
              "dtype": str(jnp.dtype(dtype)), "threshold_beta": thr.beta, "errors": errors,
              "config": hist.config})


def save_analysis(a: Analysis, path_prefix: str) -> tuple[str, str]:
    """Writes ``<prefix>.npz`` (all arrays) and ``<prefix>.json`` (table + metadata)."""
    arrays = {k: v for k, v in dataclasses.asdict(a).items()
              if isinstance(v, np.ndarray)}
    arrays["threshold"] = np.asarray(a.threshold)
    arrays["analytic_beta_c"] = np.asarray(a.analytic_beta_c)
    ckpt.atomic_write_npz(path_prefix + ".npz", arrays)
    ckpt.atomic_write_json(path_prefix + ".json", {
        "threshold": a.threshold, "analytic_beta_c": a.analytic_beta_c,
        "analytic_T_c": 1.0 / a.analytic_beta_c, "info": a.info, "rows": a.rows()})
    return path_prefix + ".npz", path_prefix + ".json"


def load_analysis(path_prefix: str) -> dict[str, Any]:
    """Reads what :func:`save_analysis` wrote → dict of arrays plus ``"json"``."""
    d = ckpt.read_npz(path_prefix + ".npz")
    with open(path_prefix + ".json") as f:
        d["json"] = json.load(f)
    return d


