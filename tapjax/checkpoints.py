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
import fnmatch
import glob
import io
import json
import math
import os
import re
import struct
import tempfile
import time
import zipfile
import zlib
from typing import Any, Mapping, Sequence

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


TMP_PREFIX = ".tmp-"


def _umask() -> int:
    """The process umask (read from /proc on Linux, else by setting and restoring it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (temp file + fsync + rename).

    The file gets the mode ``open()`` would give it (``0o666 & ~umask``), not ``mkstemp``'s
    0600. A failed write (read-only directory, full disk, ...) raises :class:`CheckpointError`
    naming the file; the previous content of ``path`` (if any) is untouched and no temporary
    file is left behind.
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=os.path.basename(path), dir=directory)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        had = "keeps its previous content" if os.path.exists(path) else "was not created"
        raise CheckpointError(
            f"{path}: cannot write ({e.strerror or e}); nothing was lost: the file {had} and every "
            "file written before is intact. Free disk space or make the directory writable, then "
            "re-run the same command (training resumes from the last saved state)") from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass
    _fsync_dir(directory)


def clean_stale_tmp(directory: str, names: Sequence[str] | None = None,
                    older_than: float | None = None) -> list[str]:
    """Removes temporary files that a killed :func:`atomic_write_bytes` left in ``directory``.

    Args:
      directory: where to look (not recursive).
      names: only temp files of these target basenames (``.tmp-XXXXstate.npz`` for
        ``"state.npz"``); a name may be a glob pattern (``"ckpt_*.npz"``). None: all.
      older_than: only files last modified before this ``time.time()`` (e.g. when the caller
        took the workdir lock, so no live writer's file is touched).

    Returns:
      The removed paths.
    """
    removed = []
    for p in glob.glob(os.path.join(glob.escape(directory), TMP_PREFIX + "*")):
        base = os.path.basename(p)
        if names is not None and not any(
                fnmatch.fnmatch(base, f"{TMP_PREFIX}*{n}") for n in names):
            continue
        try:
            if older_than is not None and os.stat(p).st_mtime >= older_than:
                continue
            os.unlink(p)
            removed.append(p)
        except OSError:
            continue
    return removed


def atomic_write_npz(path: str, arrays: Mapping[str, Any]) -> None:
    """``np.savez`` to ``path`` atomically (serialized in memory, then :func:`atomic_write_bytes`)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


def atomic_write_json(path: str, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


_LOAD_HINT = "load it with tapjax.sources.load_series(path) / tapjax.analyze(path)"


def describe_foreign(path: str, head: bytes) -> str | None:
    """What a file that is not an ``.npz`` is, from its first bytes (None: unrecognised)."""
    if head.startswith(b"\x93NUMPY"):
        return "a single NumPy array (.npy) saved under an .npz name"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 file (e.g. a Keras .h5 / .keras weights file)"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (e.g. a legacy PyTorch .pt file)"
    if len(head) >= 10:
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n < 100_000_000 and head[8:9] == b"{" and os.path.getsize(path) >= 8 + n:
            return "a safetensors file"
    return None


def _zip_kind(zf: zipfile.ZipFile) -> str | None:
    names = zf.namelist()
    if any(n.endswith("data.pkl") for n in names):
        return "a PyTorch (torch.save) zip archive"
    if any(n.endswith(".weights.h5") or n == "config.json" for n in names):
        return "a Keras .keras archive"
    if names and not all(n.endswith(".npy") for n in names):
        return "a zip archive that is not an .npz"
    return None


def read_npz(path: str) -> dict[str, np.ndarray]:
    """Loads every array of an ``.npz``; corrupt, foreign or missing files raise :class:`CheckpointError`.

    A recognised foreign format (``.npy``, safetensors, HDF5/Keras, PyTorch) is named in the
    message together with the loader to use instead.
    """
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: file not found")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a directory, not an .npz file")
    try:
        with open(path, "rb") as f:
            head = f.read(64)
        if not head.startswith(b"PK"):
            what = describe_foreign(path, head)
            if what is not None:
                raise CheckpointError(f"{path}: not an .npz archive: this is {what}; {_LOAD_HINT}")
            raise zipfile.BadZipFile("not a zip archive (no PK signature)")
        with zipfile.ZipFile(path) as zf:
            what = _zip_kind(zf)
        if what is not None:
            raise CheckpointError(f"{path}: not an .npz archive: this is {what}; {_LOAD_HINT}")
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, TypeError, AttributeError,
            IndexError, zlib.error, struct.error, NotImplementedError, UnicodeDecodeError,
            RuntimeError, MemoryError, OverflowError) as e:
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
      meta: JSON-serializable dict; must hold an integer ``step >= 0`` and a finite ``t >= 0``
        (:func:`check_meta`; a bad one raises :class:`CheckpointError` before anything is written).
    """
    text = json.dumps(dict(meta), sort_keys=True)
    check_meta(text, f"save_checkpoint({workdir!r})")
    path = checkpoint_path(workdir, int(meta["step"]))
    arrays = {f"params/{k}": v for k, v in flatten_dict(params).items()}
    arrays["__meta__"] = np.asarray(text)
    atomic_write_npz(path, arrays)
    return path


def check_meta(meta_json: Any, where: str) -> dict[str, Any]:
    """Parses and validates a checkpoint's ``__meta__`` JSON → the dict.

    Required: a JSON object with an integer ``step >= 0`` and a finite number ``t >= 0``.

    Raises:
      CheckpointError: naming ``where`` and what is wrong.
    """
    try:
        meta = json.loads(str(meta_json))
    except (json.JSONDecodeError, ValueError) as e:
        raise CheckpointError(f"{where}: corrupt __meta__ (not JSON: {e}); the file is damaged, "
                              "delete it (its weights cannot be dated)") from e
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: corrupt __meta__ (a JSON {type(meta).__name__}, expected an "
                              "object with step and t)")
    step, t = meta.get("step"), meta.get("t")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{where}: __meta__ has no valid step (got {step!r}; expected an "
                              "integer >= 0)")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
        raise CheckpointError(f"{where}: __meta__ has no valid training time t (got {t!r}; expected "
                              "a finite number of epochs >= 0)")
    return meta


def load_checkpoint(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reads a checkpoint written by :func:`save_checkpoint` → ``(params, meta)``.

    Raises:
      CheckpointError: missing, corrupt or foreign file, bad ``__meta__`` (see
        :func:`check_meta`), no or non-finite parameters; the message names the file.
    """
    z = read_npz(path)
    if "__meta__" not in z:
        raise CheckpointError(f"{path}: not a tapjax checkpoint (an .npz without a __meta__ entry); "
                              f"if it holds a network's weights, {_LOAD_HINT}")
    meta = check_meta(z["__meta__"], path)
    try:
        params = unflatten_dict({k[len("params/"):]: v for k, v in z.items() if k.startswith("params/")})
    except (AttributeError, TypeError) as e:
        raise CheckpointError(f"{path}: parameter names clash (one name is both an array and a "
                              f"group: {sorted(z)}); the file is damaged") from e
    if not params:
        raise CheckpointError(f"{path}: checkpoint holds no parameters")
    for k, v in flatten_dict(params).items():
        if not np.issubdtype(v.dtype, np.number) or np.issubdtype(v.dtype, np.complexfloating):
            raise CheckpointError(f"{path}: parameter {k} has dtype {v.dtype}, not real numbers")
    check_finite(params, path)
    return params, meta


