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
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from tapjax.spin_model import (LayeredCouplings, bond_matvec, dense_bond_matrix, join_layers,
                               row_square_sums, split_layers)
from tapjax.tap import lanczos_tridiagonal, tap_matrix


@jax.jit
def tap_spectrum(c: LayeredCouplings, beta) -> jax.Array:
    """Ascending eigenvalues ``(N,)`` of ``I − M(β)`` (dense eigvalsh)."""
    return jnp.linalg.eigvalsh(tap_matrix(c, beta))


@jax.jit
def bond_spectrum(c: LayeredCouplings) -> jax.Array:
    """Ascending eigenvalues ``(N,)`` of the bond matrix J (eq. 4; dense eigvalsh)."""
    return jnp.linalg.eigvalsh(dense_bond_matrix(c))


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
    """:math:`\\min_i r_i` with :math:`r_i = \\sum_\\ell J_{i\\ell}^2` (eq. 25 without −β)."""
    return jnp.min(join_layers(row_square_sums(c)))


def lambda_max_bond(c: LayeredCouplings, method: str = "lanczos", num_iter: int = 100) -> jax.Array:
    """Largest eigenvalue of J: ``"dense"`` (eigvalsh) or matrix-free ``"lanczos"``."""
    if method == "dense":
        return bond_spectrum(c)[-1]
    if method != "lanczos":
        raise ValueError(f"method={method!r}: use 'dense' or 'lanczos'")
    return _lambda_max_lanczos(c, num_iter)


@functools.partial(jax.jit, static_argnames=("num_iter",))
def _lambda_max_lanczos(c: LayeredCouplings, num_iter: int) -> jax.Array:
    v0 = jax.random.normal(jax.random.PRNGKey(0), (c.num_spins,), c.dtype)
    mv = lambda v: join_layers(bond_matvec(c, split_layers(c, v)))
    alpha, beta, _ = lanczos_tridiagonal(mv, v0, num_iter)
    T = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    return jnp.linalg.eigvalsh(T)[-1]


def spectral_density(eigenvalues, bins: int = 100, range_=None):
    """Histogram density of eigenvalues → ``(centers (bins,), density (bins,))``."""
    hist, edges = np.histogram(np.asarray(eigenvalues), bins=bins, range=range_, density=True)
    return 0.5 * (edges[1:] + edges[:-1]), hist


__all__ = ["bond_spectrum", "first_level_spacing", "lambda_max_bond", "lambda_min_r",
           "spectral_density", "tap_spectrum"]
