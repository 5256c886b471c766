"""Tests of tapjax.sgtrain: the loss ↔ Hamiltonian identity, the minimisers, and input errors.

Float64 is switched on only inside the ``x64`` fixture (a context manager), so no global JAX
state leaks into other test files.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import sgtrain_compare as compare
from tapjax import sgtrain as sg

_X64_AT_IMPORT = bool(jax.config.jax_enable_x64)


def _x64_context():
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # pylint: disable=import-outside-toplevel
    return enable_x64()


@pytest.fixture
def x64():
    with _x64_context():
        yield


def _problem(seed=0, q=64, m=4, n=2, noise=0.1):
    """Well-conditioned regression: Gaussian inputs + bias column, linear targets + noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(q, m))
    w = rng.normal(size=(n, m + 1))
    y = sg.with_bias(jnp.asarray(x)) @ w.T + noise * rng.normal(size=(q, n))
    return jnp.asarray(x), jnp.asarray(y)


# --------------------------------------------------------------------------- the identity H == D

@pytest.mark.parametrize("activation,shift", [(sg.Identity(), 0.0), (sg.LeakyReLU(0.1), 0.0),
                                              (sg.LeakyReLU(0.0), 5.0), (sg.Tanh(), 0.0)])
@pytest.mark.parametrize("jit", [False, True])
def test_energy_equals_loss_dense(x64, activation, shift, jit):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(50, 7)))
    y = jnp.asarray(rng.normal(size=(50, 3))) + shift
    if isinstance(activation, sg.Tanh):
        y = jnp.tanh(y)  # inside (-1, 1)
    ham = sg.dense_hamiltonian(x, y, activation)
    assert ham.J.shape == (7, 7) and ham.h.shape == (3, 7) and ham.E0.shape == (3,)
    energy = jax.jit(sg.energy) if jit else sg.energy
    for k in range(3):
        W = jnp.asarray(rng.normal(size=(3, 7)) * (k + 1))
        direct = np.sum((np.asarray(x) @ np.asarray(W).T
                         - np.asarray(activation.inverse(y))) ** 2) / 50
        np.testing.assert_allclose(float(energy(ham, W).sum()), direct, rtol=1e-12)
        np.testing.assert_allclose(float(sg.layer_loss(W, x, y, activation)), direct, rtol=1e-12)


def test_energy_equals_loss_conv1d(x64):
    rng = np.random.default_rng(2)
    q, t, cin, cout, k = 6, 12, 2, 3, 4
    x = rng.normal(size=(q, t, cin))
    y = rng.normal(size=(q, t - k + 1, cout))
    w = rng.normal(size=(cout, k, cin))
    # direct valid convolution s_{p,r} = Σ_{k,c} w[r,k,c] x[p+k,c]
    s = np.zeros_like(y)
    for p in range(t - k + 1):
        s[:, p, :] = np.einsum("qkc,rkc->qr", x[:, p:p + k, :], w)
    direct = np.sum((s - y) ** 2) / q
    ham = sg.conv1d_hamiltonian(jnp.asarray(x), jnp.asarray(y), k)
    np.testing.assert_allclose(float(sg.energy(ham, jnp.asarray(w.reshape(cout, -1))).sum()),
                               direct, rtol=1e-12)


@jax.jit
def _bit_energies(J, h, E0, s0, sigma):
    """(Ising energy + H(S⁰), H(decode(σ)), decoded weights) for unit 0 of a 1-unit layer."""
    Jp, hp = sg.ising_couplings(J, h[0], s0, 0.3, sigma.shape[-1])
    ham = sg.LayerHamiltonian(J, h[:1], E0[:1])
    w = sg.decode(sigma, s0, 0.3)
    ising = sg.ising_energy(Jp, hp, sigma.reshape(-1)) + sg.energy(ham, s0[None])[0]
    return ising, sg.energy(ham, w[None])[0], w


def test_bit_encoding_is_exact(x64):
    x, y = _problem(3, m=3)
    ham = sg.dense_hamiltonian(sg.with_bias(x), y)
    rng = np.random.default_rng(3)
    s0 = jnp.asarray(rng.normal(size=4))
    for _ in range(3):
        sigma = jnp.asarray(rng.choice([-1.0, 1.0], size=(4, 5)))
        ising, direct, w = _bit_energies(ham.J, ham.h, ham.E0, s0, sigma)
        assert np.all(np.abs(np.asarray(w - s0)) <= 0.3 + 1e-12)
        np.testing.assert_allclose(float(ising), float(direct), rtol=1e-12)
    # the "center" start decodes to the grid point S0 + L/N_b
    np.testing.assert_allclose(sg.decode(sg.center_bits((4,), 5, jnp.float64), s0, 0.3),
                               s0 + 0.3 / 31, rtol=1e-12)


