r"""Exact block heat-bath (Gibbs) sweeps of the layered Ising model (paper eq. 1, plus fields).

The model, with optional external fields :math:`h^{(k)}` (e.g. a net's biases), is

.. math::
    H(\sigma) = -\sum_{k=1}^{L} \sigma^{(k-1)\top} W^{(k)} \sigma^{(k)}
                - \sum_{k=0}^{L} h^{(k)\top} \sigma^{(k)},
    \qquad P(\sigma) \propto e^{-\beta H(\sigma)} .

There are no couplings inside a layer and none that skip a layer, so the interaction graph is
bipartite between even and odd layers. Given all odd layers, every even-layer spin is
independent of every other and feels the local field

.. math::
    f^{(k)} = W^{(k)\top}\sigma^{(k-1)} + W^{(k+1)}\sigma^{(k+1)} + h^{(k)},
    \qquad P(\sigma^{(k)}_i = +1 \mid \text{rest}) = \frac{1}{1 + e^{-2\beta f^{(k)}_i}} .

One sweep therefore draws all even layers at once from this exact conditional, then all odd
layers. Each half-step is an exact Gibbs step, so the sweep leaves :math:`P` invariant.
Over a batch of chains the local fields are plain matrix products
``(T, R, N_{k-1}) @ (N_{k-1}, N_k)``. The dense :math:`N \times N` bond matrix is never formed.

Shapes: spins are a tuple ``(s_0, ..., s_L)`` with ``s_k`` of shape ``(T, R, N_k)``
(temperatures × replicas × neurons) and float entries ±1. ``betas`` has shape ``(T,)``.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tapjax.spin_model import LayeredCouplings, couplings as _couplings


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SpinSystem:
    r"""A layered spin model to sample: couplings, optional fields, optional clamped input.

    Attributes:
      couplings: :class:`~tapjax.spin_model.LayeredCouplings` ``(W^(1), ..., W^(L))``.
      fields: ``None`` (no field, the model is symmetric under :math:`\sigma \to -\sigma`) or
        ``(h_0, ..., h_L)`` with ``h_k`` of shape ``(N_k,)``.
      clamp: ``None`` (every layer fluctuates) or the fixed values of layer 0, an array
        broadcastable to ``(T, R, N_0)``: ``(N_0,)`` clamps every chain to one input and
        ``(R, N_0)`` gives each replica its own. The values need not be ±1: a standard net's
        input in [0, 1] simply acts as a field :math:`W^{(1)\top} x` on layer 1.
      clamp_on: ``None`` (the clamp applies) or a scalar array, 1.0 = clamped, 0.0 = layer 0
        free, with ``clamp`` then ignored. Because the switch is traced, the sampler runs free
        and clamped systems through one compiled program (see ``sampler.canonical``).
    """

    couplings: LayeredCouplings
    fields: tuple[jax.Array, ...] | None = None
    clamp: jax.Array | None = None
    clamp_on: jax.Array | None = None


    @property
    def num_layers(self) -> int:
        """L; the model has L + 1 spin layers."""
        return self.couplings.num_layers

    @property
    def sizes(self) -> tuple[int, ...]:
        return self.couplings.sizes

    @property
    def clamped(self) -> bool:
        """Layer 0 is fixed. With a ``clamp_on`` switch this reads its value, which must be
        concrete (not inside ``jit``)."""
        if self.clamp is None:
            return False
        if self.clamp_on is None:
            return True
        return bool(np.asarray(self.clamp_on) > 0.5)

    def clamp_values(self, shape: tuple[int, ...], fallback: jax.Array) -> jax.Array:
        """Layer-0 spins after an update that drew ``fallback``: the clamp, or ``fallback`` if free."""
        if self.clamp is None:
            return fallback
        clamp = jnp.broadcast_to(self.clamp, shape).astype(fallback.dtype)
        if self.clamp_on is None:
            return clamp
        return jnp.where(self.clamp_on > 0.5, clamp, fallback)

    @property
    def free_layers(self) -> tuple[int, ...]:
        """Indices of the layers that are sampled (all but layer 0 when clamped)."""
        return tuple(range(1 if self.clamped else 0, self.num_layers + 1))


def spin_system(weights, fields: Sequence | None = None, clamp=None, dtype=jnp.float32) -> SpinSystem:
    """Validated :class:`SpinSystem`.

    Args:
      weights: ``[W^(1), ..., W^(L)]`` (shapes ``(N_{k-1}, N_k)``) or LayeredCouplings.
      fields: ``None`` or ``L + 1`` arrays; entry k has shape ``(N_k,)`` (``None`` entries
        mean zero field on that layer).
      clamp: ``None`` or layer-0 values broadcastable to ``(T, R, N_0)``.

    Raises:
      ValueError: wrong number or shape of fields, or a clamp whose last axis is not N_0.
    """
    c = _couplings(weights, dtype=dtype)
    sizes = c.sizes
    if fields is not None:
        fields = tuple(fields)
        if len(fields) != len(sizes):
            raise ValueError(f"fields: got {len(fields)} arrays for {len(sizes)} layers (need h_0..h_L)")
        out = []
        for k, (h, n) in enumerate(zip(fields, sizes)):
            h = jnp.zeros((n,), dtype) if h is None else jnp.asarray(h, dtype)
            if h.shape != (n,):
                raise ValueError(f"fields: h_{k} has shape {h.shape}, layer {k} has {n} spins")
            out.append(h)
        fields = tuple(out)
    if clamp is not None:
        clamp = jnp.asarray(clamp, dtype)
        if clamp.ndim == 0 or clamp.shape[-1] != sizes[0]:
            raise ValueError(f"clamp: shape {clamp.shape}, its last axis must be N_0 = {sizes[0]}")
    return SpinSystem(c, fields, clamp)


def local_field(system: SpinSystem, spins: Sequence[jax.Array], k: int) -> jax.Array:
    r"""Local field on layer k: :math:`f^{(k)} = W^{(k)\top}\sigma^{(k-1)} + W^{(k+1)}\sigma^{(k+1)} + h^{(k)}`.

    Args:
      spins: per-layer ``(..., N_j)``; only layers k − 1 and k + 1 are read.
    Returns:
      ``(..., N_k)``.
    """
    ws = system.couplings.weights
    f = 0.0
    if k > 0:
        f = f + spins[k - 1] @ ws[k - 1]
    if k < len(ws):
        f = f + spins[k + 1] @ ws[k].T
    if system.fields is not None:
        f = f + system.fields[k]
    return f


def heat_bath_probability(beta_field: jax.Array) -> jax.Array:
    r""":math:`P(\sigma_i = +1 \mid f_i) = 1/(1 + e^{-2\beta f_i})` for ``beta_field`` = β f."""
    return jax.nn.sigmoid(2.0 * beta_field)


def heat_bath_sample(uniforms: jax.Array, beta_field: jax.Array) -> jax.Array:
    """±1 draws with :func:`heat_bath_probability`: ``+1`` where ``uniforms < P(+1)``.

    ``uniforms`` are U[0, 1) numbers of the same shape as ``beta_field``.
    """
    one = jnp.ones_like(beta_field)
    return jnp.where(uniforms < heat_bath_probability(beta_field), one, -one)


def energy(system: SpinSystem, spins: Sequence[jax.Array]) -> jax.Array:
    r""":math:`H(\sigma)` with fields, for per-layer spins ``(..., N_k)`` → ``(...)``."""
    e = 0.0
    for k, w in enumerate(system.couplings.weights):
        e = e - jnp.sum((spins[k] @ w) * spins[k + 1], axis=-1)
    if system.fields is not None:
        for h, s in zip(system.fields, spins):
            e = e - s @ h
    return e


def sweep_uniforms(sweep_key: jax.Array, system: SpinSystem, shape: tuple[int, int],
                   extra: int = 0) -> tuple[list[jax.Array], jax.Array]:
    """All U[0, 1) numbers of one sweep from a single draw ``uniform(sweep_key, (T, R, N + extra))``.

    One draw per sweep keeps the jitted program small (each threefry call is costly to
    compile). The draw is split into per-layer blocks ``(T, R, N_k)`` and the ``extra``
    trailing columns, which are returned as ``(T, R, extra)`` (used by the exchange round).
    """
    off = system.couplings.offsets
    u = jax.random.uniform(sweep_key, (*shape, off[-1] + extra), system.couplings.dtype)
    return [u[..., off[k]:off[k + 1]] for k in range(len(off) - 1)], u[..., off[-1]:]


def half_sweep(system: SpinSystem, spins: Sequence[jax.Array], betas: jax.Array,
               uniforms: Sequence[jax.Array], parity: int) -> tuple[tuple[jax.Array, ...], list]:
    """Exact heat-bath update of every layer with ``k % 2 == parity`` (all at once).

    Args:
      uniforms: per-layer U[0, 1) numbers ``(T, R, N_k)`` (see :func:`sweep_uniforms`).

    Returns:
      ``(spins, fields)``: the new spins and, per updated layer k, ``(k, f^(k))``: the local
      field the update used. It does not change during the half-step, since no two updated
      layers are coupled.
    """
    spins = list(spins)
    b = betas[:, None, None]
    used = []
    for k in range(parity, system.num_layers + 1, 2):
        if k == 0 and system.clamp is not None and system.clamp_on is None:
            continue                                     # statically clamped: nothing to draw
        f = local_field(system, spins, k)
        spins[k] = heat_bath_sample(uniforms[k], b * f)
        if k == 0 and system.clamp is not None:          # traced switch (clamp_on)
            spins[0] = system.clamp_values(spins[0].shape, spins[0])
        used.append((k, f))
    return tuple(spins), used


def block_gibbs_sweep(system: SpinSystem, spins: Sequence[jax.Array], betas: jax.Array,
                      uniforms: Sequence[jax.Array]) -> tuple[tuple[jax.Array, ...], jax.Array]:
    r"""One sweep: all even layers, then all odd layers, each from its exact conditional.

    Args:
      spins: per-layer ``(T, R, N_k)``.
      betas: ``(T,)`` inverse temperatures (row t of every layer is at ``betas[t]``).
      uniforms: per-layer U[0, 1) numbers ``(T, R, N_k)`` of this sweep (:func:`sweep_uniforms`).

    Returns:
      ``(spins, E)`` with ``E`` of shape ``(T, R)``, the energy after the sweep. E comes for
      free from the odd-layer fields. Every bond has exactly one odd end, so
      :math:`H = -\sum_{k\ \mathrm{odd}} \sigma^{(k)}\cdot f^{(k)} - \sum_{k\ \mathrm{even}} h^{(k)}\cdot\sigma^{(k)}`.
    """
    spins, _ = half_sweep(system, spins, betas, uniforms, 0)
    spins, used = half_sweep(system, spins, betas, uniforms, 1)
    e = 0.0
    for k, f in used:
        e = e - jnp.sum(spins[k] * f, axis=-1)
    if system.fields is not None:
        for k in range(0, system.num_layers + 1, 2):
            e = e - spins[k] @ system.fields[k]
    return spins, e


__all__ = ["SpinSystem", "block_gibbs_sweep", "energy", "half_sweep", "heat_bath_probability",
           "heat_bath_sample", "local_field", "spin_system", "sweep_uniforms"]
