r"""Generic numerics used by the physics modules (no physics here).

* :func:`lanczos`: symmetric Lanczos with full (twice-applied) reorthogonalization and
  breakdown detection, jittable (fixed shapes); :func:`lanczos_tridiagonal` is the
  ``(alpha, beta, V)`` form. :func:`ritz_extreme` gives the smallest/largest Ritz value with
  its residual bound.
  :func:`lanczos_largest`: the largest eigenpair, stopped at a relative residual bound.
* :func:`tridiagonal_matrix`, :func:`tridiagonal_eigh`: the Lanczos matrix :math:`T_k`.
* :func:`golden_min`: golden-section minimization of a unimodal scalar function.
* :func:`bisect`: bisection on a monotone predicate (host loop).
* :func:`scan_then_refine`: a bracketing phase followed by a refinement phase as one
  ``lax.while_loop`` that evaluates the (expensive) test function once per iteration.
* The option vocabulary shared by the eigen-solvers and root searches (:data:`Backend`,
  :data:`RootMethod`) and :func:`resolve_backend` with the dense/Lanczos switch
  :data:`DENSE_MAX_SPINS`.

**Lanczos breakdown.** Once the Krylov space :math:`\mathcal K_j(A, v_0)` is invariant (its
dimension is at most N, and at most the number of distinct eigenvalues of A, e.g.
:math:`2\,\mathrm{rank}(W)+1` for a low-rank bond matrix), the new residual
:math:`\beta_j = \|w_j\|` is rounding noise and normalizing it produces a vector that is *not*
orthogonal to the basis: the recurrence then runs on noise (spurious Ritz values far outside
the spectrum, or NaN). :func:`lanczos` detects the first
:math:`\beta_j \le \mathrm{tol}\cdot\|T_j\|` (default ``tol`` :data:`BREAKDOWN_RTOL` ×
machine epsilon × :math:`\sqrt N`, with :math:`\|T_j\|` estimated by the largest
:math:`|\alpha_i| + \beta_i + \beta_{i-1}`), records the number of valid steps
``size = j + 1`` and runs the remaining (fixed-count, jittable) steps on a zero vector; the
remaining rows are padded so that every fixed-shape consumer still gets the right extreme
Ritz values: trailing diagonal entries equal :math:`\alpha_0 = v_0^\top A v_0`, which lies
inside :math:`[\theta_{\min}(T_k), \theta_{\max}(T_k)]` (it is a Rayleigh quotient of
:math:`T_k`), with zero coupling, so the padded matrix has the eigenvalues of :math:`T_k` plus
interior copies of :math:`\alpha_0`. The number of steps is also capped at N (static).
"""

from __future__ import annotations

from typing import Any, Callable, Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp
import numpy as np

# --------------------------------------------------------------------------- option vocabulary
Backend = Literal["dense", "lanczos", "auto"]
"""Eigen-solver for λ_min / λ_max: ``"dense"`` (form the N × N matrix, ``eigvalsh``; exact,
memory O(N²), time O(N³)), ``"lanczos"`` (matrix-free Krylov, memory O(#weights + mN)),
``"auto"`` (dense for N ≤ :data:`DENSE_MAX_SPINS`, else Lanczos)."""

RootMethod = Literal["secant", "bisect", "smooth"]
"""Refinement of a bracketed crossing: ``"secant"`` (safeguarded Illinois regula falsi on a
continuous margin), ``"bisect"`` (bisection on a sign test) or ``"smooth"`` (the secant on the
smooth margin λ_min − λ* from inverse iterations with the PD test's own factors,
:func:`tapjax.levels.critical_beta_smooth`: about half the PD tests on deep chains, each
dearer, so no faster on CPU)."""

DENSE_MAX_SPINS = 2048
"""``backend="auto"`` diagonalizes densely up to this many spins (a 2048² float32 matrix is
16 MiB and one ``eigvalsh`` takes ~1 s on one CPU core); Lanczos above."""