def test_ground_state_is_least_squares(x64):
    x, y = _problem(4)
    xb = sg.with_bias(x)
    ham = sg.dense_hamiltonian(xb, y)
    W = sg.ground_state(ham)
    ref = np.linalg.lstsq(np.asarray(xb), np.asarray(y), rcond=None)[0].T
    np.testing.assert_allclose(np.asarray(W), ref, rtol=1e-9, atol=1e-12)
    grad = 2 * W @ ham.J + ham.h  # ∇H_i = 2 J S_i + h_i = 0
    np.testing.assert_allclose(np.asarray(grad), 0.0, atol=1e-10)
    # any perturbation raises every unit's energy
    e0 = sg.energy(ham, W)
    assert np.all(np.asarray(sg.energy(ham, W + 1e-3)) > np.asarray(e0))


# --------------------------------------------------------------------------- the minimisers

_anneal = jax.jit(sg.anneal_window, static_argnames=("n_bits", "sweeps", "init"))


def test_annealer_reaches_exact_minimum(x64):
    x, y = _problem(5)
    ham = sg.dense_hamiltonian(sg.with_bias(x), y)
    W_star, e_star = sg.ground_state(ham), sg.ground_state_energy(ham)
    ann = sg.Annealing(n_bits=6, window=(1.0, 1e-5), beta=(1.0, 1e4), sweeps=1)
    W, epochs = jnp.zeros_like(W_star), 30
    energies = []
    for k in range(epochs):  # Annealing.step, one compiled epoch reused
        frac = k / (epochs - 1)
        W = _anneal(ham, W, jax.random.key(k), window=np.float64(sg.geometric(*ann.window, frac)),
                    beta=np.float64(ann.beta_at(ham, frac)), n_bits=ann.n_bits, sweeps=ann.sweeps)
        energies.append(float(sg.energy(ham, W).sum()))
    np.testing.assert_allclose(np.asarray(W), np.asarray(W_star), atol=1e-4)
    gap = np.asarray(sg.energy(ham, W) - e_star)
    assert np.all(gap >= -1e-12) and np.all(gap < 1e-8), gap
    assert energies[-1] < 0.1 * energies[0]


def test_annealer_temperature_matters(x64):
    """At the ground state, a hot chain moves away; a cold one stays within the grid step."""
    x, y = _problem(6)
    ham = sg.dense_hamiltonian(sg.with_bias(x), y)
    W_star, e_star = sg.ground_state(ham), sg.ground_state_energy(ham)
    kw = dict(window=np.float64(0.5), n_bits=6, sweeps=1)  # same signature as above: no recompile
    # (β → 0 exactly would accept every flip, and a deterministic number of sweeps would then
    # just complement the bits; a finite β with energies O(0.01–1) gives a random walk.)
    hot = _anneal(ham, W_star, jax.random.key(1), beta=np.float64(1.0), **kw)
    cold = _anneal(ham, W_star, jax.random.key(1), beta=np.float64(1e9), **kw)
    grid = 2 * 0.5 / 63
    assert float(jnp.max(jnp.abs(cold - W_star))) <= grid
    assert float(jnp.max(jnp.abs(hot - W_star))) > 2 * grid
    # summed over the output units: a single unit of the hot chain may sit on the same grid
    # point as the cold one (observed on an Intel CPU), but the chain as a whole is hotter
    assert float(jnp.sum(sg.energy(ham, hot) - e_star)) > 2 * float(jnp.sum(sg.energy(ham, cold) - e_star))


def test_langevin_reaches_exact_minimum(x64):
    x, y = _problem(7)
    ham = sg.dense_hamiltonian(sg.with_bias(x), y)
    W_star = sg.ground_state(ham)
    lan = sg.Langevin(temperature=(1e-3, 1e-12), steps=40)
    W, hist = sg.fit_one_layer(jnp.zeros_like(W_star), x, y, jax.random.key(0), minimizer=lan,
                               epochs=10)
    np.testing.assert_allclose(np.asarray(W), np.asarray(W_star), atol=1e-4)
    # the history records the Hamiltonian, which is the loss (identity activation)
    np.testing.assert_allclose(hist["energy"], hist["loss"], rtol=1e-10)
    assert hist["energy"].shape == (10,) and hist["energy"][-1] < hist["energy"][0]


