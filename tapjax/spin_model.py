r"""The layered Ising model of a feed-forward net (paper eqs. 1–4 and 25).

Neurons are Ising spins, weights are couplings. Layers :math:`k = 0..L` hold
:math:`N_k` spins; block :math:`W^{(k)}` (shape :math:`N_{k-1} \times N_k`) couples layer
:math:`k-1` to layer :math:`k`:

.. math::
    H(\sigma) = -\sum_{k=1}^{L} \sum_{ij} W^{(k)}_{ij}\, \sigma^{(k-1)}_i \sigma^{(k)}_j
              = -\tfrac12 \sigma^\top J \sigma,

with :math:`J` the symmetric block-tridiagonal bond matrix of eq. 4 (zero diagonal blocks).
:class:`LayeredCouplings` stores only the blocks (O(#weights) memory); the dense
:math:`N \times N` matrix is built only on request (:func:`dense_bond_matrix`).

Spins are ordered layer by layer (eq. 2): a flat vector of length :math:`N = \sum_k N_k`
is ``concat([sigma^(0), ..., sigma^(L)])``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tapjax.errors import CouplingsError

_HALF_FLOATS = ("float16", "bfloat16")  # upcast to float32: no LAPACK kernels in half precision


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LayeredCouplings:
    """Coupling blocks ``(W^(1), ..., W^(L))`` of a layered spin model (a JAX pytree).

    Each ``W^(k)`` has shape ``(..., N_{k-1}, N_k)``; leading batch axes (e.g. a stack of
    checkpoints) are allowed and must agree across blocks, so ``jax.vmap`` maps over them.
    Construct with :func:`couplings` to get input validation.

    The pytree's leaves are the blocks in layer order (``W^(1)`` first), no static data; a list
    passed as ``weights`` is stored as a tuple, so every instance has the same tree structure.
    """

    weights: tuple[jax.Array, ...]

    def __post_init__(self):
        if not isinstance(self.weights, tuple):
            object.__setattr__(self, "weights", tuple(self.weights))

    @property
    def num_layers(self) -> int:
        """L: the number of coupling blocks (the model has L + 1 spin layers)."""
        return len(self.weights)

    @property
    def sizes(self) -> tuple[int, ...]:
        """``(N_0, ..., N_L)``."""
        return (self.weights[0].shape[-2], *(w.shape[-1] for w in self.weights))

    @property
    def num_spins(self) -> int:
        return int(sum(self.sizes))

    @property
    def offsets(self) -> tuple[int, ...]:
        """Start index of each layer in the flat spin vector (eq. 2), plus N at the end."""
        return tuple(int(v) for v in np.cumsum((0, *self.sizes)))

    @property
    def dtype(self):
        return self.weights[0].dtype

    def astype(self, dtype) -> "LayeredCouplings":
        return LayeredCouplings(tuple(jnp.asarray(w, dtype) for w in self.weights))

    def scale(self, c: float) -> "LayeredCouplings":
        return LayeredCouplings(tuple(c * w for w in self.weights))


def couplings(weights: Sequence[Any] | LayeredCouplings, *, name: str = "weights",
              dtype=None, check_finite: bool = True) -> LayeredCouplings:
    """Validated :class:`LayeredCouplings` from a list of weight matrices.

    Args:
      weights: ``[W^(1), ..., W^(L)]``, ``W^(k)`` of shape ``(N_{k-1}, N_k)`` (a Flax
        ``Dense`` kernel), or an existing :class:`LayeredCouplings`.
      name: what to call the input in error messages (e.g. a checkpoint path).
      dtype: cast to this dtype (default: keep float32/float64; integer, float16 and bfloat16
        input becomes float32, since the eigen-solvers have no half-precision kernels).
      check_finite: reject NaN/Inf (needs concrete arrays; skipped under tracing).

    Raises:
      ValueError: empty list, a block that is not 2-D, consecutive blocks whose inner sizes
        disagree, or non-finite entries. The message names the block and shapes.
    """
    ws = weights.weights if isinstance(weights, LayeredCouplings) else tuple(weights)
    if len(ws) == 0:
        raise ValueError(f"{name}: need at least one weight matrix")
    out = []
    for k, w in enumerate(ws, start=1):
        w = jnp.asarray(w)
        if dtype is not None:
            w = w.astype(dtype)
        elif jnp.dtype(w.dtype).name in _HALF_FLOATS or not jnp.issubdtype(w.dtype, jnp.floating):
            w = w.astype(jnp.float32)
        if w.ndim < 2:
            raise ValueError(f"{name}: W^({k}) has shape {w.shape}; each block must be (N_{k-1}, N_k)")
        out.append(w)
    for k in range(1, len(out)):
        if out[k - 1].shape[-1] != out[k].shape[-2]:
            raise ValueError(
                f"{name}: W^({k}) has shape {out[k - 1].shape} but W^({k + 1}) has shape "
                f"{out[k].shape}; layer {k} sizes disagree ({out[k - 1].shape[-1]} vs {out[k].shape[-2]})")
        if out[k - 1].shape[:-2] != out[k].shape[:-2]:
            raise ValueError(f"{name}: batch axes differ between W^({k}) and W^({k + 1})")
    if check_finite:
        for k, w in enumerate(out, start=1):
            if not isinstance(w, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(w))):
                raise ValueError(f"{name}: W^({k}) contains NaN or Inf entries; the checkpoint or "
                                 "weights are corrupt (retrain or load another checkpoint)")
    return LayeredCouplings(tuple(out))


def as_couplings(c, *, where: str = "couplings") -> LayeredCouplings:
    """The engine's input rule: a :class:`LayeredCouplings` in a dtype the solvers support.

    Accepts a :class:`LayeredCouplings` or a list/tuple of ``W^(k)`` arrays (converted without
    validation; use :func:`couplings` for checked input). float16/bfloat16 (no LAPACK kernels)
    and integer blocks are upcast to float32; float32/float64 are kept. Trace-safe (no value
    checks), so it runs inside ``jit``.

    Raises:
      TypeError: anything else (the message names ``where`` and what to pass).
    """
    if isinstance(c, LayeredCouplings):
        ws = c.weights
    elif isinstance(c, (list, tuple)) and len(c) > 0 and all(hasattr(w, "shape") or
                                                             isinstance(w, (list, tuple)) for w in c):
        ws = tuple(jnp.asarray(w) for w in c)
    else:
        raise TypeError(f"{where}: expected LayeredCouplings or a list of weight matrices "
                        f"[W^(1), ..., W^(L)], got {type(c).__name__}; build one with "
                        "tapjax.couplings([...])")
    if len({w.ndim for w in ws}) != 1 or ws[0].ndim < 2:
        raise TypeError(f"{where}: blocks must be ≥2-D arrays with equal batch axes, got shapes "
                        f"{[tuple(w.shape) for w in ws]}; build with tapjax.couplings([...])")
    out = []
    for w in ws:
        if jnp.dtype(w.dtype).name in _HALF_FLOATS or not jnp.issubdtype(w.dtype, jnp.floating):
            w = w.astype(jnp.float32)
        out.append(w)
    return LayeredCouplings(tuple(out))


def all_finite(c: LayeredCouplings) -> jax.Array:
    """Whether every coupling is finite (bool scalar; trace-safe, for masking results)."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(w)) for w in c.weights]))