BREAKDOWN_RTOL = 16.0
"""Lanczos breakdown when β_j ≤ BREAKDOWN_RTOL · eps · √N · ‖T_j‖ (see module docstring)."""


def _choices(alias) -> tuple[str, ...]:
    return get_args(alias)


def resolve_backend(backend: str, num_spins: int, *, where: str = "backend") -> str:
    """``"dense"`` or ``"lanczos"`` for a :data:`Backend` choice and N spins.

    Raises:
      ValueError: ``backend`` is not one of :data:`Backend`.
    """
    if backend not in _choices(Backend):
        raise ValueError(f"{where}={backend!r}: use one of {', '.join(map(repr, _choices(Backend)))}")
    if backend == "auto":
        return "dense" if num_spins <= DENSE_MAX_SPINS else "lanczos"
    return backend


def check_root_method(method: str, *, where: str = "method") -> str:
    """Validates a :data:`RootMethod` choice (returns it)."""
    if method not in _choices(RootMethod):
        raise ValueError(f"{where}={method!r}: use one of {', '.join(map(repr, _choices(RootMethod)))}")
    return method


# --------------------------------------------------------------------------- Lanczos
class Lanczos(NamedTuple):
    """A Lanczos decomposition :math:`A V_k^\\top \\approx V_k^\\top T_k + \\beta_{k-1} v_k e_k^\\top`.

    Attributes:
      alpha: ``(m,)`` diagonal of T; entries at index ≥ ``size`` are padding (= ``alpha[0]``).
      beta: ``(m,)``; ``beta[j]`` couples Lanczos vectors j and j+1, ``beta[size-1]`` is the
        residual norm (for error bounds), entries at index ≥ ``size`` are 0.
      vectors: ``(m, N)`` orthonormal Lanczos vectors (rows ≥ ``size`` are 0).
      size: number of valid steps k (int32 scalar), ``m`` unless the recurrence broke down.
      breakdown: whether it stopped early on an invariant Krylov space (bool scalar).
    """

    alpha: jax.Array
    beta: jax.Array
    vectors: jax.Array
    size: jax.Array
    breakdown: jax.Array


def _krylov_setup(v0: jax.Array, num_iter: int, tol, what: str):
    """``(N, m = min(num_iter, N), dtype, breakdown tol)`` of a Lanczos run; ``what`` names the
    argument in the error."""
    n = v0.shape[0]
    m = int(min(int(num_iter), n))
    if m < 1:
        raise ValueError(f"{what}={num_iter} must be ≥ 1 (N = {n})")
    if tol is None:
        tol = BREAKDOWN_RTOL * float(jnp.finfo(v0.dtype).eps) * float(np.sqrt(n))
    return n, m, v0.dtype, tol


