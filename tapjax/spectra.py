r"""Spectral observables of the bond matrix and of :math:`I - M` (paper sections 3.3–3.4).

* :func:`tap_spectrum`: all eigenvalues of :math:`I - M(\beta)` (Fig. 7 at :math:`T_c`);
  :func:`tap_levels` / :func:`bond_levels` the same on the host in float64, for level
  statistics (a float32 solver's noise is ~1e-3 of a typical spacing).
* :func:`first_level_spacing`: normalized first level spacing :math:`s_0/s_{\rm typ}`,
  :math:`s_0 = \lambda_2 - \lambda_1` (two smallest eigenvalues), :math:`s_{\rm typ}` the
  median spacing of the whole spectrum (Figs. 6, 8).
* :func:`bond_spectrum`, :func:`lambda_max_bond`: eigenvalues of J (Fig. 9) and the largest
  one (Figs. 6, 8). The layered J is bipartite (even vs odd layers), so its spectrum is
  symmetric about 0.
* :func:`lambda_min_r`: :math:`\lambda_{\min}(R) = \min_i \sum_\ell J_{i\ell}^2` (section 3.4),
  the large-β scale of :math:`M \approx -\beta^2 R`.

All are computed on the couplings divided by the power of two
:func:`~tapjax.spin_model.coupling_scale` and scaled back (exact), so huge weights do not
overflow :math:`\sum J^2` on the way; the Krylov routine is :func:`tapjax.linalg.lanczos`.
"""

from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tapjax import linalg
from tapjax.linalg import Backend
from tapjax.spin_model import (LayeredCouplings, all_finite, as_couplings, block_runs,
                               coupling_scale, dense_bond_matrix, join_layers, row_square_sums)
from tapjax.tap import tap_matrix


@jax.jit
def tap_spectrum(c: LayeredCouplings, beta) -> jax.Array:
    """Ascending eigenvalues ``(N,)`` of ``I − M(β)`` (dense eigvalsh; NaN for NaN/Inf couplings)."""
    c = as_couplings(c)
    return jnp.where(all_finite(c), jnp.linalg.eigvalsh(tap_matrix(c, beta)), jnp.nan)


@jax.jit
def bond_spectrum(c: LayeredCouplings) -> jax.Array:
    """Ascending eigenvalues ``(N,)`` of the bond matrix J (eq. 4; dense eigvalsh; NaN for NaN/Inf
    couplings, where LAPACK would return finite garbage)."""
    c = as_couplings(c)
    return jnp.where(all_finite(c), jnp.linalg.eigvalsh(dense_bond_matrix(c)), jnp.nan)


@jax.jit
def _tap_level_matrix(c: LayeredCouplings, beta):
    return all_finite(c), tap_matrix(c, beta)


@jax.jit
def _bond_level_matrix(c: LayeredCouplings):
    return all_finite(c), dense_bond_matrix(c)


def tap_levels(c: LayeredCouplings, beta) -> np.ndarray:
    """:func:`tap_spectrum` for level statistics: ``(N,)`` float64 numpy, ascending.

    The matrix ``I − M(β)`` is built in the couplings' dtype (one compiled program) and its
    eigenvalues are taken on the host by LAPACK in float64 (:func:`tapjax.linalg.host_eigvalsh`).
    A float32 eigensolver moves every level by ~1e-7 of the spectral scale, ~1e-3 of a typical
    spacing at N ≈ 300: s0/s_typ of the tiny test net's float32 matrix came out 38.640–38.745
    (scipy ssyevd), 38.700 (``jnp.linalg.eigvalsh``) and 38.6993 here, against 38.6989 for the
    float64 net (docs/levels.md). NaN for NaN/Inf couplings.
    """
    ok, m = _tap_level_matrix(as_couplings(c), beta)
    if not bool(ok):
        return np.full(m.shape[0], np.nan)
    return linalg.host_eigvalsh(np.asarray(m), np.float64)


def bond_levels(c: LayeredCouplings) -> np.ndarray:
    """:func:`bond_spectrum` for level statistics (float64 eigenvalues of J, see :func:`tap_levels`)."""
    ok, j = _bond_level_matrix(as_couplings(c))
    if not bool(ok):
        return np.full(j.shape[0], np.nan)
    return linalg.host_eigvalsh(np.asarray(j), np.float64)