def test_two_layer_scheme_is_exact_on_linear_data(x64):
    """Linear hidden layer, exactly linear data: one alternating exact step reaches loss ~0."""
    x, y = _problem(8, noise=0.0)
    params0 = sg.init_params(jax.random.key(0), [4, 5, 2], jnp.float64)
    acts = (sg.Identity(), sg.Identity())
    assert float(sg.mse(params0, x, y, acts)) > 0.1
    params, hist = sg.fit_two_layer(params0, x, y, jax.random.key(1), activations=acts,
                                    minimizer=sg.ExactSolve(), steps=1)
    assert hist["loss"].shape == (1,)
    assert float(hist["loss"][-1]) < 1e-16
    np.testing.assert_allclose(sg.forward(params, x, acts), y, atol=1e-8)


def test_backprop_approaches_exact_minimum(x64):
    x, y = _problem(9)
    ham = sg.dense_hamiltonian(sg.with_bias(x), y)
    params0 = sg.init_params(jax.random.key(0), [4, 2], jnp.float64)
    params, hist = sg.fit_backprop(params0, x, y, activations=(sg.Identity(),),
                                   learning_rate=0.05, steps=400)
    assert hist["loss"][-1] < hist["loss"][0]
    np.testing.assert_allclose(float(hist["loss"][-1]),
                               float(sg.ground_state_energy(ham).sum()), rtol=1e-3)


def test_run_setup_and_summary():
    def task(seed):
        r = np.random.default_rng(seed)
        x = r.normal(size=(40, 3)).astype(np.float32)
        y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype(np.float32)
        return compare.Task("toy", x[:30], y[:30], x[30:], y[30:])

    setup = compare.Setup(exact=sg.ExactSolve(ridge=1e-9))  # Cholesky: cheaper to compile
    rows = compare.run_setup(task, setup, seeds=[0, 1], methods=("exact",))
    assert len(rows) == 2 and {r["seed"] for r in rows} == {0, 1}
    assert all(abs(r["gap_to_exact"]) < 1e-5 and r["train_loss"] < 1e-6 for r in rows)
    assert all(r["val_loss"] < 1e-6 and r["val_acc"] is None for r in rows)
    # summary over (fake) rows: mean ± std per method, and the table
    fake = [dict(rows[0], method="anneal", seed=s, train_loss=v, wall_s=1.0)
            for s, v in enumerate([1.0, 2.0, 4.0])]
    summary = compare.summarize(rows + fake)
    assert {s["method"] for s in summary} == {"exact", "anneal"}
    s = next(s for s in summary if s["method"] == "anneal")
    assert s["seeds"] == 3 and s["val_acc"] is None
    np.testing.assert_allclose(s["train_loss"], (7 / 3, np.std([1.0, 2.0, 4.0])), rtol=1e-12)
    table = compare.markdown_table(summary)
    assert table.count("\n") == 3 and "| toy | 1 | anneal | 3 | 2.333 ± 1.247 |" in table


# --------------------------------------------------------------------------- clear errors

def test_errors_name_the_argument():
    x, y = np.ones((10, 3)), np.ones((10, 2))
    with pytest.raises(ValueError, match="targets: 9 samples"):
        sg.dense_hamiltonian(x, y[:9])
    with pytest.raises(ValueError, match="targets: expected a 2-D"):
        sg.dense_hamiltonian(x, y[:, 0])
    with pytest.raises(ValueError, match="x: expected a 2-D"):
        sg.dense_hamiltonian(x[:, 0], y)
    ham = sg.dense_hamiltonian(x, y)
    with pytest.raises(ValueError, match=r"W: expected weights of shape \(N, M\) = \(2, 3\)"):
        sg.energy(ham, jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="W: expected shape"):
        sg.layer_loss(jnp.ones((2, 4)), x, y)
    with pytest.raises(ValueError, match="targets.*tanh"):
        sg.dense_hamiltonian(x, 1.5 * y, sg.Tanh())
    with pytest.raises(ValueError, match="targets.*ReLU"):
        sg.dense_hamiltonian(x, -y, sg.LeakyReLU(0.0))
    with pytest.raises(ValueError, match="targets: contains NaN"):
        sg.dense_hamiltonian(x, np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="alpha"):
        sg.LeakyReLU(-0.5)
    with pytest.raises(ValueError, match="targets: expected shape"):
        sg.conv1d_hamiltonian(np.ones((4, 8, 1)), np.ones((4, 8, 1)), 3)
    with pytest.raises(ValueError, match="kernel_size"):
        sg.conv1d_hamiltonian(np.ones((4, 8, 1)), np.ones((4, 8, 1)), 9)
    with pytest.raises(ValueError, match="window"):
        sg.Annealing(window=(0.1, 0.0))
    with pytest.raises(ValueError, match="n_bits"):
        sg.anneal_window(ham, jnp.zeros((2, 3)), jax.random.key(0), window=0.1, beta=1.0, n_bits=0)
    with pytest.raises(ValueError, match="ridge"):
        sg.ExactSolve(ridge=-1.0)


