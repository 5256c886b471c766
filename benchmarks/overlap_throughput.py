r"""Spin-updates per second: tapjax block heat-bath + tempering vs single-spin Metropolis in NumPy.

    python -m benchmarks.overlap_throughput --out=/tmp/overlap_throughput.json

Both samplers run on the MSK model of an untrained net, :math:`W^{(k)} \sim \mathcal N(0, 2/N_{k-1})`,
at :math:`T = T_c` (eq. 17). A spin update is one heat-bath draw (tapjax) or one Metropolis
proposal (baseline).

* **tapjax**: :func:`tapjax.overlap.sampler.advance`, the program :func:`~tapjax.overlap.qab_curve`
  runs. Each step is a block-Gibbs sweep of T × R chains, an exchange round and a
  measurement of the overlap matrices every sweep. Compilation is timed separately (a
  zero-length call). Timed calls run ``--sweeps`` sweeps; min and median over ``--repeats``.
* **NumPy baseline**: one chain, sequential single-spin Metropolis with the dense bond
  matrix J, ``h_i = J[i] @ s`` per proposal (the textbook loop, no incremental fields).
"""

from __future__ import annotations

import json
import os
import platform
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("nets", ["784,128,128,10", "784,512,512,512,10"], "Layer sizes N_0..N_L per net.")
flags.DEFINE_list("chains", ["1x2", "8x8", "32x8"], "TxR (temperatures x replicas) for tapjax.")
flags.DEFINE_integer("sweeps", 200, "Sweeps per timed tapjax call.")
flags.DEFINE_integer("baseline_sweeps", 2, "Sweeps per timed NumPy call.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (min and median reported).")
flags.DEFINE_string("out", "", "Write the results as JSON here (also printed).")


def numpy_metropolis_sweep(J: np.ndarray, s: np.ndarray, beta: float, rng: np.random.Generator) -> np.ndarray:
    """One sequential single-spin Metropolis sweep of H = −½ sᵀJs (in place); returns s."""
    n = s.size
    u = rng.random(n)
    for i in range(n):
        de = 2.0 * s[i] * (J[i] @ s)
        if de <= 0.0 or u[i] < np.exp(-beta * de):
            s[i] = -s[i]
    return s


def bench_numpy(sizes, beta, sweeps, repeats, seed=0):
    from tapjax.spin_model import couplings, dense_bond_matrix  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(seed)
    c = couplings([rng.normal(size=(a, b)) * np.sqrt(2.0 / a) for a, b in zip(sizes[:-1], sizes[1:])])
    J = np.asarray(dense_bond_matrix(c), np.float64)
    s = rng.choice([-1.0, 1.0], size=J.shape[0])
    numpy_metropolis_sweep(J, s, beta, rng)          # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(sweeps):
            numpy_metropolis_sweep(J, s, beta, rng)
        times.append(time.perf_counter() - t0)
    n_up = sweeps * J.shape[0]
    return {"sampler": "numpy single-spin Metropolis (dense J, 1 chain)", "chains": 1, "dtype": "float64",
            "updates_per_call": n_up, "seconds_min": min(times), "seconds_median": float(np.median(times)),
            "spin_updates_per_s": n_up / min(times), "spin_updates_per_s_median": n_up / float(np.median(times))}


def bench_tapjax(sizes, beta, num_t, num_r, sweeps, repeats, seed=0):
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    from tapjax.overlap.heat_bath import SpinSystem  # pylint: disable=import-outside-toplevel
    from tapjax.overlap import sampler  # pylint: disable=import-outside-toplevel
    from tapjax.spin_model import couplings  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(seed)
    c = couplings([rng.normal(size=(a, b)) * np.sqrt(2.0 / a) for a, b in zip(sizes[:-1], sizes[1:])],
                  dtype=jnp.float32)
    system = SpinSystem(c, tuple(jnp.zeros((n,), jnp.float32) for n in sizes), None)
    betas = jnp.asarray(beta * np.geomspace(0.8, 1.25, num_t) if num_t > 1 else [beta], jnp.float32)
    key = jax.random.PRNGKey(seed)
    state = sampler.init_state(system, num_t, num_r)
    acc = sampler.init_accumulators(system, num_t, num_r, 64)
    kw = dict(measure_every=1, buffer=256, tempering=num_t > 1, num_bins=64)
    per_call = min(sweeps, 256)
    t0 = time.perf_counter()
    jax.block_until_ready(sampler.advance(system, betas, key, state, acc, 0, **kw)[0].energy)
    compile_s = time.perf_counter() - t0
    state, acc, _ = sampler.advance(system, jnp.zeros_like(betas), key, state, acc, 1, **kw)   # random start
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        done = 0
        while done < sweeps:
            n = min(per_call, sweeps - done)
            state, acc, _ = sampler.advance(system, betas, key, state, acc, n, **kw)
            done += n
        jax.block_until_ready(state.energy)
        times.append(time.perf_counter() - t0)
    n_up = sweeps * num_t * num_r * sum(sizes)
    return {"sampler": "tapjax block heat-bath + PT + overlaps", "chains": num_t * num_r, "T": num_t, "R": num_r,
            "dtype": "float32", "compile_seconds": compile_s, "updates_per_call": n_up,
            "seconds_min": min(times), "seconds_median": float(np.median(times)),
            "spin_updates_per_s": n_up / min(times), "spin_updates_per_s_median": n_up / float(np.median(times))}


def main(argv):
    del argv
    import jax  # pylint: disable=import-outside-toplevel
    from tapjax.msk import critical_temperature  # pylint: disable=import-outside-toplevel
    dev = jax.devices()[0]
    out = {"device": f"{dev.platform}: {getattr(dev, 'device_kind', '')}", "cpu_count": os.cpu_count(),
           "load_average_1min": os.getloadavg()[0], "python": platform.python_version(),
           "jax": jax.__version__, "x64": bool(jax.config.jax_enable_x64), "results": []}
    for spec in FLAGS.nets:
        sizes = tuple(int(x) for x in spec.split(","))
        beta = 1.0 / critical_temperature(sizes, 2.0)
        rows = [bench_numpy(sizes, beta, FLAGS.baseline_sweeps, FLAGS.repeats)]
        for ch in FLAGS.chains:
            num_t, num_r = (int(x) for x in ch.split("x"))
            rows.append(bench_tapjax(sizes, beta, num_t, num_r, FLAGS.sweeps, FLAGS.repeats))
        base = rows[0]["spin_updates_per_s"]
        print(f"\nnet {sizes} (N = {sum(sizes)}), T = T_c = {1 / beta:.3f}")
        print(f"  {'sampler':48s} {'chains':>6s} {'compile s':>9s} {'updates/s (best)':>17s} {'median':>10s} {'speedup':>8s}")
        for r in rows:
            r["net"] = list(sizes)
            r["speedup_vs_numpy"] = r["spin_updates_per_s"] / base
            print(f"  {r['sampler']:48s} {r['chains']:6d} {r.get('compile_seconds', 0.0):9.2f} "
                  f"{r['spin_updates_per_s']:17.3e} {r['spin_updates_per_s_median']:10.3e} {r['speedup_vs_numpy']:8.1f}x")
        out["results"].extend(rows)
    out["load_average_1min_end"] = os.getloadavg()[0]
    print(json.dumps({k: v for k, v in out.items() if k != "results"}))
    if FLAGS.out:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
        with open(FLAGS.out, "w") as f:
            json.dump(out, f, indent=1)
        print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
