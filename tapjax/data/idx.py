"""TensorFlow-free reader for IDX files (the MNIST / Fashion-MNIST on-disk format).

An IDX file is a big-endian header ``00 00 <dtype code> <ndim>``, ``ndim`` uint32 dimensions,
then the raw array. Files may be gzip-compressed (``.gz``). Every failure raises
:class:`DataError` naming the file and what is wrong with it. :func:`read_idx` is the one IDX
reader (``tapjax.data.mnist.read_idx`` and ``tapjax.data.read_idx`` are this function).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from typing import Mapping

import numpy as np

# IDX type codes -> numpy big-endian dtypes.
_IDX_DTYPES: Mapping[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

IMAGES_MAGIC = 2051  # 0x00000803: uint8, 3 dims
LABELS_MAGIC = 2049  # 0x00000801: uint8, 1 dim


class DataError(ValueError):
    """A data file is missing, corrupt, or inconsistent. The message names the file."""


_INT64_MAX = 2**63 - 1


def _read_bytes(path: str) -> bytes:
    """The file's bytes (decompressed for ``.gz``); every failure a :class:`DataError`."""
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except (zlib.error, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot be read: corrupt compressed data ({type(e).__name__}: {e}); "
                        "re-download the file") from e
    except (OSError, MemoryError) as e:
        raise DataError(f"{path}: cannot be read ({type(e).__name__}: {e}); re-download the file") from e


def _parse(path: str, raw: bytes, expected_magic: int | None) -> np.ndarray:
    if len(raw) < 4:
        raise DataError(f"{path}: truncated file ({len(raw)} bytes, no IDX header)")
    magic = struct.unpack(">I", raw[:4])[0]
    if expected_magic is not None and magic != expected_magic:
        raise DataError(
            f"{path}: wrong magic number {magic} (expected {expected_magic}); "
            "is this an IDX file of the right kind (images 2051, labels 2049)?")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise DataError(f"{path}: not an IDX file (magic {magic:#010x})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = dtype.itemsize
    for d in shape:
        expected *= d  # Python ints: exact (np.prod would wrap around past int64)
    if expected > _INT64_MAX:
        raise DataError(
            f"{path}: corrupt header: dimensions {shape} promise {expected} bytes (more "
            "than any file can hold); re-download the file")
    payload = len(raw) - header
    if payload != expected:
        what = "truncated" if payload < expected else "has trailing bytes"
        raise DataError(
            f"{path}: {what}: header promises shape {shape} ({expected} bytes), "
            f"file holds {payload} bytes; re-download the file")
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def read_idx(path: str, expected_magic: int | None = None) -> np.ndarray:
    """Reads one IDX file into a native-endian numpy array (the one IDX reader of tapjax).

    Args:
      path: file path, optionally ``.gz``.
      expected_magic: if given, the 4-byte magic number the file must start with
        (2051 for image files, 2049 for label files).

    Returns:
      The array, shape given by the header (e.g. ``(60000, 28, 28)`` uint8).

    Raises:
      DataError, naming the file, for every failure: missing file, unreadable file or corrupt
        gzip / deflate stream (``zlib.error``, ``EOFError``, ``gzip.BadGzipFile``), wrong magic
        number, unknown type code, header dimensions whose byte count overflows int64 (the
        exact count is named), or a payload shorter/longer than the header promises.
    """
    raw = _read_bytes(path)
    try:
        return _parse(path, raw, expected_magic)
    except DataError:
        raise
    except (ValueError, OverflowError, MemoryError, struct.error) as e:
        raise DataError(f"{path}: cannot be read as IDX ({type(e).__name__}: {e}); "
                        "re-download the file") from e
