r"""Which input pixels and hidden units set the melting temperature: maps of |W ⊙ ∂T_c/∂W|.

    python -m experiments.attribution --run=/work/runs/seeds_standard_lr1e-4/standard_seed0 \
        --indices=0,7,-1 --out=docs/figures/attribution

Writes ``OUT.png`` (one row per checkpoint: the 28 × 28 input-pixel map, the sorted per-unit
maps of the hidden layers, the output units) and ``OUT.json`` (the numbers quoted in
docs/gradients.md). The work is one library call, :func:`tapjax.melting.attribute_run`; the run
directory is only read.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("run", "/work/runs/seeds_standard_lr1e-4/standard_seed0", "Run directory (read only).")
    flags.DEFINE_list("indices", ["0", "7", "-1"], "Checkpoint indices (0 = the reference, t = 0).")
    flags.DEFINE_string("out", "docs/figures/attribution", "Output prefix (.png and .json).")
    flags.DEFINE_enum("backend", "recurrence", ["recurrence", "lanczos", "dense"], "Eigenvector at β_c.")
    flags.DEFINE_bool("x64", False, "Float64 (default float32).")


def summarize(ra) -> dict:
    """Numbers per checkpoint: T_c, slope, per-layer totals, concentration, pixel centre share."""
    import numpy as np
    rows = []
    for i in range(len(ra.t)):
        pix = ra.per_neuron[0][i]
        img = pix.reshape(28, 28) if pix.size == 784 else None
        row = {"t": float(ra.t[i]), "val_error": float(ra.val_error[i]), "quantity": ra.quantity[i],
               "T_c": float(ra.T_c[i]), "slope": float(ra.slope[i]), "gap": float(ra.gap[i]),
               "per_layer_share": (ra.per_layer[i] / ra.per_layer[i].sum()).tolist()}
        for k, pn in enumerate(ra.per_neuron):
            v = np.sort(pn[i])[::-1]
            top = max(1, len(v) // 50)
            row[f"layer{k}_top2pct_share"] = float(v[:top].sum() / v.sum())
            row[f"layer{k}_participation"] = float(v.sum() ** 2 / (len(v) * (v ** 2).sum()))
        if img is not None:
            row["pixel_centre_share"] = float(img[7:21, 7:21].sum() / img.sum())   # 14×14 centre = 25% of pixels
        rows.append(row)
    return {"threshold": ra.threshold, "threshold_beta": ra.threshold_beta, "paths": ra.paths, "rows": rows}


def plot(ra, path: str) -> None:
    from .common import pyplot, save_figure  # pylint: disable=import-outside-toplevel
    plt = pyplot()
    import numpy as np
    T, L = len(ra.t), len(ra.per_neuron) - 1
    fig, axes = plt.subplots(T, 3, figsize=(11, 3.2 * T), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1.6, 1]})
    for i in range(T):
        pix = ra.per_neuron[0][i]
        ax = axes[i, 0]
        if pix.size == 784:
            im = ax.imshow(pix.reshape(28, 28) / pix.sum(), cmap="magma")
            fig.colorbar(im, ax=ax, fraction=0.046)
        else:
            ax.plot(pix)
        what = "|W⊙∂λ*/∂W| (t=0, β*)" if ra.quantity[i] == "lambda_star" else "|W⊙∂T_c/∂W|"
        ax.set_title(f"t={ra.t[i]:.3g} ep, T_c={ra.T_c[i]:.4g}\n{what}: input pixels", fontsize=8)
        ax.axis("off")
        ax = axes[i, 1]
        for k in range(1, L):
            v = np.sort(ra.per_neuron[k][i])[::-1]
            ax.semilogy(np.arange(1, len(v) + 1), v / v.sum(), label=f"hidden layer {k}")
        ax.set_xscale("log")
        ax.set_xlabel("unit rank")
        ax.set_ylabel("share of the layer's attribution")
        ax.legend(fontsize=7)
        ax.set_title("hidden units (sorted)", fontsize=8)
        ax = axes[i, 2]
        out = ra.per_neuron[L][i]
        ax.bar(np.arange(len(out)), out / out.sum())
        ax.set_xticks(np.arange(len(out)))
        ax.set_xlabel("output unit")
        shares = ", ".join(f"{x:.2f}" for x in ra.per_layer[i] / ra.per_layer[i].sum())
        ax.set_title(f"output units\nshare of W^(1..L): {shares}", fontsize=8)
    save_figure(fig, path, dpi=110)


def main(argv):
    del argv
    from .common import use_precision  # pylint: disable=import-outside-toplevel
    dtype = use_precision(FLAGS.x64)
    from tapjax import melting  # pylint: disable=import-outside-toplevel
    ra = melting.attribute_run(FLAGS.run, [int(i) for i in FLAGS.indices], backend=FLAGS.backend,
                               dtype=dtype)
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    plot(ra, FLAGS.out + ".png")
    res = summarize(ra)
    res["command"] = ("python -m experiments.attribution --run=%s --indices=%s --out=%s --backend=%s"
                      % (FLAGS.run, ",".join(FLAGS.indices), FLAGS.out, FLAGS.backend))
    with open(FLAGS.out + ".json", "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res["rows"], indent=1))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
