r"""Figure 3: the analytic MSK transition (eq. 15) vs the TAP matrix of one random network.

    python -m experiments.msk --out=results/figures

For the untrained ensemble (weights :math:`\mathcal N(0, C/N_{k-1})`, sizes
784-512-512-512-10, C = 2) draws one network and plots, against β on the same axes,

* the least eigenvalue of the replica-symmetric Hessian (eq. 15), shown congruence-normalized
  as :math:`D^{-1/2}\mathbf H D^{-1/2}` with :math:`D = \mathrm{diag}(N_k)` (so it starts at 1;
  congruence keeps the sign, hence the same zero at the analytic :math:`\beta_c`), and
* the least eigenvalue of :math:`I_N - M(\beta)` (eqs. 22–25) of that network.

Writes ``OUT/fig3_msk.png`` and ``OUT/fig3_msk.json`` (analytic β_c and T_c, the β and value of
the I − M minimum, the curves).
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np
from absl import app, flags

from tapjax import msk, tap
from tapjax.checkpoints import atomic_write_json
from tapjax.progress import ProgressBar
from tapjax.reference import beta_grid
from tapjax.spin_model import random_couplings

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("out", "results/figures", "Output directory.")
    flags.DEFINE_list("sizes", ["784", "512", "512", "512", "10"], "Layer sizes N_0..N_L.")
    flags.DEFINE_float("scale", 2.0, "C of the N(0, C/N_{k-1}) weights.")
    flags.DEFINE_integer("seed", 0, "PRNG seed of the random network.")
    flags.DEFINE_integer("num_betas", 96, "β grid size.")
    flags.DEFINE_float("beta_max", None, "Largest β (default 2× the analytic β_c).")
    flags.DEFINE_enum("backend", "lanczos", ["lanczos", "dense"], "λ_min(I − M) backend.")


def normalized_hessian_least_eigenvalue(betas, sizes, scale) -> np.ndarray:
    r"""λ_min of :math:`D^{-1/2}\mathbf H(\beta) D^{-1/2}` (eq. 15), one value per β."""
    d = 1.0 / np.sqrt(np.asarray(sizes, float))
    return np.array([np.linalg.eigvalsh(d[:, None] * np.asarray(msk.hessian(b, sizes, scale)) * d[None, :])[0]
                     for b in np.asarray(betas, float)])


def msk_curves(sizes, scale: float = 2.0, seed: int = 0, num_betas: int = 96,
               beta_max: float | None = None, backend: str = "lanczos", chunk: int = 16,
               progress: bool = True) -> dict:
    """The Fig. 3 data: β grid, normalized eq.-15 λ_min and λ_min(I − M) of one random net."""
    sizes = tuple(int(s) for s in sizes)
    beta_c = msk.critical_beta(sizes, scale)
    beta_max = beta_max or 2.0 * beta_c
    betas = beta_grid(beta_max, num_betas)
    c = random_couplings(jax.random.PRNGKey(seed), sizes, scale)
    lam = np.empty(num_betas)
    bar = ProgressBar(num_betas, "fig3 λ_min(I−M)", enabled=progress, min_interval=5.0)
    for i in range(0, num_betas, chunk):
        lam[i:i + chunk] = np.asarray(tap.least_eigenvalue(c, betas[i:i + chunk], backend))
        bar.update(len(betas[i:i + chunk]))
    bar.close()
    h = normalized_hessian_least_eigenvalue(betas, sizes, scale)
    h_paper = np.asarray(msk.hessian_least_eigenvalue(betas, sizes, scale))
    k = int(np.argmin(lam))
    return {"sizes": list(sizes), "scale": scale, "seed": seed, "backend": backend,
            "betas": betas, "hessian_lambda_min": h, "hessian_lambda_min_over_maxN": h_paper,
            "tap_lambda_min": lam, "analytic_beta_c": beta_c, "analytic_T_c": 1.0 / beta_c,
            "tap_min_beta": float(betas[k]), "tap_min_value": float(lam[k]),
            "hessian_zero_beta": float(np.interp(0.0, -h, betas))}


def plot_fig3(d: dict, path: str) -> None:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    b = d["betas"]
    for ax, zoom in zip(axes, (False, True)):
        ax.plot(b, d["hessian_lambda_min"], "C0-", label=r"eq. 15: $\lambda_{\min}(D^{-1/2}HD^{-1/2})$ (ensemble)")
        ax.plot(b, d["tap_lambda_min"], "C3.-", ms=3, label=r"$\lambda_{\min}(I_N-M)$, one random net")
        ax.axhline(0, color="k", lw=0.6)
        ax.axvline(d["analytic_beta_c"], color="C0", ls=":", lw=1,
                   label=fr"analytic $\beta_c$={d['analytic_beta_c']:.4f}")
        ax.axvline(d["tap_min_beta"], color="C3", ls="--", lw=1,
                   label=fr"argmin $\lambda_{{\min}}(I-M)$={d['tap_min_beta']:.4f}")
        ax.set_xlabel(r"$\beta$")
        if zoom:
            bc = d["analytic_beta_c"]
            ax.set_xlim(0.7 * bc, 1.3 * bc)
            ax.set_ylim(-0.3, 0.4)
            ax.set_title("zoom near the transition")
        else:
            ax.set_ylabel("least eigenvalue")
            ax.set_title(f"Fig. 3: sizes {'-'.join(map(str, d['sizes']))}, C={d['scale']:g}")
            ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_fig3(out_dir: str, sizes=(784, 512, 512, 512, 10), scale: float = 2.0, seed: int = 0,
             num_betas: int = 96, beta_max: float | None = None, backend: str = "lanczos",
             chunk: int = 16, force: bool = False, progress: bool = True) -> dict:
    """Computes (unless ``OUT/fig3_msk.json`` exists for the same settings), saves and plots Fig. 3.

    ``chunk`` β values go through one Lanczos call (a new chunk length compiles anew).
    """
    os.makedirs(out_dir, exist_ok=True)
    jpath, ppath = os.path.join(out_dir, "fig3_msk.json"), os.path.join(out_dir, "fig3_msk.png")
    settings = {"sizes": [int(s) for s in sizes], "scale": scale, "seed": seed,
                "num_betas": num_betas, "backend": backend}
    if not force and os.path.exists(jpath) and os.path.exists(ppath):
        with open(jpath) as f:
            old = json.load(f)
        if old.get("settings") == settings:
            return old
    t0 = time.monotonic()
    d = msk_curves(sizes, scale, seed, num_betas, beta_max, backend, chunk=chunk, progress=progress)
    plot_fig3(d, ppath)
    out = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}
    out["settings"] = settings
    out["seconds"] = time.monotonic() - t0
    atomic_write_json(jpath, out)
    return out


def main(argv):
    del argv
    d = run_fig3(FLAGS.out, [int(s) for s in FLAGS.sizes], FLAGS.scale, FLAGS.seed,
                 FLAGS.num_betas, FLAGS.beta_max, FLAGS.backend, force=True)
    print(json.dumps({k: d[k] for k in ("analytic_beta_c", "analytic_T_c", "tap_min_beta",
                                        "tap_min_value", "hessian_zero_beta")}))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
