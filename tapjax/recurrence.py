r"""El-Mikkawy block-tridiagonal recurrence for :math:`I - M(\beta)` (paper eqs. 26–27).

Block Gaussian elimination of the block-tridiagonal matrix :math:`A = sI' - M(\beta)` with
:math:`I' = I` and shift :math:`s` (``A = (1 - shift) I - M``) gives the Schur-complement pivots

.. math::
    D_0 = \mathrm{diag}(a_0), \qquad
    D_k = \mathrm{diag}(a_k) - \beta^2\, W^{(k)\top} D_{k-1}^{-1} W^{(k)}, \quad k = 1..L,

with :math:`a_k = 1 - \mathrm{shift} + \beta^2 r_k` (:math:`r_k` from eq. 25). Then
:math:`\log\det A = \sum_k \log\det D_k` (eq. 27), :math:`A \succ 0` iff every
:math:`D_k \succ 0`, and by Sylvester's law of inertia (block :math:`LDL^\top`) the number of
negative eigenvalues of :math:`A` is the sum of those of the :math:`D_k`.

**Sign convention.** The paper's :math:`\chi_k` (eq. 26) equals :math:`-D_k`: :math:`\chi_k` is
*negative* definite when :math:`I - M` is positive definite. We use :math:`D_k` (positive
definite in the paramagnet) throughout.

**Scale.** Every entry point evaluates the recurrence on ``c / s`` at ``s β`` with the power of
two s = :func:`~tapjax.spin_model.coupling_scale` (the same matrix, eqs. 23–25), so huge or tiny
weights do not overflow :math:`\beta^2 r`; in the normal range this is bit-identical.

Cost: the first pivot is diagonal; each further step is one Cholesky (or ``eigh`` for the
inertia) of an :math:`N_{k-1} \times N_{k-1}` block and a matrix product, so the work grows like
:math:`L \cdot n^3`, not :math:`(L n)^3`. Runs of equal square blocks go through one
:func:`jax.lax.scan`; unequal first/last layers are handled by unrolled steps.
"""

from __future__ import annotations

import enum
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tapjax import linalg
from tapjax.errors import ConvergenceError, CouplingsError, NoCrossingError  # noqa: F401
from tapjax.linalg import RootMethod
from tapjax.spin_model import (LayeredCouplings, all_finite, as_couplings, check_couplings,
                               equal_block_runs,
                               coupling_scale, row_square_sums, scaled)


class RecurrenceResult(NamedTuple):
    """Accumulated over the pivots :math:`D_0..D_L`.

    Attributes:
      logdet: :math:`\\sum_k \\log|\\det D_k|` = log|det((1 − shift) I − M)|.
      num_negative: number of negative eigenvalues of ``(1 − shift) I − M`` (inertia; only
        meaningful with ``mode="inertia"``, else the count of non-PD pivots).
      positive_definite: whether every pivot is positive definite.
    """

    logdet: jax.Array
    num_negative: jax.Array
    positive_definite: jax.Array


def _step_cholesky(D, w, a, beta):
    """D_k from D_{k-1} via Cholesky; returns (D_k, logdet D_{k-1}, ok)."""
    L = jnp.linalg.cholesky(D)
    ok = jnp.all(jnp.isfinite(L))
    L = jnp.where(ok, L, jnp.eye(D.shape[0], dtype=D.dtype))
    Y = jax.scipy.linalg.solve_triangular(L, w, lower=True)
    Dn = jnp.diag(a) - beta ** 2 * (Y.T @ Y)
    logdet = 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diagonal(L))))
    return Dn, logdet, ok


def _step_eigh(D, w, a, beta):
    """D_k from D_{k-1} via eigh (works for indefinite D); returns (D_k, logdet, n_neg)."""
    lam, Q = jnp.linalg.eigh(D)
    Y = Q.T @ w
    Dn = jnp.diag(a) - beta ** 2 * (Y.T @ (Y / lam[:, None]))
    return Dn, jnp.sum(jnp.log(jnp.abs(lam))), jnp.sum(lam < 0)




