r"""Linearized TAP equations of the layered spin model (paper eqs. 20–25).

Linearizing the TAP equations (20) around :math:`m = 0` gives :math:`(I - M)m = 0` (eq. 22) with

.. math::
    M(\beta) = \beta J - \beta^2\, \mathrm{diag}(r), \qquad r_i = \sum_\ell J_{i\ell}^2
    \qquad\text{(eqs. 23–25)}.

Non-trivial TAP solutions appear when :math:`I - M` stops being positive definite, i.e. when
:math:`\lambda_{\min}(I - M(\beta))` reaches zero. In block form (eq. 24) the diagonal blocks of
:math:`I - M` are :math:`I + \beta^2 \mathrm{diag}(r_k)` and the off-diagonal blocks
:math:`-\beta W^{(k)}`.

Two backends for :math:`\lambda_{\min}(\beta)`:
  * ``"dense"``: builds the :math:`N \times N` matrix and calls ``eigvalsh`` (the paper's
    exact diagonalization; memory :math:`O(N^2)`, time :math:`O(N^3)` per β);
  * ``"lanczos"``: matrix-free Lanczos with full reorthogonalization on block mat-vecs
    (memory :math:`O(\#\text{weights} + mN)`), for nets whose :math:`N^2` does not fit.

The melting point follows the paper's rule (section 3.2): :math:`\lambda^* = \min_\beta
\lambda_{\min}` of the *untrained* net (a finite-size correction of the threshold 0), and
:math:`\beta_c(t)` is the first β at which :math:`\lambda_{\min}(\beta; t) \le \lambda^*`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from tapjax.spin_model import (LayeredCouplings, bond_matvec, dense_bond_matrix, join_layers,
                               row_square_sums, split_layers)


class NoCrossingError(ValueError):
    """λ_min(I − M(β)) never reaches the threshold on the searched β range."""


def tap_matrix(c: LayeredCouplings, beta) -> jax.Array:
    """Dense ``I − M(β)`` (eqs. 22–25), shape ``(N, N)``. Small N only."""
    J = dense_bond_matrix(c)
    r = join_layers(row_square_sums(c))
    return jnp.eye(J.shape[0], dtype=J.dtype) - beta * J + jnp.diag(beta ** 2 * r)


def tap_matvec(c: LayeredCouplings, beta, v: jax.Array, r: jax.Array | None = None) -> jax.Array:
    """``(I − M(β)) v`` for flat ``v`` of shape ``(N,)`` or ``(N, m)``, without forming J."""
    if r is None:
        r = join_layers(row_square_sums(c))
    jv = join_layers(bond_matvec(c, split_layers(c, v)))
    rr = r if v.ndim == 1 else r[:, None]
    return v - beta * jv + beta ** 2 * rr * v


# --------------------------------------------------------------------------- dense backend
@jax.jit
def least_eigenvalue_dense(c: LayeredCouplings, betas: jax.Array) -> jax.Array:
    """λ_min(I − M(β)) by exact diagonalization, vmapped over ``betas`` ``(B,)`` → ``(B,)``.

    J and r are formed once; each β costs one ``eigvalsh`` of an ``(N, N)`` matrix.
    Usable under ``jax.vmap`` over a leading checkpoint axis of ``c``.
    """
    J = dense_bond_matrix(c)
    r = join_layers(row_square_sums(c))
    eye = jnp.eye(J.shape[0], dtype=J.dtype)

    def one(b):
        return jnp.linalg.eigvalsh(eye - b * J + jnp.diag(b * b * r))[0]

    return jax.lax.map(one, jnp.atleast_1d(betas))


# --------------------------------------------------------------------------- Lanczos backend
def lanczos_tridiagonal(matvec, v0: jax.Array, num_iter: int):
    """``num_iter`` Lanczos steps with full (twice-applied) reorthogonalization.

    Args:
      matvec: symmetric linear map ``(N,) -> (N,)``.
      v0: start vector ``(N,)`` (normalized inside).
      num_iter: Krylov dimension m (fixed, so the function is jittable).

    Returns:
      ``(alpha (m,), beta (m,), V (m, N))`` with ``beta[j]`` the coupling between Lanczos
      vectors j and j+1 (``beta[m-1]`` is the residual norm used for error bounds).
    """
    n = v0.shape[0]
    dtype = v0.dtype
    V = jnp.zeros((num_iter, n), dtype)
    v = v0 / jnp.linalg.norm(v0)

    def body(j, state):
        V, alpha, beta, v, v_prev, b_prev = state
        V = V.at[j].set(v)
        w = matvec(v) - b_prev * v_prev
        a = jnp.vdot(v, w)
        w = w - a * v
        mask = (jnp.arange(num_iter) <= j).astype(dtype)[:, None]
        for _ in range(2):  # full reorthogonalization, twice is enough
            w = w - (V * mask).T @ ((V * mask) @ w)
        b = jnp.linalg.norm(w)
        safe = jnp.where(b > 0, b, 1.0)
        return V, alpha.at[j].set(a), beta.at[j].set(b), w / safe, v, b

    init = (V, jnp.zeros(num_iter, dtype), jnp.zeros(num_iter, dtype), v,
            jnp.zeros_like(v), jnp.zeros((), dtype))
    V, alpha, beta, *_ = jax.lax.fori_loop(0, num_iter, body, init)
    return alpha, beta, V


def _tridiag_eigh(alpha, beta):
    T = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    return jnp.linalg.eigh(T)


@functools.partial(jax.jit, static_argnames=("num_iter", "batch_size"))
def least_eigenvalue_lanczos(c: LayeredCouplings, betas: jax.Array, num_iter: int = 120,
                             key: jax.Array | None = None, batch_size: int = 32) -> tuple[jax.Array, jax.Array]:
    """Matrix-free λ_min(I − M(β)) for each β in ``betas`` ``(B,)``.

    Returns ``(lam (B,), err (B,))`` where ``err = |β_m s_m|`` is the Lanczos residual bound
    of the returned Ritz value (the true λ_min lies within it of an eigenvalue; convergence to
    the *smallest* one is checked against the dense backend in the tests). Memory is
    ``O(#weights + batch_size·num_iter·N)``: ``batch_size`` β values run vmapped at once.
    """
    if key is None:
        key = jax.random.PRNGKey(0)
    r = join_layers(row_square_sums(c))
    v0 = jax.random.normal(key, (c.num_spins,), c.dtype)

    def one(b):
        alpha, beta, _ = lanczos_tridiagonal(lambda v: tap_matvec(c, b, v, r), v0, num_iter)
        evals, evecs = _tridiag_eigh(alpha, beta)
        return evals[0], jnp.abs(beta[-1] * evecs[-1, 0])

    # vmap in chunks: batched mat-vecs amortize the per-iteration loop overhead.
    return jax.lax.map(one, jnp.atleast_1d(betas), batch_size=batch_size)


def least_eigenvalue(c: LayeredCouplings, betas, backend: str = "dense", **kw) -> jax.Array:
    """λ_min(I − M(β)) on a β grid with the chosen backend (``"dense"`` or ``"lanczos"``)."""
    betas = jnp.asarray(betas, c.dtype)
    if backend == "dense":
        return least_eigenvalue_dense(c, betas)
    if backend == "lanczos":
        return least_eigenvalue_lanczos(c, betas, **kw)[0]
    raise ValueError(f"backend={backend!r}: use 'dense' or 'lanczos'")


# --------------------------------------------------------------------------- T_c on a grid
def first_crossing_index(curve: np.ndarray, threshold: float) -> int:
    """Index of the first grid point where ``curve <= threshold``.

    Raises :class:`NoCrossingError` (with the curve's minimum) when there is none.
    """
    curve = np.asarray(curve)
    if not np.all(np.isfinite(curve)):
        raise ValueError("λ_min curve contains NaN/Inf; check the couplings")
    hit = np.nonzero(curve <= threshold)[0]
    if hit.size == 0:
        raise NoCrossingError(
            f"λ_min(I − M) never reaches the threshold {threshold:.6g} on the β grid "
            f"(its minimum is {curve.min():.6g}); extend the β range")
    return int(hit[0])


@dataclasses.dataclass(frozen=True)
class Threshold:
    """The paper's finite-size threshold from the untrained net.

    Attributes:
      value: λ* = min_β λ_min(I − M(β)) of the reference (t = 0) couplings.
      beta: the β of that minimum (the reference net's own β_c).
    """

    value: float
    beta: float


def golden_min(f, lo: float, hi: float, rtol: float = 1e-4, max_iter: int = 40) -> tuple[float, float]:
    """Minimum of a unimodal scalar ``f`` on ``[lo, hi]`` by golden-section search → ``(x, f(x))``.

    Stops when the bracket is narrower than ``rtol·hi`` or after ``max_iter`` evaluations.
    """
    g = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    x1, x2 = b - g * (b - a), a + g * (b - a)
    f1, f2 = f(x1), f(x2)
    for _ in range(max_iter):
        if b - a < rtol * b:
            break
        if f1 < f2:
            b, x2, f2 = x2, x1, f1
            x1 = b - g * (b - a)
            f1 = f(x1)
        else:
            a, x1, f1 = x1, x2, f2
            x2 = a + g * (b - a)
            f2 = f(x2)
    return (x1, f1) if f1 < f2 else (x2, f2)


def reference_threshold(c0: LayeredCouplings, betas, backend: str = "dense",
                        refine: bool = True, **kw) -> Threshold:
    """λ* and its β for the untrained couplings ``c0`` (section 3.2's finite-size rule).

    The minimum is located on ``betas`` and, with ``refine``, polished by golden-section
    search between the neighbouring grid points.
    """
    betas = np.asarray(betas, float)
    curve = np.asarray(least_eigenvalue(c0, betas, backend, **kw))
    i = int(np.argmin(curve))
    lo, hi = betas[max(i - 1, 0)], betas[min(i + 1, len(betas) - 1)]
    best_b, best_v = betas[i], float(curve[i])
    if refine and hi > lo:
        f = lambda b: float(least_eigenvalue(c0, np.array([b]), backend, **kw)[0])
        x, v = golden_min(f, lo, hi, rtol=1e-6, max_iter=25)
        if v < best_v:
            best_b, best_v = x, v
    return Threshold(value=float(best_v), beta=float(best_b))


def critical_beta_grid(c: LayeredCouplings, betas, threshold: float, backend: str = "dense",
                       **kw) -> float:
    """Paper's grid method: the first grid β with λ_min(I − M(β)) ≤ ``threshold``."""
    betas = np.asarray(betas, float)
    curve = np.asarray(least_eigenvalue(c, betas, backend, **kw))
    return float(betas[first_crossing_index(curve, threshold)])


__all__ = ["NoCrossingError", "Threshold", "critical_beta_grid", "first_crossing_index", "golden_min",
           "lanczos_tridiagonal", "least_eigenvalue", "least_eigenvalue_dense",
           "least_eigenvalue_lanczos", "reference_threshold", "tap_matrix", "tap_matvec"]
