r"""Invertible activations f and their inverses f⁻¹ (note eqs. 7–8).

The loss-to-Hamiltonian mapping compares pre-activations with the *inactivated* targets
:math:`\bar\xi = f^{-1}(\xi)`, so every activation used there needs an inverse on the
targets. The classes are frozen dataclasses (hashable, so they can be static arguments of
``jax.jit``); each has ``__call__`` (f), ``inverse`` (f⁻¹) and ``check_targets``, which raises a
``ValueError`` naming the argument when a target lies outside the range of f.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


@dataclasses.dataclass(frozen=True)
class Identity:
    """f(z) = z (a linear layer)."""

    def __call__(self, z: jax.Array) -> jax.Array:
        return z

    def inverse(self, y: jax.Array) -> jax.Array:
        return y

    def check_targets(self, y, name: str = "targets") -> None:
        if _is_concrete(y) and not bool(np.all(np.isfinite(np.asarray(y)))):
            raise ValueError(f"{name}: contains NaN or inf")


@dataclasses.dataclass(frozen=True)
class LeakyReLU:
    r"""f(z) = z for z ≥ 0, α z for z < 0; f⁻¹(y) = y for y ≥ 0, y/α for y < 0.

    Invertible on all of ℝ for α > 0. With α = 0 (ReLU) only targets y > 0 can be inverted
    (y ≤ 0 has no unique pre-image); α < 0 is not injective and is rejected.
    """

    alpha: float = 0.1

    def __post_init__(self):
        if not (self.alpha >= 0.0 and np.isfinite(self.alpha)):
            raise ValueError(f"alpha: LeakyReLU slope must be a finite number >= 0 (got {self.alpha}); "
                             "a negative slope makes f non-injective, so f⁻¹ does not exist")

    def __call__(self, z: jax.Array) -> jax.Array:
        return jnp.where(z >= 0, z, self.alpha * z)

    def inverse(self, y: jax.Array) -> jax.Array:
        if self.alpha == 0.0:
            return y  # defined only for y > 0 (checked by check_targets)
        return jnp.where(y >= 0, y, y / self.alpha)

    def check_targets(self, y, name: str = "targets") -> None:
        Identity().check_targets(y, name)
        if self.alpha == 0.0 and _is_concrete(y):
            bad = int(np.sum(np.asarray(y) <= 0))
            if bad:
                raise ValueError(
                    f"{name}: {bad} target(s) <= 0 cannot be inverted through ReLU (LeakyReLU with "
                    "alpha=0): f⁻¹ is not defined there; use alpha > 0 or shift the targets")


@dataclasses.dataclass(frozen=True)
class Tanh:
    """f(z) = tanh z; f⁻¹(y) = artanh y, defined only for |y| < 1."""

    def __call__(self, z: jax.Array) -> jax.Array:
        return jnp.tanh(z)

    def inverse(self, y: jax.Array) -> jax.Array:
        return jnp.arctanh(y)

    def check_targets(self, y, name: str = "targets") -> None:
        Identity().check_targets(y, name)
        if _is_concrete(y):
            bad = int(np.sum(np.abs(np.asarray(y)) >= 1))
            if bad:
                raise ValueError(
                    f"{name}: {bad} target(s) with |y| >= 1 are outside the range (-1, 1) of tanh, "
                    "so f⁻¹(y) = artanh(y) does not exist; rescale the targets into (-1, 1)")


Activation = Identity | LeakyReLU | Tanh