def nonfinite_blocks(c: LayeredCouplings) -> list[int]:
    """1-based indices k of the blocks ``W^(k)`` holding NaN or Inf (concrete arrays only)."""
    # in numpy: no per-shape compile of two tiny programs on every host-side check
    return [k for k, w in enumerate(c.weights, start=1) if not np.isfinite(np.asarray(w)).all()]


def coupling_scale(c: LayeredCouplings) -> jax.Array:
    r"""A power of two :math:`s = 2^e` with :math:`\max_{k,ij} |W^{(k)}_{ij}| / s \in [1/2, 1)`.

    Dividing by s is exact in binary floating point (absent underflow), and the TAP matrix
    obeys :math:`I - M(\beta; sW) = I - M(s\beta; W)` (eqs. 23–25: :math:`M` depends on
    :math:`\beta J` and :math:`\beta^2 r`), so the engine works on ``c / s`` at ``s β``: no
    overflow of :math:`\sum J^2` for huge weights, no underflow for tiny ones, and bit-identical
    results in the normal range. s = 1 for all-zero, subnormal-maximum or non-finite couplings.
    Per batch element for stacked couplings (shape ``batch``).
    """
    if not _traced(c):
        return _coupling_scale_host(c)
    return _coupling_scale_traced(c)


def _traced(c: LayeredCouplings) -> bool:
    return any(isinstance(w, jax.core.Tracer) for w in c.weights)


