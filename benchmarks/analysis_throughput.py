r"""Whole-run analysis throughput (issue 14): ratios measured side by side in one run.

    python -m benchmarks.analysis_throughput                  # every part, CPU-sized
    python -m benchmarks.analysis_throughput --parts=series --num_checkpoints=1000
    python -m benchmarks.analysis_throughput --parts=multiprocess

Parts (``--parts``, comma-separated):

* ``series``: the full analysis (T_c, λ_max(J), λ_min(R), s0/s_typ) of a ``--num_checkpoints``
  series of the paper's 784-512-512-512-10 net (synthetic checkpoints: the C = 2 init plus a
  rank-one spike per block growing with t — a caricature of training, so T_c moves), by
  :func:`tapjax.analyze` (batched programs) against the *previous* per-checkpoint
  ``analyze_run`` (the version of commit ``71156ef``, executed from git on the same modules)
  on its first ``--baseline_checkpoints`` checkpoints.
* ``deep``: one 64 × 512 checkpoint (N = 33,280) including s0/s_typ by the dense-free path.
* ``small``: a 6-snapshot 784-256-256-10 series: ``tapjax analyze`` in a cold process with an
  empty compilation cache, a second process with the warm persistent cache, and in-process
  (warm); WeightWatcher's ``analyze()`` on the same weights when it is installed (bench extra).
* ``multiprocess``: :func:`tapjax.distributed.analyze_checkpoints` in 1 process × 1 device
  against 2 processes × 2 devices (gloo on CPU), same checkpoints; correctness and overhead.

Runs unchanged on an accelerator host (``JAX_PLATFORMS`` is left alone; the multi-process
part launches its local processes itself, one per ``--devices_per_process`` devices).
Results: ``benchmarks/results/analysis_throughput.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import types

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PAPER = (784, 512, 512, 512, 10)


# --------------------------------------------------------------------------- synthetic series
def synthetic_series(sizes, T: int, seed: int = 0, max_spike: float = 1.5):
    """RunHistory of T checkpoints: C = 2 Gaussian init + a rank-one spike ∝ t in every block."""
    from tapjax.checkpoints import RunHistory  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(seed)
    ws0 = [rng.normal(0, np.sqrt(2.0 / m), (m, n)).astype(np.float32) for m, n in zip(sizes[:-1], sizes[1:])]
    us = [rng.normal(size=m) for m in sizes[:-1]]
    vs = [rng.normal(size=n) for n in sizes[1:]]
    t = np.concatenate([[0.0], np.logspace(-2, np.log10(60), T - 1)]) if T > 1 else np.zeros(1)
    s = max_spike * t / t.max() if T > 1 else t
    weights = tuple(np.stack([w + (a * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))).astype(np.float32)
                              for a in s]) for w, u, v in zip(ws0, us, vs))
    nan = np.full(T, np.nan)
    return RunHistory(t=t, step=np.arange(T), train_loss=nan, val_error=nan, weights=weights,
                      config={}, paths=())


def old_analysis_module():
    """``tapjax/analysis.py`` as of commit 71156ef (per-checkpoint loop), on today's modules."""
    src = subprocess.run(["git", "-C", ROOT, "show", "71156ef:tapjax/analysis.py"], check=True,
                         capture_output=True, text=True).stdout
    mod = types.ModuleType("tapjax_old_analysis")
    sys.modules[mod.__name__] = mod  # dataclasses look their module up
    exec(compile(src, "tapjax/analysis.py@71156ef", "exec"), mod.__dict__)  # pylint: disable=exec-used
    return mod