def lanczos(matvec: Callable[[jax.Array], jax.Array], v0: jax.Array, num_iter: int,
            tol: float | None = None) -> Lanczos:
    """Up to ``num_iter`` Lanczos steps with full reorthogonalization and breakdown handling.

    Args:
      matvec: symmetric linear map ``(N,) -> (N,)``.
      v0: start vector ``(N,)`` (normalized inside; should be random).
      num_iter: maximum Krylov dimension m (static); capped at N.
      tol: breakdown when ``β_j ≤ tol · ‖T_j‖`` (default ``BREAKDOWN_RTOL · eps · √N``).

    Returns:
      :class:`Lanczos` with arrays of length ``min(num_iter, N)``.
    """
    n, m, dtype, tol = _krylov_setup(v0, num_iter, tol, "lanczos: num_iter")
    hi = jax.lax.Precision.HIGHEST
    V = jnp.zeros((m, n), dtype)
    v = v0 / jnp.linalg.norm(v0)

    def body(j, state):
        V, alpha, beta, v, v_prev, b_prev, anorm, size, done = state
        V = V.at[j].set(v)                      # v = 0 once broken down: the tail stays 0
        w = matvec(v) - b_prev * v_prev
        a = jnp.vdot(v, w)
        w = w - a * v
        for _ in range(2):  # full reorthogonalization, twice is enough (rows > j are zero)
            w = w - jnp.matmul(V.T, jnp.matmul(V, w, precision=hi), precision=hi)
        b = jnp.linalg.norm(w)
        anorm = jnp.maximum(anorm, jnp.abs(a) + b + b_prev)
        size = jnp.where(done, size, j + 1)
        done = done | (b <= tol * anorm)
        v_next = jnp.where(done, 0.0, w / jnp.where(done, 1.0, b))
        return (V, alpha.at[j].set(a), beta.at[j].set(b), v_next, v,
                jnp.where(done, 0.0, b), anorm, size, done)

    zero = jnp.zeros((), dtype)
    init = (V, jnp.zeros(m, dtype), jnp.zeros(m, dtype), v, jnp.zeros_like(v), zero, zero,
            jnp.int32(0), jnp.asarray(False))
    # a fixed trip count (no early exit): under vmap a while_loop would select the whole
    # (m, N) basis every step; after a breakdown the remaining steps work on zeros
    V, alpha, beta, *_, size, done = jax.lax.fori_loop(0, m, body, init)
    idx = jnp.arange(m)
    alpha = jnp.where(idx < size, alpha, alpha[0])
    beta = jnp.where(idx < size, beta, 0.0)
    return Lanczos(alpha, beta, V, size, done)


class RitzTop(NamedTuple):
    """Result of :func:`lanczos_largest`.

    Attributes:
      value: largest Ritz value θ (a lower bound on λ_max(A): Ritz values lie in the spectrum's hull).
      error: residual bound ``|β_k s_k|``: an eigenvalue of A lies in ``[θ, θ + error]``.
      vector: ``(N,)`` unit Ritz vector.
      num_steps: Lanczos steps taken (int32); breakdown: stopped on an invariant Krylov space.
    """

    value: jax.Array
    error: jax.Array
    vector: jax.Array
    num_steps: jax.Array
    breakdown: jax.Array


def lanczos_largest(matvec: Callable[[jax.Array], jax.Array], v0: jax.Array, max_iter: int,
                    rtol: float = 1e-6, tol: float | None = None) -> RitzTop:
    r"""Largest eigenpair of a symmetric map by Lanczos, stopped as soon as the residual bound
    :math:`|eta_k s_k| \le` ``rtol`` · θ (or at ``max_iter`` steps, or at a breakdown).

    Full (twice-applied) reorthogonalization and the breakdown rule of :func:`lanczos`; the
    tridiagonal :math:`T_k` is diagonalized after every step (``max_iter``³ flops, negligible
    next to a mat-vec at large N). A ``while_loop``: under ``vmap`` it runs until every member
    has stopped (the stopped ones keep their result).

    Args:
      matvec: symmetric ``(N,) -> (N,)``; v0: start vector (normalized inside);
      max_iter: most steps (static, capped at N); rtol: stop when ``error ≤ rtol·|θ|``;
      tol: breakdown tolerance as in :func:`lanczos`.
    """
    n, m, dtype, tol = _krylov_setup(v0, max_iter, tol, "lanczos_largest: max_iter")
    hi = jax.lax.Precision.HIGHEST
    idx = jnp.arange(m)

    def ritz(alpha, beta, j):
        """Top Ritz pair of T_{j+1} (rows > j padded, uncoupled, strictly below every α_i ≤ θ)."""
        valid = idx <= j
        a_min = jnp.min(jnp.where(valid, alpha, jnp.inf))
        pad = a_min - 1.0 - jnp.max(jnp.where(valid, jnp.abs(alpha), 0.0))
        a = jnp.where(valid, alpha, pad)
        off = jnp.where(idx[:-1] < j, beta[:-1], 0.0)
        ev, S = jnp.linalg.eigh(jnp.diag(a) + jnp.diag(off, 1) + jnp.diag(off, -1))
        return ev[-1], jnp.abs(beta[j] * S[j, -1]), S[:, -1]

    def cond(st):
        j, done = st[0], st[-1]
        return (j < m) & ~done

    def body(st):
        j, V, alpha, beta, v, v_prev, b_prev, anorm, brk, _ = st
        V = V.at[j].set(v)
        w = matvec(v) - b_prev * v_prev
        a = jnp.vdot(v, w)
        w = w - a * v
        for _ in range(2):
            w = w - jnp.matmul(V.T, jnp.matmul(V, w, precision=hi), precision=hi)
        b = jnp.linalg.norm(w)
        anorm = jnp.maximum(anorm, jnp.abs(a) + b + b_prev)
        brk = b <= tol * anorm
        alpha, beta = alpha.at[j].set(a), beta.at[j].set(jnp.where(brk, 0.0, b))
        th, err, _ = ritz(alpha, beta, j)
        done = brk | (err <= rtol * jnp.abs(th))
        v_next = w / jnp.where(brk, 1.0, b)
        return j + 1, V, alpha, beta, v_next, v, b, anorm, brk, done

    zero = jnp.zeros((), dtype)
    v = v0 / jnp.linalg.norm(v0)
    st = (jnp.int32(0), jnp.zeros((m, n), dtype), jnp.zeros(m, dtype), jnp.zeros(m, dtype), v,
          jnp.zeros_like(v), zero, zero, jnp.asarray(False), jnp.asarray(False))
    j, V, alpha, beta, *_, brk, _ = jax.lax.while_loop(cond, body, st)
    th, err, s = ritz(alpha, beta, j - 1)
    x = jnp.matmul(s, V, precision=hi)
    return RitzTop(th, err, x / jnp.linalg.norm(x), j, brk)


