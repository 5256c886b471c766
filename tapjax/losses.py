"""The L2 (squared) multi-class hinge loss of Table 1."""

from __future__ import annotations

import jax
import jax.numpy as jnp

DEFAULT_MARGIN = 10.0


def multiclass_squared_hinge(scores: jax.Array, labels: jax.Array,
                             margin: float = DEFAULT_MARGIN) -> jax.Array:
    r"""Per-sample L2 multi-class hinge loss (Weston–Watkins form, squared).

    .. math::
        \ell(s, y) = \frac{1}{K} \sum_{j \ne y} \max(0,\; \Delta - s_y + s_j)^2

    with :math:`K` classes and margin :math:`\Delta` (10 in Table 1). This is exactly
    PyTorch's ``nn.MultiMarginLoss(p=2, margin=10)`` (the ``1/K`` included), the usual way
    the paper's "L2 multi-class hinge loss, margin 10" is implemented.

    Args:
      scores: ``(..., K)`` float output of the net (the L2-SVM head).
      labels: ``(...)`` int class indices.
      margin: :math:`\Delta`.

    Returns:
      ``(...)`` per-sample losses.
    """
    k = scores.shape[-1]
    s_true = jnp.take_along_axis(scores, labels[..., None], axis=-1)
    viol = jnp.maximum(0.0, margin - s_true + scores) ** 2
    viol = jnp.where(jax.nn.one_hot(labels, k, dtype=bool), 0.0, viol)
    return viol.sum(-1) / k


def mean_loss(scores: jax.Array, labels: jax.Array, margin: float = DEFAULT_MARGIN) -> jax.Array:
    """Batch mean of :func:`multiclass_squared_hinge`."""
    return multiclass_squared_hinge(scores, labels, margin).mean()