def part_series(args) -> dict:
    import tapjax  # pylint: disable=import-outside-toplevel
    T = args.num_checkpoints
    hist = synthetic_series(PAPER, T)
    out = {"sizes": list(PAPER), "num_checkpoints": T}
    # warm-up on one chunk (8 checkpoints = analyze's batch_size): compiles the per-architecture
    # programs at the chunk shape the series uses (a shorter warm-up compiles another shape)
    t0 = time.perf_counter()
    tapjax.analyze(synthetic_series(PAPER, min(8, T)), progress=False)
    out["new_compile_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    a = tapjax.analyze(hist, progress=args.progress)
    out["new_total_s"] = time.perf_counter() - t0
    out["new_per_checkpoint_s"] = out["new_total_s"] / T
    out["new_info_methods"] = {k: a.info.get(k) for k in ("level_method", "level_spacing", "timings")
                               if k in a.info}
    out["T_c_first_last"] = [float(a.T_c[0]), float(a.T_c[-1])]
    out["spectra_side_by_side"] = spectra_side_by_side(hist)
    nb = min(args.baseline_checkpoints, T)
    if nb > 0:
        old = old_analysis_module()
        sub = synthetic_series(PAPER, nb)
        old.analyze_run(synthetic_series(PAPER, 2), progress=False)  # compile
        t0 = time.perf_counter()
        b = old.analyze_run(sub, progress=False)
        out["old_checkpoints"] = nb
        out["old_per_checkpoint_s"] = (time.perf_counter() - t0) / nb
        out["speedup_per_checkpoint"] = out["old_per_checkpoint_s"] / out["new_per_checkpoint_s"]
        a_sub = tapjax.analyze(sub, progress=False)
        out["max_rel_diff_T_c_vs_old"] = float(np.nanmax(np.abs(a_sub.T_c / b.T_c - 1)))
    return out


def spectra_side_by_side(hist, chunk: int = 8) -> dict:
    """Dense spectra of I − M(β) for one chunk: ``jnp.linalg.eigvalsh`` (float32, eigenvectors
    computed and dropped) vs the CPU paths the analysis uses (LAPACK syevd, eigenvalues only) in
    float32 (``level_precision="dtype"``) and float64 (the default), same process; and how far the
    float32 s0/s_typ are from the float64 ones."""
    from tapjax import analysis, spectra  # pylint: disable=import-outside-toplevel
    ws = [np.asarray(w[:chunk]) for w in hist.weights]
    b = np.full(ws[0].shape[0], 0.55, np.float32)
    out, ev = {}, {}
    for name, f in (("jnp_eigvalsh", lambda: np.asarray(analysis._chunk_spectra_device(ws, b))),
                    ("lapack_eigenvalues_only", lambda: analysis._chunk_spectra(ws, b, "float32")),
                    ("lapack_float64", lambda: analysis._chunk_spectra(ws, b, "float64"))):
        ev[name] = f()
        best = min(_timed(f) for _ in range(2))
        out[f"{name}_per_checkpoint_s"] = best / len(b)
    out["ratio"] = out["jnp_eigvalsh_per_checkpoint_s"] / out["lapack_eigenvalues_only_per_checkpoint_s"]
    out["float64_cost_ratio"] = out["lapack_float64_per_checkpoint_s"] / out["lapack_eigenvalues_only_per_checkpoint_s"]
    s64 = np.array([spectra.first_level_spacing(e) for e in ev["lapack_float64"]])
    for name in ("jnp_eigvalsh", "lapack_eigenvalues_only"):
        s32 = np.array([spectra.first_level_spacing(e) for e in ev[name]])
        out[f"{name}_max_rel_diff_s0_over_s_typ"] = float(np.max(np.abs(s32 / s64 - 1)))
    return out


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


DEEP_WORKER = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import tapjax
from tapjax.reference import ReferenceResult
z = np.load(sys.argv[1])
ws = [z[f"arr_{k}"] for k in range(len(z.files))]
r = json.load(open(sys.argv[2]))
ref = ReferenceResult(r["threshold"], 0.0, r["beta_star"], r["beta_range"], tuple(r["per_layer_C"]), "init", {})
t1 = time.perf_counter()
a = tapjax.analyze(ws, reference=ref, progress=False)
t2 = time.perf_counter()
json.dump({"import_and_load_s": t1 - t0, "analyze_s": t2 - t1, "T_c": float(a.T_c[-1]),
           "crossing": str(a.crossing[-1]), "level_spacing": float(a.level_spacing[-1]),
           "lambda_max_J": float(a.lambda_max_J[-1]),
           "info": {k: a.info.get(k) for k in ("level_methods", "level_errors", "timings",
                                               "lambda_max_J_error") if k in a.info}},
          open(sys.argv[3], "w"))
"""


def part_deep(args) -> dict:
    """One trained-like 64 × 512 checkpoint, analyzed in a fresh (cold) process against a
    reference computed once per series in this process (timed apart)."""
    from tapjax import reference  # pylint: disable=import-outside-toplevel
    from tapjax.spin_model import couplings  # pylint: disable=import-outside-toplevel
    sizes = (512,) * (args.deep_layers + 1)
    hist = synthetic_series(sizes, 2, max_spike=0.5)
    t0 = time.perf_counter()
    ref = reference.Reference("init", num_betas=16).compute(couplings(hist.weights_at(0)))
    ref_s = time.perf_counter() - t0
    out = {"sizes": f"{args.deep_layers} x 512", "num_spins": int(sum(sizes)),
           "reference_s (once per series, 16-point grid, in the parent process)": ref_s,
           "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(os.path.join(tmp, "w.npz"), *hist.weights_at(1))
        with open(os.path.join(tmp, "ref.json"), "w") as f:
            json.dump({"threshold": ref.threshold, "beta_star": ref.beta_star, "beta_range": ref.beta_range,
                       "per_layer_C": [float(v) for v in ref.per_layer_C]}, f)
        env = dict(os.environ)   # the library itself uses no persistent cache: every program compiles
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", DEEP_WORKER, os.path.join(tmp, "w.npz"),
                        os.path.join(tmp, "ref.json"), os.path.join(tmp, "out.json")], check=True, env=env)
        out["checkpoint_cold_process_s"] = time.perf_counter() - t0
        with open(os.path.join(tmp, "out.json")) as f:
            out.update(json.load(f))
    out["load_after"] = os.getloadavg()[0]
    return out


def _cli(args_list, env) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tapjax.cli", *args_list], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def part_small(args) -> dict:
    import tapjax  # pylint: disable=import-outside-toplevel
    from tapjax import checkpoints  # pylint: disable=import-outside-toplevel
    sizes = (784, 256, 256, 10)
    hist = synthetic_series(sizes, 6, max_spike=1.0)
    out = {"sizes": list(sizes), "snapshots": 6}
    with tempfile.TemporaryDirectory() as tmp:
        run = os.path.join(tmp, "series")
        for i in range(6):   # a directory of .npz snapshots, as a foreign user would have
            params = {f"layer{k + 1}": {"kernel": w[i]} for k, w in enumerate(hist.weights)}
            checkpoints.save_checkpoint(run, params, {"step": i, "t": float(hist.t[i])})
        cache = os.path.join(tmp, "cache")
        env = dict(os.environ, TAPJAX_CACHE_DIR=cache)
        cli = ["analyze", run, "--out", os.path.join(tmp, "out"), "--quiet"]
        out["cold_process_s"] = _cli(cli, env)
        out["warm_cache_process_s"] = _cli(cli, env)
        env_nocache = dict(os.environ)
        out["no_cache_process_s"] = _cli(["--cache_dir", "", *cli], env_nocache)
        tapjax.analyze(run, progress=False)
        t0 = time.perf_counter()
        tapjax.analyze(run, progress=False)
        out["in_process_warm_s"] = time.perf_counter() - t0
    try:
        import torch  # pylint: disable=import-outside-toplevel
        import weightwatcher as ww  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        out["weightwatcher"] = f"not installed ({e.name}); pip install weightwatcher"
        return out
    with tempfile.TemporaryDirectory() as tmp:   # cold process: import torch + weightwatcher, analyze 6
        np.savez(os.path.join(tmp, "w.npz"), *[w for w in hist.weights])
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", WW_COLD, os.path.join(tmp, "w.npz"), ",".join(map(str, sizes))],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out["weightwatcher_cold_process_s"] = time.perf_counter() - t0
    times = []
    for i in range(6):
        net = torch.nn.Sequential(*[torch.nn.Linear(m, n, bias=False) for m, n in zip(sizes[:-1], sizes[1:])])
        with torch.no_grad():
            for lin, w in zip(net, hist.weights):
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w[i].T)))
        t0 = time.perf_counter()
        ww.WeightWatcher(model=net).analyze()
        times.append(time.perf_counter() - t0)
    out["weightwatcher_series_s"] = float(sum(times))
    out["weightwatcher_version"] = getattr(ww, "__version__", "?")
    return out


WW_COLD = r"""
import sys
import numpy as np, torch, weightwatcher as ww
z = np.load(sys.argv[1]); sizes = [int(v) for v in sys.argv[2].split(",")]
ws = [z[f"arr_{k}"] for k in range(len(sizes) - 1)]
net = torch.nn.Sequential(*[torch.nn.Linear(m, n, bias=False) for m, n in zip(sizes[:-1], sizes[1:])])
for i in range(ws[0].shape[0]):
    with torch.no_grad():
        for lin, w in zip(net, ws):
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w[i].T)))
    ww.WeightWatcher(model=net).analyze()
