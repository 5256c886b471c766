r"""n-bit Ising encoding of each weight in a window ±L around its current value (report eqs. 6–8).

Each weight :math:`S_j` of one unit is written with n Ising spins :math:`\sigma_{j\alpha}=\pm1`:

.. math::
    S_j = S^0_j + c \sum_{\alpha=0}^{n-1} 2^\alpha \sigma_{j\alpha}, \qquad c = \frac{L}{N_b},
    \quad N_b = 2^n - 1,

so :math:`S_j \in [S^0_j - L, S^0_j + L]` on a grid of step :math:`2c` (the decoding of the
source code; zero offset is not on the grid, the nearest points are ±c). Substituting into
:math:`H(S) = S^\top J S + h^\top S + E_0` gives an Ising Hamiltonian over the N·n spins
:math:`\mu = (j, \alpha)`:

.. math::
    H = \sigma^\top J' \sigma + h'^\top \sigma + H(S^0), \quad
    J'_{j\alpha,l\beta} = c^2 2^{\alpha+\beta} J_{jl}, \quad
    h'_{j\alpha} = c\, 2^\alpha (h_j + 2 (J S^0)_j).

(The report's normalisation; the source code multiplies both by N_b/L, which only rescales β.)
The explicit (Mn × Mn) matrix is built here for checks and for external Ising solvers; the
annealer in :mod:`tapjax.sgtrain.annealing` never forms it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def bit_weights(n_bits: int, dtype=jnp.float32) -> jax.Array:
    """(n,) place values 2^α, α = 0..n-1."""
    return (2.0 ** jnp.arange(n_bits)).astype(dtype)


def decode(sigma: jax.Array, center: jax.Array, window: float) -> jax.Array:
    r"""Weights from bits: :math:`S = S^0 + (L/N_b)\sum_\alpha 2^\alpha \sigma_\alpha`.

    Args:
      sigma: (..., M, n) spins ±1.
      center: (..., M) window centres S⁰.
      window: L, the half-width.

    Returns:
      (..., M) weights.
    """
    n = sigma.shape[-1]
    c = window / (2.0 ** n - 1.0)
    return center + c * (sigma @ bit_weights(n, sigma.dtype))


def center_bits(shape: tuple[int, ...], n_bits: int, dtype=jnp.float32) -> jax.Array:
    """Bits decoding to the grid point nearest the centre, S⁰ + c: top bit +1, the rest −1.

    Returns:
      (*shape, n) spins.
    """
    sigma = -jnp.ones((*shape, n_bits), dtype)
    return sigma.at[..., -1].set(1.0)


def ising_couplings(J: jax.Array, h: jax.Array, center: jax.Array, window: float,
                    n_bits: int) -> tuple[jax.Array, jax.Array]:
    r"""Explicit :math:`J'` (Mn, Mn) and :math:`h'` (Mn,) of one unit, report eq. 8.

    Spin index μ = j·n + α (weight-major). The constant is :math:`H(S^0)`.

    Args:
      J: (M, M) couplings of the unit.
      h: (M,) field of the unit.
      center: (M,) S⁰.
      window: L.
      n_bits: n.
    """
    m = J.shape[0]
    if h.shape != (m,) or center.shape != (m,):
        raise ValueError(f"h, center: expected shape ({m},) to match J {J.shape}, got "
                         f"{h.shape} and {center.shape}")
    c = window / (2.0 ** n_bits - 1.0)
    p = bit_weights(n_bits, J.dtype)
    Jp = (c * c) * jnp.einsum("jl,a,b->jalb", J, p, p).reshape(m * n_bits, m * n_bits)
    hp = c * ((h + 2.0 * J @ center)[:, None] * p[None, :]).reshape(m * n_bits)
    return Jp, hp


def ising_energy(Jp: jax.Array, hp: jax.Array, sigma: jax.Array) -> jax.Array:
    """σᵀJ'σ + h'ᵀσ for flat spins σ (Mn,) (add H(S⁰) for the layer energy)."""
    return sigma @ Jp @ sigma + hp @ sigma
