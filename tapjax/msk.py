r"""Analytic multilayer Sherrington–Kirkpatrick (MSK) results (paper section 2.1, eqs. 14–18).

The replica-symmetric action expanded to second order in the overlaps :math:`q^{(k)}` (eq. 14)
has the tridiagonal Hessian (eq. 15)

.. math::
    \mathbf H_{kk} = N_k, \qquad \mathbf H_{k-1,k} = \mathbf H_{k,k-1} = -\beta^2 N_k C_k ,
    \qquad k = 0..L .

Eq. 15 as printed has :math:`\beta` instead of :math:`\beta^2` in its last row; eq. 14 gives
:math:`\beta^2` in every off-diagonal entry, and eqs. 16–17 are only consistent with
:math:`\beta^2`, so we use :math:`\beta^2` throughout.

The replica-symmetric (paramagnetic) solution is stable while :math:`\mathbf H` is positive
definite. Writing :math:`\mathbf H = D - \beta^2 O` with :math:`D = \mathrm{diag}(N_k)`,
positivity fails at :math:`\beta_c^{-2} = \lambda_{\max}(D^{-1/2} O D^{-1/2})`, which is how
:func:`critical_beta` computes the analytic transition for any :math:`N_k, C_k`.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _scales(sizes: Sequence[int], scale) -> np.ndarray:
    return np.broadcast_to(np.asarray(scale, float), (len(sizes) - 1,)).copy()


def hessian(beta, sizes: Sequence[int], scale=2.0) -> jax.Array:
    r"""Eq. 15 (with :math:`\beta^2` in every off-diagonal): ``(L+1, L+1)``.

    Args:
      beta: scalar inverse temperature.
      sizes: ``(N_0, ..., N_L)``.
      scale: ``C`` or ``(C_1, ..., C_L)`` of the init variances :math:`C_k/N_{k-1}`.
    """
    n = jnp.asarray(sizes, jnp.result_type(float))
    c = jnp.asarray(_scales(sizes, scale), n.dtype)
    off = -(beta ** 2) * n[1:] * c
    return jnp.diag(n) + jnp.diag(off, 1) + jnp.diag(off, -1)


def hessian_least_eigenvalue(betas, sizes: Sequence[int], scale=2.0,
                             normalize: bool = True) -> jax.Array:
    """Least eigenvalue of eq. 15 on a β grid ``(B,)`` → ``(B,)`` (vmapped eigvalsh).

    With ``normalize`` the Hessian is divided by :math:`\\max_k N_k` (its overall scale is
    arbitrary: eq. 15 is "proportional to" the Hessian of the action).
    """
    betas = jnp.atleast_1d(jnp.asarray(betas))
    norm = float(max(sizes)) if normalize else 1.0
    f = lambda b: jnp.linalg.eigvalsh(hessian(b, sizes, scale))[0] / norm
    return jax.vmap(f)(betas)


def critical_beta(sizes: Sequence[int], scale=2.0) -> float:
    r"""Analytic :math:`\beta_c` where eq. 15 stops being positive definite.

    :math:`\beta_c = \lambda_{\max}(D^{-1/2} O D^{-1/2})^{-1/2}` with
    :math:`O_{k-1,k} = N_k C_k`. Reduces to eq. 17 for equal layers.
    """
    n = np.asarray(sizes, float)
    if n.ndim != 1 or len(n) < 2 or np.any(n <= 0):
        raise ValueError(f"sizes={sizes!r}: need at least two positive layer sizes")
    c = _scales(sizes, scale)
    if np.any(c <= 0):
        raise ValueError(f"scale={scale!r}: variances C_k must be positive")
    off = n[1:] * c
    o = np.diag(off, 1) + np.diag(off, -1)
    d = 1.0 / np.sqrt(n)
    lam = np.linalg.eigvalsh(d[:, None] * o * d[None, :])[-1]
    return float(1.0 / np.sqrt(lam))


def critical_temperature(sizes: Sequence[int], scale=2.0) -> float:
    """:math:`T_c = 1/\\beta_c` of :func:`critical_beta`."""
    return 1.0 / critical_beta(sizes, scale)


def equal_layer_eigenvalues(beta, n: int, num_layers: int, scale: float = 2.0) -> jax.Array:
    r"""Eq. 16: :math:`n[1 - 2\beta^2 C \cos((k+1)\pi/(L+2))]`, k = 0..L (ascending order)."""
    k = jnp.arange(num_layers + 1)
    ev = n * (1.0 - 2.0 * beta ** 2 * scale * jnp.cos((k + 1) * jnp.pi / (num_layers + 2)))
    return jnp.sort(ev)


def equal_layer_critical_temperature(num_layers: int, scale: float = 2.0) -> float:
    r"""Eq. 17: :math:`T_c = [2C\cos(\pi/(L+2))]^{1/2}`; eq. 18 (:math:`\sqrt{2C}`) as L → ∞."""
    return float(np.sqrt(2.0 * scale * np.cos(np.pi / (num_layers + 2))))


__all__ = ["critical_beta", "critical_temperature", "equal_layer_critical_temperature",
           "equal_layer_eigenvalues", "hessian", "hessian_least_eigenvalue"]
