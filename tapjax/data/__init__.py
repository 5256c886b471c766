"""Datasets: embedded MNIST subset, IDX directories, TFDS."""

from tapjax.data.idx import DataError
from tapjax.data.mnist import (MNIST_CLASSES, Dataset, load_dataset, load_embedded, load_idx_dir,
                               load_tfds, read_idx)

__all__ = ["MNIST_CLASSES", "DataError", "Dataset", "load_dataset", "load_embedded", "load_idx_dir",
           "load_tfds", "read_idx"]
