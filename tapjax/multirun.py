r"""Several training runs (seeds, learning rates, net kinds) as one vmapped program.

The four Table 1 configurations — {binarized, standard} × lr ∈ {1e-4, 1e-6} — share the
architecture 784-512-512-512-10, the batch size, the loss and the optimizer; they differ in a
scalar (the learning rate), the PRNG seed, and the *kind* (input preprocessing and hidden
activation). This module stacks the runs' parameters and optimizer states along a leading
"run" axis and :func:`jax.vmap`-s one SGD-momentum step over it, inside the same
:func:`jax.lax.scan` over mini-batches as :func:`tapjax.training.make_chunk_fn`:

* per-run **learning rate and momentum** are traced arrays: ``optax.sgd(lr, momentum)`` is
  built inside the vmapped step, so the update is exactly :func:`tapjax.training.make_optimizer`'s;
* per-run **shuffles**: each run's batch indices come from its own seed
  (:func:`tapjax.training.epoch_batches`), shape ``(R, steps, batch)``;
* the **kind switch** is an elementwise select (``where(is_binarized, ste_step(h), relu(h))``
  and the same for the input preprocessing), so binarized and standard runs share one program
  and every matmul is batched over all runs; gradients flow only through the selected branch.

A run of :func:`train_many` is numerically the run :func:`tapjax.training.train` makes from the
same :class:`~tapjax.training.TrainConfig` (same init, shuffles and updates, up to float rounding
of batched vs unbatched matmuls), and it writes the same checkpoint files, so
:func:`tapjax.analysis.analyze_run` and a later resumed ``train`` accept its run directories.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tapjax import checkpoints as ckpt
from tapjax.binarize import ste_step
from tapjax.data import Dataset
from tapjax.locking import WorkdirLock
from tapjax.losses import mean_loss
from tapjax.models import init_params, preprocess
from tapjax.training import (TrainConfig, TrainResult, checkpoint_steps, clean_stale_files,
                             config_fingerprint, epoch_batches, scan_compiler_options, sgd_scan,
                             state_arrays, steps_per_epoch)

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
    r"""The MLP of :class:`tapjax.models.MLP` with a traced kind switch.

    Args:
      params: one run's ``{"layer1": {"kernel", ["bias"]}, ...}``.
      x_uint8: raw pixels ``(batch, N_0)``; preprocessed here as :func:`tapjax.models.preprocess`.
      is_binarized: bool scalar (may be traced): binarized input + ``ste_step`` hidden
        activations, else ``x/255`` + ReLU.

    Returns:
      Scores ``(batch, N_L)``.
    """
    x = jnp.where(is_binarized, preprocess(x_uint8, "binarized"), preprocess(x_uint8, "standard"))
    names = ckpt.layer_order(list(params))
    for k, name in enumerate(names):
        x = x @ params[name]["kernel"]
        if "bias" in params[name]:
            x = x + params[name]["bias"]
        if k < len(names) - 1:
            x = jnp.where(is_binarized, ste_step(x), jax.nn.relu(x))
    return x


def _optimizer(lr, momentum) -> optax.GradientTransformation:
    """``tapjax.training.make_optimizer`` with (possibly traced) per-run hyperparameters."""
    return optax.sgd(lr, momentum=momentum)


def run_chunk(margin: float, loss: str = "weston_watkins") -> Callable:
    """Unjitted chunk of one run: ``(params, opt_state, hyper, x_uint8, y, idx) -> (params, opt_state, losses)``.

    ``loss`` names the per-sample loss (:data:`tapjax.losses.LOSSES`), ``margin`` its margin.

    ``hyper`` holds scalars ``lr``, ``momentum``, ``is_binarized``; ``idx`` is ``(steps, batch)``.
    The scan body is :func:`tapjax.training.make_chunk_fn`'s step with the kind switch of
    :func:`forward`. :func:`make_multi_chunk_fn` vmaps it over runs.
    """

    def one_run(params, opt_state, hyper, x, y, idx):
        tx = _optimizer(hyper["lr"], hyper["momentum"])

        def loss_fn(p, xb, yb):
            return mean_loss(forward(p, xb, hyper["is_binarized"]), yb, margin, loss)

        return sgd_scan(loss_fn, tx, params, opt_state, x, y, idx)

    return one_run


def make_multi_chunk_fn(margin: float, loss: str = "weston_watkins") -> Callable:
    """Jitted vmapped chunk of SGD-momentum steps for R runs.

    Returns ``chunk(params, opt_state, hyper, x_uint8, y, idx) -> (params, opt_state, losses)``
    with ``params``/``opt_state`` stacked over runs (leading axis R), ``hyper`` a dict of
    ``(R,)`` arrays ``lr``, ``momentum``, ``is_binarized``, raw pixels ``x_uint8`` ``(n, N_0)``
    and labels ``y`` ``(n,)`` shared by all runs, ``idx`` int32 ``(R, steps, batch)``, and
    ``losses`` ``(R, steps)``. Inputs ``params`` and ``opt_state`` are donated.
    """
    return jax.jit(jax.vmap(run_chunk(margin, loss), in_axes=(0, 0, 0, None, None, 0)), donate_argnums=(0, 1),
                   compiler_options=scan_compiler_options())


@jax.jit
def _num_wrong(params, hyper, x, y):
    """``(R,)`` misclassified counts of every run on raw pixels ``x``."""
    def one(p, is_bin):
        return jnp.sum(jnp.argmax(forward(p, x, is_bin), -1) != y)
    return jax.vmap(one)(params, hyper["is_binarized"])


def _val_errors(params, hyper, x, y, batch: int = 10000) -> np.ndarray:
    total = 0
    for i in range(0, x.shape[0], batch):
        total = total + np.asarray(_num_wrong(params, hyper, x[i:i + batch], y[i:i + batch]))
    return np.asarray(total, float) / max(1, x.shape[0])


def init_runs(cfgs: Sequence[TrainConfig]):
    """Stacked ``(params, opt_state, hyper, shuffle_keys)`` of R runs, each as ``train`` starts it."""
    check_compatible(cfgs)
    params, opts, shuffle = [], [], []
    for cfg in cfgs:
        key_init, key_shuffle = jax.random.split(jax.random.PRNGKey(cfg.seed))
        p = init_params(cfg.model, key_init)
        params.append(p)
        opts.append(_optimizer(cfg.lr, cfg.momentum).init(p))
        shuffle.append(key_shuffle)
    hyper = {"lr": jnp.asarray([c.lr for c in cfgs], jnp.float32),
             "momentum": jnp.asarray([c.momentum for c in cfgs], jnp.float32),
             "is_binarized": jnp.asarray([c.model.kind == "binarized" for c in cfgs])}
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
    with contextlib.ExitStack() as stack:
        for wd in workdirs or ():
            lock = stack.enter_context(WorkdirLock(wd))
            clean_stale_files(wd, lock.acquired_at)
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
    histories: list[list[dict]] = [[] for _ in range(R)]

    def save(step, losses_mean, val_err, write_ckpt, write_state):
        if workdirs is None:
            return
        host = jax.device_get(params)
        host_opt = jax.device_get(opt_state)
        for r, (cfg, wd) in enumerate(zip(cfgs, workdirs)):
            p = unstack_tree(host, r)
            meta = {"config": cfg.to_dict(), "dataset": data.name, "steps_per_epoch": spe,
                    "step": step, "t": step / spe, "epoch": step // spe,
                    "train_loss": None if losses_mean is None else float(losses_mean[r]),
                    "val_error": float(val_err[r])}
            if write_ckpt:
                ckpt.save_checkpoint(wd, p, meta)
            if write_state:
                ckpt.atomic_write_json(os.path.join(wd, "history.json"), histories[r])
                ckpt.atomic_write_npz(os.path.join(wd, "state.npz"), state_arrays(
                    p, unstack_tree(host_opt, r), step, len(histories[r]), history=histories[r],
                    loss_sum=float(epoch_loss[r]), loss_steps=step % spe,
                    fingerprint=config_fingerprint(cfg)))

    if workdirs is not None:
        for cfg, wd in zip(cfgs, workdirs):
            if os.path.exists(os.path.join(wd, "state.npz")) or ckpt.list_checkpoints(wd):
                raise ValueError(f"{wd} already holds a run; train_many starts fresh runs only "
                                 "(resume a single run with tapjax.training.train)")
            ckpt.atomic_write_json(os.path.join(wd, "config.json"), cfg.to_dict())
    total = c0.epochs * spe
    ck_steps = checkpoint_steps(c0, spe)
    bounds = sorted(set(ck_steps) | set(range(0, total + 1, spe)))
    save(0, None, _val_errors(params, hyper, x_va, y_va), True, False)
    t0 = time.monotonic()
    epoch_loss = np.zeros(R)
    perm_epoch, idx = -1, None
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        epoch = lo // spe
        if epoch != perm_epoch:
            idx = run_batches(shuffle, epoch, n, c0.batch_size)
            perm_epoch = epoch
        params, opt_state, losses = chunk(params, opt_state, hyper, x_tr, y_tr,
                                          idx[:, lo - epoch * spe: hi - epoch * spe])
        losses = np.asarray(losses)
        if not np.all(np.isfinite(losses)):
            bad = [cfgs[r].lr for r in range(R) if not np.all(np.isfinite(losses[r]))]
            raise FloatingPointError(f"training diverged (non-finite loss) between steps {lo} and "
                                     f"{hi} for the run(s) with lr={bad}")
        epoch_loss += losses.sum(1)
        at_epoch, at_ck = hi % spe == 0, hi in ck_steps
        if at_epoch or at_ck:
            val_err = _val_errors(params, hyper, x_va, y_va)
            if at_epoch:
                for r in range(R):
                    histories[r].append({"epoch": hi // spe, "step": hi, "t": hi / spe,
                                         "val_error": float(val_err[r]),
                                         "train_loss": float(epoch_loss[r] / spe)})
                epoch_loss[:] = 0
                if progress:
                    print(f"epoch {hi // spe}: val_error {np.round(val_err, 4).tolist()}", flush=True)
            save(hi, losses.mean(1), val_err, at_ck, True)
    seconds = time.monotonic() - t0
    host = jax.device_get(params)
    results = [TrainResult(params=unstack_tree(host, r), history=histories[r],
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
           "run_batches", "run_chunk", "stack_trees", "table1_configs", "train_many", "unstack_tree"]
