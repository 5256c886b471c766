"""Vmapped training of several runs equals the runs trained one by one."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tapjax import checkpoints as ckpt
from tapjax import multirun
from tapjax.data import load_embedded
from tapjax.models import ModelConfig, init_params, preprocess
from tapjax.training import TrainConfig, epoch_batches, make_chunk_fn, make_optimizer, train


@pytest.fixture(scope="module")
def data():
    d = load_embedded()
    # 640 training images (20 steps of 32 per epoch) keep the end-to-end test fast
    return dataclasses.replace(d, x_train=d.x_train[:640], y_train=d.y_train[:640],
                               x_val=d.x_val[:200], y_val=d.y_val[:200])


def tiny_cfgs(epochs=1, levels=2, **kw):
    """Table 1's four configurations on a tiny net (kinds × learning rates), distinct seeds."""
    out = []
    for i, (kind, lr) in enumerate([("binarized", 1e-3), ("binarized", 1e-2),
                                    ("standard", 1e-3), ("standard", 1e-2)]):
        out.append(TrainConfig(model=ModelConfig(kind=kind, widths=(32, 16, 10)), lr=lr, seed=i,
                               epochs=epochs, schedule="every", first_epoch_levels=levels, **kw))
    return out


def _close(a, b, rtol=2e-5, atol=2e-6):
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y),
                                                                   rtol=rtol, atol=atol), a, b)


def test_vmapped_chunk_equals_separate_runs(data):
    cfgs = tiny_cfgs()
    n = data.x_train.shape[0]
    params, opt, hyper, shuffle = multirun.init_runs(cfgs)
    idx = multirun.run_batches(shuffle, 0, n, 32)[:, :12]
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    p_multi, _, loss_multi = multirun.make_multi_chunk_fn(cfgs[0].margin)(params, opt, hyper, x, y, idx)
    for r, cfg in enumerate(cfgs):
        key_init, key_shuffle = jax.random.split(jax.random.PRNGKey(cfg.seed))
        p = init_params(cfg.model, key_init)
        o = make_optimizer(cfg).init(p)
        ib = epoch_batches(key_shuffle, 0, n, 32)[:12]
        np.testing.assert_array_equal(np.asarray(ib), np.asarray(idx[r]))
        w0 = np.asarray(p["layer1"]["kernel"])  # the chunk donates (deletes) its inputs
        p1, _, loss1 = make_chunk_fn(cfg)(p, o, preprocess(x, cfg.model.kind), y, ib)
        np.testing.assert_allclose(np.asarray(loss_multi[r]), np.asarray(loss1), rtol=2e-5)
        _close(multirun.unstack_tree(p_multi, r), p1)
        # the run moved: the comparison is not between two copies of the init
        assert float(np.abs(np.asarray(p1["layer1"]["kernel"]) - w0).max()) > 1e-5


def test_train_many_equals_train(tmp_path, data):
    # one run of each kind (the chunk test above covers all four); few distinct chunk lengths
    cfgs = tiny_cfgs(epochs=2, levels=1)[1:3]
    dirs = [str(tmp_path / f"multi{r}") for r in range(len(cfgs))]
    multi = multirun.train_many(cfgs, data, dirs)
    for r, cfg in enumerate(cfgs):
        single = train(cfg, data, str(tmp_path / f"single{r}"), progress=False)
        _close(multi.results[r].params, single.params, rtol=1e-4, atol=1e-5)
        for a, b in zip(multi.results[r].history, single.history):
            assert a["epoch"] == b["epoch"]
            assert a["val_error"] == pytest.approx(b["val_error"], abs=0.01)
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        # same checkpoint files and metadata as a single run: the analysis side can load it
        hm, hs = ckpt.load_run(dirs[r]), ckpt.load_run(str(tmp_path / f"single{r}"))
        np.testing.assert_array_equal(hm.step, hs.step)
        np.testing.assert_allclose(hm.t, hs.t)
        for wm, ws in zip(hm.weights, hs.weights):
            np.testing.assert_allclose(wm, ws, rtol=1e-4, atol=1e-5)
        with open(os.path.join(dirs[r], "config.json")) as f:
            assert TrainConfig.from_dict(json.load(f)) == cfg
    # the written training state resumes with the single-run trainer
    more = train(dataclasses.replace(cfgs[0], epochs=3), data, dirs[0], progress=False)
    ref = train(dataclasses.replace(cfgs[0], epochs=3), data, str(tmp_path / "ref0"), progress=False)
    _close(more.params, ref.params, rtol=1e-4, atol=1e-5)


def test_incompatible_configs_rejected(data, tmp_path):
    cfgs = tiny_cfgs()
    with pytest.raises(ValueError, match="batch_size"):
        multirun.check_compatible([cfgs[0], dataclasses.replace(cfgs[1], batch_size=16)])
    with pytest.raises(ValueError, match="model.widths"):
        multirun.check_compatible([cfgs[0], dataclasses.replace(cfgs[1], model=ModelConfig(widths=(8, 10)))])
    with pytest.raises(ValueError, match="workdirs"):
        multirun.train_many(cfgs, data, [str(tmp_path / "a")])
    # the data checks are the single-run trainer's (tapjax.training.steps_per_epoch)
    narrow = [dataclasses.replace(c, model=dataclasses.replace(c.model, widths=c.model.widths[:-1] + (3,)))
              for c in cfgs]
    with pytest.raises(ValueError, match="classes but the output layer has 3 units"):
        multirun.train_many(narrow, data)


def test_vmapped_chunk_one_vs_rest(data):
    cfgs = [dataclasses.replace(c, loss="one_vs_rest") for c in tiny_cfgs()[1:3]]
    n = data.x_train.shape[0]
    params, opt, hyper, shuffle = multirun.init_runs(cfgs)
    idx = multirun.run_batches(shuffle, 0, n, 32)[:, :3]
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    p_multi, _, loss_multi = multirun.make_multi_chunk_fn(cfgs[0].margin, "one_vs_rest")(
        params, opt, hyper, x, y, idx)
    for r, cfg in enumerate(cfgs):
        key_init, _ = jax.random.split(jax.random.PRNGKey(cfg.seed))
        p = init_params(cfg.model, key_init)
        p1, _, loss1 = make_chunk_fn(cfg)(p, make_optimizer(cfg).init(p), preprocess(x, cfg.model.kind), y, idx[r])
        np.testing.assert_allclose(np.asarray(loss_multi[r]), np.asarray(loss1), rtol=2e-5)
        _close(multirun.unstack_tree(p_multi, r), p1)
    with pytest.raises(ValueError, match=r"\['loss'\]"):
        multirun.check_compatible([cfgs[0], dataclasses.replace(cfgs[1], loss="weston_watkins")])
