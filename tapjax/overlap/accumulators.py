r"""Running sums of long Monte Carlo runs that keep float64 accuracy while x64 is off.

A measurement phase of :math:`M = 10^5` samples summed naively in float32 loses about
:math:`M\,\epsilon_{32}/2 \approx 6\cdot10^{-3}` of relative accuracy in the worst case (each
addition rounds once, and the rounding error grows with the sum). The variance
:math:`\langle E^2\rangle - \langle E\rangle^2` cancels almost all digits at low temperature,
so a naive float32 sum can return 0 or several times the true value. Two measures fix this:

* **Compensated (double-float) sums.** A sum is carried as an unevaluated pair
  :math:`s = \mathrm{hi} + \mathrm{lo}` of float32 arrays. Each addition uses Knuth's
  error-free TwoSum,

  .. math::
      h' = h + x, \quad b = h' - h, \quad e = (h - (h' - b)) + (x - b), \qquad h + x = h' + e
      \ \text{exactly},

  and the exact rounding error :math:`e` is added to ``lo`` (Neumaier's variant of Kahan
  summation). ``hi + lo`` evaluated in float64 on the host is the sum to about
  :math:`\epsilon_{32}^2 M` relative accuracy, i.e. float64 quality for any practical M. The
  pair costs 6 flops instead of 1 on arrays that are small next to the sweep's matrix products,
  and keeps the jitted program pure float32, so it runs the same with x64 on or off.
  XLA does not reassociate floating-point arithmetic (fast-math is off in JAX), so the
  compensation survives compilation; ``tests/test_overlap.py`` checks that it does.
* **Shifted moments.** Energies are accumulated as deviations :math:`E - E_{\rm shift}` from a
  per-temperature constant (the mean energy at the end of burn-in), so
  :math:`\mathrm{Var}(E) = \overline{(E-E_s)^2} - \overline{(E-E_s)}^2` subtracts two numbers
  of the size of the fluctuations rather than of :math:`E^2` (see :mod:`~tapjax.overlap.sampler`).

Counts (histograms, exchange attempts, round trips, the number of measurements) are int32,
exact up to :math:`2^{31}`.

Why not the alternatives: float64 inside the jitted program needs ``jax_enable_x64``, which is
global state and changes the dtype of every array the program creates. Summing each jitted chunk
on the host in float64 makes the result depend on how the run is split into chunks, while
a compensated pair carried across chunks gives bit-identical totals for any split (the sampler
guarantees that a run is a pure function of key and number of sweeps).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Compensated(NamedTuple):
    """A float32 running sum carried as ``hi + lo`` (a pytree; ``lo`` collects the rounding errors).

    Attributes:
      hi: the float32 sum as a plain accumulation would hold it.
      lo: the sum of the exact rounding errors of every addition (same shape).
    """

    hi: jax.Array
    lo: jax.Array


def compensated_zeros(shape: tuple[int, ...], dtype=jnp.float32) -> Compensated:
    """A zero :class:`Compensated` sum of the given shape."""
    return Compensated(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))


def compensated_add(total: Compensated, x: jax.Array) -> Compensated:
    r"""``total + x`` with Knuth's TwoSum: :math:`h' = h + x`, the exact error
    :math:`e = (h - (h' - b)) + (x - b)` with :math:`b = h' - h` goes into ``lo``.

    Args:
      total: the running sum.
      x: the addend, broadcastable to ``total.hi`` (cast to its dtype).
    Returns:
      The new :class:`Compensated` sum (same shapes and dtype).
    """
    h = total.hi
    x = jnp.asarray(x, h.dtype)
    s = h + x
    b = s - h
    err = (h - (s - b)) + (x - b)
    return Compensated(s, total.lo + err)


def compensated_value(total: Compensated) -> np.ndarray:
    """The sum as a float64 numpy array: ``float64(hi) + float64(lo)`` (host side)."""
    return np.asarray(total.hi, np.float64) + np.asarray(total.lo, np.float64)


__all__ = ["Compensated", "compensated_add", "compensated_value", "compensated_zeros"]
