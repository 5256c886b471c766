r"""Power laws in training time: single and broken fits, and when the error plateaus.

Section 3.2 and 3.4 of the paper describe :math:`T_c(t)` and :math:`\lambda_{\max}(J)(t)` as
power laws :math:`y \propto t^{\alpha}` that switch to a smaller exponent around the time the
validation error plateaus. We test that with straight-line fits in :math:`(x, z) = (\log t,
\log y)`:

* :func:`fit_power_law`: :math:`z = c + \alpha x` by least squares;
* :func:`fit_piecewise_power_law` (:func:`fit_broken_power_law` for one break): the
  continuous piecewise-linear model with K = 1 or 2 breaks :math:`x_j = \log t_j`

  .. math::
      z = c + \alpha_1 x + \sum_{j=1}^{K} (\alpha_{j+1} - \alpha_j) \max(x - x_j, 0),

  linear in :math:`(c, \alpha)` for fixed breaks, which are found by scanning a grid
  (at least ``min_points`` data per segment) and keeping the least squared error.
  Confidence intervals come from the parameter covariance at the best breaks (Student t)
  and, for exponents and breaks jointly, from a residual bootstrap that re-scans the breaks.
  Breaks are *detected* when the model beats a single power law by the Bayesian information
  criterion (:math:`\Delta\mathrm{BIC} = \mathrm{BIC}_{\rm single} - \mathrm{BIC}` above
  ``bic_threshold``); :func:`select_power_law` picks 0, 1 or 2 breaks by BIC. Two breaks
  let a fit separate an early transient from the late slow-down the paper describes.
* :func:`plateau_time`: first time after which the error stays within a relative tolerance
  of its final level.

Everything here is plain NumPy on small arrays (tens to hundreds of points); the Student t
distribution comes from ``scipy.special`` (scipy is a dependency of jax).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np
import scipy.special


# --------------------------------------------------------------------------- Student t
def student_t_cdf(x: float, dof: float) -> float:
    """CDF of Student's t with ``dof`` degrees of freedom (``scipy.special.stdtr``)."""
    return float(scipy.special.stdtr(dof, x))


