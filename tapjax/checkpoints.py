"""Atomic checkpoints along training time, and the loader the analysis side uses.

Layout of a run directory (``--workdir``)::

    workdir/
      config.json              the run's TrainConfig (written once)
      history.json             per-epoch validation error and train loss (rewritten atomically)
      state.npz                latest full training state, for resuming (replaced atomically)
      checkpoints/
        ckpt_000000000.npz     t = 0 (init)
        ckpt_000000029.npz     t = 29/1875 epochs, ...

A checkpoint ``.npz`` holds ``params/<layer>/<name>`` arrays and ``__meta__``, a JSON string with
``t`` (epochs, float), ``step``, ``epoch``, ``train_loss``, ``val_error`` and ``config``.
Every file is written to a temporary name in the same directory, fsync'ed and then
``os.replace``-d, so a killed process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import dataclasses
import glob
import io
import json
import os
import tempfile
import zipfile
from typing import Any, Mapping

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint or run directory is missing, corrupt or inconsistent (message names the file)."""


# --------------------------------------------------------------------------- atomic writes
def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def atomic_write_npz(path: str, arrays: Mapping[str, Any]) -> None:
    """``np.savez`` to ``path`` atomically (serialized in memory, then :func:`atomic_write_bytes`)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


def atomic_write_json(path: str, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def read_npz(path: str) -> dict[str, np.ndarray]:
    """Loads every array of an ``.npz``; corrupt or missing files raise :class:`CheckpointError`."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise CheckpointError(
            f"{path}: corrupt or unreadable ({type(e).__name__}: {e}); delete it and re-run "
            "(training resumes from the previous checkpoint)") from e


# --------------------------------------------------------------------------- pytree <-> flat
def flatten_dict(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dict of arrays → ``{"a/b/c": array}``."""
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_dict(v, key + "/"))
        else:
            out[key] = np.asarray(v)
    return out


def unflatten_dict(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


def check_finite(params: Mapping[str, Any], where: str) -> None:
    for k, v in flatten_dict(params).items():
        if not np.all(np.isfinite(v)):
            raise CheckpointError(f"{where}: parameter {k} holds NaN/Inf values")


# --------------------------------------------------------------------------- checkpoints
def checkpoint_path(workdir: str, step: int) -> str:
    return os.path.join(workdir, "checkpoints", f"ckpt_{step:09d}.npz")


def save_checkpoint(workdir: str, params: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    """Writes one analysis checkpoint atomically; returns its path.

    Args:
      workdir: run directory.
      params: nested dict of weights (``{"layer1": {"kernel": (N_0, N_1)}, ...}``).
      meta: JSON-serializable dict; must hold ``step`` and ``t``.
    """
    path = checkpoint_path(workdir, int(meta["step"]))
    arrays = {f"params/{k}": v for k, v in flatten_dict(params).items()}
    arrays["__meta__"] = np.asarray(json.dumps(dict(meta), sort_keys=True))
    atomic_write_npz(path, arrays)
    return path


def load_checkpoint(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reads a checkpoint written by :func:`save_checkpoint` → ``(params, meta)``."""
    z = read_npz(path)
    if "__meta__" not in z:
        raise CheckpointError(f"{path}: not a tapjax checkpoint (no __meta__ entry)")
    meta = json.loads(str(z["__meta__"]))
    params = unflatten_dict({k[len("params/"):]: v for k, v in z.items() if k.startswith("params/")})
    if not params:
        raise CheckpointError(f"{path}: checkpoint holds no parameters")
    check_finite(params, path)
    return params, meta


def list_checkpoints(workdir: str) -> list[str]:
    """Checkpoint paths of a run, in training-step order."""
    return sorted(glob.glob(os.path.join(workdir, "checkpoints", "ckpt_*.npz")))


@dataclasses.dataclass(frozen=True)
class RunHistory:
    """Time series of a run's checkpoints, stacked for the analysis side.

    Attributes:
      t: ``(T,)`` training time in epochs (fractional inside the first epoch).
      step: ``(T,)`` optimizer steps.
      train_loss: ``(T,)`` mean training loss since the previous checkpoint (NaN at t=0).
      val_error: ``(T,)`` validation error at the checkpoint.
      weights: ``(W^(1), ..., W^(L))``, each ``(T, N_{k-1}, N_k)``; index 0 along the first
        axis is the checkpoint, so ``jax.vmap`` maps over checkpoints directly.
      config: the run's configuration dict.
      paths: the checkpoint files.
      layer_names: ``(L,)`` name of each coupling block in its source (e.g. ``"layer1"``,
        ``"fc.0"``, ``"Dense_3"``); empty when unknown.
      biases: per block, ``(T, N_k)`` bias vectors or ``None`` (not part of the spin model:
        TAP ignores them; :mod:`tapjax.overlap` may use them as fields); empty when none.
      info: provenance: source format, the weight-layout convention applied, bias handling, …
    """

    t: np.ndarray
    step: np.ndarray
    train_loss: np.ndarray
    val_error: np.ndarray
    weights: tuple[np.ndarray, ...]
    config: dict[str, Any]
    paths: tuple[str, ...]
    layer_names: tuple[str, ...] = ()
    biases: tuple[np.ndarray | None, ...] = ()
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.t)

    def weights_at(self, i: int) -> tuple[np.ndarray, ...]:
        return tuple(w[i] for w in self.weights)


def load_run(workdir: str) -> RunHistory:
    """Loads every checkpoint of a run, ordered by training time."""
    from tapjax.models import weights_from_params  # pylint: disable=import-outside-toplevel
    paths = list_checkpoints(workdir)
    if not paths:
        raise CheckpointError(f"{workdir}: no checkpoints found under {workdir}/checkpoints; "
                              "train first (experiments/train.py --workdir=...)")
    rows, ws = [], []
    for p in paths:
        params, meta = load_checkpoint(p)
        rows.append(meta)
        ws.append(tuple(np.asarray(w) for w in weights_from_params(params)))
    shapes = [tuple(w.shape for w in ww) for ww in ws]
    for p, s in zip(paths, shapes):
        if s != shapes[0]:
            raise CheckpointError(f"{p}: weight shapes {s} differ from the run's first checkpoint {shapes[0]}")
    weights = tuple(np.stack([ww[k] for ww in ws]) for k in range(len(ws[0])))
    f = lambda key: np.array([np.nan if r.get(key) is None else r[key] for r in rows], float)
    return RunHistory(t=f("t"), step=np.array([r["step"] for r in rows]), train_loss=f("train_loss"),
                      val_error=f("val_error"), weights=weights, config=rows[-1].get("config", {}),
                      paths=tuple(paths))
