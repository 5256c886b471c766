r"""Replica overlaps and Monte Carlo statistics.

For replicas a, b at one temperature, with ±1 spins on the measured layers,

.. math::
    q^{(k)}_{ab} = \frac{1}{N_k}\sum_{i=1}^{N_k} \sigma^{(k)a}_i \sigma^{(k)b}_i, \qquad
    q_{ab} = \frac{1}{N}\sum_k N_k\, q^{(k)}_{ab}, \qquad
    \bar Q = \frac{2}{n(n-1)}\sum_{a<b} |q_{ab}| .

The Q_ab curve is :math:`T \mapsto \langle \bar Q \rangle`, averaged over measurement sweeps. For
two independent uniform spin vectors :math:`E|q| \approx \sqrt{2/(\pi N)}`. That is the
finite-size floor of the curve at high T (:func:`overlap_floor`).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def overlap_matrices(spins: Sequence[jax.Array]) -> tuple[jax.Array, jax.Array]:
    r"""Per-layer and global overlap matrices.

    Args:
      spins: the measured layers, ``(T, R, N_k)`` each.
    Returns:
      ``(q_layer, q)``: ``q_layer`` ``(K, T, R, R)`` with ``q_layer[k] = q^{(k)}`` and the global
      ``q`` ``(T, R, R)`` (weighted by layer size).
    """
    grams = [jnp.einsum("tai,tbi->tab", s, s) for s in spins]
    sizes = [s.shape[-1] for s in spins]
    q_layer = jnp.stack([g / n for g, n in zip(grams, sizes)])
    q = sum(grams) / float(sum(sizes))
    return q_layer, q


def upper_pairs(q: jax.Array) -> jax.Array:
    """Off-diagonal entries a < b of ``(..., R, R)`` → ``(..., R(R-1)/2)``."""
    r = q.shape[-1]
    ia, ib = np.triu_indices(r, 1)
    return q[..., ia, ib]


def overlap_histogram(q_pairs: jax.Array, num_bins: int) -> jax.Array:
    """Counts of ``q_pairs`` ``(..., P)`` in ``num_bins`` equal bins on [−1, 1] → ``(..., num_bins)``.

    q = 1 falls in the last bin. With ``num_bins = N + 1`` every attainable q of N spins
    (−1 + 2m/N) has its own bin.
    """
    idx = jnp.clip(jnp.floor((q_pairs + 1.0) * 0.5 * num_bins).astype(jnp.int32), 0, num_bins - 1)
    return jax.nn.one_hot(idx, num_bins, dtype=jnp.float32).sum(axis=-2)


def histogram_edges(num_bins: int) -> np.ndarray:
    return np.linspace(-1.0, 1.0, num_bins + 1)


def overlap_floor(num_spins: int) -> float:
    r"""E|q| of two independent uniform configurations of N spins (exact, :math:`\approx\sqrt{2/(\pi N)}`)."""
    n = int(num_spins)
    # E|sum of n ±1| / n = 2^{-n} sum_m C(n,m) |n - 2m| / n, in logs for large n
    m = np.arange(n + 1)
    logc = np.array([math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) for k in m])
    return float(np.sum(np.exp(logc - n * math.log(2.0)) * np.abs(n - 2 * m)) / n)


def autocorrelation(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Normalized autocorrelation ρ(t) of series along ``axis`` (FFT, mean removed per series).

    Series with zero variance get ρ = 0 for t > 0.
    """
    x = np.moveaxis(np.asarray(x, float), axis, 0)
    n = x.shape[0]
    x = x - x.mean(0)
    f = np.fft.rfft(x, n=2 * n, axis=0)
    acf = np.fft.irfft(f * np.conj(f), axis=0)[:n]
    var = acf[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(var > 0, acf / np.where(var > 0, var, 1.0), 0.0)
    rho[0] = 1.0
    return np.moveaxis(rho, 0, axis)


def integrated_autocorrelation_time(x: np.ndarray, axis: int = 0, pool_axis: int | None = None,
                                    c: float = 5.0) -> np.ndarray:
    r"""Integrated autocorrelation time :math:`\tau = 1 + 2\sum_{t=1}^{W}\rho(t)` (Sokal's window).

    W is the smallest lag with :math:`W \ge c\,\tau(W)`. With this convention the variance
    of the mean of n samples is :math:`\sigma^2 \tau / n`.

    Args:
      x: series, time along ``axis``.
      pool_axis: if given, ρ(t) is averaged over this axis (independent chains) first.
      c: window factor (5 is standard).
    Returns:
      τ in units of samples. The time axis (and ``pool_axis``) is removed. When no window
      fits in the series, the τ of the longest window is returned.
    """
    x = np.asarray(x, float)
    axis = axis % x.ndim
    rho = np.moveaxis(autocorrelation(x, axis), axis, 0)
    if pool_axis is not None:
        pool_axis = pool_axis % x.ndim
        rho = rho.mean(axis=pool_axis + 1 if pool_axis < axis else pool_axis)
    tau = 1.0 + 2.0 * np.cumsum(rho[1:], axis=0)
    n = tau.shape[0]
    if n == 0:
        return np.ones(rho.shape[1:])
    lags = np.arange(1, n + 1).reshape((-1,) + (1,) * (tau.ndim - 1))
    ok = lags >= c * tau
    first = np.where(ok.any(0), ok.argmax(0), n - 1)
    out = np.take_along_axis(tau, first[None], 0)[0]
    return np.maximum(out, 1.0)


def binder_parameter(q2: np.ndarray, q4: np.ndarray) -> np.ndarray:
    r"""Binder cumulant of the overlap :math:`g = \tfrac12(3 - \langle q^4\rangle/\langle q^2\rangle^2)`.

    Near 0 for a Gaussian P(q) (paramagnet), 1 for P(q) concentrated at ±q*.
    """
    q2 = np.asarray(q2, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 0.5 * (3.0 - np.asarray(q4, float) / (q2 * q2))


__all__ = ["autocorrelation", "binder_parameter", "histogram_edges", "integrated_autocorrelation_time",
           "overlap_floor", "overlap_histogram", "overlap_matrices", "upper_pairs"]
