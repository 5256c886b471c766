"""Annealing vs backprop vs exact solve on small regression / classification tasks (issue 7).

Experiment code (data sets, settings, the comparison harness) used by ``experiments/sgtrain.py``;
it moved here from ``tapjax.sgtrain.compare``, which still re-exports it with a DeprecationWarning.

:func:`run_setup` trains one architecture on one task with every method over several seeds and
returns one row per (method, seed); :func:`summarize` turns rows into mean ± std per method;
:func:`markdown_table` formats them. Each method is compiled once (ahead of time, timed as
``compile_s``) and the compiled program is reused for every seed (timed as ``wall_s``, device
results blocked on), so ``wall_s`` is training time only.

Methods: ``anneal`` (n-bit simulated annealing), ``langevin``, ``exact`` (the minimum-norm
ground state; for two layers, the alternating scheme with exact per-layer solves), ``ridge``
(the same with H + λ‖S‖²) and ``backprop`` (full-batch Adam on the true MSE).

Tasks:

* ``diabetes`` — scikit-learn's bundled diabetes data (442 × 10, regression), a seeded
  342/100 train/validation split, features and target standardised with the training
  statistics. Needs ``pip install 'tapjax[experiments]'`` (scikit-learn).
* ``mnist`` — 1,000 training images drawn (seeded) from the embedded 4,000-image MNIST training
  split, all 1,000 embedded validation images; pixels/255, one-hot targets, MSE loss.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tapjax.sgtrain import networks as nw
from tapjax.sgtrain.activations import Identity, LeakyReLU
from tapjax.sgtrain.annealing import Annealing
from tapjax.sgtrain.exact import ExactSolve
from tapjax.sgtrain.hamiltonian import dense_hamiltonian, ground_state_energy, with_bias
from tapjax.sgtrain.langevin import Langevin

__all__ = ["METHODS", "Setup", "Task", "default_setup", "diabetes_task", "load_diabetes_arrays",
           "markdown_table", "mnist_task", "run_setup", "summarize"]

METHODS = ("anneal", "langevin", "exact", "ridge", "backprop")


@dataclasses.dataclass(frozen=True)
class Task:
    """A train/validation split. ``labels_val`` (int, (Q_val,)) is set for classification."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    labels_val: np.ndarray | None = None