def student_t_quantile(p: float, dof: float) -> float:
    """Quantile of Student's t, ``0 < p < 1`` (``scipy.special.stdtrit``, the inverse of the CDF)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p={p}: must be in (0, 1)")
    if dof <= 0:
        raise ValueError(f"dof={dof}: must be positive")
    return float(scipy.special.stdtrit(dof, p))


# --------------------------------------------------------------------------- fits
def _clean(t, y, t_min: float | None = None, t_max: float | None = None):
    t, y = np.asarray(t, float).ravel(), np.asarray(y, float).ravel()
    if t.shape != y.shape:
        raise ValueError(f"t has shape {t.shape} but y has shape {y.shape}")
    ok = np.isfinite(t) & np.isfinite(y) & (t > 0) & (y > 0)
    if t_min is not None:
        ok &= t >= t_min
    if t_max is not None:
        ok &= t <= t_max
    order = np.argsort(t[ok])
    return t[ok][order], y[ok][order]


def _bic(sse: float, n: int, k: int) -> float:
    return n * math.log(max(sse, 1e-300) / n) + k * math.log(n)


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
    """:math:`y = A t^{\\alpha}` fitted as a line in log-log.

    Attributes:
      exponent: α.
      exponent_ci: ``(lo, hi)`` confidence interval of α (Student t, n − 2 dof).
      exponent_se: standard error of α.
      prefactor: A.
      n: number of points used.
      t_range: ``(t_first, t_last)`` of the points used.
      sse: residual sum of squares in log space.
      bic: Bayesian information criterion (Gaussian residuals, 3 parameters with the variance).
    """

    exponent: float
    exponent_ci: tuple[float, float]
    exponent_se: float
    prefactor: float
    n: int
    t_range: tuple[float, float]
    sse: float
    bic: float

    def predict(self, t) -> np.ndarray:
        return self.prefactor * np.asarray(t, float) ** self.exponent

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def fit_power_law(t, y, *, level: float = 0.95, t_min: float | None = None,
                  t_max: float | None = None) -> PowerLawFit:
    """Least-squares line through ``(log t, log y)`` (points with t, y > 0 and finite).

    Args:
      t: ``(n,)`` times.
      y: ``(n,)`` positive values.
      level: confidence level of ``exponent_ci``.
      t_min, t_max: restrict the fit to ``t_min <= t <= t_max``.

    Raises:
      ValueError: fewer than 3 usable points.
    """
    t, y = _clean(t, y, t_min, t_max)
    n = t.size
    if n < 3:
        raise ValueError(f"power-law fit needs at least 3 positive finite points, got {n}")
    x, z = np.log(t), np.log(y)
    X = np.stack([np.ones_like(x), x], 1)
    coef, *_ = np.linalg.lstsq(X, z, rcond=None)
    res = z - X @ coef
    sse = float(res @ res)
    s2 = sse / (n - 2) if n > 2 else np.nan
    cov = s2 * np.linalg.inv(X.T @ X)
    se = float(np.sqrt(max(cov[1, 1], 0.0)))
    q = student_t_quantile(0.5 + level / 2, n - 2)
    a = float(coef[1])
    return PowerLawFit(exponent=a, exponent_ci=(a - q * se, a + q * se), exponent_se=se,
                       prefactor=float(np.exp(coef[0])), n=int(n),
                       t_range=(float(t[0]), float(t[-1])), sse=sse, bic=_bic(sse, n, 3))


@dataclasses.dataclass(frozen=True)
class PiecewisePowerLawFit:
    r"""Continuous piecewise power law with K breaks :math:`t_1 < \dots < t_K`:

    .. math::
        \log y = c + \alpha_1 \log t + \sum_{j=1}^{K} (\alpha_{j+1} - \alpha_j)
        \max(\log t - \log t_j, 0).

    Attributes:
      breaks: ``(t_1, ..., t_K)``.
      breaks_ci: bootstrap percentile interval of each break.
      exponents: ``(α_1, ..., α_{K+1})``, one per segment.
      exponent_ci: covariance intervals of the exponents (Student t with n − 2K − 2 dof;
        conditional on the breaks).
      exponent_se: their standard errors.
      bootstrap_exponent_ci: percentile intervals from the residual bootstrap (the breaks are
        re-scanned in every replicate); NaN when ``bootstrap=0``.
      intercept: c.
      n: points used.
      segment_points: points in each closed segment (a point at a break counts in both).
      sse: residual sum of squares (log space).
      bic: BIC with 2K + 3 parameters (c, K + 1 exponents, K breaks, variance).
      single: the one-segment :class:`PowerLawFit` on the same points.
      delta_bic: ``single.bic − bic`` (positive favours the breaks).
      break_detected: ``delta_bic > bic_threshold``.
      exponent_drop_significant: the last exponent is smaller than the one before, with
        disjoint bootstrap intervals (covariance intervals when there is no bootstrap).

    ``t_break``, ``t_break_ci``, ``n_before``, ``n_after`` refer to the last break.
    """

    breaks: tuple[float, ...]
    breaks_ci: tuple[tuple[float, float], ...]
    exponents: tuple[float, ...]
    exponent_ci: tuple[tuple[float, float], ...]
    exponent_se: tuple[float, ...]
    bootstrap_exponent_ci: tuple[tuple[float, float], ...]
    intercept: float
    n: int
    segment_points: tuple[int, ...]
    sse: float
    bic: float
    single: PowerLawFit
    delta_bic: float
    break_detected: bool
    exponent_drop_significant: bool

    @property
    def t_break(self) -> float:
        return self.breaks[-1]

    @property
    def t_break_ci(self) -> tuple[float, float]:
        return self.breaks_ci[-1]

    @property
    def n_before(self) -> int:
        return self.segment_points[-2]

    @property
    def n_after(self) -> int:
        return self.segment_points[-1]

    def predict(self, t) -> np.ndarray:
        return piecewise_power_law(t, self.intercept, self.exponents, self.breaks)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["single"] = self.single.to_dict()
        d.update(t_break=self.t_break, t_break_ci=self.t_break_ci, n_before=self.n_before,
                 n_after=self.n_after, num_breaks=len(self.breaks))
        return d


def piecewise_power_law(t, intercept: float, exponents, breaks) -> np.ndarray:
    """Evaluates the model of :class:`PiecewisePowerLawFit` at ``t`` (> 0)."""
    x = np.log(np.asarray(t, float))
    z = intercept + exponents[0] * x
    for j, b in enumerate(breaks):
        z = z + (exponents[j + 1] - exponents[j]) * np.maximum(x - math.log(b), 0.0)
    return np.exp(z)


def _designs(x: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """``(C, n, K + 2)`` designs ``[1, x, (x − b_1)_+, ..., (x − b_K)_+]`` for breaks ``(C, K)``."""
    hinge = np.maximum(x[None, :, None] - xb[:, None, :], 0.0)
    base = np.broadcast_to(np.stack([np.ones_like(x), x], -1), (xb.shape[0], x.size, 2))
    return np.concatenate([base, hinge], -1)


def _candidates(x: np.ndarray, num_breaks: int, min_points: int, grid_size: int) -> np.ndarray:
    """Break combinations ``(C, K)`` (log t) leaving ``min_points`` in every closed segment."""
    n = x.size
    lo, hi = x[min_points - 1], x[n - min_points]
    g = np.unique(np.concatenate([np.linspace(lo, hi, grid_size), x[min_points - 1:n - min_points + 1]]))
    if num_breaks == 1:
        return g[:, None]
    if num_breaks == 2:
        b1, b2 = np.meshgrid(g, g, indexing="ij")
        b1, b2 = b1.ravel(), b2.ravel()
        inner = np.sum((x[None, :] >= b1[:, None]) & (x[None, :] <= b2[:, None]), 1)
        keep = (b1 < b2) & (inner >= min_points)
        return np.stack([b1[keep], b2[keep]], 1)
    raise ValueError(f"num_breaks={num_breaks}: 1 or 2 supported")


def _best_combo(Q: np.ndarray, Z: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Index of the least-squares-best design for every column of ``Z (n, B)``.

    ``Q (C, n, p)`` are orthonormal bases of the designs' column spaces, so
    ``SSE = |z|² − |Qᵀz|²`` without forming residuals.
    """
    out = np.empty(Z.shape[1], int)
    for i in range(0, Z.shape[1], chunk):
        z = Z[:, i:i + chunk]
        proj = np.einsum("cnp,nb->cpb", Q, z)
        sse = np.sum(z * z, 0)[None, :] - np.sum(proj * proj, 1)
        out[i:i + chunk] = np.argmin(sse, 0)
    return out


