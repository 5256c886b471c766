r"""Melting-temperature regularizer: an optional loss term α·f(W) for T_c-aware training (issue 17.3).

The training objective becomes

.. math::
    \mathcal{L}(W) = \mathcal{L}_{\rm hinge}(W) + \alpha\, f(W), \qquad
    f = T_c(W) = 1/\beta_c(W, \lambda^*) \quad\text{or}\quad
    f = \lambda_{\min}\big(I - M(\beta_0; W)\big),

with :math:`M(\beta) = \beta J - \beta^2\,\mathrm{diag}(r)`, :math:`r_i = \sum_\ell J_{i\ell}^2`
(eqs. 22–25). Minimizing: **α > 0 lowers f, α < 0 raises it** (for ``"T_c"``: α < 0 pushes the
melting temperature up). :math:`\lambda_{\min}(\beta_0)` is the cheap smooth surrogate: at fixed
β₀ below the crossing, a smaller λ_min means the net is closer to its instability (a higher T_c).

**Threshold.** λ* is section 3.2's reference level of the *t = 0 net of this run* (its own
initialization, a function of the seed), :math:`\lambda^* = \min_\beta \lambda_{\min}(\beta;
W(0))`, computed once per run (:func:`penalty_reference`) and held fixed (stop-gradient) for the
whole run; the β_c search range is ``(0, beta_max_factor · β*]`` with β* as scan hint. A
resumed run recomputes it from the same init, bit for bit.

**Gradient.** ∂T_c/∂W by the implicit function theorem
(:func:`tapjax.melting.critical_beta_fn`), ∂λ_min/∂W by Hellmann–Feynman
(:func:`tapjax.melting.least_eigenvalue`); both NaN at a degenerate λ_min or (T_c) when the net
has no crossing in range — the trainer stops with an error on a non-finite penalty.

**Every k steps.** The search costs far more than one SGD step, so the penalty gradient is
evaluated on steps ``s`` with ``s % every_k == 0`` only and added there *multiplied by k*
(:func:`penalty_gradient_scale`): its average effect is α per step, as if added every step
(with momentum 0.9 the impulse is smoothed over ~10 steps anyway). k is chosen from the
measured cost ratio ρ = (cost of one penalty gradient)/(cost of one SGD step) as
``k = ceil(ρ / overhead)`` for an accepted overhead fraction (``choose_every_k``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tapjax.pytrees import check_fields
from tapjax import melting, tap
from tapjax.checkpoints import weights_from_params
from tapjax.reference import beta_grid
from tapjax.spin_model import couplings

Target = Literal["T_c", "lambda_min"]
TARGETS = ("T_c", "lambda_min")
PenaltyBackend = Literal["dense", "lanczos", "recurrence"]


@dataclasses.dataclass(frozen=True)
class TcPenalty:
    """The loss term α·f (module docstring), part of :class:`tapjax.training.TrainConfig`.

    Attributes:
      alpha: weight α of the term (sign: α > 0 lowers f). α = 0 is allowed (the search still
        runs and T_c is logged, the gradient is zero: a cost-matched control).
      target: ``"T_c"`` (f = 1/β_c) or ``"lambda_min"`` (f = λ_min(I − M(beta0))).
      beta0: the fixed β of ``"lambda_min"`` (required there, unused for ``"T_c"``).
      every_k: the penalty gradient is computed every k optimizer steps and applied ×k.
      backend: eigenvector solver — for ``"T_c"``: ``"dense"``, ``"lanczos"`` or
        ``"recurrence"`` (LDLᵀ inverse iteration, the fast one for the MNIST net); for
        ``"lambda_min"``: ``"dense"`` or ``"lanczos"``.
      num_iter: Lanczos dimension / inverse-iteration sweeps (None: the melting defaults).
      beta_max_factor: the β_c search range is (0, beta_max_factor · β*].
      num_ref_betas: grid points for the reference minimum over (0, 2 · β_guess].
      skip_nonfinite: on a penalty step where f or its gradient is not finite, apply no
        penalty (zero gradient) and count the step in the history row's ``penalty_skipped``
        instead of stopping with an error. Needed for ``"T_c"`` from t = 0: the reference net
        touches its own λ* tangentially (∂λ_min/∂β = 0 at β*), so dβ_c/dW diverges there and
        the IFT gradient is NaN until training moves the crossing off the minimum.
    """

    alpha: float
    target: Target = "T_c"
    beta0: float | None = None
    every_k: int = 100
    backend: PenaltyBackend = "recurrence"
    num_iter: int | None = None
    beta_max_factor: float = 3.0
    num_ref_betas: int = 48
    skip_nonfinite: bool = False

    def __post_init__(self):
        if not np.isfinite(self.alpha):
            raise ValueError(f"tc_penalty.alpha={self.alpha}: must be finite")
        if self.target not in TARGETS:
            raise ValueError(f"tc_penalty.target={self.target!r}: must be one of {TARGETS}")
        if self.target == "lambda_min":
            if self.beta0 is None or not (np.isfinite(self.beta0) and self.beta0 > 0):
                raise ValueError(f"tc_penalty.beta0={self.beta0}: target 'lambda_min' needs a "
                                 "positive finite beta0 (e.g. the reference β*)")
            if self.backend not in ("dense", "lanczos"):
                raise ValueError(f"tc_penalty.backend={self.backend!r}: target 'lambda_min' "
                                 "takes 'dense' or 'lanczos'")
        elif self.backend not in ("dense", "lanczos", "recurrence"):
            raise ValueError(f"tc_penalty.backend={self.backend!r}: use 'dense', 'lanczos' or "
                             "'recurrence'")
        if int(self.every_k) != self.every_k or self.every_k < 1:
            raise ValueError(f"tc_penalty.every_k={self.every_k}: must be an integer >= 1")
        if not self.beta_max_factor > 1:
            raise ValueError(f"tc_penalty.beta_max_factor={self.beta_max_factor}: must be > 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "TcPenalty":
        check_fields(TcPenalty, d, "tc_penalty")
        return TcPenalty(**d)


class PenaltyReference(NamedTuple):
    """The run's fixed reference (t = 0 net): λ*, its β*, and the β_c search range."""

    threshold: float
    beta: float
    beta_max: float


