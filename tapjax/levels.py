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

from tapjax import linalg
from tapjax.spin_model import (LayeredCouplings, bond_matvec, equal_block_runs, join_layers,
                               row_square_sums, split_layers)
from tapjax.tap import lanczos_tridiagonal

PivotKind = Literal["cholesky", "eigh"]


# --------------------------------------------------------------------------- factorization
class Pivot(NamedTuple):
    """Factor of one pivot :math:`D_k` (or a stacked run of them, leading axis = run).

    Attributes:
      mat: ``(…, n, n)`` inverse :math:`C^{-1}` of the lower Cholesky factor (:math:`D = CC^\\top`) or eigenvectors Q
        (:math:`D = Q\\,\\mathrm{diag}(\\lambda)Q^\\top`).
      vals: ``(…, n)`` ones (Cholesky) or the eigenvalues λ (eigh).
    """

    mat: jax.Array
    vals: jax.Array




def _factor(D, kind: str, w=None):
    """Factor one symmetric pivot → (Pivot, log|det|, #negative or #failed, ok, C⁻¹w or None).

    Cholesky pivots are stored as the explicit inverse factor :math:`C^{-1}` (one triangular solve
    against I, O(n³) like the factorization): every later use — the next pivot and each
    :func:`solve` — is then a matrix product, ~8× faster than a triangular solve on XLA:CPU.
    """
    if kind == "cholesky":
        C = jnp.linalg.cholesky(D)
        ok = jnp.all(jnp.isfinite(C))
        C = jnp.where(ok, C, jnp.eye(D.shape[0], dtype=D.dtype))
        ld = 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diagonal(C))))
        eye = jnp.eye(D.shape[0], dtype=D.dtype)
        if w is None:
            Ci, Y = jax.scipy.linalg.solve_triangular(C, eye, lower=True), None
        else:  # one triangular solve for C^{-1} W (the next pivot) and C^{-1}
            Z = jax.scipy.linalg.solve_triangular(C, jnp.concatenate([w, eye], axis=1), lower=True)
            Y, Ci = Z[:, :w.shape[1]], Z[:, w.shape[1]:]
        return Pivot(Ci, jnp.ones(D.shape[0], D.dtype)), ld, (~ok).astype(jnp.int32), ok, Y
    lam, Q = jnp.linalg.eigh(D)
    return Pivot(Q, lam), jnp.sum(jnp.log(jnp.abs(lam))), jnp.sum(lam < 0).astype(jnp.int32), \
        jnp.all(lam != 0), None


def _apply_inv(p: Pivot, v, eig):
    """:math:`D^{-1} v` for ``v`` of shape ``(n,)`` or ``(n, m)``; ``eig``: bool (static or array)."""
    def by_eig():
        lam = p.vals if v.ndim == 1 else p.vals[:, None]
        return p.mat @ ((p.mat.T @ v) / lam)

    def by_chol():  # p.mat = C^{-1}: D^{-1} = C^{-T} C^{-1}
        return p.mat.T @ (p.mat @ v)

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


def _next_pivot(p: Pivot, w, a, beta, kind: str, Y=None):
    """:math:`D_k = \\mathrm{diag}(a_k) - \\beta^2 W^{(k)\\top} D_{k-1}^{-1} W^{(k)}` (eq. 26)."""
    if kind == "cholesky":                 # Y = C^{-1} W
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
    for k0, k1 in equal_block_runs(c):
        Ws = jnp.stack(c.weights[k0 - 1:k1 - 1])
        As = jnp.stack(a[k0:k1])

        def body(carry, xs):
            D, ld, ng, good = carry
            p, l, n, o, Y = _factor(D, kind, xs[0])
            return (_next_pivot(p, xs[0], xs[1], beta, kind, Y), ld + l, ng + n, good & o), p

        if k1 - k0 == 1:  # a non-square (or lone) block changes the pivot shape: unrolled
            (D, logdet, neg, ok), p = body((D, logdet, neg, ok), (Ws[0], As[0]))
            piv = jax.tree_util.tree_map(lambda t: t[None], p)
        else:
            (D, logdet, neg, ok), piv = jax.lax.scan(body, (D, logdet, neg, ok), (Ws, As))
        runs.append(piv)
        run_weights.append(Ws)
    if kind == "cholesky":
        p, l, n, o, _ = _factor(D, "cholesky")
        lam, Q = jax.lax.cond(o, lambda: (jnp.ones(D.shape[0], dtype), p.mat),
                              lambda: tuple(jnp.linalg.eigh(D)))
        last = Pivot(Q, lam)
        last_eigh = ~o
        logdet = logdet + jnp.where(o, l, jnp.sum(jnp.log(jnp.abs(lam))))
        neg = neg + jnp.where(o, 0, jnp.sum(lam < 0)).astype(jnp.int32)
        last_ok = jnp.all(lam != 0)
    else:
        last, l, n, last_ok, _ = _factor(D, "eigh")
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
    for (k0, k1), piv, Ws in zip(equal_block_runs(c), f.runs, f.run_weights):
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
    for (k0, k1), piv, Ws, zs in reversed(list(zip(equal_block_runs(c), f.runs, f.run_weights, zruns))):
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


