r"""Spectral observables of the bond matrix and of :math:`I - M` (paper sections 3.3–3.4).

* :func:`tap_spectrum`: all eigenvalues of :math:`I - M(\beta)` (Fig. 7 at :math:`T_c`).
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

import jax
import jax.numpy as jnp
import numpy as np

from tapjax import linalg
from tapjax.linalg import Backend
from tapjax.spin_model import (LayeredCouplings, all_finite, as_couplings, bond_matvec,
                               coupling_scale, dense_bond_matrix, join_layers, row_square_sums,
                               split_layers)
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
        ``"lanczos"`` (``num_iter`` steps at most, fewer at a breakdown, never more than N), or
        ``"auto"`` (dense up to :data:`tapjax.linalg.DENSE_MAX_SPINS` spins; the default).
    """
    c = as_couplings(c, where="lambda_max_bond")
    method = linalg.resolve_backend(method, c.num_spins, where="method")
    if method == "dense":
        return bond_spectrum(c)[-1]
    return _lambda_max_lanczos(c, num_iter)


@functools.partial(jax.jit, static_argnames=("num_iter",))
def _lambda_max_lanczos(c: LayeredCouplings, num_iter: int) -> jax.Array:
    s = coupling_scale(c)
    c = LayeredCouplings(tuple(w / s for w in c.weights))
    v0 = jax.random.normal(jax.random.PRNGKey(0), (c.num_spins,), c.dtype)
    mv = lambda v: join_layers(bond_matvec(c, split_layers(c, v)))
    lam = linalg.ritz_extreme(linalg.lanczos(mv, v0, num_iter), "max")[0] * s
    return jnp.where(all_finite(c), lam, jnp.nan)


def spectral_density(eigenvalues, bins: int = 100, range_=None):
    """Deprecated (unused in tapjax): use ``numpy.histogram(ev, bins, range, density=True)``."""
    warnings.warn("tapjax.spectra.spectral_density is deprecated; use numpy.histogram(..., "
                  "density=True)", DeprecationWarning, stacklevel=2)
    hist, edges = np.histogram(np.asarray(eigenvalues), bins=bins, range=range_, density=True)
    return 0.5 * (edges[1:] + edges[:-1]), hist


__all__ = ["bond_spectrum", "first_level_spacing", "lambda_max_bond", "lambda_min_r",
           "spectral_density", "tap_spectrum"]