def _eliminate(c: LayeredCouplings, beta, shift, mode: str):
    """Pivots D_0..D_{L-1} eliminated; returns ``(D_L, Σ_{k<L} log|det D_k|, #bad)``.

    ``#bad`` counts non-PD pivots (``mode="cholesky"``) or negative eigenvalues (``"inertia"``)
    among D_0..D_{L-1}.
    """
    r = row_square_sums(c)
    a = [1.0 - shift + beta ** 2 * rk for rk in r]
    step = _step_cholesky if mode == "cholesky" else _step_eigh
    count = (lambda flag: jnp.int32(1) - flag.astype(jnp.int32)) if mode == "cholesky" else \
        (lambda flag: flag.astype(jnp.int32))
    # k = 0: D_0 = diag(a_0) is diagonal, so D_1 needs no factorization.
    logdet = jnp.sum(jnp.log(jnp.abs(a[0])))
    neg = jnp.sum(a[0] <= 0).astype(jnp.int32)
    w1 = c.weights[0]
    D = jnp.diag(a[1]) - beta ** 2 * (w1.T @ (w1 / a[0][:, None]))
    for k0, k1 in equal_block_runs(c):
        if k1 - k0 == 1:
            D, ld, flag = step(D, c.weights[k0 - 1], a[k0], beta)
            logdet, neg = logdet + ld, neg + count(flag)
            continue

        def body(carry, xs):
            D, ld_acc, neg_acc = carry
            Dn, ld, flag = step(D, xs[0], xs[1], beta)
            return (Dn, ld_acc + ld, neg_acc + count(flag)), None

        (D, logdet, neg), _ = jax.lax.scan(body, (D, logdet, neg),
                                           (jnp.stack(c.weights[k0 - 1:k1 - 1]), jnp.stack(a[k0:k1])))
    return D, logdet, neg


def _recurrence(c: LayeredCouplings, beta, shift, mode: str) -> RecurrenceResult:
    dtype = c.dtype
    D, logdet, neg = _eliminate(c, beta, shift, mode)
    # last pivot D_L
    if mode == "cholesky":
        Lf = jnp.linalg.cholesky(D)
        ok = jnp.all(jnp.isfinite(Lf))
        logdet = logdet + jnp.where(ok, 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diagonal(Lf)))), jnp.nan)
        neg = neg + (1 - ok.astype(jnp.int32))
        return RecurrenceResult(logdet.astype(dtype), neg, neg == 0)
    lam = jnp.linalg.eigvalsh(D)
    logdet = logdet + jnp.sum(jnp.log(jnp.abs(lam)))
    neg = neg + jnp.sum(lam < 0)
    return RecurrenceResult(logdet.astype(dtype), neg, neg == 0)


def last_pivot_margin(c: LayeredCouplings, beta, shift=0.0) -> jax.Array:
    r"""λ_min of the last pivot :math:`D_L` of ``(1 − shift) I − M(β)``, NaN if an earlier pivot fails.

    With :math:`D_0..D_{L-1}` positive definite, the matrix is PD iff :math:`D_L` is and singular
    iff :math:`D_L` is (eq. 27), so this is a continuous function of β with the sign of
    λ_min(I − M(β)) − shift and a simple zero at the critical β — a root-finder can interpolate
    it, unlike the one-bit PD answer. By interlacing, the leading blocks (hence the earlier
    pivots) lose definiteness only at or after the full matrix, so NaN marks β past the crossing.
    Cost: one PD test plus an ``eigvalsh`` of the ``N_L × N_L`` last pivot.
    """
    c = as_couplings(c)
    return _last_pivot_margin_scaled(*scaled(c), _num(beta, c.dtype), _num(shift, c.dtype))


