"""Reliability (issue 13): fuzzed IDX files and checkpoints, kill -9 and resume, the workdir
lock, unwritable files, stray copies. Every failure must be a DataError/CheckpointError that
names the file; nothing corrupted may be accepted; a killed run resumes bit for bit."""

import errno
import gzip
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap

import jax
import numpy as np
import pytest

from tapjax import checkpoints as ckpt
from tapjax.data import DataError, load_embedded, load_idx_dir, read_idx
from tapjax.locking import WorkdirBusyError, WorkdirLock
from tapjax.models import ModelConfig
from tapjax.training import TrainConfig, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------- IDX fuzz
def _idx(arr):
    arr = np.asarray(arr, np.uint8)
    return (struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
            + arr.tobytes())


def test_idx_fuzz(tmp_path):
    rng = np.random.default_rng(2013)
    x_tr, y_tr = rng.integers(0, 256, (6, 28, 28)), rng.integers(0, 10, 6)
    x_va, y_va = rng.integers(0, 256, (4, 28, 28)), rng.integers(0, 10, 4)
    good = {"train-images-idx3-ubyte": _idx(x_tr), "train-labels-idx1-ubyte": _idx(y_tr),
            "t10k-images-idx3-ubyte": _idx(x_va), "t10k-labels-idx1-ubyte": _idx(y_va)}
    kinds = ["gz_stream", "truncate", "header_byte", "label_value", "dims", "payload_flip"]
    seen = dict.fromkeys(kinds, 0)
    for case in range(300):
        kind = kinds[case % len(kinds)]
        name = list(good)[rng.integers(0, 4)]
        if kind == "label_value":
            name = ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte")[case % 2]
        gz = kind == "gz_stream" or rng.random() < 0.5
        b = bytearray(good[name])
        if kind == "truncate":
            b = b[: rng.integers(0, len(b))]
        elif kind == "header_byte":
            p = int(rng.integers(0, 4 + 4 * b[3]))
            b[p] = (b[p] + int(rng.integers(1, 256))) % 256      # always a change
        elif kind == "label_value":
            b[8 + int(rng.integers(0, len(b) - 8))] = int(rng.integers(10, 256))
        elif kind == "dims":
            dims = [int(rng.choice([0, 1, 7, 2**31, 2**32 - 1])) for _ in range(b[3])]
            b = bytearray(bytes(b[:4]) + struct.pack(">" + "I" * b[3], *dims) + bytes(b[4 + 4 * b[3]:]))
            if b == bytearray(good[name]):
                continue
        elif kind == "payload_flip":
            b[int(rng.integers(4 + 4 * b[3], len(b)))] ^= 0xFF     # a legitimate change for pixels
        content = gzip.compress(bytes(b), mtime=0) if gz else bytes(b)
        if kind == "gz_stream":
            c = bytearray(content)
            for _ in range(int(rng.integers(1, 4))):
                c[int(rng.integers(10, len(c)))] ^= 1 << int(rng.integers(0, 8))
            content = bytes(c)
        d = tmp_path / f"case{case}"
        d.mkdir()
        for k, v in good.items():
            ext = ".gz" if gz else ""
            data = content if k == name else (gzip.compress(v, mtime=0) if gz else v)
            (d / (k + ext)).write_bytes(data)
        seen[kind] += 1
        try:
            ds = load_idx_dir(str(d))
        except DataError as e:
            assert name in str(e), (kind, str(e))
            continue
        # accepted: only a pixel flip (or a gzip flip that left the data intact) may be
        assert kind in ("payload_flip", "gz_stream"), (kind, case)
        assert ds.x_train.shape == (6, 784) and ds.x_val.shape == (4, 784)
        np.testing.assert_array_equal(ds.y_train, y_tr)
        np.testing.assert_array_equal(ds.y_val, y_va)
        if kind == "gz_stream":
            np.testing.assert_array_equal(ds.x_train, x_tr.reshape(6, -1))
    assert min(seen.values()) >= 40, seen