def _coupling_scale_traced(c: LayeredCouplings) -> jax.Array:
    m = functools.reduce(jnp.maximum, [jnp.max(jnp.abs(w), axis=(-2, -1)) for w in c.weights])
    # 2^e = 2 · (m with its mantissa bits cleared) — frexp's exponent by a bit mask, a few ops
    # instead of jnp.frexp/ldexp's ~90 (each traced program carries this; compile time counts).
    # Exponent field 0 (zero, subnormal) or non-finite m: s = 1; m ≥ 2^emax: s = inf, as ldexp.
    info = jnp.finfo(m.dtype)
    uint = {2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint64}[m.dtype.itemsize]
    exp_mask = ((1 << info.nexp) - 1) << info.nmant
    p = jax.lax.bitcast_convert_type(jax.lax.bitcast_convert_type(m, uint) & uint(exp_mask), m.dtype)
    return jnp.where(jnp.isfinite(m) & (p > 0), 2 * p, jnp.ones_like(m))


def _coupling_scale_host(c: LayeredCouplings) -> jax.Array:
    """:func:`coupling_scale` of concrete couplings in numpy (the same value: no per-shape
    compile of a few tiny programs on every host-side call). A subnormal maximum counts as 0,
    as XLA:CPU flushes it."""
    ws = [np.asarray(w) for w in c.weights]
    dt = ws[0].dtype
    m = np.max(np.stack([np.max(np.abs(w), axis=(-2, -1)) if w.size else
                         np.zeros(w.shape[:-2], dt) for w in ws]), axis=0)
    m = np.where(np.isfinite(m) & (m >= np.finfo(dt).tiny), m, 0).astype(dt)
    _, e = np.frexp(m)
    with np.errstate(over="ignore"):   # max|w| ≥ 2^(emax): s = inf, as jnp.ldexp gives
        return jnp.asarray(np.ldexp(np.ones_like(m), e).astype(dt))


def normalized(c: LayeredCouplings, betas):
    r"""``(c / s, s·betas)`` with s = :func:`coupling_scale` (a power of two).

    :math:`I - M(\beta; c) = I - M(s\beta; c/s)` exactly (eqs. 23–25), so any function of the
    TAP matrix can be evaluated on the normalized pair; trace-safe. ``c`` without batch axes
    (map over a checkpoint stack with ``jax.vmap`` / ``lax.map``).
    """
    c, s = scaled(c)
    return c, jnp.asarray(betas, c.dtype) * s


def scaled(c: LayeredCouplings) -> tuple[LayeredCouplings, jax.Array]:
    r"""``(c / s, s)`` with s = :func:`coupling_scale`: the couplings the TAP kernels work on.

    Concrete couplings go through one compiled program per set of block shapes, shared by every
    entry point (the recurrence's PD test, log det and inertia, dense and Lanczos λ_min, the
    critical-β search), so the scale's ops are not compiled again into each kernel's program
    (they were +45 % of the recurrence kernel's HLO and ~0.4 s of its compile time on a 5-layer
    test net). Traced couplings (inside ``jit``/``vmap``) are scaled inline. The values are the
    same either way: the device rule of :func:`coupling_scale`, and an exact division.
    """
    if _traced(c):
        return _scaled(c)
    return _scaled_program(c)


