"""Tests of tapjax.overlap: exact enumeration, block-Gibbs kernel, exchange detailed balance,
reproducibility, and the one-call descriptor on a checkpoint.

Every statistical check has a negative control showing that it can fail.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tapjax import overlap as ov
from tapjax.overlap import heat_bath, tempering
from tapjax.overlap.sampler import SamplerConfig, sample
from tapjax.spin_model import couplings, dense_bond_matrix

# Test inputs come from numpy generators: every distinct jax.random call costs seconds of XLA
# compilation on a busy CPU, and the inputs need not be JAX-reproducible.


def random_couplings(seed, sizes, scale=2.0):
    """MSK draw W_ij ~ N(0, C/N_{k-1}) (section 2) from a numpy generator."""
    rng = np.random.default_rng(seed)
    return couplings([rng.normal(size=(a, b)) * np.sqrt(scale / a) for a, b in zip(sizes[:-1], sizes[1:])])


def random_fields(seed, sizes, scale=0.4):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(scale * rng.normal(size=n), jnp.float32) for n in sizes)

SIZES = (3, 3, 3, 3)          # 12 spins, 4 layers: even {0, 2} and odd {1, 3} blocks
TEMPS = np.array([0.8, 1.2, 1.8])
N_REP = 8
N_BINS = sum(SIZES) + 1       # one bin per attainable overlap value -1 + 2m/N


# --------------------------------------------------------------------------- exact enumeration
def all_configs(n: int) -> np.ndarray:
    """All 2^n spin vectors, ``(2^n, n)`` of ±1."""
    return (((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1) * 2 - 1).astype(np.float64)


def exact_boltzmann(c, fields, temp, clamp=None):
    """Exact Boltzmann weights from the dense J of eq. 4 (independent of the sampler code)."""
    J = np.asarray(dense_bond_matrix(c), np.float64)
    h = np.concatenate([np.asarray(f, np.float64) for f in fields]) if fields is not None else 0.0
    n = J.shape[0]
    if clamp is None:
        X = all_configs(n)
    else:
        n0 = c.sizes[0]
        free = all_configs(n - n0)
        X = np.concatenate([np.broadcast_to(np.asarray(clamp, np.float64), (free.shape[0], n0)), free], 1)
    E = -0.5 * np.einsum("si,ij,sj->s", X, J, X) - X @ np.broadcast_to(h, (n,))
    w = np.exp(-(E - E.min()) / temp)
    return X, E, w / w.sum()


def exact_pq(X, p, num_bins):
    """P(q) of two independent replicas, binned like the sampler.

    With configurations indexed by bit patterns (as :func:`all_configs` makes them),
    q(x, y) = 1 - 2 popcount(x XOR y)/n, and the XOR autocorrelation
    sum_x p(x) p(x XOR d) is a Walsh-Hadamard convolution: O(n 2^n) instead of O(4^n).
    """
    n = X.shape[1]
    code = ((X > 0) * (1 << np.arange(n))).sum(1)
    w = np.zeros(2 ** n)
    w[code] = p

    def wht(a):
        a = a.copy()
        h = 1
        while h < a.size:
            a = a.reshape(-1, 2, h)
            a = np.stack([a[:, 0] + a[:, 1], a[:, 0] - a[:, 1]], 1).reshape(-1)
            h *= 2
        return a

    corr = wht(wht(w) ** 2) / w.size                     # sum_x p(x) p(x ^ d), d = 0..2^n - 1
    pop = np.array([bin(d).count("1") for d in range(2 ** n)])
    q = 1.0 - 2.0 * pop / n
    idx = np.clip(np.floor((q + 1.0) * 0.5 * num_bins).astype(int), 0, num_bins - 1)
    return np.bincount(idx, weights=corr, minlength=num_bins)


@pytest.fixture(scope="module")
def tiny():
    return random_couplings(7, SIZES), random_fields(8, SIZES)


def run_tiny(c, fields, temps, seed, n_measure=12000, clamp=None):
    system = heat_bath.spin_system(c, fields=fields, clamp=clamp)
    cfg = SamplerConfig(n_replicas=N_REP, n_burn=200, n_measure=n_measure, num_bins=N_BINS, chunk=4000)
    return ov.summarize(sample(system, temps, cfg, jax.random.PRNGKey(seed)), system)


def enumeration_errors(res, c, fields, temps, clamp=None):
    """Largest deviations from exact results in magnetization, energy per spin and P(q) mass."""
    err = {"m": 0.0, "e": 0.0, "pq": 0.0}
    width = 2.0 / N_BINS
    for i, t in enumerate(temps):
        X, E, p = exact_boltzmann(c, fields, t, clamp)
        free = slice(c.sizes[0], None) if clamp is not None else slice(None)
        Xf = X[:, free]
        err["m"] = max(err["m"], np.abs(res.spin_mean[i] - p @ Xf).max())
        err["e"] = max(err["e"], abs(res.energy[i] - (p @ E) / Xf.shape[1]))
        err["pq"] = max(err["pq"], np.abs(res.pq[i] * width - exact_pq(Xf, p, N_BINS)).max())
    return err


TOL = {"m": 0.03, "e": 0.006, "pq": 0.01}   # about 5 sigma of the observed seed-to-seed errors


def test_sampler_matches_enumeration(tiny):
    c, fields = tiny
    res = run_tiny(c, fields, TEMPS, seed=0)
    err = enumeration_errors(res, c, fields, TEMPS)
    for k, tol in TOL.items():
        assert err[k] < tol, (k, err)
    assert res.exchange_rate.min() > 0.2          # the tiny ladder mixes
    assert np.allclose(np.diagonal(res.overlap_matrix, axis1=1, axis2=2), 1.0)


def test_enumeration_check_detects_wrong_temperature(tiny):
    """Negative control: sampling at 1.25·T but comparing with the exact result at T must fail."""
    c, fields = tiny
    res = run_tiny(c, fields, TEMPS * 1.25, seed=0)
    err = enumeration_errors(res, c, fields, TEMPS)
    assert any(err[k] > 3 * tol for k, tol in TOL.items()), err


def test_clamped_input_matches_enumeration(tiny):
    c, fields = tiny
    clamp = np.array([1.0, -1.0, 1.0])
    res = run_tiny(c, fields, TEMPS, seed=1, clamp=clamp)
    err = enumeration_errors(res, c, fields, TEMPS, clamp)
    assert err["m"] < TOL["m"] and err["pq"] < TOL["pq"], err
    assert res.layers == (1, 2, 3)


# --------------------------------------------------------------------------- long cold runs (issue 13.8)
def test_compensated_sum_is_float64_accurate_under_jit():
    """The TwoSum pair survives XLA compilation: 10^5 float32 addends of size 170 summed to 1e-12."""
    from tapjax.overlap.accumulators import compensated_add, compensated_value, compensated_zeros
    x = np.random.default_rng(0).normal(-170.0, 3.0, size=100_000).astype(np.float32)

    @jax.jit
    def sums(x):
        def body(i, carry):
            total, naive = carry
            return compensated_add(total, x[i]), naive + x[i]
        return jax.lax.fori_loop(0, x.shape[0], body, (compensated_zeros(()), jnp.float32(0.0)))

    total, naive = sums(jnp.asarray(x))
    ref = math.fsum(x.astype(np.float64))
    assert abs(float(compensated_value(total)) - ref) <= 1e-12 * abs(ref)
    assert abs(float(naive) - ref) > 1e-6 * abs(ref)           # negative control: plain float32


COLD_TEMPS = np.array([0.5, 1.0, 2.0])


def test_long_cold_run_sums_are_float64_and_match_enumeration(tiny):
    """Weights x3, T = 0.5, 3 x 10^4 measurements x 8 replicas (E/N about -2.9).

    1. The running sums equal float64 sums of the stored (exact) energy and Qbar series, so E/N,
       C and energy_err carry no accumulation error; the plain float32 running sums of earlier
       versions miss by 1e-5 (mean) and several percent (variance) on the same series.
    2. E/N and the specific heat agree with exact enumeration of the 2^12 states.
    """
    c0, fields = tiny
    c = couplings([3.0 * np.asarray(w) for w in c0.weights])
    system = heat_bath.spin_system(c, fields=fields)
    m, n = 30_000, sum(SIZES)
    cfg = SamplerConfig(n_replicas=N_REP, n_burn=200, n_measure=m, num_bins=N_BINS, chunk=4000)
    out = sample(system, COLD_TEMPS, cfg, jax.random.PRNGKey(0))
    res = ov.summarize(out, system)
    assert out.acc.count == m and res.exchange_rate.min() > 0.05
    e = out.series["energy"].astype(np.float64)                  # (M, T, R)
    var = e.var(axis=(0, 2))
    np.testing.assert_allclose(res.energy, e.mean((0, 2)) / n, rtol=1e-9)
    np.testing.assert_allclose(res.specific_heat, var / COLD_TEMPS ** 2 / n, rtol=1e-6)
    np.testing.assert_allclose(res.energy_err, np.sqrt(var * res.tau_energy / (m * N_REP)) / n, rtol=1e-6)
    # Qbar: XLA may round the summed and the stored copy of a row differently (1 ulp per sample)
    np.testing.assert_allclose(res.qbar, out.series["qbar"].astype(np.float64).mean(0), rtol=1e-7)
    # negative control: sequential float32 sums (what the sampler accumulated before)
    e32 = out.series["energy"]
    mean32 = np.cumsum(e32.mean(-1, dtype=np.float32), 0, dtype=np.float32)[-1] / np.float32(m)
    sq32 = np.cumsum((e32 * e32).mean(-1, dtype=np.float32), 0, dtype=np.float32)[-1] / np.float32(m)
    var32 = np.maximum(sq32.astype(np.float64) - mean32.astype(np.float64) ** 2, 0.0)
    assert np.abs(mean32 / e.mean((0, 2)) - 1).max() > 1e-6
    assert np.abs(var32 / var - 1).max() > 0.02
    for i, t in enumerate(COLD_TEMPS):
        _, energies, p = exact_boltzmann(c, fields, t)
        e_exact = p @ energies
        var_exact = p @ energies ** 2 - e_exact ** 2
        assert abs(res.energy[i] - e_exact / n) < 4 * res.energy_err[i], (t, res.energy[i], e_exact / n)
        assert abs(res.specific_heat[i] * t * t * n / var_exact - 1) < 0.15, (t, res.specific_heat[i])


# --------------------------------------------------------------------------- block Gibbs
def sweep_kernel(c, fields, beta):
    """Exact transition matrix of one block sweep (even layers, then odd layers), from the
    library's local fields and heat-bath probabilities."""
    system = heat_bath.spin_system(c, fields=fields)
    n = c.num_spins
    X = all_configs(n)
    off = c.offsets
    nl = len(c.sizes)
    parity = np.concatenate([np.full(s, k % 2) for k, s in enumerate(c.sizes)])

    def cond(states):  # P(y_i | neighbours in `states`) for every spin i and y_i = +1
        layers = [jnp.asarray(states[:, off[k]:off[k + 1]], jnp.float32) for k in range(nl)]
        f = jnp.concatenate([heat_bath.local_field(system, layers, k) for k in range(nl)], -1)
        return np.asarray(heat_bath.heat_bath_probability(beta * f), np.float64)

    def trans(p_plus, mask):  # (S, n) P(+1) → (S from, S to) probability of moving the masked spins
        p = np.where(X[None, :, :] > 0, p_plus[:, None, :], 1.0 - p_plus[:, None, :])
        keep = (X[None, :, ~mask] == X[:, None, ~mask]).all(-1)
        return np.prod(p[:, :, mask], -1) * keep

    even, odd = parity == 0, parity == 1
    k_even = trans(cond(X), even)       # odd spins unchanged, even spins from P(·|odd)
    k_odd = trans(cond(X), odd)         # given the new even spins
    return X, k_even @ k_odd


