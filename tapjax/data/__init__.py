"""Datasets: embedded MNIST subset, IDX directories, TFDS."""

from tapjax.data.idx import DataError, read_idx
from tapjax.data.mnist import (Dataset, load_dataset, load_embedded, load_idx_dir,
                               load_tfds)

__all__ = ["DataError", "Dataset", "load_dataset", "load_embedded", "load_idx_dir",
           "load_tfds", "read_idx"]
