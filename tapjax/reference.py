r"""The reference threshold :math:`\lambda^*` of the melting rule (paper section 3.2), in one place.

The paper defines :math:`T_c(t) = 1/\beta_c(t)` with :math:`\beta_c(t)` the first β where
:math:`\lambda_{\min}(I - M(\beta; t))` (eqs. 22–25) reaches a threshold :math:`\lambda^*`. In the
thermodynamic limit :math:`\lambda^* = 0`; on a finite net the paper corrects for finite size by
taking :math:`\lambda^* = \min_\beta \lambda_{\min}(I - M(\beta))` of the *untrained* net, reached at
:math:`\beta^*`. This module computes that threshold for four choices of reference couplings
(:class:`Reference`, ``kind=``), all from the series' reference snapshot (index 0 by default):

* ``"init"``: the snapshot itself, which must be the untrained net (t = 0) — the paper's rule.
* ``"shuffled"``: a null model: every block's entries randomly permuted (``num_seeds`` draws);
  each draw keeps the layer's exact entry distribution and destroys all structure.
  :math:`\lambda^*` is the mean of the draws' minima, ``threshold_spread`` their standard deviation.
* ``"gaussian"``: fresh :math:`W^{(k)}_{ij} \sim \mathcal N(0, \mathrm{Var}(W^{(k)}))` with each
  layer's measured variance (``num_seeds`` draws, mean ± spread as for ``"shuffled"``).
* ``"msk"``: the analytic multilayer SK model (eq. 15) with the measured
  :math:`C_k = N_{k-1}\,\mathrm{Var}(W^{(k)})`. Its closed form is an :math:`N \to \infty`
  statement: the paramagnet becomes unstable where eq. 15 loses positive definiteness,
  :math:`\beta^* = \beta_c^{\rm MSK}(N_k, C_k)` (:func:`tapjax.msk.critical_beta`), and there the
  TAP matrix's :math:`\lambda_{\min}` reaches **0**. So ``"msk"`` has ``threshold = 0`` and
  ``threshold_spread = 0``. (The finite-size minimum of a Gaussian draw is positive — that is
  ``"gaussian"``; with ``"msk"`` an untrained finite net may never reach 0 and its rows are flagged
  as having no crossing.)

**The β range** of every search comes from the weights, never from an assumed init scale:
``beta_range = range_factor · β_c^MSK(N_k, C_k)`` with the measured :math:`C_k` of the reference
snapshot. When the reference minimum of :math:`\lambda_{\min}(\beta)` lies on the last point of
the β grid, the grid is doubled (at most ``max_extensions`` times); with ``max_extensions=0``, or
when it still sits on the edge, :class:`ReferenceRangeError` says so. A minimum on the *first*
grid point (range far too wide) halves the range in the same way.

:meth:`Reference.compute` is a pure function of the couplings returning a small
:class:`ReferenceResult`, so it serves :mod:`tapjax.analysis`, :mod:`tapjax.sharding` and the
experiments alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tapjax import msk, tap
from tapjax.spin_model import LayeredCouplings, couplings

ReferenceKind = Literal["init", "shuffled", "gaussian", "msk"]
Backend = Literal["auto", "dense", "lanczos"]
KINDS: tuple[str, ...] = ("init", "shuffled", "gaussian", "msk")


class ReferenceRangeError(ValueError):
    """The reference minimum of λ_min(I − M(β)) sits on the edge of the β range."""


class ReferenceResult(NamedTuple):
    """What the §3.2 rule needs from a reference.

    Attributes:
      threshold: :math:`\\lambda^*` (mean over seeds for ``"shuffled"``/``"gaussian"``; 0 for ``"msk"``).
      threshold_spread: standard deviation of λ* over the seeds (0 for one draw / ``"init"`` / ``"msk"``).
      beta_star: β of the reference minimum (mean over seeds); for ``"msk"`` the analytic β_c.
        The reference's own T_c is ``1 / beta_star``.
      beta_range: upper end β_max of the search range for β_c (after any extension).
      per_layer_C: measured :math:`C_k = N_{k-1}\\mathrm{Var}(W^{(k)})`, k = 1..L.
      kind: the reference kind used.
      info: provenance: sizes, analytic β_c, backend, grid, extensions, per-seed values, why.
    """

    threshold: float
    threshold_spread: float
    beta_star: float
    beta_range: float
    per_layer_C: tuple[float, ...]
    kind: str
    info: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (floats and lists)."""
        return {"threshold": float(self.threshold), "threshold_spread": float(self.threshold_spread),
                "beta_star": float(self.beta_star), "T_c": 1.0 / float(self.beta_star),
                "beta_range": float(self.beta_range), "per_layer_C": [float(v) for v in self.per_layer_C],
                "kind": self.kind, "info": self.info}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ReferenceResult":
        """Inverse of :meth:`to_dict` (e.g. from a saved analysis' ``json["reference"]``)."""
        return cls(float(d["threshold"]), float(d["threshold_spread"]), float(d["beta_star"]),
                   float(d["beta_range"]), tuple(float(v) for v in d["per_layer_C"]), str(d["kind"]),
                   dict(d.get("info") or {}))