def lanczos_tridiagonal(matvec, v0: jax.Array, num_iter: int):
    """:func:`lanczos` as the tuple ``(alpha (m,), beta (m,), V (m, N))`` (the historical form).

    After a breakdown the tail is padded (see the module docstring), so the extreme eigenvalues
    of ``diag(alpha) + offdiag(beta[:-1])`` are the extreme Ritz values; ``m = min(num_iter, N)``.
    """
    res = lanczos(matvec, v0, num_iter)
    return res.alpha, _coupling(res), res.vectors


def _coupling(res: Lanczos) -> jax.Array:
    """β with the breakdown residual ``beta[size-1]`` zeroed (so ``beta[:-1]`` is T's off-diagonal)."""
    m = res.beta.shape[0]
    return jnp.where((jnp.arange(m) == res.size - 1) & res.breakdown, 0.0, res.beta)


def tridiagonal_matrix(alpha: jax.Array, beta: jax.Array, size=None) -> jax.Array:
    """``(m, m)`` symmetric tridiagonal ``T`` with diagonal ``alpha`` and off-diagonal ``beta[:-1]``.

    With ``size`` (the number of valid Lanczos steps) the couplings at and beyond ``size − 1``
    are dropped, so T is block diagonal: ``T_k`` ⊕ ``diag(alpha[size:])``.
    """
    off = beta[:-1]
    if size is not None:
        off = jnp.where(jnp.arange(off.shape[0]) < size - 1, off, 0.0)
    return jnp.diag(alpha) + jnp.diag(off, 1) + jnp.diag(off, -1)


def tridiagonal_eigh(alpha: jax.Array, beta: jax.Array, size=None):
    """``eigh`` of :func:`tridiagonal_matrix` → ``(evals (m,) ascending, evecs (m, m))``."""
    return jnp.linalg.eigh(tridiagonal_matrix(alpha, beta, size))


