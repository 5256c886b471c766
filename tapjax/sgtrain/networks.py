r"""Training one- and two-layer nets by minimising their spin-glass Hamiltonians, and backprop.

A net is a tuple of weight matrices ``(W_1, ..., W_L)``, ``W_k`` of shape (N_k, N_{k-1}+1)
whose last column is the bias (the bias is an extra spin, report eqs. 10–11). Layer k computes
:math:`h_k = f_k(\tilde h_{k-1} W_k^\top)` with :math:`\tilde h` = h with a column of ones.

* One layer (note §1.1): the Hamiltonian is fixed by the data, so training is ``epochs`` calls
  of a minimiser (:class:`~tapjax.sgtrain.annealing.Annealing`,
  :class:`~tapjax.sgtrain.langevin.Langevin` or :class:`~tapjax.sgtrain.exact.ExactSolve`).
* Two layers (note §1.3, report v2): alternate, per outer step k,

  1. hidden targets from the output targets through the pseudo-inverse of the output layer,
     :math:`\zeta^a = W_2^{+}(f_2^{-1}(\xi^a) - b_2)` (note eq. 19; ``hidden_targets="pinv"``),
     or the smallest change of the current hidden activity τ that fixes the output,
     :math:`\zeta^a = \tau^a + W_2^{+}(f_2^{-1}(\xi^a) - b_2 - W_2\tau^a)` (``"minimal_change"``);
  2. minimise :math:`D_0 = \frac1Q\sum_a\|W_1\tilde\sigma^a - f_1^{-1}(\zeta^a)\|^2` over W_1;
  3. forward the inputs, :math:`\tau^a = f_1(W_1\tilde\sigma^a)`, and minimise
     :math:`D_1 = \frac1Q\sum_a\|W_2\tilde\tau^a - f_2^{-1}(\xi^a)\|^2` over W_2.

  Re-deriving the output weights every step from the pseudo-inverse (instead of training the
  inverse layer and inverting once, note eq. 22) keeps one forward net throughout.
* Backprop: full-batch optax (Adam or SGD) on the true MSE :math:`\frac1Q\sum_a\|s^a-\xi^a\|^2`
  (note eq. 2), the baseline.

All ``fit_*`` functions are pure and jittable (schedules and minimisers are static); inputs are
checked eagerly when they are concrete.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from tapjax.sgtrain.activations import Activation, Identity, LeakyReLU
from tapjax.sgtrain.hamiltonian import dense_hamiltonian, energy, with_bias

Params = tuple[jax.Array, ...]


def init_params(key: jax.Array, sizes: Sequence[int], dtype=jnp.float32) -> Params:
    """Weights N(0, 1/N_{k-1}) and zero biases for layer sizes (N_0, ..., N_L)."""
    keys = jax.random.split(key, len(sizes) - 1)
    out = []
    for k, (m, n) in zip(keys, zip(sizes[:-1], sizes[1:])):
        w = jax.random.normal(k, (n, m), dtype) / jnp.sqrt(jnp.asarray(m, dtype))
        out.append(jnp.concatenate([w, jnp.zeros((n, 1), dtype)], axis=1))
    return tuple(out)


def forward(params: Params, x: jax.Array, activations: Sequence[Activation]) -> jax.Array:
    """Net output (Q, N_L) for inputs x (Q, N_0)."""
    h = x
    for W, f in zip(params, activations):
        h = f(with_bias(h) @ W.T)
    return h


def mse(params: Params, x: jax.Array, y: jax.Array, activations: Sequence[Activation]) -> jax.Array:
    r"""True loss :math:`\frac1Q\sum_a\sum_i(s_i(\sigma^a)-\xi^a_i)^2`, note eq. 2."""
    r = forward(params, x, activations) - y
    return jnp.sum(r * r) / x.shape[0]


def _check_data(x, y, params: Params | None = None, activations=None):
    if jnp.ndim(x) != 2:
        raise ValueError(f"x: expected a 2-D (Q, M) array of inputs, got shape {jnp.shape(x)}")
    if jnp.ndim(y) != 2:
        raise ValueError(f"y: expected a 2-D (Q, N) array of targets, got shape {jnp.shape(y)}")
    if jnp.shape(x)[0] != jnp.shape(y)[0]:
        raise ValueError(f"y: {jnp.shape(y)[0]} samples but x has {jnp.shape(x)[0]}")
    if params is not None:
        if activations is not None and len(activations) != len(params):
            raise ValueError(f"activations: {len(activations)} given for {len(params)} layers")
        fan_in = jnp.shape(x)[1]
        for k, W in enumerate(params):
            if jnp.ndim(W) != 2 or jnp.shape(W)[1] != fan_in + 1:
                raise ValueError(f"params: layer {k} has shape {jnp.shape(W)}, expected "
                                 f"(N_{k + 1}, {fan_in + 1}) (fan-in + bias column)")
            fan_in = jnp.shape(W)[0]
        if fan_in != jnp.shape(y)[1]:
            raise ValueError(f"y: {jnp.shape(y)[1]} outputs but the last layer has {fan_in} units")


def _fracs(epochs: int, dtype) -> jax.Array:
    return jnp.arange(epochs, dtype=dtype) / max(epochs - 1, 1)


@functools.partial(jax.jit, static_argnames=("activation", "minimizer", "epochs"))
def fit_one_layer_jit(W0, x, y, key, *, activation, minimizer, epochs):
    """The jitted core of :func:`fit_one_layer`, without its eager input checks.

    For ahead-of-time use (``fit_one_layer_jit.lower(W0, x, y, key, **static).compile()``, one
    compilation reused over seeds); call :func:`fit_one_layer` otherwise.
    """
    xb = with_bias(x)
    ham = dense_hamiltonian(xb, y, activation)

    def epoch(W, xs):
        k, frac = xs
        W = minimizer.step(ham, W, k, frac)
        return W, (energy(ham, W).sum(), mse((W,), x, y, (activation,)))

    W, (h_hist, loss_hist) = jax.lax.scan(
        epoch, W0, (jax.random.split(key, epochs), _fracs(epochs, W0.dtype)))
    return W, {"energy": h_hist, "loss": loss_hist}


def fit_one_layer(W0: jax.Array, x: jax.Array, y: jax.Array, key: jax.Array, *,
                  activation: Activation = Identity(), minimizer, epochs: int):
    r"""Trains one dense layer by minimising its Hamiltonians, note §1.1.

    Args:
      W0: (N, M+1) initial weights (bias last).
      x: (Q, M) inputs.
      y: (Q, N) targets in the range of ``activation``.
      key: PRNG key.
      activation: f (targets are inactivated with f⁻¹).
      minimizer: an object with ``step(ham, W, key, frac) -> W`` (Annealing, Langevin,
        ExactSolve).
      epochs: number of minimiser calls (the schedules run over them).

    Returns:
      ``(W, history)``: final (N, M+1) weights and ``{"energy": (epochs,), "loss": (epochs,)}``,
      the Hamiltonian D (eq. 12) and the true MSE (eq. 2) after each epoch.
    """
    _check_data(x, y, (W0,))
    activation.check_targets(y, "y")
    if epochs < 1:
        raise ValueError(f"epochs: must be >= 1, got {epochs}")
    return fit_one_layer_jit(W0, x, y, key, activation=activation, minimizer=minimizer, epochs=epochs)


def _hidden_targets(W2, t_out, tau, mode):
    W2h, b2 = W2[:, :-1], W2[:, -1]
    P = jnp.linalg.pinv(W2h)  # (H, N), Moore–Penrose
    if mode == "pinv":
        return (t_out - b2) @ P.T
    return tau + (t_out - b2 - tau @ W2h.T) @ P.T


@functools.partial(jax.jit, static_argnames=("activations", "minimizer", "steps", "hidden_targets"))
def fit_two_layer_jit(params0, x, y, key, *, activations, minimizer, steps, hidden_targets):
    """The jitted core of :func:`fit_two_layer`, without its eager input checks (for AOT lowering)."""
    f1, f2 = activations
    xb = with_bias(x)
    t_out = f2.inverse(y)

    def outer(params, xs):
        W1, W2 = params
        k, frac = xs
        k1, k2 = jax.random.split(k)
        tau = f1(xb @ W1.T)
        zeta = _hidden_targets(W2, t_out, tau, hidden_targets)
        W1 = minimizer.step(dense_hamiltonian(xb, zeta, f1), W1, k1, frac)
        tau = f1(xb @ W1.T)
        ham2 = dense_hamiltonian(with_bias(tau), y, f2)
        W2 = minimizer.step(ham2, W2, k2, frac)
        params = (W1, W2)
        return params, (energy(ham2, W2).sum(), mse(params, x, y, activations))

    params, (h_hist, loss_hist) = jax.lax.scan(
        outer, tuple(params0), (jax.random.split(key, steps), _fracs(steps, x.dtype)))
    return params, {"energy": h_hist, "loss": loss_hist}


def fit_two_layer(params0: Params, x: jax.Array, y: jax.Array, key: jax.Array, *,
                  activations: tuple[Activation, Activation] = (LeakyReLU(0.1), Identity()),
                  minimizer, steps: int, hidden_targets: str = "pinv"):
    r"""Trains a two-layer net by the alternating pseudo-inverse scheme (module docstring).

    Args:
      params0: ``(W1, W2)`` of shapes (H, M+1), (N, H+1).
      x: (Q, M) inputs.
      y: (Q, N) targets in the range of the output activation.
      key: PRNG key.
      activations: (f1, f2); f1 must be invertible on all of ℝ (LeakyReLU with α > 0 or
        Identity), since the propagated hidden targets can take any value.
      minimizer: ``step(ham, W, key, frac) -> W``; one call per layer per outer step.
      steps: outer steps (schedules run over them).
      hidden_targets: ``"pinv"`` (note eq. 19) or ``"minimal_change"``.

    Returns:
      ``(params, history)`` with ``history["energy"]`` the output-layer Hamiltonian D_1 and
      ``history["loss"]`` the true MSE of the net, both (steps,).
    """
    if len(params0) != 2:
        raise ValueError(f"params0: expected (W1, W2) for a two-layer net, got {len(params0)} arrays")
    _check_data(x, y, params0, activations)
    f1, f2 = activations
    if not (isinstance(f1, Identity) or (isinstance(f1, LeakyReLU) and f1.alpha > 0)):
        raise ValueError(f"activations: the hidden activation must be invertible on all of ℝ "
                         f"(LeakyReLU with alpha > 0, or Identity), got {f1}")
    f2.check_targets(y, "y")
    if hidden_targets not in ("pinv", "minimal_change"):
        raise ValueError(f"hidden_targets: must be 'pinv' or 'minimal_change', got {hidden_targets!r}")
    if steps < 1:
        raise ValueError(f"steps: must be >= 1, got {steps}")
    return fit_two_layer_jit(tuple(params0), x, y, key, activations=tuple(activations),
                          minimizer=minimizer, steps=steps, hidden_targets=hidden_targets)


@functools.partial(jax.jit, static_argnames=("activations", "optimizer", "learning_rate", "steps"))
def fit_backprop_jit(params0, x, y, *, activations, optimizer, learning_rate, steps):
    """The jitted core of :func:`fit_backprop`, without its eager input checks (for AOT lowering)."""
    opt = {"adam": optax.adam, "sgd": optax.sgd}[optimizer](learning_rate)
    loss_fn = functools.partial(mse, x=x, y=y, activations=activations)

    def step(carry, _):
        params, state = carry
        loss, g = jax.value_and_grad(loss_fn)(params)
        updates, state = opt.update(g, state, params)
        return (optax.apply_updates(params, updates), state), loss

    (params, _), losses = jax.lax.scan(step, (params0, opt.init(params0)), None, length=steps)
    return params, {"loss": jnp.append(losses[1:], loss_fn(params))}


def fit_backprop(params0: Params, x: jax.Array, y: jax.Array, *,
                 activations: Sequence[Activation], optimizer: str = "adam",
                 learning_rate: float = 1e-2, steps: int = 500):
    """Full-batch gradient descent (optax ``adam`` or ``sgd``) on the true MSE (note eq. 2).

    Returns:
      ``(params, history)`` with ``history["loss"]`` the (steps,) MSE after each step.
    """
    _check_data(x, y, tuple(params0), activations)
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer: must be 'adam' or 'sgd', got {optimizer!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate: must be > 0, got {learning_rate}")
    if steps < 1:
        raise ValueError(f"steps: must be >= 1, got {steps}")
    return fit_backprop_jit(tuple(params0), x, y, activations=tuple(activations), optimizer=optimizer,
                         learning_rate=float(learning_rate), steps=steps)
