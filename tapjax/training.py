r"""Training engine: SGD with momentum on the L2 multi-class hinge loss (Table 1).

One chunk of optimizer steps (an epoch, or the stretch between two checkpoints) is a single
jitted :func:`jax.lax.scan` over mini-batch indices; the data live on the device and batches
are gathered inside the scan, so no Python runs per step. Each epoch's shuffle is
``jax.random.permutation(fold_in(shuffle_key, epoch), n)`` — a function of (seed, epoch) only —
which is what makes a resumed run bit-identical to an uninterrupted one.

Time ``t`` is measured in epochs: ``t = step / steps_per_epoch`` (fractional inside an epoch).

One engine for one run and for R vmapped runs (:mod:`tapjax.multirun`):

* step: :func:`chunk_step` (scan of SGD-momentum steps, :func:`make_optimizer`, loss of
  :func:`tapjax.models.forward`) — :func:`make_chunk_fn` jits it for one run with its
  :class:`RunHyper` as constants, ``multirun.make_multi_chunk_fn`` is ``jit(vmap(...))`` of it;
* errors: :func:`tapjax.models.num_wrong` summed by :func:`tapjax.models.error_fraction`;
* host loop: :func:`run_chunks` (chunks between checkpoints, history rows, checkpoint /
  ``state.npz`` / ``history.json`` writing) over a :class:`ChunkProgram` and one
  :class:`RunLog` per run; :func:`locked_workdirs` holds the runs' locks. :func:`train` adds
  resume and the tc_penalty term (one run only).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import sys
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tapjax.pytrees import check_fields
from tapjax import checkpoints as ckpt
from tapjax.data import Dataset
from tapjax.locking import WorkdirLock
from tapjax.losses import DEFAULT_MARGIN, LOSSES, LossName, mean_loss
from tapjax.models import (Kind, ModelConfig, config_from_dict, error_fraction, forward,
                           init_params, num_wrong, preprocess, weights_from_params)
from tapjax.progress import ProgressBar
from tapjax.tc_regularizer import (PenaltyReference, TcPenalty, penalty_gradient_scale,
                                   finite_or_zero, penalty_reference, penalty_value_and_grad)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run (stored in every checkpoint).

    Attributes:
      model: architecture.
      lr: SGD learning rate (paper: 1e-4 and 1e-6).
      momentum: heavy-ball momentum (0.9).
      batch_size: 32. The last partial batch of an epoch is dropped.
      epochs: number of epochs.
      seed: PRNG seed (init and shuffling).
      margin: hinge margin (10).
      schedule: checkpoint times after the first epoch: ``"every"`` (each epoch) or
        ``"log:K"`` (K log-spaced epochs per decade, always including the last).
      first_epoch_levels: checkpoints at t = 2^-j, j = levels..1, inside the first epoch
        (6 → 1/64, 1/32, ..., 1/2), plus t = 0 and t = 1.
      dataset: name of the data the run trains on (informational).
      loss: ``"weston_watkins"`` (:func:`tapjax.losses.multiclass_squared_hinge`, PyTorch's
        ``MultiMarginLoss(p=2)``) or ``"one_vs_rest"`` (Tang 2013's L2-SVM,
        :func:`tapjax.losses.one_vs_rest_squared_hinge`); both use ``margin``. Configs
        written before this field existed load as ``"weston_watkins"``.
      tc_penalty: optional melting-temperature loss term α·f (:class:`tapjax.tc_regularizer.TcPenalty`;
        f = T_c or λ_min(I − M(β₀)), λ* from this run's t = 0 net, gradient every ``every_k``
        steps applied ×k). ``None`` (default): plain training, bit-identical to before the
        field existed; ``None`` is left out of :meth:`to_dict`, so old configs, fingerprints
        and ``config.json`` files are unchanged.
    """

    model: ModelConfig = ModelConfig()
    lr: float = 1e-4
    momentum: float = 0.9
    batch_size: int = 32
    epochs: int = 1
    seed: int = 0
    margin: float = DEFAULT_MARGIN
    schedule: str = "log:16"
    first_epoch_levels: int = 6
    dataset: str = "embedded"
    loss: LossName = "weston_watkins"
    tc_penalty: TcPenalty | None = None

    def __post_init__(self):
        if isinstance(self.tc_penalty, dict):
            object.__setattr__(self, "tc_penalty", TcPenalty.from_dict(self.tc_penalty))
        if self.tc_penalty is not None and not isinstance(self.tc_penalty, TcPenalty):
            raise ValueError(f"tc_penalty={self.tc_penalty!r}: must be a TcPenalty or None")
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r}: must be one of {LOSSES}")
        if self.lr <= 0 or not np.isfinite(self.lr):
            raise ValueError(f"lr={self.lr}: must be a positive finite number")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: must be >= 1")
        if self.epochs < 0:
            raise ValueError(f"epochs={self.epochs}: must be >= 0")
        _parse_schedule(self.schedule)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.tc_penalty is None:   # keeps old configs' dicts and fingerprints unchanged
            d.pop("tc_penalty")
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; fields missing in old configs take their defaults."""
        check_fields(TrainConfig, d, "TrainConfig")
        if "model" not in d:
            return TrainConfig(**d)
        return TrainConfig(**{**d, "model": config_from_dict(d["model"])})


def config_fingerprint(cfg: TrainConfig) -> str:
    """Hex SHA-256 (16 digits) of everything that determines the run's trajectory.

    ``epochs`` is left out (a run may be extended); stored in ``state.npz`` so that a state of
    another run (same shapes, other seed/lr/...) is never resumed.
    """
    d = cfg.to_dict()
    d.pop("epochs")
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _parse_schedule(schedule: str) -> int:
    if schedule == "every":
        return 0
    if schedule.startswith("log:"):
        try:
            k = int(schedule[4:])
        except ValueError:
            k = 0
        if k >= 1:
            return k
    raise ValueError(f"schedule={schedule!r}: use 'every' or 'log:K' with K >= 1 per decade")


def checkpoint_steps(cfg: TrainConfig, steps_per_epoch: int) -> list[int]:
    """Optimizer steps at which checkpoints are written (sorted, unique, includes 0)."""
    steps = {0}
    for j in range(cfg.first_epoch_levels, 0, -1):
        steps.add(max(1, int(round(steps_per_epoch * 2.0 ** -j))))
    if cfg.epochs >= 1:
        k = _parse_schedule(cfg.schedule)
        if k == 0:
            epochs = range(1, cfg.epochs + 1)
        else:
            n = int(np.ceil(k * np.log10(max(cfg.epochs, 1)))) + 1
            epochs = np.unique(np.round(np.logspace(0, np.log10(cfg.epochs), max(n, 1))).astype(int))
        steps.update(int(e) * steps_per_epoch for e in epochs)
        steps.add(cfg.epochs * steps_per_epoch)
    total = cfg.epochs * steps_per_epoch
    return sorted(s for s in steps if s <= total)


class RunHyper(NamedTuple):
    """The per-run scalars of the SGD step (everything else a chunk needs is shared).

    One run (:func:`make_chunk_fn`): Python constants, ``kind`` a name of
    :data:`tapjax.models.KINDS`. R vmapped runs (:mod:`tapjax.multirun`): ``(R,)`` arrays,
    ``kind`` the bool ``is_binarized``.
    """

    lr: float | jax.Array
    momentum: float | jax.Array
    kind: Kind | jax.Array


def run_hyper(cfg: TrainConfig) -> RunHyper:
    """The :class:`RunHyper` of one run, as constants."""
    return RunHyper(cfg.lr, cfg.momentum, cfg.model.kind)


def make_optimizer(cfg: TrainConfig | RunHyper) -> optax.GradientTransformation:
    """SGD with heavy-ball momentum, ``optax.sgd(lr, momentum)``: the one optimizer factory.

    ``cfg``: anything with ``lr`` and ``momentum`` — a :class:`TrainConfig`, or a
    :class:`RunHyper` whose entries may be traced (one per vmapped run).
    """
    return optax.sgd(cfg.lr, momentum=cfg.momentum)


def scan_compiler_options() -> dict[str, Any] | None:
    """XLA options for the training scans on the default backend.

    On XLA:CPU, copy insertion without region analysis copies every weight matrix that the
    backward pass reads (``W.T`` for ``dX``) at the top of each scan iteration before the
    in-place SGD update; region analysis proves the reads come first and drops those copies
    (~10% of an MNIST epoch on a 2-core CPU, ``benchmarks/train_throughput.py``). The option
    changes buffer assignment only, never the arithmetic. ``None`` off CPU.
    """
    if jax.default_backend() == "cpu":
        return {"xla_cpu_copy_insertion_use_region_analysis": True}
    return None


def sgd_scan(loss_fn: Callable, tx: optax.GradientTransformation, params, opt_state, x, y, idx):
    """``lax.scan`` of SGD steps: ``(params, opt_state, losses)`` after ``len(idx)`` steps.

    ``loss_fn(params, xb, yb) -> scalar``; ``x`` ``(n, ...)`` and ``y`` ``(n,)`` are closed over
    (scan constants, not carried state) and gathered per step by ``idx`` ``(n_steps, batch)``.
    Shared by :func:`make_chunk_fn` and the vmapped runs of :mod:`tapjax.multirun`.
    """

    def body(carry, ib):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, x[ib], y[ib])
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), idx)
    return params, opt_state, losses


def initial_params(cfg: TrainConfig):
    """The run's t = 0 parameters (a function of ``cfg.model`` and ``cfg.seed`` only)."""
    return init_params(cfg.model, jax.random.split(jax.random.PRNGKey(cfg.seed))[0])


