r"""Training throughput: R runs vmapped into one program vs the same R runs one after another.

    python benchmarks/multirun.py            # paper net, the four Table 1 configurations
    python benchmarks/multirun.py --quick    # fewer steps / repeats

Workload: the paper's 784-512-512-512-10 MLP, batch 32, SGD momentum 0.9, L2 hinge loss
(Table 1), on the embedded 5k-image MNIST subset (no download). Runs: the four Table 1
configurations {binarized, standard} × lr {1e-4, 1e-6} (seeds 0..3), and also R = 1, 2, 8
(the four configurations with more seeds) to see how the vmapped program scales.

Sequential = :func:`tapjax.training.make_chunk_fn` per configuration, one after another (what
``train`` runs); vmapped = :func:`tapjax.multirun.make_multi_chunk_fn` (one program, kind switch
by select). Both are timed over the same ``--steps`` optimizer steps per run, after a warm-up
call that compiles (reported separately), with ``block_until_ready``; min and median over
``--repeats``. Output: ``multirun.json`` and ``multirun.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from tapjax import multirun  # noqa: E402
from tapjax.data import load_embedded  # noqa: E402
from tapjax.models import ModelConfig, init_params, preprocess  # noqa: E402
from tapjax.training import TrainConfig, epoch_batches, make_chunk_fn, make_optimizer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def configs(R: int) -> list[TrainConfig]:
    """R configurations cycling through Table 1's four (kind, lr) pairs, seed = index."""
    pairs = [("binarized", 1e-4), ("binarized", 1e-6), ("standard", 1e-4), ("standard", 1e-6)]
    return [TrainConfig(model=ModelConfig(kind=pairs[i % 4][0]), lr=pairs[i % 4][1], seed=i)
            for i in range(R)]


def time_sequential(cfgs, x, y, steps, repeats):
    """Per configuration: compile, then ``repeats`` timed chunks of ``steps``; sums over runs."""
    compile_s, per_rep = 0.0, np.zeros(repeats)
    for cfg in cfgs:
        key_init, key_shuffle = jax.random.split(jax.random.PRNGKey(cfg.seed))
        p = init_params(cfg.model, key_init)
        o = make_optimizer(cfg).init(p)
        xb = preprocess(x, cfg.model.kind)
        idx = epoch_batches(key_shuffle, 0, x.shape[0], cfg.batch_size)[:steps]
        chunk = make_chunk_fn(cfg)
        t = time.perf_counter()
        p, o, losses = chunk(p, o, xb, y, idx)
        jax.block_until_ready(losses)
        compile_s += time.perf_counter() - t
        for r in range(repeats):
            t = time.perf_counter()
            p, o, losses = chunk(p, o, xb, y, idx)
            jax.block_until_ready(losses)
            per_rep[r] += time.perf_counter() - t
    return compile_s, per_rep


def time_vmapped(cfgs, x, y, steps, repeats):
    params, opt, hyper, shuffle = multirun.init_runs(cfgs)
    idx = multirun.run_batches(shuffle, 0, x.shape[0], cfgs[0].batch_size)[:, :steps]
    chunk = multirun.make_multi_chunk_fn(cfgs[0].margin)
    t = time.perf_counter()
    params, opt, losses = chunk(params, opt, hyper, x, y, idx)
    jax.block_until_ready(losses)
    compile_s = time.perf_counter() - t
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        params, opt, losses = chunk(params, opt, hyper, x, y, idx)
        jax.block_until_ready(losses)
        ts.append(time.perf_counter() - t)
    return compile_s, np.asarray(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per run per timed call")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--runs", default=None, help="comma list of R values (default 1,2,4,8; quick 1,4)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    a = ap.parse_args(argv)
    steps = a.steps or (20 if a.quick else 50)
    repeats = a.repeats or (2 if a.quick else 3)
    Rs = [int(v) for v in (a.runs or ("1,4" if a.quick else "1,2,4,8")).split(",")]
    data = load_embedded()
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    info = {"device": str(jax.devices()[0]), "backend": jax.default_backend(), "cores": os.cpu_count(),
            "cpu": platform.processor(), "jax": jax.__version__, "dtype": "float32",
            "x64": bool(jax.config.jax_enable_x64), "loadavg_start": os.getloadavg(),
            "net": "784-512-512-512-10", "batch": 32, "steps": steps, "repeats": repeats}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    rows = []
    for R in Rs:
        cfgs = configs(R)
        cs, seq = time_sequential(cfgs, x, y, steps, repeats)
        cv, vm = time_vmapped(cfgs, x, y, steps, repeats)
        row = {"R": R, "kinds": sorted({c.model.kind for c in cfgs}),
               "seq_compile_s": cs, "seq_min_s": float(seq.min()), "seq_median_s": float(np.median(seq)),
               "vmap_compile_s": cv, "vmap_min_s": float(vm.min()), "vmap_median_s": float(np.median(vm))}
        row["seq_run_steps_per_s"] = R * steps / row["seq_min_s"]
        row["vmap_run_steps_per_s"] = R * steps / row["vmap_min_s"]
        row["speedup"] = row["seq_min_s"] / row["vmap_min_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    info["loadavg_end"] = os.getloadavg()
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "multirun.json"), "w") as f:
        json.dump({"info": info, "rows": rows}, f, indent=1)
    spe = 60000 // 32
    md = ["# Vmapped training runs vs sequential runs\n",
          f"Device: {info['device']} ({info['cpu']}, {info['cores']} cores); float32, x64 off; jax {info['jax']}. "
          f"Net 784-512-512-512-10, batch 32, {steps} SGD-momentum steps per run per timed call, "
          f"min/median over {repeats} calls after a compiling warm-up. Load average "
          f"{info['loadavg_start'][0]:.1f} → {info['loadavg_end'][0]:.1f} (shared machine: noisy).\n",
          "| runs R | kinds | sequential (min / median) | vmapped (min / median) | compile seq / vmap | "
          "run-steps/s seq → vmap | speed-up | est. 1 MNIST epoch (1875 steps) of all R runs, vmapped |",
          "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['R']} | {'+'.join(r['kinds'])} | {r['seq_min_s']:.2f} / {r['seq_median_s']:.2f} s | "
                  f"{r['vmap_min_s']:.2f} / {r['vmap_median_s']:.2f} s | {r['seq_compile_s']:.1f} / "
                  f"{r['vmap_compile_s']:.1f} s | {r['seq_run_steps_per_s']:.0f} → {r['vmap_run_steps_per_s']:.0f} | "
                  f"{r['speedup']:.2f}× | {spe * r['vmap_min_s'] / steps:.0f} s |")
    with open(os.path.join(a.out, "multirun.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