def test_idx_specific_errors(tmp_path):
    rng = np.random.default_rng(0)

    def write(d, **over):
        d.mkdir()
        files = {"train-images-idx3-ubyte": _idx(rng.integers(0, 256, (5, 28, 28))),
                 "train-labels-idx1-ubyte": _idx(rng.integers(0, 10, 5)),
                 "t10k-images-idx3-ubyte": _idx(rng.integers(0, 256, (3, 28, 28))),
                 "t10k-labels-idx1-ubyte": _idx(rng.integers(0, 10, 3))}
        files.update(over)
        for k, v in files.items():
            (d / k).write_bytes(v)
        return str(d)

    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: holds 0 images"):
        load_idx_dir(write(tmp_path / "zero", **{"t10k-images-idx3-ubyte": _idx(np.zeros((0, 28, 28))),
                                                 "t10k-labels-idx1-ubyte": _idx(np.zeros(0))}))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: images of shape \(14, 14\) but the "
                                        r"train split .* has \(28, 28\)"):
        load_idx_dir(write(tmp_path / "shape", **{"t10k-images-idx3-ubyte": _idx(np.zeros((3, 14, 14)))}))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: 1 label\(s\) outside 0..9 \(first: label 10"):
        load_idx_dir(write(tmp_path / "lab", **{"train-labels-idx1-ubyte": _idx([1, 2, 10, 3, 4])}))
    # more classes when told so
    ok = load_idx_dir(write(tmp_path / "lab12", **{"train-labels-idx1-ubyte": _idx([1, 2, 11, 3, 4])}),
                      num_classes=12)
    assert ok.y_train.max() == 11
    # dimensions whose byte count overflows int64: the true count is named
    p = tmp_path / "huge"
    p.write_bytes(struct.pack(">HBB", 0, 8, 3) + struct.pack(">III", 2**32 - 1, 2**32 - 1, 2**32 - 1))
    with pytest.raises(DataError, match=r"huge: corrupt header: dimensions \(4294967295, 4294967295, "
                                        r"4294967295\) promise 79228162458924105385300197375 bytes"):
        read_idx(str(p), 2051)
    # a corrupt deflate stream
    c = bytearray(gzip.compress(_idx(np.arange(200).reshape(2, 10, 10)), mtime=0))
    c[12:20] = b"\xff" * 8
    (tmp_path / "z.gz").write_bytes(bytes(c))
    with pytest.raises(DataError, match="z.gz: cannot be read"):
        read_idx(str(tmp_path / "z.gz"))


# --------------------------------------------------------------------------- checkpoint fuzz
def test_checkpoint_fuzz(tmp_path):
    rng = np.random.default_rng(13)
    params = {"layer1": {"kernel": rng.normal(size=(5, 4)).astype(np.float32)},
              "layer2": {"kernel": rng.normal(size=(4, 3)).astype(np.float32)}}
    meta = {"step": 7, "t": 0.25, "epoch": 0, "config": {"lr": 1e-3}, "val_error": 0.5}
    good = ckpt.save_checkpoint(str(tmp_path / "good"), params, meta)
    gb = open(good, "rb").read()
    bad_metas = ["{oops", "[1, 2]", "null", "3", json.dumps({"t": 0.25}), json.dumps({"step": 7}),
                 json.dumps({"step": 7, "t": float("nan")}), json.dumps({"step": 7, "t": float("inf")}),
                 json.dumps({"step": "7", "t": 0.25}), json.dumps({"step": 7, "t": "0.25"}),
                 json.dumps({"step": -1, "t": 0.25}), json.dumps({"step": 7, "t": None}),
                 json.dumps({"step": 7.5, "t": 0.25}), json.dumps({"step": True, "t": 0.25})]
    n_acc = 0
    for case in range(300):
        p = str(tmp_path / f"c{case}.npz")
        kind = case % 3
        if kind == 0:   # random byte edits
            b = bytearray(gb)
            for _ in range(int(rng.integers(1, 6))):
                b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
            open(p, "wb").write(bytes(b))
        elif kind == 1:  # truncation
            open(p, "wb").write(gb[: int(rng.integers(0, len(gb)))])
        else:            # bad __meta__
            arrays = {f"params/{k}/kernel": v["kernel"] for k, v in params.items()}
            arrays["__meta__"] = np.asarray(bad_metas[(case // 3) % len(bad_metas)])
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            open(p, "wb").write(buf.getvalue())
        try:
            got_params, got_meta = ckpt.load_checkpoint(p)
        except ckpt.CheckpointError as e:
            assert os.path.basename(p) in str(e), str(e)
            continue
        assert kind == 0, (case, bad_metas[(case // 3) % len(bad_metas)])
        n_acc += 1       # an edit the zip CRCs cannot see (e.g. a timestamp) must change nothing
        assert got_meta == meta
        for k in params:
            np.testing.assert_array_equal(got_params[k]["kernel"], params[k]["kernel"])
    assert n_acc < 30


def test_foreign_and_odd_files(tmp_path):
    p = tmp_path / "a.npz"
    np.save(open(p, "wb"), np.ones(3))
    with pytest.raises(ckpt.CheckpointError, match=r"a.npz: not an .npz archive: this is a single NumPy "
                                                   r"array \(.npy\)"):
        ckpt.load_checkpoint(str(p))
    hdr = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    (tmp_path / "w.npz").write_bytes(struct.pack("<Q", len(hdr)) + hdr + b"\0" * 8)
    with pytest.raises(ckpt.CheckpointError, match=r"w.npz: .*safetensors file; load it with "
                                                   r"tapjax.sources.load_series\(path\)"):
        ckpt.load_checkpoint(str(tmp_path / "w.npz"))
    np.savez(tmp_path / "plain.npz", w=np.ones(2))
    with pytest.raises(ckpt.CheckpointError, match="plain.npz: not a tapjax checkpoint .*load_series"):
        ckpt.load_checkpoint(str(tmp_path / "plain.npz"))
    # layer names: natural order, any names; kernels must chain
    w = lambda a, b: {"kernel": np.zeros((a, b))}
    ws = ckpt.weights_from_params({"layer10": w(4, 2), "layer2": w(3, 4), "layer1": w(5, 3)})
    assert [x.shape for x in ws] == [(5, 3), (3, 4), (4, 2)]
    ws = ckpt.weights_from_params({"fc.1": w(3, 2), "fc.0": w(5, 3)})
    assert [x.shape for x in ws] == [(5, 3), (3, 2)]
    with pytest.raises(ckpt.CheckpointError, match=r"do not chain: 'a' \(3, 2\) then 'b' \(5, 3\)"):
        ckpt.weights_from_params({"b": w(5, 3), "a": w(3, 2)})
    with pytest.raises(ckpt.CheckpointError, match="layer 'head' has no 'kernel'"):
        ckpt.weights_from_params({"head": {"w": np.zeros((2, 2))}})


def test_load_run_rejects_stray_and_foreign_copies(tmp_path):
    params = {"layer1": {"kernel": np.ones((3, 2), np.float32)}}

    def run(name, cfg=None):
        d = str(tmp_path / name)
        for s in (0, 2, 4):
            ckpt.save_checkpoint(d, params, {"step": s, "t": s / 4, "config": cfg or {"lr": 1e-3, "seed": 0}})
        ckpt.atomic_write_json(os.path.join(d, "config.json"), {"lr": 1e-3, "seed": 0, "epochs": 1})
        return d

    assert len(ckpt.load_run(run("ok"))) == 3
    d = run("renamed")
    shutil.copy(ckpt.checkpoint_path(d, 2), ckpt.checkpoint_path(d, 9))
    with pytest.raises(ckpt.CheckpointError, match="ckpt_000000009.npz: file name says step 9 but its __meta__ says step 2"):
        ckpt.load_run(d)
    d = run("copy")
    shutil.copy(ckpt.checkpoint_path(d, 2), os.path.join(d, "checkpoints", "ckpt_000000002 (copy).npz"))
    with pytest.raises(ckpt.CheckpointError, match=r"\(copy\).npz: stray file"):
        ckpt.load_run(d)
    d = run("mixed")
    ckpt.save_checkpoint(d, params, {"step": 6, "t": 1.5, "config": {"lr": 1e-3, "seed": 1}})
    with pytest.raises(ckpt.CheckpointError, match=r"ckpt_000000006.npz: belongs to another run: .*seed: 0 vs 1"):
        ckpt.load_run(d)
    d = run("time")
    ckpt.save_checkpoint(d, params, {"step": 6, "t": 0.5, "config": {"lr": 1e-3, "seed": 0}})
    with pytest.raises(ckpt.CheckpointError, match="ckpt_000000006.npz: t = 0.5 at step 6 does not exceed t = 1"):
        ckpt.load_run(d)
    with pytest.raises(ckpt.CheckpointError, match="no valid training time t"):   # refused before writing
        ckpt.save_checkpoint(str(tmp_path / "nan"), params, {"step": 1, "t": float("nan")})
    assert not os.path.exists(tmp_path / "nan")
    r = ckpt.load_run(run("names"))
    assert r.layer_names == ("layer1",) and r.biases == ()


# --------------------------------------------------------------------------- file writes
def test_atomic_write_mode_and_failures(tmp_path, monkeypatch):
    old = os.umask(0o027)
    try:
        ckpt.atomic_write_json(str(tmp_path / "m.json"), {"a": 1})
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "m.json").st_mode & 0o777 == 0o640   # 0o666 & ~0o027, as open()
    path = str(tmp_path / "state.npz")
    ckpt.atomic_write_npz(path, {"a": np.arange(3)})

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ckpt.CheckpointError, match=r"state.npz: cannot write \(No space left on device\); "
                                                   r"nothing was lost: the file keeps its previous content"):
        ckpt.atomic_write_npz(path, {"a": np.arange(5)})
    monkeypatch.undo()
    np.testing.assert_array_equal(ckpt.read_npz(path)["a"], np.arange(3))
    assert sorted(os.listdir(tmp_path)) == ["m.json", "state.npz"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores directory permissions")
def test_read_only_workdir(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    os.chmod(d, 0o555)
    try:
        with pytest.raises(ckpt.CheckpointError, match="ro/.lock: cannot create the workdir lock"):
            train(TrainConfig(model=ModelConfig(widths=(16, 10))), load_embedded().subset(64, 32), str(d),
                  progress=False)
    finally:
        os.chmod(d, 0o755)


def test_clean_stale_tmp(tmp_path):
    for n in (".tmp-abcstate.npz", ".tmp-defhistory.json", ".tmp-xyzanalysis.json", "keep.npz"):
        (tmp_path / n).write_bytes(b"x")
    removed = ckpt.clean_stale_tmp(str(tmp_path), ("state.npz", "history.json"), older_than=None)
    assert sorted(os.path.basename(p) for p in removed) == [".tmp-abcstate.npz", ".tmp-defhistory.json"]
    assert sorted(os.listdir(tmp_path)) == [".tmp-xyzanalysis.json", "keep.npz"]  # not ours: kept
    (tmp_path / ".tmp-newstate.npz").write_bytes(b"x")
    assert ckpt.clean_stale_tmp(str(tmp_path), ("state.npz",), older_than=0.0) == []  # too new


# --------------------------------------------------------------------------- kill and resume
CFG = TrainConfig(model=ModelConfig(kind="standard", widths=(16, 10)), lr=1e-3, epochs=2,
                  schedule="every", first_epoch_levels=3)     # 10 steps/epoch; ckpts 0,1,2,5,10,20

CHILD = textwrap.dedent("""
    import os, signal, sys, tempfile
    from tapjax import checkpoints as ckpt
    from tapjax.data import load_embedded
    from tapjax.training import TrainConfig, train
    import json
    mode, target, nth, workdir, cfg = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    real, count = ckpt.atomic_write_bytes, [0]
    def hook(path, data):
        if os.path.basename(path) == target:
            count[0] += 1
            if count[0] == nth:
                if mode == "during":   # half a temp file on disk, then kill -9
                    fd, _ = tempfile.mkstemp(prefix=".tmp-", suffix=target, dir=os.path.dirname(path))
                    os.write(fd, data[: len(data) // 2])
                    os.kill(os.getpid(), signal.SIGKILL)
                real(path, data)       # "after": the file is complete, then kill -9
                os.kill(os.getpid(), signal.SIGKILL)
        real(path, data)
    ckpt.atomic_write_bytes = hook
    train(TrainConfig.from_dict(json.loads(cfg)), load_embedded().subset(320, 100), workdir, progress=False)
""")


def _run_child(mode, target, nth, workdir):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": REPO}
    p = subprocess.run([sys.executable, "-c", CHILD, mode, target, str(nth), workdir,
                        json.dumps(CFG.to_dict())], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]


def _npz_contents(path):
    return ckpt.read_npz(path)


def _assert_same_run(a, b):
    assert open(os.path.join(a, "history.json"), "rb").read() == open(os.path.join(b, "history.json"), "rb").read()
    assert open(os.path.join(a, "config.json"), "rb").read() == open(os.path.join(b, "config.json"), "rb").read()
    for name in ["state.npz"] + [os.path.join("checkpoints", os.path.basename(p)) for p in ckpt.list_checkpoints(a)]:
        za, zb = _npz_contents(os.path.join(a, name)), _npz_contents(os.path.join(b, name))
        assert sorted(za) == sorted(zb), name
        for k in za:
            assert za[k].dtype == zb[k].dtype and za[k].shape == zb[k].shape, (name, k)
            assert za[k].tobytes() == zb[k].tobytes(), (name, k)
    assert sorted(os.listdir(os.path.join(a, "checkpoints"))) == sorted(os.listdir(os.path.join(b, "checkpoints")))
    assert not [f for f in os.listdir(b) + os.listdir(os.path.join(b, "checkpoints")) if f.startswith(".tmp-")]


@pytest.fixture(scope="module")
def small_data():
    return load_embedded().subset(320, 100)


@pytest.fixture(scope="module")
def reference_run(small_data, tmp_path_factory):
    d = str(tmp_path_factory.mktemp("ref") / "run")
    train(CFG, small_data, d, progress=False)
    return d


@pytest.mark.parametrize("mode,target,nth", [
    ("after", "state.npz", 2),                # killed right after the state at step 2 (epoch 1)
    ("during", "ckpt_000000005.npz", 1),      # killed while writing the checkpoint at step 5
])
def test_kill_and_resume_is_bit_identical(tmp_path, small_data, reference_run, mode, target, nth, capfd):
    d = str(tmp_path / "run")
    _run_child(mode, target, nth, d)
    state = ckpt.read_npz(os.path.join(d, "state.npz"))
    assert 0 < int(state["step"]) < 10                        # the kill was inside epoch 1
    if mode == "during":
        assert [f for f in os.listdir(os.path.join(d, "checkpoints")) if f.startswith(".tmp-")]
    train(CFG, small_data, d, progress=False)
    if mode == "during":
        assert "removed 1 temporary file(s)" in capfd.readouterr().err
    _assert_same_run(reference_run, d)


def test_resume_state_checks(tmp_path, small_data, reference_run, capfd):
    d = str(tmp_path / "run")
    train(CFG, small_data, d, progress=False, stop_after_step=5)
    hist = os.path.join(d, "history.json")
    # a deleted history.json is rebuilt from the state's copy, with a note
    open(hist, "w").write("[]")
    os.remove(hist)
    train(CFG, small_data, d, progress=False, stop_after_step=10)
    assert "history.json is missing; rewritten from the copy" in capfd.readouterr().err
    # a corrupt one too
    open(hist, "w").write('[{"epoch": 1, "t')
    train(CFG, small_data, d, progress=False)
    assert "history.json is corrupt" in capfd.readouterr().err
    _assert_same_run(reference_run, d)
    # a NaN inside the state is a corrupt file, not a divergence
    st = ckpt.read_npz(os.path.join(d, "state.npz"))
    st["params/layer1/kernel"][0, 0] = np.nan
    ckpt.atomic_write_npz(os.path.join(d, "state.npz"), st)
    with pytest.raises(ckpt.CheckpointError, match="state.npz: params/layer1/kernel holds NaN/Inf values: "
                                                   "the file is corrupt"):
        train(CFG, small_data, d, progress=False)
    # a state of another run with the same shapes (another seed) is refused
    other = str(tmp_path / "other")
    train(CFG.__class__(**{**CFG.__dict__, "seed": 1, "epochs": 1}), small_data, other, progress=False,
          stop_after_step=2)
    shutil.copy(os.path.join(other, "state.npz"), os.path.join(d, "state.npz"))
    with pytest.raises(ckpt.CheckpointError, match="state.npz: belongs to another run"):
        train(CFG, small_data, d, progress=False)


# --------------------------------------------------------------------------- the lock
HOLDER = textwrap.dedent("""
    import sys
    from tapjax.locking import WorkdirLock
    lock = WorkdirLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    sys.stdin.read()
""")


def test_second_writer_refused_and_stale_lock_taken_over(tmp_path, small_data, capfd):
    from tapjax.multirun import train_many
    d = str(tmp_path / "run")
    env = {**os.environ, "PYTHONPATH": REPO}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, d], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        cfg = CFG.__class__(**{**CFG.__dict__, "epochs": 1})
        with pytest.raises(WorkdirBusyError, match=rf"run is in use by pid {holder.pid} on host .*lock file"):
            train(cfg, small_data, d, progress=False)
        with pytest.raises(WorkdirBusyError, match=rf"pid {holder.pid}"):
            train_many([cfg], small_data, [d])
        # a second subprocess writer is refused as well
        p = subprocess.run([sys.executable, "-c", HOLDER, d], env=env, capture_output=True, text=True,
                           timeout=120)
        assert p.returncode != 0 and f"in use by pid {holder.pid}" in p.stderr
        assert not os.path.exists(os.path.join(d, "config.json"))      # nothing was written
    finally:
        holder.kill()                                                   # kill -9: a stale lock
        holder.wait()
    res = train(cfg, small_data, d, progress=False)
    assert f"taking over the stale lock of pid {holder.pid}" in capfd.readouterr().err
    assert len(res.history) == 1
    with WorkdirLock(d) as lock:                                        # released after the run
        assert lock.took_over is None
