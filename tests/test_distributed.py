"""Two local JAX processes (gloo collectives on 127.0.0.1) give the one-process table bit for bit.

Each process has 2 forced host devices, so the mesh has 4 devices across 2 processes; each
process loads only the checkpoint files of its own devices (``sharding.process_rows``).
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

WORKER = textwrap.dedent(r"""
    import json, sys
    pid, nproc, port, run, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    from tapjax import distributed
    if nproc > 1:
        distributed.initialize(f"127.0.0.1:{port}", num_processes=nproc, process_id=pid,
                               initialization_timeout=60)
    import jax, numpy as np
    from tapjax import checkpoints, sharding
    paths = checkpoints.list_checkpoints(run)
    rows = sharding.process_rows(len(paths))
    r = distributed.analyze_checkpoints(paths, threshold=0.4, beta_max=1.0, hint=0.4, rtol=1e-5)
    json.dump({"devices": len(jax.devices()), "processes": jax.process_count(),
               "rows": sorted(set(int(i) for i in rows)),
               **{k: np.asarray(v, float).tolist() for k, v in r._asdict().items()}}, open(out, "w"))
""")


def _write_series(run: str) -> None:
    from tapjax import checkpoints
    rng = np.random.default_rng(0)
    sizes = (10, 8, 8, 6)
    ws = [rng.normal(0, np.sqrt(2 / m), (m, n)).astype(np.float32) for m, n in zip(sizes[:-1], sizes[1:])]
    for step in range(7):   # 7 checkpoints: not a multiple of 4 devices -> padding
        a = np.float32(1.0 + 0.08 * step)
        params = {f"layer{k + 1}": {"kernel": a * w} for k, w in enumerate(ws)}
        checkpoints.save_checkpoint(run, params, {"step": step, "t": float(step)})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(nproc: int, devices_per_process: int, run: str, tmp: str) -> list[dict]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", OPENBLAS_NUM_THREADS="1")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices_per_process}"
    port = str(_free_port())
    outs = [os.path.join(tmp, f"out_{nproc}_{i}.json") for i in range(nproc)]
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(i), str(nproc), port, run, outs[i]],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(nproc)]
    for p in procs:
        try:
            _, err = p.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        assert p.returncode == 0, err[-3000:]
    return [json.load(open(o)) for o in outs]


def test_two_processes_match_one_process_bitwise(tmp_path):
    run = str(tmp_path / "run")
    _write_series(run)
    (one,) = _run(1, 1, run, str(tmp_path))
    two = _run(2, 2, run, str(tmp_path))
    assert one["devices"] == 1 and all(d["devices"] == 4 and d["processes"] == 2 for d in two)
    # each process read only its own checkpoints: 7 items on 4 devices -> rows 0-3 and 4-6
    assert two[0]["rows"] == [0, 1, 2, 3] and two[1]["rows"] == [4, 5, 6]
    assert all(one["crossed"]) and not any(one["status"])
    for d in two:
        for k in ("beta_c", "crossed", "status", "num_tests", "lambda_max_J", "lambda_min_R"):
            assert d[k] == one[k], k
    # the checkpoints are the t=0 net scaled by a: beta_c(a) = beta_c(1) / a (to the search rtol)
    a = 1.0 + 0.08 * np.arange(7)
    np.testing.assert_allclose(np.asarray(one["beta_c"]) * a, one["beta_c"][0], rtol=3e-5)
