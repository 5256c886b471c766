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
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tapjax import checkpoints as ckpt
from tapjax.binarize import step, ste_step

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

    kind: str = "standard"
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


def preprocess(x_uint8: jax.Array, kind: str) -> jax.Array:
    """Pixels 0..255 ``(..., d)`` → network input, float32.

    binarized: ``step(x/255 - 1/2)`` ∈ {−1, +1} (no pixel equals 127.5 exactly, so the
    convention step(0)=+1 never matters here); standard: ``x/255``.
    """
    x = x_uint8.astype(jnp.float32) / 255.0
    if kind == "binarized":
        return step(x - 0.5)
    return x


class MLP(nn.Module):
    """784-512-512-512-10 (configurable) MLP; input must already be :func:`preprocess`-ed.

    ``__call__(x)``: ``x`` float ``(batch, N_0)`` → scores ``(batch, N_L)``.
    """

    config: ModelConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        init = nn.initializers.variance_scaling(cfg.init_scale, "fan_in", "normal")
        act = ste_step if cfg.kind == "binarized" else nn.relu
        n_layers = len(cfg.widths)
        for k, width in enumerate(cfg.widths):
            x = nn.Dense(width, use_bias=cfg.use_bias, kernel_init=init, name=f"layer{k + 1}")(x)
            if k < n_layers - 1:
                x = act(x)
        return x


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


def error_rate(config: ModelConfig, params: dict[str, Any], x_uint8: jax.Array,
               y: jax.Array, batch: int = 10000) -> float:
    """Fraction of misclassified samples (argmax of the scores)."""
    fn = jax.jit(lambda p, xb, yb: jnp.sum(jnp.argmax(apply(config, p, xb), -1) != yb))
    wrong = 0
    for i in range(0, x_uint8.shape[0], batch):
        wrong += int(fn(params, x_uint8[i:i + batch], y[i:i + batch]))
    return wrong / max(1, x_uint8.shape[0])


def config_from_dict(d: dict[str, Any]) -> ModelConfig:
    return ModelConfig(**{**d, "widths": tuple(d["widths"])})


__all__ = ["KINDS", "MLP", "ModelConfig", "PAPER_WIDTHS", "apply", "config_from_dict",
           "error_rate", "init_params", "preprocess", "weights_from_params"]
