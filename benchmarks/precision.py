r"""Error of each float32 path against float64 dense references (issue 3, item 8).

    python -m benchmarks.precision [--checkpoint=PATH.npz] [--out=benchmarks/results/precision.json]

For the 784-512-512-512-10 net (a random Kaiming init, C=2, and optionally a trained checkpoint):
λ_min(I − M(β)) on a β grid by float32 dense eigvalsh and float32 Lanczos vs float64 dense
eigvalsh; log det by the float32 recurrence vs float64 slogdet; β_c by float32 bisection vs
float64 bisection; λ_max(J) float32 Lanczos vs float64 dense.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

jax.config.update("jax_enable_x64", True)

from tapjax import recurrence, spectra, tap  # noqa: E402  (x64 must be on first)
from tapjax.checkpoints import load_checkpoint  # noqa: E402
from tapjax.models import weights_from_params  # noqa: E402
from tapjax.spin_model import couplings, random_couplings  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", "", "Optional trained checkpoint (.npz) to include.")
flags.DEFINE_string("out", "benchmarks/results/precision.json", "Output JSON.")


def measure(ws, name):
    c64 = couplings(ws, dtype=jnp.float64)
    c32 = couplings(ws, dtype=jnp.float32)
    betas = np.linspace(0.2, 1.0, 9)
    ref = np.asarray(tap.least_eigenvalue(c64, betas, "dense"))
    d32 = np.asarray(tap.least_eigenvalue(c32, betas, "dense"))
    l32 = np.asarray(tap.least_eigenvalue(c32, betas, "lanczos", num_iter=120))
    row = {"name": name,
           "lambda_min_dense_f32_max_abs_err": float(np.abs(d32 - ref).max()),
           "lambda_min_lanczos_f32_max_abs_err": float(np.abs(l32 - ref).max()),
           "lambda_min_range": [float(ref.min()), float(ref.max())]}
    lds = []
    for b in (0.3, 0.5):
        A = np.asarray(tap.tap_matrix(c64, b))
        ref_ld = np.linalg.slogdet(A)[1]
        lds.append(abs(float(recurrence.logdet(c32, b)) - ref_ld) / abs(ref_ld))
    row["logdet_recurrence_f32_max_rel_err"] = float(max(lds))
    thr = float(ref.min()) * 0.5 + 0.5 * float(ref[0])  # a threshold that is crossed
    b64 = recurrence.critical_beta_bisect(c64, thr, 1.2, rtol=1e-8)
    b32 = recurrence.critical_beta_bisect(c32, thr, 1.2, rtol=1e-4)
    row["beta_c_bisect_f32_rel_err"] = abs(b32 - b64) / b64
    ev = np.asarray(spectra.bond_spectrum(c64))
    row["lambda_max_J_lanczos_f32_rel_err"] = abs(float(spectra.lambda_max_bond(c32)) - ev[-1]) / ev[-1]
    return row


def main(argv):
    del argv
    rows = [measure(random_couplings(jax.random.PRNGKey(0), (784, 512, 512, 512, 10), 2.0,
                                     dtype=jnp.float64).weights, "random init (C=2)")]
    if FLAGS.checkpoint:
        params, meta = load_checkpoint(FLAGS.checkpoint)
        rows.append(measure(weights_from_params(params), f"checkpoint t={meta['t']:g}"))
    for r in rows:
        print(json.dumps(r))
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump({"device": str(jax.devices()[0]), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    app.run(main)
