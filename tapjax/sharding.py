r"""Scale-out of the TAP analysis over all visible devices (``jax.sharding``).

The two embarrassingly parallel axes of the analysis are sharded over a 1-D device
:class:`~jax.sharding.Mesh` (axis name ``"batch"``) with :func:`jax.shard_map`:

* the **β grid** of :math:`\lambda_{\min}(I - M(\beta))` (eqs. 22–25) for one net
  (:func:`sharded_least_eigenvalue`): each device diagonalizes its slice of β values, the
  couplings are replicated;
* the **checkpoint axis** of a stack of couplings (:func:`sharded_critical_betas`,
  :func:`sharded_curves`): each device runs the recurrence bisection (eqs. 26–27) or the β grid
  on its own slice of checkpoints, so the weights are *not* replicated — a device holds only
  ``T / n_devices`` checkpoints.

Both axes are padded to a multiple of the device count (by repeating the last element) and the
padding is dropped from the result. Every device runs, element by element (``lax.map``), the
same per-element program as the single-device functions, so the results are **bitwise equal**
to a 1-device run (tested with ``--xla_force_host_platform_device_count=4``). On one device the
functions reduce to the plain ones.

Multi-host (GPU/TPU clusters): call :func:`jax.distributed.initialize` first on every process,
then call these functions with the *same* host arrays on every process. The mesh spans
``jax.devices()`` (all hosts); inputs are assembled with :func:`jax.make_array_from_callback`
(each process materializes only its own shards) and the results are gathered back to every host
with ``multihost_utils.process_allgather``. See ``docs/scaling.md``.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from tapjax import recurrence, tap
from tapjax.reference import beta_grid
from tapjax.spin_model import LayeredCouplings, couplings

AXIS = "batch"


def device_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """1-D mesh with axis ``"batch"`` over ``devices`` (default: all devices of all hosts)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (AXIS,))


