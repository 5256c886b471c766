import json
import os

import jax
import numpy as np
import pytest

from tapjax import checkpoints as ckpt
from tapjax.data import load_embedded
from tapjax.models import ModelConfig, apply, init_params, weights_from_params
from tapjax.training import TrainConfig, checkpoint_steps, train


@pytest.fixture(scope="module")
def data():
    return load_embedded()


def small_cfg(**kw):
    base = dict(model=ModelConfig(kind="standard", widths=(64, 64, 10)), lr=1e-4, epochs=2,
                schedule="every", first_epoch_levels=3)
    base.update(kw)
    return TrainConfig(**base)


def test_model_shapes_and_init_variance():
    cfg = ModelConfig(kind="binarized", widths=(512, 512, 512, 10), init_scale=2.0)
    p = init_params(cfg, jax.random.PRNGKey(0))
    ws = weights_from_params(p)
    assert [w.shape for w in ws] == [(784, 512), (512, 512), (512, 512), (512, 10)]
    assert "bias" not in p["layer1"]
    for w in ws[:3]:  # N(0, C/N_in)
        np.testing.assert_allclose(np.var(np.asarray(w)) * w.shape[0], 2.0, rtol=0.03)
    x = np.random.default_rng(0).integers(0, 256, (5, 784), dtype=np.uint8)
    assert apply(cfg, p, x).shape == (5, 10)