"""

MP_WORKER = r"""
import json, sys
pid, nproc, port, run, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
from tapjax import distributed
if nproc > 1:
    distributed.initialize(f"127.0.0.1:{port}", num_processes=nproc, process_id=pid)
import time, jax, numpy as np
from tapjax import checkpoints
paths = checkpoints.list_checkpoints(run)
t0 = time.perf_counter()
r = distributed.analyze_checkpoints(paths, threshold=float(sys.argv[6]), beta_max=float(sys.argv[7]))
t1 = time.perf_counter()
r = distributed.analyze_checkpoints(paths, threshold=float(sys.argv[6]), beta_max=float(sys.argv[7]))
t2 = time.perf_counter()
json.dump({"first_s": t1 - t0, "second_s": t2 - t1, "devices": len(jax.devices()),
           "beta_c": np.asarray(r.beta_c, float).tolist()}, open(out, "w"))
"""


def _mp_run(nproc, dpp, run, tmp, thr, bmax):
    env = dict(os.environ)
    if os.environ.get("JAX_PLATFORMS", "cpu") == "cpu":
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={dpp}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    outs = [os.path.join(tmp, f"mp_{nproc}_{i}.json") for i in range(nproc)]
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", MP_WORKER, str(i), str(nproc), port, run, outs[i],
                               str(thr), str(bmax)], env=env) for i in range(nproc)]
    for p in procs:
        if p.wait(timeout=1800) != 0:
            raise RuntimeError(f"worker exited with {p.returncode}")
    wall = time.perf_counter() - t0
    res = [json.load(open(o)) for o in outs]
    return {"wall_s": wall, "first_call_s": max(r["first_s"] for r in res),
            "second_call_s": max(r["second_s"] for r in res), "devices": res[0]["devices"],
            "beta_c": res[0]["beta_c"]}


def part_multiprocess(args) -> dict:
    from tapjax import checkpoints, reference  # pylint: disable=import-outside-toplevel
    from tapjax.spin_model import couplings  # pylint: disable=import-outside-toplevel
    sizes = PAPER if not args.quick else (256, 128, 128, 10)
    hist = synthetic_series(sizes, args.mp_checkpoints)
    ref = reference.Reference("init").compute(couplings(hist.weights_at(0)))
    out = {"sizes": list(sizes), "checkpoints": args.mp_checkpoints}
    with tempfile.TemporaryDirectory() as tmp:
        run = os.path.join(tmp, "run")
        for i in range(len(hist)):
            params = {f"layer{k + 1}": {"kernel": w[i]} for k, w in enumerate(hist.weights)}
            checkpoints.save_checkpoint(run, params, {"step": i, "t": float(hist.t[i])})
        thr, bmax = float(ref.threshold), float(ref.beta_range)
        one = _mp_run(1, 1, run, tmp, thr, bmax)
        two = _mp_run(2, args.devices_per_process, run, tmp, thr, bmax)
    out["one_process"] = {k: v for k, v in one.items() if k != "beta_c"}
    out["two_processes"] = {k: v for k, v in two.items() if k != "beta_c"}
    out["bitwise_equal"] = one["beta_c"] == two["beta_c"]
    return out


PARTS = {"series": part_series, "deep": part_deep, "small": part_small,
         "multiprocess": part_multiprocess}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="small,series,deep,multiprocess")
    p.add_argument("--num_checkpoints", type=int, default=1000)
    p.add_argument("--baseline_checkpoints", type=int, default=6)
    p.add_argument("--deep_layers", type=int, default=64)
    p.add_argument("--mp_checkpoints", type=int, default=16)
    p.add_argument("--devices_per_process", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    if args.quick:
        args.num_checkpoints, args.baseline_checkpoints, args.deep_layers = 8, 2, 4
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "jax": jax.__version__, "backend": jax.default_backend(),
                           "devices": [str(d) for d in jax.devices()]},
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for name in args.parts.split(","):
        print(f"== {name}", file=sys.stderr, flush=True)
        results[name] = PARTS[name](args)
        print(json.dumps(results[name], indent=1, default=str), file=sys.stderr, flush=True)
        os.makedirs(args.out, exist_ok=True)   # after every part: a failure keeps the rest
        suffix = "_quick" if args.quick else ""
        with open(os.path.join(args.out, f"analysis_throughput{suffix}.json"), "w") as f:
            json.dump(results, f, indent=1, default=str)
    print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