def _pad_leading(x: np.ndarray, multiple: int) -> np.ndarray:
    """Pads axis 0 to a multiple of ``multiple`` by repeating the last entry."""
    n = x.shape[0]
    m = -(-n // multiple) * multiple
    if m == n:
        return x
    return np.concatenate([x, np.repeat(x[-1:], m - n, axis=0)], axis=0)


def _put(x: np.ndarray, mesh: Mesh, spec: P) -> jax.Array:
    """Global array with ``NamedSharding(mesh, spec)`` from a host array present on every process."""
    sharding = NamedSharding(mesh, spec)
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _to_host(x: jax.Array) -> np.ndarray:
    """Full value of a (possibly multi-host) global array, on every process."""
    if jax.process_count() == 1:
        return np.asarray(x)
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _host_weights(c: LayeredCouplings | Sequence) -> tuple[np.ndarray, ...]:
    """Host copies, in the dtype JAX will use (float64 → float32 unless x64 is enabled)."""
    ws = c.weights if isinstance(c, LayeredCouplings) else tuple(c)
    out = []
    for w in ws:
        w = np.asarray(w)
        if not np.issubdtype(w.dtype, np.floating):
            w = w.astype(np.float32)
        out.append(w.astype(jax.dtypes.canonicalize_dtype(w.dtype), copy=False))
    return tuple(out)


# --------------------------------------------------------------------------- β grid
@functools.partial(jax.jit, static_argnames=("mesh", "backend", "num_iter", "batch_size"))
def _lam_sharded(ws, betas, mesh, backend, num_iter, batch_size):
    def local(ws, b):
        c = LayeredCouplings(tuple(ws))
        if backend == "dense":
            return tap.least_eigenvalue_dense(c, b)
        return tap.least_eigenvalue_lanczos(c, b, num_iter=num_iter, batch_size=batch_size)[0]

    n_w = len(ws)
    return jax.shard_map(local, mesh=mesh, in_specs=((P(),) * n_w, P(AXIS)), out_specs=P(AXIS),
                         check_vma=False)(ws, betas)


def sharded_least_eigenvalue(c: LayeredCouplings, betas, backend: str = "dense", *,
                             mesh: Mesh | None = None, num_iter: int = 120,
                             batch_size: int = 32) -> np.ndarray:
    r"""λ_min(I − M(β)) (eqs. 22–25) on a β grid sharded across devices → ``(B,)`` numpy.

    Args:
      c: couplings of one net (no leading batch axis); replicated on every device.
      betas: ``(B,)`` inverse temperatures; padded to a multiple of the device count.
      backend: ``"dense"`` (eigvalsh per β) or ``"lanczos"`` (matrix-free).
      mesh: 1-D mesh (default :func:`device_mesh`).
      num_iter, batch_size: Lanczos settings (see :func:`tapjax.tap.least_eigenvalue_lanczos`);
        for bitwise agreement with a 1-device run keep ``batch_size`` ≤ B / n_devices.

    Returns:
      ``(B,)`` array equal to :func:`tapjax.tap.least_eigenvalue` on one device.
    """
    if backend not in ("dense", "lanczos"):
        raise ValueError(f"backend={backend!r}: use 'dense' or 'lanczos'")
    mesh = device_mesh() if mesh is None else mesh
    ws = _host_weights(c)
    b = np.atleast_1d(np.asarray(betas, ws[0].dtype))
    nb = b.shape[0]
    bp = _pad_leading(b, mesh.size)
    ws_g = tuple(_put(w, mesh, P()) for w in ws)
    out = _lam_sharded(ws_g, _put(bp, mesh, P(AXIS)), mesh, backend, num_iter,
                       min(batch_size, bp.shape[0] // mesh.size))
    return _to_host(out)[:nb]


# --------------------------------------------------------------------------- checkpoints
@functools.partial(jax.jit, static_argnames=("mesh", "num_scan", "max_iter", "method"))
def _crit_sharded(ws, thresholds, hints, beta_max, rtol, mesh, num_scan, max_iter, method):
    def local(ws, thr, hints):
        def one(args):
            w, t, h = args
            r = recurrence.critical_beta_search(LayeredCouplings(tuple(w)), t, beta_max, rtol, h,
                                                num_scan=num_scan, max_iter=max_iter, method=method)
            return jnp.where(r.crossed & (r.status == 0), r.beta, jnp.nan)  # MAX_ITER etc.: no value

        return jax.lax.map(one, (tuple(ws), thr, hints))

    n_w = len(ws)
    return jax.shard_map(local, mesh=mesh, in_specs=((P(AXIS),) * n_w, P(AXIS), P(AXIS)),
                         out_specs=P(AXIS), check_vma=False)(ws, thresholds, hints)


def sharded_critical_betas(stacked: LayeredCouplings | Sequence, threshold, beta_max: float, *,
                           rtol: float = 1e-4, hint: float | None = None, num_scan: int = 16,
                           max_iter: int = 60, method: str = "secant",
                           mesh: Mesh | None = None) -> np.ndarray:
    r"""β_c of every checkpoint of a stack, sharded over checkpoints (eqs. 26–27 + root search).

    Per checkpoint this is :func:`tapjax.recurrence.critical_beta_search`: the first β in
    ``(0, beta_max]`` where :math:`(1 - \lambda^*) I - M(\beta)` stops being positive definite,
    to relative precision ``rtol``.

    Args:
      stacked: couplings with a leading checkpoint axis, ``W^(k)`` of shape
        ``(T, N_{k-1}, N_k)`` (e.g. :attr:`tapjax.checkpoints.RunHistory.weights`, or several
        runs' stacks concatenated along axis 0 — the batch mode of ``docs/scaling.md``).
      threshold: λ* (scalar) or one per checkpoint ``(T,)`` (several runs, each with its own
        t = 0 reference).
      hint: extra scan point, a scalar or one per checkpoint ``(T,)`` (e.g. each run's β*);
        NaN or None = none.
      beta_max, rtol, num_scan, max_iter, method: as in
        :func:`~tapjax.recurrence.critical_beta_search`.
      mesh: 1-D mesh (default :func:`device_mesh`).

    Returns:
      ``(T,)`` numpy β_c; NaN where λ_min never reaches the threshold on ``(0, beta_max]`` or
      the search did not converge (any :class:`~tapjax.recurrence.SearchStatus` but ``OK``).
    """
    mesh = device_mesh() if mesh is None else mesh
    ws = _host_weights(stacked)
    if ws[0].ndim != 3:
        raise ValueError(f"stacked couplings need a leading checkpoint axis; W^(1) has shape {ws[0].shape}")
    dtype = ws[0].dtype
    T = ws[0].shape[0]
    thr = np.broadcast_to(np.asarray(threshold, dtype), (T,)).copy()
    ws_g = tuple(_put(_pad_leading(w, mesh.size), mesh, P(AXIS)) for w in ws)
    thr_g = _put(_pad_leading(thr, mesh.size), mesh, P(AXIS))
    # NaN = no hint (critical_beta_search then repeats beta_max, which costs no test)
    hints = np.broadcast_to(np.asarray(np.nan if hint is None else hint, dtype), (T,)).copy()
    hints_g = _put(_pad_leading(hints, mesh.size), mesh, P(AXIS))
    out = _crit_sharded(ws_g, thr_g, hints_g, jnp.asarray(beta_max, dtype), jnp.asarray(rtol, dtype),
                        mesh, num_scan, max_iter, method)
    return _to_host(out)[:T]


@functools.partial(jax.jit, static_argnames=("mesh", "backend", "num_iter", "batch_size"))
def _curves_sharded(ws, betas, mesh, backend, num_iter, batch_size):
    def local(ws, betas):
        def one(w):
            return tap.least_eigenvalue(LayeredCouplings(tuple(w)), betas, backend, num_iter=num_iter,
                                        batch_size=batch_size)

        return jax.lax.map(one, tuple(ws))

    n_w = len(ws)
    return jax.shard_map(local, mesh=mesh, in_specs=((P(AXIS),) * n_w, P()), out_specs=P(AXIS),
                         check_vma=False)(ws, betas)


def sharded_curves(stacked: LayeredCouplings | Sequence, betas, backend: str = "dense", *,
                   mesh: Mesh | None = None, num_iter: int = 120, batch_size: int = 32) -> np.ndarray:
    """λ_min(I − M(β)) curves of every checkpoint, sharded over checkpoints → ``(T, B)`` numpy."""
    if backend not in ("dense", "lanczos"):
        raise ValueError(f"backend={backend!r}: use 'dense' or 'lanczos'")
    mesh = device_mesh() if mesh is None else mesh
    ws = _host_weights(stacked)
    T = ws[0].shape[0]
    b = np.atleast_1d(np.asarray(betas, ws[0].dtype))
    ws_g = tuple(_put(_pad_leading(w, mesh.size), mesh, P(AXIS)) for w in ws)
    out = _curves_sharded(ws_g, _put(b, mesh, P()), mesh, backend, num_iter, batch_size)
    return _to_host(out)[:T]


# --------------------------------------------------------------------------- batch mode
def batch_critical_betas(runs: Sequence, *, beta_max: float | None = None, num_betas: int = 128,
                         backend: str = "lanczos", rtol: float = 1e-4, num_scan: int = 16,
                         lanczos_iter: int = 120, dtype=jnp.float32,
                         mesh: Mesh | None = None) -> list[dict]:
    r"""β_c of every checkpoint of many runs of one architecture, in one sharded program.

    For each run the paper's threshold λ* = min_β λ_min(I − M(β)) of its t = 0 checkpoint is
    taken on a ``num_betas`` grid (the t = 0 curves of all runs are one sharded
    :func:`sharded_curves` call; no golden-section polish, so λ* is the grid minimum). Then all
    checkpoints of all runs are concatenated along the checkpoint axis and searched together by
    :func:`sharded_critical_betas`, each with its own run's λ* and β* (as the scan hint). As in
    :func:`tapjax.analysis.analyze_run`, the t = 0 checkpoint gets the β of its own minimum.

    Args:
      runs: run directories or loaded :class:`tapjax.checkpoints.RunHistory` objects; all must
        have the same layer sizes.
      beta_max: top of the β range (default: the largest over the runs of twice the MSK β_c of
        eq. 15 with each layer's *measured* C_k = N_{k−1}·Var(W_k) at t = 0,
        :func:`tapjax.reference.beta_range`). A t = 0 minimum on the range's last grid point
        raises :class:`tapjax.reference.ReferenceRangeError`.

    Returns:
      One dict per run: ``t``, ``val_error``, ``beta_c``, ``T_c`` (numpy arrays), ``threshold``.
    """
    from tapjax import checkpoints as ckpt, reference  # pylint: disable=import-outside-toplevel
    hists = [ckpt.load_run(r) if isinstance(r, str) else r for r in runs]
    if not hists:
        raise ValueError("no runs given")
    c0s = [couplings(h.weights_at(0), check_finite=False) for h in hists]
    sizes = [c.sizes for c in c0s]
    if any(s != sizes[0] for s in sizes):
        raise ValueError(f"runs have different layer sizes {sorted(set(sizes))}; batch one architecture at a time")
    np_dtype = np.dtype(jnp.dtype(dtype).name)
    if beta_max is None:  # from the weights (measured C_k, eq. 15), never an assumed init scale
        beta_max = max(reference.beta_range(c)[0] for c in c0s)
    betas = beta_grid(beta_max, num_betas)
    L = len(hists[0].weights)
    first = tuple(np.stack([h.weights[k][0] for h in hists]).astype(np_dtype) for k in range(L))
    ref = sharded_curves(first, betas, backend, mesh=mesh, num_iter=lanczos_iter)
    lam_star, beta_star = ref.min(axis=1), betas[np.argmin(ref, axis=1)]
    for h, i in zip(hists, np.argmin(ref, axis=1)):
        if i == len(betas) - 1:
            raise reference.ReferenceRangeError(
                f"{h.paths[0] if h.paths else 'run'}: the t = 0 minimum of λ_min(I − M(β)) is on the "
                f"last grid point β = {betas[-1]:.6g}; pass a larger beta_max")
    counts = [len(h) for h in hists]
    allw = tuple(np.concatenate([h.weights[k] for h in hists]).astype(np_dtype) for k in range(L))
    thr = np.repeat(lam_star, counts)
    bc = sharded_critical_betas(allw, thr, beta_max, rtol=rtol, hint=np.repeat(beta_star, counts),
                                num_scan=num_scan, mesh=mesh)
    out, start = [], 0
    for h, n, ls, bs in zip(hists, counts, lam_star, beta_star):
        b = bc[start:start + n].copy()
        b[0] = bs  # t = 0 touches λ* at its own minimum (as in analyze_run)
        out.append({"t": h.t, "val_error": h.val_error, "beta_c": b, "T_c": 1.0 / b,
                    "threshold": float(ls)})
        start += n
    return out


# --------------------------------------------------------------------------- any per-checkpoint map
def process_rows(num_items: int, mesh: Mesh | None = None) -> np.ndarray:
    """Indices (into ``0..num_items-1``) of the padded rows this process holds on ``mesh``.

    The sharded axis is padded to a multiple of the device count by repeating the last item;
    device ``d`` of the mesh holds the contiguous block ``d·m … (d+1)·m − 1``. A process loads
    exactly the rows of its own (addressable) devices, in mesh order, so with
    ``jax.distributed`` no process ever reads another process's checkpoints.
    """
    mesh = device_mesh() if mesh is None else mesh
    if num_items < 1:
        raise ValueError("process_rows: need at least one item")
    m = -(-num_items // mesh.size)
    rows = []
    for d, dev in enumerate(mesh.devices.flat):
        if dev.process_index == jax.process_index():
            rows.extend(min(i, num_items - 1) for i in range(d * m, (d + 1) * m))
    return np.asarray(rows, int)


@functools.partial(jax.jit, static_argnames=("fn", "mesh", "n_w"))
def _map_sharded(fn, ws_and_args, mesh, n_w):
    def local(*xs):
        def one(x):
            return fn(LayeredCouplings(tuple(x[:n_w])), *x[n_w:])
        return jax.lax.map(one, tuple(xs))

    n = len(ws_and_args)
    return jax.shard_map(local, mesh=mesh, in_specs=(P(AXIS),) * n, out_specs=P(AXIS),
                         check_vma=False)(*ws_and_args)


def map_checkpoints(fn, stacked, *per_checkpoint, num_items: int | None = None,
                    mesh: Mesh | None = None, process_local: bool = False):
    r"""``fn(couplings_i, *args_i)`` for every checkpoint i, sharded over devices and processes.

    One compiled program for the whole series (its count does not grow with T): each device
    runs ``lax.map`` of ``fn`` over its slice, so every element is computed by the same program
    as on one device and the results are bitwise equal for any device or process count.

    Args:
      fn: a *pure, hashable* function (a module-level function or a ``functools.partial`` of
        one; it is a static jit argument) ``(LayeredCouplings, *scalars) -> pytree of arrays``.
      stacked: weight blocks ``(T, N_{k-1}, N_k)`` (all T checkpoints, identical on every
        process), or with ``process_local`` only the rows :func:`process_rows` names for this
        process (``(len(process_rows(T)), ...)``) — each process loads only its own files.
      per_checkpoint: arrays ``(T,)`` (or this process's rows) passed to ``fn`` element-wise.
      num_items: T; required with ``process_local``.

    Returns:
      The pytree of ``fn``'s outputs with a leading ``(T,)`` axis, as numpy, on every process.
    """
    mesh = device_mesh() if mesh is None else mesh
    ws = _host_weights(stacked)
    dtype = ws[0].dtype
    args = [np.asarray(a, dtype) if np.issubdtype(np.asarray(a).dtype, np.floating)
            else np.asarray(a) for a in per_checkpoint]
    if process_local:
        if num_items is None:
            raise ValueError("map_checkpoints: process_local needs num_items (the global T)")
        T = int(num_items)
        tp = -(-T // mesh.size) * mesh.size
        sharding = NamedSharding(mesh, P(AXIS))
        glob = lambda x: jax.make_array_from_process_local_data(sharding, x, (tp, *x.shape[1:]))
    else:
        T = ws[0].shape[0]
        glob = lambda x: _put(_pad_leading(x, mesh.size), mesh, P(AXIS))
    for a in args:
        if a.shape[:1] != ws[0].shape[:1]:
            raise ValueError(f"map_checkpoints: per-checkpoint argument of shape {a.shape} does not "
                             f"match the {ws[0].shape[0]} checkpoints of the weights")
    xs = tuple(glob(x) for x in (*ws, *args))
    out = _map_sharded(fn, xs, mesh, len(ws))
    return jax.tree_util.tree_map(lambda o: _to_host(o)[:T], out)


__all__ = ["AXIS", "batch_critical_betas", "device_mesh", "map_checkpoints", "process_rows",
           "sharded_critical_betas", "sharded_curves", "sharded_least_eigenvalue"]
