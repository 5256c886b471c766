"""Foreign-network loaders: every format round-trips a known net; bad inputs name file/layer."""

import io
import json
import os
import warnings
import zipfile

import numpy as np
import pytest

from tapjax import conv, sources
from tapjax.sources import SourceError, load_network, load_series

SIZES = (6, 5, 4, 3)


def _net(seed=0, sizes=SIZES, dtype=np.float32):
    """Known (in, out) weights and biases."""
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(a, b)).astype(dtype) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(size=b).astype(dtype) for b in sizes[1:]]
    return ws, bs


def _same(h, ws, t=0):
    assert len(h.weights) == len(ws)
    for got, want in zip(h.weights, ws):
        assert got.shape[1:] == want.shape
        np.testing.assert_array_equal(got[t], want)


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sources.BiasWarning)
        return fn(*a, **kw)


# --------------------------------------------------------------------------- in-memory sources
def test_list_of_arrays_both_layouts():
    ws, _ = _net()
    h = load_network(ws)
    _same(h, ws)
    assert h.info["format"] == "arrays" and h.info["layout"]["stored"] == ["in_out"]
    assert h.biases == (None, None, None) and h.info["biases"]["dropped_from_spin_model"] == 0
    h2 = load_network([w.T for w in ws], layout="out_in")
    _same(h2, ws)
    assert "out_in" in h2.info["layout"]["stored"]


def test_stacked_arrays_are_a_time_series():
    ws0, _ = _net(0)
    ws1, _ = _net(1)
    h = load_series([np.stack([a, b]) for a, b in zip(ws0, ws1)])
    assert len(h) == 2 and list(h.step) == [0, 1]
    _same(h, ws0, 0)
    _same(h, ws1, 1)


def test_list_of_in_memory_snapshots_is_a_series():
    ws0, _ = _net(0)
    ws1, _ = _net(1)
    h = load_series([{f"Dense_{k}": {"kernel": w} for k, w in enumerate(ws)} for ws in (ws0, ws1)])
    assert len(h) == 2 and list(h.step) == [0, 1]
    _same(h, ws1, 1)


def test_transposed_list_names_the_layer_and_cause():
    ws, _ = _net()
    with pytest.raises(SourceError, match=r"layer 'W2'.*transposed.*layout='out_in'"):
        load_network([w.T for w in ws])


def test_flax_params_natural_order_and_biases():
    """A Flax-Linen params pytree with default names, inserted out of order (Dense_10 first)."""
    rng = np.random.default_rng(0)
    sizes = [2, *range(3, 14)]
    p = {f"Dense_{k}": {"kernel": rng.normal(size=(sizes[k], sizes[k + 1])).astype(np.float32),
                        "bias": rng.normal(size=sizes[k + 1]).astype(np.float32)}
         for k in (10, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9)}
    with pytest.warns(sources.BiasWarning, match="11 bias"):
        h = load_network({"params": p})
    assert h.layer_names[:3] == ("Dense_0", "Dense_1", "Dense_2") and h.layer_names[-1] == "Dense_10"
    assert h.info["sizes"] == sizes and h.info["format"] == "flax"
    np.testing.assert_array_equal(h.weights[10][0], p["Dense_10"]["kernel"])
    np.testing.assert_array_equal(h.biases[2][0], p["Dense_2"]["bias"])
    h_bare = _quiet(load_network, p)
    np.testing.assert_array_equal(h_bare.weights[4], h.weights[4])
    with pytest.raises(SourceError, match="contradicts"):
        _quiet(load_network, p, layout="out_in")
    with pytest.raises(SourceError, match=r"layer 'LayerNorm_0' is a normalization"):
        load_network({"Dense_0": {"kernel": p["Dense_0"]["kernel"]},
                      "LayerNorm_0": {"scale": np.ones(3, np.float32)}})


