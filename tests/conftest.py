import os

# CPU LAPACK (eigh, Cholesky) is far slower with OpenBLAS's default threading on small
# machines (measured ~100x on 512x512 Cholesky); must be set before jax/numpy load it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


MAX_MAPS_BEFORE_CLEAR = 30000   # Linux vm.max_map_count is 65,530 by default


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """One long pytest process keeps every compiled program of ~400 tests alive; its memory maps
    grow by up to ~15k per module (measured) and an mmap failure aborts XLA inside a compile (the
    full suite aborted once that way). After a module, drop JAX's caches when the process holds
    more than ``MAX_MAPS_BEFORE_CLEAR`` maps (clearing after every module recompiles shared
    programs: +5 % suite time)."""
    yield
    try:
        with open("/proc/self/maps") as f:
            n = sum(1 for _ in f)
    except OSError:   # not Linux
        return
    if n > MAX_MAPS_BEFORE_CLEAR:
        jax.clear_caches()


@pytest.fixture
def x64():
    """Run a test in float64 (restores the previous setting afterwards)."""
    with jax.enable_x64(True):
        yield


def spiked(c, strength, key=None):
    """Random couplings plus a rank-one spike in every block (a caricature of training)."""
    import jax.numpy as jnp
    from tapjax.spin_model import LayeredCouplings
    key = jax.random.PRNGKey(5) if key is None else key
    ws = []
    for w in c.weights:
        key, k1, k2 = jax.random.split(key, 3)
        u = jax.random.normal(k1, (w.shape[0],), w.dtype)
        v = jax.random.normal(k2, (w.shape[1],), w.dtype)
        ws.append(w + strength * jnp.outer(u / jnp.linalg.norm(u), v / jnp.linalg.norm(v)))
    return LayeredCouplings(tuple(ws))