# --------------------------------------------------------------------------- edge eigenvalues
def _bond_norm_bound(c: LayeredCouplings, num_iter: int = 30) -> jax.Array:
    r""":math:`\|J\|_2 = \lambda_{\max}(J)` (the layered J is bipartite) from above: the top Lanczos
    Ritz value plus its residual bound (an upper bound once the Ritz value tracks the top)."""
    n = c.num_spins
    m = int(min(num_iter, n))
    v0 = jax.random.normal(jax.random.PRNGKey(17), (n,), c.dtype)
    mv = lambda v: join_layers(bond_matvec(c, split_layers(c, v)))
    alpha, b, _ = lanczos_tridiagonal(mv, v0, m)
    T = jnp.diag(alpha) + jnp.diag(b[:-1], 1) + jnp.diag(b[:-1], -1)
    th, S = jnp.linalg.eigh(T)
    return th[-1] + jnp.abs(b[-1] * S[-1, -1])


@jax.jit
def spectrum_bounds(c: LayeredCouplings, beta, rho=None) -> tuple[jax.Array, jax.Array]:
    r"""Weyl bounds on the spectrum of :math:`I - M = I + \beta^2 \mathrm{diag}(r) - \beta J`:
    ``(1 + β² min r − β ρ, 1 + β² max r + β ρ)`` with ρ ≥ ‖J‖ = λ_max(J) (the layered J is
    bipartite): by default ``value + error`` of :func:`tapjax.spectra.bond_top` (the Ritz value
    plus its residual bound); pass ``rho`` to reuse one."""
    r = join_layers(row_square_sums(c))
    if rho is None:
        rho = _bond_upper(c)
    beta = jnp.asarray(beta, c.dtype)
    return 1.0 + beta ** 2 * jnp.min(r) - beta * rho, 1.0 + beta ** 2 * jnp.max(r) + beta * rho


def _bond_upper(c: LayeredCouplings) -> jax.Array:
    """ρ ≥ ‖J‖: :func:`tapjax.spectra.bond_top` ``value + error`` (defaults: the program the
    λ_max(J) column compiles too)."""
    from tapjax.spectra import bond_top  # pylint: disable=import-outside-toplevel
    t = bond_top(c)
    return t.value + t.error


def _tap_operator(c: LayeredCouplings, beta, r=None):
    """``v ↦ (I − M(β)) v`` for ``(N,)`` / ``(N, m)``, the stacked :class:`tapjax.spectra.BondOperator`
    built once (no per-layer unrolled program; same values as :func:`tapjax.tap.tap_matvec`)."""
    from tapjax.spectra import BondOperator  # pylint: disable=import-outside-toplevel
    op = BondOperator.of(c)
    r = join_layers(row_square_sums(c)) if r is None else r

    def mv(v):
        rr = r if v.ndim == 1 else r[:, None]
        return v - beta * op(v) + beta ** 2 * rr * v
    return mv


def _inverse_ritz(f: BlockLDL, v0, num_iter: int):
    """Lanczos on :math:`A^{-1}` (full reorthogonalization): Ritz values θ ascending, vectors (N, m)."""
    m = int(min(num_iter, v0.shape[0]))
    alpha, b, V = lanczos_tridiagonal(lambda v: solve(f, v), v0, m)
    T = jnp.diag(alpha) + jnp.diag(b[:-1], 1) + jnp.diag(b[:-1], -1)
    th, S = jnp.linalg.eigh(T)
    return th, V.T @ S


def _block_inverse_ritz(f: BlockLDL, v0, key, b: int, s: int):
    r"""Block Krylov on :math:`A^{-1}`: ``s`` block solves of ``b`` right-hand sides (one
    :func:`solve` of an ``(N, b)`` block each: the pivots are read once per block, ~5× cheaper per
    column than ``b`` single solves at 64 × 512), basis orthonormalized twice per block
    (block Gram–Schmidt + QR), Rayleigh–Ritz of :math:`A^{-1}` on the ``s·b`` basis.
    Start block: ``v0`` and ``b − 1`` Gaussian columns. Returns Ritz values θ ascending and
    vectors ``(N, s·b)``."""
    n = v0.shape[0]
    dtype = v0.dtype
    hi = jax.lax.Precision.HIGHEST
    X = jnp.concatenate([v0[:, None], jax.random.normal(key, (n, b - 1), dtype)], axis=1)
    Q0, _ = jnp.linalg.qr(X)
    Qs = jnp.zeros((s, n, b), dtype).at[0].set(Q0)
    Zs = jnp.zeros((s, n, b), dtype)

    def body(j, st):
        Qs, Zs = st
        Z = solve(f, Qs[j])
        Zs = Zs.at[j].set(Z)
        W = Z
        for _ in range(2):   # against every block so far (later blocks are zero)
            W = W - jnp.einsum("snb,sbc->nc", Qs, jnp.einsum("snb,nc->sbc", Qs, W, precision=hi), precision=hi)
        Qn, R = jnp.linalg.qr(W)
        # a (numerically) rank-deficient block: drop its new directions rather than add noise
        keep = jnp.abs(jnp.diagonal(R)) > 1e3 * jnp.finfo(dtype).eps * jnp.maximum(1.0, jnp.max(jnp.abs(R)))
        Qn = Qn * keep[None, :]
        Qs = jnp.where(j + 1 < s, Qs.at[jnp.minimum(j + 1, s - 1)].set(Qn), Qs)
        return Qs, Zs

    Qs, Zs = jax.lax.fori_loop(0, s, body, (Qs, Zs))
    Q = jnp.transpose(Qs, (1, 0, 2)).reshape(n, s * b)
    Z = jnp.transpose(Zs, (1, 0, 2)).reshape(n, s * b)
    T = jnp.matmul(Q.T, Z, precision=hi)
    T = 0.5 * (T + T.T)
    live = jnp.sum(Q * Q, axis=0) > 0.5                 # dropped columns: θ = 0 (never the top)
    T = jnp.where(live[:, None] & live[None, :], T, 0.0)
    th, S = jnp.linalg.eigh(T)
    return th, jnp.matmul(Q, S, precision=hi)


