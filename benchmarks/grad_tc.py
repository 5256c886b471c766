r"""Benchmark: one ∂T_c/∂W (implicit function theorem, :mod:`tapjax.melting`) vs one T_c.

    python benchmarks/grad_tc.py                 # paper net + 16 x 512 chain (~5 min, 2 cores)
    python benchmarks/grad_tc.py --chain_depth=64  # the 64 x 512 target (~4x longer)

Writes ``benchmarks/results/grad_tc.json`` (``--out``).

Workloads: MSK draws (``C = 2``) of the paper's 784-512-512-512-10 net and an ``L × 512``
chain; threshold λ* = 0.1 (as in ``benchmarks/tap_suite.py``: just above the finite-size
minimum of these untrained draws, so the crossing is transversal; it stands in for the
trained-net / t = 0 threshold); search range (0, 2 β_c^MSK].

Measured side by side in one process, float32, x64 off:
  * ``T_c``: ``jit(melting_temperature)`` — the library search
    (:func:`tapjax.recurrence.critical_beta_search`, secant), at the gradient's default
    ``rtol = 1e-6`` and at the analysis default ``rtol = 1e-4``;
  * ``grad``: ``jit(value_and_grad(melting_temperature))`` with each eigenvector backend at
    β_c (``recurrence`` = inverse iteration on the LDLᵀ factors, ``lanczos`` 160 steps,
    ``dense`` eigh — paper net only). The ratio grad / T_c(rtol=1e-6) is the figure of merit
    (goal ≤ 3).
Every function is compiled ahead of time (compile time reported separately), warmed up once,
then the functions of one net are called interleaved ``repeats`` times (``block_until_ready``),
so that the shared machine's load changes hit all of them alike; min and median reported. Gradients of the backends are
compared with each other (relative 2-norm difference).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

HERE = os.path.dirname(os.path.abspath(__file__))
THRESHOLD = 0.1


def run(chain_depth: int = 16, repeats: int = 3, dense_paper: bool = True) -> dict:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import jax
    import jax.numpy as jnp
    import numpy as np

    from tapjax import melting, msk
    from tapjax.spin_model import random_couplings

    def aot(f, *a):
        t = time.perf_counter()
        comp = jax.jit(f).lower(*a).compile()
        return comp, time.perf_counter() - t

    out = {"device": str(jax.devices()[0]), "platform": platform.platform(),
           "cpu_count": os.cpu_count(), "jax_version": jax.__version__, "dtype": "float32",
           "x64": bool(jax.config.jax_enable_x64), "threshold": THRESHOLD, "repeats": repeats,
           "protocol": "AOT-compiled; the functions of one net are timed interleaved "
                       "(T_c, grad, T_c, grad, ...) so that load changes hit all alike; min/median",
           "workloads": {}}
    nets = [("paper 784-512-512-512-10", (784, 512, 512, 512, 10)),
            (f"chain {chain_depth}x512", (512,) * (chain_depth + 1))]
    for name, sizes in nets:
        c = random_couplings(jax.random.PRNGKey(0), sizes, 2.0, jnp.float32)
        bmax = 2.0 * msk.critical_beta(sizes, 2.0)
        res = {"sizes": list(sizes), "N": int(sum(sizes)), "beta_max": bmax}
        thr = jnp.float32(THRESHOLD)
        fns = {}
        for rtol in (1e-4, 1e-6):
            f = lambda cc, t, rtol=rtol: melting.melting_temperature(cc, t, beta_max=bmax, rtol=rtol)
            fns[f"T_c_rtol{rtol:g}"] = aot(f, c, thr)
        backends = ["recurrence", "lanczos"] + (["dense"] if dense_paper and sum(sizes) < 4000 else [])
        for be in backends:
            g = jax.value_and_grad(lambda cc, t, be=be: melting.melting_temperature(
                cc, t, beta_max=bmax, backend=be))
            fns[f"grad_{be}"] = aot(g, c, thr)
        times = {k: [] for k in fns}
        for k, (comp, _) in fns.items():      # warm-up call (not timed)
            jax.block_until_ready(comp(c, thr))
        for _ in range(repeats):
            for k, (comp, _) in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(comp(c, thr))
                times[k].append(time.perf_counter() - t0)
        for k, (comp, ct) in fns.items():
            res[k] = {"compile_s": ct, "min_s": min(times[k]), "median_s": float(np.median(times[k])),
                      "all_s": times[k]}
            print(name, k, res[k]["min_s"], flush=True)
        for rtol in (1e-4, 1e-6):
            res[f"T_c_rtol{rtol:g}"]["value"] = float(fns[f"T_c_rtol{rtol:g}"][0](c, thr))
        cp = melting.critical_point(c, thr, bmax, backend="recurrence")
        res["critical_point"] = {k: float(v) for k, v in cp._asdict().items()}
        flat_w = np.concatenate([np.ravel(np.asarray(w, np.float64)) for w in c.weights])
        grads = {}
        for be in backends:
            r = res[f"grad_{be}"]
            val, gr = fns[f"grad_{be}"][0](c, thr)
            grads[be] = np.concatenate([np.ravel(np.asarray(w, np.float64)) for w in gr.weights])
            for key, base in (("", "T_c_rtol1e-06"), ("_rtol1e-4", "T_c_rtol0.0001")):
                r["ratio_to_T_c" + key] = r["min_s"] / res[base]["min_s"]
                r["median_ratio_to_T_c" + key] = r["median_s"] / res[base]["median_s"]
            r["finite"] = bool(np.all(np.isfinite(grads[be])))
            r["euler_check"] = float(np.dot(grads[be], flat_w) / float(val))   # = 1 (homogeneity)
        ref = grads["dense"] if "dense" in grads else grads["recurrence"]
        res["grad_rel_diff_to_" + ("dense" if "dense" in grads else "recurrence")] = {
            be: float(np.linalg.norm(g - ref) / np.linalg.norm(ref)) for be, g in grads.items()}
        out["workloads"][name] = res
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chain_depth", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no_dense", action="store_true", help="skip the dense-eigh gradient")
    p.add_argument("--out", default=os.path.join(HERE, "results", "grad_tc.json"))
    a = p.parse_args()
    res = run(a.chain_depth, a.repeats, not a.no_dense)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
