r"""The L2 (squared) multi-class hinge losses of Table 1: Weston–Watkins and one-vs-rest."""

from __future__ import annotations

from typing import Literal, get_args

import jax
import jax.numpy as jnp

DEFAULT_MARGIN = 10.0

LossName = Literal["weston_watkins", "one_vs_rest"]
LOSSES: tuple[str, ...] = get_args(LossName)


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


def one_vs_rest_squared_hinge(scores: jax.Array, labels: jax.Array,
                              margin: float = DEFAULT_MARGIN) -> jax.Array:
    r"""Per-sample one-vs-rest L2-SVM loss (Tang 2013, "Deep learning using linear SVMs").

    Each output :math:`s_j` is a binary squared-hinge SVM against the target
    :math:`t_j = +1` for the true class and :math:`-1` otherwise:

    .. math::
        \ell(s, y) = \sum_{j=1}^{K} \max(0,\; \Delta - t_j s_j)^2 .

    Margin convention: :math:`\Delta` is measured in score units, as in
    :func:`multiclass_squared_hinge` (``TrainConfig.margin``, 10 by default). Tang's form has
    :math:`\Delta = 1`; the two are the same loss up to a rescaling of the scores,
    :math:`\ell_\Delta(s) = \Delta^2 \ell_1(s/\Delta)`. No :math:`1/K`: the sum over the
    K binary SVMs is Tang's objective (without the weight-decay term).

    Args:
      scores: ``(..., K)`` float scores.
      labels: ``(...)`` int class indices.
      margin: :math:`\Delta`.

    Returns:
      ``(...)`` per-sample losses.
    """
    t = 2.0 * jax.nn.one_hot(labels, scores.shape[-1], dtype=scores.dtype) - 1.0
    return (jnp.maximum(0.0, margin - t * scores) ** 2).sum(-1)


_PER_SAMPLE = {"weston_watkins": multiclass_squared_hinge, "one_vs_rest": one_vs_rest_squared_hinge}


def per_sample_loss(kind: LossName = "weston_watkins"):
    """The per-sample loss function named ``kind`` (one of :data:`LOSSES`)."""
    if kind not in _PER_SAMPLE:
        raise ValueError(f"loss={kind!r}: must be one of {LOSSES}")
    return _PER_SAMPLE[kind]


def mean_loss(scores: jax.Array, labels: jax.Array, margin: float = DEFAULT_MARGIN,
              kind: LossName = "weston_watkins") -> jax.Array:
    """Batch mean of the per-sample loss ``kind`` (default :func:`multiclass_squared_hinge`)."""
    return per_sample_loss(kind)(scores, labels, margin).mean()