BLOCK_MIN_SPINS = 32
""":func:`lowest_eigenvalues` uses block solves only for N ≥ BLOCK_MIN_SPINS · block_size."""


class LowestEigenvalues(NamedTuple):
    r"""Result of :func:`lowest_eigenvalues`.

    Attributes:
      eigenvalues: ``(k,)`` ascending Ritz values :math:`\tilde\lambda_j` of :math:`I - M(\beta)`.
      residuals: ``(k,)`` true residual norms :math:`\|(I - M)x_j - \tilde\lambda_j x_j\|` of the
        unit Ritz vectors: an eigenvalue lies within ``residuals[j]`` of ``eigenvalues[j]``
        (and within ``residuals[j]² / gap`` once the gap to the rest is larger).
      shift: the shift σ (< λ_min, verified by the Cholesky of the last factorization).
      num_factorizations: block factorizations spent (PD tests, including back-offs).
    """

    eigenvalues: jax.Array
    residuals: jax.Array
    shift: jax.Array
    num_factorizations: jax.Array


def _pd_below(c, beta, sigma, step, max_tries: int = 12):
    """Factor at σ; while not PD, move σ down by ``step``, then 4·``step``, 16·``step``, ….

    One traced factorization (a ``while_loop`` from an empty state). Returns
    ``(BlockLDL, σ, #factorizations)``."""
    shape = jax.eval_shape(lambda: factorize(c, beta, sigma))
    empty = jax.tree_util.tree_map(lambda t: jnp.zeros(t.shape, t.dtype), shape)

    def cond(s):
        return (~s[0].positive_definite) & (s[3] < max_tries)

    def body(s):
        f, sig, d, n = s
        sig = jnp.where(n == 0, sig, sig - d)
        return factorize(c, beta, sig), sig, jnp.where(n == 0, d, 4.0 * d), n + 1

    f, sigma, _, n = jax.lax.while_loop(cond, body, (empty, sigma, step, jnp.int32(0)))
    return f, sigma, n


