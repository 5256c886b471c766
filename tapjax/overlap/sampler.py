r"""Many replicas × a temperature grid: block Gibbs + parallel tempering, with running observables.

The chains live in arrays ``(T, R, N_k)`` per layer: T temperatures × R independent replicas.
One *sweep* is a block heat-bath sweep of every chain (:func:`~tapjax.overlap.heat_bath.block_gibbs_sweep`)
followed, when tempering is on, by one round of exchange moves
(:func:`~tapjax.overlap.tempering.exchange_step`, parity = sweep mod 2).

Randomness is counter-based. Sweep s draws all its uniforms at once from the key
``fold_in(fold_in(key, 1), s)``. The draw has shape ``(T, R, N + 1)``: one number per spin,
and the last column decides the exchange moves. A run is therefore a pure function of
(key, number of sweeps). It does not depend on how the sweeps are split into jitted chunks,
and it can be extended later from its final state.

The random start is itself a sweep. The first ``measure_every`` sweeps run at β = 0, where
the heat-bath draw ignores the neighbours and gives independent uniform ±1 spins. This keeps
the whole run in one compiled program. Each ``jax.random`` call costs seconds of XLA
compilation on a CPU, so this matters.

Every ``measure_every`` sweeps the overlap matrices are formed and accumulated (see
:func:`measure`) into :class:`RunningSums`: compensated float32 pairs of float64 accuracy,
energies about a per-temperature shift, integer counts (:mod:`~tapjax.overlap.accumulators`
says why). The totals are therefore independent of how the run is split into chunks, and a
10^5-measurement cold run keeps E/N and the specific heat to float64 accuracy. The time series of energies and of :math:`\bar Q` are kept for
autocorrelation and equilibration checks. Burn-in runs the same program, and its statistics
are discarded.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tapjax.overlap.accumulators import (Compensated, compensated_add, compensated_value,
                                         compensated_zeros)
from tapjax.overlap.heat_bath import SpinSystem, block_gibbs_sweep, sweep_uniforms
from tapjax.overlap.observables import overlap_histogram, overlap_matrices, upper_pairs
from tapjax.overlap.tempering import exchange_step

_SWEEP_STREAM = 1
_SERIES_BUFFER = 256   # measurements per jitted call (static; the same for every run)


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """How long and how wide to sample.

    Attributes:
      n_replicas: R independent replicas per temperature (≥ 2; overlaps need pairs).
      n_burn: sweeps discarded before measuring (rounded up to a multiple of ``measure_every``).
      n_measure: sweeps in the measurement phase (``n_measure // measure_every`` samples).
      measure_every: sweeps between measurements.
      tempering: exchange moves between neighbouring temperatures after every sweep.
      num_bins: bins of the P(q) histogram on [−1, 1]. The default 64 puts the same number of
        attainable overlaps (−1 + 2m/N_k) in every bin when N_k is a multiple of 64, which
        avoids a comb pattern in P(q) for the usual power-of-two widths.
      chunk: sweeps per jitted call (progress granularity only; results do not depend on it).
    """

    n_replicas: int = 8
    n_burn: int = 1000
    n_measure: int = 2000
    measure_every: int = 1
    tempering: bool = True
    num_bins: int = 64
    chunk: int = 250

    def __post_init__(self):
        if self.n_replicas < 2:
            raise ValueError(f"n_replicas={self.n_replicas}: need at least 2 replicas for overlaps")
        if self.n_burn < 0 or self.n_measure < 1 or self.measure_every < 1:
            raise ValueError(f"n_burn={self.n_burn}, n_measure={self.n_measure}, measure_every="
                             f"{self.measure_every}: need n_burn >= 0, n_measure >= 1, measure_every >= 1")
        if self.n_measure < self.measure_every:
            raise ValueError(f"n_measure={self.n_measure} < measure_every={self.measure_every}: no measurement")
        if self.num_bins < 2 or self.chunk < 1:
            raise ValueError(f"num_bins={self.num_bins}, chunk={self.chunk}: need num_bins >= 2, chunk >= 1")

    @property
    def num_measurements(self) -> int:
        return self.n_measure // self.measure_every


class ChainState(NamedTuple):
    """All chains after ``sweep`` sweeps.

    Attributes:
      spins: per-layer ``(T, R, N_k)`` ±1 (layer 0 holds the clamp when clamped).
      energy: ``(T, R)`` H of each chain.
      sweep: int32 scalar, sweeps done (the counter of the key stream).
      walker: ``(T, R)`` int32, which walker (initial temperature index) occupies each slot.
      last_end: ``(T, R)`` int32: −1, or 0/1 if the walker in that slot last touched the
        lowest/highest temperature index (for round-trip counting).
    """

    spins: tuple
    energy: jax.Array
    sweep: jax.Array
    walker: jax.Array
    last_end: jax.Array


def canonical(system: SpinSystem) -> SpinSystem:
    """The form the compiled sampler runs. Missing fields become zeros. A missing clamp becomes
    zeros with ``clamp_on = 0``, and a given clamp gets ``clamp_on = 1``.

    Free and clamped systems, with or without fields, then share one pytree structure, so they
    share one compilation. Only the clamp's shape, (N_0,) or (R, N_0), can still differ.
    """
    dtype = system.couplings.dtype
    fields = system.fields
    if fields is None:
        fields = tuple(jnp.zeros((n,), dtype) for n in system.sizes)
    if system.clamp_on is not None:
        return SpinSystem(system.couplings, fields, system.clamp, system.clamp_on)
    if system.clamp is None:
        return SpinSystem(system.couplings, fields, jnp.zeros((system.sizes[0],), dtype), jnp.float32(0.0))
    return SpinSystem(system.couplings, fields, system.clamp, jnp.float32(1.0))


def measured_layers(system: SpinSystem) -> tuple[int, ...]:
    """Layers the sampler accumulates: every layer. Layer 0 is dropped afterwards when it is clamped."""
    return tuple(range(system.num_layers + 1))


def _layer_weights(system: SpinSystem) -> list:
    """Weight of each layer in the global overlap: 0 for a clamped layer 0, else 1."""
    w = [1.0] * (system.num_layers + 1)
    if system.clamp is not None:
        w[0] = 1.0 - system.clamp_on if system.clamp_on is not None else 0.0
    return w


def init_state(system: SpinSystem, num_temps: int, num_replicas: int) -> ChainState:
    """All spins +1 (layer 0 = the clamp when clamped), energy 0, sweep 0.

    This is a placeholder. :func:`sample` replaces it by a random start (a β = 0 sweep)
    before any statistics are taken.
    """
    dtype = system.couplings.dtype
    shape = (num_temps, num_replicas)
    spins = [jnp.ones((*shape, n), dtype) for n in system.sizes]
    spins[0] = system.clamp_values(spins[0].shape, spins[0])
    spins = tuple(spins)
    return ChainState(spins, jnp.zeros(shape, dtype), jnp.int32(0), *_fresh_walkers(num_temps, num_replicas))


def _fresh_walkers(num_temps: int, num_replicas: int) -> tuple[jax.Array, jax.Array]:
    walker = np.broadcast_to(np.arange(num_temps, dtype=np.int32)[:, None], (num_temps, num_replicas))
    last_end = np.full((num_temps, num_replicas), -1, np.int32)
    last_end[0] = 0
    if num_temps > 1:
        last_end[-1] = 1
    return jnp.asarray(walker), jnp.asarray(last_end)


def sweep_key(key: jax.Array, sweep) -> jax.Array:
    """Key of sweep number ``sweep`` (0-based)."""
    return jax.random.fold_in(jax.random.fold_in(key, _SWEEP_STREAM), sweep)


class RunningSums(NamedTuple):
    r"""The sampler's running sums over the measurements (a pytree; K = measured layers).

    Float sums are :class:`~tapjax.overlap.accumulators.Compensated` float32 pairs (float64
    accuracy with x64 off, see :mod:`~tapjax.overlap.accumulators`); counts are int32. Each
    per-measurement quantity is averaged over pairs a < b or replicas before it is added.

    Attributes:
      count: int32 scalar, measurements taken.
      abs_q, q, q2, q4: ``(T,)`` sums of :math:`\mathrm{mean}_{a<b}` of |q_ab|, q_ab, q_ab², q_ab⁴.
      abs_q_layer, q_layer: ``(T, K)`` the same of |q^(k)_ab| and q^(k)_ab.
      qmat, abs_qmat: ``(T, R, R)`` sums of q_ab and |q_ab|.
      hist: ``(T, B)`` int32 counts of the pairs' q in B bins on [−1, 1].
      hist_layer: ``(K, T, B)`` int32 counts per layer.
      spin_sum: per measured layer ``(T, R, N_k)`` sums of σ.
      site: per measured layer ``(T, N_k)`` sums of :math:`\mathrm{mean}_{a<b}\,\mathrm{sign}(q_{ab})\,\sigma^a_i\sigma^b_i`.
      e_shift: ``(T,)`` float32 constant :math:`E_s`; the energy sums are taken about it.
      e_sum, e2_sum: ``(T,)`` sums of :math:`\mathrm{mean}_r (E - E_s)` and :math:`\mathrm{mean}_r (E - E_s)^2`.
      pt_prob_sum: ``(T - 1,)`` sums of the mean exchange acceptance of each pair.
      pt_attempts: ``(T - 1,)`` int32, exchange rounds in which each pair was proposed.
      half_trips: ``(R,)`` int32, arrivals of a walker at one end of the ladder coming from the other.
    """

    count: jax.Array
    abs_q: Compensated
    q: Compensated
    q2: Compensated
    q4: Compensated
    abs_q_layer: Compensated
    q_layer: Compensated
    qmat: Compensated
    abs_qmat: Compensated
    hist: jax.Array
    hist_layer: jax.Array
    spin_sum: tuple
    site: tuple
    e_shift: jax.Array
    e_sum: Compensated
    e2_sum: Compensated
    pt_prob_sum: Compensated
    pt_attempts: jax.Array
    half_trips: jax.Array


class SamplerTotals(RunningSums):
    """:class:`RunningSums` on the host: float64 numpy sums (counts int), the same field names.

    ``totals["hist"]`` (the dict access of earlier versions) still works and reads the field.
    """

    __slots__ = ()

    @classmethod
    def from_sums(cls, sums: RunningSums) -> "SamplerTotals":
        """Evaluates every compensated pair in float64 (``hi + lo``)."""
        def host(x):
            if isinstance(x, Compensated):
                return compensated_value(x)
            if isinstance(x, tuple):
                return tuple(host(v) for v in x)
            return np.asarray(x, np.float64) if x.dtype.kind == "f" else np.asarray(x, np.int64)
        vals = {name: host(getattr(sums, name)) for name in RunningSums._fields}
        vals["count"] = int(vals["count"])
        return cls(**vals)

    def __getitem__(self, key):
        return getattr(self, key) if isinstance(key, str) else super().__getitem__(key)

    @property
    def energy_mean(self) -> np.ndarray:
        r"""``(T,)`` :math:`\langle E\rangle = E_s + \overline{E - E_s}` (chain energy, not per spin)."""
        return self.e_shift + self.e_sum / self.count

    @property
    def energy_variance(self) -> np.ndarray:
        r"""``(T,)`` :math:`\overline{(E-E_s)^2} - \overline{(E-E_s)}^2`, clipped at 0, per chain
        (the mean over replicas of each replica's variance about the pooled mean)."""
        d = self.e_sum / self.count
        return np.maximum(self.e2_sum / self.count - d * d, 0.0)


def init_accumulators(system: SpinSystem, num_temps: int, num_replicas: int, num_bins: int,
                      energy_shift=None) -> RunningSums:
    """Zeroed :class:`RunningSums` (see :func:`measure`).

    Args:
      energy_shift: ``(T,)`` constant the energy moments are taken about (default 0). A value
        near the mean energy keeps the variance free of cancellation.
    """
    free = measured_layers(system)
    t, r = num_temps, num_replicas
    k = len(free)
    z = compensated_zeros
    i32 = jnp.int32
    shift = jnp.zeros((t,), jnp.float32) if energy_shift is None else jnp.asarray(energy_shift, jnp.float32)
    if shift.shape != (t,):
        raise ValueError(f"energy_shift: shape {shift.shape}, expected (T,) = ({t},)")
    return RunningSums(
        count=jnp.zeros((), i32),
        abs_q=z((t,)), q=z((t,)), q2=z((t,)), q4=z((t,)),
        abs_q_layer=z((t, k)), q_layer=z((t, k)), qmat=z((t, r, r)), abs_qmat=z((t, r, r)),
        hist=jnp.zeros((t, num_bins), i32), hist_layer=jnp.zeros((k, t, num_bins), i32),
        spin_sum=tuple(z((t, r, system.sizes[j])) for j in free),
        site=tuple(z((t, system.sizes[j])) for j in free),
        e_shift=shift, e_sum=z((t,)), e2_sum=z((t,)),
        pt_prob_sum=z((max(t - 1, 0),)), pt_attempts=jnp.zeros((max(t - 1, 0),), i32),
        half_trips=jnp.zeros((r,), i32),
    )


def measure(system: SpinSystem, state: ChainState, acc: RunningSums, num_bins: int):
    """Adds the current configurations to the running sums.

    Returns:
      ``(acc, row)``: ``row`` holds this measurement's ``energy`` ``(T, R)``, ``qbar`` ``(T,)``
      (mean over a < b of |q_ab|) and ``qbar_layer`` ``(T, L + 1)``. Every layer is measured.
      A clamped layer 0 has weight 0 in the global q, and :func:`tapjax.overlap.summarize`
      drops its per-layer entries.
    """
    free = measured_layers(system)
    spins = [state.spins[k] for k in free]
    q_layer, _ = overlap_matrices(spins)
    w = _layer_weights(system)
    sizes = [s.shape[-1] for s in spins]
    q = sum(wk * nk * ql for wk, nk, ql in zip(w, sizes, q_layer)) / sum(wk * nk for wk, nk in zip(w, sizes))
    pairs = upper_pairs(q)                                       # (T, P)
    pl = upper_pairs(q_layer)                                    # (K, T, P)
    qbar = jnp.mean(jnp.abs(pairs), -1)
    qbar_layer = jnp.mean(jnp.abs(pl), -1).T                     # (T, K)
    p2 = pairs * pairs
    e = state.energy.astype(jnp.float32)
    de = e - acc.e_shift[:, None]
    # site decomposition of mean_{a<b} |q_ab|: sign(q_ab) s_i^a s_i^b averaged over pairs a < b
    r = q.shape[-1]
    pair_w = jnp.sign(q) * jnp.asarray(np.triu(np.ones((r, r)), 1) / max(r * (r - 1) / 2, 1), q.dtype)
    site = [jnp.einsum("tab,tai,tbi->ti", pair_w, s, s) for s in spins]
    add = compensated_add
    acc = acc._replace(
        count=acc.count + 1,
        abs_q=add(acc.abs_q, qbar), q=add(acc.q, pairs.mean(-1)), q2=add(acc.q2, p2.mean(-1)),
        q4=add(acc.q4, (p2 * p2).mean(-1)), abs_q_layer=add(acc.abs_q_layer, qbar_layer),
        q_layer=add(acc.q_layer, pl.mean(-1).T),
        qmat=add(acc.qmat, q), abs_qmat=add(acc.abs_qmat, jnp.abs(q)),
        hist=acc.hist + overlap_histogram(pairs, num_bins).astype(jnp.int32),
        hist_layer=acc.hist_layer + overlap_histogram(pl, num_bins).astype(jnp.int32),
        spin_sum=tuple(add(a, s) for a, s in zip(acc.spin_sum, spins)),
        site=tuple(add(a, s) for a, s in zip(acc.site, site)),
        e_sum=add(acc.e_sum, de.mean(-1)), e2_sum=add(acc.e2_sum, (de * de).mean(-1)),
    )
    return acc, {"energy": e, "qbar": qbar, "qbar_layer": qbar_layer}


def mc_step(system: SpinSystem, betas: jax.Array, key: jax.Array, state: ChainState, acc: RunningSums,
            tempering: bool) -> tuple[ChainState, RunningSums]:
    """One sweep (block Gibbs, then an exchange round when ``tempering``); updates PT statistics."""
    num_temps = betas.shape[0]
    swap = tempering and num_temps > 1
    layer_u, extra_u = sweep_uniforms(sweep_key(key, state.sweep), system, state.energy.shape, int(swap))
    spins, e = block_gibbs_sweep(system, state.spins, betas, layer_u)
    walker, last_end = state.walker, state.last_end
    if swap:
        (spins, walker, last_end), e, probs, proposed = exchange_step(
            extra_u[:-1, :, 0], (spins, walker, last_end), e, betas, state.sweep % 2)
        # round trips: a walker arriving at one end having last touched the other end
        at_bot = last_end[0] == 1
        at_top = last_end[num_temps - 1] == 0
        acc = acc._replace(
            pt_prob_sum=compensated_add(acc.pt_prob_sum, probs.mean(-1)),
            pt_attempts=acc.pt_attempts + proposed.astype(jnp.int32),
            half_trips=acc.half_trips + at_bot.astype(jnp.int32) + at_top.astype(jnp.int32))
        last_end = last_end.at[0].set(0).at[num_temps - 1].set(1)
    return ChainState(spins, e, state.sweep + 1, walker, last_end), acc


@functools.partial(jax.jit, static_argnames=("measure_every", "buffer", "tempering", "num_bins"))
def advance(system: SpinSystem, betas: jax.Array, key: jax.Array, state: ChainState, acc: RunningSums,
            n_outer, *, measure_every: int, buffer: int, tempering: bool, num_bins: int):
    """``n_outer`` (traced, ≤ ``buffer``) outer steps, each ``measure_every`` sweeps then :func:`measure`.

    Each measurement's row goes into series buffers of static length ``buffer``. Rows past
    ``n_outer`` stay zero. ``n_outer`` and ``betas`` are traced, so burn-in, measurement and
    the β = 0 start all share one compilation.

    Returns:
      ``(state, acc, series)``.
    """
    t, r = state.energy.shape
    k = len(measured_layers(system))
    series = {"energy": jnp.zeros((buffer, t, r), jnp.float32), "qbar": jnp.zeros((buffer, t), jnp.float32),
              "qbar_layer": jnp.zeros((buffer, t, k), jnp.float32)}

    def outer(i, carry):
        state, acc, series = carry
        state, acc = jax.lax.fori_loop(
            0, measure_every, lambda _, c: mc_step(system, betas, key, *c, tempering), (state, acc))
        acc, row = measure(system, state, acc, num_bins)
        series = {name: series[name].at[i].set(row[name]) for name in series}
        return state, acc, series

    return jax.lax.fori_loop(0, n_outer, outer, (state, acc, series))


@dataclasses.dataclass
class SamplerOutput:
    """Raw output of :func:`sample` (numpy). ``acc`` holds the running sums of the measurement
    phase (:class:`SamplerTotals`, float64); ``series`` the per-measurement ``energy`` ``(M, T, R)``, ``qbar`` ``(M, T)`` and
    ``qbar_layer`` ``(M, T, K)``; ``state`` the final :class:`ChainState` (to continue)."""

    temperatures: np.ndarray
    config: SamplerConfig
    acc: SamplerTotals
    series: dict
    state: ChainState
    seconds: float          # sampling wall time, compilation excluded
    compile_seconds: float  # the one jitted program (burn-in and measurement share it)


def sample(system: SpinSystem, temperatures, config: SamplerConfig, key: jax.Array,
           state: ChainState | None = None,
           callback: Callable[[int, int, dict], None] | None = None) -> SamplerOutput:
    """Burn-in, then measurement, on every (temperature, replica) chain.

    Args:
      system: the spin model.
      temperatures: ``(T,)`` increasing or decreasing (exchange pairs are neighbours in this
        order; use a monotone grid).
      config: :class:`SamplerConfig`.
      key: root PRNG key (see the module docstring for the key stream).
      state: continue from this state instead of a fresh random start (burn-in still runs).
      callback: ``callback(sweeps_done, sweeps_total, metrics)`` after every chunk.
    """
    system = canonical(system)     # one compiled program for free/clamped, with/without fields
    temps = np.asarray(temperatures, np.float64)
    if temps.ndim != 1 or temps.size < 1 or np.any(~np.isfinite(temps)) or np.any(temps <= 0):
        raise ValueError(f"temperatures {temperatures!r}: need a 1-D array of positive finite values")
    if temps.size > 1 and not (np.all(np.diff(temps) > 0) or np.all(np.diff(temps) < 0)):
        raise ValueError("temperatures must be strictly monotone (exchange moves pair neighbours)")
    betas = jnp.asarray(1.0 / temps, system.couplings.dtype)
    num_t, num_r = temps.size, config.n_replicas
    if state is not None and state.energy.shape != (num_t, num_r):
        raise ValueError(f"state has shape {state.energy.shape}, expected (T, R) = {(num_t, num_r)}")
    acc = init_accumulators(system, num_t, num_r, config.num_bins)
    every = config.measure_every
    n_burn_outer = -(-config.n_burn // every)                   # burn-in rounded up to whole outer steps
    total = (n_burn_outer + config.num_measurements) * every
    per_call = max(1, min(config.chunk // every, _SERIES_BUFFER))
    kw = dict(measure_every=every, buffer=_SERIES_BUFFER, tempering=config.tempering, num_bins=config.num_bins)
    done = 0

    def report(metrics):
        if callback is not None:
            callback(done, total, metrics)

    def run(state, acc, n_outer, betas):
        rows: dict[str, list] = {"energy": [], "qbar": [], "qbar_layer": []}
        nonlocal done
        while n_outer > 0:
            n = min(per_call, n_outer)
            state, acc, series = advance(system, betas, key, state, acc, n, **kw)
            jax.block_until_ready(state.energy)
            for name in rows:
                rows[name].append(np.asarray(series[name][:n]))
            n_outer -= n
            done += n * every
            yield state, acc, rows

    t0 = time.perf_counter()       # compilation: one program, zero trip count
    start = init_state(system, num_t, num_r) if state is None else state
    jax.block_until_ready(advance(system, betas, key, start, acc, 0, **kw)[0].energy)
    t_compile = time.perf_counter() - t0
    t_start = time.perf_counter()
    if state is None:              # random start: one outer step at beta = 0 (uniform spins)
        state, _, _ = advance(system, jnp.zeros_like(betas), key, start, acc, 1, **kw)
        state = state._replace(walker=_fresh_walkers(num_t, num_r)[0], last_end=_fresh_walkers(num_t, num_r)[1])
    for state, acc, rows in run(state, acc, n_burn_outer, betas):
        report({"phase": "burn", "E/N": float(np.mean(state.energy)) / sum(system.sizes)})
    # measurement: fresh statistics (PT acceptance and round trips count only this phase); the
    # energy moments are taken about the mean energy at the end of burn-in (no cancellation)
    acc = init_accumulators(system, num_t, num_r, config.num_bins,
                            energy_shift=jnp.mean(state.energy.astype(jnp.float32), -1))
    rows = {"energy": [], "qbar": [], "qbar_layer": []}
    for state, acc, rows in run(state, acc, config.num_measurements, betas):
        report({"phase": "measure", "Qbar_lowest_T": float(rows["qbar"][-1][:, int(np.argmin(temps))].mean())})
    seconds = time.perf_counter() - t_start
    acc_np = SamplerTotals.from_sums(acc)
    series = {k: np.concatenate(v, 0) for k, v in rows.items()}
    return SamplerOutput(temps, config, acc_np, series, state, seconds, t_compile)


__all__ = ["ChainState", "RunningSums", "SamplerConfig", "SamplerOutput", "SamplerTotals", "advance",
           "init_accumulators", "init_state",
           "mc_step", "measure", "sample", "sweep_key"]