def _last_pivot_margin(c, beta, shift):
    D, _, bad = _eliminate(c, beta, shift, "cholesky")
    return jnp.where(bad == 0, jnp.linalg.eigvalsh(D)[0], jnp.nan)


# The public entry points scale the couplings in a program of their own (spin_model.scaled:
# compiled once per net and shared) and run these kernels on (c / s, s).
def _num(x, dtype):
    """A Python number as a ``dtype`` array where that is the default float dtype (others
    unchanged), so that ``0.5`` and ``np.float64(0.5)`` share one compiled kernel. The same
    values: a weak-typed Python number is computed in the default float dtype (with x64 on and
    float32 couplings that is wider than ``dtype``, so it stays a Python number there)."""
    if type(x) in (int, float) and jnp.dtype(dtype) == jnp.result_type(float):
        return jnp.asarray(x, dtype)
    return x


@jax.jit
def _last_pivot_margin_scaled(c, s, beta, shift):
    return _last_pivot_margin(c, jnp.asarray(beta, c.dtype) * s, shift)


@functools.partial(jax.jit, static_argnames=("mode",))
def _recurrence_scaled(c, s, beta, shift, mode) -> RecurrenceResult:
    return _recurrence(c, jnp.asarray(beta, c.dtype) * s, shift, mode)


def positive_definite(c: LayeredCouplings, beta, shift=0.0) -> jax.Array:
    """Whether ``(1 − shift) I − M(β)`` is positive definite (Cholesky on each pivot).

    Equivalently: λ_min(I − M(β)) > ``shift``. ``logdet`` of the same call is available via
    :func:`logdet`.
    """
    c = as_couplings(c)
    return _recurrence_scaled(*scaled(c), _num(beta, c.dtype), _num(shift, c.dtype),
                              "cholesky").positive_definite


def logdet(c: LayeredCouplings, beta, shift=0.0) -> jax.Array:
    """log|det((1 − shift) I − M(β))| by eq. 27 (eigh pivots: valid for indefinite matrices)."""
    return recurrence(c, beta, shift).logdet


def inertia(c: LayeredCouplings, beta, shift=0.0) -> jax.Array:
    """Number of eigenvalues of ``I − M(β)`` below ``shift`` (Sylvester's law on the pivots)."""
    return recurrence(c, beta, shift).num_negative


def recurrence(c: LayeredCouplings, beta, shift=0.0) -> RecurrenceResult:
    """Full :class:`RecurrenceResult` (logdet, inertia, PD flag) with eigh pivots."""
    c = as_couplings(c)
    return _recurrence_scaled(*scaled(c), _num(beta, c.dtype), _num(shift, c.dtype), "inertia")


def least_eigenvalue_bisect(c: LayeredCouplings, beta, lo: float, hi: float,
                            tol: float = 1e-6) -> float:
    """λ_min(I − M(β)) bracketed by bisection (:func:`tapjax.linalg.bisect`) on the PD test
    of ``(1 − s) I − M(β)`` over the shift s (no eigh of the full matrix)."""
    c = as_couplings(c, where="least_eigenvalue_bisect")
    f = jax.jit(lambda s: positive_definite(c, beta, s))
    lo, hi = linalg.bisect(f, lo, hi, tol, max_iter=10_000)
    return 0.5 * (lo + hi)


class SearchStatus(enum.IntEnum):
    """Outcome codes of :func:`critical_beta_search` (``CriticalBeta.status``)."""

    OK = 0            #: crossing bracketed to ``rtol``
    NO_CROSSING = 1   #: no scanned β lost positive definiteness (``beta`` is meaningless)
    NONFINITE = 2     #: NaN/Inf couplings or a non-representable result (``beta`` is NaN)
    MAX_ITER = 3      #: crossed, but ``max_iter`` refinement tests did not reach ``rtol``
    OUT_OF_RANGE = 4  #: no crossing below the largest β at which β²r is representable, and the
    #: scan would have gone beyond it (``beta_max`` far too large for the weights)


