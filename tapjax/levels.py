r"""Level statistics of :math:`I - M(\beta)` without a dense eigensolver (paper eqs. 22–27).

Everything here works on the block :math:`LDL^\top` factorization of the block-tridiagonal

.. math::
    A = (1 - \sigma) I - M(\beta), \qquad
    A_{kk} = \mathrm{diag}(a_k),\; a_k = 1 - \sigma + \beta^2 r_k, \qquad
    A_{k-1,k} = -\beta W^{(k)},

whose pivots are the El-Mikkawy recurrence of eqs. 26–27 (sign convention of
:mod:`tapjax.recurrence`: :math:`D_k = -\chi_k`):

.. math::
    D_0 = \mathrm{diag}(a_0), \qquad
    D_k = \mathrm{diag}(a_k) - \beta^2 W^{(k)\top} D_{k-1}^{-1} W^{(k)},
    \qquad L_{k,k-1} = -\beta W^{(k)\top} D_{k-1}^{-1}.

* :func:`factorize` → :class:`BlockLDL` (Cholesky of each pivot, or ``eigh`` for indefinite
  shifts), O(L·n³); :func:`solve` applies :math:`A^{-1}` by block forward/backward substitution,
  O(L·n²) per right-hand side.
* :func:`lowest_eigenvalues`: the lowest eigenvalues of :math:`I - M` by shift-invert Lanczos
  (Lanczos on :math:`A^{-1}` with :math:`\sigma < \lambda_{\min}`), with true residual norms.
* :func:`smooth_margin`: :math:`\lambda_{\min}(I - M(\beta)) - \sigma` from the factors of the
  PD test (a few inverse-Lanczos solves) — continuous in β, the margin a root-finder wants;
  :func:`critical_beta_smooth` is the T_c search that uses it.
* :func:`counting_function`, :func:`typical_spacing`: the eigenvalue counting function
  :math:`\nu(x) = \#\{\lambda_i < x\}` by Sylvester inertia of the pivots, and the median level
  spacing :math:`s_{\rm typ}` estimated from it; :func:`level_spacing` gives
  :math:`s_0/s_{\rm typ}` by the dense or the inertia path (chosen by size).

Error statements are in each docstring and in docs/levels.md; they are measured against dense
``eigvalsh`` in tests/test_levels.py.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tapjax.spin_model import LayeredCouplings, bond_matvec, join_layers, row_square_sums, split_layers
from tapjax.tap import lanczos_tridiagonal, tap_matvec

PivotKind = Literal["cholesky", "eigh"]


# --------------------------------------------------------------------------- factorization
class Pivot(NamedTuple):
    """Factor of one pivot :math:`D_k` (or a stacked run of them, leading axis = run).

    Attributes:
      mat: ``(…, n, n)`` lower Cholesky factor C (:math:`D = CC^\\top`) or eigenvectors Q
        (:math:`D = Q\\,\\mathrm{diag}(\\lambda)Q^\\top`).
      vals: ``(…, n)`` ones (Cholesky) or the eigenvalues λ (eigh).
    """

    mat: jax.Array
    vals: jax.Array


def _runs(c: LayeredCouplings) -> list[tuple[int, int]]:
    """Steps k = 2..L grouped into maximal runs [k0, k1) of equal square blocks (one scan each)."""
    runs, k, L = [], 2, c.num_layers
    while k <= L:
        shape = c.weights[k - 1].shape
        k1 = k + 1
        if shape[0] == shape[1]:
            while k1 <= L and c.weights[k1 - 1].shape == shape:
                k1 += 1
        runs.append((k, k1))
        k = k1
    return runs


def _factor(D, kind: str):
    """Factor one symmetric pivot → (Pivot, log|det|, #negative or #failed, ok)."""
    if kind == "cholesky":
        C = jnp.linalg.cholesky(D)
        ok = jnp.all(jnp.isfinite(C))
        C = jnp.where(ok, C, jnp.eye(D.shape[0], dtype=D.dtype))
        ld = 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diagonal(C))))
        return Pivot(C, jnp.ones(D.shape[0], D.dtype)), ld, (~ok).astype(jnp.int32), ok
    lam, Q = jnp.linalg.eigh(D)
    return Pivot(Q, lam), jnp.sum(jnp.log(jnp.abs(lam))), jnp.sum(lam < 0).astype(jnp.int32), \
        jnp.all(lam != 0)


def _apply_inv(p: Pivot, v, eig):
    """:math:`D^{-1} v` for ``v`` of shape ``(n,)`` or ``(n, m)``; ``eig``: bool (static or array)."""
    def by_eig():
        lam = p.vals if v.ndim == 1 else p.vals[:, None]
        return p.mat @ ((p.mat.T @ v) / lam)

    def by_chol():
        y = jax.scipy.linalg.solve_triangular(p.mat, v, lower=True)
        return jax.scipy.linalg.solve_triangular(p.mat, y, lower=True, trans="T")

    if isinstance(eig, bool):
        return by_eig() if eig else by_chol()
    return jnp.where(eig, by_eig(), by_chol())


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["couplings", "run_weights", "beta", "shift", "d0", "runs", "last", "last_eigh",
                                "num_negative", "positive_definite", "logdet", "earlier_ok"],
                   meta_fields=["kind"])
