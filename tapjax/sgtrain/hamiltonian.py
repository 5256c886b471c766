r"""A layer's MSE loss as a set of spin-glass Hamiltonians, weights = spins (note §1.1–1.2).

For a dense layer :math:`s_i = f(\sum_j \omega_{ij}\sigma_j)` trained on :math:`Q` samples
:math:`(\sigma^a, \xi^a)` with the loss on inactivated neurons (note eq. 8)

.. math::
    D(\omega) = \frac1Q \sum_a \sum_i \big(\textstyle\sum_j \omega_{ij}\sigma^a_j - f^{-1}(\xi^a_i)\big)^2,

expanding the square gives (note eqs. 11–12), with :math:`S^i = \omega_{i\cdot}` (row i)

.. math::
    D = \sum_i H_i(S^i), \qquad H_i(S) = S^\top J S + h_i^\top S + E_0^i,

    J = \frac1Q \sum_a \sigma^a \sigma^{a\top}, \quad
    h_i = -\frac2Q \sum_a f^{-1}(\xi^a_i)\, \sigma^a, \quad
    E_0^i = \frac1Q \sum_a f^{-1}(\xi^a_i)^2 .

This is an identity, not an approximation: :func:`energy` of ``W`` equals :func:`layer_loss`
of ``W`` for every ``W`` (tested). One Hamiltonian per output unit; all share J, only the
fields h_i and offsets E_0^i differ. A bias is an extra spin: append a column of ones to the
inputs (:func:`with_bias`). A 1-D convolution (note eqs. 13–16) is a dense layer on the
input patches with the loss summed over output positions (:func:`conv1d_hamiltonian`).

Shapes: inputs ``x`` (Q, M), targets (Q, N), weights ``W`` (N, M) (row i = spins of unit i).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from tapjax.sgtrain.activations import Activation, Identity


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LayerHamiltonian:
    """Couplings, fields and offsets of the N per-unit Hamiltonians of one layer (a pytree).

    Attributes:
      J: (M, M) symmetric positive semi-definite coupling matrix, shared by all units.
      h: (N, M) fields, row i for output unit i.
      E0: (N,) constant energies.
    """

    J: jax.Array
    h: jax.Array
    E0: jax.Array


    @property
    def num_units(self) -> int:
        """N: the number of independent Hamiltonians (output units)."""
        return self.h.shape[-2]

    @property
    def num_spins(self) -> int:
        """M: spins (weights) per Hamiltonian."""
        return self.h.shape[-1]


def with_bias(x: jax.Array) -> jax.Array:
    """Appends a column of ones: (Q, M) → (Q, M+1); the last weight of each row is the bias."""
    return jnp.concatenate([x, jnp.ones((*x.shape[:-1], 1), x.dtype)], axis=-1)


def _check_xy(x, targets, xname="x", yname="targets"):
    if jnp.ndim(x) != 2:
        raise ValueError(f"{xname}: expected a 2-D (Q, M) array of inputs, got shape {jnp.shape(x)}")
    if jnp.ndim(targets) != 2:
        raise ValueError(f"{yname}: expected a 2-D (Q, N) array of targets, got shape "
                         f"{jnp.shape(targets)} (reshape a single output to (Q, 1))")
    if jnp.shape(x)[0] != jnp.shape(targets)[0]:
        raise ValueError(f"{yname}: {jnp.shape(targets)[0]} samples but {xname} has "
                         f"{jnp.shape(x)[0]}; the leading (sample) axes must agree")
    if jnp.shape(x)[0] == 0:
        raise ValueError(f"{xname}: needs at least one sample")


def dense_hamiltonian(x: jax.Array, targets: jax.Array,
                      activation: Activation = Identity()) -> LayerHamiltonian:
    r"""(J, h, E0) of a dense layer from data, note eq. 11.

    Args:
      x: (Q, M) layer inputs :math:`\sigma^a` (append ones with :func:`with_bias` for a bias).
      targets: (Q, N) desired outputs :math:`\xi^a`, in the range of ``activation``.
      activation: f; the targets are inactivated with f⁻¹.

    Returns:
      The :class:`LayerHamiltonian` with ``J`` (M, M), ``h`` (N, M), ``E0`` (N,).

    Raises:
      ValueError: naming ``x`` or ``targets`` on a shape mismatch, and ``targets`` when a
        target cannot be inverted through f (checked when the values are concrete).
    """
    _check_xy(x, targets)
    activation.check_targets(targets, "targets")
    x = jnp.asarray(x)
    t = activation.inverse(jnp.asarray(targets, x.dtype))
    q = x.shape[0]
    J = x.T @ x / q
    h = -2.0 * (t.T @ x) / q
    E0 = jnp.sum(t * t, axis=0) / q
    return LayerHamiltonian(J, h, E0)


def conv1d_patches(x: jax.Array, kernel_size: int) -> jax.Array:
    """Valid-padding patches: (Q, T, C) → (Q, T-K+1, K·C), patch p = x[:, p:p+K, :] flattened."""
    if jnp.ndim(x) != 3:
        raise ValueError(f"x: expected (Q, T, C_in) signals, got shape {jnp.shape(x)}")
    t = x.shape[1]
    if not 1 <= kernel_size <= t:
        raise ValueError(f"kernel_size: must be in [1, {t}] for signals of length {t}, got {kernel_size}")
    p = t - kernel_size + 1
    idx = jnp.arange(p)[:, None] + jnp.arange(kernel_size)[None, :]  # (P, K)
    return x[:, idx, :].reshape(x.shape[0], p, kernel_size * x.shape[2])


def conv1d_hamiltonian(x: jax.Array, targets: jax.Array, kernel_size: int,
                       activation: Activation = Identity()) -> LayerHamiltonian:
    r"""(J, h, E0) of a valid 1-D convolution, note eqs. 13–16.

    The layer is :math:`s_{p,r} = f(\sum_{k,c} w_{r,k,c}\, x_{p+k,c})`; its loss
    :math:`\frac1Q\sum_a\sum_{p,r}(\bar s - f^{-1}(\xi))^2` is one Hamiltonian per output channel
    r with :math:`J = \frac1Q\sum_a\sum_p P^a_p P^{a\top}_p` over the patches :math:`P^a_p`.

    Args:
      x: (Q, T, C_in) input signals.
      targets: (Q, T-K+1, C_out) desired outputs.
      kernel_size: K.
      activation: f.

    Returns:
      :class:`LayerHamiltonian` with M = K·C_in spins (kernel ``w[r].reshape(-1)``) and
      N = C_out units.
    """
    patches = conv1d_patches(x, kernel_size)
    if jnp.ndim(targets) != 3 or jnp.shape(targets)[:2] != patches.shape[:2]:
        raise ValueError(f"targets: expected shape (Q, T-K+1, C_out) = ({patches.shape[0]}, "
                         f"{patches.shape[1]}, C_out), got {jnp.shape(targets)}")
    q, p, m = patches.shape
    ham = dense_hamiltonian(patches.reshape(q * p, m),
                            jnp.reshape(targets, (q * p, -1)), activation)
    # dense_hamiltonian averaged over the Q·P rows; the conv loss sums over positions.
    return LayerHamiltonian(ham.J * p, ham.h * p, ham.E0 * p)


def check_weights(ham: LayerHamiltonian, W) -> None:
    """Raises ``ValueError`` naming ``W`` unless its shape is (N, M) of the Hamiltonian ``ham``.

    Every minimiser (annealing, Langevin, exact) checks its start weights with this.
    """
    expected = (ham.num_units, ham.num_spins)
    if jnp.shape(W) != expected:
        raise ValueError(f"W: expected weights of shape (N, M) = {expected} to match the "
                         f"Hamiltonian, got {jnp.shape(W)}")


_check_weights = check_weights   # the former private name (kept for old imports)


def energy(ham: LayerHamiltonian, W: jax.Array) -> jax.Array:
    r"""Per-unit energies :math:`H_i(S^i) = S^{i\top} J S^i + h_i^\top S^i + E_0^i`, note eq. 12.

    Args:
      ham: the layer's Hamiltonians.
      W: (N, M) spins (weights), row i = :math:`S^i`.

    Returns:
      (N,) energies; their sum is the layer loss D.
    """
    check_weights(ham, W)
    return jnp.einsum("im,mn,in->i", W, ham.J, W) + jnp.sum(ham.h * W, -1) + ham.E0


def layer_loss(W: jax.Array, x: jax.Array, targets: jax.Array,
               activation: Activation = Identity()) -> jax.Array:
    r"""Inactivated-neuron MSE :math:`D = \frac1Q\sum_a\sum_i(\bar s^a_i - f^{-1}(\xi^a_i))^2`, note eq. 8.

    Computed directly from the data (not through J, h, E0); equals ``energy(...).sum()``.

    Args:
      W: (N, M) weights.
      x: (Q, M) inputs.
      targets: (Q, N) targets.
      activation: f.

    Returns:
      Scalar D.
    """
    _check_xy(x, targets)
    if jnp.shape(W) != (jnp.shape(targets)[1], jnp.shape(x)[1]):
        raise ValueError(f"W: expected shape (N, M) = ({jnp.shape(targets)[1]}, {jnp.shape(x)[1]}), "
                         f"got {jnp.shape(W)}")
    r = x @ W.T - activation.inverse(targets)
    return jnp.sum(r * r) / x.shape[0]


def ground_state(ham: LayerHamiltonian, ridge: float = 0.0, rcond: float | None = None) -> jax.Array:
    r"""Exact minimiser :math:`S^{i*} = -\tfrac12 (J + \lambda I)^{+} h_i`, for every unit at once.

    :math:`\nabla H_i = 2 J S + h_i = 0`. For singular J (e.g. pixels that are always zero)
    the pseudo-inverse picks the minimum-norm minimiser; ``ridge`` λ > 0 instead minimises
    :math:`H_i + \lambda\|S\|^2` (a Cholesky solve).

    Args:
      ham: the layer's Hamiltonians.
      ridge: λ ≥ 0.
      rcond: relative cutoff for small eigenvalues of J in the pseudo-inverse (default:
        JAX's, 10·M·eps).

    Returns:
      (N, M) ground-state spins (weights).
    """
    if ridge < 0:
        raise ValueError(f"ridge: must be >= 0, got {ridge}")
    m = ham.num_spins
    if ridge > 0:
        A = ham.J + ridge * jnp.eye(m, dtype=ham.J.dtype)
        cf = jax.scipy.linalg.cho_factor(A)
        return -0.5 * jax.scipy.linalg.cho_solve(cf, ham.h.T).T
    pinv = jnp.linalg.pinv(ham.J, rtol=rcond, hermitian=True)
    return -0.5 * ham.h @ pinv  # J symmetric ⇒ (J⁺ h_i)ᵀ = h_iᵀ J⁺


def ground_state_energy(ham: LayerHamiltonian, ridge: float = 0.0) -> jax.Array:
    """(N,) energies at :func:`ground_state` (with ``ridge=0``: the exact minima of H_i)."""
    return energy(ham, ground_state(ham, ridge))
