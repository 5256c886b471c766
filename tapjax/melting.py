r"""Differentiable melting temperature: exact gradients of λ_min, log det and T_c (issue 17).

All derivatives are of the linearized-TAP matrix (eqs. 22–25)

.. math::
    A(\beta, W) = I - M(\beta) = I - \beta J + \beta^2\,\mathrm{diag}(r), \qquad
    r_i = \sum_\ell J_{i\ell}^2 .

**Least eigenvalue (Hellmann–Feynman).** For a simple least eigenvalue with unit eigenvector
:math:`v` (per layer :math:`v^{(k)}`), :math:`d\lambda_{\min} = v^\top dA\, v`, so for the bond
:math:`W^{(k)}_{ij}` between spin :math:`i` of layer :math:`k-1` and spin :math:`j` of layer
:math:`k`

.. math::
    \frac{\partial\lambda_{\min}}{\partial W^{(k)}_{ij}}
      = -2\beta\, v^{(k-1)}_i v^{(k)}_j + 2\beta^2 W^{(k)}_{ij}\,
        \big[(v^{(k-1)}_i)^2 + (v^{(k)}_j)^2\big], \qquad
    \frac{\partial\lambda_{\min}}{\partial\beta} = v^\top\big(-J + 2\beta\,\mathrm{diag}(r)\big)v .

**Critical β (implicit function theorem).** :math:`\beta_c(W, \lambda^*)` solves
:math:`\lambda_{\min}(\beta_c, W) = \lambda^*` (first crossing, section 3.2), hence

.. math::
    d\beta_c = -\frac{\langle \partial_W\lambda_{\min}, dW\rangle - d\lambda^*}
                    {\partial_\beta\lambda_{\min}}\Big|_{\beta_c}, \qquad
    dT_c = -T_c^2\, d\beta_c .

**Reference threshold (envelope theorem).** :math:`\lambda^* = \min_\beta
\lambda_{\min}(\beta, W_{\rm ref})` is attained at :math:`\beta^*` with
:math:`\partial_\beta\lambda_{\min} = 0`, so :math:`d\lambda^*/dW_{\rm ref} =
\partial_W\lambda_{\min}(\beta^*, W_{\rm ref})` at fixed :math:`\beta^*`
(:func:`reference_value`).

**Degenerate λ_min.** The gradient of a degenerate eigenvalue is not defined (only directional
derivatives are, and they are not linear). Every eigen-solve here also returns the gap
:math:`\lambda_2 - \lambda_1`; with ``degenerate="nan"`` (default) a gap below ``gap_tol``
(default :math:`\sqrt{\epsilon}` of the dtype) turns the derivative into NaN — a visible flag,
never a silently wrong number. ``degenerate="ignore"`` returns the Hellmann–Feynman value of
whichever eigenvector the solver returned.

Eigenvector backends (``backend``):
  * ``"dense"``: ``eigh`` of the :math:`N\times N` matrix (exact; :math:`O(N^2)` memory);
  * ``"lanczos"``: matrix-free Lanczos with full reorthogonalization
    (:func:`tapjax.linalg.lanczos_tridiagonal`), Ritz vector; :math:`O(\#W + mN)` memory;
  * ``"recurrence"`` (β_c only): inverse subspace iteration with the block :math:`LDL^\top`
    factors of the recurrence (eqs. 26–27; :func:`tapjax.levels.factorize` /
    :func:`tapjax.levels.solve`) at the shift :math:`\lambda^*`, where
    :math:`A - \lambda^* I` is singular at β_c by construction — the null vector costs about one
    more recurrence step; :math:`O(L n^2)` memory for the stored inverse Cholesky factors. The
    shift is put δ = 10³·eps·(1 + |λ*|) below λ* so that the leading pivots stay positive
    definite at the (non-PD) upper end of the search bracket; should one still fail, Lanczos is
    used instead (``lax.cond`` on ``BlockLDL.earlier_ok``).

Traced calls cannot reject non-finite weights (that needs concrete arrays); NaN/Inf weights give
a NaN T_c / λ_min, never a number.

The log-determinant (eq. 27) is differentiated by reverse-mode autodiff through
:func:`tapjax.recurrence.logdet` (exact: the same ``lax.scan`` of eigh pivots; it stores every
pivot's eigenvectors, :math:`O(\sum_k N_k^2)` memory), see :func:`log_det`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Literal, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tapjax import levels, linalg, recurrence, tap
from tapjax.reference import beta_grid
from tapjax.spin_model import (LayeredCouplings, couplings, join_layers, row_square_sums,
                               split_layers)

Backend = Literal["dense", "lanczos"]
CriticalBackend = Literal["dense", "lanczos", "recurrence"]
Degenerate = Literal["nan", "ignore"]


# --------------------------------------------------------------------------- options
@dataclasses.dataclass(frozen=True)
class EigenOptions:
    """Static options of the eigenvector solve (hashable: a ``custom_jvp`` nondiff argument).

    Attributes:
      backend: ``"dense"``, ``"lanczos"`` or (β_c only) ``"recurrence"``.
      num_iter: Lanczos Krylov dimension, or inverse-iteration sweeps for ``"recurrence"``.
      num_vectors: block size of the inverse subspace iteration (``"recurrence"``; ≥ 2 so that
        the gap is estimated).
      gap_tol: smallest gap λ2 − λ1 for which the derivative is returned (None: √eps of dtype).
      degenerate: ``"nan"`` (flag a degenerate λ_min by NaN derivatives) or ``"ignore"``.
      seed: PRNG seed of the Lanczos / subspace start vectors.
    """

    backend: str = "dense"
    num_iter: int = 120
    num_vectors: int = 4
    gap_tol: float | None = None
    degenerate: str = "nan"
    seed: int = 0

    def __post_init__(self):
        if self.backend not in ("dense", "lanczos", "recurrence"):
            raise ValueError(f"backend={self.backend!r}: use 'dense', 'lanczos' or 'recurrence'")
        if self.degenerate not in ("nan", "ignore"):
            raise ValueError(f"degenerate={self.degenerate!r}: use 'nan' or 'ignore'")
        if self.num_iter < 1 or self.num_vectors < 2:
            raise ValueError(f"num_iter={self.num_iter} must be ≥ 1 and num_vectors="
                             f"{self.num_vectors} ≥ 2")

    def tol(self, dtype) -> float:
        return float(np.sqrt(np.finfo(dtype).eps)) if self.gap_tol is None else float(self.gap_tol)


class LeastEigenpair(NamedTuple):
    """λ_min(I − M(β)) with its eigenvector.

    Attributes:
      value: λ1 (scalar).
      vector: unit eigenvector, flat ``(N,)`` in the layer order of eq. 2.
      gap: λ2 − λ1 (from the same solve; for Lanczos / subspace iteration an estimate).
      residual: ‖(I − M)v − λ1 v‖ (0 up to rounding for ``"dense"``).
    """

    value: jax.Array
    vector: jax.Array
    gap: jax.Array
    residual: jax.Array


# --------------------------------------------------------------------------- Hellmann–Feynman
def eigenvalue_derivatives(c: LayeredCouplings, beta, v: jax.Array) -> tuple[LayeredCouplings, jax.Array]:
    r"""Hellmann–Feynman derivatives of :math:`v^\top (I - M(\beta)) v` (module docstring).

    Args:
      c: couplings, blocks ``(N_{k-1}, N_k)``; beta: scalar; v: unit vector ``(N,)``.

    Returns:
      ``(dW, dbeta)``: ``dW`` a :class:`LayeredCouplings` of blocks
      :math:`-2\beta v_i v_j + 2\beta^2 W_{ij}(v_i^2 + v_j^2)`, and
      :math:`v^\top(-J + 2\beta\,\mathrm{diag}(r))v`.
    """
    vs = split_layers(c, v)
    r = join_layers(row_square_sums(c))
    grads, vjv = [], 0.0
    for k, w in enumerate(c.weights):
        a, b = vs[k], vs[k + 1]
        grads.append(-2.0 * beta * jnp.outer(a, b) + 2.0 * beta ** 2 * w * ((a * a)[:, None] + (b * b)[None, :]))
        vjv = vjv + 2.0 * a @ w @ b
    return LayeredCouplings(tuple(grads)), -vjv + 2.0 * beta * jnp.sum(r * v * v)


def _pairing(g: LayeredCouplings, dc: LayeredCouplings) -> jax.Array:
    return sum(jnp.vdot(a, b) for a, b in zip(g.weights, dc.weights))


# --------------------------------------------------------------------------- eigen-solvers
def _eigenpair_dense(c: LayeredCouplings, beta) -> LeastEigenpair:
    A = tap.tap_matrix(c, beta)
    lam, Q = jnp.linalg.eigh(A)
    return LeastEigenpair(lam[0], Q[:, 0], lam[1] - lam[0], jnp.zeros((), lam.dtype))


def _eigenpair_lanczos(c: LayeredCouplings, beta, num_iter: int, seed: int) -> LeastEigenpair:
    r = join_layers(row_square_sums(c))
    mv = lambda x: tap.tap_matvec(c, beta, x, r)
    v0 = jax.random.normal(jax.random.PRNGKey(seed), (c.num_spins,), c.dtype)
    m = min(num_iter, c.num_spins)
    alpha, b, V = linalg.lanczos_tridiagonal(mv, v0, m)
    theta, S = linalg.tridiagonal_eigh(alpha, b)
    x = V.T @ S[:, 0]
    x = x / jnp.linalg.norm(x)
    lam = jnp.vdot(x, mv(x))                     # Rayleigh quotient of the Ritz vector
    res = jnp.linalg.norm(mv(x) - lam * x)
    return LeastEigenpair(lam, x, theta[1] - theta[0], res)


def least_eigenpair(c: LayeredCouplings, beta, backend: Backend = "dense", *, num_iter: int = 120,
                    seed: int = 0) -> LeastEigenpair:
    """λ_min(I − M(β)) and its eigenvector (eqs. 22–25), no gradients (see :func:`least_eigenvalue`).

    Args:
      c: couplings; beta: scalar; backend: ``"dense"`` (eigh) or ``"lanczos"``.
      num_iter: Lanczos dimension (capped at N); seed: Lanczos start vector seed.
    """
    if backend == "dense":
        return _eigenpair_dense(c, beta)
    if backend == "lanczos":
        return _eigenpair_lanczos(c, beta, num_iter, seed)
    raise ValueError(f"backend={backend!r}: use 'dense' or 'lanczos'")


# ---- inverse subspace iteration on the block LDLᵀ factors (backend "recurrence")


def _eigenpair_recurrence(c: LayeredCouplings, beta, shift, num_iter: int, num_vectors: int,
                          seed: int) -> LeastEigenpair:
    """Eigenpair of I − M(β) nearest ``shift`` by inverse subspace iteration on the LDLᵀ factors.

    At β_c the first crossing makes λ_min the eigenvalue nearest λ* (all others lie above it),
    and ``(1 − λ*) I − M`` is singular to the search's precision, so a few sweeps converge.
    """
    # β_c is the first non-PD end of the search bracket, so λ_min sits a hair below λ*; shifting
    # by δ below keeps the leading pivots D_0..D_{L-1} positive definite (interlacing) while
    # λ_min stays the nearest eigenvalue (convergence factor ≈ δ / gap per sweep).
    eps = jnp.finfo(c.dtype).eps
    f = levels.factorize(c, beta, shift - 1e3 * eps * (1.0 + jnp.abs(shift)), "cholesky")
    r = join_layers(row_square_sums(c))

    def inverse_iteration(_):
        X = jax.random.normal(jax.random.PRNGKey(seed), (c.num_spins, num_vectors), c.dtype)
        X = jnp.linalg.qr(X)[0]
        for _ in range(num_iter):
            X = jnp.linalg.qr(levels.solve(f, X))[0]
        AX = tap.tap_matvec(c, beta, X, r)
        theta, S = jnp.linalg.eigh(X.T @ AX)        # Rayleigh–Ritz on the block
        x = X @ S[:, 0]
        ax = AX @ S[:, 0]
        return LeastEigenpair(theta[0], x, theta[1] - theta[0], jnp.linalg.norm(ax - theta[0] * x))

    # an earlier pivot that is not PD in floating point (long float32 chains): Lanczos instead
    return jax.lax.cond(f.earlier_ok, inverse_iteration,
                        lambda _: _eigenpair_lanczos(c, beta, 160, seed), None)


def _solve(opts: EigenOptions, c: LayeredCouplings, beta, shift=None) -> LeastEigenpair:
    if opts.backend == "recurrence":
        if shift is None:
            raise ValueError("backend='recurrence' needs the shift λ* (it is for β_c only); "
                             "use 'dense' or 'lanczos' for λ_min at an arbitrary β")
        return _eigenpair_recurrence(c, beta, shift, opts.num_iter, opts.num_vectors, opts.seed)
    return least_eigenpair(c, beta, opts.backend, num_iter=opts.num_iter, seed=opts.seed)


def _flag(opts: EigenOptions, pair: LeastEigenpair, dtype) -> jax.Array:
    """1 where the derivative is defined, NaN where λ_min is (numerically) degenerate."""
    if opts.degenerate == "ignore":
        return jnp.ones((), dtype)
    return jnp.where(pair.gap >= opts.tol(dtype), 1.0, jnp.nan).astype(dtype)


# --------------------------------------------------------------------------- λ_min(β, W)
@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _least_eigenvalue(opts: EigenOptions, c: LayeredCouplings, beta):
    return _solve(opts, c, beta).value


@_least_eigenvalue.defjvp
def _least_eigenvalue_jvp(opts, primals, tangents):
    c, beta = primals
    dc, dbeta = tangents
    pair = _solve(opts, c, beta)
    gW, gb = eigenvalue_derivatives(c, beta, pair.vector)
    flag = _flag(opts, pair, c.dtype)
    return pair.value, flag * (_pairing(gW, dc) + gb * dbeta)


def least_eigenvalue(weights, beta, *, backend: Backend = "dense", num_iter: int = 120,
                     gap_tol: float | None = None, degenerate: Degenerate = "nan",
                     seed: int = 0) -> jax.Array:
    r"""Differentiable λ_min(I − M(β)) (eqs. 22–25) in W and β: ``jax.grad`` / ``jvp`` / ``vmap``.

    The derivative is Hellmann–Feynman's :math:`v^\top dA\,v` (module docstring); NaN where
    λ2 − λ1 < ``gap_tol`` (``degenerate="nan"``).

    Args:
      weights: ``[W^(1), …]`` or :class:`LayeredCouplings` (blocks ``(N_{k-1}, N_k)``).
      beta: scalar inverse temperature.
      backend: ``"dense"`` (eigh) or ``"lanczos"`` (Ritz vector, ``num_iter`` steps).
    """
    c = couplings(weights, name="least_eigenvalue: weights", check_finite=False)
    opts = EigenOptions(backend, num_iter, 4, gap_tol, degenerate, seed)
    if backend not in ("dense", "lanczos"):
        raise ValueError(f"backend={backend!r}: use 'dense' or 'lanczos'")
    return _least_eigenvalue(opts, c, jnp.asarray(beta, c.dtype))


def log_det(weights, beta, shift=0.0) -> jax.Array:
    r"""Differentiable :math:`\log|\det((1-\text{shift})I - M(\beta))|` by eq. 27.

    The value is :func:`tapjax.recurrence.logdet`; ``jax.grad`` differentiates its ``lax.scan``
    of eigh pivots exactly (reverse mode stores each pivot's eigendecomposition: memory
    :math:`O(\sum_k N_k^2)`, time ≈ 3× the forward). :math:`\partial/\partial W_{ij} =
    -2\beta (A^{-1})_{ji} + 2\beta^2 W_{ij}[(A^{-1})_{ii} + (A^{-1})_{jj}]` is checked against
    that closed form in the tests. Pivot eigenvalues must be distinct (true for generic W at
    β > 0; at β = 0 every pivot is a multiple of I and the eigh derivative is NaN).
    """
    c = couplings(weights, name="log_det: weights", check_finite=False)
    return recurrence.logdet(c, jnp.asarray(beta, c.dtype), jnp.asarray(shift, c.dtype))


# --------------------------------------------------------------------------- β_c(W, λ*)
class CriticalPoint(NamedTuple):
    """Diagnostics of the crossing (:func:`critical_point`).

    Attributes:
      beta: β_c (NaN if there is no crossing in range).
      crossed: whether the search found a crossing.
      slope: ∂λ_min/∂β at β_c (negative at a first crossing; near 0 = tangential, where
        dβ_c/dW diverges — e.g. the reference net against its own λ*).
      gap: λ2 − λ1 at β_c; residual: eigen-solve residual; num_tests: recurrence evaluations.
      status: the search's :class:`tapjax.recurrence.SearchStatus` code (0 = converged to rtol).
    """

    beta: jax.Array
    crossed: jax.Array
    slope: jax.Array
    gap: jax.Array
    residual: jax.Array
    num_tests: jax.Array
    status: jax.Array


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    """Static options of the forward search (see :func:`tapjax.recurrence.critical_beta_search`)."""

    rtol: float = 1e-6
    num_scan: int = 16
    max_iter: int = 60
    method: str = "secant"


def _search(sopts: SearchOptions, c, thr, beta_max, hint):
    r = recurrence.critical_beta_search(c, thr, beta_max, sopts.rtol, hint, num_scan=sopts.num_scan,
                                        max_iter=sopts.max_iter, method=sopts.method)
    return jnp.where(r.crossed, r.beta, jnp.nan), r


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _critical_beta(sopts: SearchOptions, opts: EigenOptions, c, thr, beta_max, hint):
    return _search(sopts, c, thr, beta_max, hint)[0]


@_critical_beta.defjvp
def _critical_beta_jvp(sopts, opts, primals, tangents):
    c, thr, beta_max, hint = primals
    dc, dthr, _, _ = tangents
    beta = _critical_beta(sopts, opts, c, thr, beta_max, hint)
    b = jnp.where(jnp.isfinite(beta), beta, 0.5 * beta_max)   # keep the solve finite; flagged below
    pair = _solve(opts, c, b, thr)
    gW, gb = eigenvalue_derivatives(c, b, pair.vector)
    flag = _flag(opts, pair, c.dtype) * jnp.where(jnp.isfinite(beta), 1.0, jnp.nan).astype(c.dtype)
    return beta, flag * (-(_pairing(gW, dc) - dthr) / gb)


def _prepare(weights, threshold, beta_max, hint, rtol, backend, num_iter, num_vectors, gap_tol,
             degenerate, num_scan, max_iter, method, seed, name):
    c = couplings(weights, name=f"{name}: weights", check_finite=False)
    if not jnp.issubdtype(c.dtype, jnp.floating):
        raise ValueError(f"{name}: weights must be floating point")
    if rtol is None:
        rtol = 1e-6 if c.dtype == jnp.float32 else 1e-11
    sopts = SearchOptions(float(rtol), int(num_scan), int(max_iter), method)
    opts = EigenOptions(backend, num_iter, num_vectors, gap_tol, degenerate, seed)
    if beta_max is None:
        raise ValueError(f"{name}: pass beta_max (the search range (0, beta_max]), e.g. 3 × the "
                         "reference β*, or a ReferenceLevel / Threshold as reference")
    thr = jnp.asarray(threshold, c.dtype)
    bmax = jnp.asarray(beta_max, c.dtype)
    h = jnp.asarray(jnp.nan if hint is None else hint, c.dtype)
    return c, thr, bmax, h, sopts, opts


def critical_beta_fn(weights, threshold, beta_max, *, hint=None, rtol: float | None = None,
                     backend: CriticalBackend = "dense", num_iter: int | None = None,
                     num_vectors: int = 4, gap_tol: float | None = None,
                     degenerate: Degenerate = "nan", num_scan: int = 16, max_iter: int = 60,
                     method: Literal["secant", "bisect"] = "secant", seed: int = 0) -> jax.Array:
    r"""Differentiable β_c: the first β with λ_min(I − M(β)) ≤ λ* (section 3.2), a ``custom_jvp``.

    Forward: :func:`tapjax.recurrence.critical_beta_search` (the library's rule; NaN when there is
    no crossing in (0, ``beta_max``]). Derivative: the implicit function theorem at the crossing,
    :math:`d\beta_c = -(\langle\partial_W\lambda_{\min}, dW\rangle - d\lambda^*)/\partial_\beta
    \lambda_{\min}`, with the eigenvector at β_c from ``backend`` (one extra eigen-solve, no
    differentiation through the search). Works with ``jax.grad``, ``jvp``, ``jit`` and ``vmap``
    (over a leading checkpoint axis of ``weights``), in float32 and float64.

    Args:
      weights: ``[W^(1), …, W^(L)]`` or :class:`LayeredCouplings`.
      threshold: λ* (differentiable; e.g. :func:`reference_value`).
      beta_max: search range. hint: an extra scan point (e.g. the reference β*).
      rtol: relative precision of the search (default 1e-6 in float32, 1e-11 in float64: the
        derivative is evaluated at the returned β, so its relative error is ≈ rtol).
      backend: eigenvector at β_c: ``"dense"`` (small N), ``"lanczos"`` or ``"recurrence"``
        (inverse iteration on the LDLᵀ factors — the fast one for large N).
      num_iter: Lanczos dimension (default 160) or inverse-iteration sweeps (default 4).
      num_vectors: subspace size of ``"recurrence"``. gap_tol, degenerate: see module docstring.
      num_scan, max_iter, method: forwarded to the search.

    Returns:
      β_c, a scalar array; its derivative is NaN at a degenerate λ_min or without a crossing.
    """
    if num_iter is None:
        num_iter = 4 if backend == "recurrence" else 160
    c, thr, bmax, h, sopts, opts = _prepare(weights, threshold, beta_max, hint, rtol, backend,
                                            num_iter, num_vectors, gap_tol, degenerate, num_scan,
                                            max_iter, method, seed, "critical_beta_fn")
    return _critical_beta(sopts, opts, c, thr, bmax, h)


def critical_point(weights, threshold, beta_max, *, hint=None, rtol: float | None = None,
                   backend: CriticalBackend = "dense", num_iter: int | None = None,
                   num_vectors: int = 4, num_scan: int = 16, max_iter: int = 60,
                   method: Literal["secant", "bisect"] = "secant", seed: int = 0) -> CriticalPoint:
    """β_c with the quantities that decide whether dβ_c/dW is trustworthy (:class:`CriticalPoint`)."""
    if num_iter is None:
        num_iter = 4 if backend == "recurrence" else 160
    c, thr, bmax, h, sopts, opts = _prepare(weights, threshold, beta_max, hint, rtol, backend,
                                            num_iter, num_vectors, None, "ignore", num_scan,
                                            max_iter, method, seed, "critical_point")
    beta, r = _search(sopts, c, thr, bmax, h)
    b = jnp.where(jnp.isfinite(beta), beta, 0.5 * bmax)
    pair = _solve(opts, c, b, thr)
    _, slope = eigenvalue_derivatives(c, b, pair.vector)
    status = getattr(r, "status", jnp.where(r.crossed, 0, 1))
    return CriticalPoint(beta, r.crossed, slope, pair.gap, pair.residual, r.num_tests, status)


# --------------------------------------------------------------------------- reference λ*
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ReferenceLevel:
    """The section-3.2 threshold as a differentiable function of the reference (t = 0) weights.

    Attributes:
      couplings: reference couplings W_ref (a pytree leaf set: gradients flow to them).
      beta: β*, the minimizer of λ_min(β; W_ref) (a stationary point: no gradient flows
        through it, which is exact by the envelope theorem).
    """

    couplings: LayeredCouplings
    beta: jax.Array


@functools.partial(jax.jit, static_argnames=("backend", "num_iter"))
def _slope(c, beta, backend, num_iter):
    """∂λ_min/∂β (Hellmann–Feynman) at β."""
    return eigenvalue_derivatives(c, beta, least_eigenpair(c, beta, backend, num_iter=num_iter).vector)[1]


def reference_level(ref_weights, betas=None, *, beta_max: float | None = None, num_betas: int = 64,
                    backend: Backend = "dense", num_iter: int = 160, newton_steps: int = 8) -> ReferenceLevel:
    r"""Locates β* = argmin_β λ_min(β; W_ref) (section 3.2) precisely enough to differentiate λ*.

    :func:`tapjax.tap.reference_threshold` brackets the minimum on ``betas`` (default
    ``linspace(0, beta_max, num_betas + 1)[1:]``); then secant steps on the Hellmann–Feynman slope
    :math:`\partial_\beta\lambda_{\min}` drive it to a stationary point (the envelope theorem needs
    :math:`\partial_\beta\lambda_{\min}(\beta^*) = 0`; an error δβ* gives a relative gradient error
    ≈ δβ*·∂²λ/∂β∂W / ∂λ/∂W). Not traceable (Python floats); call it once per reference.
    """
    c = couplings(ref_weights, name="reference_level: ref_weights")
    if betas is None:
        if beta_max is None:
            raise ValueError("reference_level: pass betas or beta_max")
        betas = beta_grid(beta_max, num_betas)
    kw = {"num_iter": num_iter} if backend == "lanczos" else {}
    thr = tap.reference_threshold(c, betas, backend, **kw)
    slope = lambda b: _slope(c, jnp.asarray(b, c.dtype), backend, num_iter)
    b0 = float(thr.beta)
    b1 = b0 * (1.0 + 1e-4)
    s0, s1 = float(slope(b0)), float(slope(b1))
    for _ in range(newton_steps):
        if s1 == s0 or abs(b1 - b0) < 4 * np.finfo(c.dtype).eps * b1:
            break
        b0, b1 = b1, b1 - s1 * (b1 - b0) / (s1 - s0)
        s0, s1 = s1, float(slope(b1))
    best = b1 if abs(s1) <= abs(s0) else b0
    if not (abs(best - thr.beta) <= 0.1 * thr.beta):   # secant ran away: keep the golden value
        best = float(thr.beta)
    return ReferenceLevel(c, jnp.asarray(best, c.dtype))


def reference_value(ref: ReferenceLevel, *, backend: Backend = "dense", num_iter: int = 160,
                    degenerate: Degenerate = "nan") -> jax.Array:
    r""":math:`\lambda^* = \lambda_{\min}(\beta^*; W_{\rm ref})`, differentiable in ``ref.couplings``.

    Envelope theorem: at the minimum over β, :math:`d\lambda^*/dW_{\rm ref} =
    \partial_W\lambda_{\min}(\beta^*)` — β* is held fixed (``stop_gradient``).
    """
    return least_eigenvalue(ref.couplings, jax.lax.stop_gradient(ref.beta), backend=backend,
                            num_iter=num_iter, degenerate=degenerate)


def melting_temperature(weights, reference, *, beta_max=None, hint=None, rtol: float | None = None,
                        backend: CriticalBackend = "dense", reference_backend: Backend = "dense",
                        num_iter: int | None = None, gap_tol: float | None = None,
                        degenerate: Degenerate = "nan", num_scan: int = 16, max_iter: int = 60,
                        method: Literal["secant", "bisect"] = "secant") -> jax.Array:
    r"""Differentiable :math:`T_c = 1/\beta_c` (section 3.2): ``jax.grad(melting_temperature)`` works.

    Args:
      weights: ``[W^(1), …]`` or :class:`LayeredCouplings` (the net at time t).
      reference: the threshold λ*, one of
        * :class:`ReferenceLevel` (from :func:`reference_level`): λ* = λ_min(β*; W_ref) with
          gradients to ``reference.couplings`` (envelope theorem); β* is the scan hint;
        * :class:`tapjax.tap.Threshold`: constant λ* (stop-gradient), its β as the hint;
        * a number or array: λ* itself (differentiable as an input).
      beta_max: search range; default 3 × the reference β* when known.
      backend: eigenvector at β_c (``"dense"``, ``"lanczos"``, ``"recurrence"``);
        reference_backend: for λ* (``"dense"`` or ``"lanczos"``).
      Others: see :func:`critical_beta_fn`.

    Returns:
      T_c (scalar); NaN if there is no crossing in (0, ``beta_max``], NaN derivative at a
      degenerate λ_min.
    """
    if isinstance(reference, ReferenceLevel):
        thr = reference_value(reference, backend=reference_backend,
                              num_iter=160 if num_iter is None else num_iter, degenerate=degenerate)
        ref_beta = reference.beta
    elif isinstance(reference, tap.Threshold):
        thr, ref_beta = reference.value, reference.beta
    else:
        thr, ref_beta = reference, None
    if hint is None:
        hint = ref_beta if ref_beta is None or isinstance(ref_beta, float) else jax.lax.stop_gradient(ref_beta)
    if beta_max is None and ref_beta is not None:
        if isinstance(ref_beta, jax.core.Tracer):
            raise ValueError("melting_temperature: pass beta_max when the reference β* is traced")
        beta_max = 3.0 * float(ref_beta)
    beta = critical_beta_fn(weights, thr, beta_max, hint=hint, rtol=rtol, backend=backend,
                            num_iter=num_iter, gap_tol=gap_tol, degenerate=degenerate,
                            num_scan=num_scan, max_iter=max_iter, method=method)
    return 1.0 / beta


# --------------------------------------------------------------------------- attribution
class Attribution(NamedTuple):
    r"""Which couplings set T_c: first-order contributions :math:`|W \odot \partial T_c/\partial W|`.

    Attributes:
      T_c: the melting temperature.
      grad: :math:`\partial T_c/\partial W^{(k)}` per block ``(N_{k-1}, N_k)``.
      per_weight: :math:`|W^{(k)}_{ij}\,\partial T_c/\partial W^{(k)}_{ij}|` per block.
      per_neuron: per spin layer ``k = 0..L`` ``(N_k,)``: the sum of ``per_weight`` over the bonds
        touching the spin (incoming and outgoing; layer 0 = input pixels).
    """

    T_c: jax.Array
    grad: tuple[jax.Array, ...]
    per_weight: tuple[jax.Array, ...]
    per_neuron: tuple[jax.Array, ...]


def attribution(weights, reference, **kw: Any) -> Attribution:
    """∂T_c/∂W and its per-weight / per-neuron maps (:class:`Attribution`); ``kw`` → :func:`melting_temperature`.

    The gradient is taken at fixed reference (``reference`` a :class:`ReferenceLevel` contributes
    no gradient here: only ``weights`` are differentiated).
    """
    c = couplings(weights, name="attribution: weights", check_finite=False)
    T, g = jax.value_and_grad(lambda cc: melting_temperature(cc, reference, **kw))(c)
    pw = tuple(jnp.abs(w * gw) for w, gw in zip(c.weights, g.weights))
    L = len(pw)
    pn = tuple((pw[k - 1].sum(0) if k > 0 else 0.0) + (pw[k].sum(1) if k < L else 0.0)
               for k in range(L + 1))
    return Attribution(T, g.weights, pw, pn)


@dataclasses.dataclass
class RunAttribution:
    r"""Per-checkpoint attribution maps of a training run (:func:`attribute_run`).

    At t = 0 the net *is* the reference: its β_c is the tangency β* (∂λ_min/∂β = 0), where
    dβ_c/dW diverges. Since :math:`\partial T_c/\partial W = T_c^2\,\partial_W\lambda_{\min} /
    \partial_eta\lambda_{\min}`, every map is the Hellmann–Feynman map
    :math:`|W\odot\partial_W\lambda_{\min}|` at β_c times one scalar; at t = 0 we report that map
    at β* (what sets λ*, the envelope gradient) with ``quantity[0] = "lambda_star"``; later
    checkpoints report :math:`|W\odot\partial T_c/\partial W|` (``"T_c"``).

    Attributes:
      t, step, val_error, T_c, slope (∂λ_min/∂β at β_c), gap: ``(T,)`` arrays.
      quantity: per checkpoint, ``"lambda_star"`` or ``"T_c"``.
      per_neuron: per spin layer k = 0..L, ``(T, N_k)`` (layer 0 = input pixels).
      per_layer: ``(T, L)`` sum of the per-weight map over each block.
      threshold, threshold_beta: λ* and β* of the reference.
      paths: checkpoint files.
    """

    t: np.ndarray
    step: np.ndarray
    val_error: np.ndarray
    T_c: np.ndarray
    slope: np.ndarray
    gap: np.ndarray
    quantity: list
    per_neuron: list
    per_layer: np.ndarray
    threshold: float
    threshold_beta: float
    paths: list


def attribute_run(workdir: str, indices: Sequence[int] | None = None, *,
                  backend: CriticalBackend = "recurrence", reference_backend: Backend = "lanczos",
                  num_betas: int = 256, rtol: float | None = None, dtype=jnp.float32) -> RunAttribution:
    r"""Attribution maps of ∂T_c/∂W for checkpoints of a run written by ``experiments/train.py``.

    λ* and β* follow the section-3.2 rule exactly as :func:`tapjax.analysis.analyze_run` does
    (:func:`tapjax.tap.reference_threshold` on ``linspace(0, 2β_c^MSK, num_betas+1)[1:]``),
    then T_c and its gradient by :func:`attribution` (fixed reference).

    Args:
      workdir: run directory (``checkpoints/ckpt_*.npz``); read only.
      indices: checkpoint indices (negative allowed; default: all). The first checkpoint is the
        reference.
      backend: eigenvector at β_c; reference_backend: λ_min backend for λ*.
    """
    from tapjax import checkpoints as ckpt
    from tapjax import msk

    paths = ckpt.list_checkpoints(workdir)
    if not paths:
        raise ckpt.CheckpointError(f"{workdir}: no checkpoints under {workdir}/checkpoints")
    def load(p):
        params, meta = ckpt.load_checkpoint(p)
        return couplings(ckpt.weights_from_params(params, p), name=p, dtype=dtype), meta

    c0, meta0 = load(paths[0])
    scale = float(meta0.get("config", {}).get("model", {}).get("init_scale", 2.0))
    bmax = 2.0 * msk.critical_beta(c0.sizes, scale)
    betas = beta_grid(bmax, num_betas)
    kw = {"num_iter": 120} if reference_backend == "lanczos" else {}
    thr = tap.reference_threshold(c0, betas, reference_backend, **kw)
    idx = range(len(paths)) if indices is None else sorted({i % len(paths) for i in indices})
    grad_fn = jax.jit(lambda cc: attribution(cc, thr.value, beta_max=bmax, hint=thr.beta, rtol=rtol,
                                             backend=backend))
    cols = {k: [] for k in ("t", "step", "val_error", "T_c", "slope", "gap", "quantity", "pn", "pl", "paths")}
    for i in idx:
        c, meta = (c0, meta0) if i == 0 else load(paths[i])
        if i == 0:
            b = jnp.asarray(thr.beta, c.dtype)
            pair = least_eigenpair(c, b, reference_backend, num_iter=160)
            g, slope = eigenvalue_derivatives(c, b, pair.vector)
            pw = [jnp.abs(w * gw) for w, gw in zip(c.weights, g.weights)]
            T, gap, q = 1.0 / thr.beta, pair.gap, "lambda_star"
        else:
            a = grad_fn(c)
            pw, T, q = list(a.per_weight), a.T_c, "T_c"
            cp = critical_point(c, thr.value, bmax, hint=thr.beta, rtol=rtol, backend=backend)
            slope, gap = cp.slope, cp.gap
        L = len(pw)
        pn = [np.asarray((pw[k - 1].sum(0) if k > 0 else 0.0) + (pw[k].sum(1) if k < L else 0.0))
              for k in range(L + 1)]
        for k, v in (("t", meta.get("t", np.nan)), ("step", meta.get("step", -1)),
                     ("val_error", meta.get("val_error", np.nan)), ("T_c", float(T)),
                     ("slope", float(slope)), ("gap", float(gap)), ("quantity", q), ("pn", pn),
                     ("pl", [float(jnp.sum(x)) for x in pw]), ("paths", paths[i])):
            cols[k].append(v)
    per_neuron = [np.stack([pn[k] for pn in cols["pn"]]) for k in range(c0.num_layers + 1)]
    return RunAttribution(np.asarray(cols["t"], float), np.asarray(cols["step"]),
                          np.asarray(cols["val_error"], float), np.asarray(cols["T_c"]),
                          np.asarray(cols["slope"]), np.asarray(cols["gap"]), cols["quantity"],
                          per_neuron, np.asarray(cols["pl"]), float(thr.value), float(thr.beta),
                          cols["paths"])


__all__ = ["Attribution", "CriticalPoint", "EigenOptions", "LeastEigenpair", "ReferenceLevel",
           "RunAttribution", "SearchOptions", "attribute_run", "attribution", "critical_beta_fn", "critical_point",
           "eigenvalue_derivatives", "least_eigenpair", "least_eigenvalue", "log_det",
           "melting_temperature", "reference_level", "reference_value"]
