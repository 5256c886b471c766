r"""The paper's MLPs (section 3.1) as Flax Linen modules, plus the weight ↔ coupling map.

We use Flax **Linen**: its parameters are a plain nested dict, so a run's checkpoints stack
along a leading axis and the analysis side (``jax.vmap`` over checkpoints) sees ordinary
pytrees with no module state to split. Hidden layers carry **no biases by default**: the
spin model maps weights one-to-one onto couplings :math:`J^{(k)}` (eq. 1) and biases would be
external fields that eqs. 19–27 do not contain (``use_bias=True`` is available).

Weight init: :math:`W^{(k)}_{ij} \sim \mathcal N(0, C/N_{k-1})` (Kaiming normal; the paper's
section 2 ensemble), ``C = init_scale`` (default 2).

Kinds:
  * ``"binarized"``: input pixels centered (:math:`x/255 - 1/2`) then binarized with
    :func:`tapjax.binarize.ste_step`; ``ste_step`` after every hidden layer; linear output.
  * ``"standard"``: input :math:`x/255 \in [0, 1]`; ReLU hidden layers; linear output.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tapjax import checkpoints as ckpt
from tapjax.binarize import step, ste_step

Kind = Literal["binarized", "standard"]
KINDS = ("binarized", "standard")
PAPER_WIDTHS = (512, 512, 512, 10)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    r"""Architecture of the MLP.

    Attributes:
      kind: ``"binarized"`` or ``"standard"``.
      input_dim: ``N_0`` (784 for MNIST).
      widths: ``(N_1, ..., N_L)``; the last entry is the number of classes.
      init_scale: ``C`` of the Kaiming-normal init :math:`\mathcal N(0, C/N_{k-1})`.
      use_bias: add biases (they are not part of the spin model).
    """

    kind: Kind = "standard"
    input_dim: int = 784
    widths: tuple[int, ...] = PAPER_WIDTHS
    init_scale: float = 2.0
    use_bias: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"model kind {self.kind!r}: must be one of {KINDS}")
        if len(self.widths) < 1 or any(int(w) < 1 for w in self.widths):
            raise ValueError(f"widths {self.widths!r}: need at least one positive layer width")
        if self.init_scale <= 0:
            raise ValueError(f"init_scale {self.init_scale}: must be > 0")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))

    @property
    def sizes(self) -> tuple[int, ...]:
        """Layer sizes ``(N_0, ..., N_L)`` of the spin model."""
        return (self.input_dim, *self.widths)


def preprocess(x_uint8: jax.Array, kind: Kind | jax.Array) -> jax.Array:
    """Pixels 0..255 ``(..., d)`` → network input, float32.

    binarized: ``step(x/255 - 1/2)`` ∈ {−1, +1} (no pixel equals 127.5 exactly, so the
    convention step(0)=+1 never matters here); standard: ``x/255``. ``kind`` is a name of
    :data:`KINDS`, or a (possibly traced) bool scalar ``is_binarized``: then an elementwise
    select of the two, for runs of both kinds vmapped in one program (:mod:`tapjax.multirun`).
    """
    if not isinstance(kind, str):
        return jnp.where(kind, preprocess(x_uint8, "binarized"), preprocess(x_uint8, "standard"))
    x = x_uint8.astype(jnp.float32) / 255.0
    return step(x - 0.5) if kind == "binarized" else x


def hidden_activation(h: jax.Array, kind: Kind | jax.Array) -> jax.Array:
    """The hidden-layer nonlinearity: ``ste_step`` (binarized, eqs. 28–29) or ReLU (standard).

    ``kind`` as in :func:`preprocess`; a bool ``is_binarized`` gives ``where(is_binarized,
    ste_step(h), relu(h))`` (the gradient flows through the selected branch only).
    """
    if isinstance(kind, str):
        return ste_step(h) if kind == "binarized" else nn.relu(h)
    return jnp.where(kind, ste_step(h), nn.relu(h))


def forward(params: dict[str, Any], x: jax.Array, kind: Kind | jax.Array) -> jax.Array:
    r"""The MLP as a pure function: scores ``(batch, N_L)`` of preprocessed inputs ``x`` ``(batch, N_0)``.

    :math:`h^{(k)} = \phi(h^{(k-1)} W^{(k)} [+ b^{(k)}])` on the hidden layers, linear output;
    :math:`\phi` = :func:`hidden_activation` of ``kind`` (a name, or a traced bool
    ``is_binarized``). Layers in natural name order (:func:`tapjax.checkpoints.layer_order`).
    :class:`MLP` only declares the parameters and calls this function, so ``MLP.apply``, the
    trainer and the vmapped trainer share one forward.
    """
    names = ckpt.layer_order(list(params))
    for k, name in enumerate(names):
        x = x @ params[name]["kernel"]
        if "bias" in params[name]:
            x = x + params[name]["bias"]
        if k < len(names) - 1:
            x = hidden_activation(x, kind)
    return x


def num_wrong(params: dict[str, Any], x: jax.Array, y: jax.Array, kind: Kind | jax.Array) -> jax.Array:
    """Number of misclassified samples (argmax of :func:`forward`) of preprocessed ``x``; int scalar."""
    return jnp.sum(jnp.argmax(forward(params, x, kind), -1) != y)


class _Dense(nn.Module):
    """The parameters of one ``nn.Dense`` layer (same names, shapes, init and PRNG path)."""

    features: int
    use_bias: bool
    kernel_init: Any

    @nn.compact
    def __call__(self, n_in: int) -> dict[str, jax.Array]:
        p = {"kernel": self.param("kernel", self.kernel_init, (n_in, self.features), jnp.float32)}
        if self.use_bias:
            p["bias"] = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return p


class MLP(nn.Module):
    """784-512-512-512-10 (configurable) MLP; input must already be :func:`preprocess`-ed.

    ``__call__(x)``: ``x`` float ``(batch, N_0)`` → scores ``(batch, N_L)``, computed by
    :func:`forward`; the module declares the parameters ``layer1..layerL`` (``kernel``
    ``(N_{k-1}, N_k)``, optional ``bias``) and their init, nothing else.
    """

    config: ModelConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        init = nn.initializers.variance_scaling(cfg.init_scale, "fan_in", "normal")
        params, n_in = {}, x.shape[-1]
        for k, width in enumerate(cfg.widths):
            params[f"layer{k + 1}"] = _Dense(width, cfg.use_bias, init, name=f"layer{k + 1}")(n_in)
            n_in = width
        return forward(params, x, cfg.kind)


def init_params(config: ModelConfig, key: jax.Array) -> dict[str, Any]:
    """Fresh parameters ``{"layer1": {"kernel": (N_0, N_1)}, ...}`` for ``config``."""
    return MLP(config).init(key, jnp.zeros((1, config.input_dim), jnp.float32))["params"]


def weights_from_params(params: dict[str, Any]) -> tuple[jax.Array, ...]:
    """The coupling blocks ``(W^(1), ..., W^(L))``, ``W^(k)`` of shape ``(N_{k-1}, N_k)``.

    Flax's Dense kernel is ``(in, out)``, exactly the paper's :math:`J^{(k)}` orientation
    (eq. 1: :math:`J^{(k)}_{ij}` couples neuron i of layer k−1 to neuron j of layer k).
    Layers are taken in natural name order (``layer2`` before ``layer10``; any names, e.g.
    ``fc.0``, ``fc.1``), and the kernels must chain: see
    :func:`tapjax.checkpoints.weights_from_params`, which raises a :class:`CheckpointError`
    naming the layers otherwise.
    """
    return ckpt.weights_from_params(params)


def apply(config: ModelConfig, params: dict[str, Any], x_uint8: jax.Array) -> jax.Array:
    """Scores for raw uint8 images ``(batch, N_0)``."""
    return MLP(config).apply({"params": params}, preprocess(x_uint8, config.kind))


def error_fraction(count_fn, params: Any, x: jax.Array, y: jax.Array, batch: int = 10000) -> np.ndarray:
    """``Σ_b count_fn(params, x_b, y_b) / n`` over batches of ``batch`` samples, float64.

    ``count_fn`` returns the misclassified count of a batch: a scalar for one run, ``(R,)`` for
    R vmapped runs (the result has that shape). The counts are summed exactly (integers).
    """
    total = 0
    for i in range(0, x.shape[0], batch):
        total = total + np.asarray(count_fn(params, x[i:i + batch], y[i:i + batch]))
    return np.asarray(total, np.float64) / max(1, x.shape[0])


def error_rate(config: ModelConfig, params: dict[str, Any], x_uint8: jax.Array,
               y: jax.Array, batch: int = 10000) -> float:
    """Fraction of misclassified samples of raw uint8 images (argmax of the scores)."""
    fn = functools.partial(_raw_num_wrong, kind=config.kind)
    return float(error_fraction(fn, params, x_uint8, y, batch))


@functools.partial(jax.jit, static_argnames=("kind",))
def _raw_num_wrong(params, x_uint8, y, kind: Kind):
    """:func:`num_wrong` of raw uint8 images (one program per kind and shapes, reused)."""
    return num_wrong(params, preprocess(x_uint8, kind), y, kind)


def config_from_dict(d: dict[str, Any]) -> ModelConfig:
    return ModelConfig(**{**d, "widths": tuple(d["widths"])})


__all__ = ["KINDS", "Kind", "MLP", "ModelConfig", "PAPER_WIDTHS", "apply", "config_from_dict",
           "error_fraction", "error_rate", "forward", "hidden_activation", "init_params",
           "num_wrong", "preprocess", "weights_from_params"]