def load_diabetes_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled diabetes data: X (442, 10), y (442,). No network needed."""
    try:
        from sklearn.datasets import load_diabetes  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise ImportError(
            "The 'diabetes' task needs scikit-learn (it ships the data set): "
            "pip install 'tapjax[experiments]'  (or: pip install scikit-learn)") from e
    d = load_diabetes()
    return np.asarray(d.data, np.float64), np.asarray(d.target, np.float64)


def diabetes_task(seed: int, n_val: int = 100, dtype=np.float32) -> Task:
    """Seeded split of the diabetes data, standardised with the training statistics."""
    X, y = load_diabetes_arrays()
    perm = np.random.default_rng(seed).permutation(len(y))
    tr, va = perm[n_val:], perm[:n_val]
    mu, sd = X[tr].mean(0), X[tr].std(0)
    ym, ys = y[tr].mean(), y[tr].std()
    f = lambda a: a.astype(dtype)  # noqa: E731
    return Task("diabetes", f((X[tr] - mu) / sd), f((y[tr, None] - ym) / ys),
                f((X[va] - mu) / sd), f((y[va, None] - ym) / ys))


def mnist_task(seed: int, n_train: int = 1000, dtype=np.float32, data=None) -> Task:
    """``n_train`` seeded training images of the embedded MNIST subset; its full validation split."""
    if data is None:
        from tapjax.data import load_dataset  # pylint: disable=import-outside-toplevel
        data = load_dataset("embedded")
    if not 1 <= n_train <= len(data.y_train):
        raise ValueError(f"n_train: must be in [1, {len(data.y_train)}], got {n_train}")
    idx = np.random.default_rng(seed).choice(len(data.y_train), n_train, replace=False)
    k = data.num_classes
    return Task("mnist", (data.x_train[idx] / 255.0).astype(dtype),
                np.eye(k, dtype=dtype)[data.y_train[idx]],
                (data.x_val / 255.0).astype(dtype), np.eye(k, dtype=dtype)[data.y_val],
                labels_val=np.asarray(data.y_val))


@dataclasses.dataclass(frozen=True)
class Setup:
    """One architecture and the settings of every method.

    Attributes:
      hidden: hidden width (None: a single linear layer, bias included).
      alpha: LeakyReLU slope of the hidden layer.
      epochs: spin-glass epochs (1 layer) or outer alternating steps (2 layers) for the
        annealer and Langevin.
      exact_steps: outer steps of the alternating scheme with the exact minimiser (2 layers).
      annealing, langevin, exact: the minimisers.
      ridge: the exact minimiser of H + λ‖S‖² (method "ridge"), a regularised reference.
      hidden_targets: "pinv" (note eq. 19) or "minimal_change".
      backprop_lr, backprop_steps, optimizer: the full-batch baseline.
    """

    hidden: int | None = None
    alpha: float = 0.1
    epochs: int = 20
    exact_steps: int = 10
    annealing: Annealing = Annealing()
    langevin: Langevin = Langevin()
    exact: ExactSolve = ExactSolve()
    ridge: ExactSolve = ExactSolve(ridge=1e-2)
    hidden_targets: str = "pinv"
    backprop_lr: float = 1e-3
    backprop_steps: int = 500
    optimizer: str = "adam"

    @property
    def depth(self) -> int:
        return 1 if self.hidden is None else 2

    @property
    def activations(self):
        return (Identity(),) if self.hidden is None else (LeakyReLU(self.alpha), Identity())


def _program(setup: Setup, method: str):
    """(jitted core, static kwargs, whether it takes a key) for one method."""
    if method == "backprop":
        return nw.fit_backprop_jit, dict(activations=setup.activations, optimizer=setup.optimizer,
                                      learning_rate=setup.backprop_lr,
                                      steps=setup.backprop_steps), False
    minimizer = {"anneal": setup.annealing, "langevin": setup.langevin,
                 "exact": setup.exact, "ridge": setup.ridge}[method]
    solve = method in ("exact", "ridge")
    if setup.depth == 1:
        epochs = 1 if solve else setup.epochs
        return nw.fit_one_layer_jit, dict(activation=Identity(), minimizer=minimizer,
                                       epochs=epochs), True
    steps = setup.exact_steps if solve else setup.epochs
    return nw.fit_two_layer_jit, dict(activations=setup.activations, minimizer=minimizer,
                                   steps=steps, hidden_targets=setup.hidden_targets), True


def run_setup(task_fn: Callable[[int], Task], setup: Setup, seeds: Sequence[int],
              methods: Sequence[str] = METHODS,
              on_run: Callable[[dict], None] | None = None) -> list[dict]:
    """Trains ``setup`` on ``task_fn(seed)`` with every method and seed.

    Args:
      task_fn: seed → :class:`Task` (same shapes for every seed).
      setup: architecture and method settings.
      seeds: data split / initialisation / sampler seeds.
      methods: subset of :data:`METHODS`.
      on_run: called with each finished row (progress reporting).

    Returns:
      One dict per (method, seed): ``task, depth, method, seed, train_loss, val_loss, val_acc``
      (None for regression), ``gap_to_exact`` (1 layer: H(W) − min H), ``compile_s``,
      ``wall_s`` and ``curve`` (training MSE after each epoch / step).
    """
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"methods: unknown {sorted(unknown)}; choose from {METHODS}")
    tasks = {s: task_fn(s) for s in seeds}
    rows = []
    for method in methods:
        core, static, keyed = _program(setup, method)
        compiled, compile_s = None, 0.0
        for seed in seeds:
            t = tasks[seed]
            x, y = jnp.asarray(t.x_train), jnp.asarray(t.y_train)
            k_init, k_run = jax.random.split(jax.random.key(seed))
            sizes = [x.shape[1]] + ([setup.hidden] if setup.hidden else []) + [y.shape[1]]
            params0 = nw.init_params(k_init, sizes, x.dtype)
            if not keyed:  # backprop: (params, x, y)
                args = (params0, x, y)
            elif setup.depth == 1:  # one layer: (W, x, y, key)
                args = (params0[0], x, y, k_run)
            else:
                args = (params0, x, y, k_run)
            if compiled is None:
                t0 = time.perf_counter()
                compiled = core.lower(*args, **static).compile()
                compile_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            out, hist = compiled(*args)
            jax.block_until_ready(out)
            wall = time.perf_counter() - t0
            params = (out,) if keyed and setup.depth == 1 else tuple(out)
            row = _metrics(t, params, setup, hist)
            row.update(task=t.name, depth=setup.depth, method=method, seed=int(seed),
                       compile_s=compile_s, wall_s=wall)
            rows.append(row)
            if on_run is not None:
                on_run(row)
    return rows


def _metrics(t: Task, params, setup: Setup, hist) -> dict:
    acts = setup.activations
    xv, yv = jnp.asarray(t.x_val), jnp.asarray(t.y_val)
    x, y = jnp.asarray(t.x_train), jnp.asarray(t.y_train)
    row = {"train_loss": float(nw.mse(params, x, y, acts)),
           "val_loss": float(nw.mse(params, xv, yv, acts)),
           "val_acc": None, "gap_to_exact": None,
           "curve": [float(v) for v in np.asarray(hist["loss"])]}
    if t.labels_val is not None:
        pred = np.asarray(nw.forward(params, xv, acts)).argmax(1)
        row["val_acc"] = float(np.mean(pred == t.labels_val))
    if setup.depth == 1:
        ham = dense_hamiltonian(with_bias(x), y)
        row["gap_to_exact"] = row["train_loss"] - float(
            ground_state_energy(ham, setup.exact.ridge).sum())
    return row


_STATS = ("train_loss", "val_loss", "val_acc", "gap_to_exact", "wall_s", "compile_s")


def summarize(rows: Sequence[dict]) -> list[dict]:
    """Mean and standard deviation (over seeds, ddof=0) per (task, depth, method)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["depth"], r["method"]), []).append(r)
    out = []
    for (task, depth, method), rs in groups.items():
        s = {"task": task, "depth": depth, "method": method, "seeds": len(rs)}
        for k in _STATS:
            vals = [r[k] for r in rs if r.get(k) is not None]
            s[k] = (float(np.mean(vals)), float(np.std(vals))) if vals else None
        out.append(s)
    return out