def first_level_spacing(eigenvalues) -> float:
    """``s0 / s_typ``: spacing of the two smallest eigenvalues over the median spacing."""
    ev = np.sort(np.asarray(eigenvalues, float))
    if ev.size < 3:
        raise ValueError(f"need at least 3 eigenvalues for level spacings, got {ev.size}")
    gaps = np.diff(ev)
    typ = np.median(gaps)
    if typ <= 0:
        raise ValueError("median level spacing is zero (degenerate spectrum); s0/s_typ undefined")
    return float(gaps[0] / typ)


def lambda_min_r(c: LayeredCouplings) -> jax.Array:
    """:math:`\\min_i r_i` with :math:`r_i = \\sum_\\ell J_{i\\ell}^2` (eq. 25 without −β).

    Inf only when the true value exceeds the dtype's range.
    """
    c = as_couplings(c)
    s = coupling_scale(c)
    return jnp.min(join_layers(row_square_sums(LayeredCouplings(tuple(w / s for w in c.weights))))) * (s * s)


def lambda_max_bond(c: LayeredCouplings, method: Backend = "auto", num_iter: int = 100) -> jax.Array:
    """Largest eigenvalue of J (eq. 4).

    Args:
      c: couplings (or a list of weight matrices).
      method: a :data:`tapjax.linalg.Backend`: ``"dense"`` (eigvalsh), matrix-free
        ``"lanczos"`` (:func:`bond_top`: Lanczos on J² restricted to one sublattice, stopped at
        a relative residual bound of 1e-6, ``num_iter`` steps at most, never more than N), or
        ``"auto"`` (dense up to :data:`tapjax.linalg.DENSE_MAX_SPINS` spins; the default).
    """
    c = as_couplings(c, where="lambda_max_bond")
    method = linalg.resolve_backend(method, c.num_spins, where="method")
    if method == "dense":
        return bond_spectrum(c)[-1]
    return _lambda_max_lanczos(c, num_iter)


def _lambda_max_lanczos(c: LayeredCouplings, num_iter: int) -> jax.Array:
    """λ_max(J) by :func:`bond_top` (Lanczos on J² on one sublattice, at most ``num_iter`` steps)."""
    return bond_top(c, num_iter).value


# --------------------------------------------------------------------------- grouped bond operator
def weight_groups(c: LayeredCouplings) -> list[tuple[int, int]]:
    """Maximal runs ``[j0, j1)`` of consecutive weight matrices one stacked array can hold
    (:func:`tapjax.spin_model.block_runs`): the mat-vec of a 64-block chain is a few batched
    products, not 128 unrolled ones."""
    return block_runs(c)