class CriticalBeta(NamedTuple):
    """Result of :func:`critical_beta_search`.

    Attributes:
      beta: upper end of the final bracket (the first β found not PD), to relative ``rtol``.
      lower: lower end of the final bracket (PD).
      crossed: whether any scanned β lost positive definiteness (else ``beta`` is meaningless).
      num_tests: recurrence evaluations spent (each one PD test of the whole chain).
      status: a :class:`SearchStatus` code (int32): why ``beta`` is or is not a result.
    """

    beta: jax.Array
    lower: jax.Array
    crossed: jax.Array
    num_tests: jax.Array
    status: jax.Array = None


class _ScanState(NamedTuple):
    """Early-exit scan over the β grid (bracketing phase)."""

    i: jax.Array          # next grid index
    lo: jax.Array         # last PD β (starts at 0)
    g_lo: jax.Array       # margin at lo
    prev: jax.Array       # PD point before lo (for the secant from the PD side)
    g_prev: jax.Array     # margin at prev
    hi: jax.Array         # first non-PD β (beta_max until found)
    g_hi: jax.Array       # margin at hi (NaN: an earlier pivot failed)
    found: jax.Array      # a non-PD β was met
    num_tests: jax.Array  # margin evaluations so far


class RefineState(NamedTuple):
    """Bracket of a crossing and its refinement (secant / Illinois / bisection), shared by
    :func:`critical_beta_search` and :func:`tapjax.levels.critical_beta_smooth`.

    The margin ``g`` is positive on the PD side (``lo``) and ≤ 0 or NaN on the failing side (``hi``).

    Attributes:
      lo, g_lo: last PD β and its margin.
      prev, g_prev: the PD point before ``lo`` (for the secant from the PD side).
      hi, g_hi: first failing β and its margin (NaN: an earlier pivot failed).
      w_lo, w_hi: Illinois-weighted margins at ``lo`` / ``hi``.
      side: +1 last test PD (lo moved), −1 not PD (hi moved), 0 none yet.
      width1, width2: bracket width before the last step / two steps ago.
      found: a failing β was met (the bracket exists).
      num_tests: margin evaluations so far.
    """

    lo: jax.Array
    g_lo: jax.Array
    prev: jax.Array
    g_prev: jax.Array
    hi: jax.Array
    g_hi: jax.Array
    w_lo: jax.Array
    w_hi: jax.Array
    side: jax.Array
    width1: jax.Array
    width2: jax.Array
    found: jax.Array
    num_tests: jax.Array

    def tested(self, x, g) -> "RefineState":
        """The bracket after testing β = ``x`` with margin ``g`` (PD iff g > 0); weights untouched."""
        pd = g > 0
        return self._replace(lo=jnp.where(pd, x, self.lo), g_lo=jnp.where(pd, g, self.g_lo),
                             prev=jnp.where(pd, self.lo, self.prev),
                             g_prev=jnp.where(pd, self.g_lo, self.g_prev),
                             hi=jnp.where(pd, self.hi, x), g_hi=jnp.where(pd, self.g_hi, g),
                             num_tests=self.num_tests + 1)


_RefineState = RefineState  # the historical private name


