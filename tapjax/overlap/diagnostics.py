r"""Equilibration diagnostics for a replica-overlap run, with numbers in every message.

The checks use the measurement-phase time series of each temperature:

1. **Run length against autocorrelation.** The integrated autocorrelation time τ of the energy
   (chains pooled) should satisfy ``n_measure / τ ≥ min_samples`` and ``n_burn ≥ burn_factor·τ``.
   The same holds for the :math:`\bar Q` series, whose τ is usually the longer one in the glass.
2. **Drift.** The means of the first and second halves of the measurement phase should agree
   within ``z_max`` standard errors, for the energy and for :math:`\bar Q`. Each error is
   computed with that quantity's own τ. A drift means the run was still relaxing.
3. **Tempering.** Every neighbouring pair should be accepted with mean probability ≥
   ``min_exchange``. A lower rate means the grid is too sparse between those temperatures.

A run failing a check is reported through :class:`EquilibrationWarning` (default) or
:class:`EquilibrationError`.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from tapjax.overlap.observables import integrated_autocorrelation_time


class EquilibrationWarning(UserWarning):
    """The sampler's checks suggest the chains are not equilibrated (message has the numbers)."""


class EquilibrationError(RuntimeError):
    """Raised instead of :class:`EquilibrationWarning` when ``on_fail="raise"``."""


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Pass/fail thresholds of :func:`diagnose`.

    Attributes:
      min_samples: measurement sweeps per autocorrelation time (effective samples per chain).
      burn_factor: burn-in sweeps per autocorrelation time.
      z_max: largest |z| allowed between the first-half and second-half means.
      qbar_abs_tol: drifts of :math:`\bar Q` smaller than this are ignored, whatever their z.
      min_exchange: smallest mean acceptance of an exchange pair.
    """

    min_samples: float = 20.0
    burn_factor: float = 5.0
    z_max: float = 4.0
    qbar_abs_tol: float = 0.02
    min_exchange: float = 0.05


def _half_drift(x: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z-score and difference of the two halves' means of ``x`` ``(M, T, C)``, chains pooled."""
    m = x.shape[0] // 2
    a, b = x[:m], x[m:2 * m]
    n_chain = x.shape[2]
    diff = b.mean((0, 2)) - a.mean((0, 2))
    var = x.reshape(x.shape[0], x.shape[1], -1).var(axis=(0, 2))
    se = np.sqrt(2.0 * var * tau / max(m * n_chain, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(se > 0, diff / np.where(se > 0, se, 1.0), np.where(diff == 0, 0.0, np.inf))
    return z, diff


def diagnose(temperatures: np.ndarray, energy: np.ndarray, qbar: np.ndarray, n_burn: int,
             measure_every: int, exchange_rate: np.ndarray | None,
             thresholds: Thresholds = Thresholds()) -> dict[str, Any]:
    """Runs the checks of the module docstring.

    Args:
      temperatures: ``(T,)``.
      energy: ``(M, T, R)`` energies at the measurements.
      qbar: ``(M, T)`` replica-averaged |q_ab| at the measurements.
      n_burn, measure_every: the run's schedule (sweeps).
      exchange_rate: ``(T - 1,)`` mean acceptance of each pair, or None without tempering.

    Returns:
      A JSON-serializable dict: ``ok`` (bool), ``problems`` (list of messages), the per-T
      arrays ``tau_energy``, ``tau_qbar`` (in sweeps), ``drift_z_energy``, ``drift_z_qbar``,
      ``drift_qbar`` and the thresholds used.
    """
    th = thresholds
    temps = np.asarray(temperatures, float)
    m = energy.shape[0]
    tau_e = integrated_autocorrelation_time(energy, axis=0, pool_axis=2)          # (T,) samples
    tau_q = integrated_autocorrelation_time(qbar, axis=0)                          # (T,)
    z_e, _ = _half_drift(energy, tau_e)
    z_q, d_q = _half_drift(qbar[:, :, None], tau_q)
    problems = []

    def fmt_t(idx):
        return ", ".join(f"T={temps[i]:.4g}" for i in idx[:6]) + (" …" if len(idx) > 6 else "")

    tau_max = np.maximum(tau_e, tau_q)
    short = np.nonzero(m / tau_max < th.min_samples)[0]
    if short.size:
        i = short[np.argmax(tau_max[short])]
        problems.append(
            f"run too short at {short.size}/{temps.size} temperatures ({fmt_t(short)}): "
            f"worst T={temps[i]:.4g} has tau_int={tau_max[i] * measure_every:.1f} sweeps "
            f"(energy {tau_e[i] * measure_every:.1f}, Qbar {tau_q[i] * measure_every:.1f}) for "
            f"{m * measure_every} measurement sweeps, i.e. {m / tau_max[i]:.1f} < {th.min_samples:g} "
            "independent samples; increase n_measure")
    short_burn = np.nonzero(n_burn < th.burn_factor * tau_max * measure_every)[0]
    if short_burn.size:
        i = short_burn[np.argmax(tau_max[short_burn])]
        problems.append(
            f"burn-in too short at {short_burn.size} temperatures ({fmt_t(short_burn)}): n_burn={n_burn} "
            f"< {th.burn_factor:g} x tau_int={tau_max[i] * measure_every:.1f} sweeps at T={temps[i]:.4g}")
    drift_e = np.nonzero(np.abs(z_e) > th.z_max)[0]
    if drift_e.size:
        i = drift_e[np.argmax(np.abs(z_e[drift_e]))]
        problems.append(
            f"energy drifts between the halves of the measurement at {drift_e.size} temperatures "
            f"({fmt_t(drift_e)}): worst z={z_e[i]:+.1f} at T={temps[i]:.4g} (limit {th.z_max:g})")
    drift_q = np.nonzero((np.abs(z_q) > th.z_max) & (np.abs(d_q) > th.qbar_abs_tol))[0]
    if drift_q.size:
        i = drift_q[np.argmax(np.abs(d_q[drift_q]))]
        problems.append(
            f"Qbar drifts between the halves at {drift_q.size} temperatures ({fmt_t(drift_q)}): worst "
            f"change {d_q[i]:+.3f} (z={z_q[i]:+.1f}) at T={temps[i]:.4g}")
    if exchange_rate is not None and len(exchange_rate):
        low = np.nonzero(np.asarray(exchange_rate) < th.min_exchange)[0]
        if low.size:
            i = low[np.argmin(np.asarray(exchange_rate)[low])]
            problems.append(
                f"parallel tempering: {low.size} neighbour pairs accept less than {th.min_exchange:g}; "
                f"worst {exchange_rate[i]:.3g} between T={temps[i]:.4g} and T={temps[i + 1]:.4g}; "
                "add temperatures there")
    return {
        "ok": not problems, "problems": problems,
        "tau_energy": (tau_e * measure_every).tolist(), "tau_qbar": (tau_q * measure_every).tolist(),
        "drift_z_energy": z_e.tolist(), "drift_z_qbar": z_q.tolist(), "drift_qbar": d_q.tolist(),
        "thresholds": dataclasses.asdict(th),
    }


def report(diagnostics: dict[str, Any], on_fail: str, where: str = "") -> None:
    """Warns (``"warn"``), raises (``"raise"``) or stays silent (``"ignore"``) on failed checks."""
    if on_fail not in ("warn", "raise", "ignore"):
        raise ValueError(f"on_fail={on_fail!r}: use 'warn', 'raise' or 'ignore'")
    if diagnostics["ok"] or on_fail == "ignore":
        return
    msg = (f"{where}: " if where else "") + "not equilibrated: " + "; ".join(diagnostics["problems"])
    if on_fail == "raise":
        raise EquilibrationError(msg)
    warnings.warn(msg, EquilibrationWarning, stacklevel=3)


__all__ = ["EquilibrationError", "EquilibrationWarning", "Thresholds", "diagnose", "report"]