def _scaled(c: LayeredCouplings) -> tuple[LayeredCouplings, jax.Array]:
    s = _coupling_scale_traced(c)
    return LayeredCouplings(tuple(w / s for w in c.weights)), s


_scaled_program = jax.jit(_scaled)


def check_couplings(c, where: str) -> LayeredCouplings:
    """Host-side input rule of the engine's float-returning entry points.

    :func:`as_couplings` (lists accepted, half floats upcast), then refuses
    NaN/Inf blocks and couplings whose largest entry is subnormal in their dtype.

    Raises:
      TypeError: not couplings. CouplingsError (a ValueError): the message names the block.
    """
    c = as_couplings(c, where=where)
    if any(isinstance(w, jax.core.Tracer) for w in c.weights):
        return c
    host = LayeredCouplings(tuple(np.asarray(w) for w in c.weights))   # one device→host copy
    bad = nonfinite_blocks(host)
    if bad:
        raise CouplingsError(
            f"{where}: W^({bad[0]}) contains NaN or Inf entries (blocks {bad}); the couplings are "
            "corrupt — build them with tapjax.couplings(...) to validate, or load another checkpoint")
    tiny = float(jnp.finfo(c.dtype).tiny)
    # on the host: XLA:CPU flushes subnormals to zero, so a device max would read 0
    m = max(float(np.max(np.abs(w))) if w.size else 0.0 for w in host.weights)
    if 0.0 < m < tiny:
        raise CouplingsError(
            f"{where}: the largest coupling |w| = {m:.3g} is subnormal in {jnp.dtype(c.dtype).name} "
            f"(below {tiny:.3g}), so the solvers flush it to zero; cast the couplings to float64 "
            "(c.astype(jnp.float64) under jax.enable_x64)")
    return c


def random_couplings(key: jax.Array, sizes: Sequence[int], scale: float | Sequence[float] = 2.0,
                     dtype=jnp.float32) -> LayeredCouplings:
    r"""MSK ensemble draw: :math:`W^{(k)}_{ij} \sim \mathcal N(0, C_k/N_{k-1})` (section 2).

    Args:
      key: PRNG key.
      sizes: ``(N_0, ..., N_L)``.
      scale: ``C`` (one value) or ``(C_1, ..., C_L)``.
    """
    sizes = tuple(int(s) for s in sizes)
    cs = np.broadcast_to(np.asarray(scale, float), (len(sizes) - 1,))
    keys = jax.random.split(key, len(sizes) - 1)
    return LayeredCouplings(tuple(
        jax.random.normal(keys[k], (sizes[k], sizes[k + 1]), dtype) * np.sqrt(cs[k] / sizes[k])
        for k in range(len(sizes) - 1)))


def row_square_sums(c: LayeredCouplings) -> tuple[jax.Array, ...]:
    r"""Per-layer diagonal :math:`R^{(k)}_i = \sum_\ell J_{i\ell}^2` (eq. 25 without its :math:`-\beta`).

    Returns ``(r_0, ..., r_L)`` with ``r_k`` of shape ``(..., N_k)``:
    ``r_0 = Σ_j W1[i,j]²``, ``r_k = Σ_i Wk[i,j]² (column sums) + Σ_j W(k+1)[i,j]²``, ``r_L`` = column sums of ``W^(L)``.
    These are nonnegative; the paper's :math:`R^{(k)}` equals :math:`-\beta\,\mathrm{diag}(r_k)`.
    """
    sq = [w * w for w in c.weights]
    rows = [s.sum(-1) for s in sq]   # (.., N_{k-1})
    cols = [s.sum(-2) for s in sq]   # (.., N_k)
    out = [rows[0]]
    for k in range(1, c.num_layers):
        out.append(cols[k - 1] + rows[k])
    out.append(cols[-1])
    return tuple(out)


