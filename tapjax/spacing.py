r"""Level-spacing statistics of a spectrum (paper section 3.3; issue 16 items 3–4).

Three families of readings of the levels :math:`\lambda_1 \le \dots \le \lambda_N` of a
symmetric matrix (the bond matrix J, or :math:`I - M(\beta)` at :math:`T_c`), with spacings
:math:`s_n = \lambda_{n+1} - \lambda_n`:

* **Spacing ratio** (Oganesyan & Huse 2007; Atas et al. 2013), which needs no unfolding:

  .. math::
      r_n = \frac{\min(s_n, s_{n+1})}{\max(s_n, s_{n+1})}, \qquad
      \langle r\rangle_{\rm Poisson} = 2\ln 2 - 1 \approx 0.3863, \qquad
      \langle r\rangle_{\rm GOE} \approx 0.5307 .

  :func:`spacing_ratios`, :func:`mean_spacing_ratio` (whole spectrum or a window of the k
  levels at one edge, with its standard error).

* **Unfolded spacings near an edge** (:func:`unfold_edge`). The smooth integrated density of
  states :math:`\bar N(\lambda)` near the edge is fitted to the staircase of the lowest ``fit``
  levels, :math:`\bar N(\lambda_i) \approx i - \tfrac12`, and the levels are mapped to
  :math:`\xi_i = \bar N(\lambda_i)`, in which the local mean spacing is 1. With
  ``edge_form="soft"`` the fit is :math:`\bar N(\lambda) = P(\lambda)^{3/2}` with P a
  polynomial (degree ``degree``), fitted as :math:`P(\lambda_i) \approx (i - \tfrac12)^{2/3}`:
  the leading soft-edge law :math:`\bar N \propto (\lambda - a)^{3/2}` of the semicircle and
  Marchenko–Pastur edges is then represented exactly; ``"polynomial"`` fits
  :math:`\bar N = P(\lambda)` directly.

* **Normalized first level spacing** :math:`s_0/s_{\rm typ}` under two definitions of
  :math:`s_{\rm typ}` (:func:`first_spacing_readings`):

  (a) ``median``: :math:`s_{\rm typ}` = median spacing of the whole spectrum — the paper's words
      ("which we define as the median level spacing") and the default of
      :func:`tapjax.spectra.first_level_spacing`;
  (b) ``edge``: :math:`s_{\rm typ}` = mean spacing of the lowest k levels in unfolded units, i.e.
      :math:`s_0/s_{\rm typ} = (\xi_2 - \xi_1) / [(\xi_k - \xi_1)/(k-1)]`: the first spacing
      in units of the local mean spacing at the edge.

  Reading (c) of issue 16 (the spectrum of :math:`I - M` at :math:`T_c` vs at a fixed β) is a
  choice of the matrix, not of the statistic: see ``experiments/levels_compare.py``.

Exactly degenerate levels (the kernel of the bipartite J, of dimension at least
:math:`|N_{\rm even} - N_{\rm odd}|`) make :math:`r_n` undefined (0/0) and are an error here;
:func:`positive_levels` keeps the strictly positive half of a spectrum symmetric about 0.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np

R_POISSON = 2.0 * math.log(2.0) - 1.0
"""⟨r⟩ of uncorrelated (Poisson) levels, 2 ln 2 − 1 ≈ 0.3863 (exact)."""
R_GOE = 0.5307
"""⟨r⟩ of large GOE matrices, 0.5307(1) (numerical, Atas et al. 2013; the 3×3 surmise gives 4 − 2√3 ≈ 0.5359)."""

Edge = Literal["lower", "upper"]
EdgeForm = Literal["soft", "polynomial"]


def _levels(eigenvalues, name: str = "eigenvalues", min_size: int = 3) -> np.ndarray:
    ev = np.asarray(eigenvalues, float).ravel()
    if ev.size < min_size:
        raise ValueError(f"{name}: need at least {min_size} levels, got {ev.size}")
    if not np.all(np.isfinite(ev)):
        raise ValueError(f"{name}: {int(np.sum(~np.isfinite(ev)))} non-finite levels")
    return np.sort(ev)


def edge_window(eigenvalues, k: int | None = None, edge: Edge = "lower") -> np.ndarray:
    """The ``k`` smallest (``edge="lower"``) or largest (``"upper"``) levels, ascending away from
    the edge (for ``"upper"``: the levels of −λ, so the edge level comes first). ``k=None``: all."""
    ev = _levels(eigenvalues)
    if edge not in ("lower", "upper"):
        raise ValueError(f"edge={edge!r}: use 'lower' or 'upper'")
    if edge == "upper":
        ev = -ev[::-1]
    if k is None:
        return ev
    if k < 3 or k > ev.size:
        raise ValueError(f"k={k}: the window needs 3 <= k <= {ev.size} (the number of levels)")
    return ev[:k]


def spacing_ratios(eigenvalues) -> np.ndarray:
    r"""``(N − 2,)`` ratios :math:`r_n = \min(s_n, s_{n+1}) / \max(s_n, s_{n+1})` of the sorted levels.

    Raises:
      ValueError: two consecutive zero spacings (a triply degenerate level), where r is 0/0.
    """
    s = np.diff(_levels(eigenvalues))
    lo, hi = np.minimum(s[:-1], s[1:]), np.maximum(s[:-1], s[1:])
    if np.any(hi <= 0):
        raise ValueError(f"{int(np.sum(hi <= 0))} spacing ratios are 0/0 (degenerate levels); remove "
                         "the exact degeneracies first (e.g. spacing.positive_levels for the kernel of J)")
    return lo / hi


class SpacingRatio(NamedTuple):
    """⟨r⟩ of a set of levels.

    Attributes:
      mean: ⟨r⟩.
      stderr: standard error of the mean, std(r)/√n (neighbouring r_n are weakly correlated,
        so this is a slight underestimate).
      n: number of ratios (levels − 2).
    """

    mean: float
    stderr: float
    n: int


def mean_spacing_ratio(eigenvalues, k: int | None = None, edge: Edge = "lower") -> SpacingRatio:
    """⟨r⟩ over the whole spectrum (``k=None``) or the ``k`` levels at ``edge``."""
    r = spacing_ratios(edge_window(eigenvalues, k, edge))
    se = float(np.std(r, ddof=1) / math.sqrt(r.size)) if r.size > 1 else float("nan")
    return SpacingRatio(mean=float(np.mean(r)), stderr=se, n=int(r.size))


def positive_levels(eigenvalues, rtol: float = 1e-5) -> np.ndarray:
    r"""Levels above ``rtol · max|λ|``: the positive half of a spectrum symmetric about 0 (the
    bipartite bond matrix J), without its (numerically) zero modes."""
    ev = _levels(eigenvalues)
    out = ev[ev > rtol * np.max(np.abs(ev))]
    if out.size < 3:
        raise ValueError(f"only {out.size} levels above {rtol} x max|lambda|; need at least 3")
    return out


class Unfolding(NamedTuple):
    r"""Levels near an edge mapped to unit local mean spacing (:func:`unfold_edge`).

    Attributes:
      levels: ``(k,)`` the raw levels, edge first (for ``edge="upper"`` the values of −λ).
      unfolded: ``(k,)`` :math:`\xi_i = \bar N(\lambda_i)` (mean spacing ≈ 1 by construction).
      spacings: ``(k − 1,)`` unfolded spacings :math:`\xi_{i+1} - \xi_i`.
      mean_spacing: mean unfolded spacing of the k levels, :math:`(\xi_k - \xi_1)/(k-1)`.
      raw_mean_spacing: the same in raw units, :math:`(\lambda_k - \lambda_1)/(k-1)`.
      coefficients: polynomial coefficients (highest degree first, in the variable
        :math:`(\lambda - \lambda_1)/(\lambda_{\rm fit} - \lambda_1)`).
      monotone: False when the fitted :math:`\bar N` decreases somewhere on the window (then the
        unfolding is not a valid map and the spacings are not to be trusted).
      below_edge: levels of the window that lie at or below the fitted soft edge
        (:math:`P(\lambda_i) \le 0`, mapped to :math:`\xi_i = 0`): levels split off the bulk's
        edge law; always 0 for ``edge_form="polynomial"``.
    """

    levels: np.ndarray
    unfolded: np.ndarray
    spacings: np.ndarray
    mean_spacing: float
    raw_mean_spacing: float
    coefficients: np.ndarray
    monotone: bool
    below_edge: int = 0


def unfold_edge(eigenvalues, k: int = 50, *, fit: int | None = None, degree: int = 3,
                edge: Edge = "lower", edge_form: EdgeForm = "soft") -> Unfolding:
    r"""Unfolds the ``k`` levels at ``edge`` by a smooth fit of the integrated density of states.

    The staircase :math:`N(\lambda_i) = i - \tfrac12` (i = 1 … ``fit``, default ``2k`` capped at
    the number of levels) is fitted by least squares, :math:`\bar N = P^{3/2}` (``"soft"``:
    :math:`P(\lambda_i) \approx (i - \frac12)^{2/3}`) or :math:`\bar N = P` (``"polynomial"``),
    P of degree ``degree``; the unfolded levels are :math:`\xi_i = \bar N(\lambda_i)`.

    Args:
      eigenvalues: ``(N,)`` levels (any order).
      k: levels to unfold and measure (the window), ``3 <= k <= fit``.
      fit: levels used for the fit (a wider window than ``k`` steadies the edge fit).
      degree: polynomial degree (``fit`` must exceed ``degree + 1``).
      edge: ``"lower"`` (smallest levels, as for I − M) or ``"upper"`` (largest, as for J).
      edge_form: ``"soft"`` or ``"polynomial"`` (see above).

    Returns:
      :class:`Unfolding`.
    """
    ev = edge_window(eigenvalues, None, edge)
    fit = min(2 * k, ev.size) if fit is None else fit
    if not 3 <= k <= fit <= ev.size:
        raise ValueError(f"unfold_edge: need 3 <= k ({k}) <= fit ({fit}) <= number of levels ({ev.size})")
    if fit <= degree + 1:
        raise ValueError(f"unfold_edge: fit={fit} levels cannot determine a degree-{degree} polynomial; "
                         "use more levels or a lower degree")
    if edge_form not in ("soft", "polynomial"):
        raise ValueError(f"edge_form={edge_form!r}: use 'soft' or 'polynomial'")
    lam = ev[:fit]
    scale = lam[-1] - lam[0]
    if scale <= 0:
        raise ValueError("unfold_edge: all levels in the fit window are equal")
    x = (lam - lam[0]) / scale
    staircase = np.arange(1, fit + 1) - 0.5
    target = staircase ** (2.0 / 3.0) if edge_form == "soft" else staircase
    coef = np.polyfit(x, target, degree)
    p = np.polyval(coef, x)
    nbar = np.maximum(p, 0.0) ** 1.5 if edge_form == "soft" else p
    xi = nbar[:k]
    grid = np.linspace(0.0, x[k - 1], 512)
    pg = np.polyval(coef, grid)
    ng = np.maximum(pg, 0.0) ** 1.5 if edge_form == "soft" else pg
    monotone = bool(np.all(np.diff(ng) >= -1e-9 * max(1.0, float(np.abs(ng).max()))))
    return Unfolding(levels=ev[:k], unfolded=xi, spacings=np.diff(xi),
                     mean_spacing=float((xi[-1] - xi[0]) / (k - 1)),
                     raw_mean_spacing=float((ev[k - 1] - ev[0]) / (k - 1)),
                     coefficients=coef, monotone=monotone,
                     below_edge=int(np.sum(p[:k] <= 0.0)) if edge_form == "soft" else 0)


class FirstSpacing(NamedTuple):
    r"""The normalized first level spacing under the readings of issue 16.

    Attributes:
      s0: :math:`\lambda_2 - \lambda_1` (raw units; at ``edge="upper"``, the top gap).
      median: reading (a), :math:`s_0` / median spacing of the whole spectrum.
      edge_raw: :math:`s_0` / raw mean spacing of the k edge levels, :math:`(\lambda_k - \lambda_1)/(k-1)`.
      edge_unfolded: reading (b), :math:`(\xi_2 - \xi_1)` / mean unfolded spacing of the k levels;
        NaN when :math:`\lambda_1` lies below the fitted soft edge (then :math:`\xi_1` is
        clamped to 0 and the unfolded first spacing has no meaning) or the map is not monotone.
      monotone: whether the unfolding of (b) was a valid (monotone) map.
      below_edge: levels below the fitted soft edge (:attr:`Unfolding.below_edge`).
    """

    s0: float
    median: float
    edge_raw: float
    edge_unfolded: float
    monotone: bool
    below_edge: int = 0


def first_spacing_readings(eigenvalues, k: int = 50, *, fit: int | None = None, degree: int = 3,
                           edge: Edge = "lower", edge_form: EdgeForm = "soft") -> FirstSpacing:
    """s0/s_typ with s_typ = median spacing (a) and = unfolded mean spacing of the k edge levels (b)."""
    ev = edge_window(eigenvalues, None, edge)
    gaps = np.diff(ev)
    med = float(np.median(gaps))
    if med <= 0:
        raise ValueError("median level spacing is zero (degenerate spectrum); s0/s_typ undefined")
    u = unfold_edge(ev, k, fit=fit, degree=degree, edge="lower", edge_form=edge_form)
    s0 = float(gaps[0])
    valid = u.monotone and u.mean_spacing > 0 and u.unfolded[0] > 0
    return FirstSpacing(s0=s0, median=s0 / med, edge_raw=s0 / u.raw_mean_spacing,
                        edge_unfolded=float(u.spacings[0] / u.mean_spacing) if valid else float("nan"),
                        monotone=u.monotone, below_edge=u.below_edge)


__all__ = ["Edge", "EdgeForm", "FirstSpacing", "R_GOE", "R_POISSON", "SpacingRatio", "Unfolding",
           "edge_window", "first_spacing_readings", "mean_spacing_ratio", "positive_levels",
           "spacing_ratios", "unfold_edge"]
