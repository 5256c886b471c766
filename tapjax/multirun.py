r"""Several training runs (seeds, learning rates, net kinds) as one vmapped program.

The four Table 1 configurations — {binarized, standard} × lr ∈ {1e-4, 1e-6} — share the
architecture 784-512-512-512-10, the batch size, the loss and the optimizer; they differ in a
scalar (the learning rate), the PRNG seed, and the *kind* (input preprocessing and hidden
activation). This module stacks the runs' parameters and optimizer states along a leading
"run" axis; the chunk program is :func:`jax.vmap` of the single-run chunk
:func:`tapjax.training.chunk_step` — the same scan over mini-batches and the same
SGD-momentum step as :func:`tapjax.training.make_chunk_fn` — and the host loop is
:func:`tapjax.training.run_chunks`, the one :func:`tapjax.training.train` runs:

* per-run **learning rate and momentum** are the traced entries of a
  :class:`~tapjax.training.RunHyper`: :func:`tapjax.training.make_optimizer` builds
  ``optax.sgd(lr, momentum)`` inside the vmapped step;
* per-run **shuffles**: each run's batch indices come from its own seed
  (:func:`tapjax.training.epoch_batches`), shape ``(R, steps, batch)``;
* the **kind switch** is the traced ``is_binarized`` of :func:`tapjax.models.forward` /
  :func:`tapjax.models.preprocess` (an elementwise select), so binarized and standard runs share
  one program and every matmul is batched over all runs; gradients flow only through the
  selected branch. Inputs are raw pixels, preprocessed per batch inside the step.

A run of :func:`train_many` is numerically the run :func:`tapjax.training.train` makes from the
same :class:`~tapjax.training.TrainConfig` (same init, shuffles and updates, up to float rounding
of batched vs unbatched matmuls), and it writes the same checkpoint files, so
:func:`tapjax.analysis.analyze_run` and a later resumed ``train`` accept its run directories.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tapjax import checkpoints as ckpt
from tapjax.data import Dataset
from tapjax.losses import LossName
from tapjax.models import error_fraction, init_params, num_wrong, preprocess
from tapjax.models import forward as _model_forward
from tapjax.training import (ChunkProgram, RunHyper, RunLog, TrainConfig, TrainResult,
                             checkpoint_steps, chunk_step, epoch_batches, locked_workdirs,
                             make_optimizer, run_chunks, scan_compiler_options, steps_per_epoch)

# Fields that must agree across runs trained together (lr, momentum, seed, kind may differ).
SHARED_FIELDS = ("batch_size", "epochs", "margin", "schedule", "first_epoch_levels", "loss")
SHARED_MODEL_FIELDS = ("input_dim", "widths", "init_scale", "use_bias")


def stack_trees(trees: Sequence[Any]) -> Any:
    """Stacks identically structured pytrees along a new leading axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def unstack_tree(tree: Any, i: int) -> Any:
    """The ``i``-th entry of a stacked pytree."""
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def check_compatible(cfgs: Sequence[TrainConfig]) -> None:
    """Raises ValueError unless the configs can share one vmapped program."""
    if not cfgs:
        raise ValueError("no run configurations given")
    pen = [i for i, c in enumerate(cfgs) if getattr(c, "tc_penalty", None) is not None]
    if pen:
        raise ValueError(f"run(s) {pen} have a tc_penalty, which the vmapped trainer does not "
                         "implement; train them one by one with tapjax.training.train")
    c0 = cfgs[0]
    for i, c in enumerate(cfgs[1:], start=1):
        bad = [f for f in SHARED_FIELDS if getattr(c, f) != getattr(c0, f)]
        bad += [f"model.{f}" for f in SHARED_MODEL_FIELDS if getattr(c.model, f) != getattr(c0.model, f)]
        if bad:
            raise ValueError(f"run {i} differs from run 0 in {bad}; only lr, momentum, seed and "
                             "model.kind may differ between runs trained together")


def forward(params: dict[str, Any], x_uint8: jax.Array, is_binarized) -> jax.Array:
    r"""Scores ``(batch, N_L)`` of raw pixels ``(batch, N_0)`` with a (possibly traced) kind switch.

    ``tapjax.models.forward(params, preprocess(x_uint8, is_binarized), is_binarized)``: the
    one MLP forward with the kind as a bool (binarized input + ``ste_step`` hidden activations,
    else ``x/255`` + ReLU). Kept for callers of the old name.
    """
    return _model_forward(params, preprocess(x_uint8, is_binarized), is_binarized)