def bond_matvec(c: LayeredCouplings, x: Sequence[jax.Array]) -> tuple[jax.Array, ...]:
    """``J x`` per layer (eq. 4) without forming J: ``(Jx)_k = W^(k)ᵀ x_{k-1} + W^(k+1) x_{k+1}``.

    ``x``: per-layer vectors ``(N_k,)`` (or ``(N_k, m)`` blocks of vectors).
    """
    L = c.num_layers
    out = []
    for k in range(L + 1):
        acc = 0.0
        if k > 0:
            acc = acc + jnp.tensordot(c.weights[k - 1], x[k - 1], axes=((0,), (0,)))
        if k < L:
            acc = acc + c.weights[k] @ x[k + 1]
        out.append(acc)
    return tuple(out)


def split_layers(c: LayeredCouplings, v: jax.Array) -> tuple[jax.Array, ...]:
    """Flat ``(N, ...)`` → per-layer ``((N_0, ...), ..., (N_L, ...))`` (eq. 2 ordering)."""
    off = c.offsets
    return tuple(v[off[k]:off[k + 1]] for k in range(len(off) - 1))


def join_layers(parts: Sequence[jax.Array]) -> jax.Array:
    return jnp.concatenate(list(parts), axis=0)


def dense_bond_matrix(c: LayeredCouplings) -> jax.Array:
    """The dense symmetric ``(N, N)`` bond matrix J of eq. 4 (small N and tests only)."""
    n, off = c.num_spins, c.offsets
    J = jnp.zeros((n, n), c.dtype)
    for k, w in enumerate(c.weights):
        J = J.at[off[k]:off[k + 1], off[k + 1]:off[k + 2]].set(w)
        J = J.at[off[k + 1]:off[k + 2], off[k]:off[k + 1]].set(w.T)
    return J


def energy(c: LayeredCouplings, spins: Sequence[jax.Array]) -> jax.Array:
    """Eq. 1: ``H = -Σ_k σ^(k-1)ᵀ W^(k) σ^(k)`` for per-layer spins ``(..., N_k)``."""
    e = 0.0
    for k, w in enumerate(c.weights):
        e = e - jnp.einsum("...i,ij,...j->...", spins[k], w, spins[k + 1])
    return e


def block_runs(c: LayeredCouplings, first: int = 0) -> list[tuple[int, int]]:
    """Maximal runs ``[j0, j1)`` of consecutive blocks ``c.weights[j0:j1]`` (0-based, from
    ``first``) that one stacked array can hold: a run longer than one has equal *square* blocks;
    any other block (non-square, or a shape change) is a run of one."""
    runs, j, L = [], int(first), c.num_layers
    while j < L:
        shape = c.weights[j].shape
        j1 = j + 1
        if shape[0] == shape[1]:
            while j1 < L and c.weights[j1].shape == shape:
                j1 += 1
        runs.append((j, j1))
        j = j1
    return runs


def equal_block_runs(c: LayeredCouplings) -> list[tuple[int, int]]:
    """Steps k = 2..L of the block recurrence (eqs. 26–27) grouped into maximal runs
    ``[k0, k1)`` of equal square blocks, each of which one :func:`jax.lax.scan` can carry;
    unequal (e.g. first/last) blocks form runs of length one. Step k uses ``W^(k)`` =
    ``c.weights[k - 1]``, so these are the :func:`block_runs` from the second block, shifted by 1."""
    return [(j0 + 1, j1 + 1) for j0, j1 in block_runs(c, first=1)]


__all__ = ["LayeredCouplings", "all_finite", "as_couplings", "block_runs", "bond_matvec", "check_couplings",
           "coupling_scale", "equal_block_runs", "couplings", "dense_bond_matrix", "energy", "join_layers",
           "nonfinite_blocks", "normalized", "random_couplings", "row_square_sums", "scaled", "split_layers"]