def test_network_errors_name_the_argument():
    x = np.ones((10, 3), np.float32)
    y = np.ones((10, 2), np.float32)
    W0 = jnp.zeros((2, 4))
    with pytest.raises(ValueError, match="params: layer 0 has shape"):
        sg.fit_one_layer(jnp.zeros((2, 3)), x, y, jax.random.key(0),
                         minimizer=sg.ExactSolve(), epochs=1)
    with pytest.raises(ValueError, match="y: 9 samples"):
        sg.fit_one_layer(W0, x, y[:9], jax.random.key(0), minimizer=sg.ExactSolve(), epochs=1)
    with pytest.raises(ValueError, match="y: .*tanh"):
        sg.fit_one_layer(W0, x, 2 * y, jax.random.key(0), activation=sg.Tanh(),
                         minimizer=sg.ExactSolve(), epochs=1)
    params0 = sg.init_params(jax.random.key(0), [3, 4, 2])
    with pytest.raises(ValueError, match="activations: the hidden activation"):
        sg.fit_two_layer(params0, x, y, jax.random.key(0), activations=(sg.Tanh(), sg.Identity()),
                         minimizer=sg.ExactSolve(), steps=1)
    with pytest.raises(ValueError, match="activations: the hidden activation"):
        sg.fit_two_layer(params0, x, y, jax.random.key(0),
                         activations=(sg.LeakyReLU(0.0), sg.Identity()),
                         minimizer=sg.ExactSolve(), steps=1)
    with pytest.raises(ValueError, match="y: 3 outputs"):
        sg.fit_two_layer(params0, x, np.ones((10, 3), np.float32), jax.random.key(0),
                         minimizer=sg.ExactSolve(), steps=1)
    with pytest.raises(ValueError, match="hidden_targets"):
        sg.fit_two_layer(params0, x, y, jax.random.key(0), minimizer=sg.ExactSolve(), steps=1,
                         hidden_targets="inverse")
    with pytest.raises(ValueError, match="optimizer"):
        sg.fit_backprop(params0, x, y, activations=(sg.LeakyReLU(), sg.Identity()),
                        optimizer="rmsprop")
    with pytest.raises(ValueError, match="n_train"):
        compare.mnist_task(0, n_train=0, data=_FakeData())
    with pytest.raises(ValueError, match="methods"):
        compare.run_setup(lambda s: None, compare.Setup(), [0], methods=("sgd",))


class _FakeData:
    y_train = np.zeros(5, np.int32)


def test_deprecated_compare_path_still_resolves():
    """``tapjax.sgtrain.compare`` moved to experiments/; the old names warn and are the same objects."""
    import importlib
    old = importlib.import_module("tapjax.sgtrain.compare")
    for name in ("Task", "Setup", "run_setup", "summarize", "markdown_table", "METHODS"):
        with pytest.warns(DeprecationWarning, match=f"experiments.sgtrain_compare.{name}"):
            assert getattr(old, name) is getattr(compare, name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        old.nope  # pylint: disable=pointless-statement


def test_check_weights_is_public_and_names_w():
    from tapjax.sgtrain import hamiltonian
    ham = sg.dense_hamiltonian(np.ones((4, 3)), np.ones((4, 2)))
    hamiltonian.check_weights(ham, jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"W: expected weights of shape \(N, M\) = \(2, 3\)"):
        hamiltonian.check_weights(ham, jnp.zeros((3, 2)))
    assert hamiltonian._check_weights is hamiltonian.check_weights   # old private name kept


def test_x64_does_not_leak():
    """The fixture restores the global flag (whatever it was when this module was imported)."""
    assert bool(jax.config.jax_enable_x64) == _X64_AT_IMPORT