def test_block_sweep_kernel_is_stationary():
    """pi K = pi for the exact kernel of one sweep on an 8-spin, 4-layer model with fields."""
    c, fields = random_couplings(9, (2, 2, 2, 2)), random_fields(10, (2, 2, 2, 2))
    temp = 1.0
    X, K = sweep_kernel(c, fields, 1.0 / temp)
    _, _, p = exact_boltzmann(c, fields, temp)
    np.testing.assert_allclose(K.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(p @ K, p, atol=1e-6)           # Boltzmann is invariant
    # negative control: the same kernel at another temperature does not preserve p
    _, K2 = sweep_kernel(c, fields, 1.0 / 1.5)
    assert np.abs(p @ K2 - p).max() > 1e-3


def test_even_layers_conditionally_independent_given_odd(tiny):
    """Draw the even layers 40 000 times with the odd layers fixed and compare the joint
    distribution of all 6 even spins with the exact conditional from the dense J."""
    c, fields = tiny
    beta = 1.0
    system = heat_bath.spin_system(c, fields=fields)
    rng_odd = [np.array([1.0, -1.0, -1.0]), np.array([-1.0, 1.0, 1.0])]
    draws = 40000
    spins = [jnp.zeros((1, draws, 3)), jnp.broadcast_to(rng_odd[0], (1, draws, 3)),
             jnp.zeros((1, draws, 3)), jnp.broadcast_to(rng_odd[1], (1, draws, 3))]
    u = list(jnp.asarray(np.random.default_rng(3).random((4, 1, draws, 3)), jnp.float32))
    new, _ = heat_bath.half_sweep(system, spins, jnp.array([beta]), u, 0)
    even = np.concatenate([np.asarray(new[0][0]), np.asarray(new[2][0])], -1)     # (draws, 6)
    np.testing.assert_array_equal(np.asarray(new[1]), np.asarray(spins[1]))      # odd untouched
    code = ((even > 0) * (2 ** np.arange(6))).sum(-1)
    emp = np.bincount(code, minlength=64) / draws
    # exact conditional P(even | odd) ∝ exp(-β H) over the 64 even configurations
    J = np.asarray(dense_bond_matrix(c), np.float64)
    h = np.concatenate([np.asarray(f, np.float64) for f in fields])
    E6 = all_configs(6)
    X = np.zeros((64, 12))
    X[:, 0:3], X[:, 6:9] = E6[:, :3], E6[:, 3:]
    X[:, 3:6], X[:, 9:12] = rng_odd[0], rng_odd[1]
    E = -0.5 * np.einsum("si,ij,sj->s", X, J, X) - X @ h
    p = np.exp(-beta * (E - E.min()))
    p /= p.sum()
    chi2 = np.sum((emp - p) ** 2 / p) * draws            # ~ chi^2 with 63 dof
    assert chi2 < 63 + 6 * np.sqrt(2 * 63), chi2
    # and the joint equals the product of its marginals (independence), up to sampling noise
    marg = np.array([(even[:, i] > 0).mean() for i in range(6)])
    prod = np.prod(np.where(E6 > 0, marg, 1 - marg), -1)
    assert np.abs(emp - prod).max() < 0.01
    # negative control: the statistic rejects samples drawn at another β
    wrong, _ = heat_bath.half_sweep(system, spins, jnp.array([0.6 * beta]), u, 0)
    ew = np.concatenate([np.asarray(wrong[0][0]), np.asarray(wrong[2][0])], -1)
    emp_w = np.bincount(((ew > 0) * (2 ** np.arange(6))).sum(-1), minlength=64) / draws
    assert np.sum((emp_w - p) ** 2 / p) * draws > 63 + 6 * np.sqrt(2 * 63)


def test_sweep_energy_matches_direct_energy(tiny):
    c, fields = tiny
    system = heat_bath.spin_system(c, fields=fields)
    rng = np.random.default_rng(0)
    spins0 = [jnp.asarray(rng.choice([-1.0, 1.0], size=(3, 4, n)), jnp.float32) for n in SIZES]
    u = [jnp.asarray(rng.random((3, 4, n)), jnp.float32) for n in SIZES]
    sweep = jax.jit(heat_bath.block_gibbs_sweep)
    for fn in (sweep,):
        spins, e = fn(system, spins0, jnp.asarray(1.0 / TEMPS, jnp.float32), u)
        np.testing.assert_allclose(e, heat_bath.energy(system, spins), rtol=1e-5, atol=1e-5)
        x = np.concatenate([np.asarray(s) for s in spins], -1)
        J = np.asarray(dense_bond_matrix(c))
        h = np.concatenate([np.asarray(f) for f in fields])
        np.testing.assert_allclose(e, -0.5 * np.einsum("tri,ij,trj->tr", x, J, x) - x @ h, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- parallel tempering
def detailed_balance_violation(accept, temps=(1.0, 1.6)):
    """max |π(x,y) A(x,y) − π(y,x) A(y,x)| / π(x,y) over all pairs of a 6-spin model."""
    cs = random_couplings(5, (2, 2, 2))
    J = np.asarray(dense_bond_matrix(cs), np.float64)
    X = all_configs(6)
    E = -0.5 * np.einsum("si,ij,sj->s", X, J, X)
    b1, b2 = 1.0 / temps[0], 1.0 / temps[1]
    logpi = -b1 * E[:, None] - b2 * E[None, :]               # (x at β1, y at β2)
    A = np.asarray(accept(b1, b2, E[:, None], E[None, :]), np.float64)
    lhs = np.exp(logpi) * A
    rhs = np.exp(logpi.T) * A.T
    return np.max(np.abs(lhs - rhs) / np.exp(logpi))


def test_exchange_detailed_balance():
    assert detailed_balance_violation(tempering.exchange_acceptance) < 1e-5
    # negative controls: a sign error or a plain Boltzmann factor break it
    flipped = lambda b1, b2, e1, e2: tempering.exchange_acceptance(b1, b2, e2, e1)   # noqa: E731
    assert detailed_balance_violation(flipped) > 0.1
    naive = lambda b1, b2, e1, e2: jnp.exp(jnp.minimum(0.0, -b1 * (e2 - e1)))        # noqa: E731
    assert detailed_balance_violation(naive) > 0.1


def test_exchange_step_swaps_with_the_right_frequency():
    t_, r_ = 5, 40000
    betas = jnp.asarray(1.0 / np.geomspace(1.0, 2.0, t_), jnp.float32)
    rng = np.random.default_rng(11)
    energies = jnp.asarray(-3.0 + rng.normal(size=(t_, r_)), jnp.float32)
    payload = jnp.broadcast_to(jnp.arange(t_)[:, None, None], (t_, r_, 2)) * 1.0
    u = jnp.asarray(rng.random((t_ - 1, r_)), jnp.float32)
    for parity in (0, 1):
        (moved,), e_new, probs, proposed = jax.jit(tempering.exchange_step)(u, (payload,), energies, betas,
                                                                             parity)
        moved = np.asarray(moved)
        swapped = moved[:, :, 0] != np.arange(t_)[:, None]
        np.testing.assert_array_equal(np.asarray(proposed), np.arange(t_ - 1) % 2 == parity)
        for t in range(t_ - 1):
            lo = swapped[t] & (moved[t, :, 0] == t + 1)
            if not proposed[t]:
                assert not lo.any()
                continue
            # the swap frequency equals the mean acceptance (4-sigma binomial band)
            pbar = float(np.mean(probs[t]))
            assert abs(lo.mean() - pbar) < 4 * np.sqrt(pbar * (1 - pbar) / r_) + 1e-6
            # energies travel with their configurations
            np.testing.assert_array_equal(np.asarray(e_new)[t][lo], np.asarray(energies)[t + 1][lo])
            np.testing.assert_array_equal(moved[t + 1, lo, 0], t)


# --------------------------------------------------------------------------- reproducibility
def test_reproducible_from_seed_and_independent_of_chunking(tiny):
    c, fields = tiny
    system = heat_bath.spin_system(c, fields=fields)
    cfg = SamplerConfig(n_replicas=N_REP, n_burn=30, n_measure=60, num_bins=N_BINS, chunk=4000)
    a = sample(system, TEMPS, cfg, jax.random.PRNGKey(42))
    b = sample(system, TEMPS, cfg, jax.random.PRNGKey(42))
    d = sample(system, TEMPS, cfg, jax.random.PRNGKey(43))
    small = SamplerConfig(n_replicas=N_REP, n_burn=30, n_measure=60, num_bins=N_BINS, chunk=7)
    e = sample(system, TEMPS, small, jax.random.PRNGKey(42))
    for other in (b, e):
        np.testing.assert_array_equal(a.series["energy"], other.series["energy"])
        for x, y in zip(a.state.spins, other.state.spins):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(a.acc["hist"], other.acc["hist"])
    assert not np.array_equal(a.series["energy"], d.series["energy"])


# --------------------------------------------------------------------------- descriptor
def test_qab_curve_on_checkpoint_and_roundtrip(tmp_path):
    from tapjax.checkpoints import save_checkpoint
    c = random_couplings(0, SIZES)        # same shapes as the enumeration tests: no recompilation
    params = {f"layer{k + 1}": {"kernel": np.asarray(w)} for k, w in enumerate(c.weights)}
    path = save_checkpoint(str(tmp_path), params, {"step": 5, "t": 0.25, "val_error": 0.5})
    temps = np.array([0.3, 1.0, 6.0])
    kw = dict(n_replicas=N_REP, n_burn=100, n_measure=1000, seed=3, num_bins=N_BINS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ov.EquilibrationWarning)
        res = ov.qab_curve(path, temps, **kw)
    assert res.meta["t"] == 0.25 and res.meta["path"] == path
    assert res.qbar.shape == (3,) and res.qbar_layer.shape == (3, 4) and res.pq.shape == (3, N_BINS)
    assert np.all(np.isfinite(res.qbar)) and np.all((res.qbar >= 0) & (res.qbar <= 1))
    # the curve rises from the finite-size floor at high T to order 1 at low T
    assert res.qbar[-1] < 1.3 * res.floor and res.qbar[0] > 3 * res.floor
    np.testing.assert_allclose((res.pq * np.diff(res.bin_edges)).sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose((res.pq_layer * np.diff(res.bin_edges)).sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(res.qbar_site.mean(-1), res.qbar, rtol=1e-4)   # exact decomposition
    npz, js = res.save(str(tmp_path / "qab"))
    back = ov.QabResult.load(npz)
    np.testing.assert_array_equal(back.qbar, res.qbar)
    assert back.layers == res.layers and back.settings["seed"] == 3
    with open(js) as f:
        assert len(json.load(f)["table"]) == 3
    # the same seed gives the same curve
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ov.EquilibrationWarning)
        again = ov.qab_curve(params, temps, **kw)
    np.testing.assert_array_equal(again.qbar, res.qbar)


def test_equilibration_diagnostics_flag_a_short_run():
    """A run that starts measuring before it has relaxed must be flagged, with numbers."""
    c = random_couplings(1, SIZES)
    kw = dict(n_replicas=N_REP, seed=0, num_bins=N_BINS, on_fail="raise")
    # no burn-in and 40 sweeps at low T: too short for the measured autocorrelation time
    with pytest.raises(ov.EquilibrationError, match=r"run too short .* tau_int=[0-9.]+ sweeps") as err:
        ov.qab_curve(c, TEMPS / 5, n_burn=0, n_measure=40, **kw)
    assert "burn-in too short" in str(err.value)
    # and a long-enough run at high T passes the same checks
    res = ov.qab_curve(c, TEMPS * 2, n_burn=100, n_measure=1000, **kw)
    assert res.equilibrated, res.diagnostics["problems"]


def test_diagnose_detects_drift_and_sparse_tempering():
    """Synthetic series: a stationary AR(1) passes; a slow trend or a bad exchange rate is flagged."""
    rng = np.random.default_rng(0)
    m, t, r = 4000, 3, 8
    eps = rng.normal(size=(m + 100, t, r))
    kernel = 0.5 ** np.arange(100)
    ar = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid")[:m], 0, eps)
    qbar = 0.3 + 0.01 * rng.normal(size=(m, t))
    ok = ov.diagnose(TEMPS, ar, qbar, n_burn=1000, measure_every=1, exchange_rate=np.array([0.5, 0.4]))
    assert ok["ok"], ok["problems"]
    trend = ar + np.linspace(0.0, 1.0, m)[:, None, None] * (np.arange(t) == 1)[None, :, None]
    bad = ov.diagnose(TEMPS, trend, qbar, n_burn=1000, measure_every=1, exchange_rate=np.array([0.5, 0.01]))
    msg = " ".join(bad["problems"])
    assert not bad["ok"]
    assert "energy drifts" in msg and "T=1.2" in msg and "between T=1.2 and T=1.8" in msg
    assert abs(bad["drift_z_energy"][1]) > 4 and abs(bad["drift_z_energy"][0]) < 4


def test_autocorrelation_time_of_ar1():
    """τ_int of an AR(1) series with coefficient φ is (1 + φ)/(1 − φ)."""
    phi, n = 0.8, 100000
    eps = np.random.default_rng(0).normal(size=(n + 400, 4))
    kernel = phi ** np.arange(400)                        # x_t = sum_s phi^s eps_{t-s}
    x = np.stack([np.convolve(eps[:, j], kernel, mode="valid")[:n] for j in range(4)], 1)
    tau = ov.integrated_autocorrelation_time(x, axis=0, pool_axis=1)
    assert abs(tau - (1 + phi) / (1 - phi)) < 0.6


def test_overlap_floor_matches_formula():
    assert abs(ov.overlap_floor(1000) - np.sqrt(2 / (np.pi * 1000))) < 1e-3
    assert ov.overlap_floor(2) == pytest.approx(0.5)       # q ∈ {±1 w.p. 1/2, 0 w.p. 1/2}


def test_bad_inputs_raise(tiny):
    c, _ = tiny
    with pytest.raises(ValueError, match="n_replicas"):
        SamplerConfig(n_replicas=1)
    with pytest.raises(ValueError, match="fields"):
        heat_bath.spin_system(c, fields=[np.zeros(3)])
    with pytest.raises(ValueError, match="monotone"):
        sample(heat_bath.spin_system(c), [1.0, 0.5, 2.0], SamplerConfig(n_measure=2), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="clamp"):
        ov.build_system(c.weights, input_layer="clamped")


# --------------------------------------------------------------------------- curve readouts (shape.py)
def _curve(temps, qbar, floor, qbar_layer=None, floor_layer=(), layers=()):
    from types import SimpleNamespace
    return SimpleNamespace(temperatures=np.asarray(temps), qbar=np.asarray(qbar), floor=floor,
                           qbar_layer=np.asarray(qbar_layer) if qbar_layer is not None else None,
                           floor_layer=tuple(floor_layer), layers=tuple(layers))


def test_onset_temperature_is_the_highest_grid_T_above_five_percent():
    from tapjax.overlap.shape import onset_temperature
    temps = np.geomspace(0.4, 16.0, 32)
    floor, floor1 = 0.0246, 0.07
    x = np.clip(1.5 - temps, 0.0, None)                       # excess overlap, > 0.05 below T = 1.45
    x1 = np.clip(2.0 - temps, 0.0, None)                      # layer 1 orders at a higher T
    res = _curve(temps, floor + (1 - floor) * x, floor,
                 np.stack([floor + (1 - floor) * x, floor1 + (1 - floor1) * x1], 1), (floor, floor1), (0, 1))
    assert onset_temperature(res) == temps[temps < 1.45].max()
    assert onset_temperature(res, layer=1) == temps[temps < 1.95].max()
    # the rule normalizes by the floor: the same curve with a higher floor starts later
    assert onset_temperature(_curve(temps, res.qbar, 0.2)) < onset_temperature(res)
    assert np.isnan(onset_temperature(_curve(temps, np.full(32, floor), floor)))   # never orders
    with pytest.raises(ValueError, match="layer=3"):
        onset_temperature(res, layer=3)


def test_pq_shape_binder_dip_and_peak():
    from types import SimpleNamespace
    from tapjax.overlap.shape import pq_shape, temperature_index
    edges = np.linspace(-1.0, 1.0, 65)
    centers = 0.5 * (edges[1:] + edges[:-1])
    width = np.diff(edges)
    gauss = np.exp(-0.5 * (centers / 0.15) ** 2)
    peaks = np.where(np.abs(np.abs(centers) - 0.5) < 0.02, 1.0, 0.0)     # two bins at ±0.5
    pq = np.stack([g / np.sum(g * width) for g in (gauss, peaks)])
    res = SimpleNamespace(temperatures=np.array([2.0, 0.5]), bin_edges=edges, pq=pq, pq_layer=pq[:, None],
                          layers=(1,))
    g, p = pq_shape(res, 0), pq_shape(res, 1, layer=1)
    assert abs(g["binder"]) < 0.02 and g["dip"] > 0.9                   # paramagnet: Gaussian P(q)
    q = centers[peaks > 0]                                               # ±0.484, ±0.516
    np.testing.assert_allclose(p["binder"], 0.5 * (3 - np.mean(q ** 4) / np.mean(q ** 2) ** 2), rtol=1e-12)
    assert p["binder"] > 0.99 and p["dip"] < 1e-9                        # one Z2 pair of states
    assert abs(p["q_star"] - 0.5) <= 1.5 * width[0] and p["T"] == 0.5
    assert temperature_index(res, 0.6) == 1 and temperature_index(res, 1.5) == 0


# --------------------------------------------------------------------------- experiments/overlap.py
def test_overlap_experiment_config_from_flags():
    import ast
    import copy
    import inspect
    from absl import flags
    from experiments import overlap as script

    def parse(argv):
        fl = flags.FlagValues()
        for f in dataclasses.fields(script.OverlapExperiment):   # the script's flags, privately
            fl[f.name] = copy.deepcopy(flags.FLAGS[f.name])       # no shared state with FLAGS
        fl(["overlap", *argv])
        return script.OverlapExperiment.from_flags(fl)

    assert parse([]) == script.OverlapExperiment()               # flag defaults = config defaults
    cfg = parse(["--parts=training,lowT", "--widths=32,10", "--times=0,2.5", "--workdir=/tmp/x"])
    assert cfg.parts == ("training", "lowT") and cfg.widths == (32, 10) and cfg.times == (0.0, 2.5)
    assert cfg.workdir == "/tmp/x" and cfg.n_burn == 400
    np.testing.assert_allclose(cfg.temperatures[[0, -1]], [0.4, 16.0])
    defaults = script.OverlapExperiment()
    assert not any(str(getattr(defaults, f.name)).startswith("/") for f in dataclasses.fields(defaults))
    with pytest.raises(ValueError, match="unknown"):
        script.OverlapExperiment(parts=("training", "typo"))
    with pytest.raises(ValueError, match="--paper_run"):
        script.OverlapExperiment(parts=("paper",))
    # only main() reads FLAGS (helpers take the config)
    tree = ast.parse(inspect.getsource(script))
    readers = {fn.name for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef)
               for node in ast.walk(fn) if isinstance(node, ast.Name) and node.id == "FLAGS"}
    assert readers == {"main"}, readers


def test_overlap_script_tap_reference_is_the_library_rule():
    """experiments/overlap.py's λ* (library Reference, dense) equals the PD-bisection value the
    docs' runs used, on a 16-12-8 MSK net; the untrained net's own T_c is 1/β*."""
    from experiments import overlap as script
    from tapjax import recurrence
    from tapjax.msk import critical_beta
    c0 = random_couplings(3, (16, 12, 8))
    ref = script.TapReference(c0)

    @jax.jit
    def lam_min(c, beta):                        # the script's former implementation
        def body(_, b):
            mid = 0.5 * (b[0] + b[1])
            ok = recurrence.positive_definite(c, beta, mid)
            return jnp.where(ok, mid, b[0]), jnp.where(ok, b[1], mid)
        lo, hi = jax.lax.fori_loop(0, 32, body, (jnp.float32(-2.0), jnp.float32(1.5)))
        return 0.5 * (lo + hi)

    betas = critical_beta(c0.sizes, 2.0) * np.linspace(0.8, 1.25, 16)
    curve = np.array([float(lam_min(c0, b)) for b in betas])
    np.testing.assert_allclose(ref.threshold_value, curve.min(), atol=2e-5)
    assert ref.threshold_beta == pytest.approx(betas[int(np.argmin(curve))], rel=1e-12)
    assert ref.critical_temperature(c0) == pytest.approx(1.0 / ref.threshold_beta)
