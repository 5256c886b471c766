r"""Annealed Langevin dynamics of continuous spins (weights), vmapped over units.

Each unit's weights follow the discretised overdamped Langevin equation in its Hamiltonian
:math:`H_i(S) = S^\top J S + h_i^\top S + E_0^i`:

.. math::
    S \leftarrow S - \eta\,(2 J S + h_i) + \sqrt{2 T \eta}\;\epsilon, \qquad \epsilon\sim\mathcal N(0, I),

whose stationary law is close to :math:`e^{-H_i/T}` for small η. The step is
:math:`\eta = s / (2\lambda_{\max}(J))` (stable for s < 2; λ_max from power iteration) and
the temperature falls geometrically over epochs, :math:`T_k = T_i (T_f/T_i)^{k/(K-1)}`. At
T = 0 this is full-batch gradient descent on the layer loss.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from tapjax.sgtrain.annealing import geometric
from tapjax.sgtrain.hamiltonian import LayerHamiltonian, check_weights


def largest_eigenvalue(J: jax.Array, iters: int = 100) -> jax.Array:
    """λ_max of a symmetric PSD (M, M) matrix by power iteration (fixed iteration count)."""
    v = jnp.ones(J.shape[0], J.dtype) / jnp.sqrt(J.shape[0])

    def body(_, v):
        w = J @ v
        return w / jnp.maximum(jnp.linalg.norm(w), jnp.finfo(J.dtype).tiny)

    v = jax.lax.fori_loop(0, iters, body, v)
    return v @ J @ v


def _langevin_unit(h, s0, noise, J, eta, temperature):
    """noise: (steps, M) standard normals."""
    amp = jnp.sqrt(2.0 * temperature * eta)

    def body(S, eps):
        return S - eta * (2.0 * J @ S + h) + amp * eps, None

    S, _ = jax.lax.scan(body, s0, noise)
    return S


def langevin(ham: LayerHamiltonian, W0: jax.Array, key: jax.Array, *, temperature,
             steps: int, step_scale: float = 1.0) -> jax.Array:
    """``steps`` Langevin steps at fixed temperature from ``W0`` (N, M); returns (N, M)."""
    check_weights(ham, W0)
    if steps < 1:
        raise ValueError(f"steps: must be >= 1, got {steps}")
    if not 0 < step_scale < 2:
        raise ValueError(f"step_scale: must be in (0, 2) for a stable step, got {step_scale}")
    lam = largest_eigenvalue(ham.J) * 1.05  # margin for the power-iteration estimate
    eta = step_scale / (2.0 * jnp.maximum(lam, jnp.finfo(W0.dtype).tiny))
    noise = jax.random.normal(key, (W0.shape[0], steps, W0.shape[1]), W0.dtype)
    unit = functools.partial(_langevin_unit, J=ham.J, eta=eta,
                             temperature=jnp.asarray(temperature, W0.dtype))
    return jax.vmap(unit)(ham.h, W0, noise)


@dataclasses.dataclass(frozen=True)
class Langevin:
    """Annealed Langevin minimiser; one :meth:`step` is one epoch of ``steps`` updates.

    Attributes:
      temperature: (T_i, T_f), in energy units (H is the per-sample MSE).
      steps: Langevin steps per epoch.
      step_scale: η·2λ_max(J), in (0, 2).
    """

    temperature: tuple[float, float] = (1e-4, 1e-8)
    steps: int = 50
    step_scale: float = 1.0

    def __post_init__(self):
        a, b = self.temperature
        if not (a > 0 and b > 0):
            raise ValueError(f"temperature: both schedule ends must be > 0, got {(a, b)}")

    def step(self, ham: LayerHamiltonian, W: jax.Array, key: jax.Array, frac) -> jax.Array:
        return langevin(ham, W, key, temperature=geometric(*self.temperature, frac),
                        steps=self.steps, step_scale=self.step_scale)