@dataclasses.dataclass(frozen=True)
class BlockLDL:
    r"""Block :math:`LDL^\top` of :math:`A = (1 - \sigma) I - M(\beta)` (eq. 27), a pytree.

    Attributes:
      couplings: the :class:`LayeredCouplings` (the off-diagonal factors are :math:`-\beta
        W^{(k)\top} D_{k-1}^{-1}`, applied on the fly, never stored).
      run_weights: per run, the stacked ``W^{(k_0)}..W^{(k_1-1)}`` (so a solve inside a loop
        does not restack them).
      beta, shift: β and σ.
      d0: ``(N_0,)`` the diagonal first pivot :math:`D_0 = \mathrm{diag}(a_0)`.
      runs: per run of :func:`_runs`, a stacked :class:`Pivot` of :math:`D_{k_0-1}..D_{k_1-2}`.
      last: :class:`Pivot` of :math:`D_L`.
      last_eigh: whether ``last`` is an eigendecomposition (always for ``kind="eigh"``; for
        ``"cholesky"`` only where the Cholesky of :math:`D_L` failed, so :math:`A^{-1}` is still
        defined just past the crossing).
      num_negative: ``"eigh"``: the number of negative eigenvalues of A (Sylvester inertia);
        ``"cholesky"``: the number of pivots among :math:`D_0..D_{L-1}` that are not PD, plus the
        negative eigenvalues of :math:`D_L`.
      positive_definite: :math:`A \succ 0`, i.e. :math:`\lambda_{\min}(I - M) > \sigma`.
      logdet: :math:`\log|\det A| = \sum_k \log|\det D_k|` (valid where ``earlier_ok``).
      earlier_ok: whether :math:`D_0..D_{L-1}` were factored (PD for ``"cholesky"``); where
        false, :func:`solve` returns NaN.
      kind: ``"cholesky"`` or ``"eigh"`` (static).
    """

    couplings: LayeredCouplings
    run_weights: tuple
    beta: jax.Array
    shift: jax.Array
    d0: jax.Array
    runs: tuple
    last: Pivot
    last_eigh: jax.Array
    num_negative: jax.Array
    positive_definite: jax.Array
    logdet: jax.Array
    earlier_ok: jax.Array
    kind: str = "cholesky"


def _next_pivot(p: Pivot, w, a, beta, kind: str):
    """:math:`D_k = \\mathrm{diag}(a_k) - \\beta^2 W^{(k)\\top} D_{k-1}^{-1} W^{(k)}` (eq. 26)."""
    if kind == "cholesky":
        Y = jax.scipy.linalg.solve_triangular(p.mat, w, lower=True)
        return jnp.diag(a) - beta ** 2 * (Y.T @ Y)
    Y = p.mat.T @ w
    return jnp.diag(a) - beta ** 2 * (Y.T @ (Y / p.vals[:, None]))


@functools.partial(jax.jit, static_argnames=("kind",))
def factorize(c: LayeredCouplings, beta, shift=0.0, kind: PivotKind = "cholesky") -> BlockLDL:
    r"""Block :math:`LDL^\top` of :math:`(1 - \sigma) I - M(\beta)` by the recurrence of eqs. 26–27.

    Args:
      c: couplings (no batch axes; ``jax.vmap`` over a stack).
      beta: β; shift: σ (the matrix is PD iff :math:`\lambda_{\min}(I - M) > \sigma`).
      kind: ``"cholesky"`` — the PD test: Cholesky of each pivot (and ``eigh`` of the last one
        only where its Cholesky fails); ``"eigh"`` — eigendecomposition of every pivot, for
        indefinite shifts (exact inertia, ~10× the flops).

    Returns:
      :class:`BlockLDL`. Cost O(Σ_k N_k³); runs of equal square blocks are one ``lax.scan``.
    """
    if kind not in ("cholesky", "eigh"):
        raise ValueError(f"factorize: kind={kind!r}; use 'cholesky' or 'eigh'")
    dtype = c.dtype
    beta = jnp.asarray(beta, dtype)
    shift = jnp.asarray(shift, dtype)
    a = [1.0 - shift + beta ** 2 * rk for rk in row_square_sums(c)]
    d0 = a[0]
    logdet = jnp.sum(jnp.log(jnp.abs(d0)))
    neg = jnp.sum(d0 < 0).astype(jnp.int32)
    ok = jnp.all(d0 > 0) if kind == "cholesky" else jnp.all(d0 != 0)
    w1 = c.weights[0]
    D = jnp.diag(a[1]) - beta ** 2 * (w1.T @ (w1 / d0[:, None]))
    runs, run_weights = [], []
    for k0, k1 in _runs(c):
        Ws = jnp.stack(c.weights[k0 - 1:k1 - 1])
        As = jnp.stack(a[k0:k1])

        def body(carry, xs):
            D, ld, ng, good = carry
            p, l, n, o = _factor(D, kind)
            return (_next_pivot(p, xs[0], xs[1], beta, kind), ld + l, ng + n, good & o), p

        if k1 - k0 == 1:  # a non-square (or lone) block changes the pivot shape: unrolled
            (D, logdet, neg, ok), p = body((D, logdet, neg, ok), (Ws[0], As[0]))
            piv = jax.tree_util.tree_map(lambda t: t[None], p)
        else:
            (D, logdet, neg, ok), piv = jax.lax.scan(body, (D, logdet, neg, ok), (Ws, As))
        runs.append(piv)
        run_weights.append(Ws)
    if kind == "cholesky":
        p, l, n, o = _factor(D, "cholesky")
        lam, Q = jax.lax.cond(o, lambda: (jnp.ones(D.shape[0], dtype), p.mat),
                              lambda: tuple(jnp.linalg.eigh(D)))
        last = Pivot(Q, lam)
        last_eigh = ~o
        logdet = logdet + jnp.where(o, l, jnp.sum(jnp.log(jnp.abs(lam))))
        neg = neg + jnp.where(o, 0, jnp.sum(lam < 0)).astype(jnp.int32)
        last_ok = jnp.all(lam != 0)
    else:
        last, l, n, last_ok = _factor(D, "eigh")
        last_eigh = jnp.asarray(True)
        logdet, neg = logdet + l, neg + n
    return BlockLDL(couplings=c, run_weights=tuple(run_weights), beta=beta, shift=shift, d0=d0,
                    runs=tuple(runs), last=last, last_eigh=last_eigh, num_negative=neg,
                    positive_definite=ok & last_ok & (neg == 0), logdet=logdet.astype(dtype),
                    earlier_ok=ok & last_ok, kind=kind)


