r"""Spin-glass training vs backprop vs exact solve (issue 7).

    python -m experiments.sgtrain --workdir=runs/sgtrain            # full: 5 seeds, ~5-10 min on 2 CPU cores
    python -m experiments.sgtrain --workdir=/tmp/sg --quick         # smoke run, ~2 min (mostly compiling)

Trains 1-layer and 2-layer nets on scikit-learn's diabetes data (needs
``pip install 'tapjax[experiments]'``) and on 1,000 MNIST images (embedded subset) with:
n-bit simulated annealing, annealed Langevin, the exact quadratic minimiser (and its ridge
version), and full-batch Adam.
Writes ``WORKDIR/sgtrain.json`` (config, per-run rows, summary), ``WORKDIR/sgtrain.md`` (table)
and ``WORKDIR/sgtrain.png``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("workdir", "runs/sgtrain", "Output directory.")
    flags.DEFINE_integer("seeds", 5, "Number of seeds (0..seeds-1).")
    flags.DEFINE_bool("quick", False, "Fast smoke run: 2 seeds, half the epochs, 4-bit weights, 300 MNIST images.")
    flags.DEFINE_list("tasks", ["diabetes", "mnist"], "Tasks: diabetes, mnist.")
    flags.DEFINE_list("depths", ["1", "2"], "Network depths: 1 and/or 2.")
    flags.DEFINE_list("methods", ["anneal", "langevin", "exact", "ridge", "backprop"],
                      "Methods to compare.")
    flags.DEFINE_integer("mnist_train", 1000, "MNIST training images.")
    flags.DEFINE_bool("x64", True, "Float64 (the exact solve of a pixel covariance needs it).")


def plot(rows, summary, path: str) -> None:
    from .common import pyplot, save_figure  # pylint: disable=import-outside-toplevel
    plt = pyplot()
    import numpy as np  # pylint: disable=import-outside-toplevel

    panels = sorted({(r["task"], r["depth"]) for r in rows})
    colors = {"anneal": "C3", "langevin": "C1", "exact": "k", "ridge": "C2", "backprop": "C0"}
    fig, axes = plt.subplots(2, len(panels), figsize=(3.6 * len(panels), 6.2), squeeze=False)
    for col, (task, depth) in enumerate(panels):
        ax = axes[0, col]
        low = np.inf
        for method, c in colors.items():
            curves = [r["curve"] for r in rows
                      if (r["task"], r["depth"], r["method"]) == (task, depth, method)]
            if not curves:
                continue
            cur = np.array(curves)
            t = np.linspace(0, 1, cur.shape[1]) if cur.shape[1] > 1 else np.array([1.0])
            m, s = cur.mean(0), cur.std(0)
            if method in ("exact", "ridge") and depth == 1:  # one solve: a labelled level
                ax.axhline(m[-1], color=c, ls="--", lw=1, label=f"{method} ({m[-1]:.3g})")
                continue
            ax.plot(t, m, color=c, label=method)
            ax.fill_between(t, m - s, m + s, color=c, alpha=0.2)
            low = min(low, float(m.min()))
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.5 * low)
        ax.legend(fontsize=7)
        ax.set_title(f"{task}, {depth} layer{'s' * (depth > 1)}")
        ax.set_xlabel("fraction of training")
        if col == 0:
            ax.set_ylabel("train MSE (mean ± std)")
        ax = axes[1, col]
        key = "val_acc" if task == "mnist" else "val_loss"
        ss = [s for s in summary if (s["task"], s["depth"]) == (task, depth) and s[key]]
        ax.bar(range(len(ss)), [s[key][0] for s in ss], yerr=[s[key][1] for s in ss],
               color=[colors[s["method"]] for s in ss], capsize=3)
        ax.set_xticks(range(len(ss)), [s["method"] for s in ss], rotation=30, fontsize=8)
        ax.set_ylabel("val accuracy" if task == "mnist" else "val MSE")
        if task == "mnist":
            lo = min(s[key][0] - s[key][1] for s in ss)
            ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    save_figure(fig, path, dpi=110)


def main(argv):
    del argv
    import jax  # pylint: disable=import-outside-toplevel
    from .common import use_precision  # pylint: disable=import-outside-toplevel
    dtype = use_precision(FLAGS.x64)
    from tapjax.data import load_dataset  # pylint: disable=import-outside-toplevel
    from tapjax.progress import ProgressBar  # pylint: disable=import-outside-toplevel
    from . import sgtrain_compare as compare  # pylint: disable=import-outside-toplevel

    os.makedirs(FLAGS.workdir, exist_ok=True)
    seeds = list(range(2 if FLAGS.quick else FLAGS.seeds))
    n_mnist = 300 if FLAGS.quick else FLAGS.mnist_train
    mnist = load_dataset("embedded") if "mnist" in FLAGS.tasks else None
    task_fns = {"diabetes": lambda s: compare.diabetes_task(s, dtype=dtype),
                "mnist": lambda s: compare.mnist_task(s, n_mnist, dtype=dtype, data=mnist)}
    if "diabetes" in FLAGS.tasks:
        compare.load_diabetes_arrays()  # fail early, with the install hint, if sklearn is missing
    jobs = [(t, int(d)) for t in FLAGS.tasks for d in FLAGS.depths]
    bar = ProgressBar(len(jobs) * len(FLAGS.methods) * len(seeds), "sgtrain", min_interval=5.0)
    rows, setups = [], {}
    for task, depth in jobs:
        setup = compare.default_setup(task, depth, FLAGS.quick)
        setups[f"{task}/{depth}"] = dataclasses.asdict(setup)

        def on_run(r, task=task, depth=depth):
            bar.update(1, run=f"{task}/{depth}/{r['method']}/s{r['seed']}",
                       train=r["train_loss"], wall=r["wall_s"])

        rows += compare.run_setup(task_fns[task], setup, seeds, FLAGS.methods, on_run)
    bar.close()
    summary = compare.summarize(rows)
    table = compare.markdown_table(summary)
    env = {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
           "x64": FLAGS.x64, "jax": jax.__version__, "quick": FLAGS.quick, "seeds": seeds,
           "mnist_train": n_mnist, "argv": sys.argv[1:]}
    with open(os.path.join(FLAGS.workdir, "sgtrain.json"), "w") as f:
        json.dump({"env": env, "setups": setups, "summary": summary, "rows": rows}, f, indent=1)
    with open(os.path.join(FLAGS.workdir, "sgtrain.md"), "w") as f:
        f.write(table + "\n")
    plot(rows, summary, os.path.join(FLAGS.workdir, "sgtrain.png"))
    print(table)
    print(f"wrote {FLAGS.workdir}/sgtrain.json, sgtrain.md, sgtrain.png")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
