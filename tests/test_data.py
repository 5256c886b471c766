import gzip
import os
import struct

import numpy as np
import pytest

from tapjax.data import DataError, load_dataset, load_embedded, load_idx_dir, read_idx


def write_idx(path, arr, magic=None, gz=True, truncate=0, extra=b""):
    arr = np.asarray(arr, np.uint8)
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    if magic is not None:
        header = struct.pack(">I", magic) + header[4:]
    raw = header + arr.tobytes() + extra
    if truncate:
        raw = raw[:-truncate]
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(raw)


def make_dir(tmp_path, n_train=20, n_val=10, **bad):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n_train, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, n_train - bad.get("drop", 0)))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n_val, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, n_val))
    return tmp_path


def test_idx_roundtrip_gz_and_plain(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", a)
    write_idx(tmp_path / "a", a, gz=False)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "a.gz")), a)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "a")), a)


def test_idx_dir_loads(tmp_path):
    d = load_idx_dir(str(make_dir(tmp_path)))
    assert d.x_train.shape == (20, 784) and d.x_val.shape == (10, 784)
    assert d.x_train.dtype == np.uint8 and d.y_train.dtype == np.int32
    assert load_dataset(f"idx:{tmp_path}").x_train.shape == (20, 784)


def test_missing_file_names_file(tmp_path):
    with pytest.raises(DataError, match="nope.gz: file not found"):
        read_idx(str(tmp_path / "nope.gz"))
    make_dir(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match="no t10k labels file"):
        load_idx_dir(str(tmp_path))


def test_wrong_magic(tmp_path):
    write_idx(tmp_path / "x.gz", np.zeros((2, 28, 28)), magic=2049)
    with pytest.raises(DataError, match=r"x.gz: wrong magic number 2049 \(expected 2051\)"):
        read_idx(str(tmp_path / "x.gz"), 2051)


def test_truncated_and_trailing(tmp_path):
    write_idx(tmp_path / "t.gz", np.zeros((3, 28, 28)), truncate=5)
    with pytest.raises(DataError, match="t.gz: truncated"):
        read_idx(str(tmp_path / "t.gz"))
    write_idx(tmp_path / "e.gz", np.zeros((3, 28, 28)), extra=b"xx")
    with pytest.raises(DataError, match="e.gz: has trailing bytes"):
        read_idx(str(tmp_path / "e.gz"))
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="bad.gz: cannot be read"):
        read_idx(str(tmp_path / "bad.gz"))


def test_label_count_mismatch(tmp_path):
    make_dir(tmp_path, drop=3)
    with pytest.raises(DataError, match="holds 20 images but .*train-labels.* holds 17 labels"):
        load_idx_dir(str(tmp_path))


def test_bad_spec():
    with pytest.raises(DataError, match="unknown dataset spec"):
        load_dataset("mnist-please")


def test_embedded_is_real_mnist():
    d = load_embedded()
    assert d.x_train.shape == (4000, 784) and d.x_val.shape == (1000, 784)
    assert d.num_classes == 10
    counts = np.bincount(np.concatenate([d.y_train, d.y_val]), minlength=10)
    np.testing.assert_array_equal(counts, [500] * 10)  # 500 per digit
    # real digits: mostly-black background, ~19% ink on average
    assert 0.1 < (d.x_train > 127).mean() < 0.3


def test_shared_mnist_if_present():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")
    if not os.path.isdir(path):
        pytest.skip("../shared/data/mnist not present")
    d = load_idx_dir(path)
    assert d.x_train.shape == (60000, 784) and d.x_val.shape == (10000, 784)
    np.testing.assert_array_equal(np.bincount(d.y_val), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_one_idx_reader_with_every_check(tmp_path):
    """tapjax.data.idx owns IDX reading; the mnist / package names are the same function."""
    from tapjax.data import idx, mnist
    assert mnist.read_idx is idx.read_idx and read_idx is idx.read_idx
    # the base module itself reports the overflow and the corrupt gzip trailer
    p = tmp_path / "huge"
    p.write_bytes(struct.pack(">HBB", 0, 8, 2) + struct.pack(">II", 2**32 - 1, 2**32 - 1))
    with pytest.raises(DataError, match=r"huge: corrupt header: dimensions \(4294967295, 4294967295\) "
                                        r"promise 18446744065119617025 bytes"):
        idx.read_idx(str(p))
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "c.gz", a)
    raw = bytearray((tmp_path / "c.gz").read_bytes())
    raw[-8] ^= 0xFF                                   # CRC32 of the gzip trailer
    (tmp_path / "c.gz").write_bytes(bytes(raw))
    with pytest.raises(DataError, match="c.gz: cannot be read: corrupt compressed data"):
        idx.read_idx(str(tmp_path / "c.gz"))
    write_idx(tmp_path / "ok", a, gz=False)
    np.testing.assert_array_equal(idx.read_idx(str(tmp_path / "ok"), 2051), a)
    with pytest.raises(DataError, match=r"ok: wrong magic number 2051 \(expected 2049\)"):
        idx.read_idx(str(tmp_path / "ok"), 2049)
