r"""One call from any network or training series to a table of melting temperatures and spectra.

:func:`analyze` gives, per snapshot: :math:`\beta_c`, :math:`T_c = 1/\beta_c` (section 3.2 rule:
first β where :math:`\lambda_{\min}(I - M)` (eqs. 22–25) reaches the reference threshold
:math:`\lambda^*` of :mod:`tapjax.reference`), :math:`\lambda_{\max}(J)`, :math:`\lambda_{\min}(R)`,
:math:`s_0/s_{\rm typ}` of :math:`I - M` at :math:`T_c`, a ``crossing`` flag, and a per-layer table
(:class:`LayerTable`: σ_max, Frobenius norm, measured :math:`C_k`, share of J's top eigenvector).
:func:`analyze_run` is the earlier entry point for tapjax run directories (same engine, ``"init"``
reference). :func:`save_analysis` writes ``.npz`` (arrays), ``.json`` (table + metadata),
``.csv`` / ``_table.json`` (the table, for pandas) and ``_layers.csv``.

**Batched compute.** The snapshots are stacked (``(T, N_{k-1}, N_k)`` per block) and run chunk
by chunk (a buffer of ``batch_size`` snapshots), so the number of compiled programs does not
depend on T at all — a series of 1 and one of 1,000 snapshots run the same programs, and a short
series computes no padding:

* one program per chunk, a loop over its first n snapshots inside (:func:`_map_prefix`): λ_max(J)
  and its eigenvector (dense ``eigh`` up to ``linalg.DENSE_MAX_SPINS`` spins, else Lanczos), λ_min(R)
  and the per-layer table, and the matrices I − M(β_c) whose dense spectra give the level spacing
  (or, above ``dense_max_spins`` spins, :func:`tapjax.levels.level_spacing`);
* one shared kernel per net, called once per snapshot: the critical-β search
  (:func:`tapjax.recurrence.critical_beta_search`, reference β* as the scan hint; the same
  kernel as every other caller of the search) and the optional λ_min curves (``curves=True`` or
  ``method="grid"``: the reference curve's kernel). A search or a curve is many eigensolves or
  PD tests, next to which one dispatch per snapshot is nothing, and a chunk program of their own
  would be compiled once more per net shape for nobody else.

**No-crossing rule** (one rule, recorded per row in ``crossing``):

* ``"yes"``: the root search's scan of ``(0, β_max]`` (plus the hint β*) found the crossing;
* ``"reference"``: the ``"init"`` reference snapshot itself: β_c = β*, where λ_min touches λ*;
* ``"near β*"``: the scan found none, but a golden-section minimization of λ_min(β) on
  ``[0.6 β*, 1.4 β*]`` dips below λ* (a crossing window narrower than the scan spacing): β_c is
  bisected with the PD test of the recurrence;
* ``"touch"``: the closest approach stays above λ* by no more than ``touch_atol`` (the
  threshold's own uncertainty: ``max(threshold_spread, 1e-4 in float32 / 1e-8 in float64)``), or
  the λ_min backend dips below λ* where the PD test still says positive definite (agreement only
  to rounding): β_c is the β of closest approach;
* ``"none ≤ β_max"``: λ_min stays above λ* on the whole range: **β_c = T_c = NaN**, never a filler
  value; ``closest_margin`` holds min λ_min − λ* near β*.

**Search outcomes without a result** (:class:`tapjax.recurrence.SearchStatus`, per row in
``info["search_status"]``, the reason in ``info["search_errors"]``): β_c = T_c = NaN and
``crossing`` = ``"not converged"`` (MAX_ITER), ``"non-finite"`` (NONFINITE) or ``"β range
overflow"`` (OUT_OF_RANGE). An OUT_OF_RANGE row (huge weights: β²·Σw² not representable up to
β_max) is first searched again on the representable range with the scale-equivariant hint
β*·max|W_ref|/max|W|, which gives the exact scaled β_c when the dip is there.

**Scale.** The bond program and the spectra work on W/s (s = :func:`coupling_scale`, a power of
two) and rescale in float64, so W × 1e20 in float32 gives s·λ_max(J), s²·λ_min(R), etc.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
from typing import Any, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tapjax import checkpoints as ckpt
from tapjax import recurrence, reference as ref_lib, spectra, tap
from tapjax.reference import Reference, ReferenceResult
from tapjax import linalg
from tapjax.recurrence import SearchStatus
from tapjax.spin_model import (LayeredCouplings, coupling_scale, couplings,
                               dense_bond_matrix, join_layers, row_square_sums, split_layers)

CROSSING_VALUES = ("yes", "reference", "near β*", "touch", "none ≤ β_max", "not converged",
                   "non-finite", "β range overflow")
# root-search outcomes that give no β_c (β_c = T_c = NaN) and their crossing flags
_STATUS_FLAGS = {SearchStatus.MAX_ITER: "not converged", SearchStatus.NONFINITE: "non-finite",
                 SearchStatus.OUT_OF_RANGE: "β range overflow"}
_STATUS_WHY = {SearchStatus.MAX_ITER: "max_iter refinement tests did not reach rtol; raise max_iter",
               SearchStatus.NONFINITE: "the search's β is not representable in this dtype; use float64",
               SearchStatus.OUT_OF_RANGE: ("no crossing below the largest β at which β²·Σw² is "
                                           "representable, and β_max lies beyond it")}
TABLE_COLUMNS = ("t", "step", "val_error", "beta_c", "T_c", "lambda_max_J", "lambda_min_R",
                 "level_spacing", "crossing", "closest_margin")
# optional per-row columns (present when computed: analyze(..., spacing_ratio=True))
RATIO_COLUMNS = ("r_tap", "r_tap_low", "r_bond")
LAYER_COLUMNS = ("t", "layer", "name", "n_in", "n_out", "sigma_max", "frobenius", "C",
                 "top_share")


# --------------------------------------------------------------------------- result objects
@dataclasses.dataclass
class LayerTable:
    """Per snapshot × spin layer k = 0..L (row k carries block W^(k) feeding layer k; row 0 has none).

    Attributes:
      names: ``(L+1,)`` ``"input"`` then each block's source name.
      shapes: ``(L+1, 2)`` ``(N_{k-1}, N_k)`` of W^(k) (row 0: ``(0, N_0)``).
      sigma_max: ``(T, L+1)`` largest singular value of W^(k) (NaN on row 0).
      frobenius: ``(T, L+1)`` :math:`\\|W^{(k)}\\|_F`.
      C: ``(T, L+1)`` measured :math:`C_k = N_{k-1}\\mathrm{Var}(W^{(k)})`.
      top_share: ``(T, L+1)`` :math:`\\|v_k\\|^2` of J's top eigenvector v restricted to spin
        layer k (rows sum to 1).
    """

    names: tuple[str, ...]
    shapes: np.ndarray
    sigma_max: np.ndarray
    frobenius: np.ndarray
    C: np.ndarray
    top_share: np.ndarray

    def records(self, t: np.ndarray) -> list[dict[str, Any]]:
        out = []
        for i, ti in enumerate(np.asarray(t)):
            for k, name in enumerate(self.names):
                out.append({"t": _num(ti), "layer": k, "name": name, "n_in": int(self.shapes[k, 0]),
                            "n_out": int(self.shapes[k, 1]), "sigma_max": _num(self.sigma_max[i, k]),
                            "frobenius": _num(self.frobenius[i, k]), "C": _num(self.C[i, k]),
                            "top_share": _num(self.top_share[i, k])})
        return out


def _num(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


@dataclasses.dataclass
class Analysis:
    """Per-snapshot results (arrays share the leading snapshot axis T)."""

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
    crossing: np.ndarray | None = None        # (T,) str, one of CROSSING_VALUES
    closest_margin: np.ndarray | None = None  # (T,) min λ_min − λ* where no scan crossing, else NaN
    step: np.ndarray | None = None
    reference: dict[str, Any] | None = None   # ReferenceResult.to_dict()
    layers: LayerTable | None = None
    r_tap: np.ndarray | None = None           # (T,) ⟨r⟩ of the whole I − M spectrum at β_c
    r_tap_low: np.ndarray | None = None       # (T,) ⟨r⟩ of its 50 lowest levels
    r_bond: np.ndarray | None = None          # (T,) ⟨r⟩ of J's positive half (spacing.positive_levels)

    @property
    def columns(self) -> tuple[str, ...]:
        """The table's columns: :data:`TABLE_COLUMNS` plus the computed :data:`RATIO_COLUMNS`."""
        return TABLE_COLUMNS + tuple(k for k in RATIO_COLUMNS if getattr(self, k) is not None)

    def _col(self, k: str) -> np.ndarray | None:
        v = getattr(self, k)
        if v is None and k in ("crossing",):
            return np.array(["yes" if np.isfinite(b) else "none ≤ β_max" for b in self.beta_c])
        if v is None and k in ("step", "closest_margin"):
            return np.full(len(self.t), np.nan)
        return np.asarray(v)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per snapshot (JSON-ready; NaN → None)."""
        cols = {k: self._col(k) for k in self.columns}
        return [{k: (str(cols[k][i]) if k == "crossing" else _num(cols[k][i])) for k in self.columns}
                for i in range(len(self.t))]

    def to_pandas(self):
        """The per-snapshot table as a :class:`pandas.DataFrame` (pandas imported here)."""
        pd = _pandas()
        return pd.DataFrame({k: self._col(k) for k in self.columns})

    def layers_to_pandas(self):
        """The per-layer table (one row per snapshot × spin layer) as a DataFrame."""
        pd = _pandas()
        if self.layers is None:
            raise ValueError("this Analysis has no per-layer table (analyze(..., per_layer=True) makes one)")
        return pd.DataFrame.from_records(self.layers.records(self.t), columns=list(LAYER_COLUMNS))

    @property
    def reference_T_c(self) -> float:
        """T_c of the reference (1/β*), or NaN when unknown."""
        b = (self.reference or {}).get("beta_star", self.info.get("threshold_beta", float("nan")))
        return 1.0 / b if b else float("nan")

    def summary(self, max_rows: int = 40) -> str:
        """A readable text table: t, val error, T_c, λ_max(J), s0/s_typ, crossing; reference line."""
        ref = self.reference or {}
        kind = ref.get("kind", self.info.get("reference", "init"))
        lines = [f"tapjax analysis: {len(self.t)} snapshot(s), sizes {self.info.get('sizes')}, "
                 f"reference {kind!r}: λ* = {self.threshold:.6g}"
                 + (f" ± {ref['threshold_spread']:.2g}" if ref.get("threshold_spread") else "")
                 + f", T_c(ref) = {self.reference_T_c:.6g}, MSK T_c = {1.0 / self.analytic_beta_c:.6g}",
                 f"{'t':>10} {'val_err':>8} {'T_c':>10} {'λmax(J)':>10} {'s0/styp':>10}  crossing"]
        cross = self._col("crossing")
        idx = list(range(len(self.t)))
        if len(idx) > max_rows:
            idx = idx[:max_rows // 2] + [-1] + idx[-(max_rows // 2):]
        f = lambda v, w=10, p=5: f"{v:>{w}.{p}g}" if np.isfinite(v) else f"{'—':>{w}}"
        for i in idx:
            if i < 0:
                lines.append(f"{'...':>10}")
                continue
            lines.append(f"{f(self.t[i])} {f(self.val_error[i], 8, 4)} {f(self.T_c[i])} "
                         f"{f(self.lambda_max_J[i])} {f(self.level_spacing[i])}  {cross[i]}")
        return "\n".join(lines)

    def plot(self, path: str | None = None):
        """T_c(t), λ_max(J)(t) and s0/s_typ(t) in three panels (matplotlib Agg).

        Returns the written PNG ``path``, or the Figure when ``path`` is None. Raises ValueError
        when no snapshot has a finite value to draw.
        """
        if not any(np.any(np.isfinite(np.asarray(v, float)))
                   for v in (self.T_c, self.lambda_max_J, self.level_spacing)):
            raise ValueError("nothing to draw: every T_c, λ_max(J) and s0/s_typ is NaN")
        # matplotlib's object API (no pyplot: no global figure state, no GUI backend, and ~1 s
        # less start-up for the `tapjax analyze` command)
        from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
        fig = Figure(figsize=(5.5, 8))
        axes = fig.subplots(3, 1, sharex=True)
        t = np.asarray(self.t, float)
        x = t if np.all(np.isfinite(t)) else np.arange(len(t), dtype=float)
        for ax, v, lab in zip(axes, (self.T_c, self.lambda_max_J, self.level_spacing),
                              (r"$T_c$", r"$\lambda_{\max}(J)$", r"$s_0/s_{\rm typ}$")):
            v = np.asarray(v, float)
            ok = np.isfinite(v)
            ax.plot(x[ok], v[ok], "o-", ms=3)
            if not ok.all():
                ax.plot(x[~ok], np.full((~ok).sum(), np.nanmin(v) if ok.any() else 0.0), "x", color="0.5",
                        label="no value (NaN)")
                ax.legend(fontsize=7)
            ax.set_ylabel(lab)
        rt = self.reference_T_c
        if np.isfinite(rt):
            axes[0].axhline(rt, color="k", ls=":", lw=0.8,
                            label=f"reference T_c = {rt:.4g} ({(self.reference or {}).get('kind', 'init')})")
            axes[0].legend(fontsize=7)
        if len(x) > 1 and np.all(x >= 0) and x.max() > 1:
            axes[-1].set_xscale("symlog", linthresh=1.0)
        axes[-1].set_xlabel("training time t" if np.all(np.isfinite(t)) else "snapshot index")
        fig.tight_layout()
        if path is None:
            return fig
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=120)
        return path


def _pandas():
    try:
        import pandas as pd  # pylint: disable=import-outside-toplevel
    except ImportError as e:  # pragma: no cover - pandas is installed in CI
        raise ImportError("Analysis.to_pandas needs pandas: pip install pandas (or use Analysis.rows())") from e
    return pd


# --------------------------------------------------------------------------- compiled programs
def _bond_program(num_iter: int, per_layer: bool = True, backend: str = "dense", with_spectrum: bool = False,
                  grams: bool = False):
    """(λ_max(J), layer shares, λ_min(R), σ_max, ‖W‖_F, C_k) of one snapshot; jitted over a chunk.

    Everything is computed on the normalized couplings ``W / s`` (:func:`coupling_scale`, a power
    of two) and returned with ``s``; :func:`_bond_unscale` multiplies back in float64 on the host,
    so weights of any finite magnitude give the exact scaled values (no overflow of Σ w²).
    ``backend`` (:func:`tapjax.linalg.resolve_backend`'s ``"auto"`` rule, as in
    :func:`tapjax.spectra.lambda_max_bond`): ``"dense"`` = ``eigh`` of J (exact; N ≤
    ``DENSE_MAX_SPINS``), ``"lanczos"`` = :func:`tapjax.spectra.bond_top` (≤ ``num_iter`` steps,
    early stop; its bracket is the last output).
    Without ``per_layer`` σ_max is NaN (skipped). ``with_spectrum`` (dense only) appends J/s's
    ascending spectrum ``(N,)``. ``grams`` (with ``per_layer``): σ_max is left NaN and the
    per-layer Gram matrices of W/s are appended instead, for :func:`_chunk_bond_host`.
    """

    def one(ws):
        c0 = LayeredCouplings(tuple(ws))
        s = coupling_scale(c0)
        c = LayeredCouplings(tuple(w / s for w in c0.weights))
        if backend == "dense":
            ev, V = jnp.linalg.eigh(dense_bond_matrix(c))
            lam, x, err = ev[-1], V[:, -1], jnp.zeros((), c.dtype)
        else:   # Lanczos on J² over one sublattice, early stop, λ_max ∈ [lam, lam + err]
            top = spectra.bond_top(c, max_iter=min(num_iter, c.num_spins))
            lam, x, err = top.value, top.vector, top.error
        share = jnp.stack([jnp.sum(p * p) for p in split_layers(c, x)])
        sig, fro, C, gs = [], [], [], []
        for w in c.weights:
            a, b = w.shape
            if per_layer:
                g = w @ w.T if a <= b else w.T @ w          # (small, small) Gram matrix
                gs.append(g)
                sig.append(jnp.full((), jnp.nan, w.dtype) if grams
                           else jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(g)[-1], 0.0)))
            else:
                sig.append(jnp.full((), jnp.nan, w.dtype))
            fro.append(jnp.sqrt(jnp.sum(w * w)))
            C.append(a * jnp.var(w))
        out = (lam, share, jnp.min(join_layers(row_square_sums(c))), jnp.stack(sig), jnp.stack(fro),
               jnp.stack(C), s, err)
        out = out + (ev,) if with_spectrum and backend == "dense" else out
        return out + (tuple(gs),) if grams and per_layer else out

    return one


def _bond_unscale(lam, share, lmin_r, sig, fro, C, s):
    """Host float64: λ_max = s·λ̂, λ_min(R) = s²·r̂, σ_max = s·σ̂, ‖W‖_F = s·‖Ŵ‖, C_k = s²·Ĉ_k."""
    s = np.asarray(s, np.float64)
    f = lambda v: np.asarray(v, np.float64)
    return (f(lam) * s, f(share), f(lmin_r) * s * s, f(sig) * s[:, None], f(fro) * s[:, None],
            f(C) * (s * s)[:, None])


def _map_prefix(fn, xs, n):
    """``fn`` over the first ``n`` slices of ``xs`` (a pytree with leading axis B) → outputs
    stacked to ``(B, ...)``, rows ≥ n zero.

    ``jax.lax.map`` with a dynamic trip count: ``n`` is traced, so one compiled program serves
    every chunk length up to B (a short series neither recompiles nor computes padding). Each
    slice runs the same body as under ``lax.map`` (same bits, fuzzed in the tests).
    """
    B = jax.tree_util.tree_leaves(xs)[0].shape[0]
    take = lambda i: jax.tree_util.tree_map(lambda a: jax.lax.dynamic_index_in_dim(a, i, 0, False), xs)
    out = jax.tree_util.tree_map(lambda sd: jnp.zeros((B, *sd.shape), sd.dtype),
                                 jax.eval_shape(fn, take(0)))

    def body(i, acc):
        return jax.tree_util.tree_map(lambda b, v: jax.lax.dynamic_update_index_in_dim(b, v, i, 0),
                                      acc, fn(take(i)))

    return jax.lax.fori_loop(0, n, body, out)


def _count(ws, n):
    """The chunk length ``n`` (None = the whole leading axis of ``ws``)."""
    return np.int32(np.shape(ws[0])[0] if n is None else n)


LevelPrecision = Literal["float64", "dtype"]


@jax.jit
def _tap_matrices(ws, betas, n):
    return _map_prefix(lambda a: tap.tap_matrix(LayeredCouplings(tuple(a[0])), a[1]), (tuple(ws), betas), n)


def _chunk_tap_matrices(ws, betas, n=None):
    """I − M(β_i) of the first ``n`` (default all) snapshots of a chunk → ``(B, N, N)`` (one program)."""
    return _tap_matrices(ws, betas, _count(ws, n))


@functools.partial(jax.jit, static_argnames=("promote",))
def _spectra_device(ws, betas, n, promote: bool = False):
    def one(a):
        m = tap.tap_matrix(LayeredCouplings(tuple(a[0])), a[1])
        return jnp.linalg.eigvalsh(m.astype(jnp.float64) if promote else m)
    return _map_prefix(one, (tuple(ws), betas), n)


def _chunk_spectra_device(ws, betas, n=None, promote: bool = False):
    """Dense spectra of the first ``n`` snapshots of a chunk in one device program (float64
    eigenvalues with ``promote``)."""
    return _spectra_device(ws, betas, _count(ws, n), promote=promote)


def spectra_precision(level_precision: LevelPrecision, dtype) -> str:
    """Dtype the dense level spectra are computed in: float64 for ``"float64"`` (on a non-CPU
    backend only with ``jax_enable_x64``), else the analysis ``dtype``."""
    if level_precision == "float64" and (jax.default_backend() == "cpu" or jax.config.jax_enable_x64):
        return "float64"
    return jnp.dtype(dtype).name


def _chunk_spectra(ws, betas, precision: str = "float64", n=None):
    """Dense ascending spectra of I − M(β_i) for the first ``n`` (default all) snapshots of a
    chunk → ``(B, N)`` in ``precision`` (:func:`spectra_precision`; rows ≥ n: zero).

    The matrices are built in the weights' dtype; for level statistics their eigenvalues are
    taken in float64 (a float32 solver's noise is ~1e-3 of a typical level spacing:
    :func:`tapjax.spectra.tap_levels`; float64 costs 1.7–1.9× at N = 2,330, docs/levels.md).
    On CPU the matrices come from one compiled program and their eigenvalues from
    :func:`tapjax.linalg.host_eigvalsh` (LAPACK ``syevd`` without eigenvectors, the B matrices
    on the host's cores in parallel; outside ``jit`` so that the matrix program stays in the
    persistent compilation cache, which refuses programs with host callbacks). Elsewhere one
    device program.
    """
    if jax.default_backend() == "cpu":
        m = _count(ws, n)
        ev = linalg.host_eigvalsh(np.asarray(_chunk_tap_matrices(ws, betas, m))[:m], np.dtype(precision))
        return np.concatenate([ev, np.zeros((np.shape(ws[0])[0] - m, *ev.shape[1:]), ev.dtype)])
    return _chunk_spectra_device(ws, betas, n, promote=precision == "float64")


@functools.partial(jax.jit, static_argnames=("num_iter", "per_layer", "backend", "with_spectrum", "grams"))
def _bond(ws, n, num_iter: int, per_layer: bool = True, backend: str = "dense", with_spectrum: bool = False,
          grams: bool = False):
    return _map_prefix(_bond_program(num_iter, per_layer, backend, with_spectrum, grams), tuple(ws), n)


def _chunk_bond(ws, num_iter: int, per_layer: bool = True, backend: str = "dense", with_spectrum: bool = False,
                grams: bool = False, n=None):
    """:func:`_bond_program` over the first ``n`` (default all) snapshots of a chunk (one program)."""
    return _bond(ws, _count(ws, n), num_iter, per_layer, backend, with_spectrum, grams)


def _chunk_bond_host(ws, num_iter: int, per_layer: bool = True, backend: str = "dense",
                     with_spectrum: bool = False, n=None):
    """:func:`_chunk_bond`; on CPU σ_max = √λ_max(Gram) by :func:`tapjax.linalg.host_eigvalsh`
    (eigenvalues only, 3× faster than ``jnp.linalg.eigvalsh`` at 512 × 512) per chunk."""
    if not per_layer or jax.default_backend() != "cpu":
        return _chunk_bond(ws, num_iter, per_layer, backend, with_spectrum, n=n)
    *out, gs = _chunk_bond(ws, num_iter, per_layer, backend, with_spectrum, grams=True, n=n)
    m = _count(ws, n)
    sig = np.stack([np.sqrt(np.maximum(linalg.host_eigvalsh(np.asarray(g)[:m])[..., -1], 0.0)) for g in gs],
                   axis=1)
    out[3] = np.concatenate([sig, np.asarray(out[3])[m:]]).astype(np.asarray(out[3]).dtype)
    return tuple(out)


def _chunk_critical(ws, threshold, beta_max, rtol, hint, num_scan: int, max_iter: int, method: str, n=None):
    """:func:`tapjax.recurrence.critical_beta_search` for the first ``n`` (default all) snapshots
    of a chunk → ``(beta, crossed, num_tests, status)``, each ``(B,)`` (rows ≥ n: zero).

    One search call per snapshot: its kernel is compiled once per net shape and shared with
    every other caller of the search (the no-crossing rule, per-checkpoint use), whatever T and
    ``batch_size``. A chunk program looping the search over the buffer compiled 1.1–1.4× the
    search itself and nothing else could use it; a search is tens of PD tests, next to which one
    dispatch per snapshot is nothing (the same reasoning as :func:`_chunk_curves`).
    """
    m = _count(ws, n)
    B = np.shape(ws[0])[0]
    dt = np.dtype(jnp.dtype(threshold.dtype).name)
    out = (np.zeros(B, dt), np.zeros(B, bool), np.zeros(B, np.int32), np.zeros(B, np.int32))
    for i in range(m):
        r = recurrence.critical_beta_search(LayeredCouplings(tuple(jnp.asarray(w[i]) for w in ws)), threshold,
                                            beta_max, rtol, hint, num_scan=num_scan, max_iter=max_iter,
                                            method=method)
        for o, v in zip(out, (r.beta, r.crossed, r.num_tests, r.status)):
            o[i] = np.asarray(v)
    return out


def _chunk_curves(ws, betas, backend: str, num_iter: int, n=None, need=None):
    """λ_min(I − M(β)) on the grid ``betas`` for the first ``n`` snapshots of a chunk →
    ``(B, len(betas))`` (rows ≥ n: zero; rows where the bool mask ``need`` ``(B,)`` is False:
    NaN, not computed).

    One :func:`tapjax.tap.least_eigenvalue` call per snapshot: its kernel is the one the
    reference curve compiled for this net and grid, so the curves compile nothing of their own
    (a chunk program for them cost 2.3 s of compile per net shape in the tests), and a curve is
    ``len(betas)`` eigensolves, next to which one dispatch per snapshot is nothing.
    """
    m = _count(ws, n)
    kw = {"num_iter": num_iter} if backend == "lanczos" else {}
    out = np.zeros((np.shape(ws[0])[0], np.shape(betas)[0]), np.dtype(jnp.dtype(betas.dtype).name))
    for i in range(m):
        out[i] = (np.asarray(tap.least_eigenvalue(LayeredCouplings(tuple(jnp.asarray(w[i]) for w in ws)),
                                                  betas, backend, **kw))
                  if need is None or need[i] else np.nan)
    return out


class _Phases:
    """Chunked runner: one tqdm bar per phase, the first chunk timed apart as 'compile'."""

    def __init__(self, progress: bool):
        self.progress = progress
        self.timings: dict[str, dict[str, float]] = {}

    def run(self, name: str, fn, arrays: Sequence[np.ndarray], T: int, batch_size: int):
        """``fn(*chunk_arrays, n=n)`` over chunks of the leading axis → numpy outputs ``(T, ...)``.

        Every chunk is a buffer of ``batch_size`` snapshots of which the first n are real (the
        rest repeat the last one and are not computed, :func:`_map_prefix`): one compiled program
        per net shape and ``batch_size``, whatever T (tests, incremental analyses and the
        persistent compilation cache all reuse it).
        """
        import tqdm  # pylint: disable=import-outside-toplevel
        B = batch_size
        starts = list(range(0, T, B))
        outs: list = []
        bar = None
        t_start = time.monotonic()
        first = 0.0
        for j, s in enumerate(starts):
            sl = [a[s:s + B] for a in arrays]
            n = sl[0].shape[0]
            if n < B:  # pad the last chunk: the program keeps one shape
                sl = [np.concatenate([a, np.repeat(a[-1:], B - n, axis=0)]) for a in sl]
            t0 = time.monotonic()
            out = jax.tree_util.tree_map(lambda x: np.asarray(x)[:n], jax.block_until_ready(fn(*sl, n=n)))
            outs.append(out)
            if j == 0:
                first = time.monotonic() - t0
                if self.progress and len(starts) > 1:
                    bar = tqdm.tqdm(total=T, initial=n, desc=f"{name} (compile {first:.1f}s)", unit="ckpt",
                                    file=sys.stderr, smoothing=0, dynamic_ncols=True, leave=True)
            elif bar is not None:
                bar.update(n)
        if bar is not None:
            bar.close()
        elif self.progress:
            print(f"{name}: {T} snapshot(s) in {time.monotonic() - t_start:.2f}s "
                  f"(first chunk incl. compile {first:.2f}s)", file=sys.stderr)
        self.timings[name] = {"seconds": time.monotonic() - t_start, "first_chunk_s": first,
                              "chunks": len(starts), "batch_size": B}
        return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *outs)


def _representable_beta(c: LayeredCouplings) -> float:
    r"""Half the largest β at which the recurrence can evaluate β²·r (its ``beta_lim``), in the
    units of ``c``: :math:`\tfrac12\sqrt{f_{\max}/(16(1 + \max\hat r))}/s`, ``s`` the coupling scale."""
    s = float(coupling_scale(c))
    r_hat = max(float(np.max(r)) for r in   # host float64 (no per-shape device programs)
                row_square_sums(LayeredCouplings(tuple(np.asarray(w, np.float64) / s for w in c.weights))))
    return 0.5 * math.sqrt(float(jnp.finfo(c.dtype).max) / (16.0 * (1.0 + r_hat))) / s


# --------------------------------------------------------------------------- the no-crossing rule
def resolve_no_crossing(c: LayeredCouplings, thr: float, beta_star: float, backend: str = "dense",
                        num_iter: int = 120, rtol: float = 1e-4, touch_atol: float = 1e-4,
                        width: float = 0.4) -> tuple[float, str, float]:
    """The no-crossing rule (module docstring) for one snapshot whose scan found no crossing.

    Golden-section minimum of λ_min(I − M(β)) (``backend``) on ``[(1 − width) β*, (1 + width) β*]``;
    below λ*: PD-test bisection of the crossing (``"near β*"``); within ``touch_atol`` above it:
    ``"touch"`` at the closest approach; else ``"none ≤ β_max"`` with β_c = NaN.

    Returns:
      ``(beta_c, crossing flag, closest margin min λ_min − λ*)``.
    """
    lo0, hi0 = (1 - width) * beta_star, (1 + width) * beta_star
    kw = {"num_iter": min(num_iter, c.num_spins)} if backend == "lanczos" else {}
    f = lambda b: float(tap.least_eigenvalue(c, np.array([b]), backend, **kw)[0])
    b_min, v_min = tap.golden_min(f, lo0, hi0, rtol=1e-4, max_iter=30)
    margin = v_min - thr
    if margin <= 0:
        pd = lambda b: bool(recurrence.positive_definite(c, b, thr))
        lo = lo0 if pd(lo0) else 0.0
        hi = b_min
        if pd(hi):  # λ_min backend and PD test disagree at the noise level: a touch
            return float(b_min), "touch", float(margin)
        while hi - lo > rtol * hi:
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if pd(mid) else (lo, mid)
        return float(hi), "near β*", float(margin)
    if margin <= touch_atol:
        return float(b_min), "touch", float(margin)
    return float("nan"), "none ≤ β_max", float(margin)


# --------------------------------------------------------------------------- analyze
def _from_tapjax(hist: ckpt.RunHistory) -> bool:
    fmt = str(hist.info.get("format", "")).lower()
    # a tapjax run says so in its format, or (built by hand) carries a TrainConfig's "model";
    # foreign sources may carry a config too (e.g. {"module": "Sequential"}): not a tapjax run
    return fmt.startswith("tapjax") or (not fmt and "model" in (hist.config or {}))


def _load(source, layout) -> ckpt.RunHistory:
    if isinstance(source, ckpt.RunHistory):
        if layout is not None:
            raise ValueError("layout= applies to raw sources; a RunHistory is already in (in, out) layout")
        return source
    if isinstance(source, str) and layout is None and os.path.isdir(os.path.join(source, "checkpoints")):
        try:
            from tapjax import sources  # pylint: disable=import-outside-toplevel
        except ImportError:
            return ckpt.load_run(source)
        return sources.load_series(source)
    from tapjax import sources  # pylint: disable=import-outside-toplevel
    return sources.load_series(source, layout=layout)


LevelMethod = Literal["auto", "dense", "levels", "slq", "inertia"]


def _level_method(n_spins: int, level_spacing, level_method: str, dense_max_spins: int,
                  precision: str = "float64") -> tuple[str | None, str | None, str]:
    """→ ``(path, levels_method, why)``: path ``"dense"`` (batched eigvalsh here), ``"levels"``
    (:func:`tapjax.levels.level_spacing` with ``levels_method``) or None (skipped)."""
    if level_spacing is False:
        return None, None, "level_spacing=False"
    if level_method == "dense" or (level_method == "auto" and n_spins <= dense_max_spins):
        return "dense", None, (f"dense eigvalsh of I − M at β_c in {precision} (N = {n_spins} ≤ dense_max_spins = "
                               f"{dense_max_spins})" if level_method == "auto"
                               else f"dense eigvalsh in {precision} (requested)")
    try:
        from tapjax import levels  # pylint: disable=import-outside-toplevel
        if not hasattr(levels, "level_spacing"):
            raise ImportError("tapjax.levels has no level_spacing(c, beta, method)")
    except ImportError:
        if level_spacing == "auto":
            return None, None, (f"skipped: N = {n_spins} > dense_max_spins = {dense_max_spins} and "
                                "tapjax.levels (dense-free level statistics) is not available")
        raise ValueError(f"level spacing of N = {n_spins} spins: dense eigvalsh exceeds dense_max_spins = "
                         f"{dense_max_spins} and tapjax.levels is not available; raise dense_max_spins "
                         "or pass level_spacing='auto' to skip it")
    if level_method == "auto":
        # above dense_max_spins dense is what the caller ruled out: the matrix-free estimator
        return "levels", "slq", (f"tapjax.levels.level_spacing(method='slq') (auto: N = {n_spins} > "
                                 f"dense_max_spins = {dense_max_spins}); s_typ rel. error "
                                 f"{levels.S_TYP_REL_ERROR['slq']:.0%} (docs/levels.md)")
    lm = "auto" if level_method == "levels" else level_method
    return "levels", lm, f"tapjax.levels.level_spacing(method={lm!r}) (requested)"


def _level_spacings(lvl, lvl_kind, ws, bc, beta_star, thr, keep_spectra, T, batch_size, phases, hist, idx,
                    name, dtype, np_dtype, precision: str = "float64"):
    """Step 5 of :func:`analyze`: s0/s_typ at β_c for every row with a finite β_c → ``(spacing,
    tap spectra or None, notes, method used per row, error per row, dense spectra or None)``."""
    ev = None
    spacing = np.full(T, np.nan)
    tap_sp = None
    lvl_notes: dict[str, str] = {}
    lvl_used: list[str | None] = [None] * T
    lvl_err: list[dict | None] = [None] * T
    ok = np.isfinite(bc)
    if lvl == "dense" and ok.any():
        b_eval = np.where(ok, bc, beta_star).astype(np_dtype)
        ev = phases.run("spectra", lambda *a, n: _chunk_spectra(a[:-1], a[-1], precision, n), (*ws, b_eval), T,
                        batch_size)
        ev = np.where(ok[:, None], ev, np.nan)
        for row in np.nonzero(ok)[0]:
            lvl_used[row] = "dense"
            try:
                spacing[row] = spectra.first_level_spacing(ev[row])
            except ValueError as e:
                lvl_notes[str(float(hist.t[idx[row]]))] = str(e)
        tap_sp = ev if keep_spectra else None
    elif lvl == "levels" and ok.any():
        from tapjax import levels  # pylint: disable=import-outside-toplevel
        t0 = time.monotonic()
        for row in np.nonzero(ok)[0]:
            c = couplings(tuple(w[row] for w in ws), name=name(idx[row]), dtype=dtype)
            sc = coupling_scale(c)   # I − M(β; W) = I − M(sβ; W/s): no overflow for huge weights
            c = LayeredCouplings(tuple(w / sc for w in c.weights))
            try:
                # λ* is λ_min at the crossing: a shift at (or, verified, moved below) λ_min
                val, linfo = levels.level_spacing(c, float(bc[row]) * float(sc), method=lvl_kind,
                                                  shift=float(thr))
            except (ValueError, ArithmeticError) as e:
                lvl_notes[str(float(hist.t[idx[row]]))] = str(e)
                continue
            spacing[row] = float(val)
            lvl_used[row] = str(linfo["method"])
            lvl_err[row] = {k: linfo.get(k) for k in ("s0", "s0_error", "s_typ", "s_typ_rel_error")}
        phases.timings["spectra"] = {"seconds": time.monotonic() - t0, "chunks": int(ok.sum()), "batch_size": 1}
    return spacing, tap_sp, lvl_notes, lvl_used, lvl_err, ev


def analyze(source, reference: "str | Reference | ReferenceResult" = "auto", *, layout=None,
            level_spacing: bool | Literal["auto"] = "auto",
            level_method: LevelMethod = "auto", level_precision: LevelPrecision = "float64",
            method: Literal["secant", "bisect", "grid"] = "secant", rtol: float = 1e-4,
            dtype=None, batch_size: int = 8, lanczos_iter: int = 120, num_scan: int = 16,
            max_iter: int = 60, per_layer: bool = True, curves: bool = False,
            keep_spectra: bool = False, indices: Sequence[int] | None = None,
            touch_atol: float | None = None, dense_max_spins: int = 4096, spacing_ratio: bool = False,
            reference_index: int = 0, progress: bool = True) -> Analysis:
    r"""Analyzes a network or a training series: per-snapshot T_c, spectra, and a per-layer table.

    Args:
      source: a :class:`~tapjax.checkpoints.RunHistory`, a tapjax run directory, or anything
        :func:`tapjax.sources.load_series` reads (arrays, Flax/PyTorch/Keras/safetensors/npz, a
        directory or list of files as a time series).
      reference: ``"auto"`` (``"init"`` when the series starts at t = 0, else ``"shuffled"``:
        :func:`tapjax.reference.auto_kind`), a kind (``"init"``, ``"shuffled"``, ``"gaussian"``,
        ``"msk"``), a :class:`~tapjax.reference.Reference`, or a precomputed
        :class:`~tapjax.reference.ReferenceResult` (e.g. to extend an earlier table, or a
        reference computed once for many single-checkpoint calls). Only a reference computed
        here marks snapshot ``reference_index`` as ``"reference"`` (β_c = β*); with a
        precomputed one every snapshot is searched, since it may come from other weights.
      layout: ``"in_out"`` / ``"out_in"`` for raw array sources (passed to ``load_series``).
      level_spacing: s0/s_typ of I − M at β_c: True, False, or ``"auto"`` (skip, recorded in
        ``info``, when no method fits the size).
      level_method: ``"dense"`` (eigvalsh per snapshot, under ``lax.map``); ``"levels"``
        (:func:`tapjax.levels.level_spacing` with its own ``"auto"`` rule); ``"slq"`` /
        ``"inertia"`` (that levels method: s0 exact to its residuals, s_typ within
        ``levels.S_TYP_REL_ERROR``); ``"auto"``: dense up to ``dense_max_spins``, ``"slq"`` above.
        The method of every row is in ``info["level_methods"]`` (and its error bounds in
        ``info["level_errors"]``).
      level_precision: eigenvalues of the dense path in ``"float64"`` (default; on GPU/TPU
        only with ``jax_enable_x64``, else ``dtype``) or in ``"dtype"`` (1.7–1.9× faster at
        N = 2,330 in float32, but a float32 solver moves s_typ by ~1e-3 relative:
        :func:`tapjax.spectra.tap_levels`). The precision used is in
        ``info["methods"]["level_spacing"]``.
      method: β_c refinement: ``"secant"`` / ``"bisect"`` (:func:`tapjax.recurrence.critical_beta_search`)
        or ``"grid"`` (first crossing on the reference β grid, needs the curves).
      rtol: relative precision of β_c. dtype: float32 (default) or float64 (enable x64 first).
      batch_size: snapshots per compiled chunk (bounds memory; one program for any T).
      lanczos_iter: Krylov dimension for λ_max(J) and σ_max (capped at the dimension).
      num_scan, max_iter: root-search scan points and refinement cap.
      per_layer: build :attr:`Analysis.layers`.
      curves: store λ_min(β) on the reference grid for every row (``(T, B)``).
      keep_spectra: store the dense spectra of I − M at β_c and of J (small nets).
      indices: analyze only these snapshots (the reference still comes from ``reference_index``).
      touch_atol: tolerance of the ``"touch"`` flag (default: module docstring).
      dense_max_spins: size limit of the dense level-spacing path.
      spacing_ratio: add the ⟨r⟩ columns (issue 16): ``r_tap`` = ⟨r⟩ of the whole I − M
        spectrum at β_c and ``r_tap_low`` = ⟨r⟩ of its 50 lowest levels
        (:func:`tapjax.spacing.mean_spacing_ratio`, from the dense spectrum the level spacing
        already computed: dense path only, else NaN), and ``r_bond`` = ⟨r⟩ of J's positive half
        (:func:`tapjax.spacing.positive_levels`; where J's dense spectrum is computed anyway:
        ``keep_spectra`` or the dense λ_max path, N ≤ ``linalg.DENSE_MAX_SPINS``).
      reference_index: the snapshot whose couplings define the reference.
      progress: tqdm bars per phase (reference, T_c, λ_max, spectra) on stderr.

    Returns:
      :class:`Analysis`; ``info`` records the source format, layout convention, reference kind and
      why, β range and why, and the methods and timings of each phase.
    """
    t_all = time.monotonic()
    hist = _load(source, layout)
    if method not in ("secant", "bisect", "grid"):
        raise ValueError(f"method={method!r}: use 'secant', 'bisect' or 'grid'")
    if level_spacing not in (True, False, "auto"):
        raise ValueError(f"level_spacing={level_spacing!r}: use True, False or 'auto'")
    if level_method not in ("auto", "dense", "levels", "slq", "inertia"):
        raise ValueError(f"level_method={level_method!r}: use 'auto', 'dense', 'levels', 'slq' or 'inertia'")
    if level_precision not in ("float64", "dtype"):
        raise ValueError(f"level_precision={level_precision!r}: use 'float64' or 'dtype'")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be ≥ 1")
    dtype = jnp.dtype(jnp.float32 if dtype is None else dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype=float64 needs jax_enable_x64 (jax.config.update('jax_enable_x64', True))")
    T_all = len(hist)
    if T_all == 0:
        raise ValueError("the series holds no snapshots")
    idx = list(range(T_all)) if indices is None else sorted(set(int(i) for i in indices))
    if any(i < 0 or i >= T_all for i in idx):
        raise ValueError(f"indices {idx}: the series has {T_all} snapshot(s)")
    if not 0 <= reference_index < T_all:
        raise ValueError(f"reference_index={reference_index}: the series has {T_all} snapshot(s)")
    name = lambda i: hist.paths[i] if i < len(hist.paths) else f"snapshot {i}"
    c_ref = couplings(hist.weights_at(reference_index), name=name(reference_index), dtype=dtype)
    phases = _Phases(progress)
    info: dict[str, Any] = {"source_format": hist.info.get("format", "tapjax run" if hist.config else "RunHistory"),
                            "layout": hist.info.get("layout", "(in, out) tapjax layout"),
                            "biases": hist.info.get("biases"), "sizes": list(c_ref.sizes),
                            "dtype": str(dtype), "rtol": rtol, "method": method, "config": hist.config}

    # ---- 1. the reference (one rule: tapjax.reference)
    t0 = time.monotonic()
    if isinstance(reference, ReferenceResult):
        rres, ref_obj, why = reference, None, "precomputed ReferenceResult"
    else:
        if isinstance(reference, str) and reference == "auto":
            t0_ref = float(hist.t[reference_index])
            if "snapshot index" in str(hist.info.get("time", "")):
                t0_ref = float("nan")    # t is only the position in the list: not known to be t = 0
            kind, why = ref_lib.auto_kind(t0_ref, T_all, _from_tapjax(hist))
            ref_obj = Reference(kind=kind)  # type: ignore[arg-type]
        else:
            ref_obj = ref_lib.as_reference(reference)
            why = "requested"
        if progress:
            print(f"reference: {ref_obj.kind} …", file=sys.stderr, end="", flush=True)
        rres = ref_obj.compute(c_ref)
        if progress:
            print(f" λ* = {rres.threshold:.6g}, β* = {rres.beta_star:.6g} ({time.monotonic() - t0:.1f}s)",
                  file=sys.stderr)
    phases.timings["reference"] = {"seconds": time.monotonic() - t0}
    thr, beta_star, beta_max = float(rres.threshold), float(rres.beta_star), float(rres.beta_range)
    info.update(reference=rres.kind, reference_why=why, threshold_beta=beta_star, beta_max=beta_max,
                beta_range_why=rres.info.get("beta_range_why", "from the ReferenceResult"),
                reference_index=reference_index)
    analytic = float(rres.info.get("analytic_beta_c", ref_lib.beta_range(c_ref)[1]))

    # ---- 2. stacked snapshots
    np_dtype = np.dtype(dtype.name)
    ws = tuple(np.asarray(w[idx], np_dtype) for w in hist.weights)
    for k, w in enumerate(ws, start=1):
        if not np.all(np.isfinite(w)):
            bad = sorted({idx[i] for i in np.nonzero(~np.isfinite(w).reshape(len(idx), -1).all(1))[0]})
            raise ValueError(f"W^({k}) holds NaN/Inf in snapshot(s) {[name(i) for i in bad]}")
    T = len(idx)
    betas = None
    curve_arr = None
    # the shortcut β_c = β* only for a reference computed here from this snapshot: a
    # precomputed ReferenceResult may come from other weights (then this row is searched)
    own_reference = lambda i: rres.kind == "init" and ref_obj is not None and i == reference_index
    if curves or method == "grid":
        ref_backend = rres.info.get("backend") or ("dense" if c_ref.num_spins <= 1024 else "lanczos")
        betas = (ref_obj.grid_betas(rres) if ref_obj is not None
                 else ref_lib.beta_grid(beta_max, 64))
        # without stored curves, the grid method needs none for the row that is its own reference
        # (β_c = β*, step 3)
        need = np.array([curves or not own_reference(i) for i in idx])
        curve_arr = phases.run("curves", lambda *a, n: _chunk_curves(a[:-1], jnp.asarray(betas, dtype), ref_backend,
                                                                     min(lanczos_iter, c_ref.num_spins), n, a[-1]),
                               ws + (need,), T, batch_size)

    # ---- 3. β_c by the recurrence root search (batched), then the no-crossing rule
    crossing = np.array(["yes"] * T, dtype=object)
    margin = np.full(T, np.nan)
    num_tests = np.zeros(T, int)
    search_status = np.full(T, int(SearchStatus.OK))
    if method == "grid":
        hit = curve_arr <= thr
        bc = np.where(hit.any(1), betas[np.argmax(hit, 1)], np.nan)
        crossed = hit.any(1)
    else:
        bc, crossed, num_tests, status = phases.run(
            "T_c", lambda *w, n: _chunk_critical(w, jnp.asarray(thr, dtype), jnp.asarray(beta_max, dtype),
                                                 jnp.asarray(rtol, dtype), jnp.asarray(beta_star, dtype),
                                                 num_scan, max_iter, method, n), ws, T, batch_size)
        bc = np.where(crossed, bc, np.nan).astype(float)
        search_status = np.asarray(status, int)
    if touch_atol is None:
        touch_atol = max(float(rres.threshold_spread), 1e-4 if dtype == jnp.float32 else 1e-8)
    res_backend = rres.info.get("backend") or ("dense" if c_ref.num_spins <= 1024 else "lanczos")
    search_errors: dict[str, str] = {}
    w_ref_max = max(float(np.max(np.abs(np.asarray(w, np.float64)))) for w in c_ref.weights)
    t0 = time.monotonic()
    for row, i in enumerate(idx):
        st = SearchStatus(int(search_status[row]))
        if own_reference(i):
            bc[row], crossing[row] = beta_star, "reference"
        elif st == SearchStatus.OUT_OF_RANGE and method != "grid":
            # β_max lies beyond the largest β at which β²·Σw² is representable (huge weights):
            # search again on (0, β_lim/2], every point of which the recurrence can evaluate, with
            # the scale-equivariant hint β*·max|W_ref|/max|W| (M(β; sW) = M(sβ; W): the dip of a
            # net s times larger lies at β*/s, far below the reference scan's first point)
            c = couplings(tuple(w[row] for w in ws), name=name(i), dtype=dtype)
            b_lim = _representable_beta(c)
            if b_lim < beta_max:
                ratio = w_ref_max / max(float(np.max(np.abs(w[row]))) for w in ws)
                r = recurrence.critical_beta_search(c, thr, b_lim, rtol, beta_star * ratio,
                                                    num_scan=num_scan, max_iter=max_iter, method=method)
                st = SearchStatus(int(r.status))
                search_status[row], num_tests[row] = int(st), int(r.num_tests)
                search_errors[name(i)] = (f"OUT_OF_RANGE for β_max = {beta_max:.6g}; searched again on "
                                          f"(0, {b_lim:.6g}] (β²·Σw² representable) with hint "
                                          f"β*·{ratio:.3g}: {st.name}")
                if st == SearchStatus.OK:
                    bc[row], crossed[row] = float(r.beta), True
                    continue
            if st in _STATUS_FLAGS:
                bc[row], crossing[row] = np.nan, _STATUS_FLAGS[st]
                search_errors.setdefault(name(i), f"{st.name}: {_STATUS_WHY[st]}")
            else:   # NO_CROSSING on the reduced range: the no-crossing rule
                bc[row], crossing[row], margin[row] = resolve_no_crossing(
                    c, thr, beta_star, res_backend, lanczos_iter, rtol, touch_atol)
        elif st in _STATUS_FLAGS:
            # the search gave no result: never a number (issue 12); the flag says why
            bc[row], crossing[row] = np.nan, _STATUS_FLAGS[st]
            search_errors[name(i)] = f"{st.name}: {_STATUS_WHY[st]}"
        elif not crossed[row]:
            c = couplings(tuple(w[row] for w in ws), name=name(i), dtype=dtype)
            bc[row], crossing[row], margin[row] = resolve_no_crossing(
                c, thr, beta_star, res_backend, lanczos_iter, rtol, touch_atol)
    phases.timings["no_crossing"] = {"seconds": time.monotonic() - t0,
                                     "rows": int(sum(c not in ("yes", "reference") for c in crossing))}
    info["touch_atol"] = touch_atol
    info["no_crossing_rule"] = ("scan + hint β*, then golden-section λ_min on [0.6β*, 1.4β*]: "
                                "'near β*' (bisected), 'touch' (within touch_atol), else NaN")

    # ---- 4. λ_max(J) with its eigenvector, λ_min(R), per-layer σ_max / ‖W‖_F / C_k
    bond_backend = linalg.resolve_backend("auto", c_ref.num_spins)
    want_bond_ev = bool(spacing_ratio) and bond_backend == "dense" and not keep_spectra
    bond_out = phases.run("λ_max", lambda *w, n: _chunk_bond_host(w, lanczos_iter, per_layer, bond_backend,
                                                                 want_bond_ev, n), ws, T, batch_size)
    precision = spectra_precision(level_precision, dtype)
    lvl, lvl_kind, why_lvl = _level_method(c_ref.num_spins, level_spacing or keep_spectra, level_method,
                                           dense_max_spins, precision)

    # ---- 5. level spacing s0/s_typ at β_c
    spacing, tap_sp, lvl_notes, lvl_used, lvl_err, ev = _level_spacings(
        lvl, lvl_kind, ws, bc, beta_star, thr, keep_spectra, T, batch_size, phases, hist, idx, name,
        dtype, np_dtype, precision)
    ok = np.isfinite(bc)
    lam_max, share, lmin_r, sig, fro, Ck = _bond_unscale(*bond_out[:7])
    lam_max_err = np.asarray(bond_out[7], np.float64) * np.asarray(bond_out[6], np.float64)
    bond_ev = np.asarray(bond_out[8], np.float64) * np.asarray(bond_out[6], np.float64)[:, None] \
        if want_bond_ev else None
    info["level_methods"] = lvl_used
    if any(e is not None for e in lvl_err):
        info["level_errors"] = lvl_err
    r_cols: dict[str, np.ndarray] = {}
    ratio_notes: dict[str, str] = {}
    if spacing_ratio:
        from tapjax import spacing as spacing_lib  # pylint: disable=import-outside-toplevel

        def ratio(key, row, fn):
            try:
                return fn()
            except ValueError as e:
                ratio_notes[f"{key} {name(idx[row])}"] = str(e)
                return np.nan
        r_cols = {k: np.full(T, np.nan) for k in RATIO_COLUMNS}
        if lvl == "dense":
            for row in np.nonzero(ok)[0]:
                r_cols["r_tap"][row] = ratio("r_tap", row, lambda: spacing_lib.mean_spacing_ratio(ev[row]).mean)
                r_cols["r_tap_low"][row] = ratio(
                    "r_tap_low", row, lambda: spacing_lib.mean_spacing_ratio(ev[row], min(50, ev.shape[1])).mean)
        else:
            ratio_notes["r_tap"] = "no dense I − M spectrum (level path: %s)" % (lvl or "skipped")
    if keep_spectra and tap_sp is None:
        tap_sp = np.full((T, c_ref.num_spins), np.nan)
    bond_sp = None
    if keep_spectra:
        bond_sp = np.stack([spectra.bond_levels(couplings(tuple(w[r] for w in ws))) for r in range(T)])
    if spacing_ratio:
        jev = bond_sp if bond_sp is not None else bond_ev
        if jev is None:
            ratio_notes["r_bond"] = (f"J's dense spectrum is not computed (N = {c_ref.num_spins} > "
                                     f"{linalg.DENSE_MAX_SPINS}, keep_spectra=False)")
        else:
            for row in range(T):
                r_cols["r_bond"][row] = ratio(
                    "r_bond", row, lambda: spacing_lib.mean_spacing_ratio(spacing_lib.positive_levels(jev[row])).mean)
        info["spacing_ratio"] = {"r_tap": "spacing.mean_spacing_ratio(spectrum of I − M at β_c)",
                                 "r_tap_low": "spacing.mean_spacing_ratio(that spectrum, k=50)",
                                 "r_bond": "spacing.mean_spacing_ratio(spacing.positive_levels(spectrum of J))",
                                 "notes": ratio_notes}
    info["methods"] = {"critical_beta": f"recurrence.critical_beta_search ({method}, {num_scan}-point scan "
                                         f"+ hint β*, batch_size={batch_size})" if method != "grid"
                                         else "first crossing on the reference β grid",
                       "lambda_max_J": (f"dense eigh of J (auto: N = {c_ref.num_spins} ≤ "
                                        f"{linalg.DENSE_MAX_SPINS})" if bond_backend == "dense" else
                                        f"spectra.bond_top (auto: N = {c_ref.num_spins} > "
                                        f"{linalg.DENSE_MAX_SPINS}): Lanczos on J² over one sublattice, "
                                        f"≤ {min(lanczos_iter, c_ref.num_spins)} steps, stops at residual "
                                        "bound ≤ 1e-6 relative; λ_max ∈ [value, value + "
                                        "info['lambda_max_J_error']]")
                                       + "; on W/s, s = coupling_scale, rescaled in float64",
                       "sigma_max": "eigvalsh of the smaller Gram matrix W Wᵀ or Wᵀ W (exact; LAPACK eigenvalues-only on CPU)",
                       "level_spacing": why_lvl,
                       "reference": rres.info.get("backend", "analytic")}
    if lvl_notes:
        info["level_spacing_errors"] = lvl_notes
    info["lambda_max_J_error"] = lam_max_err.tolist()
    info["num_tests"] = np.asarray(num_tests).tolist()
    info["search_status"] = [SearchStatus(int(v)).name for v in search_status]
    if search_errors:
        info["search_errors"] = search_errors
    info["errors"] = {str(float(hist.t[i])): f"no crossing: λ_min stays {margin[r]:.3g} above λ* near β*"
                      for r, i in enumerate(idx) if crossing[r] == "none ≤ β_max"}
    phases.timings["total"] = {"seconds": time.monotonic() - t_all}
    info["timings"] = phases.timings

    layers = None
    if per_layer:
        L = len(ws)
        names = tuple(hist.layer_names) if len(hist.layer_names) == L else tuple(f"W{k}" for k in range(1, L + 1))
        pad = lambda a: np.concatenate([np.full((T, 1), np.nan), np.asarray(a, float)], axis=1)
        shapes = np.array([(0, c_ref.sizes[0])] + [tuple(w.shape[1:]) for w in ws])
        layers = LayerTable(names=("input",) + names, shapes=shapes, sigma_max=pad(sig), frobenius=pad(fro),
                            C=pad(Ck), top_share=np.asarray(share, float))
    bc = bc.astype(float)
    return Analysis(
        t=np.asarray(hist.t, float)[idx], val_error=np.asarray(hist.val_error, float)[idx], beta_c=bc,
        T_c=1.0 / bc, lambda_max_J=np.asarray(lam_max, float), lambda_min_R=np.asarray(lmin_r, float),
        level_spacing=spacing, threshold=thr, analytic_beta_c=analytic,
        betas=np.asarray(betas) if curves else None, curves=curve_arr if curves else None,
        tap_spectra=tap_sp, bond_spectra=bond_sp, info=info, crossing=np.asarray(crossing, str),
        closest_margin=margin, step=np.asarray(hist.step, float)[idx] if len(hist.step) == T_all else None,
        reference=rres.to_dict(), layers=layers, **r_cols)


def analyze_run(run: str | ckpt.RunHistory, *, method: str = "recurrence", backend: str = "lanczos",
                betas=None, beta_max: float | None = None, num_betas: int = 256,
                curves: bool = False, keep_spectra: bool = False, level_spacing: bool = True,
                rtol: float = 1e-4, lanczos_iter: int = 120, dtype=jnp.float32,
                indices=None, progress: bool = True) -> Analysis:
    """Analyzes every checkpoint of a tapjax run (or ``indices`` of them, plus t = 0).

    The earlier entry point, kept: :func:`analyze` with the ``"init"`` reference
    (:class:`tapjax.reference.Reference`) on the grid ``linspace(0, beta_max, num_betas + 1)[1:]``,
    ``beta_max`` defaulting to twice the MSK β_c of the *measured* init scales (no longer an assumed
    C = 2). ``method``: ``"recurrence"`` (secant root search), ``"bisection"`` or ``"grid"``;
    ``backend``: the λ_min backend of the reference and the curves (``"lanczos"`` or ``"dense"``).
    Rows without a crossing follow :func:`analyze`'s no-crossing rule (``crossing`` column).
    """
    m = {"recurrence": "secant", "bisection": "bisect", "grid": "grid"}
    if method not in m:
        raise ValueError(f"method={method!r}: use 'recurrence', 'bisection' or 'grid'")
    hist = ckpt.load_run(run) if isinstance(run, str) else run
    c0 = couplings(hist.weights_at(0), name=hist.paths[0] if hist.paths else "checkpoint 0", dtype=dtype)
    if betas is None:
        bmax = beta_max or 2.0 * ref_lib.beta_range(c0)[1]
        betas = ref_lib.beta_grid(bmax, num_betas)
    ref = Reference(kind="init", betas=tuple(np.asarray(betas, float)), backend=backend, lanczos_iter=lanczos_iter)
    idx = None if indices is None else sorted(set(indices) | {0})
    a = analyze(hist, ref, method=m[method], rtol=rtol, dtype=dtype, lanczos_iter=lanczos_iter,
                curves=curves, keep_spectra=keep_spectra, level_spacing=bool(level_spacing),
                level_method="dense", indices=idx, progress=progress, per_layer=False)
    a.info["backend"] = backend
    a.info["method"] = method
    return a


# --------------------------------------------------------------------------- files
def table_paths(path_prefix: str) -> dict[str, str]:
    """Files :func:`save_analysis` writes for ``path_prefix``."""
    return {"npz": path_prefix + ".npz", "json": path_prefix + ".json", "csv": path_prefix + ".csv",
            "table_json": path_prefix + "_table.json", "layers_csv": path_prefix + "_layers.csv"}


def _csv(records: list[dict[str, Any]], columns: Sequence[str]) -> bytes:
    import csv  # pylint: disable=import-outside-toplevel
    import io  # pylint: disable=import-outside-toplevel
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow({k: ("" if r.get(k) is None else r[k]) for k in columns})
    return buf.getvalue().encode()


def save_analysis(a: Analysis, path_prefix: str) -> tuple[str, str]:
    """Writes ``<prefix>.npz`` (arrays), ``<prefix>.json`` (table + metadata), and for pandas
    ``<prefix>.csv`` and ``<prefix>_table.json`` (records: ``pandas.read_json`` reads it directly),
    plus ``<prefix>_layers.csv`` when there is a per-layer table. Returns ``(npz, json)``;
    :func:`table_paths` lists them all."""
    p = table_paths(path_prefix)
    arrays = {f.name: getattr(a, f.name) for f in dataclasses.fields(a)
              if isinstance(getattr(a, f.name), np.ndarray)}
    arrays["threshold"] = np.asarray(a.threshold)
    arrays["analytic_beta_c"] = np.asarray(a.analytic_beta_c)
    if a.crossing is not None:
        arrays["crossing"] = np.asarray(a.crossing, str)
    if a.layers is not None:
        for k in ("sigma_max", "frobenius", "C", "top_share", "shapes"):
            arrays[f"layers_{k}"] = np.asarray(getattr(a.layers, k))
        arrays["layers_names"] = np.asarray(a.layers.names, str)
    ckpt.atomic_write_npz(p["npz"], arrays)
    rows = a.rows()
    ckpt.atomic_write_json(p["json"], _jsonable({
        "threshold": a.threshold, "analytic_beta_c": a.analytic_beta_c,
        "analytic_T_c": 1.0 / a.analytic_beta_c, "reference": a.reference, "info": a.info, "rows": rows}))
    ckpt.atomic_write_bytes(p["table_json"], (json.dumps(rows, indent=1, ensure_ascii=False) + "\n").encode())
    ckpt.atomic_write_bytes(p["csv"], _csv(rows, a.columns))
    if a.layers is not None:
        ckpt.atomic_write_bytes(p["layers_csv"], _csv(a.layers.records(a.t), LAYER_COLUMNS))
    return p["npz"], p["json"]


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, (np.floating, float)):
        return float(o) if math.isfinite(float(o)) else None
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def load_analysis(path_prefix: str) -> dict[str, Any]:
    """Reads what :func:`save_analysis` wrote → dict of arrays plus ``"json"``."""
    d = ckpt.read_npz(path_prefix + ".npz")
    with open(path_prefix + ".json") as f:
        d["json"] = json.load(f)
    return d


def read_analysis(path_prefix: str) -> Analysis:
    """An :class:`Analysis` back from the files :func:`save_analysis` wrote."""
    d = load_analysis(path_prefix)
    fields = {f.name for f in dataclasses.fields(Analysis)}
    skip = ("threshold", "analytic_beta_c", "info", "crossing", "reference", "layers")
    kw = {k: v for k, v in d.items() if k in fields and k not in skip}
    js = d["json"]
    layers = None
    if "layers_names" in d:
        layers = LayerTable(names=tuple(str(v) for v in d["layers_names"]), shapes=d["layers_shapes"],
                            sigma_max=d["layers_sigma_max"], frobenius=d["layers_frobenius"], C=d["layers_C"],
                            top_share=d["layers_top_share"])
    crossing = np.asarray(d["crossing"], str) if "crossing" in d else None
    return Analysis(threshold=float(d["threshold"]), analytic_beta_c=float(d["analytic_beta_c"]),
                    info=js.get("info", {}), crossing=crossing, reference=js.get("reference"),
                    layers=layers, **kw)


__all__ = ["Analysis", "CROSSING_VALUES", "LayerTable", "RATIO_COLUMNS", "TABLE_COLUMNS", "analyze", "analyze_run", "load_analysis",
           "read_analysis", "resolve_no_crossing", "save_analysis", "table_paths"]
