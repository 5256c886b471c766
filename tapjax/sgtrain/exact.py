"""The exact quadratic minimiser (a linear solve): the ground truth the annealers are measured against."""

from __future__ import annotations

import dataclasses

import jax

from tapjax.sgtrain.hamiltonian import LayerHamiltonian, check_weights, ground_state


@dataclasses.dataclass(frozen=True)
class ExactSolve:
    """Jumps to the ground state ``-½ (J + λI)⁺ h`` every epoch (ignores the current weights).

    Attributes:
      ridge: λ ≥ 0 (0: the minimum-norm exact minimiser).
      rcond: relative eigenvalue cutoff of the pseudo-inverse (None: JAX's 10·M·eps, which in
        float32 discards much of a pixel covariance's spectrum; use float64 for a true minimum).
    """

    ridge: float = 0.0
    rcond: float | None = None

    def __post_init__(self):
        if self.ridge < 0:
            raise ValueError(f"ridge: must be >= 0, got {self.ridge}")

    def step(self, ham: LayerHamiltonian, W: jax.Array, key: jax.Array, frac) -> jax.Array:
        del key, frac
        check_weights(ham, W)
        return ground_state(ham, self.ridge, self.rcond).astype(W.dtype)