def beta_grid(beta_max: float, num_betas: int) -> np.ndarray:
    r"""The section-3.2 β grid: ``num_betas`` equal steps on :math:`(0, eta_{\max}]`,
    ``linspace(0, beta_max, num_betas + 1)[1:]`` (β = 0 is left out: there :math:`I - M = I`)."""
    if not (num_betas >= 1 and np.isfinite(beta_max) and beta_max > 0):
        raise ValueError(f"beta_grid: need beta_max > 0 (finite) and num_betas ≥ 1, got "
                         f"beta_max={beta_max!r}, num_betas={num_betas!r}")
    return np.linspace(0.0, float(beta_max), int(num_betas) + 1)[1:]


def measured_scales(c: LayeredCouplings | Sequence) -> np.ndarray:
    r"""Per-layer init scales :math:`C_k = N_{k-1}\,\mathrm{Var}(W^{(k)})` → ``(L,)`` float64.

    For an MSK draw :math:`W_{ij} \sim \mathcal N(0, C/N_{k-1})` this estimates C (PyTorch's
    default ``nn.Linear`` init gives C = 1/3, Kaiming-normal C = 2).
    """
    ws = c.weights if isinstance(c, LayeredCouplings) else tuple(c)
    out = []
    for k, w in enumerate(ws, start=1):
        w = np.asarray(w, np.float64)
        v = float(np.var(w))
        if not np.isfinite(v) or v <= 0:
            raise ValueError(f"W^({k}) of shape {w.shape} has variance {v!r}: a layer of constant "
                             "weights has no MSK scale; check the weights (or use reference='init')")
        out.append(w.shape[-2] * v)
    return np.asarray(out)


def beta_range(c: LayeredCouplings, range_factor: float = 2.0) -> tuple[float, float, np.ndarray]:
    """``(range_factor · β_c^MSK, β_c^MSK, C_k)`` with the measured per-layer :math:`C_k` (eq. 15)."""
    C = measured_scales(c)
    bc = msk.critical_beta(c.sizes, C)
    return float(range_factor * bc), float(bc), C


def _backend(c: LayeredCouplings, backend: str, dense_max_spins: int) -> str:
    if backend == "auto":
        return "dense" if c.num_spins <= dense_max_spins else "lanczos"
    return backend


def _lam(c: LayeredCouplings, betas, backend: str, num_iter: int) -> np.ndarray:
    kw = {"num_iter": min(num_iter, c.num_spins)} if backend == "lanczos" else {}
    return np.asarray(tap.least_eigenvalue(c, np.asarray(betas, float), backend, **kw), float)


def reference_minimum(c: LayeredCouplings, betas, backend: str = "dense", *, num_iter: int = 120,
                      refine: bool = True, max_extensions: int = 3) -> dict[str, Any]:
    r""":math:`\min_\beta \lambda_{\min}(I - M(\beta))` of ``c`` on the grid ``betas``, polished.

    The minimum is located on the grid (the same steps as :func:`tapjax.tap.reference_threshold`:
    argmin, then golden section between the neighbouring grid points with ``rtol=1e-6``,
    25 evaluations). A grid minimum on the last point doubles the grid (a minimum on the first
    point halves it), at most ``max_extensions`` times.

    Returns:
      ``{"threshold", "beta_star", "betas" (final grid), "curve" (λ_min on it), "extensions"}``.

    Raises:
      ReferenceRangeError: the minimum is still on an edge of the grid.
    """
    betas = np.asarray(betas, float)
    ext = []
    while True:
        curve = _lam(c, betas, backend, num_iter)
        if not np.all(np.isfinite(curve)):
            raise ValueError("reference λ_min(I − M(β)) curve has NaN/Inf; check the couplings")
        i = int(np.argmin(curve))
        edge = "last" if i == len(betas) - 1 else ("first" if i == 0 and len(betas) > 2 else None)
        if edge is None:
            break
        if len(ext) >= max_extensions:
            what = (f"its last grid point β = {betas[-1]:.6g} (the range is too short)" if edge == "last"
                    else f"its first grid point β = {betas[0]:.6g} (the range is too wide)")
            raise ReferenceRangeError(
                f"the reference minimum of λ_min(I − M(β)) = {curve[i]:.6g} lies on {what}"
                + (f" after {len(ext)} automatic extension(s) {ext}" if ext else
                   " and range extension is disabled (max_extensions=0)")
                + "; pass Reference(range_factor=...) or an explicit betas grid that contains the minimum")
        factor = 2.0 if edge == "last" else 0.5
        ext.append({"edge": edge, "from_beta_max": float(betas[-1]), "to_beta_max": float(betas[-1] * factor)})
        betas = betas * factor
    best_b, best_v = float(betas[i]), float(curve[i])
    lo, hi = betas[max(i - 1, 0)], betas[min(i + 1, len(betas) - 1)]
    if refine and hi > lo:
        f = lambda b: float(_lam(c, np.array([b]), backend, num_iter)[0])
        x, v = tap.golden_min(f, lo, hi, rtol=1e-6, max_iter=25)
        if v < best_v:
            best_b, best_v = float(x), float(v)
    return {"threshold": best_v, "beta_star": best_b, "betas": betas, "curve": curve, "extensions": ext}