def refine_point(s: RefineState, rtol, *, method: str = "secant", step_down: bool = True,
                 nan_side_guard: bool = True) -> jax.Array:
    r"""The next β to test in a bracketed crossing (the first half of :func:`refine_step`).

    ``method="secant"``: Illinois regula falsi through the weighted end margins, or the secant
    through the last two PD margins while ``g_hi`` is NaN, aimed ``rtol/4·hi`` past the estimate
    on the side of the last move (so that an accurate estimate closes the bracket), clipped
    ``rtol/4·hi`` inside; bisection when the candidate is not finite, leaves the bracket, or the
    bracket did not halve in two steps. ``method="bisect"``: always bisection.

    Args:
      s: the bracket; rtol: relative target width.
      step_down: while no PD point above β = 0 is known (``lo ≤ 0``) the fallback point is
        ``hi/64`` (geometric descent) instead of the midpoint (:func:`critical_beta_search`).
      nan_side_guard: right after a failing test with ``g_hi`` NaN, bisect instead of the
        PD-side secant (:func:`critical_beta_search`, whose last-pivot margin is NaN far past the
        crossing). :func:`tapjax.levels.critical_beta_smooth` uses neither (its margin is finite).
    """
    lo, hi = s.lo, s.hi
    mid = jnp.where(lo > 0, 0.5 * (lo + hi), hi * (1.0 / 64)) if step_down else 0.5 * (lo + hi)
    if method == "bisect":
        return mid
    delta = 0.25 * rtol * hi
    rf = hi - s.w_hi * (hi - lo) / (s.w_hi - s.w_lo)            # Illinois regula falsi
    ex = lo - s.g_lo * (lo - s.prev) / (s.g_lo - s.g_prev)     # secant from the PD side
    use_rf = jnp.isfinite(s.g_hi)
    cand = jnp.where(use_rf, rf, ex) + delta * s.side
    stalled = (s.width2 > 0) & (hi - lo > 0.5 * s.width2)
    ok = jnp.isfinite(cand) & (cand > lo) & (cand < hi) & ~stalled
    if nan_side_guard:  # after a NaN (earlier pivot failed, β far past the crossing) bisect once
        ok = ok & (use_rf | (s.side >= 0))
    return jnp.where(ok, jnp.clip(cand, lo + delta, hi - delta), mid)


def refine_update(s: RefineState, x, g) -> RefineState:
    """The bracket after testing β = ``x`` with margin ``g`` (the second half of
    :func:`refine_step`). Illinois: the weight of an end that stays put twice in a row is halved."""
    pd = g > 0
    one = jnp.ones((), s.side.dtype)
    w_lo = jnp.where(pd, g, jnp.where(s.side < 0, 0.5 * s.w_lo, s.w_lo))
    w_hi = jnp.where(pd, jnp.where(s.side > 0, 0.5 * s.w_hi, s.w_hi), g)
    return s.tested(x, g)._replace(w_lo=w_lo, w_hi=w_hi, side=jnp.where(pd, one, -one),
                                   width1=s.hi - s.lo, width2=s.width1)


def refine_step(s: RefineState, margin, rtol, *, method: str = "secant",
                step_down: bool = True, nan_side_guard: bool = True) -> RefineState:
    r"""One refinement test of a bracketed crossing: :func:`refine_point`, one ``margin``
    evaluation (β → g, continuous, > 0 iff PD; NaN allowed past the crossing), then
    :func:`refine_update`. The T_c searches run the two halves inside
    :func:`tapjax.linalg.scan_then_refine` (one margin in the program)."""
    x = refine_point(s, rtol, method=method, step_down=step_down, nan_side_guard=nan_side_guard)
    return refine_update(s, x, margin(x))