def _layer_stack(c: LayeredCouplings, v, k0: int, k1: int):
    """Layers k0..k1−1 of a flat ``(N, …)`` array as one ``(k1−k0, n, …)`` array (equal widths)."""
    off = c.offsets
    n = c.sizes[k0]
    return v[off[k0]:off[k1]].reshape((k1 - k0, n) + v.shape[1:])


@jax.jit
def solve(f: BlockLDL, b: jax.Array) -> jax.Array:
    r""":math:`A^{-1} b` with the factors of :func:`factorize`: O(Σ_k N_{k-1} N_k) per column.

    Forward :math:`y_0 = b_0`, :math:`y_k = b_k + \beta W^{(k)\top} D_{k-1}^{-1} y_{k-1}`;
    then :math:`x_L = D_L^{-1} y_L`,
    :math:`x_{k-1} = D_{k-1}^{-1}(y_{k-1} + \beta W^{(k)} x_k)`.

    Args:
      f: :class:`BlockLDL`; b: ``(N,)`` or ``(N, m)`` (flat, layer order of eq. 2).

    Returns:
      ``x`` of the shape of ``b``; all NaN where ``f.earlier_ok`` is false (a failed pivot).
    """
    c, beta = f.couplings, f.beta
    eig = f.kind == "eigh"
    col = (lambda v: v) if b.ndim == 1 else (lambda v: v[..., None])
    bl = split_layers(c, b)
    w1 = c.weights[0]
    d0 = col(f.d0)
    z0 = bl[0] / d0
    y = bl[1] + beta * jnp.tensordot(w1, z0, axes=((0,), (0,)))
    zruns = []
    for (k0, k1), piv, Ws in zip(_runs(c), f.runs, f.run_weights):
        def fwd(y, xs):
            W, p, bk = xs
            z = _apply_inv(p, y, eig)
            return bk + beta * jnp.tensordot(W, z, axes=((0,), (0,))), z

        bs = _layer_stack(c, b, k0, k1) if k1 - k0 > 1 else bl[k0][None]
        if k1 - k0 == 1:
            y, z = fwd(y, (Ws[0], jax.tree_util.tree_map(lambda t: t[0], piv), bs[0]))
            zs = z[None]
        else:
            y, zs = jax.lax.scan(fwd, y, (Ws, piv, bs))
        zruns.append(zs)
    xL = _apply_inv(f.last, y, f.last_eigh if f.kind == "cholesky" else True)
    x = xL
    xruns = []
    for (k0, k1), piv, Ws, zs in reversed(list(zip(_runs(c), f.runs, f.run_weights, zruns))):
        def bwd(x, xs):
            W, p, z = xs
            xp = z + beta * _apply_inv(p, W @ x, eig)
            return xp, xp

        if k1 - k0 == 1:
            x, xp = bwd(x, (Ws[0], jax.tree_util.tree_map(lambda t: t[0], piv), zs[0]))
            xs_ = xp[None]
        else:
            x, xs_ = jax.lax.scan(bwd, x, (Ws, piv, zs), reverse=True)
        xruns.append(xs_.reshape((-1,) + b.shape[1:]))
    x0 = z0 + beta * (w1 @ x) / d0
    parts = [x0] + xruns[::-1] + [xL]
    out = jnp.concatenate(parts, axis=0)
    return jnp.where(f.earlier_ok, out, jnp.nan)
