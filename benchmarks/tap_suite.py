r"""Benchmark suite: λ_min / positive-definiteness of I − M(β) (paper eqs. 22–27) by method.

One command::

    python benchmarks/tap_suite.py            # full suite (~15–30 min on a 2-core CPU)
    python benchmarks/tap_suite.py --quick    # subset (~5 min)
    python benchmarks/tap_suite.py --only=big # the 256 x 1024 chain target alone

writes ``results.json``, ``results.md`` (tables) and ``bench_tap.png`` (log-log plot) into
``--out`` (default ``benchmarks/results/``).

Methods (each measured in its own subprocess, so its peak RSS is its own):
  * ``dense_eigvalsh``  — the paper's exact diagonalization: ``eigvalsh`` of the dense N × N
    matrix per β (:func:`tapjax.tap.least_eigenvalue_dense`);
  * ``dense_cholesky``  — positive-definiteness test by a dense Cholesky of I − M − λ*I;
  * ``recurrence``      — the block recurrence of eqs. 26–27 (:func:`tapjax.recurrence.positive_definite`);
    its β_c is :func:`tapjax.recurrence.critical_beta_search`, timed twice: ``bisect``
    (32-point early-exit scan + bisection on the PD test) and ``secant`` (the default:
    16-point early-exit scan + Illinois regula falsi on the last-pivot margin);
  * ``lanczos``         — matrix-free λ_min (:func:`tapjax.tap.least_eigenvalue_lanczos`, 120 steps);
  * ``scipy_eigh``      — outside baseline: LAPACK through ``scipy.linalg.eigh`` on the dense
    matrix (``syevd``, all eigenvalues) and ``scipy_eigh_min`` (``syevr``, λ_min only).

Workloads: MSK draws (section 2, ``C = 2``) of width n ∈ {128, 256, 512, 1024} at depth L = 4,
depth L ∈ {2, 4, 8, 16, 32, 64} at width 512 (L coupling blocks, L + 1 layers, N = (L + 1) n),
the paper's 784-512-512-512-10 net, and the 256 × 1024 chain (N = 263,168; weights 1 GiB).

β_c: the first β where λ_min(I − M(β)) reaches λ* = 0.1 (just above the finite-size minimum of
these untrained draws, ≈ 0.02–0.07, so the crossing is transversal; it stands in for the trained
net / t = 0 threshold of section 3.2 — the *cost* is what is measured, and it depends on β_c
only through the bracket). β range (0, 2 β_c^MSK], relative precision 1e-4.

Timing protocol (docs/STYLE): every jitted function is compiled ahead of time
(``jit(...).lower(...).compile()``) and that compile time is reported separately; steady-state
calls are ``block_until_ready``-ed and repeated, min and median reported. Each subprocess also
times a 1024² float32 matmul right before measuring, the "peak" its GFLOP/s are compared with
(the machine is shared, so the peak of the moment is the fair reference). float32, x64 off.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
THRESHOLD = 0.1
RTOL = 1e-4
GRID_POINTS = 256


# =========================================================================== workloads
def chain(L: int, n: int) -> tuple[int, ...]:
    return (n,) * (L + 1)


def workloads(quick: bool, only: str | None) -> list[dict]:
    out = []
    widths = (128, 256, 512) if quick else (128, 256, 512, 1024)
    depths = (2, 8, 32) if quick else (2, 4, 8, 16, 32, 64)
    for n in widths:
        out.append({"name": f"width {n} (L=4)", "sweep": "width", "L": 4, "n": n, "sizes": chain(4, n)})
    for L in depths:
        if L == 4 and 512 in widths:
            out[[w["n"] for w in out].index(512)]["sweep"] = "width+depth"
            continue
        out.append({"name": f"depth {L} (n=512)", "sweep": "depth", "L": L, "n": 512, "sizes": chain(L, 512)})
    out.append({"name": "paper 784-512-512-512-10", "sweep": "paper", "L": 4, "n": 512,
                "sizes": (784, 512, 512, 512, 10)})
    if 64 not in depths:  # the 64 x 512 target
        out.append({"name": "depth 64 (n=512)", "sweep": "target", "L": 64, "n": 512, "sizes": chain(64, 512)})
    out.append({"name": "chain 256x1024", "sweep": "big", "L": 256, "n": 1024, "sizes": chain(256, 1024)})
    for w in out:
        w["N"] = int(sum(w["sizes"]))
        w["weights"] = int(sum(a * b for a, b in zip(w["sizes"][:-1], w["sizes"][1:])))
    if only:
        keys = only.split(",")
        out = [w for w in out if any(k in (w["sweep"], w["name"]) or k in w["name"] for k in keys)]
    return out


METHODS = ("recurrence", "lanczos", "dense_eigvalsh", "dense_cholesky", "scipy_eigh", "scipy_eigh_min")
DENSE = ("dense_eigvalsh", "dense_cholesky", "scipy_eigh", "scipy_eigh_min")


# =========================================================================== flop models
def flops(method: str, sizes, num_iter: int = 120) -> float:
    """Nominal floating-point operations of one β (one PD test / one λ_min)."""
    N = sum(sizes)
    nw = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    if method == "recurrence":
        f = 2.0 * sizes[0] * sizes[1] ** 2  # D_1 from the diagonal D_0
        for k in range(2, len(sizes)):  # Cholesky + triangular solve + W^T D^-1 W
            m, n = sizes[k - 1], sizes[k]
            f += m ** 3 / 3 + m * m * n + 2.0 * m * n * n
        return f + sizes[-1] ** 3 / 3
    if method == "dense_cholesky":
        return N ** 3 / 3
    if method in ("dense_eigvalsh", "scipy_eigh", "scipy_eigh_min"):
        return 4.0 * N ** 3 / 3  # Householder tridiagonalization dominates
    if method == "lanczos":  # mat-vec (J and J^T) + two masked full reorthogonalizations
        return num_iter * (4.0 * nw + 8.0 * num_iter * N + 10.0 * N)
    raise ValueError(method)


# =========================================================================== child side
def _child(task: dict) -> dict:
    """Runs one (workload, method) measurement; returns a JSON-able dict."""
    import resource

    import jax
    import jax.numpy as jnp
    import numpy as np

    from tapjax import msk, recurrence, tap
    from tapjax.spin_model import random_couplings

    def rss_mib():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def peak_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def timed(fn, *a, repeats=3):
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            jax.block_until_ready(fn(*a))
            ts.append(time.perf_counter() - t)
        return ts

    def aot(jitted, *a, **kw):
        t = time.perf_counter()
        comp = jitted.lower(*a, **kw).compile()
        return comp, time.perf_counter() - t

    res = {"task": task}
    sizes, method, reps = tuple(task["sizes"]), task["method"], task["repeats"]
    # contemporaneous matmul peak (the machine is shared)
    mm = jax.jit(lambda a, b: a @ b)
    a = jnp.ones((1024, 1024), jnp.float32)
    mm(a, a).block_until_ready()
    res["peak_gflops"] = 2 * 1024 ** 3 / min(timed(mm, a, a, repeats=5)) / 1e9

    t = time.perf_counter()
    c = random_couplings(jax.random.PRNGKey(0), sizes, 2.0, jnp.float32)
    jax.block_until_ready(c)
    res["setup_s"] = time.perf_counter() - t
    res["rss_baseline_mib"] = rss_mib()
    beta_c_msk = msk.critical_beta(sizes, 2.0)
    beta_max = 2.0 * beta_c_msk
    res["beta_max"] = beta_max
    # β values around the crossing (0.8 ... 1.1 β_c^MSK): PD tests that pass and fail
    bvals = [beta_c_msk * f for f in (0.8, 0.95, 1.1, 0.9, 1.0)]
    thr = jnp.float32(THRESHOLD)

    if method == "recurrence":
        comp, res["compile_s"] = aot(recurrence.positive_definite, c, jnp.float32(bvals[0]), thr)
        ts = []
        for i in range(reps):
            b = jnp.float32(bvals[i % len(bvals)])
            ts += timed(comp, c, b, thr, repeats=1)
        res["per_beta_s"] = ts
        # β_c: the library's search, AOT-compiled so compile and run are separate
        if task.get("library_bisect", True):
            _library_search(res, c, thr, beta_max, task, aot, "bisect", 32)
        if task.get("secant", True):
            _library_search(res, c, thr, beta_max, task, aot, "secant", 16)
    elif method == "lanczos":
        B = task["lanczos_betas"]
        betas = jnp.asarray(bvals[:B], jnp.float32)
        comp, res["compile_s"] = aot(tap.least_eigenvalue_lanczos, c, betas, num_iter=120,
                                     batch_size=B)
        ts = timed(comp, c, betas, repeats=reps)
        res["per_beta_s"] = [x / B for x in ts]
        lam, err = comp(c, betas)
        res["lanczos_err_max"] = float(jnp.max(err))
        res["lanczos_lam"] = np.asarray(lam).tolist()
    elif method in ("dense_eigvalsh", "dense_cholesky"):
        B = task["dense_betas"]
        betas = jnp.asarray(bvals[:B], jnp.float32)
        fn = tap.least_eigenvalue_dense if method == "dense_eigvalsh" else _dense_cholesky_jit()
        extra = () if method == "dense_eigvalsh" else (thr,)
        comp, res["compile_s"] = aot(fn, c, betas, *extra)
        ts = timed(comp, c, betas, *extra, repeats=reps)
        res["per_beta_s"] = [x / B for x in ts]
        if method == "dense_eigvalsh" and task.get("grid", False):
            grid = jnp.asarray(np.linspace(0.0, beta_max, GRID_POINTS + 1)[1:], jnp.float32)
            comp_g, _ = aot(tap.least_eigenvalue_dense, c, grid)
            t = time.perf_counter()
            curve = np.asarray(jax.block_until_ready(comp_g(c, grid)))
            res["tc_grid_s"] = [time.perf_counter() - t]
            hit = np.nonzero(curve <= THRESHOLD)[0]
            res["beta_c_grid"] = float(grid[hit[0]]) if hit.size else None
    elif method in ("scipy_eigh", "scipy_eigh_min"):
        import scipy.linalg
        B = task["dense_betas"]
        mats = [np.asarray(tap.tap_matrix(c, jnp.float32(b))) for b in bvals[:B]]
        kw = {"subset_by_index": [0, 0], "driver": "evr"} if method == "scipy_eigh_min" else {"driver": "evd"}
        scipy.linalg.eigh(mats[0][:64, :64], eigvals_only=True, **kw)  # warm up the LAPACK path
        res["compile_s"] = 0.0
        ts = []
        for _ in range(reps):
            for A in mats:
                t = time.perf_counter()
                scipy.linalg.eigh(A, eigvals_only=True, check_finite=False, **kw)
                ts.append(time.perf_counter() - t)
        res["per_beta_s"] = ts
    else:
        raise ValueError(method)
    res["flops_per_beta"] = flops(method, sizes)
    res["peak_rss_mib"] = peak_mib()
    return res


def _library_search(res: dict, c, thr, beta_max: float, task: dict, aot, method: str,
                    num_scan: int) -> None:
    """Times :func:`tapjax.recurrence.critical_beta_search` (AOT-compiled) with ``method``;
    records ``tc_<key>_s`` (per repeat), ``beta_c_<key>``, ``tc_<key>_tests`` and the compile
    time, ``key`` = ``bisect`` or ``secant``."""
    import jax
    import jax.numpy as jnp

    from tapjax import recurrence

    args = (c, thr, jnp.float32(beta_max), jnp.float32(RTOL))
    comp, res[f"tc_{method}_compile_s"] = aot(recurrence.critical_beta_search, *args,
                                              num_scan=num_scan, max_iter=60, method=method)
    ts, out = [], None
    for _ in range(task["tc_repeats"]):
        t = time.perf_counter()
        out = jax.block_until_ready(comp(*args))
        ts.append(time.perf_counter() - t)
    res[f"tc_{method}_s"] = ts
    res[f"beta_c_{method}"] = float(out.beta) if bool(out.crossed) else None
    res[f"tc_{method}_tests"] = int(out.num_tests)


def _dense_cholesky_jit():
    import jax
    import jax.numpy as jnp

    from tapjax import tap

    @jax.jit
    def dense_cholesky_pd(c, betas, shift):
        """PD test of I − M(β) − shift·I by a dense Cholesky, per β (lax.map)."""
        def one(b):
            A = tap.tap_matrix(c, b)
            L = jnp.linalg.cholesky(A - shift * jnp.eye(A.shape[0], dtype=A.dtype))
            return jnp.all(jnp.isfinite(L))
        return jax.lax.map(one, betas)

    return dense_cholesky_pd


# =========================================================================== parent side
def run_child(task: dict, timeout: float, env_extra: dict) -> dict:
    env = dict(os.environ, **env_extra)
    t = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--_child", json.dumps(task)],
                           capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"task": task, "skipped": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t
    if p.returncode != 0:
        tail = (p.stderr or "")[-1500:]
        if p.returncode < 0 or "MemoryError" in tail or "RESOURCE_EXHAUSTED" in tail:
            return {"task": task, "skipped": f"failed (rc={p.returncode}): {tail.splitlines()[-1] if tail else ''}"}
        return {"task": task, "error": tail, "rc": p.returncode}
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["child_wall_s"] = wall
    return out


def stats(ts):
    import numpy as np
    return {"min": float(np.min(ts)), "median": float(np.median(ts)), "n": len(ts)}


def machine_info() -> dict:
    import jax
    import numpy as np
    import scipy
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "jax": jax.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "device": str(jax.devices()[0]), "backend": jax.default_backend(),
            "dtype": "float32", "x64": bool(jax.config.jax_enable_x64),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            "loadavg_start": os.getloadavg()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_total_gib"] = int(f.readline().split()[1]) / 2 ** 20
    except OSError:
        pass
    return info


def plan(w: dict, method: str, args, calib: dict) -> tuple[dict | None, str | None]:
    """Task for (workload, method), or (None, reason) when it is skipped."""
    N = w["N"]
    quick = args.quick
    task = {"workload": w["name"], "sizes": list(w["sizes"]), "method": method,
            "repeats": 2 if quick or N > 2000 else 3, "tc_repeats": 1 if (quick or N > 10000) else 2,
            "dense_betas": 1 if N > 2000 else 2, "lanczos_betas": 2 if N > 50000 else 4}
    if w["sweep"] == "big":
        task.update(repeats=1, tc_repeats=1)
        if method == "recurrence":
            task["library_bisect"] = args.big_bisect
        elif method != "lanczos":
            return None, f"dense N×N float32 would be {4 * N * N / 2**30:.0f} GiB"
    if method in DENSE:
        mem = 4.0 * N * N * (3 if method.startswith("scipy") else 4)
        if mem > args.dense_mem_gib * 2 ** 30:
            return None, f"dense needs ~{mem / 2**30:.1f} GiB > --dense_mem_gib={args.dense_mem_gib}"
        if method in calib:
            n0, t0 = calib[method]
            pred = t0 * (N / n0) ** 3
            if pred > args.dense_budget_s:
                return None, (f"predicted {pred:.0f} s per β (N³ from {t0:.2f} s at N={n0}) > "
                              f"--dense_budget_s={args.dense_budget_s:g}")
        if method == "dense_eigvalsh" and w["sweep"] != "big":
            pred = calib.get(method, (N, 0.0))
            pred_grid = GRID_POINTS * pred[1] * (N / pred[0]) ** 3
            task["grid"] = bool(method in calib and pred_grid < args.grid_budget_s)
    return task, None


def summarize(r: dict) -> dict:
    """Per-row numbers for the tables."""
    import numpy as np
    if "per_beta_s" not in r:
        return {}
    s = stats(r["per_beta_s"])
    row = {"per_beta_min_s": s["min"], "per_beta_median_s": s["median"], "samples": s["n"],
           "compile_s": r.get("compile_s"), "peak_rss_mib": r.get("peak_rss_mib"),
           "rss_baseline_mib": r.get("rss_baseline_mib"),
           "gflops": r["flops_per_beta"] / s["min"] / 1e9, "peak_gflops": r.get("peak_gflops")}
    row["frac_peak"] = row["gflops"] / row["peak_gflops"] if row["peak_gflops"] else None
    m = r["task"]["method"]
    if m == "recurrence":
        if r.get("tc_bisect_s"):
            row["tc_bisect_s"] = float(np.min(r["tc_bisect_s"]))
            row["tc_bisect_median_s"] = float(np.median(r["tc_bisect_s"]))
            row["beta_c_bisect"] = r.get("beta_c_bisect")
            row["tc_bisect_tests"] = r.get("tc_bisect_tests")
            row["tc_compile_s"] = r.get("tc_bisect_compile_s", r.get("tc_compile_s"))
        elif r.get("beta_c_secant"):  # bisection not run (big chain): 32 scan tests + bisection, × per β
            first = math.ceil(32 * r["beta_c_secant"] / r["beta_max"])
            tests = first + max(0, math.ceil(math.log2(r["beta_max"] / 32 / (RTOL * r["beta_c_secant"]))))
            row.update(tc_bisect_s=tests * s["min"], tc_bisect_tests=tests, tc_bisect_extrapolated=True)
        if r.get("tc_secant_s"):
            row["tc_secant_s"] = float(np.min(r["tc_secant_s"]))
            row["beta_c_secant"] = r.get("beta_c_secant")
            row["tc_secant_tests"] = r.get("tc_secant_tests")
    if m == "dense_eigvalsh":
        if r.get("tc_grid_s"):
            row["tc_grid_s"], row["tc_grid_kind"] = r["tc_grid_s"][0], "measured"
            row["beta_c_grid"] = r.get("beta_c_grid")
        else:
            row["tc_grid_s"], row["tc_grid_kind"] = GRID_POINTS * s["min"], "extrapolated (256 × per-β min)"
    if m in ("lanczos", "scipy_eigh_min"):
        row["tc_grid_s"], row["tc_grid_kind"] = GRID_POINTS * s["min"], "extrapolated (256 × per-β min)"
    if m == "lanczos":
        row["lanczos_err_max"] = r.get("lanczos_err_max")
    return row


def fit_exponent(xs, ys):
    import numpy as np
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    ok = np.isfinite(ys) & (ys > 0)
    if len(set(xs[ok].tolist())) < 2:
        return None
    return float(np.polyfit(np.log(xs[ok]), np.log(ys[ok]), 1)[0])


def fmt_t(x):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if x >= 100:
        return f"{x:.0f} s"
    if x >= 1:
        return f"{x:.2f} s"
    if x >= 1e-3:
        return f"{x * 1e3:.1f} ms"
    return f"{x * 1e6:.0f} µs"


def write_outputs(results: list[dict], info: dict, args, out_dir: str) -> None:
    import numpy as np
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for r in results:
        t = r["task"]
        row = {"workload": t["workload"], "method": t["method"], "N": sum(t["sizes"]),
               "L": len(t["sizes"]) - 1, "n": max(t["sizes"]), "sweep": t.get("sweep")}
        if row["sweep"] == "width" and row["n"] == 512 and row["L"] == 4:
            row["sweep"] = "width+depth"  # the 4 x 512 chain belongs to both sweeps
        if "skipped" in r:
            row["skipped"] = r["skipped"]
        elif "error" in r:
            row["error"] = r["error"][-300:]
        else:
            row.update(summarize(r))
        rows.append(row)
    # scaling exponents: time per β against n (width sweep) and L (depth sweep)
    expo = {}
    sweeps = {"n": ("width", "width+depth"), "L": ("depth", "width+depth", "target")}
    for m in METHODS:
        for key, names in sweeps.items():
            sel = sorted({(r[key], r["per_beta_min_s"]) for r in rows
                          if r["method"] == m and "per_beta_min_s" in r and r["sweep"] in names})
            e = fit_exponent(*zip(*sel)) if len(sel) >= 2 else None
            if e is not None:
                expo[f"{m}/{key}"] = {"exponent": e, "points": len(sel)}
    tc_expo = {}
    for key, names in sweeps.items():
        sel = [(r[key], r["tc_bisect_s"]) for r in rows if r["method"] == "recurrence" and "tc_bisect_s" in r
               and r["sweep"] in names]
        e = fit_exponent(*zip(*sel)) if len(sel) >= 2 else None
        if e is not None:
            tc_expo[f"recurrence_tc/{key}"] = e
    payload = {"info": info, "args": vars(args), "threshold": THRESHOLD, "rtol": RTOL,
               "grid_points": GRID_POINTS, "rows": rows, "exponents": expo, "tc_exponents": tc_expo,
               "raw": results}
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(payload, f, indent=1, default=float)
    md = render_markdown(rows, info, expo, tc_expo, args)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(md)
    try:
        plot(rows, os.path.join(out_dir, "bench_tap.png"), info)
    except Exception as e:  # plotting must never lose the numbers
        print(f"plot failed: {e}", file=sys.stderr)


def render_markdown(rows, info, expo, tc_expo, args) -> str:
    L = []
    L.append("# TAP benchmark suite results\n")
    L.append(f"Device: {info['device']} ({info['cpu']}, {info['cores']} cores, "
             f"{info.get('mem_total_gib', 0):.0f} GiB RAM); backend {info['backend']}; dtype float32, "
             f"x64 {'on' if info['x64'] else 'off'}; jax {info['jax']}, scipy {info['scipy']}; "
             f"OPENBLAS_NUM_THREADS={info['OPENBLAS_NUM_THREADS']}. "
             + (f"Merged from {', '.join(os.path.relpath(m, os.path.dirname(HERE)) for m in info['merged_from'])}. "
                if info.get("merged_from") else f"Mode: {'quick' if args.quick else 'full'}. ") +
             f"Load average at start {info['loadavg_start'][0]:.1f}, at end {info.get('loadavg_end', [float('nan')])[0]:.1f} "
             "(shared machine: timings are noisy; min is the best estimate of the cost).\n")
    L.append("Per-β time: one PD test (recurrence, dense Cholesky) or one λ_min (eigvalsh, Lanczos, "
             "scipy). Compile = ahead-of-time XLA compile, reported separately. Peak RSS = the "
             "measuring subprocess's max resident set (includes Python + JAX ≈ 300–400 MiB and the "
             "weights). GFLOP/s from nominal flop counts, vs the 1024² matmul rate measured in "
             "the same subprocess.\n")
    L.append("## Time per β\n")
    L.append("| workload | N | method | per β min | per β median | compile | peak RSS | GFLOP/s (% of matmul) |")
    L.append("|---|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if "per_beta_min_s" in r:
            pct = f" ({100 * r['frac_peak']:.0f}%)" if r.get("frac_peak") else ""
            L.append(f"| {r['workload']} | {r['N']:,} | {r['method']} | {fmt_t(r['per_beta_min_s'])} | "
                     f"{fmt_t(r['per_beta_median_s'])} | {fmt_t(r.get('compile_s'))} | "
                     f"{r['peak_rss_mib']:.0f} MiB | {r['gflops']:.1f}{pct} |")
        else:
            why = r.get("skipped") or ("error: " + r.get("error", "").splitlines()[-1] if r.get("error") else "")
            L.append(f"| {r['workload']} | {r['N']:,} | {r['method']} | skipped: {why} | | | | |")
    L.append("\n## Time to β_c (relative precision 1e-4)\n")
    L.append("Both columns are `tapjax.recurrence.critical_beta_search`; #tests = recurrence evaluations. "
             "Bisection = `method=\"bisect\"` (early-exit 32-point scan + bisection on the PD test). "
             "Secant = `method=\"secant\"`, the library default (early-exit 16-point scan + Illinois regula "
             "falsi on the last-pivot margin λ_min(D_L)). Grid = the paper's 256-point β grid "
             "(measured where it fits the time budget, else 256 × per-β min, marked *extrapolated*); "
             "its resolution is the grid spacing β_max/256 ≈ 4e-3 β_max, not 1e-4.\n")
    L.append("| workload | N | recurrence+bisection | #tests | secant (default) | #tests | dense eigvalsh grid | scipy λ_min grid | Lanczos grid | grid / bisection | grid / secant |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    by_w = {}
    for r in rows:
        by_w.setdefault(r["workload"], {})[r["method"]] = r
    for wname, ms in by_w.items():
        rec = ms.get("recurrence", {})
        de = ms.get("dense_eigvalsh", {})
        sc = ms.get("scipy_eigh_min", {})
        lz = ms.get("lanczos", {})
        N = next(iter(ms.values()))["N"]

        def g(r):
            if "tc_grid_s" not in r:
                return "—"
            return fmt_t(r["tc_grid_s"]) + ("" if r.get("tc_grid_kind") == "measured" else " *extrap.*")
        ratio_b = (f"{de['tc_grid_s'] / rec['tc_bisect_s']:.0f}×" if "tc_grid_s" in de and rec.get("tc_bisect_s") else "—")
        ratio_s = (f"{de['tc_grid_s'] / rec['tc_secant_s']:.0f}×" if "tc_grid_s" in de and rec.get("tc_secant_s") else "—")
        bis = fmt_t(rec.get("tc_bisect_s")) + (" *extrap.*" if rec.get("tc_bisect_extrapolated") else "")
        L.append(f"| {wname} | {N:,} | {bis} | {rec.get('tc_bisect_tests') or '—'} | "
                 f"{fmt_t(rec.get('tc_secant_s'))} | {rec.get('tc_secant_tests') or '—'} | {g(de)} | {g(sc)} | {g(lz)} | "
                 f"{ratio_b} | {ratio_s} |")
    L.append("\n## Fitted scaling exponents (time per β ∝ x^p, least squares in log-log)\n")
    L.append("| method | p in n (L = 4) | p in L (n = 512) |")
    L.append("|---|---:|---:|")
    for m in METHODS:
        a, b = expo.get(f"{m}/n"), expo.get(f"{m}/L")
        if a or b:
            L.append(f"| {m} | {a['exponent']:.2f} ({a['points']} pts) |" if a else f"| {m} | — |")
            L[-1] += f" {b['exponent']:.2f} ({b['points']} pts) |" if b else " — |"
    if tc_expo:
        L.append("\nTime to β_c (recurrence + bisection): " + ", ".join(
            f"p in {k.split('/')[1]} = {v:.2f}" for k, v in tc_expo.items()))
    # checks: β_c agreement
    L.append("\n## Consistency checks\n")
    for wname, ms in by_w.items():
        rec, de = ms.get("recurrence", {}), ms.get("dense_eigvalsh", {})
        if rec.get("beta_c_bisect") and rec.get("beta_c_secant"):
            d = abs(rec["beta_c_bisect"] - rec["beta_c_secant"]) / rec["beta_c_bisect"]
            line = f"- {wname}: β_c bisection {rec['beta_c_bisect']:.6f}, secant {rec['beta_c_secant']:.6f} (rel. diff {d:.1e})"
            if de.get("beta_c_grid"):
                line += f", 256-grid {de['beta_c_grid']:.6f}"
            L.append(line)
        elif rec.get("beta_c_secant"):
            L.append(f"- {wname}: β_c secant {rec['beta_c_secant']:.6f} (library bisection not run)")
        lz = ms.get("lanczos", {})
        if lz.get("lanczos_err_max") is not None:
            L.append(f"- {wname}: Lanczos residual bound (max over β) {lz['lanczos_err_max']:.1e}")
    return "\n".join(L) + "\n"


def plot(rows, path, info):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    styles = {"recurrence": "o-", "lanczos": "s-", "dense_eigvalsh": "^-", "dense_cholesky": "v-",
              "scipy_eigh": "D--", "scipy_eigh_min": "d--"}
    for ax, (sweep, key, label) in zip(axes[:2], (("width", "n", "width n (L = 4)"),
                                                   ("depth", "L", "depth L (n = 512)"))):
        for m in METHODS:
            pts = sorted((r[key], r["per_beta_min_s"]) for r in rows if r["method"] == m and "per_beta_min_s" in r
                         and r["sweep"] in (sweep, "width+depth", "target" if sweep == "depth" else "-"))
            if pts:
                ax.plot(*zip(*pts), styles[m], label=m)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("time per β [s] (min)")
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes[:2]:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    ax = axes[2]
    rec = sorted((r["N"], r["tc_bisect_s"]) for r in rows if r["method"] == "recurrence" and r.get("tc_bisect_s")
                 and not r.get("tc_bisect_extrapolated"))
    rec_x = sorted((r["N"], r["tc_bisect_s"]) for r in rows if r["method"] == "recurrence"
                   and r.get("tc_bisect_extrapolated"))
    sec = sorted((r["N"], r["tc_secant_s"]) for r in rows if r["method"] == "recurrence" and r.get("tc_secant_s"))
    gm = sorted((r["N"], r["tc_grid_s"]) for r in rows if r["method"] == "dense_eigvalsh" and r.get("tc_grid_s"))
    lz = sorted((r["N"], r["tc_grid_s"]) for r in rows if r["method"] == "lanczos" and r.get("tc_grid_s"))
    if rec:
        ax.plot(*zip(*rec), "o-", color="C0", label="recurrence + bisection")
    if rec_x:
        ax.plot(*zip(*rec_x), "o", mfc="none", color="C0", label="recurrence + bisection (extrap.)")
    if sec:
        ax.plot(*zip(*sec), "o--", color="C1", label="recurrence + secant (default)")
    if gm:
        ax.plot(*zip(*gm), "^-", color="C2", label="256-point eigvalsh grid (extrap. from per-β)")
    if lz:
        ax.plot(*zip(*lz), "s:", color="C3", label="256-point Lanczos grid (extrap.)")
    ax.axhline(10, color="gray", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N (all workloads)")
    ax.set_ylabel("time to β_c [s]")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.suptitle(f"I − M(β) positive definiteness / λ_min — {info['cpu']}, {info['cores']} cores, "
                 f"float32, load avg {info['loadavg_start'][0]:.1f} at start", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fast subset (fewer workloads and repeats)")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--only", default=None, help="comma list of sweeps/workload names (width, depth, paper, big, ...)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--skip_big", action="store_true", help="leave out the 256 x 1024 chain")
    p.add_argument("--big_bisect", action="store_true",
                   help="also run the library bisection on the 256 x 1024 chain (~40 PD tests, long)")
    p.add_argument("--dense_budget_s", type=float, default=None,
                   help="skip dense methods whose predicted time per β exceeds this (N³ extrapolation)")
    p.add_argument("--grid_budget_s", type=float, default=None,
                   help="run the full 256-point eigvalsh grid when predicted below this, else extrapolate")
    p.add_argument("--dense_mem_gib", type=float, default=8.0)
    p.add_argument("--timeout_s", type=float, default=1800.0, help="per subprocess")
    p.add_argument("--blas_threads", default="1",
                   help="OPENBLAS_NUM_THREADS for the subprocesses (LAPACK inside jaxlib and scipy). "
                        "1 is much faster on a loaded 2-core box: OpenBLAS threads spin against XLA's.")
    p.add_argument("--render_from", default=None,
                   help="comma list of results.json files: merge their measurements (later files win "
                        "per workload/method) and rewrite the tables and plot into --out; runs nothing")
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        print(json.dumps(_child(json.loads(args._child)), default=float))
        return
    if args.render_from:
        merged, info = {}, None
        for path in args.render_from.split(","):
            with open(path) as f:
                d = json.load(f)
            info = d["info"] if info is None else info
            for r in d["raw"]:
                merged[(r["task"]["workload"], r["task"]["method"])] = r
        order = {w["name"]: i for i, w in enumerate(sorted(workloads(False, None), key=lambda w: w["N"]))}
        results = sorted(merged.values(), key=lambda r: (order.get(r["task"]["workload"], 99),
                                                         METHODS.index(r["task"]["method"])))
        info["merged_from"] = args.render_from.split(",")
        write_outputs(results, info, args, args.out)
        print(f"rendered {len(results)} rows → {args.out}")
        return
    if args.dense_budget_s is None:
        args.dense_budget_s = 8.0 if args.quick else 40.0
    if args.grid_budget_s is None:
        args.grid_budget_s = 0.0 if args.quick else 60.0
    os.environ["OPENBLAS_NUM_THREADS"] = args.blas_threads
    env_extra = {"OPENBLAS_NUM_THREADS": args.blas_threads, "PYTHONPATH": os.path.dirname(HERE)}
    info = machine_info()
    wls = workloads(args.quick, args.only)
    if args.skip_big:
        wls = [w for w in wls if w["sweep"] != "big"]
    methods = [m for m in args.methods.split(",") if m]
    wls.sort(key=lambda w: w["N"])  # small first: dense timings calibrate the N³ skip rule
    calib: dict[str, tuple[int, float]] = {}
    results = []
    t_start = time.perf_counter()
    for w in wls:
        for m in methods:
            if w["sweep"] == "big" and m not in ("recurrence", "lanczos"):
                task, why = None, f"dense N×N float32 would be {4 * w['N'] ** 2 / 2**30:.0f} GiB"
            else:
                task, why = plan(w, m, args, calib)
            if task is None:
                r = {"task": {"workload": w["name"], "sizes": list(w["sizes"]), "method": m}, "skipped": why}
            else:
                print(f"[{time.perf_counter() - t_start:7.1f}s] {w['name']:28s} {m:16s} ...", end="", flush=True)
                r = run_child(task, args.timeout_s, env_extra)
                if "per_beta_s" in r:
                    tmin = min(r["per_beta_s"])
                    if m in DENSE:
                        calib[m] = (w["N"], tmin)
                    extra = ""
                    if r.get("tc_bisect_s"):
                        extra += f"  T_c bisect {min(r['tc_bisect_s']):.2f}s"
                    if r.get("tc_secant_s"):
                        extra += f"  secant {min(r['tc_secant_s']):.2f}s ({r['tc_secant_tests']} tests)"
                    print(f" per β {fmt_t(tmin)}  compile {fmt_t(r.get('compile_s'))}  "
                          f"RSS {r['peak_rss_mib']:.0f} MiB{extra}", flush=True)
                else:
                    print(" " + (r.get("skipped") or ("ERROR " + r.get("error", "")[-400:])), flush=True)
            r["task"]["sweep"] = w["sweep"]
            results.append(r)
            info["loadavg_end"] = os.getloadavg()
            info["suite_wall_s"] = time.perf_counter() - t_start
            write_outputs(results, info, args, args.out)  # incremental: a killed run keeps its rows
    print(f"done in {time.perf_counter() - t_start:.0f} s → {args.out}")


if __name__ == "__main__":
    main()