def run_penalty_reference(cfg: TrainConfig) -> PenaltyReference:
    """The fixed λ*, β*, β_max of ``cfg.tc_penalty`` from this run's t = 0 net."""
    if cfg.tc_penalty is None:
        raise ValueError("run_penalty_reference: cfg.tc_penalty is None")
    return _penalty_reference(cfg.tc_penalty, initial_params(cfg))


def _penalty_reference(penalty: TcPenalty, params0) -> PenaltyReference:
    if penalty.target == "lambda_min":   # f = λ_min(β₀) needs no λ* (the t = 0 search is skipped)
        return PenaltyReference(float("nan"), float(penalty.beta0), float("nan"))
    return penalty_reference(penalty, weights_from_params(params0))


def sgd_penalty_scan(loss_fn: Callable, tx: optax.GradientTransformation, penalty: TcPenalty,
                     ref: PenaltyReference, params, opt_state, x, y, idx, steps):
    """:func:`sgd_scan` with the loss term α·f of ``penalty`` (:mod:`tapjax.tc_regularizer`).

    ``steps`` ``(n_steps,)`` int32: the global step index of each row of ``idx``. On steps with
    ``step % every_k == 0`` the gradient is ``∇L_batch + k·α·∇f`` (a ``lax.cond``: other steps
    pay nothing); ``f`` is returned there and 0 elsewhere. Returns
    ``(params, opt_state, losses, f_values)``.
    """
    k = penalty.every_k
    scale = penalty_gradient_scale(penalty)

    def with_penalty(p):
        v, g = penalty_value_and_grad(penalty, ref, p)
        if penalty.skip_nonfinite:
            v, g = finite_or_zero(v, g)
        return v.astype(jnp.float32), g

    def without(p):
        return jnp.zeros((), jnp.float32), jax.tree_util.tree_map(jnp.zeros_like, p)

    def body(carry, xs):
        ib, s = xs
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, x[ib], y[ib])
        f, g = jax.lax.cond(s % k == 0, with_penalty, without, params)
        grads = jax.tree_util.tree_map(lambda a, b: a + (scale * b).astype(a.dtype), grads, g)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), (loss, f)

    (params, opt_state), (losses, fs) = jax.lax.scan(body, (params, opt_state), (idx, steps))
    return params, opt_state, losses, fs