def penalty_reference(penalty: TcPenalty, weights0, beta_guess: float | None = None) -> PenaltyReference:
    """λ* = min_β λ_min(I − M(β); W(0)) and β* of the t = 0 weights (section 3.2), fixed for a run.

    The minimum is searched on ``num_ref_betas`` points of (0, 2·beta_guess] (default guess
    1/sqrt(max_k σ_max(W^(k))²), the scale where β‖J‖ ~ 1) and polished by golden section
    (:func:`tapjax.tap.reference_threshold`, dense backend up to 1024 spins, Lanczos above:
    24 dense eigh of the 2330-spin MNIST net took 310 s on the shared CPU).
    """
    c = couplings([np.asarray(w, np.float64) for w in weights0], name="tc_penalty: t = 0 weights")
    if beta_guess is None:
        smax = max(float(np.linalg.norm(np.asarray(w), 2)) for w in c.weights)
        beta_guess = 1.0 / smax
    betas = beta_grid(2.0 * beta_guess, penalty.num_ref_betas)
    backend = "dense" if sum(c.sizes) <= 1024 else "lanczos"
    thr = tap.reference_threshold(c, betas, backend)
    if not (np.isfinite(thr.value) and np.isfinite(thr.beta)):
        raise ValueError(f"tc_penalty: the t = 0 net's reference level is not finite ({thr})")
    return PenaltyReference(float(thr.value), float(thr.beta), float(penalty.beta_max_factor * thr.beta))


def penalty_target(penalty: TcPenalty, ref: PenaltyReference, weights) -> jax.Array:
    """f(W): T_c (``"T_c"``) or λ_min(I − M(β₀)) (``"lambda_min"``); differentiable, jittable.

    ``weights``: ``[W^(1), …]`` blocks ``(N_{k-1}, N_k)``; computed in their dtype.
    """
    ws = list(weights)
    dt = ws[0].dtype
    if penalty.target == "lambda_min":
        kw = {} if penalty.num_iter is None else {"num_iter": penalty.num_iter}
        return melting.least_eigenvalue(ws, jnp.asarray(penalty.beta0, dt), backend=penalty.backend, **kw)
    beta = melting.critical_beta_fn(ws, jnp.asarray(ref.threshold, dt), jnp.asarray(ref.beta_max, dt),
                                    hint=jnp.asarray(ref.beta, dt), backend=penalty.backend,
                                    num_iter=penalty.num_iter)
    return 1.0 / beta


def penalty_value_and_grad(penalty: TcPenalty, ref: PenaltyReference, params) -> tuple[jax.Array, Any]:
    """``(f(W), ∂(α f)/∂params)``: the gradient has the pytree of ``params`` (zeros off the kernels)."""

    def f(p):
        return penalty_target(penalty, ref, weights_from_params(p))

    val, g = jax.value_and_grad(f)(params)
    return val, jax.tree_util.tree_map(lambda x: penalty.alpha * x, g)


def finite_or_zero(value: jax.Array, grads) -> tuple[jax.Array, Any]:
    """``(value, grads)`` if all finite, else ``(NaN, zeros)`` (the NaN flags the skipped step)."""
    ok = jnp.isfinite(value)
    for leaf in jax.tree_util.tree_leaves(grads):
        ok = ok & jnp.all(jnp.isfinite(leaf))
    grads = jax.tree_util.tree_map(lambda x: jnp.where(ok, x, jnp.zeros_like(x)), grads)
    return jnp.where(ok, value, jnp.nan), grads


def penalty_gradient_scale(penalty: TcPenalty) -> float:
    """Factor on the penalty gradient on the steps it is computed (k: average α per step)."""
    return float(penalty.every_k)


def choose_every_k(step_seconds: float, penalty_seconds: float, overhead: float = 0.25) -> int:
    """k = ceil(ρ / overhead), ρ = penalty_seconds / step_seconds: the penalty then adds at most
    ``overhead`` (a fraction) to the training time."""
    if step_seconds <= 0 or penalty_seconds < 0 or overhead <= 0:
        raise ValueError(f"choose_every_k: need step_seconds > 0, penalty_seconds >= 0, overhead > 0 "
                         f"(got {step_seconds}, {penalty_seconds}, {overhead})")
    return max(1, int(math.ceil(penalty_seconds / (step_seconds * overhead))))


__all__ = ["PenaltyReference", "TcPenalty", "choose_every_k", "finite_or_zero", "penalty_gradient_scale",
           "penalty_reference", "penalty_target", "penalty_value_and_grad"]
