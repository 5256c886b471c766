"""Sharded β grid / checkpoint axis: 4 forced host devices give the 1-device results bit for bit.

Each configuration runs in its own subprocess because the device count is fixed when JAX
starts (``XLA_FLAGS=--xla_force_host_platform_device_count=N``).
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(r"""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from tapjax import recurrence, sharding, tap
    from tapjax.spin_model import LayeredCouplings

    sizes = (12, 9, 9, 9, 4)
    rng = np.random.default_rng(0)  # numpy draws: no jax.random compiles in a 2 x startup test
    c = LayeredCouplings(tuple(jnp.asarray(rng.normal(0, np.sqrt(2 / m), (m, n)).astype(np.float32))
                               for m, n in zip(sizes[:-1], sizes[1:])))
    betas = np.linspace(0.05, 1.2, 7)          # 7: not a multiple of 4 -> padding
    # 5 "checkpoints": the net scaled by a = 1, 1.1, ..., 1.4 (a caricature of training).
    # Scaling W by a maps M(beta) to M(a beta), so beta_c(a) = beta_c(1) / a exactly.
    scales = 1.0 + 0.1 * np.arange(5)
    stacked = tuple(np.stack([np.float32(a) * np.asarray(w) for a in scales]) for w in c.weights)
    # threshold above the minimum of the curve: every checkpoint crosses it transversally
    dense = sharding.sharded_least_eigenvalue(c, betas, "dense")
    thr = float(dense.min()) + 0.05
    out = {
        "devices": len(jax.devices()),
        "dense": dense.tolist(),
        "lanczos": sharding.sharded_least_eigenvalue(c, betas, "lanczos", num_iter=40, batch_size=1).tolist(),
        "curves": sharding.sharded_curves(stacked, betas, "dense").tolist(),
        "beta_c": sharding.sharded_critical_betas(stacked, thr, 1.5, rtol=1e-4, num_scan=16).tolist(),
        "beta_c_per_ckpt_thr": sharding.sharded_critical_betas(
            stacked, np.full(5, thr) + np.arange(5) * 1e-3, 1.5, num_scan=16).tolist(),
    }
    if out["devices"] == 1:  # reference values from the plain (unsharded) functions
        out["plain_dense"] = np.asarray(tap.least_eigenvalue(c, betas, "dense")).tolist()
        out["plain_beta_c"] = [
            recurrence.critical_beta(LayeredCouplings(tuple(jnp.asarray(w[i]) for w in stacked)),
                                     thr, 1.5, rtol=1e-4, num_scan=16)
            for i in range(5)]
        out["scales"] = scales.tolist()
    json.dump(out, sys.stdout)
""")


def _start(n_devices: int) -> subprocess.Popen:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n_devices}").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _result(p: subprocess.Popen) -> dict:
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs():
    procs = _start(1), _start(4)  # both at once: the two processes overlap on a 2-core box
    return tuple(_result(p) for p in procs)


def test_four_devices_bitwise_equal_to_one(runs):
    one, four = runs
    assert one["devices"] == 1 and four["devices"] == 4
    for key in ("dense", "lanczos", "curves", "beta_c", "beta_c_per_ckpt_thr"):
        np.testing.assert_array_equal(np.asarray(four[key]), np.asarray(one[key]), err_msg=key)


def test_sharded_equals_plain_functions(runs):
    one, _ = runs
    np.testing.assert_array_equal(np.asarray(one["dense"]), np.asarray(one["plain_dense"]))
    np.testing.assert_allclose(np.asarray(one["lanczos"]), np.asarray(one["plain_dense"]), atol=1e-4)
    np.testing.assert_array_equal(np.asarray(one["curves"])[0], np.asarray(one["plain_dense"]))
    bc = np.asarray(one["beta_c"])
    np.testing.assert_array_equal(bc, np.asarray(one["plain_beta_c"]))
    # beta_c(a) = beta_c(1) / a for couplings scaled by a (to the bisection's rtol = 1e-4)
    np.testing.assert_allclose(bc * np.asarray(one["scales"]), bc[0], rtol=3e-4)


def test_padding_and_input_validation():
    from tapjax import sharding
    x = np.arange(5.0)
    np.testing.assert_array_equal(sharding._pad_leading(x, 4), [0, 1, 2, 3, 4, 4, 4, 4])
    np.testing.assert_array_equal(sharding._pad_leading(x, 5), x)
    with pytest.raises(ValueError, match="leading checkpoint axis"):
        sharding.sharded_critical_betas([np.ones((3, 2), np.float32)], 0.0, 1.0)
    with pytest.raises(ValueError, match="backend"):
        sharding.sharded_least_eigenvalue([np.ones((3, 2), np.float32)], [0.5], "qr")
