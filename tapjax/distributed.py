r"""Whole-series analysis over many processes with JAX's multi-controller runtime.

Every process runs the same Python program (SPMD). After :func:`initialize`, ``jax.devices()``
spans all processes; :func:`tapjax.sharding.device_mesh` lays one 1-D mesh over them and the
checkpoint axis of a series is split across it. Each process **loads only its own
checkpoints** (:func:`tapjax.sharding.process_rows` says which), the per-checkpoint program —
the critical-β search (eqs. 26–27), λ_max(J) (eq. 4) and λ_min(R) (eq. 25) — runs once per
device under ``lax.map``, and the results are all-gathered, so every process (process 0
included) ends with the full ``(T,)`` table. Because each element is computed by the same
compiled program whatever the device count, the table is bitwise equal to a one-process run
(``tests/test_distributed.py`` runs two local processes with gloo collectives).

Launch (one process per host on GPU/TPU, or several local CPU processes)::

    # process i of n, coordinator reachable at HOST:PORT from all processes
    tapjax.distributed.initialize("HOST:PORT", num_processes=n, process_id=i)
    table = tapjax.distributed.analyze_checkpoints(paths, threshold, beta_max, hint=beta_star)

On a cluster managed by SLURM, Open MPI or a TPU pod, ``initialize()`` with no arguments lets
JAX detect the coordinator and ranks. See ``docs/scaling.md``.
"""

from __future__ import annotations

import os
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tapjax import recurrence, sharding, spectra
from tapjax.spin_model import LayeredCouplings


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, cpu_collectives: str = "gloo", **kw) -> None:
    """``jax.distributed.initialize`` plus CPU collectives (gloo) when the platform is CPU.

    Call it first, before any other JAX call of the program. Arguments are those of
    :func:`jax.distributed.initialize` (all None: auto-detected on SLURM / MPI / TPU pods).
    """
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms in ("", "cpu") and cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id, **kw)


class SeriesRow(NamedTuple):
    """Per-checkpoint results of :func:`series_quantities` (each ``(T,)`` after the map).

    Attributes:
      beta_c: first β with λ_min(I − M(β)) ≤ λ* (NaN when ``crossed`` is False).
      crossed: whether the scan found a crossing in ``(0, beta_max]``.
      status: :class:`tapjax.recurrence.SearchStatus` code (0 = OK; β_c is NaN otherwise).
      num_tests: PD tests the search spent.
      lambda_max_J: largest eigenvalue of the bond matrix J (dense for small N, else Lanczos).
      lambda_min_R: :math:`\\min_i \\sum_\\ell J_{i\\ell}^2`.
    """

    beta_c: jax.Array
    crossed: jax.Array
    status: jax.Array
    num_tests: jax.Array
    lambda_max_J: jax.Array
    lambda_min_R: jax.Array


def series_quantities(c: LayeredCouplings, threshold, hint, *, beta_max: float, rtol: float,
                      num_scan: int = 16, lanczos_iter: int = 120) -> SeriesRow:
    """The per-checkpoint program: critical-β search, λ_max(J), λ_min(R) (pure, traceable)."""
    r = recurrence.critical_beta_search(c, threshold, beta_max, rtol, hint, num_scan=num_scan)
    lam = spectra.lambda_max_bond(c, "auto", num_iter=lanczos_iter)  # dense for small N
    ok = r.crossed & (r.status == 0)
    return SeriesRow(jnp.where(ok, r.beta, jnp.nan), r.crossed, r.status, r.num_tests, lam,
                     spectra.lambda_min_r(c))


class SeriesProgram(NamedTuple):
    """:func:`series_quantities` with its static settings; hashable by value, so the same
    settings reuse one compiled program (a static argument of :func:`tapjax.sharding.map_checkpoints`)."""

    beta_max: float
    rtol: float
    num_scan: int = 16
    lanczos_iter: int = 120

    def __call__(self, c: LayeredCouplings, threshold, hint) -> SeriesRow:
        return series_quantities(c, threshold, hint, beta_max=self.beta_max, rtol=self.rtol,
                                 num_scan=self.num_scan, lanczos_iter=self.lanczos_iter)


def load_rows(paths: Sequence[str], rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Stacked weights ``(len(rows), N_{k-1}, N_k)`` of the checkpoint files ``paths[rows]``."""
    from tapjax import checkpoints as ckpt  # pylint: disable=import-outside-toplevel
    from tapjax.models import weights_from_params  # pylint: disable=import-outside-toplevel
    cache: dict[int, tuple[np.ndarray, ...]] = {}
    out = []
    for i in rows:
        if int(i) not in cache:
            params, _ = ckpt.load_checkpoint(paths[int(i)])
            cache[int(i)] = tuple(np.asarray(w) for w in weights_from_params(params))
        out.append(cache[int(i)])
    return tuple(np.stack([ws[k] for ws in out]) for k in range(len(out[0])))


def analyze_checkpoints(paths: Sequence[str], threshold: float, beta_max: float, *,
                        hint: float | None = None, rtol: float = 1e-4, num_scan: int = 16,
                        lanczos_iter: int = 120, dtype=jnp.float32,
                        mesh=None) -> SeriesRow:
    """β_c, λ_max(J), λ_min(R) of every checkpoint file, each process reading only its own.

    Args:
      paths: the series' checkpoint files (tapjax ``.npz``), the same list on every process.
      threshold: the reference λ* (:mod:`tapjax.reference`); hint: the reference β* (scan hint).
      beta_max, rtol, num_scan: as in :func:`tapjax.recurrence.critical_beta_search`.

    Returns:
      :class:`SeriesRow` of ``(T,)`` numpy arrays, identical on every process.
    """
    mesh = sharding.device_mesh() if mesh is None else mesh
    T = len(paths)
    rows = sharding.process_rows(T, mesh)
    np_dtype = np.dtype(jnp.dtype(dtype).name)
    ws = tuple(w.astype(np_dtype) for w in load_rows(paths, rows))
    fn = SeriesProgram(float(beta_max), float(rtol), num_scan, lanczos_iter)
    thr = np.full(len(rows), threshold, np_dtype)
    hints = np.full(len(rows), np.nan if hint is None else hint, np_dtype)
    out = sharding.map_checkpoints(fn, ws, thr, hints, num_items=T, mesh=mesh, process_local=True)
    return SeriesRow(*out)


__all__ = ["SeriesProgram", "SeriesRow", "analyze_checkpoints", "initialize", "load_rows", "series_quantities"]
