r"""T_c-aware training (issue 17.3): the MNIST standard net with a loss term α·f, f = T_c or λ_min(β₀).

Three phases (each resumable; run directories under --root):

    # 1. cost per step with and without the penalty, gradient norms at init -> k and the α scale
    python -m experiments.tc_training --phase=measure --dataset=idx:/work/shared/data/mnist
    # 2. one run per α (α = 0 is plain training, tc_penalty=None); resumable, run in background
    python -m experiments.tc_training --phase=train --alpha_rel=-1 --epochs=60 ...
    # 3. T_c(t), λ_max(J)(t) of every run (tapjax.analysis.analyze_run), table, figure
    python -m experiments.tc_training --phase=report --epochs=60 ...

α is given relative to the init gradients: α = alpha_rel · ‖∇_W L_batch‖ / ‖∇_W f‖ at t = 0
(measured in phase 1), so alpha_rel = ±1 is a penalty gradient as large as the loss gradient.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from tapjax.data import load_dataset
from tapjax.losses import mean_loss
from tapjax.models import MLP, ModelConfig, preprocess, weights_from_params
from tapjax.tc_regularizer import TcPenalty, choose_every_k, penalty_reference, penalty_value_and_grad
from tapjax.training import (TrainConfig, epoch_batches, initial_params, make_chunk_fn, train)

FLAGS = flags.FLAGS
flags.DEFINE_enum("phase", "measure", ["measure", "measure_tc", "train", "report"], "What to do.")
flags.DEFINE_string("dataset", "embedded", "'embedded' or 'idx:DIR' (full MNIST).")
flags.DEFINE_string("root", "runs/tc_training", "Parent of the run directories.")
flags.DEFINE_integer("epochs", 60, "Epochs per run.")
flags.DEFINE_integer("seed", 0, "Init/data-order seed of the run (α unit and λ* are from seed 0's measure).")
flags.DEFINE_list("seeds", ["0"], "Seeds of the report (phase=report): runs of other seeds are listed apart.")
flags.DEFINE_float("lr", 1e-4, "SGD learning rate.")
flags.DEFINE_enum("target", "lambda_min", ["T_c", "lambda_min"], "f of the penalty.")
flags.DEFINE_enum("backend", "lanczos", ["dense", "lanczos", "recurrence"], "Penalty eigen-solver.")
flags.DEFINE_float("alpha_rel", 0.0, "α in units of ‖∇L‖/‖∇f‖ at init (0: plain run, no penalty).")
flags.DEFINE_float("overhead", 0.5, "Accepted training-time overhead of the penalty -> every_k.")
flags.DEFINE_integer("every_k", 0, "Penalty every k steps (0: from the measured cost ratio).")
flags.DEFINE_list("alphas", ["-1", "0", "1"], "alpha_rel values of the report.")
flags.DEFINE_string("out", "docs/results/tc_training.json", "Report JSON (phase=report).")
flags.DEFINE_string("figure", "docs/figures/tc_training.png", "Report figure (phase=report).")


def base_config(epochs: int) -> TrainConfig:
    return TrainConfig(model=ModelConfig(kind="standard", widths=(512, 512, 512, 10)), lr=FLAGS.lr,
                       epochs=epochs, dataset=FLAGS.dataset, schedule="log:4",
                       first_epoch_levels=2, seed=FLAGS.seed)


def measure_path() -> str:
    return os.path.join(FLAGS.root, f"measure_{FLAGS.target}_{FLAGS.backend}.json")


def measure(data) -> dict:
    """Seconds per SGD step with/without the penalty (same process, side by side), grad norms."""
    cfg = base_config(1)
    p0 = initial_params(cfg)
    t = time.perf_counter()
    ref = penalty_reference(TcPenalty(0.0, num_ref_betas=24), weights_from_params(p0))
    t_ref = time.perf_counter() - t
    beta0 = ref.beta
    pen = TcPenalty(1.0, FLAGS.target, beta0 if FLAGS.target == "lambda_min" else None, every_k=1,
                    backend=FLAGS.backend, num_ref_betas=24, skip_nonfinite=True)
    x = preprocess(jnp.asarray(data.x_train), "standard")
    y = jnp.asarray(data.y_train)
    idx = epoch_batches(jax.random.PRNGKey(1), 0, x.shape[0], 32)
    steps = 200
    plain = make_chunk_fn(cfg)
    tx_state = lambda: __import__("optax").sgd(cfg.lr, momentum=cfg.momentum).init(initial_params(cfg))
    out = {}
    for rep in range(2):   # second pass: compiled
        t = time.perf_counter()
        pp, _, l = plain(initial_params(cfg), tx_state(), x, y, idx[:steps])
        l.block_until_ready()
        out["plain_step_s"] = (time.perf_counter() - t) / steps
    vg = jax.jit(lambda p: penalty_value_and_grad(pen, ref, p))
    # T_c(W) is not differentiable at t = 0 (the init net touches its own λ*, docs/tc_training.md):
    # its cost and gradient norm are taken at the plain run's t = 1 checkpoint instead.
    p_eval = p0 if FLAGS.target == "lambda_min" else plain_params_at(1.0)
    for rep in range(2):
        t = time.perf_counter()
        f0, g = vg(p_eval)
        jax.block_until_ready(g)
        out["penalty_s"] = time.perf_counter() - t
    model = MLP(cfg.model)
    gl = jax.grad(lambda p: mean_loss(model.apply({"params": p}, x[idx[0]]), y[idx[0]], cfg.margin,
                                      cfg.loss))(p0)
    norm = lambda tree: float(np.sqrt(sum(float(jnp.sum(v ** 2)) for v in jax.tree_util.tree_leaves(tree))))
    k = choose_every_k(out["plain_step_s"], out["penalty_s"], FLAGS.overhead)
    # penalty chunk with that k, side by side with the plain chunk
    cfg_pen = TrainConfig(**{**cfg.__dict__, "tc_penalty": TcPenalty(0.0, FLAGS.target, pen.beta0, k,
                                                                     FLAGS.backend, num_ref_betas=24,
                                                                     skip_nonfinite=True)})
    chunk = make_chunk_fn(cfg_pen, ref)
    n = min(2 * k, idx.shape[0])
    for rep in range(2):
        t = time.perf_counter()
        res = chunk(initial_params(cfg), tx_state(), x, y, idx[:n], jnp.arange(n, dtype=jnp.int32))
        res[2].block_until_ready()
        out["penalty_chunk_step_s"] = (time.perf_counter() - t) / n
    out.update(target=FLAGS.target, backend=FLAGS.backend, reference_s=t_ref,
               gradient_at="t=0" if FLAGS.target == "lambda_min" else "plain run t=1",
               threshold=ref.threshold, beta_star=ref.beta, beta_max=ref.beta_max, beta0=pen.beta0,
               f0=float(f0), grad_loss_norm=norm(gl), grad_f_norm=norm(g), every_k=k,
               overhead=FLAGS.overhead, cost_ratio=out["penalty_s"] / out["plain_step_s"],
               alpha_unit=norm(gl) / norm(g), chunk_steps=n)
    return out


def plain_params_at(t_epoch: float):
    """Params of the plain run's checkpoint nearest ``t_epoch`` (for the T_c target's α unit)."""
    from tapjax.checkpoints import list_checkpoints, load_checkpoint  # pylint: disable=import-outside-toplevel
    d = run_dir(0.0, FLAGS.epochs)
    found = [load_checkpoint(p) for p in list_checkpoints(d)]
    if not found:
        raise SystemExit(f"{d}: no checkpoints; train the plain run (--alpha_rel=0) first")
    params, _ = min(found, key=lambda pm: abs(float(pm[1]["t"]) - t_epoch))
    return jax.tree_util.tree_map(jnp.asarray, params)


def measure_tc(data) -> dict:
    """Cost of one ∂T_c/∂W (IFT, ``--backend``) on the plain run's t = 1 checkpoint vs an SGD step."""
    del data
    hist = __import__("tapjax.checkpoints", fromlist=["load_run"]).load_run(run_dir(0.0, FLAGS.epochs))
    i1 = int(np.argmin(np.abs(np.asarray(hist.t) - 1.0)))
    w0 = [jnp.asarray(w) for w in hist.weights_at(0)]
    w1 = [jnp.asarray(w) for w in hist.weights_at(i1)]
    pen = TcPenalty(1.0, "T_c", every_k=1, backend=FLAGS.backend, num_ref_betas=24)
    t = time.perf_counter()
    ref = penalty_reference(pen, w0)
    t_ref = time.perf_counter() - t
    from tapjax.tc_regularizer import penalty_target  # pylint: disable=import-outside-toplevel
    vg = jax.jit(jax.value_and_grad(lambda ws: penalty_target(pen, ref, ws)))
    fv = jax.jit(lambda ws: penalty_target(pen, ref, ws))
    out = {}
    for _ in range(2):
        t = time.perf_counter()
        v, g = vg(w1)
        jax.block_until_ready(g)
        out["grad_s"] = time.perf_counter() - t
        t = time.perf_counter()
        fv(w1).block_until_ready()
        out["value_s"] = time.perf_counter() - t
    out.update(backend=FLAGS.backend, t=float(hist.t[i1]), T_c=float(v), reference_s=t_ref,
               threshold=ref.threshold, beta_star=ref.beta,
               grad_norm=float(np.sqrt(sum(float(jnp.sum(x ** 2)) for x in g))))
    return out