@functools.partial(jax.jit, static_argnames=("k", "num_iter", "max_rounds", "block_size"))
def lowest_eigenvalues(c: LayeredCouplings, beta, k: int = 2, *, shift=None, num_iter: int = 40,
                       max_rounds: int = 3, tol=None, key: jax.Array | None = None,
                       block_size: int = 4, bounds=None) -> LowestEigenvalues:
    r"""The ``k`` lowest eigenvalues of :math:`I - M(\beta)` by shift-invert Lanczos (eqs. 22–27).

    Block Krylov (N ≥ :data:`BLOCK_MIN_SPINS` · ``block_size``, every round with a ``shift``,
    rounds ≥ 2 without one — from the Weyl bound the single vector converges, a block of
    degree ``num_iter/block_size`` does not; default 4:
    ``num_iter // block_size`` solves of
    ``block_size`` right-hand sides, :func:`_block_inverse_ritz`) or Lanczos with full
    reorthogonalization (``block_size=1``: ``num_iter`` single solves) on :math:`A^{-1}`,
    :math:`A = (1 - \sigma)I - M`, whose largest eigenvalues :math:`1/(\lambda_j - \sigma)`
    belong to the lowest :math:`\lambda_j`; each solve is O(L·n²) (:func:`solve`); a block
    solve reads the factors once for all its columns. Rounds (at most ``max_rounds``, stopping when every
    residual is ≤ ``tol``):

    1. σ = ``shift`` if given (e.g. the PD threshold λ* at β_c), else the Weyl bound
       :func:`spectrum_bounds`; moved down until the block Cholesky is PD (so σ < λ_min).
    2. ``num_iter`` Lanczos steps → Ritz pairs, true residuals by a mat-vec with :math:`I - M`.
    3. σ ← λ̃_1 − (λ̃_k − λ̃_1) − 2 max residual (about one gap below λ_1, where Lanczos on
       :math:`A^{-1}` converges in a few steps), backed off until PD; restart from the Ritz
       vectors plus a random part.

    Args:
      c: couplings; beta: β; k: how many (≥ 1, static).
      shift: optional σ below λ_min (verified; moved down if not).
      num_iter: Krylov dimension per round; max_rounds: rounds; tol: residual target (default
        ``1e-2·sqrt(eps)·scale``, scale = the upper Weyl bound); key: start-vector key;
      block_size: right-hand sides per solve (for N ≥ :data:`BLOCK_MIN_SPINS` · block_size,
        else 1 = single-vector Lanczos; at 64 × 512 with
        σ = λ* the block path takes 4.1 s against 6.6 s, same residuals);
      bounds: precomputed :func:`spectrum_bounds` ``(lo, hi)`` (else computed here).

    Returns:
      :class:`LowestEigenvalues`; s0 = λ̃_2 − λ̃_1 holds to ``residuals[0] + residuals[1]``.
    """
    if k < 1:
        raise ValueError(f"lowest_eigenvalues: k={k} must be ≥ 1")
    n = c.num_spins
    if k >= n:
        raise ValueError(f"lowest_eigenvalues: k={k} must be < N = {n}")
    if num_iter <= k or max_rounds < 1:
        raise ValueError(f"lowest_eigenvalues: need num_iter > k and max_rounds ≥ 1 "
                         f"(got num_iter={num_iter}, k={k}, max_rounds={max_rounds})")
    dtype = c.dtype
    beta = jnp.asarray(beta, dtype)
    key = jax.random.PRNGKey(0) if key is None else key
    # block Krylov (num_iter // bsz block solves) where N is large enough that a solve costs more
    # than its per-column share of a block solve; small N: single-vector Lanczos (exact at N ≤ num_iter)
    # Without a shift the first σ is the Weyl bound, far below λ_1: a block space of degree
    # num_iter/bsz does not converge from there, single-vector Lanczos of degree num_iter does;
    # so round 1 is single-vector then, and the later rounds (σ about a gap below λ̃_1) blocks.
    bsz = int(block_size) if n >= BLOCK_MIN_SPINS * max(1, int(block_size)) else 1
    nblk = max(2, int(num_iter) // bsz) if bsz > 1 else 0
    if bsz * nblk <= k:
        bsz = 1
    r = join_layers(row_square_sums(c))
    tap_op = _tap_operator(c, beta, r)
    lo_bound, hi_bound = spectrum_bounds(c, beta) if bounds is None else bounds
    scale = jnp.maximum(jnp.abs(hi_bound), 1.0)
    tol = 1e-2 * np.sqrt(np.finfo(dtype).eps) * scale if tol is None else jnp.asarray(tol, dtype)
    sigma0 = lo_bound if shift is None else jnp.minimum(jnp.asarray(shift, dtype), hi_bound)
    vr = jax.random.normal(key, (n,), dtype)
    vr = vr / jnp.linalg.norm(vr)

    def top_k(th, X):
        return th[::-1][:k], X[:, ::-1][:, :k]            # largest θ ↔ lowest λ

    single = lambda f, v0: top_k(*_inverse_ritz(f, v0, num_iter))
    block = lambda f, v0: top_k(*_block_inverse_ritz(f, v0, jax.random.fold_in(key, 1), bsz, nblk))

    def ritz(f, sigma, v0, first):
        if bsz == 1:
            th, X = single(f, v0)
        elif shift is None:   # round 1 from the Weyl bound: single vector; later rounds: blocks
            th, X = jax.lax.cond(first, single, block, f, v0)
        else:
            th, X = block(f, v0)
        lam = sigma + 1.0 / th
        X = X / jnp.linalg.norm(X, axis=0)
        R = tap_op(X) - X * lam
        return lam, jnp.linalg.norm(R, axis=0), X

    def cond(s):
        lam, res, X, sigma, nf, i = s
        return (i < max_rounds) & ~(jnp.max(res) <= tol)

    def body(s):
        lam, res, X, sigma, nf, i = s
        first = i == 0
        d = (lam[-1] - lam[0]) + 2.0 * jnp.max(res) + 10 * jnp.finfo(dtype).eps * scale
        target = jnp.where(first, sigma0, jnp.maximum(lam[0] - d, sigma))
        step = jnp.where(first, 1e-3 * scale, d)
        f, sig2, n2 = _pd_below(c, beta, target, step)
        v0 = jnp.where(first, vr, X.sum(axis=1) / np.sqrt(k) + 0.3 * vr)
        lam2, res2, X2 = ritz(f, sig2, v0, first)
        better = first | (jnp.max(res2) < jnp.max(res))
        pick = lambda a, b: jnp.where(better, a, b)
        return pick(lam2, lam), pick(res2, res), pick(X2, X), pick(sig2, sigma), nf + n2, i + 1

    inf = jnp.full((k,), jnp.inf, dtype)
    state = (inf, inf, jnp.zeros((n, k), dtype), sigma0, jnp.int32(0), 0)
    lam, res, X, sigma, nf, _ = jax.lax.while_loop(cond, body, state)
    order = jnp.argsort(lam)
    return LowestEigenvalues(lam[order], res[order], sigma, nf)


# --------------------------------------------------------------------------- smooth margin, T_c
def _margin_from_factors(f: BlockLDL, num_iter: int) -> jax.Array:
    """λ of ``(1 − σ)I − M`` nearest 0 by ``num_iter`` inverse-Lanczos steps, signed by the inertia."""
    n = f.couplings.num_spins
    v0 = jax.random.normal(jax.random.PRNGKey(3), (n,), f.couplings.dtype)
    th, _ = _inverse_ritz(f, v0, num_iter)
    th = jnp.where(jnp.isfinite(th), th, 0.0)
    near = th[jnp.argmax(jnp.abs(th))]                    # largest |θ| ↔ eigenvalue nearest 0
    neg = jnp.where(th < 0, th, 0.0)
    most_neg = jnp.min(neg)                               # the negative eigenvalue nearest 0
    pd_val = 1.0 / near
    bad_val = jnp.where(most_neg < 0, 1.0 / most_neg, -jnp.abs(1.0 / near))
    return jnp.where(f.earlier_ok, jnp.where(f.positive_definite, pd_val, bad_val), jnp.nan)


@functools.partial(jax.jit, static_argnames=("num_iter",))
def smooth_margin(c: LayeredCouplings, beta, shift=0.0, num_iter: int = 8) -> jax.Array:
    r""":math:`\lambda_{\min}(I - M(\beta)) - \sigma` from the PD test's own factors (eqs. 26–27).

    Same contract as :func:`tapjax.recurrence.last_pivot_margin` — positive iff
    :math:`(1 - \sigma)I - M` is PD, continuous in β, zero at the crossing, NaN once an earlier
    pivot :math:`D_0..D_{L-1}` fails — but its value is the margin itself, not λ_min of the last
    pivot, so a secant on it converges superlinearly also on deep chains, where the last pivot
    jumps near β_c. Computed as ``1/θ`` for the Ritz value θ of largest modulus after
    ``num_iter`` Lanczos steps on :math:`A^{-1}` (one :func:`solve` each, O(L·n²)); just past the
    crossing (only :math:`D_L` indefinite, factored by ``eigh``) it is the negative eigenvalue
    nearest 0, i.e. :math:`\lambda_1 - \sigma`.

    Accuracy: the Ritz value bounds the margin from above (:math:`1/\theta \ge \lambda_1 - \sigma`
    while PD); the error shrinks like :math:`((\lambda_1-\sigma)/(\lambda_2-\sigma))^{2m}` and so
    vanishes at the root, where it matters.
    """
    return _margin_from_factors(factorize(c, beta, shift), num_iter)


def __getattr__(name):
    if name == "SmoothSearch":  # deprecated: the loop state is the shared recurrence.RefineState
        import warnings  # pylint: disable=import-outside-toplevel
        from tapjax.recurrence import RefineState  # pylint: disable=import-outside-toplevel
        warnings.warn("tapjax.levels.SmoothSearch is deprecated; use tapjax.recurrence.RefineState "
                      "(the same fields)", DeprecationWarning, stacklevel=2)
        return RefineState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.partial(jax.jit, static_argnames=("num_scan", "max_iter", "num_iter"))
def critical_beta_smooth(c: LayeredCouplings, threshold, beta_max, rtol=1e-4, hint=None, *,
                         num_scan: int = 16, max_iter: int = 60, num_iter: int = 4):
    r"""First β ≤ ``beta_max`` with λ_min(I − M(β)) ≤ ``threshold``, searched on :func:`smooth_margin`.

    Returns a :class:`tapjax.recurrence.CriticalBeta` (``beta`` = failing end, ``lower`` = PD end,
    ``crossed``, ``num_tests`` = PD tests of the whole chain, ``status`` a
    :class:`tapjax.recurrence.SearchStatus`: OK, NO_CROSSING, MAX_ITER or NONFINITE).

    1. **Bracket** (no crossing skipped). From a PD point β with margin g the crossing cannot
       come before β + s, :math:`g = (\|J\| + 2(\beta+s)\max r)\,s`, because
       :math:`|d\lambda_{\min}/d\beta| \le \|J - 2\beta\,\mathrm{diag}(r)\|`. The next test is at
       ``min(β + max(s, beta_max/num_scan), secant estimate of the root + rtol/4)``, the secant
       through the last two PD margins; ``hint`` is tested when passed. So no crossing is missed
       that the uniform scan of :func:`tapjax.recurrence.critical_beta_search` would find, and
       the big early steps and the secant cut the scan.
    2. **Refine** as ``critical_beta_search(method="secant")`` (Illinois regula falsi, secant
       from the PD side when the far end is NaN, each step aimed rtol/4 past the estimate,
       bisection when a step leaves the bracket or stalls), but on the smooth margin.

    ``num_iter`` inverse-Lanczos steps per test (default 4: the same test counts as 8 on
    16 × 64 … 64 × 512 chains, at half the solves; the margin's error vanishes at the root).
    """
    from tapjax.recurrence import CriticalBeta, RefineState, SearchStatus, refine_point, refine_update

    dtype = c.dtype
    thr = jnp.asarray(threshold, dtype)
    beta_max = jnp.asarray(beta_max, dtype)
    rtol = jnp.asarray(rtol, dtype)
    h = beta_max / num_scan
    hint = jnp.asarray(jnp.nan if hint is None else hint, dtype)
    rmax = jnp.max(join_layers(row_square_sums(c)))
    rho = _bond_norm_bound(c)
    margin = lambda b: smooth_margin(c, b, thr, num_iter)
    one, zero, nan = jnp.ones((), dtype), jnp.zeros((), dtype), jnp.full((), jnp.nan, dtype)

    def safe_step(b, g):
        p = rho + 2.0 * b * rmax
        return 2.0 * g / (p + jnp.sqrt(p * p + 8.0 * rmax * g))

    def scan_cond(s: RefineState):
        return ~s.found & (s.lo < beta_max) & (s.num_tests < max_iter)

    def scan_point(s: RefineState):
        step = jnp.maximum(safe_step(s.lo, s.g_lo), h)
        pred = s.lo - s.g_lo * (s.lo - s.prev) / (s.g_lo - s.g_prev)
        pred = pred * (1.0 + 0.25 * rtol)
        use_pred = jnp.isfinite(pred) & (s.g_lo < s.g_prev) & (pred > s.lo)
        x = jnp.minimum(s.lo + step, jnp.where(use_pred, pred, jnp.inf))
        x = jnp.where((hint > s.lo) & (hint < x), hint, x)
        return jnp.minimum(x, beta_max)

    def refine_cond(sc: RefineState, s: RefineState):
        return s.found & (s.hi - s.lo > rtol * s.hi) & (s.num_tests < sc.num_tests + max_iter)

    # at β = 0 the matrix is (1 − λ*) I: the margin is exact; the slope there is −‖J‖
    s0 = RefineState(lo=zero, g_lo=one - thr, prev=-one, g_prev=one - thr + rho, hi=beta_max,
                     g_hi=nan, w_lo=zero, w_hi=zero, side=zero, width1=zero, width2=zero,
                     found=jnp.asarray(False), num_tests=jnp.int32(0))
    # the refinement of critical_beta_search (shared), as this search always ran it: the
    # midpoint as fallback, no NaN-side guard; both phases in one loop (one margin in the program)
    _, s = linalg.scan_then_refine(
        margin, s0, scan_cond=scan_cond, scan_point=scan_point,
        scan_update=lambda s, x, g: s.tested(x, g)._replace(found=~(g > 0)),
        to_refine=lambda s: s._replace(w_lo=s.g_lo, w_hi=s.g_hi), refine_cond=refine_cond,
        refine_point=lambda s: refine_point(s, rtol, method="secant", step_down=False, nan_side_guard=False),
        refine_update=refine_update)
    finite = jnp.isfinite(s.hi) & jnp.isfinite(s.lo)
    converged = s.hi - s.lo <= rtol * s.hi
    status = jnp.where(~finite, SearchStatus.NONFINITE,
                       jnp.where(~s.found, SearchStatus.NO_CROSSING,
                                 jnp.where(converged, SearchStatus.OK, SearchStatus.MAX_ITER)))
    return CriticalBeta(jnp.where(finite, s.hi, jnp.nan), jnp.where(finite, s.lo, jnp.nan),
                        s.found & finite, s.num_tests, status.astype(jnp.int32))


# --------------------------------------------------------------------------- counting function, s_typ
@functools.partial(jax.jit, static_argnames=("batch_size",))
def counting_function(c: LayeredCouplings, beta, shifts, batch_size: int = 1) -> jax.Array:
    r""":math:`\nu(x) = \#\{\text{eigenvalues of } I - M(\beta) < x\}` at each shift ``(K,)`` → ``(K,)``.

    Sylvester's law of inertia on the ``eigh`` pivots of :func:`factorize` (eq. 27): the number of
    negative eigenvalues of :math:`(1 - x)I - M` is the sum over the pivots. Exact (an integer),
    O(Σ_k N_k³) per shift with ~10× the flops of the Cholesky PD test.
    """
    shifts = jnp.atleast_1d(jnp.asarray(shifts, c.dtype))
    return jax.lax.map(lambda x: factorize(c, beta, x, "eigh").num_negative, shifts,
                       batch_size=batch_size)


@functools.partial(jax.jit, static_argnames=("num_vectors", "num_iter", "reorthogonalize"))
def lanczos_quadrature(c: LayeredCouplings, beta, num_vectors: int = 8, num_iter: int = 80,
                       key: jax.Array | None = None, reorthogonalize: bool = False) -> tuple[jax.Array, jax.Array]:
    r"""Stochastic Lanczos quadrature of the spectral measure of :math:`I - M(\beta)` (matrix-free).

    For each of ``num_vectors`` Gaussian probes v, ``num_iter`` Lanczos steps give the Gauss
    quadrature nodes θ_j and weights τ_j² of :math:`v^\top f(I - M) v/\|v\|^2`; averaged, they
    estimate :math:`\nu(x)/N = \frac1N\mathrm{tr}\,\Theta(x - (I - M))` with a statistical error
    ~:math:`1/\sqrt{N\cdot\texttt{num\_vectors}}` and a resolution of about the node spacing.

    ``reorthogonalize=False`` (the default): the probes run as one ``(N, V)`` block through the
    plain three-term recurrence — Gauss quadrature of the spectral measure survives the loss of
    orthogonality (ghost Ritz values split the weight of the eigenvalue they copy), and the
    s_typ estimate matched full reorthogonalization to every digit on 9 × 256 (2,304 spins,
    0.027 vs dense in both) and on the (64,)×5 test net, at 4.7 s instead of 6.2 s on 64 × 512.
    ``True``: Lanczos with full reorthogonalization per probe (the previous default).

    Returns:
      ``(nodes (V, m), weights (V, m))``, each row's weights summing to 1.
    """
    key = jax.random.PRNGKey(11) if key is None else key
    n = c.num_spins
    m = int(min(num_iter, n))
    tap_op = _tap_operator(c, beta)
    v0 = jax.random.normal(key, (num_vectors, n), c.dtype)

    if not reorthogonalize:   # all probes as one (N, V) block, three-term recurrence only
        alpha, b = _block_three_term(tap_op, v0.T, m)

        def tri(a, bb):
            th, S = jnp.linalg.eigh(jnp.diag(a) + jnp.diag(bb[:-1], 1) + jnp.diag(bb[:-1], -1))
            return th, S[0] ** 2
        return jax.vmap(tri)(alpha.T, b.T)

    def one(v):
        alpha, b, _ = lanczos_tridiagonal(tap_op, v, m)
        T = jnp.diag(alpha) + jnp.diag(b[:-1], 1) + jnp.diag(b[:-1], -1)
        th, S = jnp.linalg.eigh(T)
        return th, S[0] ** 2

    return jax.vmap(one)(v0)


def _block_three_term(mv, V0, m: int):
    """``m`` steps of the plain Lanczos recurrence for every column of ``V0 (N, p)`` at once
    (no reorthogonalization: Gauss quadrature stays accurate, ghost Ritz values share the
    weight of the eigenvalue they copy) → ``(alpha (m, p), beta (m, p))``."""
    V = V0 / jnp.linalg.norm(V0, axis=0)

    def body(carry, _):
        v, v_prev, b_prev = carry
        w = mv(v) - b_prev * v_prev
        a = jnp.sum(v * w, axis=0)
        w = w - a * v
        b = jnp.linalg.norm(w, axis=0)
        return (w / jnp.where(b > 0, b, 1.0), v, b), (a, b)

    _, (alpha, beta) = jax.lax.scan(body, (V, jnp.zeros_like(V), jnp.zeros(V.shape[1], V.dtype)), None, length=m)
    return alpha, beta


# Median of the GOE Wigner surmise P(s) = (π/2) s exp(−π s²/4) in units of the mean spacing.
_GOE_MEDIAN = float(np.sqrt(4.0 * np.log(2.0) / np.pi))


def median_spacing_from_counts(x, counts) -> float:
    r"""s_typ (median of the N − 1 nearest-neighbour gaps) from the counting function at ``x``.

    The estimator. Between consecutive points (bins) the mean gap is
    :math:`\bar s_j = \Delta x_j/\Delta\nu_j` (:math:`\nu` = number of eigenvalues below x), and
    the gaps there follow the GOE Wigner surmise :math:`P(s/\bar s_j)` (level repulsion of the
    bulk). The fraction of all gaps below g is then
    :math:`F(g) = \sum_j \frac{\Delta\nu_j}{N}\,[1 - e^{-\pi g^2/(4\bar s_j^2)}]`, and
    s_typ solves :math:`F(s_{\rm typ}) = 1/2` (bisection). With a flat density this is
    0.939 × the mean spacing; where the density varies (edges, the near-degenerate cluster of
    J's |N_even − N_odd| zero modes) the mixture weighs each region by its share of the gaps.
    Error (measured against dense eigvalsh on MSK and spiked nets, docs/levels.md): within ~6 %
    with 16–64 equal-count bins; it comes from the surmise, not from the counts.

    Args:
      x: ``(K+1,)`` increasing points bracketing the spectrum (``counts[0] = 0``,
        ``counts[-1] = N``); counts: ν at ``x``.
    """
    x = np.asarray(x, float)
    counts = np.asarray(counts, float)
    if x.ndim != 1 or x.shape != counts.shape or x.size < 2:
        raise ValueError(f"median_spacing_from_counts: x {x.shape} and counts {counts.shape} "
                         "must be equal-length 1-D arrays of ≥ 2 points")
    dx, dn = np.diff(x), np.diff(counts)
    if np.any(dx <= 0) or np.any(dn < 0):
        raise ValueError("median_spacing_from_counts: x must increase and counts must not decrease")
    keep = dn > 0
    sbar, w = dx[keep] / dn[keep], dn[keep] / dn[keep].sum()
    F = lambda g: float(np.sum(w * -np.expm1(-np.pi / 4.0 * (g / sbar) ** 2))) - 0.5
    lo, hi = np.min(sbar) * 1e-3, np.max(sbar) * 10.0
    for _ in range(200):  # bisection in log g
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if F(mid) < 0 else (lo, mid)
        if hi / lo - 1.0 < 1e-12:
            break
    return float(np.sqrt(lo * hi))


def _equal_count_points(x, counts, N: int, K: int):
    """K+1 points at which the piecewise-linear interpolant of ν crosses 0, N/K, …, N."""
    q = np.linspace(0.0, N, K + 1)
    return np.interp(q, counts, x)


SpacingMethod = Literal["dense", "inertia", "slq", "auto"]

# "auto" uses dense eigvalsh up to this N: at N = 2,330 (the paper's net) one eigvalsh takes
# 1.2 s, while the inertia path needs 2K eigh-factorizations (≈ 30× more there) and SLQ only
# matches the dense answer to a few %; dense memory (8 N² bytes) and time (N³) end the range.
AUTO_DENSE_MAX_N = 6000


def level_spacing(c: LayeredCouplings, beta, method: SpacingMethod = "auto", *, num_bins: int | None = None,
                  shift=None, num_vectors: int = 8, num_iter: int = 80) -> tuple[float, dict]:
    r"""Normalized first level spacing :math:`s_0/s_{\rm typ}` of :math:`I - M(\beta)` (paper §3.3).

    :math:`s_0 = \lambda_2 - \lambda_1`, :math:`s_{\rm typ}` = median of the N − 1 gaps.

    Methods:
      ``"dense"``: ``eigvalsh`` of the N × N matrix (the reference; O(N³), 8N² bytes).
      ``"inertia"``: s0 by :func:`lowest_eigenvalues` (shift-invert Lanczos, error = the
        residuals); s_typ by :func:`median_spacing_from_counts` on the exact counting function
        (:func:`counting_function`) at K uniform and then K equal-count shifts (2K ``eigh``
        factorizations, O(K·Σ N_k³)).
      ``"slq"``: as ``"inertia"``, but ν from :func:`lanczos_quadrature` (matrix-free,
        O(num_vectors·num_iter·#weights)); for large N.
      ``"auto"``: ``"dense"`` for N ≤ :data:`AUTO_DENSE_MAX_N`, else ``"slq"``.

    Args:
      c: couplings; beta: β (typically β_c); num_bins: K (default ``clip(N // 20, 8, 48)``);
      shift: a known σ < λ_min for the shift-invert (e.g. the threshold λ* at the PD end of the
        β_c bracket); num_vectors, num_iter: SLQ probes and steps.

    Returns:
      ``(s0 / s_typ, info)``, info with ``method`` (the one used), ``s0``, ``s_typ``,
      ``s0_error`` (bound from residuals; 0 for dense), ``s_typ_rel_error`` (the estimator's
      measured error level; 0 for dense), ``lambda_1``, ``lambda_2``, ``num_spins``.
    """
    if method not in ("dense", "inertia", "slq", "auto"):
        raise ValueError(f"level_spacing: method={method!r}; use 'dense', 'inertia', 'slq' or 'auto'")
    n = c.num_spins
    if n < 3:
        raise ValueError(f"level_spacing: need N ≥ 3 spins for level spacings, got N = {n}")
    used = method if method != "auto" else ("dense" if n <= AUTO_DENSE_MAX_N else "slq")
    info = {"method": used, "num_spins": n,
            "auto_reason": (f"N = {n} {'≤' if used == 'dense' else '>'} AUTO_DENSE_MAX_N = "
                            f"{AUTO_DENSE_MAX_N}") if method == "auto" else None}
    if used == "dense":
        from tapjax.spectra import tap_levels  # pylint: disable=import-outside-toplevel
        ev = tap_levels(c, beta)
        gaps = np.diff(ev)
        s0, typ = float(gaps[0]), float(np.median(gaps))
        info.update(s0=s0, s_typ=typ, s0_error=0.0, s_typ_rel_error=0.0,
                    lambda_1=float(ev[0]), lambda_2=float(ev[1]))
    else:
        from tapjax.spectra import bond_top  # pylint: disable=import-outside-toplevel
        bt = bond_top(c)                      # the λ_max(J) program (one compile for both)
        bounds = spectrum_bounds(c, beta, bt.value + bt.error)
        low = lowest_eigenvalues(c, beta, 2, shift=shift, bounds=bounds)
        lam = np.asarray(low.eigenvalues, float)
        res = np.asarray(low.residuals, float)
        s0 = float(lam[1] - lam[0])
        K = int(num_bins) if num_bins is not None else int(np.clip(n // 20, 8, 48))
        top = bounds[1]
        lo = float(lam[0]) - max(float(res[0]), 1e-12 * abs(float(lam[0])) + 1e-300)
        lo = min(lo, float(low.shift)) if np.isfinite(float(low.shift)) else lo
        hi = float(top) * (1 + 1e-6) + 1e-6
        if used == "inertia":
            xs = np.linspace(lo, hi, K + 1)
            ns = np.asarray(counting_function(c, beta, xs[1:-1]), float)
            ns = np.concatenate([[0.0], ns, [float(n)]])
            xq = _equal_count_points(xs, ns, n, K)
            xq[0], xq[-1] = lo, hi
            nq = np.asarray(counting_function(c, beta, xq[1:-1]), float)
            nq = np.concatenate([[0.0], nq, [float(n)]])
            typ = median_spacing_from_counts(xq, nq)
            info.update(num_bins=K, num_shifts=2 * (K - 1))
        else:
            th, wt = lanczos_quadrature(c, beta, num_vectors, num_iter)
            th, wt = np.asarray(th, float).ravel(), np.asarray(wt, float).ravel() / num_vectors
            o = np.argsort(th)
            th, cdf = th[o], np.cumsum(wt[o]) * n
            # ν as the piecewise-linear interpolant through the quadrature CDF's step midpoints
            xs = np.concatenate([[lo], th, [max(hi, th[-1] + 1e-9)]])
            ns = np.concatenate([[0.0], cdf - 0.5 * wt[o] * n, [float(n)]])
            ns = np.maximum.accumulate(np.clip(ns, 0.0, n))
            xq = _equal_count_points(xs, ns, n, K)
            xq = np.maximum.accumulate(xq)
            nq = np.linspace(0.0, n, K + 1)
            good = np.concatenate([[True], np.diff(xq) > 0])
            typ = median_spacing_from_counts(xq[good], nq[good])
            info.update(num_bins=K, num_vectors=num_vectors, num_iter=num_iter)
        info.update(s0=s0, s_typ=typ, s0_error=float(res[0] + res[1]),
                    s_typ_rel_error=S_TYP_REL_ERROR[used], lambda_1=float(lam[0]),
                    lambda_2=float(lam[1]), shift=float(low.shift),
                    num_factorizations=int(low.num_factorizations))
    if not info["s_typ"] > 0:
        raise ValueError("level_spacing: median level spacing is zero (degenerate spectrum); "
                         "s0/s_typ undefined")
    return info["s0"] / info["s_typ"], info


# Error level of the s_typ estimators, measured against dense eigvalsh (tests/test_levels.py,
# docs/levels.md); reported in level_spacing's info.
S_TYP_REL_ERROR = {"inertia": 0.07, "slq": 0.10}


__all__ = ["AUTO_DENSE_MAX_N", "BlockLDL", "LowestEigenvalues", "Pivot", "S_TYP_REL_ERROR",
           "counting_function", "critical_beta_smooth", "factorize", "lanczos_quadrature",
           "level_spacing", "lowest_eigenvalues", "median_spacing_from_counts", "smooth_margin",
           "solve", "spectrum_bounds"]