def shuffled_couplings(c: LayeredCouplings, key: jax.Array) -> LayeredCouplings:
    """Each block's entries randomly permuted (the null model of ``kind="shuffled"``)."""
    keys = jax.random.split(key, c.num_layers)
    return LayeredCouplings(tuple(
        jax.random.permutation(k, w.reshape(-1)).reshape(w.shape) for k, w in zip(keys, c.weights)))


def gaussian_couplings(c: LayeredCouplings, key: jax.Array) -> LayeredCouplings:
    """Fresh zero-mean Gaussian blocks with each block's measured variance (``kind="gaussian"``)."""
    keys = jax.random.split(key, c.num_layers)
    return LayeredCouplings(tuple(
        jax.random.normal(k, w.shape, w.dtype) * jnp.std(w) for k, w in zip(keys, c.weights)))


@dataclasses.dataclass(frozen=True)
class Reference:
    r"""The §3.2 reference rule: which couplings define :math:`\lambda^*`, and the search range.

    Attributes:
      kind: ``"init"``, ``"shuffled"``, ``"gaussian"`` or ``"msk"`` (module docstring).
      num_seeds: K draws for ``"shuffled"`` / ``"gaussian"``.
      seed: base PRNG seed of the draws (``jax.random.PRNGKey(seed)``, folded with the draw index).
      num_betas: points of the β grid ``linspace(0, beta_range, num_betas + 1)[1:]`` on which the
        reference minimum is located (then polished by golden section).
      range_factor: ``beta_range = range_factor · β_c^MSK(N_k, measured C_k)``.
      max_extensions: automatic doublings of the range when the minimum is on its edge
        (0: raise :class:`ReferenceRangeError` instead).
      backend: λ_min backend: ``"dense"`` (eigvalsh), ``"lanczos"`` or ``"auto"`` (dense up to
        ``dense_max_spins`` spins).
      lanczos_iter: Krylov dimension of the Lanczos backend (capped at N).
      dense_max_spins: size limit of ``backend="auto"``'s dense choice.
      refine: golden-section polish of the grid minimum.
      betas: an explicit β grid instead of the default one (scaled on extension).
    """

    kind: ReferenceKind = "init"
    num_seeds: int = 4
    seed: int = 0
    num_betas: int = 48
    range_factor: float = 2.0
    max_extensions: int = 3
    backend: Backend = "auto"
    lanczos_iter: int = 120
    dense_max_spins: int = 1024
    refine: bool = True
    betas: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Reference(kind={self.kind!r}): use one of {KINDS}")
        if self.backend not in ("auto", "dense", "lanczos"):
            raise ValueError(f"Reference(backend={self.backend!r}): use 'auto', 'dense' or 'lanczos'")
        if self.num_seeds < 1 or self.num_betas < 3 or self.max_extensions < 0:
            raise ValueError(f"Reference: need num_seeds ≥ 1, num_betas ≥ 3, max_extensions ≥ 0 "
                             f"(got {self.num_seeds}, {self.num_betas}, {self.max_extensions})")
        if not self.range_factor > 1.0:
            raise ValueError(f"Reference(range_factor={self.range_factor!r}): must be > 1 so the "
                             "range contains the MSK β_c")
        if self.betas is not None:
            b = np.asarray(self.betas, float)
            if b.ndim != 1 or b.size < 3 or np.any(b <= 0) or np.any(np.diff(b) <= 0):
                raise ValueError("Reference(betas=...): need ≥ 3 positive increasing values")
            object.__setattr__(self, "betas", tuple(float(v) for v in b))

    def grid(self, beta_max: float) -> np.ndarray:
        """The β grid for a range ``(0, beta_max]`` (or the explicit ``betas``)."""
        if self.betas is not None:
            return np.asarray(self.betas, float)
        return beta_grid(beta_max, self.num_betas)

    def compute(self, c: LayeredCouplings | Sequence) -> ReferenceResult:
        """:class:`ReferenceResult` for the reference snapshot's couplings ``c`` (one net, no batch axis)."""
        c = c if isinstance(c, LayeredCouplings) else couplings(c, name="reference snapshot")
        if c.weights[0].ndim != 2:
            raise ValueError(f"Reference.compute: one net expected; W^(1) has shape {c.weights[0].shape}")
        bmax, analytic, C = beta_range(c, self.range_factor)
        info: dict[str, Any] = {"sizes": list(c.sizes), "analytic_beta_c": analytic,
                                "analytic_T_c": 1.0 / analytic, "range_factor": self.range_factor,
                                "beta_range_why": f"{self.range_factor:g} × MSK β_c (eq. 15) with the "
                                                  "measured per-layer C_k = N_(k-1)·Var(W_k)"}
        if self.kind == "msk":
            info.update(note="analytic MSK (N → ∞): λ_min(I − M) reaches 0 at the eq. 15 β_c; "
                             "threshold 0, β* = β_c^MSK(measured C_k)")
            return ReferenceResult(0.0, 0.0, analytic, bmax, tuple(map(float, C)), "msk", info)
        backend = _backend(c, self.backend, self.dense_max_spins)
        info.update(backend=backend, num_betas=len(self.grid(bmax)),
                    lanczos_iter=min(self.lanczos_iter, c.num_spins) if backend == "lanczos" else None)
        if self.kind == "init":
            draws = [c]
        else:
            make = shuffled_couplings if self.kind == "shuffled" else gaussian_couplings
            base = jax.random.PRNGKey(self.seed)
            draws = [make(c, jax.random.fold_in(base, k)) for k in range(self.num_seeds)]
            info.update(num_seeds=self.num_seeds, seed=self.seed)
        mins = [reference_minimum(d, self.grid(bmax), backend, num_iter=self.lanczos_iter,
                                  refine=self.refine, max_extensions=self.max_extensions) for d in draws]
        thr = np.array([m["threshold"] for m in mins])
        bst = np.array([m["beta_star"] for m in mins])
        top = max(float(m["betas"][-1]) for m in mins)
        beta_max = max(bmax, top) if self.betas is None else top
        info.update(extensions=[m["extensions"] for m in mins] if len(mins) > 1 else mins[0]["extensions"],
                    grid_beta_max=top)
        if len(mins) > 1:
            info.update(seed_thresholds=thr.tolist(), seed_beta_stars=bst.tolist())
        spread = float(np.std(thr, ddof=1)) if len(thr) > 1 else 0.0
        res = ReferenceResult(float(thr.mean()), spread, float(bst.mean()), float(beta_max),
                              tuple(map(float, C)), self.kind, info)
        return res

    __call__ = compute

    def grid_betas(self, result: ReferenceResult) -> np.ndarray:
        """The (extended) β grid the reference minimum was found on (``"msk"``: the default grid)."""
        top = result.info.get("grid_beta_max", result.beta_range)
        if self.betas is not None:
            b = np.asarray(self.betas, float)
            return b * (top / b[-1])
        return beta_grid(top, self.num_betas)