class BondOperator(NamedTuple):
    r"""The bond matrix J (eq. 4) as runs of stacked blocks, for matrix-free products.

    Built once (:meth:`of`, one copy of the weights) outside a Krylov loop; each product is a
    few batched contractions per run (no unrolled per-layer program, and on XLA:CPU 30× faster
    than the per-layer ``tensordot`` of :func:`~tapjax.spin_model.bond_matvec` at 64 × 512,
    which transposes every block on every call).

    Attributes:
      runs: ``[j0, j1)`` per run (static, :func:`weight_groups`).
      stacks: per run of length > 1, ``(W[j0::2], W[j0+1::2])`` — the blocks of either parity,
        stacked ``(·, n, n)``; per lone block, ``(W,)``.
      offsets: layer offsets of the flat ``(N,)`` vector (eq. 2 order), static.
    """

    runs: tuple
    stacks: tuple
    offsets: tuple

    @classmethod
    def of(cls, c: LayeredCouplings) -> "BondOperator":
        runs = tuple(weight_groups(c))
        stacks = []
        for a, b in runs:
            if b - a == 1:
                stacks.append((c.weights[a],))
            else:
                stacks.append((jnp.stack(c.weights[a:b:2]), jnp.stack(c.weights[a + 1:b:2])))
        return cls(runs, tuple(stacks), tuple(c.offsets))

    def _apply(self, v, parity):
        off = self.offsets
        tail = v.shape[1:]
        out = jnp.zeros_like(v)
        for (a, b), st in zip(self.runs, self.stacks):
            if b - a == 1:                   # block a joins layers a, a+1
                W = st[0]
                if parity is None or a % 2 == parity:
                    out = out.at[off[a + 1]:off[a + 2]].add(_down(W[None], v[None, off[a]:off[a + 1]])[0])
                if parity is None or (a + 1) % 2 == parity:
                    out = out.at[off[a]:off[a + 1]].add(_up(W[None], v[None, off[a + 1]:off[a + 2]])[0])
                continue
            R = b - a
            X = v[off[a]:off[b + 1]].reshape((R + 1, st[0].shape[1]) + tail)
            Y = jnp.zeros_like(X)
            for q in (0, 1):                 # blocks t = q, q+2, … join run layers t and t+1
                Wq = st[q]
                k = Wq.shape[0]
                if parity is None or (a + q) % 2 == parity:          # layer t → t+1 (Wᵀ)
                    Y = Y.at[q + 1:q + 1 + 2 * k:2].add(_down(Wq, X[q:q + 2 * k:2]))
                if parity is None or (a + q + 1) % 2 == parity:      # layer t+1 → t (W)
                    Y = Y.at[q:q + 2 * k:2].add(_up(Wq, X[q + 1:q + 1 + 2 * k:2]))
            out = out.at[off[a]:off[b + 1]].add(Y.reshape((-1,) + tail))
        return out

    def __call__(self, v: jax.Array) -> jax.Array:
        """``J v`` for flat ``v`` ``(N,)`` or ``(N, m)`` (each block read twice)."""
        return self._apply(v, None)

    def from_parity(self, v: jax.Array, parity: int) -> jax.Array:
        """``J v`` for ``v`` supported on the layers ``k ≡ parity (mod 2)`` (each block read once).

        The layered J couples only neighbouring layers, so it maps even-layer vectors to odd-layer
        ones and back (bipartite); entries of ``v`` on the other layers are ignored."""
        return self._apply(v, int(parity))


def _down(W, X):
    """``W[k]ᵀ X[k]`` for stacked ``W (K, a, b)``, ``X (K, a)`` or ``(K, a, m)`` (layouts chosen
    for XLA:CPU's batched dot: the column index leads for the block case)."""
    if X.ndim == 2:
        return jnp.einsum("kij,ki->kj", W, X)
    return jnp.swapaxes(jnp.einsum("kij,kli->klj", W, jnp.swapaxes(X, 1, 2)), 1, 2)


def _up(W, X):
    """``W[k] X[k]`` for stacked ``W (K, a, b)``, ``X (K, b)`` or ``(K, b, m)``."""
    if X.ndim == 2:
        return jnp.einsum("kij,kj->ki", W, X)
    return jnp.einsum("kij,kjl->kil", W, X)


def _parity_mask(c: LayeredCouplings, parity: int, dtype) -> jax.Array:
    return jnp.concatenate([jnp.full((n,), float(k % 2 == parity), dtype) for k, n in enumerate(c.sizes)])


class BondTop(NamedTuple):
    r"""Largest eigenpair of J (:func:`bond_top`).

    Attributes:
      value: λ̂ ≈ λ_max(J), a lower bound (a Ritz value).
      error: λ_max(J) ∈ [value, value + error] (Lanczos residual bound on J², see :func:`bond_top`).
      vector: ``(N,)`` unit Ritz vector of J.
      num_steps: Lanczos steps on J² (each one pass over every block).
    """

    value: jax.Array
    error: jax.Array
    vector: jax.Array
    num_steps: jax.Array


