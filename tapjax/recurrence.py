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

Cost: the first pivot is diagonal; each further step is one Cholesky (or ``eigh`` for the
inertia) of an :math:`N_{k-1} \times N_{k-1}` block and a matrix product, so the work grows like
:math:`L \cdot n^3`, not :math:`(L n)^3`. Runs of equal square blocks go through one
:func:`jax.lax.scan`; unequal first/last layers are handled by unrolled steps.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp


from tapjax.spin_model import LayeredCouplings, row_square_sums
from tapjax.tap import NoCrossingError


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


def _segments(c: LayeredCouplings) -> list[tuple[int, int]]:
    """Groups k = 2..L into maximal runs [k0, k1) of equal square blocks (scan-able)."""
    segs, k, L = [], 2, c.num_layers
    while k <= L:
        shape = c.weights[k - 1].shape
        k1 = k + 1
        if shape[0] == shape[1]:
            while k1 <= L and c.weights[k1 - 1].shape == shape:
                k1 += 1
        segs.append((k, k1))
        k = k1
    return segs


def _recurrence(c: LayeredCouplings, beta, shift, mode: str) -> RecurrenceResult:
    r = row_square_sums(c)
    dtype = c.dtype
    a = [1.0 - shift + beta ** 2 * rk for rk in r]
    step = _step_cholesky if mode == "cholesky" else _step_eigh
    # k = 0: D_0 = diag(a_0) is diagonal, so D_1 needs no factorization.
    logdet = jnp.sum(jnp.log(jnp.abs(a[0])))
    neg = jnp.sum(a[0] <= 0).astype(jnp.int32)
    w1 = c.weights[0]
    D = jnp.diag(a[1]) - beta ** 2 * (w1.T @ (w1 / a[0][:, None]))
    for k0, k1 in _segments(c):
        if k1 - k0 == 1:
            D, ld, flag = step(D, c.weights[k0 - 1], a[k0], beta)
            logdet = logdet + ld
            neg = neg + (jnp.int32(1) - flag.astype(jnp.int32) if mode == "cholesky" else flag.astype(jnp.int32))
            continue
        ws = jnp.stack(c.weights[k0 - 1:k1 - 1])
        As = jnp.stack(a[k0:k1])

        def body(carry, xs):
            D, ld_acc, neg_acc = carry
            w, ak = xs
            Dn, ld, flag = step(D, w, ak, beta)
            inc = (jnp.int32(1) - flag.astype(jnp.int32)) if mode == "cholesky" else flag.astype(jnp.int32)
            return (Dn, ld_acc + ld, neg_acc + inc), None

        (D, logdet, neg), _ = jax.lax.scan(body, (D, logdet, neg), (ws, As))
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


@functools.partial(jax.jit, static_argnames=())
def positive_definite(c: LayeredCouplings, beta, shift=0.0) -> jax.Array:
    """Whether ``(1 − shift) I − M(β)`` is positive definite (Cholesky on each pivot).

    Equivalently: λ_min(I − M(β)) > ``shift``. ``logdet`` of the same call is available via
    :func:`logdet`.
    """
    return _recurrence(c, beta, shift, "cholesky").positive_definite


@jax.jit
def logdet(c: LayeredCouplings, beta, shift=0.0) -> jax.Array:
    """log|det((1 − shift) I − M(β))| by eq. 27 (eigh pivots: valid for indefinite matrices)."""
    return _recurrence(c, beta, shift, "inertia").logdet


@jax.jit
def inertia(c: LayeredCouplings, beta, shift=0.0) -> jax.Array:
    """Number of eigenvalues of ``I − M(β)`` below ``shift`` (Sylvester's law on the pivots)."""
    return _recurrence(c, beta, shift, "inertia").num_negative


@jax.jit
def recurrence(c: LayeredCouplings, beta, shift=0.0) -> RecurrenceResult:
    """Full :class:`RecurrenceResult` (logdet, inertia, PD flag) with eigh pivots."""
    return _recurrence(c, beta, shift, "inertia")


def least_eigenvalue_bisect(c: LayeredCouplings, beta, lo: float, hi: float,
                            tol: float = 1e-6) -> float:
    """λ_min(I − M(β)) bracketed by bisection on the PD test (no eigh of the full matrix)."""
    f = jax.jit(lambda s: positive_definite(c, beta, s))
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if bool(f(mid)):
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@functools.partial(jax.jit, static_argnames=("num_scan", "max_iter"))
def _critical_beta(c, threshold, beta_max, rtol, num_scan: int, max_iter: int):
    dtype = c.dtype
    grid = jnp.linspace(0.0, beta_max, num_scan + 1, dtype=dtype)[1:]
    pd = jax.lax.map(lambda b: positive_definite(c, b, threshold), grid)
    any_cross = ~jnp.all(pd)
    first = jnp.argmax(~pd)
    hi = grid[first]
    lo = jnp.where(first > 0, grid[jnp.maximum(first - 1, 0)], 0.0)

    def cond(s):
        lo, hi, i = s
        return (hi - lo > rtol * hi) & (i < max_iter)

    def body(s):
        lo, hi, i = s
        mid = 0.5 * (lo + hi)
        ok = positive_definite(c, mid, threshold)
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid), i + 1

    lo, hi, _ = jax.lax.while_loop(cond, body, (lo.astype(dtype), hi, 0))
    return hi, any_cross


def critical_beta_bisect(c: LayeredCouplings, threshold: float, beta_max: float,
                         rtol: float = 1e-4, num_scan: int = 32, max_iter: int = 60) -> float:
    r"""First β in (0, ``beta_max``] with λ_min(I − M(β)) ≤ ``threshold``, by bisection.

    λ_min(β) is not monotone (it rises again past its minimum), so the first crossing is
    bracketed by a coarse scan of ``num_scan`` PD tests of :math:`(1 - \lambda^*) I - M(\beta)`
    on a uniform grid, then bisected to relative precision ``rtol``. A crossing narrower than
    the scan spacing can be missed (the same blind spot as the paper's grid method).

    Raises:
      NoCrossingError: no β in range makes the matrix lose positive definiteness.
    """
    b, ok = _critical_beta(c, jnp.asarray(threshold, c.dtype), jnp.asarray(beta_max, c.dtype),
                           jnp.asarray(rtol, c.dtype), num_scan, max_iter)
    if not bool(ok):
        raise NoCrossingError(
            f"λ_min(I − M(β)) stays above the threshold {threshold:.6g} for all β ≤ {beta_max:g} "
            f"(scan of {num_scan} points); raise beta_max or num_scan")
    return float(b)


__all__ = ["RecurrenceResult", "critical_beta_bisect", "inertia", "least_eigenvalue_bisect",
           "logdet", "positive_definite", "recurrence"]