def as_reference(reference: "str | Reference") -> Reference:
    """A :class:`Reference` from a kind string (not ``"auto"``) or a Reference (returned as is)."""
    if isinstance(reference, Reference):
        return reference
    if isinstance(reference, str) and reference in KINDS:
        return Reference(kind=reference)  # type: ignore[arg-type]
    raise ValueError(f"reference={reference!r}: use 'auto', one of {KINDS}, a tapjax.reference.Reference "
                     "or a precomputed ReferenceResult")


def auto_kind(t0: float, num_snapshots: int, from_tapjax_run: bool) -> tuple[str, str]:
    """The default reference kind of a series → ``(kind, why)``.

    ``"init"`` when the series starts at t = 0 and that snapshot is known to be the untrained
    net (a tapjax run, or a foreign series of ≥ 2 snapshots whose metadata put one at t = 0);
    otherwise ``"shuffled"`` — a lone foreign snapshot, or a series without t = 0, is never taken
    as its own reference silently.
    """
    if np.isfinite(t0) and t0 == 0.0 and (from_tapjax_run or num_snapshots > 1):
        return "init", ("the series starts at t = 0 (tapjax run)" if from_tapjax_run
                        else "the series' metadata put its first snapshot at t = 0")
    why = ("a single snapshot cannot be its own untrained reference" if num_snapshots == 1
           else f"the series has no t = 0 snapshot (first t = {t0:g})" if np.isfinite(t0)
           else "the series' times are unknown (no t = 0 snapshot known)")
    return "shuffled", why + ": null model of the first snapshot's permuted entries"


__all__ = ["KINDS", "Reference", "ReferenceKind", "ReferenceRangeError", "ReferenceResult", "beta_grid",
           "as_reference", "auto_kind", "beta_range", "gaussian_couplings", "measured_scales",
           "reference_minimum", "shuffled_couplings"]
