r"""Binary activations with the straight-through estimator (paper eqs. 28–29).

Forward: :math:`\mathrm{step}(x) = +1` for :math:`x \ge 0`, :math:`-1` for :math:`x < 0`.
The paper leaves ``step(0)`` undefined; we set ``step(0) = +1`` as BinaryNet and larq do
(``jnp.sign(0) == 0`` would create a third spin value, which the Ising mapping forbids).

Backward: the derivative of the hard tanh, :math:`\mathbb{1}\{|x| \le 1\}` (eq. 29), passed
straight through (Bengio et al. 2013; Courbariaux et al. 2016). The boundary :math:`|x| = 1`
has measure zero; we include it, as larq does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def step(x: jax.Array) -> jax.Array:
    """Exactly ±1 with step(0) = +1 (no gradient path; see :func:`ste_step`)."""
    return jnp.where(x >= 0, jnp.ones_like(x), -jnp.ones_like(x))


@jax.custom_vjp
def ste_step(x: jax.Array) -> jax.Array:
    """step(x) forward, hard-tanh derivative 1{|x| ≤ 1} backward (eqs. 28–29)."""
    return step(x)


def _ste_fwd(x):
    return step(x), x


def _ste_bwd(x, g):
    return (g * (jnp.abs(x) <= 1).astype(g.dtype),)


ste_step.defvjp(_ste_fwd, _ste_bwd)


def htanh(x: jax.Array) -> jax.Array:
    """Hard tanh, clip(x, -1, 1) (eq. 29); its derivative is the STE's backward pass."""
    return jnp.clip(x, -1.0, 1.0)