@functools.partial(jax.jit, static_argnames=("max_iter",))
def bond_top(c: LayeredCouplings, max_iter: int = 100, rtol: float = 1e-6) -> BondTop:
    r"""λ_max(J) and its eigenvector (eq. 4) by Lanczos on J² restricted to one sublattice.

    The layered J is bipartite: with B the even-layers → odd-layers block, its eigenvalues are
    :math:`\pm\sigma_i(B)`, so :math:`\lambda_{\max}(J)^2 = \lambda_{\max}(J^2|_{\rm even})`.
    Lanczos on :math:`J^2|_{\rm even}` (:func:`tapjax.linalg.lanczos_largest`) builds a
    polynomial of degree 2k in J from k steps of two one-sublattice products each — the work of
    k full J products (:class:`BondOperator`, one pass over the blocks), so it needs half the
    passes of Lanczos on J for the same accuracy, and stops once the residual bound ε of the
    Ritz value θ of J² is ≤ ``rtol``·θ (``max_iter`` steps at most). Error: θ ≤ λ_max² and an
    eigenvalue of J² lies in [θ, θ + ε]; ``value = √θ`` and ``error = √(θ+ε) − √θ`` (the usual
    caveat of Ritz bounds: the eigenvalue within ε is the top one once θ has separated from the
    rest, which the full reorthogonalization makes reliable). Eigenvector
    :math:`x = (u + J u/\lambda)/\sqrt2` from the Ritz vector u of J² (even layers).

    Computed on ``c / s`` (:func:`~tapjax.spin_model.coupling_scale`) and scaled back. NaN for
    non-finite couplings.
    """
    c = as_couplings(c, where="bond_top")
    s = coupling_scale(c)
    cn = LayeredCouplings(tuple(w / s for w in c.weights))
    op = BondOperator.of(cn)
    mask = _parity_mask(cn, 0, cn.dtype)
    v0 = jax.random.normal(jax.random.PRNGKey(0), (cn.num_spins,), cn.dtype) * mask
    sq = lambda v: op.from_parity(op.from_parity(v, 0), 1) * mask
    top = linalg.lanczos_largest(sq, v0, max_iter, rtol)
    th = jnp.maximum(top.value, 0.0)
    lam = jnp.sqrt(th)
    err = jnp.sqrt(th + top.error) - lam
    u = top.vector * mask
    x = u + op.from_parity(u, 0) / jnp.where(lam > 0, lam, 1.0)
    x = x / jnp.linalg.norm(x)
    ok = all_finite(c)
    nan = jnp.full((), jnp.nan, c.dtype)
    return BondTop(jnp.where(ok, lam * s, nan), jnp.where(ok, err * s, nan),
                   jnp.where(ok, x, jnp.nan), top.num_steps)


@jax.jit
def layer_sigma_max(c: LayeredCouplings) -> jax.Array:
    r"""Largest singular value :math:`\sigma_{\max}(W^{(k)})` of every block ``(L,)``, exact.

    ``eigvalsh`` of the smaller Gram matrix, one batched call per run of equal blocks
    (:func:`weight_groups`; :func:`tapjax.linalg.eigvalsh_batch`: eigenvalues only, the host's
    cores in parallel on CPU), on ``c / s`` and scaled back.
    """
    c = as_couplings(c, where="layer_sigma_max")
    s = coupling_scale(c)
    out = []
    for a, b in weight_groups(c):
        Ws = jnp.stack([w / s for w in c.weights[a:b]])
        m, n = Ws.shape[1:]
        G = jnp.einsum("kij,kil->kjl", Ws, Ws) if n <= m else jnp.einsum("kij,klj->kil", Ws, Ws)
        out.append(jnp.sqrt(jnp.maximum(linalg.eigvalsh_batch(G)[:, -1], 0.0)))
    return jnp.concatenate(out) * s


def spectral_density(eigenvalues, bins: int = 100, range_=None):
    """Deprecated (unused in tapjax): use ``numpy.histogram(ev, bins, range, density=True)``."""
    warnings.warn("tapjax.spectra.spectral_density is deprecated; use numpy.histogram(..., "
                  "density=True)", DeprecationWarning, stacklevel=2)
    hist, edges = np.histogram(np.asarray(eigenvalues), bins=bins, range=range_, density=True)
    return 0.5 * (edges[1:] + edges[:-1]), hist


__all__ = ["BondOperator", "BondTop", "bond_levels", "bond_spectrum", "bond_top", "first_level_spacing",
           "lambda_max_bond", "lambda_min_r", "layer_sigma_max", "spectral_density", "tap_levels",
           "tap_spectrum", "weight_groups"]