def batch_loss(margin: float, loss: LossName, kind: Kind | jax.Array, *,
               raw_inputs: bool = False) -> Callable:
    """``loss_fn(params, xb, yb) -> scalar``: the mean loss ``loss`` (margin ``margin``) of a batch.

    Scores are :func:`tapjax.models.forward` of ``kind`` (a name, or a traced bool
    ``is_binarized``); ``raw_inputs``: ``xb`` are uint8 pixels, preprocessed here per batch
    (:func:`tapjax.models.preprocess`), else already preprocessed floats.
    """

    def loss_fn(params, xb, yb):
        if raw_inputs:
            xb = preprocess(xb, kind)
        return mean_loss(forward(params, xb, kind), yb, margin, loss)

    return loss_fn


def chunk_step(margin: float, loss: LossName = "weston_watkins", *,
               raw_inputs: bool = False) -> Callable:
    """Unjitted chunk of ONE run: ``(params, opt_state, hyper, x, y, idx) -> (params, opt_state, losses)``.

    ``len(idx)`` SGD-momentum steps (:func:`sgd_scan`, optimizer :func:`make_optimizer` of
    ``hyper``) on :func:`batch_loss`. ``hyper``: a :class:`RunHyper`. :func:`make_chunk_fn`
    jits it with the run's static ``hyper`` closed over; :func:`tapjax.multirun.make_multi_chunk_fn`
    is ``jax.jit(jax.vmap(chunk_step(..., raw_inputs=True)))`` over runs (``hyper`` of ``(R,)``
    arrays, the kind as a bool ``is_binarized``).
    """

    def one_run(params, opt_state, hyper: RunHyper, x, y, idx):
        loss_fn = batch_loss(margin, loss, hyper.kind, raw_inputs=raw_inputs)
        return sgd_scan(loss_fn, make_optimizer(hyper), params, opt_state, x, y, idx)

    return one_run


def make_chunk_fn(cfg: TrainConfig, reference: PenaltyReference | None = None) -> Callable:
    """Jitted ``(params, opt_state, x, y, idx) -> (params, opt_state, losses)``.

    With ``cfg.tc_penalty``: ``(params, opt_state, x, y, idx, steps) -> (params, opt_state,
    losses, f_values)`` (:func:`sgd_penalty_scan`; ``reference`` defaults to
    :func:`run_penalty_reference`).

    ``x``: preprocessed float inputs ``(n, N_0)``; ``y``: int labels ``(n,)``;
    ``idx``: int32 ``(n_steps, batch)`` mini-batch indices; ``losses``: ``(n_steps,)``.
    The scan body is one SGD-momentum step on the mean hinge loss of the batch
    (:func:`chunk_step` with the run's :func:`run_hyper` as constants), the loss ``cfg.loss``.
    ``params`` and ``opt_state`` are donated.
    """
    hyper = run_hyper(cfg)
    penalty = ref = None
    if cfg.tc_penalty is not None:
        penalty = cfg.tc_penalty
        ref = run_penalty_reference(cfg) if reference is None else reference
    args = (cfg.margin, cfg.loss, hyper, penalty, ref)
    key = repr((args, jax.default_backend()))   # types exact: 1 ≠ 1.0, -0.0 ≠ 0.0 here
    try:
        hash(args)
    except TypeError:   # an unhashable field (e.g. an array lr): this run's program on its own
        return _chunk_program.__wrapped__(key, *args)
    return _chunk_program(key, *args)


