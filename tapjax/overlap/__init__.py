r"""Monte Carlo replica overlaps (Q_ab curves) of a network's layered spin model.

Modules:
  * :mod:`~tapjax.overlap.heat_bath`: exact block heat-bath sweeps (even | odd layers).
  * :mod:`~tapjax.overlap.tempering`: replica exchange between neighbouring temperatures.
  * :mod:`~tapjax.overlap.observables`: q_ab, P(q), autocorrelation times, Binder cumulant.
  * :mod:`~tapjax.overlap.accumulators`: compensated (float64-accurate) float32 running sums.
  * :mod:`~tapjax.overlap.sampler`: replicas × temperatures, jitted, counter-based keys.
  * :mod:`~tapjax.overlap.diagnostics`: equilibration checks (warnings/errors with numbers).
  * :mod:`~tapjax.overlap.descriptor`: :func:`qab_curve`, one call on a checkpoint.
  * :mod:`~tapjax.overlap.shape`: reading a curve (onset temperature, P(q) shape).
"""

from tapjax.overlap.descriptor import (QabResult, build_system, default_temperatures,
                                       gaussian_equivalent_tc, largest_bond_eigenvalue,
                                       load_network, qab_curve, rescale_to_init, summarize)
from tapjax.overlap.diagnostics import (EquilibrationError, EquilibrationWarning, Thresholds,
                                        diagnose)
from tapjax.overlap.heat_bath import (SpinSystem, block_gibbs_sweep, energy, heat_bath_probability,
                                      local_field, spin_system)
from tapjax.overlap.observables import (binder_parameter, integrated_autocorrelation_time,
                                        overlap_floor, overlap_matrices)
from tapjax.overlap.sampler import (ChainState, RunningSums, SamplerConfig, SamplerOutput,
                                    SamplerTotals, init_state, sample)
from tapjax.overlap.shape import onset_temperature, pq_shape, temperature_index
from tapjax.overlap.tempering import exchange_acceptance, exchange_step

__all__ = ["ChainState", "EquilibrationError", "EquilibrationWarning", "QabResult", "RunningSums",
           "SamplerConfig", "SamplerOutput", "SamplerTotals", "SpinSystem", "Thresholds", "binder_parameter", "block_gibbs_sweep",
           "build_system", "default_temperatures", "diagnose", "energy", "exchange_acceptance",
           "exchange_step", "gaussian_equivalent_tc", "heat_bath_probability", "init_state",
           "integrated_autocorrelation_time", "largest_bond_eigenvalue", "load_network",
           "local_field", "onset_temperature", "overlap_floor", "overlap_matrices", "pq_shape",
           "qab_curve", "rescale_to_init", "sample", "spin_system", "summarize", "temperature_index"]