def critical_beta_search(c: LayeredCouplings, threshold, beta_max, rtol=1e-4, hint=None, *,
                         num_scan: int = 16, max_iter: int = 60,
                         method: RootMethod = "secant") -> CriticalBeta:
    r"""First β in (0, ``beta_max``] with λ_min(I − M(β)) ≤ ``threshold``; jittable, traceable.

    1. **Bracket.** PD tests of :math:`(1 - \lambda^*) I - M(\beta)` on the uniform grid
       ``beta_max·i/num_scan`` (plus ``hint``, if given, e.g. the reference β*), in increasing
       order, stopping at the first failure. λ_min(β) is not monotone (it rises again past its
       minimum), so the scan is what makes this the *first* crossing; a dip narrower than the
       spacing can be missed — put the expected β in ``hint``.
    2. **Refine** to ``hi − lo ≤ rtol·hi``. ``method="secant"``: Illinois regula falsi on the
       last-pivot margin (:func:`last_pivot_margin`), with a secant step from the PD side while
       the far end is NaN (an earlier pivot failed), each step aimed a quarter-``rtol`` past the
       estimate so that an accurate one closes the bracket; bisection whenever a step leaves the
       bracket or the bracket did not halve in two steps. ``method="bisect"``: bisection on the
       PD test (≈ log2(spacing / (rtol β)) tests). Where a step would bisect while no PD point
       above β = 0 is known (the crossing lies below the first scan point, e.g. ``beta_max``
       far too large for the weights), it steps down geometrically to ``hi/64`` instead.

    The search runs on the normalized couplings ``c / s`` at ``s β`` (s a power of two, see the
    module docstring) and maps the bracket back, so weights of any finite magnitude work.

    Args:
      c: couplings (or a list of weight matrices; half floats computed in float32);
        threshold: λ*; beta_max: scan range; rtol: relative precision;
        hint: an extra scan point (scalar; NaN or out of range = none) or None.
      num_scan: scan points; max_iter: cap on refinement tests; method: a
        :data:`tapjax.linalg.RootMethod` (``"secant"``, ``"bisect"`` or ``"smooth"``, which
        delegates to :func:`tapjax.levels.critical_beta_smooth`).

    Returns:
      :class:`CriticalBeta` of arrays (usable under ``jit`` and ``lax.map``). NaN/Inf couplings
      give ``crossed = False``, ``beta = lower = NaN``, ``status = NONFINITE`` ("no result").
    """
    linalg.check_root_method(method)
    c = as_couplings(c, where="critical_beta_search")
    if method == "smooth":  # the same contract, on the smooth margin (tapjax.levels)
        from tapjax.levels import critical_beta_smooth  # pylint: disable=import-outside-toplevel
        return critical_beta_smooth(c, threshold, beta_max, rtol, hint, num_scan=num_scan,
                                    max_iter=max_iter)
    dt = c.dtype
    return _critical_beta_search(*scaled(c), _num(threshold, dt), _num(beta_max, dt), _num(rtol, dt),
                                 None if hint is None else _num(hint, dt), num_scan=num_scan,
                                 max_iter=max_iter, method=method)


