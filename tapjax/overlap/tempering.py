r"""Parallel tempering (replica exchange) between neighbouring temperatures.

Every replica index r has its own ladder of T chains, one per temperature. An exchange move
proposes to swap the configurations at neighbouring temperatures :math:`\beta_t, \beta_{t+1}`
(same r) and accepts with the Metropolis probability of the product measure
:math:`\prod_t e^{-\beta_t H(x_t)}`:

.. math::
    A = \min\!\left(1,\; e^{(\beta_t - \beta_{t+1})\,(E_t - E_{t+1})}\right).

This satisfies detailed balance pair by pair. Moves alternate between the pairs
(0,1), (2,3), … (parity 0) and (1,2), (3,4), … (parity 1). Within one parity the pairs are
disjoint, so they are proposed at the same time. Ladders with different r never mix, so
replicas a ≠ b at one temperature remain independent samples, which their overlap
:math:`q_{ab}` requires.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def exchange_log_ratio(beta_lo, beta_hi, e_lo, e_hi):
    r"""Log acceptance ratio :math:`(\beta_t - \beta_{t+1})(E_t - E_{t+1})` of a swap (broadcasts)."""
    return (beta_lo - beta_hi) * (e_lo - e_hi)


def exchange_acceptance(beta_lo, beta_hi, e_lo, e_hi):
    r"""Metropolis acceptance :math:`\min(1, e^{(\beta_t - \beta_{t+1})(E_t - E_{t+1})})`."""
    return jnp.exp(jnp.minimum(0.0, exchange_log_ratio(beta_lo, beta_hi, e_lo, e_hi)))


def pair_partners(num_temps: int, parity) -> tuple[jax.Array, jax.Array]:
    """Pairing of one exchange round.

    Returns:
      ``(partner, is_lower)``: ``partner`` ``(T,)`` int is the index each temperature swaps
      with (itself if unpaired) and ``is_lower`` ``(T - 1,)`` bool is True where pair
      (t, t+1) is proposed, i.e. ``t % 2 == parity``.
    """
    t = jnp.arange(num_temps)
    lower = (t % 2 == parity) & (t + 1 < num_temps)
    upper = jnp.concatenate([jnp.zeros((1,), bool), lower[:-1]])
    partner = jnp.where(lower, t + 1, jnp.where(upper, t - 1, t))
    return partner, lower[:-1]


def exchange_step(uniforms: jax.Array, chains: Any, energies: jax.Array, betas: jax.Array,
                  parity) -> tuple[Any, jax.Array, jax.Array, jax.Array]:
    """One round of exchange moves on every ladder.

    Args:
      uniforms: U[0, 1) numbers, ``(T - 1, R)`` (row t decides pair (t, t+1)).
      chains: pytree whose leaves have leading axes ``(T, R, ...)`` (spins, walker labels, ...):
        swapped together with the configurations.
      energies: ``(T, R)``, the energies of the current configurations.
      betas: ``(T,)``.
      parity: 0 or 1 (may be traced): which set of disjoint pairs is proposed.

    Returns:
      ``(chains, energies, probs, proposed)``: the state after the round, the acceptance
      probabilities ``(T - 1, R)`` of every pair (zero where not proposed) and ``proposed``
      ``(T - 1,)`` bool.
    """
    num_temps = betas.shape[0]
    if num_temps < 2:
        return chains, energies, jnp.zeros((0,) + energies.shape[1:], energies.dtype), jnp.zeros((0,), bool)
    partner, proposed = pair_partners(num_temps, parity)
    probs = exchange_acceptance(betas[:-1, None], betas[1:, None], energies[:-1], energies[1:])
    probs = jnp.where(proposed[:, None], probs, 0.0)
    acc = uniforms < probs                                        # (T-1, R): pair (t, t+1) swaps
    zero = jnp.zeros((1,) + acc.shape[1:], bool)
    swap = jnp.concatenate([acc, zero]) | jnp.concatenate([zero, acc])   # (T, R)

    def move(x):
        s = swap.reshape(swap.shape + (1,) * (x.ndim - 2))
        return jnp.where(s, x[partner], x)

    return jax.tree_util.tree_map(move, chains), move(energies), probs, proposed


__all__ = ["exchange_acceptance", "exchange_log_ratio", "exchange_step", "pair_partners"]