def _natural_key(name: str) -> tuple:
    return tuple((0, int(c), c) if c.isdigit() else (1, 0, c)
                 for c in re.split(r"(\d+)", name) if c)


def layer_order(names: Sequence[str]) -> list[str]:
    """Layer names in natural order (``layer2`` before ``layer10``; ``fc.0``, ``fc.1``, ...)."""
    return sorted(names, key=_natural_key)


def weights_from_params(params: Mapping[str, Any], where: str = "params") -> tuple[Any, ...]:
    """The coupling blocks ``(W^(1), ..., W^(L))`` of a ``{layer: {"kernel": (N_{k-1}, N_k)}}`` dict.

    Layers are taken in natural name order (:func:`layer_order`); the kernels must be 2-D
    and chain (``W^(k).shape[1] == W^(k+1).shape[0]``), so a wrong order cannot pass silently.

    Raises:
      CheckpointError: a layer without a 2-D ``kernel`` or kernels that do not chain, naming
        ``where`` and the layers.
    """
    names = layer_order(list(params))
    ws = []
    for n in names:
        layer = params[n]
        if not isinstance(layer, Mapping) or "kernel" not in layer:
            raise CheckpointError(f"{where}: layer {n!r} has no 'kernel' (entries "
                                  f"{sorted(layer) if isinstance(layer, Mapping) else type(layer).__name__})")
        if np.ndim(layer["kernel"]) != 2:
            raise CheckpointError(f"{where}: layer {n!r} kernel has shape {np.shape(layer['kernel'])}, "
                                  "expected 2-D (N_in, N_out)")
        ws.append(layer["kernel"])
    for (a, wa), (b, wb) in zip(zip(names, ws), zip(names[1:], ws[1:])):
        if np.shape(wa)[1] != np.shape(wb)[0]:
            raise CheckpointError(
                f"{where}: layers taken in name order {names} do not chain: {a!r} {np.shape(wa)} then "
                f"{b!r} {np.shape(wb)}; name the layers so that their natural order is the "
                "network's order (e.g. layer1, layer2, ...)")
    return tuple(ws)


_CKPT_NAME = re.compile(r"ckpt_(\d{9})\.npz")


def list_checkpoints(workdir: str) -> list[str]:
    """Checkpoint paths of a run, in training-step order."""
    return sorted(glob.glob(os.path.join(glob.escape(workdir), "checkpoints", "ckpt_*.npz")))


