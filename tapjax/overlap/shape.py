r"""Reading a Q_ab curve: where the overlap sets in, and the shape of P(q) at one temperature.

**Onset.** With the finite-size floor :math:`f = E|q|` of independent random configurations
(:func:`~tapjax.overlap.observables.overlap_floor`), the normalized excess overlap is

.. math::
    x(T) = \frac{\bar Q(T) - f}{1 - f},

0 for a paramagnet at this size and 1 for frozen identical replicas. The onset temperature is
the *highest grid temperature* with :math:`x(T) > 0.05` (``frac``), globally or for one layer's
curve :math:`\bar Q^{(k)}` with that layer's floor. It is a grid value: on a geometric grid its
resolution is the grid ratio.

**P(q) shape** (:func:`pq_shape`): the Binder cumulant of the binned P(q)
:math:`g = \tfrac12(3 - m_4/m_2^2)` (≈ 0 Gaussian, 1 for two sharp peaks ±q*), the peak
:math:`q^*` of the symmetrized, 3-bin smoothed P(q) on q > 0, and the dip
:math:`P(0)/P(q^*)` (≈ 1 unimodal or flat, → 0 for two well separated peaks).
"""

from __future__ import annotations

import numpy as np

from tapjax.overlap.descriptor import QabResult


def _layer_column(res: QabResult, layer: int) -> int:
    if layer not in res.layers:
        raise ValueError(f"layer={layer}: this result measured layers {tuple(res.layers)}")
    return list(res.layers).index(layer)


def onset_temperature(res: QabResult, frac: float = 0.05, layer: int | None = None) -> float:
    """Highest T where ``(Qbar − floor) / (1 − floor) > frac`` (module docstring).

    Args:
      res: a :class:`~tapjax.overlap.descriptor.QabResult`.
      frac: threshold of the normalized excess overlap (0.05 in docs/overlap.md).
      layer: None for the global curve and floor, or a layer number (``res.layers``) for that
        layer's curve ``qbar_layer`` and ``floor_layer``.

    Returns:
      The onset temperature, or NaN when no temperature exceeds the threshold.
    """
    if layer is None:
        q, floor = np.asarray(res.qbar, float), float(res.floor)
    else:
        j = _layer_column(res, layer)
        q, floor = np.asarray(res.qbar_layer, float)[:, j], float(res.floor_layer[j])
    x = (q - floor) / (1.0 - floor)
    hot = np.nonzero(x > frac)[0]
    return float(np.asarray(res.temperatures)[hot].max()) if hot.size else float("nan")


def temperature_index(res: QabResult, t: float) -> int:
    """Index of the grid temperature closest to ``t`` in log T."""
    if not t > 0:
        raise ValueError(f"t={t}: need a positive temperature")
    return int(np.argmin(np.abs(np.log(np.asarray(res.temperatures) / t))))


def pq_shape(res: QabResult, i: int, layer: int | None = None) -> dict:
    """Shape of P(q) at temperature index ``i`` (global, or one layer's overlap).

    Returns:
      ``{"T", "q_star", "binder", "dip"}`` (module docstring); ``binder`` and ``dip`` are NaN
      when P(q) has no second moment or no mass on q > 0.
    """
    edges = np.asarray(res.bin_edges, float)
    centers = 0.5 * (edges[1:] + edges[:-1])
    width = np.diff(edges)
    p = res.pq[i] if layer is None else res.pq_layer[i, _layer_column(res, layer)]
    mass = np.asarray(p, float) * width
    sym = np.convolve(0.5 * (mass + mass[::-1]), np.ones(3) / 3, mode="same")   # symmetrized, smoothed
    pos = centers > 0
    k = int(np.argmax(np.where(pos, sym, -1.0)))
    zero = int(np.argmin(np.abs(centers)))
    m2 = float(np.sum(mass * centers ** 2))
    m4 = float(np.sum(mass * centers ** 4))
    return {"T": float(res.temperatures[i]), "q_star": float(centers[k]),
            "binder": 0.5 * (3 - m4 / m2 ** 2) if m2 > 0 else float("nan"),
            "dip": float(sym[zero] / sym[k]) if sym[k] > 0 else float("nan")}


__all__ = ["onset_temperature", "pq_shape", "temperature_index"]