def fit_piecewise_power_law(t, y, *, num_breaks: int = 1, min_points: int = 3,
                            grid_size: int | None = None, level: float = 0.95,
                            bootstrap: int = 200, seed: int = 0, bic_threshold: float = 2.0,
                            t_min: float | None = None, t_max: float | None = None) -> PiecewisePowerLawFit:
    """Continuous piecewise power law with ``num_breaks`` (1 or 2) breaks located automatically.

    Every combination of breaks on a grid (log-uniform between the ``min_points``-th point
    from each end, plus the data abscissae) that leaves at least ``min_points`` points in each
    segment is fitted by linear least squares; the best one wins.

    Args:
      t: ``(n,)`` times (points with t, y > 0 and finite are used).
      y: ``(n,)`` positive values.
      num_breaks: 1 (two segments) or 2 (three segments).
      min_points: least number of points per segment (a point at a break counts for both).
      grid_size: size of the grid of candidate breaks (default 400 for one break, 100 for two).
      level: confidence level of the intervals.
      bootstrap: residual-bootstrap replicates (0 disables).
      seed: bootstrap seed (``numpy.random.default_rng``).
      bic_threshold: ΔBIC (vs one power law) above which the breaks count as detected.
      t_min, t_max: restrict the fit range.

    Raises:
      ValueError: too few usable points for ``num_breaks`` segments of ``min_points``.
    """
    t, y = _clean(t, y, t_min, t_max)
    n = t.size
    if min_points < 2:
        raise ValueError(f"min_points={min_points}: need at least 2 points per segment")
    need = max((num_breaks + 1) * min_points - num_breaks, 2 * num_breaks + 3)
    if n < need:
        raise ValueError(f"a {num_breaks}-break power-law fit needs at least {need} positive finite "
                         f"points, got {n}")
    grid_size = grid_size or (400 if num_breaks == 1 else 100)
    x, z = np.log(t), np.log(y)
    combos = _candidates(x, num_breaks, min_points, grid_size)
    if combos.shape[0] == 0:
        raise ValueError(f"no break placement leaves {min_points} points in each of "
                         f"{num_breaks + 1} segments ({n} points)")
    X = _designs(x, combos)
    Q, _ = np.linalg.qr(X)
    k = int(_best_combo(Q, z[:, None])[0])
    Xk = X[k]
    coef, *_ = np.linalg.lstsq(Xk, z, rcond=None)
    fitted = Xk @ coef
    res = z - fitted
    sse = float(res @ res)
    p = num_breaks + 2
    dof = n - p - num_breaks
    s2 = sse / dof if dof > 0 else np.nan
    cov = s2 * np.linalg.pinv(Xk.T @ Xk)
    # α_j = coef[1] + Σ_{i<j} coef[1 + i]: a lower-triangular map of coef[1:]
    Lmap = np.tril(np.ones((num_breaks + 1, num_breaks + 1)))
    alphas = Lmap @ coef[1:]
    se = np.sqrt(np.maximum(np.diag(Lmap @ cov[1:, 1:] @ Lmap.T), 0.0))
    q = student_t_quantile(0.5 + level / 2, dof) if dof > 0 else np.nan
    cis = tuple((float(a - q * e), float(a + q * e)) for a, e in zip(alphas, se))

    nan2 = (float("nan"), float("nan"))
    boot_cis = tuple(nan2 for _ in alphas)
    breaks_ci = tuple(nan2 for _ in range(num_breaks))
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        r = res * math.sqrt(n / dof) if dof > 0 else res
        Zb = fitted[:, None] + rng.choice(r, size=(n, bootstrap), replace=True)
        kb = _best_combo(Q, Zb)
        # coefficients of each replicate in its own best design
        coef_b = np.einsum("bpn,nb->bp", np.linalg.pinv(X[kb]), Zb)
        alpha_b = coef_b[:, 1:] @ Lmap.T
        pct = 100 * np.array([0.5 - level / 2, 0.5 + level / 2])
        boot_cis = tuple(tuple(float(v) for v in np.percentile(alpha_b[:, j], pct)) for j in range(len(alphas)))
        breaks_ci = tuple(tuple(float(v) for v in np.exp(np.percentile(combos[kb, j], pct)))
                          for j in range(num_breaks))

    xb = combos[k]
    edges = np.concatenate([[-np.inf], xb, [np.inf]])
    seg = tuple(int(np.sum((x >= edges[j]) & (x <= edges[j + 1]))) for j in range(num_breaks + 1))
    single = fit_power_law(t, y, level=level)
    bic = _bic(sse, n, 2 * num_breaks + 3)
    dbic = single.bic - bic
    ref = boot_cis if bootstrap > 0 else cis
    drop = bool(alphas[-1] < alphas[-2] and ref[-1][1] < ref[-2][0])
    return PiecewisePowerLawFit(
        breaks=tuple(float(math.exp(b)) for b in xb), breaks_ci=breaks_ci,
        exponents=tuple(float(a) for a in alphas), exponent_ci=cis,
        exponent_se=tuple(float(e) for e in se), bootstrap_exponent_ci=boot_cis,
        intercept=float(coef[0]), n=int(n), segment_points=seg, sse=sse, bic=bic, single=single,
        delta_bic=float(dbic), break_detected=bool(dbic > bic_threshold),
        exponent_drop_significant=drop)