def ritz_extreme(res: Lanczos, which: Literal["min", "max"] = "min") -> tuple[jax.Array, jax.Array]:
    r"""Smallest or largest Ritz value of a :class:`Lanczos` result and its residual bound.

    Returns ``(theta, err)`` with ``err = |β_{k-1} s_{k-1}|`` (``s`` the Ritz vector in the
    Krylov basis): an eigenvalue of A lies within ``err`` of ``theta`` (Parlett, *The
    Symmetric Eigenvalue Problem*, thm. 13.1.1). After a breakdown ``err`` is at rounding level.
    """
    evals, evecs = tridiagonal_eigh(res.alpha, res.beta, res.size)
    i = 0 if which == "min" else -1
    last = jnp.clip(res.size - 1, 0, res.alpha.shape[0] - 1)
    return evals[i], jnp.abs(res.beta[last] * evecs[last, i])


# --------------------------------------------------------------------------- 1-D searches
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


def bisect(below: Callable[[float], bool], lo: float, hi: float, tol: float = 0.0, *,
           rtol: float = 0.0, max_iter: int = 200) -> tuple[float, float]:
    """Bisection on a monotone predicate: ``below(x)`` true on ``[lo, x*)``, false on ``[x*, hi]``.

    Returns the final bracket ``(lo, hi)`` with ``hi − lo ≤ max(tol, rtol·|hi|)`` (``below``
    held at every lo and failed at every hi it was tested at), or after ``max_iter`` tests.
    Host loop: each step calls ``below`` once.

    Raises:
      ValueError: neither ``tol`` nor ``rtol`` positive, or ``lo > hi``.
    """
    if not (tol > 0 or rtol > 0) or not lo <= hi:
        raise ValueError(f"bisect: need tol > 0 or rtol > 0, and lo ≤ hi (got tol={tol!r}, "
                         f"rtol={rtol!r}, lo={lo!r}, hi={hi!r})")
    for _ in range(max_iter):
        if hi - lo <= max(tol, rtol * abs(hi)):
            break
        mid = 0.5 * (lo + hi)
        if bool(below(mid)):
            lo = mid
        else:
            hi = mid
    return lo, hi


class Phased(NamedTuple):
    """State of :func:`scan_then_refine`: the phase flag and both phases' states."""

    scanning: jax.Array  # bool: still in the bracketing phase
    scan: Any            # the bracketing state (frozen once the phase ends)
    refine: Any          # the refinement state (re-seeded by ``to_refine`` while scanning)


def scan_then_refine(margin: Callable[[jax.Array], jax.Array], scan0, *, scan_cond, scan_point,
                     scan_update, to_refine, refine_cond, refine_point, refine_update):
    """Two ``lax.while_loop`` phases fused into one loop that calls ``margin`` once per iteration.

    The result is that of ::

        sc = while_loop(scan_cond, lambda s: scan_update(s, x := scan_point(s), margin(x)), scan0)
        rf = while_loop(lambda r: refine_cond(sc, r),
                        lambda r: refine_update(r, x := refine_point(r), margin(x)), to_refine(sc))
        return sc, rf

    with the same tests in the same order (each phase's updates are selected with ``where``, so
    the values are the same bits), but ``margin`` — a whole PD test or factorization of the
    chain — appears once in the program instead of twice (measured: 5–12 % less compile for a
    T_c search, whose compile is mostly the scalar bracket logic, not the margin).
    ``scan_point`` must be safe to evaluate on a finished bracketing state and ``refine_point``
    on a not-yet-seeded refinement state (their values are discarded there).

    Returns:
      ``(sc, rf)``: the final bracketing and refinement states.
    """
    def select(flag, a, b):
        return jax.tree_util.tree_map(lambda u, v: jnp.where(flag, u, v), a, b)

    def cond(p: Phased):
        return p.scanning | refine_cond(p.scan, p.refine)

    def body(p: Phased) -> Phased:
        x = jnp.where(p.scanning, scan_point(p.scan), refine_point(p.refine))
        g = margin(x)
        sc = select(p.scanning, scan_update(p.scan, x, g), p.scan)
        rf = select(p.scanning, to_refine(sc), refine_update(p.refine, x, g))
        return Phased(p.scanning & scan_cond(sc), sc, rf)

    p = jax.lax.while_loop(cond, body, Phased(scan_cond(scan0), scan0, to_refine(scan0)))
    return p.scan, p.refine


