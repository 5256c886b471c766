r"""Linearized TAP equations of the layered spin model (paper eqs. 20–25).

Linearizing the TAP equations (20) around :math:`m = 0` gives :math:`(I - M)m = 0` (eq. 22) with

.. math::
    M(\beta) = \beta J - \beta^2\, \mathrm{diag}(r), \qquad r_i = \sum_\ell J_{i\ell}^2
    \qquad\text{(eqs. 23–25)}.

Non-trivial TAP solutions appear when :math:`I - M` stops being positive definite, i.e. when
:math:`\lambda_{\min}(I - M(\beta))` reaches zero. In block form (eq. 24) the diagonal blocks of
:math:`I - M` are :math:`I + \beta^2 \mathrm{diag}(r_k)` and the off-diagonal blocks
:math:`-\beta W^{(k)}`.

Backends for :math:`\lambda_{\min}(\beta)` (the :data:`tapjax.linalg.Backend` vocabulary):
  * ``"dense"``: builds the :math:`N \times N` matrix and calls ``eigvalsh`` (the paper's
    exact diagonalization; memory :math:`O(N^2)`, time :math:`O(N^3)` per β);
  * ``"lanczos"``: matrix-free Lanczos with full reorthogonalization and breakdown handling
    (:func:`tapjax.linalg.lanczos`) on block mat-vecs (memory :math:`O(\#\text{weights} + mN)`),
    for nets whose :math:`N^2` does not fit;
  * ``"auto"``: dense up to :data:`tapjax.linalg.DENSE_MAX_SPINS` spins, else Lanczos.

**Scale.** :math:`I - M(\beta; sW) = I - M(s\beta; W)`, so every solver here works on the
couplings divided by the power of two :func:`~tapjax.spin_model.coupling_scale` at
:math:`s\beta` (exact in floating point): weights of 1e30 or 1e-20 do not overflow or underflow
:math:`\sum_\ell J_{i\ell}^2`, and ordinary weights give bit-identical results.

**Input.** A :class:`~tapjax.spin_model.LayeredCouplings` or a list of weight matrices;
float16/bfloat16 are computed in float32 (:func:`~tapjax.spin_model.as_couplings`).

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

from tapjax import linalg
from tapjax.errors import CouplingsError, NoCrossingError
from tapjax.linalg import Backend, golden_min, lanczos_tridiagonal  # noqa: F401  (re-exported)
from tapjax.spin_model import (LayeredCouplings, all_finite, as_couplings, bond_matvec,  # noqa: F401
                               check_couplings, dense_bond_matrix, join_layers, normalized,
                               row_square_sums, scaled, split_layers)


def tap_matrix(c: LayeredCouplings, beta) -> jax.Array:
    """Dense ``I − M(β)`` (eqs. 22–25), shape ``(N, N)``. Small N only.

    Built from the normalized couplings (:func:`normalized`), so huge or tiny weights give a
    representable matrix whenever its entries are.
    """
    c, beta = normalized(as_couplings(c), beta)
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
def least_eigenvalue_dense(c: LayeredCouplings, betas: jax.Array) -> jax.Array:
    """λ_min(I − M(β)) by exact diagonalization, vmapped over ``betas`` ``(B,)`` → ``(B,)``.

    J and r are formed once (from the normalized couplings, see :func:`normalized`); each β costs
    one ``eigvalsh`` of an ``(N, N)`` matrix. Usable under ``jax.vmap`` over a leading
    checkpoint axis of ``c``.
    """
    return _least_eigenvalue_dense(*scaled(as_couplings(c)), betas)


# The entry points scale the couplings in a program of their own (spin_model.scaled, compiled
# once per net and shared) and run these kernels on (c / s, s).
@jax.jit
def _least_eigenvalue_dense(c: LayeredCouplings, s, betas):
    betas = jnp.asarray(betas, c.dtype) * s
    J = dense_bond_matrix(c)
    r = join_layers(row_square_sums(c))
    eye = jnp.eye(J.shape[0], dtype=J.dtype)

    def one(b):
        return jnp.linalg.eigvalsh(eye - b * J + jnp.diag(b * b * r))[0]

    # LAPACK returns finite garbage for a matrix with NaN entries: make it a visible NaN
    return jnp.where(all_finite(c), jax.lax.map(one, jnp.atleast_1d(betas)), jnp.nan)


# --------------------------------------------------------------------------- Lanczos backend
def least_eigenvalue_lanczos(c: LayeredCouplings, betas: jax.Array, num_iter: int = 120,
                             key: jax.Array | None = None, batch_size: int = 32) -> tuple[jax.Array, jax.Array]:
    """Matrix-free λ_min(I − M(β)) for each β in ``betas`` ``(B,)``.

    Returns ``(lam (B,), err (B,))`` where ``err = |β_k s_k|`` is the Lanczos residual bound
    of the returned Ritz value (the true λ_min lies within it of an eigenvalue; convergence to
    the *smallest* one is checked against the dense backend in the tests). Memory is
    ``O(#weights + batch_size·num_iter·N)``: ``batch_size`` β values run vmapped at once.
    The recurrence stops at a breakdown (invariant Krylov space) and never runs more than N
    steps (:func:`tapjax.linalg.lanczos`), so tiny or low-rank nets give the dense answer.
    """
    if key is None:
        key = jax.random.PRNGKey(0)
    return _least_eigenvalue_lanczos(*scaled(as_couplings(c)), betas, num_iter, key, batch_size)


@functools.partial(jax.jit, static_argnames=("num_iter", "batch_size"))
def _least_eigenvalue_lanczos(c: LayeredCouplings, s, betas, num_iter, key, batch_size):
    betas = jnp.asarray(betas, c.dtype) * s
    r = join_layers(row_square_sums(c))
    v0 = jax.random.normal(key, (c.num_spins,), c.dtype)

    def one(b):
        res = linalg.lanczos(lambda v: tap_matvec(c, b, v, r), v0, num_iter)
        return linalg.ritz_extreme(res, "min")

    # vmap in chunks: batched mat-vecs amortize the per-iteration loop overhead. The grid is
    # padded to a whole number of chunks (repeating its last β) so lax.map runs one program:
    # its separate remainder program was seen to hang XLA:CPU (48 β at the paper's size).
    betas = jnp.atleast_1d(betas)
    nb = betas.shape[0]
    pad = (-nb) % batch_size if nb > batch_size else 0
    if pad:
        betas = jnp.concatenate([betas, jnp.repeat(betas[-1:], pad)])
    lam, err = jax.lax.map(one, betas, batch_size=min(batch_size, nb))
    lam, err = lam[:nb], err[:nb]
    ok = all_finite(c)
    return jnp.where(ok, lam, jnp.nan), jnp.where(ok, err, jnp.nan)


def least_eigenvalue(c: LayeredCouplings, betas, backend: Backend = "dense", **kw) -> jax.Array:
    """λ_min(I − M(β)) (eqs. 22–25) on a β grid ``(B,)`` → ``(B,)``.

    Args:
      c: couplings (or a list of weight matrices).
      betas: inverse temperatures.
      backend: :data:`tapjax.linalg.Backend` (``"dense"``, ``"lanczos"`` or ``"auto"``).
      **kw: Lanczos options (``num_iter``, ``key``, ``batch_size``); ignored by dense.

    NaN/Inf couplings give NaN, never a number (:func:`check_couplings` raises an error
    naming the block instead).
    """
    c = as_couplings(c, where="least_eigenvalue")
    backend = linalg.resolve_backend(backend, c.num_spins)
    betas = jnp.asarray(betas, c.dtype)
    if backend == "dense":
        return least_eigenvalue_dense(c, betas)
    return least_eigenvalue_lanczos(c, betas, **kw)[0]


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


def reference_threshold(c0: LayeredCouplings, betas, backend: Backend = "dense",
                        refine: bool = True, **kw) -> Threshold:
    """λ* and its β for the untrained couplings ``c0`` (section 3.2's finite-size rule).

    The minimum is located on ``betas`` and, with ``refine``, polished by golden-section
    search (:func:`tapjax.linalg.golden_min`) between the neighbouring grid points.

    Raises:
      CouplingsError: NaN/Inf or subnormal couplings (names the block), or a non-finite curve.
    """
    c0 = check_couplings(c0, "reference_threshold")
    betas = np.asarray(betas, float)
    curve = np.asarray(least_eigenvalue(c0, betas, backend, **kw))
    if not np.all(np.isfinite(curve)):
        raise CouplingsError(f"reference_threshold: λ_min(I − M(β)) is not finite at β = "
                             f"{betas[~np.isfinite(curve)][:3].tolist()}; check the couplings")
    i = int(np.argmin(curve))
    lo, hi = betas[max(i - 1, 0)], betas[min(i + 1, len(betas) - 1)]
    best_b, best_v = betas[i], float(curve[i])
    if refine and hi > lo:
        f = lambda b: float(least_eigenvalue(c0, np.array([b]), backend, **kw)[0])
        x, v = golden_min(f, lo, hi, rtol=1e-6, max_iter=25)
        if v < best_v:
            best_b, best_v = x, v
    return Threshold(value=float(best_v), beta=float(best_b))


def critical_beta_grid(c: LayeredCouplings, betas, threshold: float, backend: Backend = "dense",
                       **kw) -> float:
    """Paper's grid method: the first grid β with λ_min(I − M(β)) ≤ ``threshold``.

    Raises:
      NoCrossingError: no grid point reaches the threshold. CouplingsError: bad couplings.
    """
    c = check_couplings(c, "critical_beta_grid")
    betas = np.asarray(betas, float)
    curve = np.asarray(least_eigenvalue(c, betas, backend, **kw))
    return float(betas[first_crossing_index(curve, threshold)])


__all__ = ["NoCrossingError", "Threshold", "check_couplings", "critical_beta_grid",
           "first_crossing_index", "golden_min", "lanczos_tridiagonal", "least_eigenvalue",
           "least_eigenvalue_dense", "least_eigenvalue_lanczos", "normalized", "reference_threshold",
           "tap_matrix", "tap_matvec"]