def run_dir(alpha_rel: float, epochs: int, seed: int | None = None) -> str:
    seed = FLAGS.seed if seed is None else seed
    tag = ("plain" if alpha_rel == 0 else f"{FLAGS.target}_a{alpha_rel:+g}") + (f"_s{seed}" if seed else "")
    return os.path.join(FLAGS.root, f"e{epochs}", tag)


def main(_):
    os.makedirs(FLAGS.root, exist_ok=True)
    if FLAGS.phase == "measure":
        data = load_dataset(FLAGS.dataset)
        m = measure(data)
        with open(measure_path(), "w") as f:
            json.dump(m, f, indent=1)
        print(json.dumps(m, indent=1))
        return
    if FLAGS.phase == "measure_tc":
        m = measure_tc(None)
        with open(os.path.join(FLAGS.root, f"measure_tc_{FLAGS.backend}.json"), "w") as f:
            json.dump(m, f, indent=1)
        print(json.dumps(m, indent=1))
        return
    if FLAGS.phase == "train":
        data = load_dataset(FLAGS.dataset)
        cfg = base_config(FLAGS.epochs)
        if FLAGS.alpha_rel != 0:
            with open(measure_path()) as f:
                m = json.load(f)
            k = FLAGS.every_k or m["every_k"]
            cfg = TrainConfig(**{**cfg.__dict__, "tc_penalty": TcPenalty(
                FLAGS.alpha_rel * m["alpha_unit"], FLAGS.target, m["beta0"], k, FLAGS.backend,
                num_ref_betas=24, skip_nonfinite=True)})
        r = train(cfg, data, run_dir(FLAGS.alpha_rel, FLAGS.epochs), progress=False)
        print(json.dumps(r.history[-1]), f"{r.seconds:.1f}s")
        return
    report()