def config_conflicts(a: Mapping[str, Any], b: Mapping[str, Any], ignore: Sequence[str] = ("epochs",),
                     prefix: str = "") -> list[str]:
    """Keys (dotted) present in both config dicts whose values differ, except ``ignore``.

    Keys missing on one side are not conflicts (configs written before a field existed).
    """
    out = []
    for k in sorted(set(a) & set(b)):
        if k in ignore:
            continue
        va, vb = a[k], b[k]
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += config_conflicts(va, vb, ignore, f"{prefix}{k}.")
        elif json.loads(json.dumps(va)) != json.loads(json.dumps(vb)):
            out.append(f"{prefix}{k}")
    return out


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
    """Loads every checkpoint of a run, ordered by training step.

    The run must be consistent: every file is named ``ckpt_<9-digit step>.npz`` after the step
    in its ``__meta__``, ``t`` grows strictly with the step, every checkpoint's config agrees
    with ``config.json`` (and with each other; only ``epochs`` may differ) and all weight
    shapes agree. A stray copy, a renamed file or a checkpoint of another run raises
    :class:`CheckpointError` naming the file.
    """
    paths = list_checkpoints(workdir)
    if not paths:
        raise CheckpointError(f"{workdir}: no checkpoints found under {workdir}/checkpoints; "
                              "train first (experiments/train.py --workdir=...)")
    run_cfg, cfg_src = None, None
    cfg_path = os.path.join(workdir, "config.json")
    if os.path.exists(cfg_path):
        try:
            with open(cfg_path) as f:
                run_cfg = json.load(f)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{cfg_path}: corrupt run config ({e}); the checkpoints are intact: "
                                  "restore config.json from a checkpoint's __meta__['config']") from e
        if not isinstance(run_cfg, dict):
            raise CheckpointError(f"{cfg_path}: corrupt run config (not a JSON object)")
        cfg_src = cfg_path
    rows, ws, names, biases = [], [], None, []
    for p in paths:
        m = _CKPT_NAME.fullmatch(os.path.basename(p))
        if m is None:
            raise CheckpointError(f"{p}: stray file in checkpoints/ (name is not ckpt_<9-digit "
                                  "step>.npz); move it out of the run directory")
        params, meta = load_checkpoint(p)
        if int(m.group(1)) != meta["step"]:
            raise CheckpointError(f"{p}: file name says step {int(m.group(1))} but its __meta__ says "
                                  f"step {meta['step']}: a renamed or stray copy; move it out of the "
                                  "run directory")
        cfg = meta.get("config")
        if isinstance(cfg, dict):
            if run_cfg is None:
                run_cfg, cfg_src = cfg, paths[0]
            bad = config_conflicts(run_cfg, cfg)
            if bad:
                detail = ", ".join(f"{k}: {_dotget(run_cfg, k)!r} vs {_dotget(cfg, k)!r}" for k in bad)
                raise CheckpointError(f"{p}: belongs to another run: its config differs from {cfg_src} "
                                      f"({detail}); move it out of the run directory")
        rows.append(meta)
        ws.append(tuple(np.asarray(w) for w in weights_from_params(params, p)))
        order = layer_order(list(params))
        names = names or tuple(order)
        biases.append([None if not isinstance(params[n], Mapping) or "bias" not in params[n]
                       else np.asarray(params[n]["bias"]) for n in order])
    shapes = [tuple(w.shape for w in ww) for ww in ws]
    for p, s in zip(paths, shapes):
        if s != shapes[0]:
            raise CheckpointError(f"{p}: weight shapes {s} differ from the run's first checkpoint {shapes[0]}")
    t = np.array([float(r["t"]) for r in rows])
    for i in range(1, len(rows)):
        if not t[i] > t[i - 1]:
            raise CheckpointError(
                f"{paths[i]}: t = {t[i]:g} at step {rows[i]['step']} does not exceed t = {t[i - 1]:g} at "
                f"step {rows[i - 1]['step']} ({paths[i - 1]}): one of them is a stray copy; move it out "
                "of the run directory")
    weights = tuple(np.stack([ww[k] for ww in ws]) for k in range(len(ws[0])))
    bias_blocks = tuple(None if any(b[k] is None for b in biases) else np.stack([b[k] for b in biases])
                        for k in range(len(ws[0])))
    f = lambda key: np.array([np.nan if r.get(key) is None else r[key] for r in rows], float)
    return RunHistory(t=t, step=np.array([r["step"] for r in rows]), train_loss=f("train_loss"),
                      val_error=f("val_error"), weights=weights,
                      config=rows[-1].get("config", run_cfg or {}), paths=tuple(paths),
                      layer_names=names, biases=bias_blocks if any(b is not None for b in bias_blocks) else (),
                      info={"source": "tapjax"})


def _dotget(d: Mapping[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, Mapping) else None
    return d