def fit_broken_power_law(t, y, **kw) -> PiecewisePowerLawFit:
    """Two-segment power law (one break): :func:`fit_piecewise_power_law` with ``num_breaks=1``."""
    return fit_piecewise_power_law(t, y, num_breaks=1, **kw)


def select_power_law(t, y, *, max_breaks: int = 2, **kw) -> tuple[int, list]:
    """Fits 0..``max_breaks`` breaks and picks the number with the lowest BIC.

    Returns:
      ``(k, fits)`` with ``fits[0]`` the :class:`PowerLawFit` and ``fits[j]`` the
      ``j``-break :class:`PiecewisePowerLawFit` (None where too few points).
    """
    level = kw.get("level", 0.95)
    fits_ = [fit_power_law(t, y, level=level, t_min=kw.get("t_min"), t_max=kw.get("t_max"))]
    for j in range(1, max_breaks + 1):
        try:
            fits_.append(fit_piecewise_power_law(t, y, num_breaks=j, **kw))
        except ValueError:
            fits_.append(None)
    bics = [f.bic if f is not None else np.inf for f in fits_]
    return int(np.argmin(bics)), fits_


def _finite_by_time(t, y) -> tuple[np.ndarray, np.ndarray]:
    """``(t, y)`` as flat float arrays, rows with a NaN/Inf dropped, sorted by ``t``."""
    t, y = np.asarray(t, float).ravel(), np.asarray(y, float).ravel()
    ok = np.isfinite(t) & np.isfinite(y)
    order = np.argsort(t[ok])
    return t[ok][order], y[ok][order]