def _pm(v, fmt="{:.4g}"):
    return "–" if v is None else f"{fmt.format(v[0])} ± {fmt.format(v[1])}"


def markdown_table(summary: Sequence[dict]) -> str:
    """The summary as a Markdown table (mean ± std over seeds)."""
    lines = ["| task | layers | method | seeds | train MSE | val MSE | val acc | train gap to exact min | wall s | compile s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(
            f"| {s['task']} | {s['depth']} | {s['method']} | {s['seeds']} | {_pm(s['train_loss'])} | "
            f"{_pm(s['val_loss'])} | {_pm(s['val_acc'], '{:.3f}')} | {_pm(s['gap_to_exact'], '{:.2e}')} | "
            f"{_pm(s['wall_s'], '{:.3g}')} | {s['compile_s'][0]:.3g} |")
    return "\n".join(lines)


def default_setup(task: str, depth: int, quick: bool = False) -> Setup:
    """The settings used in docs/sgtrain.md (``quick``: fewer epochs and 4 bits, for smoke runs)."""
    if task not in ("diabetes", "mnist") or depth not in (1, 2):
        raise ValueError(f"task, depth: no default setup for ({task!r}, {depth})")
    n_bits = 4 if quick else 8
    scale = 2 if quick else 1
    if task == "diabetes":
        return Setup(hidden=None if depth == 1 else 20, epochs=30 // scale,
                     exact_steps=10 // scale,
                     annealing=Annealing(n_bits=n_bits, window=(0.5, 1e-4), beta=(1.0, 1e4)),
                     langevin=Langevin(temperature=(1e-3, 1e-7), steps=50),
                     backprop_lr=1e-2, backprop_steps=(500 if depth == 1 else 300) // scale)
    return Setup(hidden=None if depth == 1 else 32, epochs=20 // scale, exact_steps=10 // scale,
                 annealing=Annealing(n_bits=n_bits, window=(0.1, 1e-4), beta=(1.0, 1e4)),
                 langevin=Langevin(temperature=(1e-4, 1e-8), steps=100 if depth == 1 else 50),
                 backprop_lr=1e-3, backprop_steps=(500 if depth == 1 else 300) // scale)