@functools.partial(jax.jit, static_argnames=("num_scan", "max_iter", "method"))
def _critical_beta_search(c: LayeredCouplings, scale, threshold, beta_max, rtol, hint, *,
                          num_scan: int, max_iter: int, method: RootMethod) -> CriticalBeta:
    """:func:`critical_beta_search` on ``c = W / scale`` (:func:`~tapjax.spin_model.scaled`)."""
    dtype = c.dtype
    finite = all_finite(c)   # the same as of W: s is 1 for non-finite W
    # beyond beta_lim, β²r (eq. 25) overflows the dtype and the PD test means nothing
    r_max = jnp.max(jnp.stack([jnp.max(r) for r in row_square_sums(c)]))
    beta_lim = jnp.sqrt(jnp.finfo(dtype).max / (16.0 * (1.0 + r_max)))
    thr = jnp.asarray(threshold, dtype)
    beta_max = jnp.asarray(beta_max, dtype) * scale
    rtol = jnp.asarray(rtol, dtype)
    grid = beta_max * jnp.arange(1, num_scan + 1, dtype=dtype) / num_scan
    if hint is not None:
        h = jnp.asarray(hint, dtype) * scale
        h = jnp.where(jnp.isfinite(h) & (h > 0) & (h < beta_max), h, beta_max)  # else a repeat
        grid = jnp.sort(jnp.concatenate([grid, h[None]]))
    if method == "secant":
        margin = lambda b: _last_pivot_margin(c, b, thr)
    else:  # bisection needs only the sign: the plain PD test (a Cholesky, no eigvalsh, per β)
        margin = lambda b: jnp.where(_recurrence(c, b, thr, "cholesky").positive_definite,
                                     1.0, -1.0).astype(dtype)
    one, nan, zero = jnp.ones((), dtype), jnp.full((), jnp.nan, dtype), jnp.zeros((), dtype)

    # ---- 1. early-exit scan over the grid, 2. refinement: one loop, one margin in the program
    def scan_point(s: _ScanState):   # clamped: also evaluated once the scan has ended
        return grid[jnp.minimum(s.i, grid.shape[0] - 1)]

    def scan_cond(s: _ScanState):
        return (~s.found) & (s.i < grid.shape[0]) & finite & (scan_point(s) <= beta_lim)

    def scan_update(s: _ScanState, x, g) -> _ScanState:
        repeat = x <= s.lo
        g = jnp.where(repeat, s.g_lo, g)
        pd = g > 0
        fresh = pd & ~repeat
        return _ScanState(
            i=s.i + 1, lo=jnp.where(pd, x, s.lo), g_lo=jnp.where(pd, g, s.g_lo),
            prev=jnp.where(fresh, s.lo, s.prev), g_prev=jnp.where(fresh, s.g_lo, s.g_prev),
            hi=jnp.where(pd, s.hi, x), g_hi=jnp.where(pd, s.g_hi, g), found=~pd,
            num_tests=s.num_tests + 1 - repeat.astype(jnp.int32))

    def to_refine(sc: _ScanState) -> RefineState:
        return RefineState(lo=sc.lo, g_lo=sc.g_lo, prev=sc.prev, g_prev=sc.g_prev, hi=sc.hi,
                           g_hi=sc.g_hi, w_lo=sc.g_lo, w_hi=sc.g_hi, side=zero, width1=zero,
                           width2=zero, found=sc.found, num_tests=sc.num_tests)

    def refine_cond(sc: _ScanState, s: RefineState):
        return sc.found & (s.hi - s.lo > rtol * s.hi) & (s.num_tests < sc.num_tests + max_iter)

    # at β = 0 every pivot is (1 − λ*) I: the margin's exact value there
    s0 = _ScanState(i=0, lo=zero, g_lo=one - thr, prev=zero, g_prev=one - thr, hi=beta_max,
                    g_hi=nan, found=jnp.asarray(False), num_tests=jnp.int32(0))
    sc, s = linalg.scan_then_refine(
        margin, s0, scan_cond=scan_cond, scan_point=scan_point,
        scan_update=scan_update, to_refine=to_refine, refine_cond=refine_cond,
        refine_point=lambda s: refine_point(s, rtol, method=method), refine_update=refine_update)
    beta, lower = s.hi / scale, s.lo / scale
    ok_out = finite & jnp.isfinite(beta)
    converged = s.hi - s.lo <= rtol * s.hi
    no_cross = jnp.where(sc.i < grid.shape[0], SearchStatus.OUT_OF_RANGE, SearchStatus.NO_CROSSING)
    status = jnp.where(~ok_out, SearchStatus.NONFINITE,
                       jnp.where(~sc.found, no_cross,
                                 jnp.where(converged, SearchStatus.OK, SearchStatus.MAX_ITER)))
    return CriticalBeta(jnp.where(finite, beta, nan), jnp.where(finite, lower, nan),
                        sc.found & finite, s.num_tests, status.astype(jnp.int32))