def test_flax_conv_matches_flax_apply():
    flax = pytest.importorskip("flax.linen")
    import jax
    import jax.numpy as jnp

    class CNN(flax.Module):
        @flax.compact
        def __call__(self, x):
            x = flax.Conv(3, (3, 3), strides=2, padding="SAME")(x)
            return flax.Dense(4, use_bias=False)(x.reshape(x.shape[0], -1))

    x = jax.random.normal(jax.random.PRNGKey(1), (2, 7, 6, 2))
    params = CNN().init(jax.random.PRNGKey(0), x)
    with pytest.raises(SourceError, match=r"Conv_0.*stride/padding.*assumed"):   # not stored
        _quiet(load_network, params, input_shape=(7, 6, 2))
    h = _quiet(load_network, params, input_shape=(7, 6, 2), conv={"Conv_0": {"stride": 2}})
    assert h.info["layers"][0]["conv"]["out_shape"] == [4, 3, 3]
    z = (np.asarray(x).reshape(2, -1) @ h.weights[0][0] + h.biases[0][0]) @ h.weights[1][0]
    np.testing.assert_allclose(z, np.asarray(CNN().apply(params, x)), rtol=1e-4, atol=1e-4)


def _torch_mlp(torch, sizes=SIZES, bias=True):
    layers = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [torch.nn.Linear(a, b, bias=bias), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def test_torch_module_and_state_dict_transposed_and_one_bias_warning():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = _torch_mlp(torch)
    ws = [m.weight.detach().numpy().T for m in net if isinstance(m, torch.nn.Linear)]
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        h = load_network(net)
    bias_warnings = [w for w in rec if issubclass(w.category, sources.BiasWarning)]
    assert len(bias_warnings) == 1 and "3 bias vector" in str(bias_warnings[0].message)
    _same(h, ws)
    assert h.layer_names == ("0", "2", "4") and h.info["biases"]["dropped_from_spin_model"] == 3
    np.testing.assert_array_equal(h.biases[1][0], net[2].bias.detach().numpy())
    h2 = _quiet(load_network, net.state_dict())
    _same(h2, ws)
    with pytest.raises(SourceError, match="contradicts"):
        _quiet(load_network, net, layout="in_out")


def test_equal_widths_pytorch_convention_is_applied():
    """256-256-256-256: shapes cannot tell (out, in) from (in, out); the convention must."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    net = _torch_mlp(torch, (256, 256, 256, 256), bias=False)
    hand = [m.weight.detach().double().numpy().T for m in net if isinstance(m, torch.nn.Linear)]
    h = load_network(net)

    def lam_max(ws):
        sizes = [ws[0].shape[0], *(w.shape[1] for w in ws)]
        off = np.cumsum([0, *sizes])
        J = np.zeros((off[-1], off[-1]))
        for k, w in enumerate(ws):
            J[off[k]:off[k + 1], off[k + 1]:off[k + 2]] = w
        J = J + J.T
        return np.linalg.eigvalsh(J)[-1]

    lm = lam_max([w[0].astype(np.float64) for w in h.weights])
    assert lm == pytest.approx(lam_max(hand), rel=1e-6)
    assert abs(lm - lam_max([w.T for w in hand])) > 1e-4     # the untransposed reading differs


def test_torch_conv_module_matches_torch_forward():
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, stride=2, padding=1), torch.nn.ReLU(),
                              torch.nn.Identity(),
                              torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 3, 5))
    with pytest.raises(SourceError, match=r"layer '0'.*input_shape="):
        _quiet(load_network, net)
    h = _quiet(load_network, net, input_shape=(2, 8, 6))
    x = torch.randn(4, 2, 8, 6)
    y = net[0](x).detach().numpy().reshape(4, -1)
    np.testing.assert_allclose(x.numpy().reshape(4, -1) @ h.weights[0][0] + h.biases[0][0], y,
                               rtol=1e-5, atol=1e-5)
    assert h.info["layers"][0]["conv"]["stride"] == [2, 2]
    assert h.info["layers"][0]["conv_assumed"] is False
    json.dumps(h.info)                                        # info is plain JSON
    # state_dict: no stride stored → assumed (warned); stating it reproduces the module's block
    with pytest.raises(SourceError, match=r"conv layer '0' are not stored.*conv="):
        _quiet(load_network, net.state_dict(), input_shape=(8, 6))
    h2 = _quiet(load_network, net.state_dict(), input_shape=(8, 6),
                conv={"0": {"stride": 2, "padding": 1}})
    np.testing.assert_array_equal(h2.weights[0], h.weights[0])
    small = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(32, 3))
    with pytest.warns(sources.ConvAssumptionWarning, match=r"\['0'\]"):
        h3 = _quiet(load_network, small.state_dict(), input_shape=(6, 6))
    assert h3.info["layers"][0]["conv_assumed"] is True
    np.testing.assert_array_equal(h3.weights[0], _quiet(load_network, small, input_shape=(6, 6)).weights[0])


def test_torch_unsupported_layers_are_named():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    for net, layer, what in [
            (nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)), "'1'", "normalization"),
            (nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 2)), "'1'", "pooling"),
            (nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), "'1'", "normalization"),
            (nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2)), "'0'", "embedding")]:
        with pytest.raises(SourceError, match=f"layer {layer} is .*{what}.*supported: dense"):
            _quiet(load_network, net)

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(x + torch.relu(self.a(x)))

    with pytest.raises(SourceError, match="residual"):
        _quiet(load_network, Residual())
    with pytest.raises(SourceError, match=r"layer 'up.deconv' is a transposed convolution"):
        _quiet(load_network, {"up.deconv.weight": torch.zeros(2, 3, 2, 2)}, input_shape=(4, 4))
    with pytest.raises(SourceError, match=r"layer 'bn'.*normalization"):
        _quiet(load_network, {"fc.weight": torch.zeros(4, 4), "bn.weight": torch.ones(4),
                              "bn.running_mean": torch.zeros(4)})


def test_sklearn_mlp():
    sk = pytest.importorskip("sklearn.neural_network")
    rng = np.random.default_rng(0)
    clf = sk.MLPClassifier((7, 5), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(rng.normal(size=(40, 6)), np.arange(40) % 3)
    h = _quiet(load_network, clf)
    _same(h, clf.coefs_)
    np.testing.assert_array_equal(h.biases[2][0], clf.intercepts_[2])
    assert h.info["format"] == "sklearn" and h.t[0] == clf.n_iter_
    with pytest.raises(SourceError, match="not fitted"):
        load_network(sk.MLPRegressor())


# --------------------------------------------------------------------------- files
def test_safetensors_conventions(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    ws, bs = _net()
    sd = {}
    for k, (w, b) in enumerate(zip(ws, bs)):
        sd[f"fc{k}.weight"], sd[f"fc{k}.bias"] = np.ascontiguousarray(w.T), b
    p = tmp_path / "torchlike.safetensors"
    st.save_file(sd, str(p))
    h = _quiet(load_network, p)
    _same(h, ws)
    assert "PyTorch" in h.info["layout"]["rule"][0]
    assert [b[0].tolist() for b in h.biases] == [b.tolist() for b in bs]
    p2 = tmp_path / "flaxlike.safetensors"
    st.save_file({f"fc{k}.weight": w for k, w in enumerate(ws)}, str(p2), metadata={"layout": "in_out"})
    _same(load_network(p2), ws)
    p3 = tmp_path / "plain.safetensors"
    st.save_file({f"fc{k}.weight": w for k, w in enumerate(ws)}, str(p3))
    _same(load_network(p3, layout="in_out"), ws)
    with pytest.raises(SourceError, match=r"plain.safetensors.*transposed"):
        load_network(p3)


def test_half_precision_becomes_float32(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    ws, _ = _net()
    p = tmp_path / "half.safetensors"
    st.save_file({f"l{k}.weight": np.ascontiguousarray(w.T).astype(np.float16)
                  for k, w in enumerate(ws)}, str(p))
    h = load_network(p)
    assert h.weights[0].dtype == np.float32 and "float16 converted to float32" in h.info["dtype"][0]
    np.testing.assert_array_equal(h.weights[1][0], ws[1].astype(np.float16).astype(np.float32))
    torch = pytest.importorskip("torch")
    hb = load_network([torch.tensor(w).to(torch.bfloat16) for w in ws])
    assert hb.weights[0].dtype == np.float32 and "bfloat16" in hb.info["dtype"][0]


def test_pt_files_state_dict_and_training_dict(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    net = _torch_mlp(torch)
    ws = [m.weight.detach().numpy().T for m in net if isinstance(m, torch.nn.Linear)]
    torch.save(net.state_dict(), tmp_path / "a.pt")
    _same(_quiet(load_network, tmp_path / "a.pt"), ws)
    torch.save({"epoch": 7, "step": 70, "model_state_dict": net.state_dict(), "lr": 0.1},
               tmp_path / "b.pth")
    h = _quiet(load_network, tmp_path / "b.pth")
    _same(h, ws)
    assert h.t[0] == 7 and h.step[0] == 70
    torch.save(net, tmp_path / "whole.pt")
    with pytest.raises(SourceError, match=r"whole.pt.*state_dict"):
        load_network(tmp_path / "whole.pt")


def _keras_cfg(layers, cls="Sequential"):
    return {"class_name": cls, "config": {"name": "m", "layers": layers}}


def _write_keras_model(path, cnn=True):
    """A .keras archive laid out as Keras 3 writes it (config.json + model.weights.h5)."""
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(4)
    k = rng.normal(size=(3, 3, 2, 3)).astype(np.float32)
    kb = rng.normal(size=3).astype(np.float32)
    d1 = rng.normal(size=(48, 5)).astype(np.float32)
    d1b = rng.normal(size=5).astype(np.float32)
    d2 = rng.normal(size=(5, 4)).astype(np.float32)
    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, 8, 8, 2], "name": "in"}},
              {"class_name": "Conv2D", "config": {"name": "c1", "filters": 3, "kernel_size": [3, 3],
                                                  "strides": [2, 2], "padding": "same",
                                                  "data_format": "channels_last",
                                                  "dilation_rate": [1, 1], "groups": 1, "use_bias": True},
               "build_config": {"input_shape": [None, 8, 8, 2]}},
              {"class_name": "Flatten", "config": {"name": "flat"}},
              {"class_name": "Dense", "config": {"name": "hidden", "units": 5, "use_bias": True}},
              {"class_name": "Dense", "config": {"name": "out", "units": 4, "use_bias": False}}]
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:     # Keras 3 names groups by class (snake case) + counter
        for g, vs in (("conv2d", [k, kb]), ("dense", [d1, d1b]), ("dense_1", [d2]), ("flatten", [])):
            grp = f.create_group(f"layers/{g}/vars")
            for i, v in enumerate(vs):
                grp.create_dataset(str(i), data=v)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(_keras_cfg(layers)))
        z.writestr("metadata.json", "{}")
        z.writestr("model.weights.h5", buf.getvalue())
    return (k, kb, d1, d1b, d2), layers


def test_keras_archive_and_legacy_h5(tmp_path):
    h5py = pytest.importorskip("h5py")
    (k, kb, d1, d1b, d2), layers = _write_keras_model(tmp_path / "m.keras")
    h = _quiet(load_network, tmp_path / "m.keras")
    assert h.layer_names == ("c1", "hidden", "out") and h.info["format"] == "keras"
    block, geom = conv.conv_coupling(k, (8, 8), stride=2, padding="same", kernel_layout="keras")
    assert geom.out_shape == (4, 4, 3)
    _same(h, [block, d1, d2])
    np.testing.assert_array_equal(h.biases[0][0], conv.conv_bias(kb, geom))
    assert h.biases[2] is None
    # legacy full-model .h5 (Keras 2 layout: model_config + model_weights/<layer>/<weight_names>)
    p = tmp_path / "legacy.h5"
    with h5py.File(p, "w") as f:
        f.attrs["model_config"] = json.dumps(_keras_cfg(layers))
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = ["c1", "flat", "hidden", "out"]
        for name, vs in (("c1", [k, kb]), ("flat", []), ("hidden", [d1, d1b]), ("out", [d2])):
            g = mw.create_group(name)
            wn = [f"{name}/{'kernel' if i == 0 else 'bias'}:0" for i in range(len(vs))]
            g.attrs["weight_names"] = wn
            for n, v in zip(wn, vs):
                g.create_dataset(n, data=v)
    h2 = _quiet(load_network, p)
    _same(h2, [block, d1, d2])
    with pytest.raises(SourceError, match="contradicts"):
        load_network(tmp_path / "m.keras", layout="out_in")


def test_real_keras_files(tmp_path):
    """Files written by Keras itself (skipped unless keras is installed; not a dependency)."""
    keras = pytest.importorskip("keras")
    m = keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Conv2D(3, 3, strides=2, padding="same"),
                          keras.layers.Flatten(), keras.layers.Dense(5), keras.layers.Dense(4, use_bias=False)])
    m.save(tmp_path / "m.keras")
    m.save(tmp_path / "m.h5")
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 2)).astype(np.float32)
    for p in ("m.keras", "m.h5"):
        h = _quiet(load_network, tmp_path / p)
        z = (x.reshape(3, -1) @ h.weights[0][0] + h.biases[0][0]) @ h.weights[1][0] + h.biases[1][0]
        np.testing.assert_allclose(z @ h.weights[2][0], np.asarray(m(x)), rtol=1e-4, atol=1e-5)


def test_keras_unsupported_layers(tmp_path):
    h5py = pytest.importorskip("h5py")
    for cls in ("BatchNormalization", "MaxPooling2D", "Add"):
        layers = [{"class_name": "Dense", "config": {"name": "d", "units": 2}},
                  {"class_name": cls, "config": {"name": "bad"}}]
        p = tmp_path / f"{cls}.keras"
        buf = io.BytesIO()
        with h5py.File(buf, "w") as f:
            f.create_dataset("layers/dense/vars/0", data=np.ones((3, 2), np.float32))
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("config.json", json.dumps(_keras_cfg(layers)))
            z.writestr("model.weights.h5", buf.getvalue())
        with pytest.raises(SourceError, match=rf"{cls}.keras: layer 'bad' is .*supported: dense"):
            load_network(p)


def test_npz_rules(tmp_path):
    ws, bs = _net()
    np.savez(tmp_path / "torchnames.npz", **{f"fc{k}.weight": w.T for k, w in enumerate(ws)},
             **{f"fc{k}.bias": b for k, b in enumerate(bs)}, step=np.array(12))
    h = _quiet(load_network, tmp_path / "torchnames.npz")
    _same(h, ws)
    assert h.step[0] == 12 and h.biases[0] is not None
    np.savez(tmp_path / "flaxnames.npz", **{f"Dense_{k}/kernel": w for k, w in enumerate(ws)})
    _same(load_network(tmp_path / "flaxnames.npz"), ws)
    np.savez(tmp_path / "plain.npz", **{f"W{k}": w for k, w in enumerate(ws)})
    with pytest.raises(SourceError, match=r"plain.npz.*layout is unknown.*layout="):
        load_network(tmp_path / "plain.npz")
    _same(load_network(tmp_path / "plain.npz", layout="in_out"), ws)
    np.savez(tmp_path / "stated.npz", **{f"W{k}": w.T for k, w in enumerate(ws)},
             __layout__=np.array("out_in"))
    _same(load_network(tmp_path / "stated.npz"), ws)


def test_tapjax_checkpoint_and_run_directory(tmp_path):
    from tapjax import checkpoints
    ws0, _ = _net(0)
    ws1, _ = _net(1)
    for step, ws in ((0, ws0), (50, ws1)):
        checkpoints.save_checkpoint(str(tmp_path), {f"layer{k + 1}": {"kernel": w} for k, w in enumerate(ws)},
                                    {"step": step, "t": step / 100, "val_error": 0.5, "config": {"x": 1}})
    h1 = load_network(checkpoints.checkpoint_path(str(tmp_path), 50))
    _same(h1, ws1)
    assert h1.info["format"] == "tapjax-checkpoint" and h1.t[0] == 0.5
    run = load_series(tmp_path)
    assert run.info["format"] == "tapjax-run" and list(run.step) == [0, 50]
    _same(run, ws0, 0)
    _same(run, ws1, 1)
    assert run.layer_names == ("layer1", "layer2", "layer3")
    with pytest.raises(SourceError, match="contradicts"):
        load_series(tmp_path, layout="out_in")


def test_directory_series_order(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    nets = {s: _net(s)[0] for s in (2, 10, 1)}
    meta_dir, name_dir = tmp_path / "meta", tmp_path / "names"
    meta_dir.mkdir()
    name_dir.mkdir()
    for i, (s, ws) in enumerate(nets.items()):
        d = {f"l{k}.weight": np.ascontiguousarray(w.T) for k, w in enumerate(ws)}
        st.save_file(d, str(meta_dir / f"snap_{'abc'[i]}.safetensors"), metadata={"step": str(s)})
        st.save_file(d, str(name_dir / f"ckpt_{s}.safetensors"))
    for d, rule in ((meta_dir, "metadata 'step'"), (name_dir, "file name")):
        h = load_series(d)
        assert list(h.step) == [1, 2, 10] and rule in h.info["time"]
        for i, s in enumerate((1, 2, 10)):
            _same(h, nets[s], i)
    files = [name_dir / "ckpt_10.safetensors", name_dir / "ckpt_2.safetensors"]
    assert list(load_series(files).step) == [2, 10]
    st.save_file({"l0.weight": np.zeros((5, 7), np.float32)}, str(name_dir / "ckpt_99.safetensors"))
    with pytest.raises(SourceError, match="ckpt_99.*differ"):
        load_series(name_dir)


# --------------------------------------------------------------------------- bad input
def test_bad_files_get_named_errors(tmp_path):
    with pytest.raises(SourceError, match=r"nope.pt: file not found"):
        load_network(tmp_path / "nope.pt")
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(SourceError, match=r"w.onnx: unknown extension.*safetensors"):
        load_network(tmp_path / "w.onnx")
    np.save(tmp_path / "arr.npy", np.ones((3, 3)))
    os.replace(tmp_path / "arr.npy", tmp_path / "arr.npz")
    with pytest.raises(SourceError, match=r"arr.npz: a single .npy array"):
        load_network(tmp_path / "arr.npz")
    for ext, pkg in ((".safetensors", "safetensors"), (".pt", "torch"), (".keras", "h5py"),
                     (".h5", "h5py"), (".npz", None)):
        if pkg:
            pytest.importorskip(pkg)
        p = tmp_path / f"foreign{ext}"
        p.write_bytes(b"this is a text file, not weights\n" * 4)
        with pytest.raises(SourceError, match=rf"foreign\{ext}: not"):
            load_network(p)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="holds no weight files"):
        load_series(tmp_path / "empty")


def test_bad_arrays_get_named_errors():
    ws, _ = _net()
    with pytest.raises(SourceError, match="empty list"):
        load_network([])
    with pytest.raises(SourceError, match=r"layer 'W1'.*empty"):
        load_network([np.zeros((0, 5), np.float32), ws[1]])
    bad = [w.copy() for w in ws]
    bad[1][0, 0] = np.nan
    with pytest.raises(SourceError, match=r"layer 'W2'.*NaN"):
        load_network(bad)
    with pytest.raises(SourceError, match=r"layer 'W1'.*int64"):
        load_network([np.ones((6, 5), np.int64), ws[1]])
    with pytest.raises(SourceError, match="layout="):
        load_network(ws, layout="rows")
    with pytest.raises(SourceError, match="cannot read a set"):
        load_network({1, 2})


# --------------------------------------------------------------------------- T_c against dense float64
def _dense_lmin(ws, beta):
    """λ_min(I − βJ + β² diag(r)) of eqs. 22–25 from the dense float64 J (eq. 4)."""
    sizes = [ws[0].shape[0], *(w.shape[1] for w in ws)]
    off = np.cumsum([0, *sizes])
    J = np.zeros((off[-1], off[-1]))
    for k, w in enumerate(ws):
        J[off[k]:off[k + 1], off[k + 1]:off[k + 2]] = w
    J = J + J.T
    r = (J * J).sum(1)
    return np.linalg.eigvalsh(np.eye(len(J)) - beta * J + beta ** 2 * np.diag(r))[0]


def _dense_critical_beta(ws, lam_star, betas):
    curve = np.array([_dense_lmin(ws, b) for b in betas])
    i = int(np.nonzero(curve <= lam_star)[0][0])
    lo, hi = betas[i - 1], betas[i]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if _dense_lmin(ws, mid) <= lam_star else (mid, hi)
    return 0.5 * (lo + hi)


def _tc_check(h, ref_ws, trained_ws):
    import jax.numpy as jnp
    from tapjax import recurrence, tap
    from tapjax.spin_model import LayeredCouplings
    betas = np.linspace(0.02, 6.0, 80)
    c0 = LayeredCouplings(tuple(jnp.asarray(w, jnp.float64) for w in ref_ws))
    thr = tap.reference_threshold(c0, betas)
    assert betas[1] < thr.beta < betas[-2]                      # an interior reference minimum
    c1 = LayeredCouplings(tuple(jnp.asarray(w, jnp.float64) for w in trained_ws))
    beta_c = recurrence.critical_beta(c1, thr.value, float(betas[-1]))
    ref = _dense_critical_beta([np.asarray(w, np.float64) for w in trained_ws], thr.value, betas)
    assert beta_c == pytest.approx(ref, rel=1e-3)
    return beta_c, ref


def test_pytorch_trained_net_tc_matches_dense_reference(tmp_path, x64):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = _torch_mlp(torch, (12, 10, 10, 3))
    torch.save({"step": 0, "state_dict": net.state_dict()}, tmp_path / "init.pt")
    x, y = torch.randn(64, 12), torch.randint(0, 3, (64,))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    torch.save({"step": 20, "state_dict": net.state_dict()}, tmp_path / "trained.pt")
    h = _quiet(load_series, tmp_path)
    assert list(h.step) == [0, 20] and "metadata 'step'" in h.info["time"]
    trained = [m.weight.detach().numpy().T for m in net if isinstance(m, torch.nn.Linear)]
    _same(h, trained, 1)
    _tc_check(h, h.weights_at(0), h.weights_at(1))


def test_sklearn_net_tc_matches_dense_reference(x64):
    sk = pytest.importorskip("sklearn.neural_network")
    rng = np.random.default_rng(1)
    clf = sk.MLPClassifier((10, 10), max_iter=30, learning_rate_init=0.05, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(rng.normal(size=(60, 8)), np.arange(60) % 3)
    h = _quiet(load_network, clf)
    # reference: fresh Gaussian couplings with each layer's own measured variance
    ref = [rng.normal(size=w.shape[1:]) * w[0].std() for w in h.weights]
    _tc_check(h, ref, h.weights_at(0))


def test_import_does_not_pull_torch():
    import subprocess
    import sys
    code = "import sys, tapjax.sources; print('torch' in sys.modules, 'h5py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_torch_linear_after_conv_needs_flatten():
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Linear(4, 3))
    with pytest.raises(SourceError, match=r"layer '1' \(Linear\) follows a convolution without a Flatten"):
        _quiet(load_network, net, input_shape=(1, 6, 6))


def test_checkpoint_subdirectories_and_keras2_weights(tmp_path):
    torch = pytest.importorskip("torch")
    h5py = pytest.importorskip("h5py")
    nets = {s: _net(s)[0] for s in (500, 1500, 1000)}
    for s, ws in nets.items():
        d = tmp_path / "run" / f"checkpoint-{s}"
        d.mkdir(parents=True)
        torch.save({f"l{k}.weight": torch.tensor(w.T.copy()) for k, w in enumerate(ws)},
                   d / "pytorch_model.bin")
        torch.save({"lr": torch.tensor(1.0)}, d / "optimizer.pt")
    h = load_series(tmp_path / "run")
    assert list(h.step) == [500, 1000, 1500] and "folder" in h.info["time"]
    _same(h, nets[1000], 1)
    ws, bs = _net(7)
    with h5py.File(tmp_path / "k2.h5", "w") as f:          # Keras 2 model.save_weights
        f.attrs["layer_names"] = ["dense_10", "dense_2"]
        for name, w, b in (("dense_10", ws[0], bs[0]), ("dense_2", ws[1], None)):
            g = f.create_group(name)
            g.attrs["weight_names"] = [f"{name}/kernel:0"] + ([f"{name}/bias:0"] if b is not None else [])
            g.create_dataset(f"{name}/kernel:0", data=w)
            if b is not None:
                g.create_dataset(f"{name}/bias:0", data=b)
    h2 = _quiet(load_network, tmp_path / "k2.h5")
    assert h2.layer_names == ("dense_10", "dense_2")          # the file's order, not the names'
    _same(h2, ws[:2])
    assert h2.biases[1] is None and "layer_names order" in h2.info["notes"][0]