def run_chunk(margin: float, loss: LossName = "weston_watkins") -> Callable:
    """Unjitted chunk of one run on raw pixels: ``(params, opt_state, hyper, x_uint8, y, idx) -> (params, opt_state, losses)``.

    :func:`tapjax.training.chunk_step` with ``raw_inputs=True``; ``hyper`` a
    :class:`~tapjax.training.RunHyper` of scalars (``kind``: bool ``is_binarized``), ``idx``
    ``(steps, batch)``. :func:`make_multi_chunk_fn` vmaps it over runs.
    """
    return chunk_step(margin, loss, raw_inputs=True)


def make_multi_chunk_fn(margin: float, loss: LossName = "weston_watkins") -> Callable:
    """Jitted vmapped chunk of SGD-momentum steps for R runs: ``jax.vmap`` of :func:`run_chunk`.

    Returns ``chunk(params, opt_state, hyper, x_uint8, y, idx) -> (params, opt_state, losses)``
    with ``params``/``opt_state`` stacked over runs (leading axis R), ``hyper`` a
    :class:`~tapjax.training.RunHyper` of ``(R,)`` arrays (``lr``, ``momentum``, bool ``kind``
    = is_binarized), raw pixels ``x_uint8`` ``(n, N_0)`` and labels ``y`` ``(n,)`` shared by
    all runs, ``idx`` int32 ``(R, steps, batch)``, and ``losses`` ``(R, steps)``. Inputs
    ``params`` and ``opt_state`` are donated.

    R = 1 runs the one-run step itself on the run's slice (the leading axis taken off and put
    back): a batch axis of size 1 changes XLA:CPU's matmul rounding on some CPUs (seen on AMD
    EPYC: 9e-10 in a first-layer kernel after 10 steps, none on Intel Xeon), and so
    ``train_many([cfg])`` writes what ``train(cfg)`` writes, bit for bit, on every CPU.
    """
    one = run_chunk(margin, loss)
    batched = jax.vmap(one, in_axes=(0, 0, 0, None, None, 0))

    def chunk(params, opt_state, hyper, x_uint8, y, idx):
        if idx.shape[0] != 1:
            return batched(params, opt_state, hyper, x_uint8, y, idx)
        take = lambda t: jax.tree_util.tree_map(lambda a: a[0], t)
        out = one(take(params), take(opt_state), take(hyper), x_uint8, y, idx[0])
        return jax.tree_util.tree_map(lambda a: a[None], out)

    return jax.jit(chunk, donate_argnums=(0, 1), compiler_options=scan_compiler_options())


@jax.jit
def num_wrong_runs(params, hyper: RunHyper, x, y) -> jax.Array:
    """``(R,)`` misclassified counts of every run on raw pixels ``x``: vmapped
    :func:`tapjax.models.num_wrong`."""
    return jax.vmap(lambda p, k: num_wrong(p, preprocess(x, k), y, k))(params, hyper.kind)


def init_runs(cfgs: Sequence[TrainConfig]):
    """Stacked ``(params, opt_state, hyper, shuffle_keys)`` of R runs, each as ``train`` starts it.

    ``hyper``: :class:`~tapjax.training.RunHyper` of ``(R,)`` arrays (float32 ``lr``,
    ``momentum``; bool ``kind`` = is_binarized).
    """
    check_compatible(cfgs)
    params, opts, shuffle = [], [], []
    for cfg in cfgs:
        key_init, key_shuffle = jax.random.split(jax.random.PRNGKey(cfg.seed))
        p = init_params(cfg.model, key_init)
        params.append(p)
        opts.append(make_optimizer(cfg).init(p))
        shuffle.append(key_shuffle)
    hyper = RunHyper(lr=jnp.asarray([c.lr for c in cfgs], jnp.float32),
                     momentum=jnp.asarray([c.momentum for c in cfgs], jnp.float32),
                     kind=jnp.asarray([c.model.kind == "binarized" for c in cfgs]))
    return stack_trees(params), stack_trees(opts), hyper, shuffle


def run_batches(shuffle_keys, epoch: int, n: int, batch_size: int) -> jax.Array:
    """``(R, n // batch_size, batch_size)``: each run's own shuffle of epoch ``epoch``."""
    return jnp.stack([epoch_batches(k, epoch, n, batch_size) for k in shuffle_keys])


@dataclasses.dataclass
class MultiTrainResult:
    results: list[TrainResult]
    seconds: float
    steps: int