def critical_beta(c: LayeredCouplings, threshold: float, beta_max: float, rtol: float = 1e-4,
                  hint: float | None = None, num_scan: int = 16, max_iter: int = 60,
                  method: RootMethod = "secant") -> float:
    r"""First β in (0, ``beta_max``] with λ_min(I − M(β)) ≤ ``threshold`` (T_c = 1/β), as a float.

    See :func:`critical_beta_search` for the algorithm and the arguments. ``c`` may be a list
    of weight matrices; float16/bfloat16 are computed in float32.

    Raises:
      NoCrossingError: no scanned β makes the matrix lose positive definiteness.
      CouplingsError: NaN/Inf couplings or a subnormal largest coupling (names the block).
      ConvergenceError: ``max_iter`` tests did not reach ``rtol`` (nothing is returned).
      TypeError: ``c`` is not couplings. ValueError: bad scalar arguments.
    """
    c = check_couplings(c, "critical_beta")
    for name, v in (("threshold", threshold), ("beta_max", beta_max), ("rtol", rtol)):
        if not np.isfinite(float(v)):
            raise ValueError(f"critical_beta: {name}={v!r} is not finite")
    if not float(beta_max) > 0 or not 0 < float(rtol) < 1:
        raise ValueError(f"critical_beta: need beta_max > 0 and 0 < rtol < 1 (got {beta_max!r}, {rtol!r})")
    if num_scan < 1:
        raise ValueError(f"critical_beta: num_scan={num_scan} must be ≥ 1")
    r = critical_beta_search(c, threshold, beta_max, rtol, hint, num_scan=num_scan,
                             max_iter=max_iter, method=method)
    status = SearchStatus(int(r.status))
    if status == SearchStatus.NONFINITE:
        raise CouplingsError(f"critical_beta: the search gave a non-finite β (bracket "
                             f"[{float(r.lower):.6g}, {float(r.beta):.6g}]); the couplings' scale is "
                             "outside the dtype's range — use float64")
    wmax = float(coupling_scale(c))  # max|w| ∈ [s/2, s)
    if status == SearchStatus.OUT_OF_RANGE:
        raise NoCrossingError(
            f"critical_beta: no crossing up to the largest β at which β²·Σw² is representable in "
            f"{jnp.dtype(c.dtype).name}, and beta_max={beta_max:g} lies beyond it (largest |w| ≈ "
            f"{wmax:.3g}); lower beta_max towards 1/max|w| ≈ {1.0 / wmax:.3g}")
    if status == SearchStatus.NO_CROSSING:
        where = f"scan of {num_scan} points" + ("" if hint is None else f" and β = {float(hint):.6g}")
        step = float(beta_max) / num_scan * wmax
        far = "" if step < 1.0 else (
            f"; the first scan point β = {float(beta_max) / num_scan:.3g} is already {step:.3g}/max|w| "
            "and may step over the whole dip — lower beta_max")
        raise NoCrossingError(
            f"λ_min(I − M(β)) stays above the threshold {threshold:.6g} for all β ≤ {beta_max:g} "
            f"({where}); raise beta_max or num_scan, or pass hint{far}")
    if status == SearchStatus.MAX_ITER:
        raise ConvergenceError(
            f"critical_beta: {max_iter} refinement tests left the bracket [{float(r.lower):.6g}, "
            f"{float(r.beta):.6g}] wider than rtol={rtol:g}; raise max_iter, or lower beta_max "
            f"(={beta_max:g}) towards the expected β_c (typically of order 1/max|w| ≈ "
            f"{1.0 / wmax:.3g} and below)")
    return float(r.beta)


def critical_beta_bisect(c: LayeredCouplings, threshold: float, beta_max: float,
                         rtol: float = 1e-4, num_scan: int = 32, max_iter: int = 60) -> float:
    """:func:`critical_beta` with ``method="bisect"`` and a 32-point scan (the original path)."""
    return critical_beta(c, threshold, beta_max, rtol, num_scan=num_scan, max_iter=max_iter,
                         method="bisect")


__all__ = ["CriticalBeta", "RecurrenceResult", "RefineState", "SearchStatus", "critical_beta",
           "critical_beta_bisect", "critical_beta_search", "inertia", "last_pivot_margin",
           "least_eigenvalue_bisect", "logdet", "positive_definite", "recurrence", "refine_point", "refine_step",
           "refine_update"]