@functools.lru_cache(maxsize=16)
def _chunk_program(key: str, margin: float, loss: LossName, hyper: RunHyper, penalty: TcPenalty | None,
                   ref: PenaltyReference | None) -> Callable:
    """The jitted chunk of :func:`make_chunk_fn`, one per distinct ``key`` (the repr of the other
    arguments and the backend, on which the compiler options depend): runs with the same step
    share one Python function and so JAX's compile cache — a fresh ``jax.jit`` per run
    recompiled the same program for every run of a seed loop. The values are the same program's."""
    del key
    if penalty is not None:
        loss_fn = batch_loss(margin, loss, hyper.kind)
        return jax.jit(functools.partial(sgd_penalty_scan, loss_fn, make_optimizer(hyper), penalty, ref),
                       donate_argnums=(0, 1), compiler_options=scan_compiler_options())
    step = chunk_step(margin, loss)

    def chunk(params, opt_state, x, y, idx):
        return step(params, opt_state, hyper, x, y, idx)

    return jax.jit(chunk, donate_argnums=(0, 1), compiler_options=scan_compiler_options())


def make_error_fn(cfg: TrainConfig) -> Callable:
    """Jitted ``(params, x, y) -> number of misclassified samples`` on preprocessed ``x``
    (:func:`tapjax.models.num_wrong`)."""
    return functools.partial(_num_wrong_jit, kind=cfg.model.kind)


# one module-level program per (kind, shapes): a fresh ``jax.jit(lambda ...)`` per run would
# recompile the same count for every training run of a process
_num_wrong_jit = jax.jit(num_wrong, static_argnames=("kind",))


def epoch_batches(shuffle_key: jax.Array, epoch: int, n: int, batch_size: int) -> jax.Array:
    """``(n // batch_size, batch_size)`` int32 indices of epoch ``epoch`` (0-based)."""
    perm = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n)
    steps = n // batch_size
    return perm[: steps * batch_size].reshape(steps, batch_size).astype(jnp.int32)


def steps_per_epoch(cfg: TrainConfig, data: Dataset) -> int:
    """Optimizer steps per epoch (``n_train // batch_size``) after checking ``data`` fits ``cfg``.

    Raises:
      ValueError: input width or class count does not match the model, or fewer samples than
        one batch (the message names the dataset).
    """
    if data.input_dim != cfg.model.input_dim:
        raise ValueError(f"dataset {data.name}: inputs have {data.input_dim} features but "
                         f"model.input_dim={cfg.model.input_dim}")
    if data.num_classes > cfg.model.widths[-1]:
        raise ValueError(f"dataset {data.name} has {data.num_classes} classes but the output layer "
                         f"has {cfg.model.widths[-1]} units")
    n = data.x_train.shape[0]
    if n < cfg.batch_size:
        raise ValueError(f"dataset {data.name}: {n} training samples < batch_size={cfg.batch_size}")
    return n // cfg.batch_size


@dataclasses.dataclass
class TrainResult:
    params: dict[str, Any]
    history: list[dict[str, Any]]  # per-epoch rows: epoch, step, t, train_loss, val_error
    workdir: str
    seconds: float


def state_arrays(params, opt_state, step, history_len, *, history: list | None = None,
                 loss_sum: float = 0.0, loss_steps: int = 0,
                 fingerprint: str | None = None) -> dict[str, np.ndarray]:
    """Flat ``{name: array}`` of the resumable training state.

    Entries: ``params/<layer>/<name>``, ``opt/<i>`` (optimizer leaves), ``step``,
    ``history_len``; and, for a resume that is bit-identical in every file: ``loss_sum``
    (float64 sum of the current epoch's per-chunk ``mean * n_steps`` so far), ``loss_steps``
    (its step count), ``history`` (the per-epoch rows as JSON, so a lost or damaged
    ``history.json`` is rebuilt exactly) and ``fingerprint`` (``"<config hash>:<step>"``,
    :func:`config_fingerprint`).
    """
    arrays = {f"params/{k}": v for k, v in ckpt.flatten_dict(params).items()}
    for i, leaf in enumerate(jax.tree_util.tree_leaves(opt_state)):
        arrays[f"opt/{i:04d}"] = np.asarray(leaf)
    arrays["step"] = np.asarray(step, np.int64)
    arrays["history_len"] = np.asarray(history_len, np.int64)
    arrays["loss_sum"] = np.asarray(loss_sum, np.float64)
    arrays["loss_steps"] = np.asarray(loss_steps, np.int64)
    if history is not None:
        arrays["history"] = np.asarray(json.dumps(history, sort_keys=True))
    if fingerprint is not None:
        arrays["fingerprint"] = np.asarray(f"{fingerprint}:{int(step)}")
    return arrays


@dataclasses.dataclass
class ResumeState:
    """A validated ``state.npz``: where and with what a run resumes."""

    params: Any
    opt_state: Any
    step: int
    history_len: int
    loss_sum: float | None      # None: a state written before the accumulator was stored
    loss_steps: int
    history: list | None        # None: a state written before the history copy was stored


_CORRUPT_STATE = ("the file is corrupt (the trainer never saves a non-finite state: it stops on "
                  "the first non-finite loss). The checkpoints are intact; delete it to restart "
                  "from step 0, or restore it from a backup")