def train_many(cfgs: Sequence[TrainConfig], data: Dataset, workdirs: Sequence[str] | None = None,
               *, progress: bool = False) -> MultiTrainResult:
    """Trains R runs together, one vmapped program, writing each run's checkpoints.

    Args:
      cfgs: R configurations; they may differ only in ``lr``, ``momentum``, ``seed`` and
        ``model.kind`` (:func:`check_compatible`).
      data: the dataset (raw uint8 pixels; preprocessing happens per batch inside the step).
      workdirs: one run directory per config (same layout as :func:`tapjax.training.train`:
        ``config.json``, ``history.json``, ``state.npz``, ``checkpoints/``), or None to keep
        everything in memory. Existing directories are not resumed: use fresh ones. Each is
        locked (:class:`tapjax.locking.WorkdirLock`) for the whole call, so no other writer
        can mix into it.
      progress: print one line per epoch.

    Returns:
      :class:`MultiTrainResult` with one :class:`~tapjax.training.TrainResult` per run.
    """
    cfgs = list(cfgs)
    check_compatible(cfgs)
    if workdirs is not None and len(workdirs) != len(cfgs):
        raise ValueError(f"{len(workdirs)} workdirs for {len(cfgs)} runs")
    if workdirs is not None:
        real = [os.path.realpath(w) for w in workdirs]
        if len(set(real)) != len(real):
            raise ValueError(f"workdirs {list(workdirs)}: each run needs its own directory")
    steps_per_epoch(cfgs[0], data)
    with locked_workdirs(workdirs or ()):
        return _train_many_locked(cfgs, data, workdirs, progress=progress)


def _train_many_locked(cfgs, data, workdirs, *, progress) -> MultiTrainResult:
    c0 = cfgs[0]
    n = data.x_train.shape[0]
    spe = steps_per_epoch(c0, data)
    params, opt_state, hyper, shuffle = init_runs(cfgs)
    x_tr, y_tr = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    x_va, y_va = jnp.asarray(data.x_val), jnp.asarray(data.y_val)
    chunk = make_multi_chunk_fn(c0.margin, c0.loss)
    R = len(cfgs)
    if workdirs is not None:
        for cfg, wd in zip(cfgs, workdirs):
            if os.path.exists(os.path.join(wd, "state.npz")) or ckpt.list_checkpoints(wd):
                raise ValueError(f"{wd} already holds a run; train_many starts fresh runs only "
                                 "(resume a single run with tapjax.training.train)")
            ckpt.atomic_write_json(os.path.join(wd, "config.json"), cfg.to_dict())
    logs = [RunLog(cfg, None if workdirs is None else workdirs[r],
                   {"config": cfg.to_dict(), "dataset": data.name, "steps_per_epoch": spe})
            for r, cfg in enumerate(cfgs)]

    def step(params, opt_state, idx, a, b, lo, hi):
        params, opt_state, losses = chunk(params, opt_state, hyper, x_tr, y_tr, idx[:, a:b])
        return params, opt_state, np.asarray(losses), None

    def runs(params, opt_state):
        host, host_opt = jax.device_get(params), jax.device_get(opt_state)
        return [(unstack_tree(host, r), unstack_tree(host_opt, r)) for r in range(R)]

    def report(hi, losses, val_err):
        if progress and hi % spe == 0:
            print(f"epoch {hi // spe}: val_error {np.round(val_err, 4).tolist()}", flush=True)

    program = ChunkProgram(
        batches=lambda epoch: run_batches(shuffle, epoch, n, c0.batch_size), step=step,
        val_errors=lambda p: error_fraction(
            lambda q, xb, yb: num_wrong_runs(q, hyper, xb, yb), p, x_va, y_va),
        runs=runs)
    total = c0.epochs * spe
    t0 = time.monotonic()
    params, _ = run_chunks(program, logs, params, opt_state, 0, spe=spe, total=total,
                           ck_steps=checkpoint_steps(c0, spe), report=report)
    seconds = time.monotonic() - t0
    host = jax.device_get(params)
    results = [TrainResult(params=unstack_tree(host, r), history=logs[r].history,
                           workdir=workdirs[r] if workdirs else "", seconds=seconds)
               for r in range(R)]
    return MultiTrainResult(results=results, seconds=seconds, steps=total)


def table1_configs(epochs: int, *, seeds: Sequence[int] = (0,), lrs: Sequence[float] = (1e-4, 1e-6),
                   **kw) -> dict[str, list[TrainConfig]]:
    """Table 1's configurations, ``{kind: [TrainConfig per (seed, lr)]}`` (kinds may be merged)."""
    from tapjax.models import ModelConfig  # pylint: disable=import-outside-toplevel
    return {kind: [TrainConfig(model=ModelConfig(kind=kind), lr=lr, seed=s, epochs=epochs, **kw)
                   for s in seeds for lr in lrs] for kind in ("binarized", "standard")}


__all__ = ["MultiTrainResult", "check_compatible", "forward", "init_runs", "make_multi_chunk_fn",
           "num_wrong_runs", "run_batches", "run_chunk", "stack_trees", "table1_configs",
           "train_many", "unstack_tree"]
