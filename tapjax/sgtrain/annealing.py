r"""Simulated annealing of the n-bit window encoding (report §B.2–B.3), vmapped over units.

One *epoch* k of the source's procedure: encode every weight of every unit with n bits in
the window :math:`[S^0-L_k, S^0+L_k]` around its current value (:mod:`bit_encoding`), run
``sweeps`` Metropolis sweeps at fixed :math:`\beta_k`, decode. Each sweep visits all M·n
spins once in a random order; the move :math:`\sigma_\mu\to-\sigma_\mu` changes weight j by
:math:`\delta = -2c\,2^\alpha\sigma_{j\alpha}` and the energy by the exact

.. math::
    \Delta H = \delta\,\big(2 (J S)_j + h_j + \delta J_{jj}\big)
             = -2\sigma_\mu\big(2\textstyle\sum_{\nu\ne\mu}J'_{\mu\nu}\sigma_\nu + h'_\mu\big),

accepted if :math:`\Delta H \le 0` or :math:`u < e^{-\beta\Delta H}`. The local field
:math:`g = J S` is updated in O(M) per accepted flip, so :math:`J'` is never formed.
Across epochs the window and the inverse temperature follow geometric schedules

.. math::
    L_k = L_i (L_f/L_i)^{k/(K-1)}, \qquad \beta_k = \beta_i (\beta_f/\beta_i)^{k/(K-1)},

the window acting like a decaying learning rate (:class:`Annealing` takes β by default in units
of the window's energy scale, see there). Binary encoding has Hamming cliffs: moving a weight by
one grid step can need many bit flips through higher energies, so a cold chain can stall one
step away from a lower grid point; the shrinking window is what removes the residual. All units are annealed at once with
``jax.vmap``; they share the sweep order, but draw independent acceptance numbers.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from tapjax.sgtrain.hamiltonian import LayerHamiltonian, check_weights


def geometric(start: float, end: float, frac: jax.Array) -> jax.Array:
    """start·(end/start)^frac, frac ∈ [0, 1] (geometric schedule, report §B.2)."""
    return start * (end / start) ** frac


def _anneal_unit(h, s0, code0, log_u, J, diag_j, perms, c, beta, n_bits):
    r"""Metropolis sweeps for one unit. h, s0: (M,); code0: (M,) int; log_u, perms: (sweeps, M·n).

    The n bits of weight j are stored as the binary digits of one integer
    :math:`u_j = \sum_\alpha 2^\alpha (\sigma_{j\alpha}+1)/2 \in [0, N_b]`, so a flip is an XOR
    and :math:`S_j = S^0_j + c\,(2u_j - N_b)`.
    """
    nb = 2 ** n_bits - 1
    S = s0 + c * (2.0 * code0 - nb).astype(s0.dtype)

    def sweep(carry, xs):
        code, S = carry
        perm, logu = xs
        g = J @ S  # refreshed each sweep: no drift from incremental updates

        def flip(t, st):
            code, S, g = st
            mu = perm[t].astype(jnp.int32)
            j, a = mu // n_bits, mu % n_bits
            uj = code[j]
            bit = (uj >> a) & 1                       # (σ_ja + 1) / 2
            sigma = (2 * bit - 1).astype(S.dtype)
            delta = -2.0 * c * sigma * (2.0 ** a).astype(S.dtype)
            dE = delta * (2.0 * g[j] + h[j] + delta * diag_j[j])
            accept = (dE <= 0) | (logu[t] < -beta * dE)
            d = jnp.where(accept, delta, 0.0)
            code = code.at[j].set(jnp.where(accept, uj ^ (1 << a), uj))
            return code, S.at[j].add(d), g + d * J[j]

        code, S, _ = jax.lax.fori_loop(0, perm.shape[0], flip, (code, S, g))
        return (code, S), None

    (_, S), _ = jax.lax.scan(sweep, (code0, S), (perms, log_u))
    return S


def anneal_window(ham: LayerHamiltonian, W0: jax.Array, key: jax.Array, *, window,
                  beta, n_bits: int, sweeps: int = 1, init: str = "center") -> jax.Array:
    r"""One annealing epoch: Metropolis on the n-bit window encoding around ``W0``.

    Args:
      ham: the layer's Hamiltonians (M spins, N units).
      W0: (N, M) current weights = window centres S⁰.
      key: PRNG key.
      window: L > 0, half-width of the window (may be traced).
      beta: inverse temperature (may be traced).
      n_bits: n bits per weight (the Ising system has M·n spins per unit).
      sweeps: Metropolis sweeps (each M·n single-spin-flip attempts).
      init: ``"center"`` starts from the grid point S⁰ + c nearest the current weights;
        ``"random"`` from uniformly random bits (the source code's choice).

    Returns:
      (N, M) decoded weights.
    """
    check_weights(ham, W0)
    if not 1 <= n_bits <= 24:
        raise ValueError(f"n_bits: must be in [1, 24], got {n_bits}")
    if sweeps < 1:
        raise ValueError(f"sweeps: must be >= 1, got {sweeps}")
    if init not in ("center", "random"):
        raise ValueError(f"init: must be 'center' or 'random', got {init!r}")
    N, M = W0.shape
    dtype = W0.dtype
    k_perm, k_u, k_init = jax.random.split(key, 3)
    perms = jax.vmap(lambda k: jax.random.permutation(k, M * n_bits))(
        jax.random.split(k_perm, sweeps))
    log_u = jnp.log(jax.random.uniform(k_u, (N, sweeps, M * n_bits), dtype))
    if init == "center":
        code0 = jnp.full((N, M), 2 ** (n_bits - 1), jnp.int32)  # top bit set: offset +c
    else:
        code0 = jax.random.randint(k_init, (N, M), 0, 2 ** n_bits, jnp.int32)
    c = jnp.asarray(window, dtype) / (2.0 ** n_bits - 1.0)
    unit = functools.partial(_anneal_unit, J=ham.J, diag_j=jnp.diagonal(ham.J), perms=perms,
                             c=c, beta=jnp.asarray(beta, dtype), n_bits=n_bits)
    return jax.vmap(unit)(ham.h, W0, code0, log_u)


@dataclasses.dataclass(frozen=True)
class Annealing:
    r"""Simulated annealing of n-bit window encodings; one call of :meth:`step` is one epoch.

    With ``relative_beta=True`` (default) β is given in units of the window's energy scale,
    :math:`\beta_k = \tilde\beta_k / (L_k^2\,\overline{J_{jj}})`, so that
    :math:`\tilde\beta = 1` means moving one weight across the whole window costs about kT.
    Then one schedule transfers between layers and data sets, and the annealer cools relative to
    its shrinking window. (A raw β that grows slower than :math:`1/L_k^2` *heats* the system as the
    window shrinks and leaves the weights jittering at the window scale.) ``relative_beta=False``
    uses the raw β of the source (e.g. 5e3 → 5e6 for H = per-sample MSE).

    Attributes:
      n_bits: bits per weight (report: 8; 4 or 2 for quantum-sized models).
      window: (L_i, L_f) window half-widths at the first and last epoch.
      beta: (β_i, β_f) inverse temperatures at the first and last epoch.
      sweeps: Metropolis sweeps per epoch.
      init: "center" or "random" (see :func:`anneal_window`).
      relative_beta: interpret ``beta`` in window-energy units (see above).
    """

    n_bits: int = 8
    window: tuple[float, float] = (0.1, 1e-4)
    beta: tuple[float, float] = (1.0, 1e4)
    sweeps: int = 1
    init: str = "center"
    relative_beta: bool = True

    def __post_init__(self):
        for name in ("window", "beta"):
            a, b = getattr(self, name)
            if not (a > 0 and b > 0):
                raise ValueError(f"{name}: both schedule ends must be > 0, got {(a, b)}")

    def beta_at(self, ham: LayerHamiltonian, frac) -> jax.Array:
        """The absolute β of epoch position ``frac`` ∈ [0, 1]."""
        beta = geometric(*self.beta, frac)
        if not self.relative_beta:
            return beta
        window = geometric(*self.window, frac)
        scale = jnp.maximum(jnp.mean(jnp.diagonal(ham.J)), jnp.finfo(ham.J.dtype).tiny)
        return beta / (window * window * scale)

    def step(self, ham: LayerHamiltonian, W: jax.Array, key: jax.Array, frac) -> jax.Array:
        """One epoch at schedule position ``frac`` ∈ [0, 1]; returns the new (N, M) weights."""
        return anneal_window(ham, W, key, window=geometric(*self.window, frac),
                             beta=self.beta_at(ham, frac), n_bits=self.n_bits,
                             sweeps=self.sweeps, init=self.init)