def _report_runs() -> list[tuple[str, float, int]]:
    """``--alphas`` entries ``[target:]alpha_rel`` (target defaults to ``--target``) × ``--seeds``."""
    out = []
    for item in FLAGS.alphas:
        target, _, a = item.rpartition(":")
        for sd in FLAGS.seeds:
            out.append((target or FLAGS.target, float(a), int(sd)))
    return out


def _final_bond_spectrum(run: str) -> np.ndarray:
    """Ascending spectrum of J (eq. 21) at the run's last checkpoint (dense, float64 on host)."""
    from tapjax import checkpoints as ckpt, spin_model  # pylint: disable=import-outside-toplevel
    params, _ = ckpt.load_checkpoint(ckpt.list_checkpoints(run)[-1])
    ws = [np.asarray(w, np.float64) for w in ckpt.weights_from_params(params)]
    j = np.asarray(spin_model.dense_bond_matrix(spin_model.couplings([w.astype(np.float32) for w in ws])),
                   np.float64)
    return np.linalg.eigvalsh(j)


def report():
    from tapjax.analysis import analyze_run  # pylint: disable=import-outside-toplevel
    from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
    import glob  # pylint: disable=import-outside-toplevel
    measures = {}
    for path in sorted(glob.glob(os.path.join(FLAGS.root, "measure_*_*.json"))):
        with open(path) as f:
            mm = json.load(f)
        if "target" in mm and "alpha_unit" in mm:
            measures[mm["target"]] = mm
    rows, series = [], {}
    for target, a, sd in _report_runs():
        FLAGS.target = target          # run_dir reads it; main() is the only caller
        d = run_dir(a, FLAGS.epochs, sd)
        if not os.path.exists(os.path.join(d, "history.json")):
            print(f"skipped (not trained): {d}")
            continue
        with open(os.path.join(d, "history.json")) as f:
            hist = json.load(f)
        an = analyze_run(d, progress=False)
        ev_j = _final_bond_spectrum(d)
        key = (target if a else "plain", a, sd)
        series[key] = (an, ev_j)
        with open(os.path.join(d, "config.json")) as f:
            pen = json.load(f).get("tc_penalty")
        rows.append({"target": target if a else None, "alpha_rel": a, "seed": sd,
                     "alpha": None if pen is None else pen["alpha"],
                     "every_k": None if pen is None else pen["every_k"],
                     "epochs_done": len(hist), "val_error": hist[-1]["val_error"] if hist else None,
                     "val_error_min": min(h["val_error"] for h in hist) if hist else None,
                     "T_c_final": float(an.T_c[-1]), "T_c_0": float(an.T_c[0]),
                     "T_c_max": float(np.nanmax(an.T_c)) if np.isfinite(an.T_c).any() else None,
                     "lambda_max_J_final": float(an.lambda_max_J[-1]),
                     "lambda_max_J_0": float(an.lambda_max_J[0]),
                     "bond_top5_final": ev_j[-5:][::-1].tolist(),
                     "bond_top30_final": ev_j[-30:][::-1].tolist(),
                     "bond_bulk_edge_final": float(np.quantile(ev_j, 0.99)),
                     "penalty_f_final": hist[-1].get("penalty_f") if hist else None,
                     "penalty_skipped": sum(h.get("penalty_skipped", 0) for h in hist),
                     "t": an.t.tolist(), "T_c": an.T_c.tolist(), "lambda_max_J": an.lambda_max_J.tolist(),
                     "val_error_t": an.val_error.tolist(),
                     "crossing": [str(c) for c in an._col("crossing")]})
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump({"measures": measures, "epochs_planned": FLAGS.epochs, "runs": rows},
                  f, indent=1)
    fig = Figure(figsize=(16, 3.6))
    axs = fig.subplots(1, 4)
    seen = set()
    for (target, a, sd), (an, ev_j) in series.items():
        if (target, a) in seen and sd:
            continue   # curves of seed 0 (or the first seed listed) only; all seeds are in the JSON
        seen.add((target, a))
        t = np.maximum(an.t, 1 / 128)
        lab = "α = 0 (plain)" if a == 0 else f"{'T_c' if target == 'T_c' else 'λ_min(β₀)'}: α = {a:+g}·α₀"
        ls = "o-" if target in ("plain", "T_c") else "s--"
        axs[0].plot(t, an.val_error, ls, ms=3, label=lab)
        axs[1].plot(t, an.T_c, ls, ms=3, label=lab)
        axs[2].plot(t, an.lambda_max_J, ls, ms=3, label=lab)
        axs[3].plot(np.arange(1, 31), ev_j[-30:][::-1], ls, ms=3, label=lab)
    for ax, yl in zip(axs[:3], ["validation error", "T_c", "λ_max(J)"]):
        ax.set_xscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(yl)
    axs[0].set_yscale("log")
    axs[1].set_yscale("log")
    axs[3].set_yscale("log")
    axs[3].set_xlabel("rank i (last checkpoint)")
    axs[3].set_ylabel("λ_i(J), 30 largest")
    axs[0].legend(fontsize=7)
    fig.suptitle(f"MNIST standard net, lr {FLAGS.lr:g}, {FLAGS.epochs} epochs: penalty α·f, f = T_c or "
                 "λ_min(I − M(β₀)); α₀ = ‖∇L‖/‖∇f‖ at init (t = 1 for T_c)", fontsize=9)
    fig.tight_layout()
    fig.savefig(FLAGS.figure, dpi=120)
    for r in rows:
        print({k: v for k, v in r.items() if not isinstance(v, list)})


if __name__ == "__main__":
    app.run(main)