def test_checkpoint_schedule():
    cfg = small_cfg(epochs=100, schedule="log:4", first_epoch_levels=6)
    s = checkpoint_steps(cfg, 64)
    assert s[:8] == [0, 1, 2, 4, 8, 16, 32, 64]
    assert s[-1] == 6400 and s == sorted(set(s))
    epochs = [x // 64 for x in s if x >= 64]
    assert epochs == [1, 2, 3, 6, 10, 18, 32, 56, 100]
    with pytest.raises(ValueError, match="schedule"):
        small_cfg(schedule="sometimes")


@pytest.mark.parametrize("kind", ["standard", "binarized"])
def test_short_training_beats_chance(tmp_path, data, kind):
    cfg = TrainConfig(model=ModelConfig(kind=kind), lr=1e-4, epochs=3, schedule="every")
    res = train(cfg, data, str(tmp_path), progress=False)
    errs = [h["val_error"] for h in res.history]
    assert len(errs) == 3
    assert errs[-1] < 0.25, errs          # chance is 0.9
    run = ckpt.load_run(str(tmp_path))
    assert run.t[0] == 0.0 and np.all(np.diff(run.t) > 0)
    assert run.val_error[0] > 0.6         # untrained
    assert run.weights[0].shape == (len(run), 784, 512)
    assert run.t[1] == pytest.approx(1 / 64, rel=0.1)


def test_resume_is_bit_identical(tmp_path, data):
    d = data.subset(1024, 200)
    cfg = small_cfg(epochs=3)
    a = train(cfg, d, str(tmp_path / "a"), progress=False)
    # "kill" run b mid-epoch-2 (stop right after the chunk ending at step 40), then resume
    train(cfg, d, str(tmp_path / "b"), progress=False, stop_after_step=40)
    assert not os.path.exists(ckpt.checkpoint_path(str(tmp_path / "b"), 3 * 32))
    b = train(cfg, d, str(tmp_path / "b"), progress=False)
    for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert a.history == b.history
    pa, pb = ckpt.list_checkpoints(str(tmp_path / "a")), ckpt.list_checkpoints(str(tmp_path / "b"))
    assert [os.path.basename(p) for p in pa] == [os.path.basename(p) for p in pb]
    for x, y in zip(pa, pb):
        (wa, ma), (wb, mb) = ckpt.load_checkpoint(x), ckpt.load_checkpoint(y)
        assert ma == mb
        for u, v in zip(ckpt.flatten_dict(wa).values(), ckpt.flatten_dict(wb).values()):
            np.testing.assert_array_equal(u, v)
    # extending the run (more epochs) resumes too
    c = train(small_cfg(epochs=4), d, str(tmp_path / "b"), progress=False)
    assert [h["epoch"] for h in c.history] == [1, 2, 3, 4]


def test_resume_refuses_other_config(tmp_path, data):
    d = data.subset(256, 50)
    train(small_cfg(epochs=1), d, str(tmp_path), progress=False)
    with pytest.raises(ckpt.CheckpointError, match="lr: 0.0001 .* vs 0.001"):
        train(small_cfg(epochs=1, lr=1e-3), d, str(tmp_path), progress=False)


def test_atomic_write_survives_crash(tmp_path, monkeypatch):
    path = str(tmp_path / "x.npz")
    ckpt.atomic_write_npz(path, {"a": np.arange(3)})

    def boom(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        ckpt.atomic_write_npz(path, {"a": np.arange(5)})
    monkeypatch.undo()
    np.testing.assert_array_equal(ckpt.read_npz(path)["a"], np.arange(3))  # old file intact
    assert os.listdir(tmp_path) == ["x.npz"]                               # no temp left


def test_corrupt_and_nan_checkpoints_are_named(tmp_path):
    p = str(tmp_path / "ckpt.npz")
    with open(p, "wb") as f:
        f.write(b"garbage")
    with pytest.raises(ckpt.CheckpointError, match="ckpt.npz: corrupt"):
        ckpt.load_checkpoint(p)
    with pytest.raises(ckpt.CheckpointError, match="nothere.npz: file not found"):
        ckpt.load_checkpoint(str(tmp_path / "nothere.npz"))
    params = {"layer1": {"kernel": np.array([[1.0, np.nan]])}}
    path = ckpt.save_checkpoint(str(tmp_path), params, {"step": 0, "t": 0.0})
    with pytest.raises(ckpt.CheckpointError, match="layer1/kernel holds NaN"):
        ckpt.load_checkpoint(path)
    with pytest.raises(ckpt.CheckpointError, match="no checkpoints found"):
        ckpt.load_run(str(tmp_path / "empty"))


def test_bad_training_inputs(tmp_path, data):
    with pytest.raises(ValueError, match="lr=-1"):
        small_cfg(lr=-1.0)
    with pytest.raises(ValueError, match="input_dim=100"):
        train(small_cfg(model=ModelConfig(input_dim=100, widths=(8, 10))), data, str(tmp_path), progress=False)
    with pytest.raises(ValueError, match="kind"):
        ModelConfig(kind="spiking")


def test_config_roundtrip(tmp_path, data):
    cfg = small_cfg(epochs=1)
    train(cfg, data.subset(128, 32), str(tmp_path), progress=False)
    with open(tmp_path / "config.json") as f:
        assert TrainConfig.from_dict(json.load(f)) == cfg


def test_one_vs_rest_closed_form():
    import jax.numpy as jnp
    from tapjax.losses import LOSSES, mean_loss, one_vs_rest_squared_hinge, per_sample_loss
    assert LOSSES == ("weston_watkins", "one_vs_rest")
    # K=3, margin 10, label 0, scores (12, 1, -3): t = (+1, -1, -1)
    # max(0, 10-12)^2 + max(0, 10+1)^2 + max(0, 10-3)^2 = 0 + 121 + 49 = 170
    s = jnp.array([[12.0, 1.0, -3.0]])
    np.testing.assert_allclose(one_vs_rest_squared_hinge(s, jnp.array([0])), [170.0], rtol=1e-6)
    # all-zero scores: every one of the K binary SVMs violates by the margin: K * margin^2
    np.testing.assert_allclose(one_vs_rest_squared_hinge(jnp.zeros((1, 4)), jnp.array([2])), [400.0])
    # Tang's unit margin: l_Delta(s) = Delta^2 l_1(s / Delta)
    rng = np.random.default_rng(1)
    s = jnp.asarray(rng.normal(0, 8, (7, 5)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 5, 7))
    np.testing.assert_allclose(one_vs_rest_squared_hinge(s, y, 10.0),
                               100.0 * one_vs_rest_squared_hinge(s / 10.0, y, 1.0), rtol=1e-5)
    # gradient at the hand example: d/ds_j (10 + s_j)^2 = 2 (10 + s_j) for the wrong classes
    g = jax.grad(lambda s: one_vs_rest_squared_hinge(s, jnp.array([0]))[0])(jnp.array([[12.0, 1.0, -3.0]]))
    np.testing.assert_allclose(np.asarray(g[0]), [0.0, 22.0, 14.0], rtol=1e-6)
    np.testing.assert_allclose(mean_loss(jnp.zeros((2, 4)), jnp.array([0, 1]), 10.0, "one_vs_rest"), 400.0)
    with pytest.raises(ValueError, match="loss='crammer'"):
        per_sample_loss("crammer")


def test_loss_option_is_wired(data):
    import jax.numpy as jnp
    from tapjax.losses import mean_loss
    from tapjax.models import MLP, preprocess
    from tapjax.training import epoch_batches, make_chunk_fn, make_optimizer
    # old configs without the field load as Weston-Watkins; unknown fields are named
    d = small_cfg().to_dict()
    del d["loss"]
    assert TrainConfig.from_dict(d).loss == "weston_watkins"
    with pytest.raises(ValueError, match=r"unknown TrainConfig field\(s\) \['colour'\]"):
        TrainConfig.from_dict({**d, "colour": 1})
    with pytest.raises(ValueError, match="loss='hinge'"):
        small_cfg(loss="hinge")
    x = preprocess(jnp.asarray(data.x_train[:256]), "standard")
    y = jnp.asarray(data.y_train[:256])
    idx = epoch_batches(jax.random.PRNGKey(1), 0, 256, 32)[:2]
    first = {}
    for loss in ("weston_watkins", "one_vs_rest"):
        cfg = small_cfg(loss=loss)
        p = init_params(cfg.model, jax.random.PRNGKey(0))
        direct = float(mean_loss(MLP(cfg.model).apply({"params": p}, x[idx[0]]), y[idx[0]], cfg.margin, loss))
        _, _, losses = make_chunk_fn(cfg)(p, make_optimizer(cfg).init(p), x, y, idx)
        np.testing.assert_allclose(float(losses[0]), direct, rtol=1e-6)   # step 1 sees the init
        first[loss] = direct
    assert first["one_vs_rest"] != pytest.approx(first["weston_watkins"], rel=0.1)


def _same_files(a, b):
    """Every file of run directory ``a`` equals ``b``'s: npz keys, dtypes and bytes; JSON exactly."""
    fa = sorted(os.path.relpath(os.path.join(r, f), a) for r, _, fs in os.walk(a) for f in fs)
    fb = sorted(os.path.relpath(os.path.join(r, f), b) for r, _, fs in os.walk(b) for f in fs)
    assert fa == fb and "state.npz" in fa and "history.json" in fa
    for f in fa:
        if f.endswith(".npz"):
            za, zb = ckpt.read_npz(os.path.join(a, f)), ckpt.read_npz(os.path.join(b, f))
            assert sorted(za) == sorted(zb), f
            for k in za:
                x, y = np.asarray(za[k]), np.asarray(zb[k])
                assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), (f, k)
        else:
            with open(os.path.join(a, f), "rb") as fh, open(os.path.join(b, f), "rb") as gh:
                assert fh.read() == gh.read(), f


@pytest.mark.parametrize("kind", ["standard", "binarized"])
def test_train_is_train_many_of_one_run_bit_for_bit(tmp_path, data, kind):
    """One engine: ``train(cfg)`` and ``train_many([cfg])`` (R = 1: the one-run step on the run
    axis' slice, traced hyperparameters and raw pixels) write the same files bit for bit: same
    init, shuffles, step, loss sums, error counts and schedule."""
    import dataclasses
    from tapjax.multirun import train_many
    d = dataclasses.replace(data, x_train=data.x_train[:320], y_train=data.y_train[:320],
                            x_val=data.x_val[:100], y_val=data.y_val[:100])
    cfg = TrainConfig(model=ModelConfig(kind=kind, widths=(16, 10)), lr=1e-3, epochs=2,
                      schedule="every", first_epoch_levels=1, seed=3)
    one = train(cfg, d, str(tmp_path / "train"), progress=False)
    many = train_many([cfg], d, [str(tmp_path / "many")]).results[0]
    assert one.history == many.history and len(one.history) == 2
    _same_files(str(tmp_path / "train"), str(tmp_path / "many"))
    w0 = ckpt.load_run(str(tmp_path / "train")).weights[0]
    assert float(np.abs(w0[-1] - w0[0]).max()) > 1e-4   # the runs moved


@pytest.mark.parametrize("kind", ["standard", "binarized"])
def test_one_forward_static_and_traced_kind(kind):
    """``MLP.apply`` is :func:`models.forward`; the traced kind switch (vmapped runs) gives the
    static kind's scores, gradients and input bit for bit."""
    import jax.numpy as jnp
    from tapjax.models import MLP, forward, num_wrong, preprocess
    cfg = ModelConfig(kind=kind, input_dim=20, widths=(8, 6, 4), use_bias=True)
    p = init_params(cfg, jax.random.PRNGKey(1))
    p = jax.tree_util.tree_map(lambda a: a + 0.1, p)            # non-zero biases
    raw = jnp.asarray(np.random.default_rng(0).integers(0, 256, (7, 20), dtype=np.uint8))
    is_bin = jnp.asarray(kind == "binarized")
    x = preprocess(raw, kind)
    np.testing.assert_array_equal(preprocess(raw, is_bin), x)
    s = MLP(cfg).apply({"params": p}, x)
    np.testing.assert_array_equal(forward(p, x, kind), s)
    np.testing.assert_array_equal(jax.jit(forward)(p, x, is_bin), jax.jit(forward, static_argnums=2)(p, x, kind))
    g_static = jax.grad(lambda q: forward(q, x, kind).sum())(p)
    g_traced = jax.grad(lambda q: forward(q, x, is_bin).sum())(p)
    jax.tree_util.tree_map(np.testing.assert_array_equal, g_traced, g_static)
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree_util.tree_leaves(g_static))
    y = jnp.arange(7) % 4
    assert int(num_wrong(p, x, y, kind)) == int(np.sum(np.argmax(np.asarray(s), -1) != np.asarray(y)))


def test_runs_with_the_same_step_share_one_program():
    """``make_chunk_fn`` returns one jitted program per distinct step (so a seed loop compiles
    it once); any difference in the step — lr, momentum, the loss, the kind — gives another."""
    import dataclasses
    from tapjax.training import make_chunk_fn
    a = small_cfg()
    assert make_chunk_fn(a) is make_chunk_fn(small_cfg(seed=a.seed + 1, epochs=a.epochs + 1))
    others = [small_cfg(lr=a.lr * 2), small_cfg(loss="one_vs_rest"), small_cfg(momentum=0.5),
              dataclasses.replace(a, model=ModelConfig(kind="binarized", widths=a.model.widths))]
    progs = {id(make_chunk_fn(a))} | {id(make_chunk_fn(c)) for c in others}
    assert len(progs) == 1 + len(others)
