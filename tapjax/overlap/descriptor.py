r"""The Q_ab curve of one network in one call: :func:`qab_curve` → :class:`QabResult`.

``qab_curve(checkpoint_or_weights, temperatures)`` builds the layered spin model (neurons =
±1 spins, weights = couplings, eq. 1). It samples n replicas at every temperature with block
heat-bath sweeps and parallel tempering (:mod:`tapjax.overlap.sampler`). It returns

.. math::
    \bar Q(T) = \Big\langle \frac{2}{n(n-1)} \sum_{a<b} |q_{ab}| \Big\rangle_{\rm sweeps},
    \qquad q_{ab} = \frac1N \sum_i \sigma^a_i \sigma^b_i ,

globally and per layer, together with P(q), the Binder cumulant, energies, specific heat,
autocorrelation times and equilibration diagnostics. ``result.save(prefix)`` writes
``prefix.npz`` (arrays) and ``prefix.json`` (settings, summary table, diagnostics).

The choices this module makes where Li (2025) gives no recipe are listed in
``docs/overlap.md``. In short: ±1 spins on every layer, input included (``input_layer``);
raw weights, so T is in the units of the TAP analysis (``coupling_scale``); no fields unless
asked; uniform random starts; and :math:`\langle|q_{ab}|\rangle` of instantaneous
configurations.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tapjax.overlap.diagnostics import Thresholds, diagnose, report
from tapjax.overlap.heat_bath import SpinSystem, spin_system
from tapjax.overlap.observables import binder_parameter, histogram_edges, overlap_floor
from tapjax.overlap.sampler import SamplerConfig, SamplerOutput, sample
from tapjax.pytrees import jsonable
from tapjax.spin_model import LayeredCouplings, bond_matvec

INPUT_LAYER_MODES = ("free", "clamped", "drop")
COUPLING_SCALES = ("raw", "init")


# --------------------------------------------------------------------------- building the model
def load_network(source: Any) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...] | None, dict]:
    """Weights, biases (or None) and metadata from a checkpoint path, a params dict or weights.

    Args:
      source: a ``.npz`` checkpoint written by :mod:`tapjax.checkpoints`; a Flax params dict
        ``{"layer1": {"kernel", ["bias"]}, ...}``; a :class:`LayeredCouplings`; or a sequence
        ``[W^(1), ..., W^(L)]``.
    Returns:
      ``(weights, biases, meta)``. ``biases[k-1]`` is the bias of layer k (None when the net
      has none), and ``meta`` holds the checkpoint's metadata (``t``, ``val_error`` …) or ``{}``.
    """
    meta: dict = {}
    if isinstance(source, (str, os.PathLike)):
        from tapjax.checkpoints import load_checkpoint  # pylint: disable=import-outside-toplevel
        params, meta = load_checkpoint(os.fspath(source))
        meta = {**meta, "path": os.fspath(source)}
        source = params
    if isinstance(source, Mapping):
        names = sorted(source, key=lambda n: int(str(n).removeprefix("layer")))
        weights = tuple(np.asarray(source[n]["kernel"]) for n in names)
        biases = tuple(np.asarray(source[n]["bias"]) if "bias" in source[n] else None for n in names)
        return weights, (None if all(b is None for b in biases) else biases), meta
    if isinstance(source, LayeredCouplings):
        return tuple(np.asarray(w) for w in source.weights), None, meta
    return tuple(np.asarray(w) for w in source), None, meta


def rescale_to_init(weights: Sequence[np.ndarray], scale: float = 2.0) -> tuple[np.ndarray, ...]:
    r"""Rescale each block to rms :math:`\sqrt{C/N_{k-1}}`, the init ensemble's value (``coupling_scale="init"``).

    This removes the growth of the weight norm during training and keeps the structure. The
    analytic MSK :math:`T_c` (eq. 17) then applies to every rescaled net.
    """
    out = []
    for w in weights:
        w = np.asarray(w, np.float64)
        rms = np.sqrt(np.mean(w * w))
        out.append((w * (np.sqrt(scale / w.shape[0]) / rms if rms > 0 else 1.0)).astype(np.float32))
    return tuple(out)


def build_system(weights: Sequence[np.ndarray], biases=None, *, input_layer: str = "free",
                 clamp=None, use_biases: bool = False, coupling_scale: str = "raw") -> SpinSystem:
    """The :class:`SpinSystem` for the chosen variant.

    Args:
      weights: ``[W^(1), ..., W^(L)]``.
      biases: per-layer biases ``[b^(1), ..., b^(L)]`` or None; used as fields h_k = b_k
        when ``use_biases``.
      input_layer: ``"free"`` (input neurons are spins, the default), ``"clamped"`` (layer 0
        fixed to ``clamp``), or ``"drop"`` (no input layer: spins are layers 1..L, couplings
        ``W^(2..L)``; for a one-block net this leaves nothing, so it is refused).
      clamp: layer-0 values for ``"clamped"`` (the net's preprocessed input, see
        :func:`tapjax.models.preprocess`), shape ``(N_0,)`` or ``(R, N_0)``.
      coupling_scale: ``"raw"`` (weights as they are) or ``"init"`` (:func:`rescale_to_init`).
    """
    if input_layer not in INPUT_LAYER_MODES:
        raise ValueError(f"input_layer={input_layer!r}: use one of {INPUT_LAYER_MODES}")
    if coupling_scale not in COUPLING_SCALES:
        raise ValueError(f"coupling_scale={coupling_scale!r}: use one of {COUPLING_SCALES}")
    if (clamp is not None) != (input_layer == "clamped"):
        raise ValueError("pass clamp= exactly when input_layer='clamped'")
    weights = tuple(np.asarray(w, np.float32) for w in weights)
    if coupling_scale == "init":
        weights = rescale_to_init(weights)
    fields = None
    if use_biases:
        if biases is None:
            raise ValueError("use_biases=True but the network has no biases")
        fields = [None] + [None if b is None else np.asarray(b, np.float32) for b in biases]
    if input_layer == "drop":
        if len(weights) < 2:
            raise ValueError("input_layer='drop' needs at least two weight matrices")
        weights = weights[1:]
        fields = None if fields is None else fields[1:]
    return spin_system(weights, fields=fields, clamp=clamp)


# --------------------------------------------------------------------------- temperature grid
@functools.partial(jax.jit, static_argnames=("num_iter",))
def _power_iteration_sq(c: LayeredCouplings, num_iter: int) -> jax.Array:
    # deterministic quasi-random start (no key needed): cos(golden-ratio * i)
    v = [jnp.cos(0.6180339887 * (jnp.arange(n) + off) * 6.283185307).astype(c.dtype)
         for n, off in zip(c.sizes, c.offsets)]

    def normalize(v):
        nrm = jnp.sqrt(sum(jnp.sum(x * x) for x in v))
        return [x / nrm for x in v]

    v = jax.lax.fori_loop(0, num_iter, lambda _, v: normalize(list(bond_matvec(c, bond_matvec(c, v)))),
                          normalize(v))
    return jnp.sqrt(sum(jnp.sum(x * x) for x in bond_matvec(c, v)))


def largest_bond_eigenvalue(c: LayeredCouplings, num_iter: int = 200) -> float:
    r""":math:`\lambda_{\max}(J)` by power iteration on :math:`J^2` with :func:`bond_matvec` (no dense J).

    A bipartite J has a spectrum symmetric about 0, so the top eigenvalue of :math:`J^2` is
    :math:`\lambda_{\max}^2`, and :math:`\|J v\|` for the converged unit v approaches it from below.
    The start vector is deterministic.
    """
    cc = LayeredCouplings(tuple(jnp.asarray(w, jnp.float32) for w in c.weights))
    return float(_power_iteration_sq(cc, num_iter))


def gaussian_equivalent_tc(c: LayeredCouplings) -> float:
    r"""Analytic MSK :math:`T_c` (eq. 15) of Gaussian couplings with this net's per-layer variances.

    Uses :math:`C_k = N_{k-1}\,\overline{(W^{(k)}_{ij})^2}`. It equals the paper's :math:`T_c` for
    an untrained net, and it is the natural unit of T for the glass.
    """
    from tapjax.msk import critical_temperature  # pylint: disable=import-outside-toplevel
    scales = [float(w.shape[0] * np.mean(np.square(np.asarray(w, np.float64)))) for w in c.weights]
    return critical_temperature(c.sizes, scales)


def default_temperatures(c: LayeredCouplings, num: int = 32, low: float = 0.3, high: float = 1.5) -> np.ndarray:
    r"""Geometric grid from ``low`` × :func:`gaussian_equivalent_tc` to ``high`` × :math:`\lambda_{\max}(J)`.

    :math:`\lambda_{\max}(J)` is the naive mean-field ordering temperature and an upper bound
    of the TAP :math:`T_c`, so the top of the grid is paramagnetic for untrained and trained
    nets alike. For an untrained MSK net the grid spans about 0.3–3 :math:`T_c`.
    """
    t_lo = low * gaussian_equivalent_tc(c)
    t_hi = max(high * largest_bond_eigenvalue(c), 2.0 * t_lo)
    return np.geomspace(t_lo, t_hi, num)


# --------------------------------------------------------------------------- result
@dataclasses.dataclass
class QabResult:
    r"""A network's replica-overlap descriptor (all arrays numpy; T = temperatures, K = measured layers).

    Attributes:
      temperatures: ``(T,)``.
      qbar: ``(T,)`` the Q_ab curve :math:`\langle \mathrm{mean}_{a<b} |q_{ab}|\rangle`.
      qbar_err: ``(T,)`` its standard error (from the series' autocorrelation time).
      qbar_layer: ``(T, K)`` the same per measured layer (``layers`` names them).
      q_mean: ``(T,)`` signed :math:`\langle \mathrm{mean}_{a<b} q_{ab}\rangle` (≈ 0 with Z2 symmetry).
      q2, q4: ``(T,)`` pair-averaged :math:`\langle q^2\rangle, \langle q^4\rangle`.
      binder: ``(T,)`` :math:`\tfrac12(3 - \langle q^4\rangle/\langle q^2\rangle^2)`.
      q_layer_mean: ``(T, K)`` signed per-layer overlaps.
      overlap_matrix: ``(T, R, R)`` time-averaged :math:`q_{ab}` (the "RSB matrix"; diagonal 1).
      abs_overlap_matrix: ``(T, R, R)`` time-averaged :math:`|q_{ab}|`.
      pq: ``(T, B)`` P(q) as a density on ``bin_edges`` ``(B + 1,)`` (pairs a<b, all sweeps).
      pq_layer: ``(T, K, B)`` P(q^{(k)}) per measured layer, same bins.
      spin_mean: ``(T, N)`` :math:`\langle\sigma_i\rangle` over sweeps and replicas (measured layers
        concatenated).
      q_ea: ``(T,)`` :math:`\mathrm{mean}_a \frac1N\sum_i (m^a_i)^2` from per-replica time averages
        :math:`m^a_i` (biased upward by :math:`\approx\tau/M` for short runs).
      qbar_site: ``(T, N)`` site decomposition of the curve,
        :math:`\langle \mathrm{mean}_{a<b}\, \mathrm{sign}(q_{ab})\, \sigma^a_i \sigma^b_i \rangle`; its mean over
        sites equals ``qbar`` exactly. It shows which neurons carry the overlap.
      energy: ``(T,)`` mean energy per spin; ``energy_err`` its standard error.
      specific_heat: ``(T,)`` :math:`\beta^2\,\mathrm{Var}(H)/N`.
      tau_energy, tau_qbar: ``(T,)`` integrated autocorrelation times in sweeps.
      exchange_rate: ``(T - 1,)`` mean acceptance of neighbour swaps (empty without tempering).
      round_trips: round trips lowest↔highest T per walker.
      floor: :math:`E|q|` of independent random configurations (the high-T limit of ``qbar``);
        ``floor_layer`` the same per measured layer.
      layers, layer_sizes: indices and sizes of the measured layers (in the original net's
        numbering, so layer 0 is the input even when ``input_layer="drop"``).
      energy_series, qbar_series: ``(M, T, R)`` and ``(M, T)`` measurement time series.
      diagnostics: output of :func:`tapjax.overlap.diagnostics.diagnose`.
      settings: how the descriptor was computed (sampler, model variant, seed, timing).
      meta: the source's metadata (checkpoint path, training time t, validation error …).
    """

    temperatures: np.ndarray
    qbar: np.ndarray
    qbar_err: np.ndarray
    qbar_layer: np.ndarray
    q_mean: np.ndarray
    q2: np.ndarray
    q4: np.ndarray
    binder: np.ndarray
    q_layer_mean: np.ndarray
    overlap_matrix: np.ndarray
    abs_overlap_matrix: np.ndarray
    pq: np.ndarray
    pq_layer: np.ndarray
    bin_edges: np.ndarray
    spin_mean: np.ndarray
    q_ea: np.ndarray
    qbar_site: np.ndarray
    energy: np.ndarray
    energy_err: np.ndarray
    specific_heat: np.ndarray
    tau_energy: np.ndarray
    tau_qbar: np.ndarray
    exchange_rate: np.ndarray
    round_trips: float
    floor: float
    floor_layer: tuple[float, ...]
    layers: tuple[int, ...]
    layer_sizes: tuple[int, ...]
    energy_series: np.ndarray
    qbar_series: np.ndarray
    diagnostics: dict
    settings: dict
    meta: dict

    _ARRAYS = ("temperatures", "qbar", "qbar_err", "qbar_layer", "q_mean", "q2", "q4", "binder",
               "q_layer_mean", "overlap_matrix", "abs_overlap_matrix", "pq", "pq_layer", "bin_edges", "spin_mean",
               "q_ea", "qbar_site", "energy", "energy_err", "specific_heat", "tau_energy", "tau_qbar", "exchange_rate",
               "energy_series", "qbar_series")
    _SCALARS = ("round_trips", "floor", "floor_layer", "layers", "layer_sizes", "diagnostics", "settings", "meta")

    @property
    def equilibrated(self) -> bool:
        return bool(self.diagnostics.get("ok", False))

    def table(self) -> list[dict[str, float]]:
        """One row per temperature: T, Qbar ± err, Binder, E/N, C, tau (a JSON-friendly summary)."""
        rows = []
        for i, t in enumerate(self.temperatures):
            row = {"T": float(t), "qbar": float(self.qbar[i]), "qbar_err": float(self.qbar_err[i]),
                   "binder": float(self.binder[i]), "q_ea": float(self.q_ea[i]),
                   "energy_per_spin": float(self.energy[i]), "specific_heat": float(self.specific_heat[i]),
                   "tau_energy": float(self.tau_energy[i]), "tau_qbar": float(self.tau_qbar[i])}
            for j, k in enumerate(self.layers):
                row[f"qbar_layer{k}"] = float(self.qbar_layer[i, j])
            rows.append(row)
        return rows

    def save(self, prefix: str, series: bool = True) -> tuple[str, str]:
        """Writes ``prefix.npz`` and ``prefix.json`` atomically; returns both paths.

        ``series=False`` leaves the (M, T, R) time series out of the ``.npz``.
        """
        from tapjax.checkpoints import atomic_write_json, atomic_write_npz  # pylint: disable=import-outside-toplevel
        arrays = {k: getattr(self, k) for k in self._ARRAYS
                  if series or k not in ("energy_series", "qbar_series")}
        atomic_write_npz(prefix + ".npz", arrays)
        doc = {k: jsonable(getattr(self, k)) for k in self._SCALARS}
        doc["table"] = self.table()
        atomic_write_json(prefix + ".json", doc)
        return prefix + ".npz", prefix + ".json"

    @classmethod
    def load(cls, prefix: str) -> "QabResult":
        """Reads what :meth:`save` wrote (``prefix`` with or without ``.npz`` / ``.json``)."""
        for ext in (".npz", ".json"):
            if prefix.endswith(ext):
                prefix = prefix[: -len(ext)]
        with np.load(prefix + ".npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        with open(prefix + ".json") as f:
            doc = json.load(f)
        for k in ("energy_series", "qbar_series"):
            arrays.setdefault(k, np.zeros((0,)))
        scalars = {k: doc[k] for k in cls._SCALARS}
        scalars["layers"] = tuple(scalars["layers"])
        scalars["layer_sizes"] = tuple(scalars["layer_sizes"])
        scalars["floor_layer"] = tuple(scalars["floor_layer"])
        return cls(**arrays, **scalars)


def summarize(out: SamplerOutput, system: SpinSystem, *, layer_offset: int = 0,
              thresholds: Thresholds = Thresholds(), settings: dict | None = None,
              meta: dict | None = None) -> QabResult:
    """Turns a :class:`~tapjax.overlap.sampler.SamplerOutput` into a :class:`QabResult`."""
    acc, cfg, temps = out.acc, out.config, out.temperatures
    n = acc.count
    free = list(system.free_layers)
    sizes = tuple(system.sizes[k] for k in free)
    n_spins = int(sum(sizes))
    # the sampler measures every layer; keep the free ones (indices = layer numbers)
    a = {"abs_q_layer": acc.abs_q_layer[:, free], "q_layer": acc.q_layer[:, free],
         "hist_layer": acc.hist_layer[free], "spin_sum": tuple(acc.spin_sum[k] for k in free),
         "site": tuple(acc.site[k] for k in free)}
    a.update({k: getattr(acc, k) for k in ("abs_q", "q", "q2", "q4", "qmat", "abs_qmat", "hist",
                                             "pt_prob_sum", "pt_attempts", "half_trips")})
    e_mean = acc.energy_mean
    e_var = acc.energy_variance
    exchange = (a["pt_prob_sum"] / np.maximum(a["pt_attempts"], 1.0)) if cfg.tempering else np.zeros((0,))
    diag = diagnose(temps, out.series["energy"], out.series["qbar"], cfg.n_burn, cfg.measure_every,
                    exchange if cfg.tempering and temps.size > 1 else None, thresholds)
    tau_e = np.asarray(diag["tau_energy"]) / cfg.measure_every        # in samples
    tau_q = np.asarray(diag["tau_qbar"]) / cfg.measure_every
    m, r = out.series["energy"].shape[0], cfg.n_replicas
    qbar = a["abs_q"] / n
    qbar_err = np.sqrt(out.series["qbar"].astype(np.float64).var(0) * tau_q / m)
    e_err = np.sqrt(e_var * tau_e / (m * r))
    m_rep = np.concatenate([s / n for s in a["spin_sum"]], axis=-1)    # (T, R, N)
    width = 2.0 / cfg.num_bins
    res = QabResult(
        temperatures=temps, qbar=qbar, qbar_err=qbar_err, qbar_layer=a["abs_q_layer"] / n,
        q_mean=a["q"] / n, q2=a["q2"] / n, q4=a["q4"] / n, binder=binder_parameter(a["q2"] / n, a["q4"] / n),
        q_layer_mean=a["q_layer"] / n, overlap_matrix=a["qmat"] / n, abs_overlap_matrix=a["abs_qmat"] / n,
        pq=a["hist"] / (a["hist"].sum(-1, keepdims=True) * width),
        pq_layer=np.moveaxis(a["hist_layer"] / (a["hist_layer"].sum(-1, keepdims=True) * width), 0, 1),
        bin_edges=histogram_edges(cfg.num_bins),
        spin_mean=m_rep.mean(1), q_ea=(m_rep ** 2).mean((1, 2)),
        qbar_site=np.concatenate([x / n for x in a["site"]], axis=-1),
        energy=e_mean / n_spins, energy_err=e_err / n_spins, specific_heat=e_var / temps ** 2 / n_spins,
        tau_energy=np.asarray(diag["tau_energy"]), tau_qbar=np.asarray(diag["tau_qbar"]),
        exchange_rate=exchange,
        round_trips=float(a["half_trips"].sum() / 2.0 / max(temps.size * r, 1)) if cfg.tempering else 0.0,
        floor=overlap_floor(n_spins), floor_layer=tuple(overlap_floor(n) for n in sizes), layers=tuple(k + layer_offset for k in free), layer_sizes=sizes,
        energy_series=out.series["energy"], qbar_series=out.series["qbar"], diagnostics=diag,
        settings={**dataclasses.asdict(cfg), **(settings or {}), "seconds": out.seconds,
                  "compile_seconds": out.compile_seconds,
                  "spin_updates_per_second": (cfg.n_burn + m * cfg.measure_every) * temps.size * r
                  * sum(system.sizes[k] for k in free) / max(out.seconds, 1e-9)},
        meta=dict(meta or {}))
    return res


# --------------------------------------------------------------------------- one call
def qab_curve(source: Any, temperatures=None, *, n_replicas: int = 8, n_burn: int = 1000,
              n_measure: int = 2000, measure_every: int = 1, tempering: bool = True,
              num_bins: int = 64, input_layer: str = "free", clamp=None, use_biases: bool = False,
              coupling_scale: str = "raw", num_temperatures: int = 32, seed: int = 0,
              on_fail: str = "warn", thresholds: Thresholds = Thresholds(), progress: bool = False,
              chunk: int = 250) -> QabResult:
    r"""Q_ab curve (replica-overlap descriptor) of one network.

    Args:
      source: a checkpoint path, a Flax params dict, a :class:`LayeredCouplings` or a list of
        weight matrices ``(N_{k-1}, N_k)`` (see :func:`load_network`).
      temperatures: ``(T,)`` monotone grid, or None for :func:`default_temperatures`
        (``num_temperatures`` points).
      n_replicas, n_burn, n_measure, measure_every, tempering, num_bins, chunk: the sampler
        (:class:`~tapjax.overlap.sampler.SamplerConfig`); sweep counts are per chain.
      input_layer, clamp, use_biases, coupling_scale: the model variant (:func:`build_system`).
      seed: root of the counter-based key stream (the result is a function of the seed).
      on_fail: ``"warn"`` | ``"raise"`` | ``"ignore"`` when the equilibration checks fail.
      thresholds: :class:`~tapjax.overlap.diagnostics.Thresholds` of those checks.
      progress: print a progress bar (stderr).

    Returns:
      :class:`QabResult`.

    Example::

        res = qab_curve("runs/standard_lr1e-4/checkpoints/ckpt_000001875.npz", n_measure=4000)
        res.save("qab_t1")          # qab_t1.npz + qab_t1.json
    """
    weights, biases, meta = load_network(source)
    system = build_system(weights, biases, input_layer=input_layer, clamp=clamp, use_biases=use_biases,
                          coupling_scale=coupling_scale)
    if temperatures is None:
        temperatures = default_temperatures(system.couplings, num_temperatures)
    cfg = SamplerConfig(n_replicas=n_replicas, n_burn=n_burn, n_measure=n_measure,
                        measure_every=measure_every, tempering=tempering, num_bins=num_bins, chunk=chunk)
    callback = None
    bar = None
    if progress:
        from tapjax.progress import ProgressBar  # pylint: disable=import-outside-toplevel
        bar = ProgressBar(n_burn + cfg.num_measurements * measure_every, "qab sweeps")
        callback = lambda done, total, metrics: bar.set(done, **metrics)  # noqa: E731
    out = sample(system, temperatures, cfg, jax.random.PRNGKey(seed), callback=callback)
    if bar is not None:
        bar.close()
    settings = {"seed": seed, "input_layer": input_layer, "use_biases": use_biases,
                "coupling_scale": coupling_scale, "sizes": list(system.sizes),
                "device": str(jax.devices()[0].platform), "x64": bool(jax.config.jax_enable_x64)}
    res = summarize(out, system, layer_offset=1 if input_layer == "drop" else 0, thresholds=thresholds,
                    settings=settings, meta=meta)
    report(res.diagnostics, on_fail, meta.get("path", "qab_curve"))
    return res


__all__ = ["COUPLING_SCALES", "INPUT_LAYER_MODES", "QabResult", "build_system", "default_temperatures",
           "gaussian_equivalent_tc", "largest_bond_eigenvalue", "load_network", "qab_curve", "rescale_to_init",
           "summarize"]