def _restore_state(path: str, params_tmpl, opt_tmpl, cfg: TrainConfig | None = None) -> ResumeState:
    """Reads and checks ``state.npz`` against the run (``cfg``) and its shapes."""
    z = ckpt.read_npz(path)
    try:
        params = ckpt.unflatten_dict({k[7:]: jnp.asarray(v) for k, v in z.items() if k.startswith("params/")})
        leaves, treedef = jax.tree_util.tree_flatten(opt_tmpl)
        opt_leaves = [jnp.asarray(z[f"opt/{i:04d}"]) for i in range(len(leaves))]
        step, hlen = int(z["step"]), int(z["history_len"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ckpt.CheckpointError(f"{path}: incomplete training state (missing or malformed {e}); "
                                   "delete it to restart") from e
    if jax.tree_util.tree_structure(params) != jax.tree_util.tree_structure(params_tmpl) or any(
            a.shape != b.shape for a, b in zip(jax.tree_util.tree_leaves(params),
                                               jax.tree_util.tree_leaves(params_tmpl))):
        raise ckpt.CheckpointError(f"{path}: parameter shapes do not match the model config")
    if any(a.shape != b.shape for a, b in zip(opt_leaves, leaves)):
        raise ckpt.CheckpointError(f"{path}: optimizer state shapes do not match the model config")
    for name, leaf in [*((f"params/{k}", v) for k, v in ckpt.flatten_dict(params).items()),
                       *((f"opt/{i:04d}", v) for i, v in enumerate(opt_leaves))]:
        if not np.all(np.isfinite(np.asarray(leaf))):
            raise ckpt.CheckpointError(f"{path}: {name} holds NaN/Inf values: {_CORRUPT_STATE}")
    if cfg is not None and "fingerprint" in z:
        fp = str(z["fingerprint"])
        want = config_fingerprint(cfg)
        if fp.rsplit(":", 1)[0] != want:
            raise ckpt.CheckpointError(
                f"{path}: belongs to another run (config fingerprint {fp.rsplit(':', 1)[0]}, this "
                f"run's is {want}); move it away or use another --workdir")
        if fp.rsplit(":", 1)[-1] != str(step):
            raise ckpt.CheckpointError(f"{path}: fingerprint says step {fp.rsplit(':', 1)[-1]} but the "
                                       f"state says step {step}: {_CORRUPT_STATE}")
    elif cfg is not None:
        print(f"note: {path}: written by an older tapjax without a run fingerprint; cannot verify "
              "that it belongs to this run", file=sys.stderr)
    if step < 0 or hlen < 0 or hlen > step:
        raise ckpt.CheckpointError(f"{path}: step {step} / history_len {hlen} are impossible: "
                                   f"{_CORRUPT_STATE}")
    loss_sum = float(z["loss_sum"]) if "loss_sum" in z else None
    loss_steps = int(z["loss_steps"]) if "loss_steps" in z else 0
    if loss_sum is not None and not np.isfinite(loss_sum):
        raise ckpt.CheckpointError(f"{path}: loss_sum is not finite: {_CORRUPT_STATE}")
    history = None
    if "history" in z:
        try:
            history = json.loads(str(z["history"]))
        except ValueError as e:
            raise ckpt.CheckpointError(f"{path}: damaged history copy ({e}): {_CORRUPT_STATE}") from e
        if not isinstance(history, list) or len(history) != hlen:
            raise ckpt.CheckpointError(f"{path}: history copy has the wrong length: {_CORRUPT_STATE}")
    return ResumeState(params, jax.tree_util.tree_unflatten(treedef, opt_leaves), step, hlen,
                       loss_sum, loss_steps, history)


def _resume_history(hist_path: str, state_path: str, rs: ResumeState) -> list:
    """The history rows to resume with (``rs.history_len`` of them), checked against ``history.json``.

    With the state's own copy of the history, a missing, damaged or diverging ``history.json``
    is rewritten from it (with a note). Without one (older states) it must be readable.
    """
    on_disk, problem = None, None
    if os.path.exists(hist_path):
        try:
            with open(hist_path) as f:
                on_disk = json.load(f)
            if not isinstance(on_disk, list):
                problem = "is not a JSON list"
        except (OSError, ValueError) as e:
            problem = f"is corrupt ({e})"
    else:
        problem = "is missing"
    if problem is None and len(on_disk) < rs.history_len:
        problem = f"holds {len(on_disk)} rows but the state at step {rs.step} has {rs.history_len}"
    if rs.history is not None:
        if problem is None and on_disk[:rs.history_len] != rs.history:
            problem = "differs from the state's copy"
        if problem is not None:
            print(f"note: {hist_path} {problem}; rewritten from the copy in {state_path}",
                  file=sys.stderr)
            ckpt.atomic_write_json(hist_path, rs.history)
        return list(rs.history)
    if problem is not None and rs.history_len > 0:
        raise ckpt.CheckpointError(
            f"{hist_path} {problem}; {state_path} (written by an older tapjax, without a copy of "
            "the history) cannot rebuild it. The checkpoints and the training state are intact: "
            "restore history.json from a backup, or train the run again in a new --workdir")
    return [] if on_disk is None or problem is not None else on_disk[:rs.history_len]


def _check_same_run(workdir: str, cfg: TrainConfig) -> None:
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    try:
        with open(path) as f:
            old = json.load(f)
        old = json.loads(json.dumps(TrainConfig.from_dict(old).to_dict()))
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise ckpt.CheckpointError(f"{path}: corrupt run config ({e}); the checkpoints are intact: "
                                   "restore config.json from a checkpoint's __meta__['config'] or "
                                   "use another --workdir") from e
    new = cfg.to_dict()
    keys = list(new) + [k for k in old if k not in new]
    diffs = [k for k in keys if k not in ("epochs",)
             and old.get(k) != json.loads(json.dumps(new.get(k)))]
    if diffs:
        detail = ", ".join(f"{k}: {old.get(k)!r} (on disk) vs {new.get(k)!r}" for k in diffs)
        raise ckpt.CheckpointError(
            f"{workdir} holds a different run ({detail}); use another --workdir to start a new run "
            "(only --epochs may change when resuming)")


# Files the trainer writes atomically (their ``.tmp-*`` leftovers are cleaned on start).
RUN_FILES = ("config.json", "history.json", "state.npz")


def clean_stale_files(workdir: str, before: float) -> list[str]:
    """Removes ``.tmp-*`` files of the trainer's own files older than ``before`` (a killed writer's)."""
    removed = ckpt.clean_stale_tmp(workdir, RUN_FILES, before)
    removed += ckpt.clean_stale_tmp(os.path.join(workdir, "checkpoints"), ("ckpt_*.npz",), before)
    if removed:
        print(f"note: removed {len(removed)} temporary file(s) left by an interrupted run: "
              f"{', '.join(os.path.basename(p) for p in removed)}", file=sys.stderr)
    return removed


@contextlib.contextmanager
def locked_workdirs(workdirs: Sequence[str]):
    """Holds every workdir's :class:`~tapjax.locking.WorkdirLock` (a second writer is refused)
    and removes the ``.tmp-*`` files a killed writer left there (:func:`clean_stale_files`)."""
    with contextlib.ExitStack() as stack:
        for wd in workdirs:
            lock = stack.enter_context(WorkdirLock(wd))
            clean_stale_files(wd, lock.acquired_at)
        yield


@dataclasses.dataclass
class RunLog:
    """Host-side bookkeeping of one run in :func:`run_chunks`.

    Attributes:
      cfg: the run's config. workdir: its directory, or None (nothing written).
      meta: checkpoint metadata common to all its checkpoints (config, dataset, steps_per_epoch).
      reference: λ*, β*, β_max of ``cfg.tc_penalty`` (None without a penalty).
      history: per-epoch rows so far. loss_sum / loss_steps: the current epoch's running
        float64 sum of per-chunk ``mean * n_steps`` and its step count. loss_note: set when the
        epoch's loss covers only part of it (resumed from an old state). pen_skipped:
        penalty steps skipped (non-finite f) in the current epoch.
    """

    cfg: TrainConfig
    workdir: str | None
    meta: dict[str, Any]
    reference: PenaltyReference | None = None
    history: list = dataclasses.field(default_factory=list)
    loss_sum: float = 0.0
    loss_steps: int = 0
    loss_note: str | None = None
    pen_skipped: int = 0


class ChunkProgram(NamedTuple):
    """The device side of :func:`run_chunks` for R runs (R = 1: one unbatched run).

    Attributes:
      batches: ``epoch -> idx``, the epoch's mini-batch indices (program's own layout).
      step: ``(params, opt_state, idx, a, b, lo, hi) -> (params, opt_state, losses, f)``: steps
        ``lo..hi`` (rows ``a..b`` of the epoch's ``idx``); ``losses`` numpy ``(R, hi - lo)``,
        ``f`` numpy ``(R, hi - lo)`` penalty values or None.
      val_errors: ``params -> (R,)`` float64 validation error fractions.
      runs: ``(params, opt_state) -> [(params_r, opt_state_r), ...]`` per run, for writing.
    """

    batches: Callable
    step: Callable
    val_errors: Callable
    runs: Callable


def _penalty_f(log: RunLog, fs: np.ndarray, lo: int, hi: int) -> float | None:
    """Checks a chunk's penalty values ``fs`` ``(hi - lo,)``; the last finite one (or None)."""
    penalty = log.cfg.tc_penalty
    on = np.arange(lo, hi) % penalty.every_k == 0
    bad = np.flatnonzero(on & ~np.isfinite(fs))
    if bad.size and penalty.skip_nonfinite:
        log.pen_skipped += int(bad.size)
    elif bad.size:
        raise FloatingPointError(
            f"tc_penalty: f = {penalty.target} is not finite at step {lo + int(bad[0])} (no "
            f"crossing in (0, {log.reference.beta_max:g}] or a degenerate λ_min); raise "
            "tc_penalty.beta_max_factor, lower |alpha|, or use target='lambda_min'")
    good = on & np.isfinite(fs)
    # last finite f (JSON has no NaN that compares equal on resume)
    return float(fs[good][-1]) if good.any() else None


def run_chunks(program: ChunkProgram, logs: Sequence[RunLog], params, opt_state, step: int, *,
               spe: int, total: int, ck_steps: Sequence[int], report: Callable | None = None,
               stop_after_step: int | None = None):
    """The host loop of every training run: chunks between checkpoints, history, files.

    Runs the chunks ``[lo, hi)`` between consecutive entries of ``ck_steps ∪ {epoch ends}``
    from ``step`` to ``total``; after each: checks the losses (and penalty values) are
    finite, adds ``mean · n_steps`` of each run's chunk to its epoch sum, appends the
    per-epoch history row at an epoch end (``train_loss`` = epoch sum / steps), writes each
    run's checkpoint at a checkpoint step and its ``state.npz`` (and ``history.json``) at
    either. At ``step == 0`` the t = 0 checkpoint is written first. ``report(hi, losses,
    val_err)`` after each chunk; ``stop_after_step``: stop after the first chunk ending at or
    past it. Returns ``(params, opt_state)``.
    """
    bounds = sorted(set(ck_steps) | set(range(0, total + 1, spe)))
    if step == 0 and any(log.workdir for log in logs):
        val_err = program.val_errors(params)
        for log, (p, _), ve in zip(logs, program.runs(params, opt_state), val_err):
            if log.workdir:
                ckpt.save_checkpoint(log.workdir, p, {**log.meta, "step": 0, "t": 0.0, "epoch": 0,
                                                      "train_loss": None, "val_error": float(ve)})
    perm_epoch, idx = -1, None
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi <= step:
            continue
        epoch = lo // spe
        if epoch != perm_epoch:
            idx, perm_epoch = program.batches(epoch), epoch
        params, opt_state, losses, fs = program.step(params, opt_state, idx, lo - epoch * spe,
                                                     hi - epoch * spe, lo, hi)
        f_last = [None if fs is None else _penalty_f(log, fs[r], lo, hi) for r, log in enumerate(logs)]
        if not np.all(np.isfinite(losses)):
            if len(logs) == 1:
                raise FloatingPointError(f"training diverged (non-finite loss) between steps {lo} and "
                                         f"{hi}; lower --lr (now {logs[0].cfg.lr})")
            bad = [log.cfg.lr for log, l in zip(logs, losses) if not np.all(np.isfinite(l))]
            raise FloatingPointError(f"training diverged (non-finite loss) between steps {lo} and "
                                     f"{hi} for the run(s) with lr={bad}")
        step = hi
        val_err = program.val_errors(params)
        at_epoch, at_ck = hi % spe == 0, hi in ck_steps
        runs = (program.runs(params, opt_state)
                if (at_epoch or at_ck) and any(log.workdir for log in logs) else None)
        for r, log in enumerate(logs):
            loss_mean = float(losses[r].mean())
            log.loss_sum += loss_mean * losses.shape[1]
            log.loss_steps += losses.shape[1]
            penalty, wd = log.cfg.tc_penalty, log.workdir
            if at_epoch:
                row = {"epoch": hi // spe, "step": hi, "t": hi / spe, "val_error": float(val_err[r]),
                       "train_loss": (log.loss_sum / spe if log.loss_note is None
                                      else log.loss_sum / log.loss_steps)}
                if log.loss_note is not None:
                    row["train_loss_note"] = log.loss_note
                if penalty is not None:
                    row["penalty_f"] = f_last[r]  # f at the last finite penalty step of the epoch's last chunk
                    if penalty.target == "T_c":
                        row["penalty_threshold"] = log.reference.threshold
                    row["penalty_skipped"] = log.pen_skipped
                    log.pen_skipped = 0
                log.history.append(row)
                log.loss_sum, log.loss_steps, log.loss_note = 0.0, 0, None
                if wd:
                    ckpt.atomic_write_json(os.path.join(wd, "history.json"), log.history)
            if wd and at_ck:
                ckpt.save_checkpoint(wd, runs[r][0], {**log.meta, "step": hi, "t": hi / spe,
                                                      "epoch": hi // spe, "train_loss": loss_mean,
                                                      "val_error": float(val_err[r])})
            if wd and (at_ck or at_epoch):
                arrays = state_arrays(runs[r][0], runs[r][1], step, len(log.history),
                                      history=log.history, loss_sum=log.loss_sum,
                                      loss_steps=log.loss_steps,
                                      fingerprint=config_fingerprint(log.cfg))
                if penalty is not None:
                    arrays["penalty_skipped"] = np.asarray(log.pen_skipped, np.int64)
                ckpt.atomic_write_npz(os.path.join(wd, "state.npz"), arrays)
        if report is not None:
            report(hi, losses, val_err)
        if stop_after_step is not None and hi >= stop_after_step:
            break
    return params, opt_state


def train(cfg: TrainConfig, data: Dataset, workdir: str, *, progress: bool = True,
          resume: bool = True, stop_after_step: int | None = None) -> TrainResult:
    """Trains the MLP of ``cfg`` on ``data``, writing checkpoints to ``workdir``.

    The one-run case of the engine: :func:`run_chunks` over :func:`make_chunk_fn`'s program
    (:func:`tapjax.multirun.train_many` is the same loop over the vmapped program).
    Resumes from ``workdir/state.npz`` when present (same config required, checked by a
    fingerprint in the state; ``epochs`` may grow); a resumed run writes the same weights,
    state and ``history.json`` bit for bit as an uninterrupted one, wherever it was killed
    (the partial-epoch loss sum is part of the state). The run holds ``workdir``'s lock
    (:class:`tapjax.locking.WorkdirLock`) throughout: a second writer is refused. On start,
    temporary files left by a killed writer are removed. ``stop_after_step`` stops early
    after the first chunk ending at or past that step (used to test interruption); the state
    on disk is then exactly that of a killed run.

    Returns:
      :class:`TrainResult` with the final params and the per-epoch history.

    Raises:
      CheckpointError: another live writer holds ``workdir``, a different run's files are
        there, or a file is corrupt or cannot be written (the message names it).
    """
    spe = steps_per_epoch(cfg, data)
    with locked_workdirs([workdir]):
        return _train_locked(cfg, data, workdir, spe, progress=progress, resume=resume,
                             stop_after_step=stop_after_step)


def _resume_into(log: RunLog, state_path: str, hist_path: str, params, opt_state, spe: int):
    """Reads ``state.npz`` into ``log``; returns the resumed ``(params, opt_state, step)``."""
    rs = _restore_state(state_path, params, opt_state, log.cfg)
    if log.cfg.tc_penalty is not None:
        log.pen_skipped = int(ckpt.read_npz(state_path).get("penalty_skipped", 0))
    step = rs.step
    log.history = _resume_history(hist_path, state_path, rs)
    if rs.loss_sum is not None:
        log.loss_sum, log.loss_steps = rs.loss_sum, rs.loss_steps
    elif step % spe:
        log.loss_note = (f"mean over steps {step}..{(step // spe + 1) * spe} only: resumed inside the "
                         "epoch from a state written by an older tapjax (no loss accumulator)")
        print(f"note: {state_path}: {log.loss_note}", file=sys.stderr)
    if rs.loss_sum is not None and log.loss_steps != step % spe:
        raise ckpt.CheckpointError(f"{state_path}: loss accumulator covers {log.loss_steps} steps but "
                                   f"the state is {step % spe} steps into its epoch: {_CORRUPT_STATE}")
    return rs.params, rs.opt_state, step


def _train_locked(cfg, data, workdir, spe, *, progress, resume, stop_after_step) -> TrainResult:
    n = data.x_train.shape[0]
    _check_same_run(workdir, cfg)
    ckpt.atomic_write_json(os.path.join(workdir, "config.json"), cfg.to_dict())

    key_init, key_shuffle = jax.random.split(jax.random.PRNGKey(cfg.seed))
    params = init_params(cfg.model, key_init)
    penalty = cfg.tc_penalty
    reference = None if penalty is None else _penalty_reference(penalty, params)
    opt_state = make_optimizer(cfg).init(params)
    log = RunLog(cfg, workdir, {"config": cfg.to_dict(), "dataset": data.name,
                                "steps_per_epoch": spe}, reference)
    step = 0
    state_path = os.path.join(workdir, "state.npz")
    if resume and os.path.exists(state_path):
        params, opt_state, step = _resume_into(log, state_path, os.path.join(workdir, "history.json"),
                                               params, opt_state, spe)

    x_tr = preprocess(jnp.asarray(data.x_train), cfg.model.kind)
    y_tr = jnp.asarray(data.y_train)
    x_va = preprocess(jnp.asarray(data.x_val), cfg.model.kind)
    y_va = jnp.asarray(data.y_val)
    chunk_fn, wrong_fn = make_chunk_fn(cfg, reference), make_error_fn(cfg)

    def one_step(params, opt_state, idx, a, b, lo, hi):
        if penalty is None:
            params, opt_state, losses = chunk_fn(params, opt_state, x_tr, y_tr, idx[a:b])
            return params, opt_state, np.asarray(losses)[None], None
        steps = jnp.arange(lo, hi, dtype=jnp.int32)
        params, opt_state, losses, fs = chunk_fn(params, opt_state, x_tr, y_tr, idx[a:b], steps)
        return params, opt_state, np.asarray(losses)[None], np.asarray(fs)[None]

    program = ChunkProgram(
        batches=lambda epoch: epoch_batches(key_shuffle, epoch, n, cfg.batch_size),
        step=one_step,
        val_errors=lambda p: error_fraction(wrong_fn, p, x_va, y_va)[None],
        runs=lambda p, o: [(p, o)])
    bar = ProgressBar(cfg.epochs, f"train {cfg.model.kind} lr={cfg.lr:g}", enabled=progress,
                      start=step / spe)
    t0 = time.monotonic()
    params, opt_state = run_chunks(
        program, [log], params, opt_state, step, spe=spe, total=cfg.epochs * spe,
        ck_steps=checkpoint_steps(cfg, spe), stop_after_step=stop_after_step,
        report=lambda hi, losses, ve: bar.set(hi / spe, loss=float(losses[0].mean()),
                                              val_err=float(ve[0])))
    bar.close()
    return TrainResult(params=jax.device_get(params), history=log.history, workdir=workdir,
                       seconds=time.monotonic() - t0)