def plateau_time(t, err, *, rel_tol: float = 0.1, tail_fraction: float = 0.25) -> float:
    r"""When the error stops improving: the first t after which ``err`` stays within
    ``(1 + rel_tol)`` × its final level.

    The final level is the median of the last ``tail_fraction`` of the points (at least 3, or
    all points when there are fewer).

    Args:
      t: ``(n,)`` times (any order; NaN rows dropped).
      err: ``(n,)`` error rates.

    Returns:
      The plateau time (the last time when the curve never settles).
    """
    t, err = _finite_by_time(t, err)
    if t.size == 0:
        raise ValueError("plateau_time: no finite points")
    m = min(t.size, max(3, int(math.ceil(tail_fraction * t.size))))
    level = float(np.median(err[-m:]))
    above = err > (1.0 + rel_tol) * level
    if not np.any(above):
        return float(t[0])
    last_above = int(np.nonzero(above)[0][-1])
    return float(t[min(last_above + 1, t.size - 1)])


def onset_time(t, y, *, rel: float = 0.05) -> float:
    """First time at which ``y`` exceeds its initial (smallest-t) value by more than ``rel``
    (relative); NaN if it never does. Measures how long a quantity stays frozen (lazy regime)."""
    t, y = _finite_by_time(t, y)
    if t.size == 0:
        return float("nan")
    hit = np.nonzero(y > (1.0 + rel) * y[0])[0]
    return float(t[hit[0]]) if hit.size else float("nan")


def largest_jump(t, y) -> tuple[float, float]:
    """Largest increase of ``log y`` between consecutive samples → ``(t_after, factor)``,
    the time of the sample after the jump and ``y_after / y_before``."""
    t, y = np.asarray(t, float).ravel(), np.asarray(y, float).ravel()
    ok = np.isfinite(t) & np.isfinite(y) & (y > 0)
    t, y = t[ok], y[ok]
    if t.size < 2:
        return float("nan"), float("nan")
    order = np.argsort(t)
    t, y = t[order], y[order]
    d = np.diff(np.log(y))
    k = int(np.argmax(d))
    return float(t[k + 1]), float(np.exp(d[k]))


def __getattr__(name):
    if name == "BrokenPowerLawFit":     # the one-break name of PiecewisePowerLawFit (unused since)
        warnings.warn("tapjax.fits.BrokenPowerLawFit is deprecated: use PiecewisePowerLawFit",
                      DeprecationWarning, stacklevel=2)
        return PiecewisePowerLawFit
    raise AttributeError(f"module 'tapjax.fits' has no attribute {name!r}")


__all__ = ["BrokenPowerLawFit", "PiecewisePowerLawFit", "PowerLawFit", "fit_broken_power_law",
           "fit_piecewise_power_law", "fit_power_law", "largest_jump", "onset_time",
           "piecewise_power_law", "plateau_time", "select_power_law", "student_t_cdf",
           "student_t_quantile"]