__all__ = ["BREAKDOWN_RTOL", "Backend", "DENSE_MAX_SPINS", "Lanczos", "Phased", "RitzTop", "RootMethod", "bisect",
           "check_root_method", "golden_min", "lanczos", "lanczos_largest", "lanczos_tridiagonal",
           "resolve_backend",
           "ritz_extreme", "scan_then_refine", "tridiagonal_eigh", "tridiagonal_matrix"]


# --------------------------------------------------------------------------- dense eigenvalues
def host_eigvalsh(a: np.ndarray, dtype=None) -> np.ndarray:
    """Ascending eigenvalues of each symmetric ``a[..., :, :]`` (lower triangle) on the host.

    ``(..., N, N)`` numpy → ``(..., N)``: LAPACK ``syevd`` with jobz='N' (eigenvalues only),
    in ``dtype`` (default ``a.dtype``). ``dtype=np.float64`` on a float32 matrix gives its
    eigenvalues to float64 accuracy, for level statistics: a float32 solver moves each
    eigenvalue by ~1e-7 of the spectral scale, which is ~1e-3 of a typical level spacing at
    N ≈ 300 (docs/levels.md); float64 costs 1.9× at N = 2,330 (0.72 vs 1.37 s on this 2-core CPU).

    One matrix per host core in parallel (LAPACK releases the GIL); a matrix with a non-finite
    entry gives a NaN row (as ``jnp.linalg.eigvalsh`` does), never LAPACK's undefined output.
    """
    import concurrent.futures  # pylint: disable=import-outside-toplevel
    import os  # pylint: disable=import-outside-toplevel
    import scipy.linalg  # pylint: disable=import-outside-toplevel
    a = np.asarray(a) if dtype is None else np.asarray(a, dtype)
    flat = a.reshape((-1,) + a.shape[-2:])
    out = np.full(flat.shape[:-1], np.nan, a.dtype)

    def one(i):
        if np.isfinite(flat[i]).all():
            out[i] = scipy.linalg.eigh(flat[i], eigvals_only=True, driver="evd", lower=True,
                                       check_finite=False)

    workers = max(1, min(len(flat), os.cpu_count() or 1))
    if workers == 1:
        for i in range(len(flat)):
            one(i)
    else:
        with concurrent.futures.ThreadPoolExecutor(workers) as ex:
            list(ex.map(one, range(len(flat))))
    return out.reshape(a.shape[:-1])


def eigvalsh_batch(a: jax.Array) -> jax.Array:
    r"""Ascending eigenvalues of a batch of symmetric matrices, without eigenvectors.

    ``a``: ``(..., N, N)`` (lower triangle used) → ``(..., N)``. On the CPU backend this is a
    host callback to LAPACK ``syevd`` with ``jobz='N'`` (``scipy.linalg.eigh(eigvals_only=True)``),
    the matrices of the batch on the host's cores in parallel: ``jnp.linalg.eigvalsh`` always
    computes the eigenvectors too (jax's ``eigh`` has no eigenvalues-only mode), which costs
    2.4× per matrix at N = 2,330 (0.32 s vs 0.78 s, float32, quiet 2-core CPU;
    ``benchmarks/analysis_throughput.py``).
    On GPU/TPU it is ``jnp.linalg.eigvalsh`` (a device solver; no host round trip). Works under
    ``jit`` and ``vmap``; not differentiable (use ``jnp.linalg.eigh`` for gradients). A matrix
    with a non-finite entry gives a NaN row.
    """
    a = jnp.asarray(a)
    if jax.default_backend() != "cpu":
        return jnp.linalg.eigvalsh(a)
    return jax.pure_callback(host_eigvalsh, jax.ShapeDtypeStruct(a.shape[:-1], a.dtype), a,
                             vmap_method="broadcast_all")
