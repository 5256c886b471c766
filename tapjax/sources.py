r"""Foreign networks as layered couplings: any source → :class:`tapjax.checkpoints.RunHistory`.

:func:`load_series` turns weights from PyTorch, Flax, Keras, safetensors, scikit-learn, NumPy
or a tapjax run into the coupling blocks :math:`W^{(k)}` of the layered spin model (eq. 1,
:mod:`tapjax.spin_model`), each ``(T, N_{k-1}, N_k)`` in tapjax's ``(in, out)`` orientation, one
row per snapshot of training time. :func:`load_network` reads one snapshot (T = 1).

Rules (``docs/sources.md`` has the table per format):

* **Layout.** Whether a stored 2-D weight is ``(in, out)`` or ``(out, in)`` is decided by the
  format's own convention — never guessed from shapes: PyTorch ``weight`` is ``(out, in)``; Flax,
  Keras (``kernel``) and scikit-learn (``coefs_``) are ``(in, out)``; ``.safetensors`` follows
  PyTorch unless its metadata says ``layout``/``format``; plain ``.npz`` arrays need ``layout=``,
  a ``__layout__`` entry or ``.weight``/``/kernel`` key names. ``info["layout"]`` records the rule.
* **Sizes.** Consecutive blocks whose sizes disagree raise :class:`SourceError` naming the file,
  the layer and the likely cause (a transposed layout, or a layer in between that is not read).
* **Biases** are not part of the spin model (external fields, absent from eqs. 19–27): they are
  kept in ``RunHistory.biases`` (conv biases broadcast to the flattened output layer), ignored by
  TAP, counted in ``info["biases"]`` and announced by one :class:`BiasWarning`.
* **Layers.** Dense and 1-D/2-D convolutions (exact blocks, :mod:`tapjax.conv`) are couplings;
  flatten, dropout, identity and element-wise activations carry none. Anything else (pooling,
  normalization, attention, embeddings, residual connections, unknown layers) raises
  :class:`SourceError` naming the layer and listing what is supported.
* **Time.** A directory or list of files is a series ordered by ``step``/``epoch`` metadata
  when every file has it, else by the number in the file name (natural sort);
  ``info["time"]`` says which. ``t`` is the epoch when known, else the step, else the index.
* **Dtypes.** float16/bfloat16 become float32 (noted in ``info["dtype"]``); integer, boolean
  or complex weights, empty weights and NaN/Inf raise :class:`SourceError` naming the layer.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import sys
import warnings
import zipfile
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from tapjax import conv as _conv
from tapjax.checkpoints import CheckpointError, RunHistory, load_checkpoint, load_run

Layout = Literal["in_out", "out_in"]

#: File extensions :func:`load_series` reads.
EXTENSIONS = (".safetensors", ".pt", ".pth", ".bin", ".keras", ".h5", ".hdf5", ".npz")

SUPPORTED = ("dense/linear layers and 1-D/2-D convolutions (couplings); flatten, dropout, "
             "identity and element-wise activations (no couplings)")


class SourceError(ValueError):
    """A source cannot be read as a layered spin model (the message names the file and layer)."""


class BiasWarning(UserWarning):
    """Biases were dropped from the spin model (kept in ``RunHistory.biases``)."""


class ConvAssumptionWarning(UserWarning):
    """A convolution's stride/padding were not stored in the source and were assumed."""


# --------------------------------------------------------------------------- records
@dataclasses.dataclass
class _Layer:
    """One linear map between spin layers as read from a source (before assembly)."""

    name: str
    kind: str                         # "dense" | "conv"
    weight: np.ndarray                # dense: (in, out); conv: kernel as stored
    bias: np.ndarray | None
    source_shape: tuple
    layout: str                       # dense: "in_out" / "out_in" as stored; conv: "torch" / "keras"
    why: str                          # the rule that fixed the layout
    conv: dict | None = None          # stride, padding, dilation, groups, channels
    conv_assumed: bool = False
    input_shape: tuple | None = None  # per-sample input shape when the source states it
    after_flatten: bool | None = None  # dense after conv: was a flatten seen (None: unknown)


@dataclasses.dataclass
class _Snapshot:
    layers: list
    meta: dict
    fmt: str
    path: str
    config: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)


def _caller_stacklevel() -> int:
    """``stacklevel`` that points a warning at the first frame outside the tapjax package."""
    pkg = os.path.dirname(os.path.abspath(__file__))
    level, f = 1, sys._getframe(1)  # pylint: disable=protected-access
    while f is not None and os.path.abspath(f.f_code.co_filename).startswith(pkg + os.sep):
        f, level = f.f_back, level + 1
    return level


def natural_key(s: str):
    """Sort key with numbers compared as numbers: ``Dense_2 < Dense_10``."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower())
                 for p in re.split(r"(\d+)", str(s)) if p)


# --------------------------------------------------------------------------- arrays
def _to_numpy(x, where: str, notes: list) -> np.ndarray:
    """Any array-like (numpy, jax, torch) → float numpy; rejects bad dtypes, empty, non-finite."""
    mod = type(x).__module__
    if mod.startswith("torch"):
        import torch  # pylint: disable=import-outside-toplevel
        x = x.detach().cpu()
        if x.dtype in (torch.float16, torch.bfloat16):
            notes.append(f"{where}: {x.dtype} converted to float32")
            x = x.float()
        elif x.is_complex() or not x.is_floating_point():
            raise SourceError(f"{where}: weights of dtype {x.dtype}; need floating-point weights "
                              "(quantized/integer nets are not supported: dequantize first)")
        x = x.numpy()
    a = np.asarray(x)
    name = a.dtype.name
    if name in ("float16", "bfloat16"):
        notes.append(f"{where}: {name} converted to float32")
        a = a.astype(np.float32)
    elif not np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating):
        raise SourceError(f"{where}: weights of dtype {a.dtype}; need floating-point weights "
                          "(integer, boolean, complex or object arrays are not couplings: "
                          "dequantize or convert to float32 first)")
    if a.size == 0:
        raise SourceError(f"{where}: empty weight array of shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise SourceError(f"{where}: weights contain NaN or Inf (corrupt or diverged snapshot)")
    return a


def _dense(name, w, b, layout: str, why: str, where: str, notes: list, **kw) -> _Layer:
    w = _to_numpy(w, f"{where}: layer '{name}'", notes)
    if w.ndim != 2:
        raise SourceError(f"{where}: layer '{name}' has weight shape {w.shape}; a dense block must be 2-D")
    bias = None if b is None else _to_numpy(b, f"{where}: layer '{name}' bias", notes).reshape(-1)
    mat = w if layout == "in_out" else w.T
    return _Layer(name, "dense", mat, bias, tuple(w.shape), layout, why, **kw)


def _convl(name, k, b, kernel_layout: str, why: str, where: str, notes: list, conv: dict,
           assumed: bool, **kw) -> _Layer:
    k = _to_numpy(k, f"{where}: layer '{name}'", notes)
    if k.ndim not in (3, 4):
        raise SourceError(f"{where}: layer '{name}' has kernel shape {k.shape}; only 1-D and 2-D "
                          f"convolutions are supported ({SUPPORTED})")
    bias = None if b is None else _to_numpy(b, f"{where}: layer '{name}' bias", notes).reshape(-1)
    return _Layer(name, "conv", k, bias, tuple(k.shape), kernel_layout, why, conv=dict(conv),
                  conv_assumed=assumed, **kw)


def _unsupported(where: str, name: str, what: str) -> SourceError:
    return SourceError(f"{where}: layer '{name}' is {what}, which is not a linear map between spin "
                       f"layers; supported: {SUPPORTED}. Remove it (or fold it into the weights) "
                       "and pass the remaining layers as a list of arrays")


# --------------------------------------------------------------------------- parameter dicts
_NORM_KEYS = {"running_mean", "running_var", "num_batches_tracked", "moving_mean",
              "moving_variance", "gamma", "beta", "scale", "mean", "var"}


def _classify_module(where, mod, params: dict, weight_layout: str, why: str, notes: list,
                     conv_layout: str, conv_defaults: dict, conv_kind: str) -> _Layer:
    """One module's parameters ``{param: array}`` → a layer (state dicts, Flax, npz, safetensors)."""
    keys = set(params)
    lname = mod.lower()
    if keys & {"in_proj_weight", "query", "key", "value"} or "attn" in lname or "attention" in lname:
        raise _unsupported(where, mod, "attention")
    if keys & _NORM_KEYS:
        raise _unsupported(where, mod, f"a normalization layer (parameters {sorted(keys)})")
    if "embedding" in keys or "embed" in lname:
        raise _unsupported(where, mod, "an embedding")
    wkey = "kernel" if "kernel" in keys else "weight" if "weight" in keys else None
    extra = keys - {"kernel", "weight", "bias"}
    if wkey is None or extra or ("kernel" in keys and "weight" in keys):
        raise _unsupported(where, mod, f"a layer with parameters {sorted(keys)} (unknown)")
    w, b = params[wkey], params.get("bias")
    ndim = len(np.shape(w))
    if ndim == 1:
        raise _unsupported(where, mod, "a normalization or scaling layer (1-D weight)")
    if wkey == "kernel":
        layout, why_ = "in_out", "'kernel' parameters are (in, out) (Flax/Keras convention)"
        klayout = "keras"
    else:
        layout, why_, klayout = weight_layout, why, conv_layout
    if ndim == 2:
        return _dense(mod, w, b, layout, why_, where, notes)
    if "transpose" in lname or "deconv" in lname:
        raise _unsupported(where, mod, "a transposed convolution")
    if conv_kind == "flax" and "conv" not in lname:
        raise SourceError(f"{where}: module '{mod}' has a rank-{ndim} kernel; rank-3/4 kernels are "
                          "read as convolutions only when the module name contains 'Conv' "
                          f"(DenseGeneral/attention are not supported); supported: {SUPPORTED}")
    kshape = "(C_out, C_in, *k)" if klayout == "torch" else "(*k, C_in, C_out)"
    return _convl(mod, w, b, klayout, f"conv kernels are {kshape} ({why_})", where, notes,
                  conv_defaults, assumed=True)


def _group_flat(flat: Mapping[str, Any], sep_re=r"[./]") -> list[tuple[str, dict]]:
    """``{"fc1.weight": w, ...}`` → ``[("fc1", {"weight": w, ...}), ...]`` in first-seen order."""
    groups: dict[str, dict] = {}
    for key, v in flat.items():
        parts = re.split(sep_re, key)
        mod, param = ("/".join(parts[:-1]) if "/" in key else ".".join(parts[:-1])), parts[-1]
        groups.setdefault(mod, {})[param] = v
    return list(groups.items())


_TORCH_CONV = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}
_FLAX_CONV = {"stride": 1, "padding": "SAME", "dilation": 1, "groups": 1}


def _from_state_dict(where, flat: Mapping[str, Any], layout: str, why: str, notes: list,
                     order: str = "insertion") -> list[_Layer]:
    items = _group_flat(flat)
    if order == "natural":
        items.sort(key=lambda kv: natural_key(kv[0]))
    conv_layout = "torch" if layout == "out_in" else "keras"
    defaults = _TORCH_CONV if conv_layout == "torch" else _FLAX_CONV
    return [_classify_module(where, m, p, layout, why, notes, conv_layout, defaults, "torch")
            for m, p in items]


def _flax_modules(tree: Mapping, prefix: str = ""):
    """Module nodes of a params pytree in natural-sort order → ``[(path, {param: leaf})]``."""
    leaves = {k: v for k, v in tree.items() if not isinstance(v, Mapping)}
    out = [(prefix.rstrip("/") or "<root>", leaves)] if leaves else []
    for k in sorted((k for k, v in tree.items() if isinstance(v, Mapping)), key=natural_key):
        out += _flax_modules(tree[k], f"{prefix}{k}/")
    return out


def _from_flax(where, tree: Mapping, notes: list) -> list[_Layer]:
    if "batch_stats" in tree:
        raise _unsupported(where, "batch_stats", "a BatchNorm collection")
    if "params" in tree and isinstance(tree["params"], Mapping):
        tree = tree["params"]
    mods = _flax_modules(tree)
    if not mods:
        raise SourceError(f"{where}: the params pytree holds no arrays")
    return [_classify_module(where, m, p, "in_out", "Flax kernels are (in, out)", notes,
                             "keras", _FLAX_CONV, "flax") for m, p in mods]


# --------------------------------------------------------------------------- torch modules
_TORCH_FREE = ("Flatten", "Identity", "Dropout", "Dropout1d", "Dropout2d", "AlphaDropout", "ReLU",
               "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Tanh",
               "Hardtanh", "Sigmoid", "Hardsigmoid", "Hardswish", "Softplus", "Softsign",
               "Tanhshrink", "Softmax", "LogSoftmax")
_FX_FUNCS = {"flatten", "relu", "relu6", "tanh", "sigmoid", "gelu", "silu", "elu", "selu",
             "leaky_relu", "hardtanh", "softplus", "softmax", "log_softmax", "dropout", "mish",
             "reshape", "view", "contiguous", "size", "getattr", "identity"}


def _torch_leaves(model) -> tuple[list[tuple[str, Any]], bool]:
    """Leaf modules in execution order → ``(leaves, traced)``.

    With torch.fx the forward is traced and must be a chain (each op consumes the previous
    op's output only: a residual add or a concatenation is rejected); an untraceable forward
    falls back to registration order (``traced=False``).
    """
    import torch  # pylint: disable=import-outside-toplevel
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception:  # pylint: disable=broad-except
        return [(n, m) for n, m in model.named_modules() if not list(m.children())], False
    mods = dict(model.named_modules())
    out, last, used, shape_nodes = [], None, set(), set()
    for node in gm.graph.nodes:
        fname = str(getattr(node.target, "__name__", node.target)).strip("_")
        if node.op == "placeholder":
            if last is not None:
                raise _unsupported("nn.Module", node.name, "a second network input")
            last = node
            continue
        if node.op == "output":
            continue
        if node.op == "get_attr":
            raise _unsupported("nn.Module", str(node.target), "a tensor used directly in forward()")
        if (node.op == "call_method" and node.target == "size") or \
                (fname in ("getattr", "getitem") and (node.args[0] in shape_nodes or
                                                      node.args[1:] == ("shape",))):
            shape_nodes.add(node)
            continue
        tensors = [a for a in node.all_input_nodes if a not in shape_nodes]
        if tensors != [last]:
            raise _unsupported("nn.Module", node.name,
                               f"'{fname}' combining several tensors (a residual/skip connection "
                               "or a branch)")
        if node.op == "call_module":
            if node.target in used:
                raise _unsupported("nn.Module", node.target, "called twice (shared weights)")
            used.add(node.target)
            out.append((node.target, mods[node.target]))
        elif fname.lower() not in _FX_FUNCS:
            raise _unsupported("nn.Module", node.name, f"the operation '{fname}' in forward()")
        elif fname in ("flatten", "reshape", "view"):
            out.append((node.name, torch.nn.Flatten()))
        last = node
    return out, True


def _from_torch_module(model, where, notes: list) -> list[_Layer]:
    import torch  # pylint: disable=import-outside-toplevel
    layers, spatial, flat = [], False, True
    leaves, traced = _torch_leaves(model)
    if not traced:
        notes.append("forward() is not traceable by torch.fx: layers taken in registration "
                     "order (a skip connection in forward() cannot be seen)")
        flat = None
    for name, m in leaves:
        cls = type(m).__name__
        if isinstance(m, torch.nn.Linear):
            if spatial and flat is False:
                raise SourceError(f"{where}: layer '{name}' (Linear) follows a convolution without a "
                                  "Flatten; a Linear on a spatial tensor acts on its last axis only "
                                  "and is not a map between flattened spin layers")
            layers.append(_dense(name, m.weight, m.bias, "out_in",
                                 "torch.nn.Linear.weight is (out, in)", where, notes))
        elif isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d)) and cls in ("Conv1d", "Conv2d"):
            if m.padding_mode != "zeros":
                raise _unsupported(where, name, f"a convolution with padding_mode={m.padding_mode!r}")
            opts = {"stride": tuple(m.stride), "padding": m.padding if isinstance(m.padding, str)
                    else tuple(m.padding), "dilation": tuple(m.dilation), "groups": m.groups}
            layers.append(_convl(name, m.weight, m.bias, "torch",
                                 "torch.nn.Conv weight is (C_out, C_in, *k)", where, notes, opts,
                                 assumed=False))
            spatial, flat = True, (False if flat is not None else None)
        elif cls == "Flatten" or cls in _TORCH_FREE:
            if cls == "Flatten" and flat is not None:
                flat = True
            continue
        elif isinstance(m, (torch.nn.Sequential, torch.nn.ModuleList)):
            continue
        else:
            what = ("a pooling layer" if "Pool" in cls else "a normalization layer" if "Norm" in cls else
                    "attention" if "Attention" in cls else "an embedding" if "Embedding" in cls
                    else f"a {cls} module")
            raise _unsupported(where, name, what)
    if leaves:
        for name, m in model.named_modules():
            if list(m.children()) and list(m.named_parameters(recurse=False)):
                raise _unsupported(where, name or "<root>", "a module with its own parameters "
                                   f"besides its children ({type(m).__name__})")
    return layers


# --------------------------------------------------------------------------- files
def _meta_of(d: Mapping[str, Any]) -> dict:
    out = {}
    for key, aliases in (("step", ("step", "global_step", "iteration", "iter")),
                         ("epoch", ("t", "epoch")), ("train_loss", ("train_loss", "loss")),
                         ("val_error", ("val_error",))):
        for a in aliases:
            if a in d and d[a] is not None:
                try:
                    out[key] = float(np.asarray(d[a]).reshape(()))
                except (TypeError, ValueError):
                    continue
                break
    return out


def _layout_from_meta(md: Mapping[str, str]) -> str | None:
    lay = str(md.get("layout", "")).replace("-", "_").replace(",", "_").replace(" ", "").lower()
    if lay in ("in_out", "(in_out)", "inout"):
        return "in_out"
    if lay in ("out_in", "(out_in)", "outin"):
        return "out_in"
    fmt = str(md.get("format", "")).lower()
    if fmt in ("flax", "jax", "tf", "tensorflow", "keras", "np_in_out"):
        return "in_out"
    return None


def _read_safetensors(path, layout, notes) -> _Snapshot:
    try:
        from safetensors import safe_open  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise SourceError(f"{path}: reading .safetensors needs the 'safetensors' package "
                          "(pip install safetensors)") from e
    try:
        with safe_open(path, framework="np") as f:
            md = dict(f.metadata() or {})
            flat = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # pylint: disable=broad-except
        raise SourceError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from e
    if layout is not None:
        lay, why = layout, f"layout={layout!r} given"
    elif _layout_from_meta(md):
        lay = _layout_from_meta(md)
        why = f"file metadata {({k: md[k] for k in ('layout', 'format') if k in md})}"
    else:
        lay, why = "out_in", "safetensors default: PyTorch convention, weight is (out, in)"
    layers = _from_state_dict(path, flat, lay, why, notes, order="natural")
    return _Snapshot(layers, _meta_of(md), "safetensors", path, notes=notes)


_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights", "params")


def _is_tensor_map(d) -> bool:
    return isinstance(d, Mapping) and d and all(type(v).__module__.startswith("torch") or
                                                isinstance(v, np.ndarray) for v in d.values())


def _read_torch(path, layout, notes) -> _Snapshot:
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise SourceError(f"{path}: reading {os.path.splitext(path)[1]} files needs PyTorch") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pylint: disable=broad-except
        if zipfile.is_zipfile(path) or _head(path, 2) == b"\x80\x02":
            raise SourceError(
                f"{path}: torch.load(weights_only=True) refused it ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:200]}); save model.state_dict() instead of the whole "
                "module or custom objects") from e
        raise SourceError(f"{path}: not a PyTorch file ({type(e).__name__})") from e
    meta = {}
    if isinstance(obj, Mapping) and not _is_tensor_map(obj):
        meta = _meta_of(obj)
        inner = [obj[k] for k in _STATE_KEYS if k in obj and _is_tensor_map(obj[k])]
        if not inner:
            raise SourceError(f"{path}: a dict without a state_dict (keys {sorted(obj)[:10]}); "
                              f"expected a state_dict or a dict holding one under {_STATE_KEYS}")
        obj = inner[0]
    if not _is_tensor_map(obj):
        raise SourceError(f"{path}: holds a {type(obj).__name__}, not a state_dict")
    _check_claim(path, layout, "out_in", "PyTorch weight tensors are (out, in)")
    layers = _from_state_dict(path, obj, "out_in", "PyTorch state_dict: weight is (out, in)", notes)
    return _Snapshot(layers, meta, "torch", path, notes=notes)


def _check_claim(where, layout, fixed, why):
    if layout is not None and layout != fixed:
        raise SourceError(f"{where}: layout={layout!r} contradicts the format's own convention "
                          f"({why}); drop layout= (it only applies to formats without one)")


_KERAS_FREE = {"InputLayer", "Flatten", "Dropout", "Activation", "ReLU", "LeakyReLU", "ELU",
               "Softmax", "PReLU", "GaussianNoise", "GaussianDropout", "SpatialDropout1D",
               "SpatialDropout2D", "Identity"}


def _keras_input_shape(layer_cfg, cfg) -> tuple | None:
    for d in (layer_cfg.get("build_config", {}), layer_cfg.get("config", {})):
        for k in ("input_shape", "batch_input_shape", "batch_shape"):
            if d.get(k):
                return tuple(int(x) for x in d[k][1:])
    return None


def _keras_layers_cfg(cfg: dict, where) -> list[dict]:
    cls = cfg.get("class_name")
    if cls not in ("Sequential", "Functional", "Model"):
        raise SourceError(f"{where}: Keras model class {cls!r}; only Sequential and Functional "
                          "models with a chain of layers are supported")
    return cfg["config"]["layers"]


def _keras_snake(cls: str) -> str:
    s = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", cls)
    return re.sub("([a-z])([A-Z])", r"\1_\2", re.sub(r"\W+", "", s)).lower()


def _from_keras(where, cfg: dict | None, get_vars, group_names, notes,
                keras3: bool = False) -> list[_Layer]:
    """Keras layers in config order; ``get_vars(name)`` → list of arrays ``[kernel, bias?]``.

    Keras 3 weight files name each layer's group by its class in snake case with a per-class
    counter in model order (``dense``, ``dense_1``, …), not by the layer's name; legacy
    ``.h5`` files use the layer names.
    """
    layers, pending_input, counts = [], None, {}
    if cfg is None:
        names = sorted(group_names, key=natural_key) if keras3 else list(group_names)
        for n in names:
            vs = get_vars(n)
            if not vs:
                continue
            k, b = vs[0], (vs[1] if len(vs) > 1 else None)
            if len(vs) > 2 or np.ndim(k) < 2:
                raise _unsupported(where, n, f"a layer with {len(vs)} variables of shapes "
                                   f"{[np.shape(v) for v in vs]} (not Dense/Conv)")
            if np.ndim(k) == 2:
                layers.append(_dense(n, k, b, "in_out", "Keras Dense kernel is (in, out)", where, notes))
            else:
                layers.append(_convl(n, k, b, "keras", "Keras Conv kernel is (*k, C_in, C_out)",
                                     where, notes, {"stride": 1, "padding": "valid", "dilation": 1,
                                                    "groups": 1}, assumed=True))
        notes.append("no model config in the file: layers in " + (
            "natural-sort order of their group names" if keras3 else "the file's layer_names order")
            + ", conv hyperparameters assumed")
        return layers
    flat = True
    for lc in _keras_layers_cfg(cfg, where):
        cls, c = lc.get("class_name"), lc.get("config", {})
        name = c.get("name", cls)
        base = _keras_snake(str(cls))
        key = base if not counts.get(base) else f"{base}_{counts[base]}"
        counts[base] = counts.get(base, 0) + 1
        key = key if keras3 else name
        if cls == "InputLayer":
            pending_input = _keras_input_shape(lc, cfg)
            continue
        if lc.get("inbound_nodes") and len(json.dumps(lc["inbound_nodes"]).split("keras_history")) > 2:
            raise _unsupported(where, name, "a layer with several inputs (residual/merge)")
        if cls in _KERAS_FREE:
            if cls == "Flatten":
                flat = True
            continue
        vs = get_vars(key)
        if cls in ("Dense", "Conv1D", "Conv2D") and not vs:
            raise SourceError(f"{where}: no weights stored for {cls} layer '{name}' (group '{key}')")
        if cls == "Dense":
            if not flat:
                raise SourceError(f"{where}: layer '{name}' (Dense) follows a convolution without "
                                  "Flatten; Keras Dense on a spatial tensor acts on its last axis only")
            layers.append(_dense(name, vs[0], vs[1] if c.get("use_bias", True) and len(vs) > 1
                                 else None, "in_out", "Keras Dense kernel is (in, out)", where, notes))
        elif cls in ("Conv1D", "Conv2D"):
            ch = "first" if c.get("data_format") == "channels_first" else "last"
            tup = lambda v: int(v) if np.ndim(v) == 0 else tuple(int(x) for x in v)
            opts = {"stride": tup(c.get("strides", 1)), "padding": c.get("padding", "valid"),
                    "dilation": tup(c.get("dilation_rate", 1)), "groups": int(c.get("groups", 1)),
                    "channels": ch}
            shp = _keras_input_shape(lc, cfg) or pending_input
            layers.append(_convl(name, vs[0], vs[1] if c.get("use_bias", True) and len(vs) > 1
                                 else None, "keras", "Keras Conv kernel is (*k, C_in, C_out)",
                                 where, notes, opts, assumed=False,
                                 input_shape=shp if not layers else None))
            flat = False
        else:
            what = ("a pooling layer" if "Pool" in cls else "a normalization layer" if "Normalization" in cls else
                    "attention" if "Attention" in cls else "an embedding" if cls == "Embedding" else
                    "a merge (residual) layer" if cls in ("Add", "Concatenate", "Multiply") else
                    f"a Keras {cls} layer")
            raise _unsupported(where, name, what)
        pending_input = None
    return layers


def _h5_vars_keras3(f):
    root = f["layers"] if "layers" in f else f.get("_layer_checkpoint_dependencies")

    def get(name):
        if root is None or name not in root or "vars" not in root[name]:
            return []
        v = root[name]["vars"]
        return [np.asarray(v[k]) for k in sorted(v.keys(), key=int)]
    return get, (list(root.keys()) if root is not None else [])


def _h5_vars_legacy(g):
    def get(name):
        if name not in g:
            return []
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in g[name].attrs.get("weight_names", [])]
        return [np.asarray(g[name][n]) for n in names]
    return get, [n.decode() if isinstance(n, bytes) else str(n) for n in g.attrs.get("layer_names", [])]


def _read_keras(path, layout, notes) -> _Snapshot:
    try:
        import h5py  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise SourceError(f"{path}: reading Keras files needs h5py (pip install h5py)") from e
    _check_claim(path, layout, "in_out", "Keras kernels are (in, out)")
    cfg, fmt = None, "keras-h5"
    try:
        if path.endswith(".keras"):
            if not zipfile.is_zipfile(path):
                raise SourceError(f"{path}: not a .keras archive (no zip file)")
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                if "model.weights.h5" not in names:
                    raise SourceError(f"{path}: .keras archive without model.weights.h5 (has {names})")
                cfg = json.loads(z.read("config.json")) if "config.json" in names else None
                data = io.BytesIO(z.read("model.weights.h5"))
            fmt = "keras"
            f = h5py.File(data, "r")
        else:
            f = h5py.File(path, "r")
    except OSError as e:
        raise SourceError(f"{path}: not an HDF5 file ({e})") from e
    with f:
        keras3 = False
        if "model_weights" in f:                       # legacy full-model .h5
            cfg = json.loads(f.attrs["model_config"]) if "model_config" in f.attrs else None
            get, groups = _h5_vars_legacy(f["model_weights"])
        elif "layer_names" in f.attrs:                 # Keras 2 save_weights
            get, groups = _h5_vars_legacy(f)
        elif "layers" in f or "_layer_checkpoint_dependencies" in f:   # Keras 3 weights
            get, groups = _h5_vars_keras3(f)
            keras3 = True
        else:
            raise SourceError(f"{path}: HDF5 file without Keras weights (top-level keys "
                              f"{list(f.keys())[:10]}); expected a Keras model or weights file")
        layers = _from_keras(path, cfg, get, groups, notes, keras3=keras3)
    return _Snapshot(layers, {}, fmt, path, config={"keras": cfg} if cfg else {}, notes=notes)


def _head(path, n=8) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


_NPZ_META = {"step", "epoch", "t", "train_loss", "val_error", "__layout__"}


def _read_npz(path, layout, notes) -> _Snapshot:
    head = _head(path, 6)
    if head.startswith(b"\x93NUMPY"):
        raise SourceError(f"{path}: a single .npy array saved under a .npz name; save the weights "
                          "with np.savez(path, **{'fc1.weight': ...}) (see docs/sources.md)")
    if not head.startswith(b"PK"):
        raise SourceError(f"{path}: not an .npz (zip) file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # pylint: disable=broad-except
        raise SourceError(f"{path}: unreadable .npz ({type(e).__name__}: {e})") from e
    if "__meta__" in arrays:
        try:
            params, meta = load_checkpoint(path)
        except CheckpointError as e:
            raise SourceError(str(e)) from e
        _check_claim(path, layout, "in_out", "tapjax checkpoints hold Flax kernels (in, out)")
        layers = _from_flax(path, params, notes)
        return _Snapshot(layers, _meta_of(meta), "tapjax-checkpoint", path,
                         config=meta.get("config", {}), notes=notes)
    meta = _meta_of({k: v for k, v in arrays.items() if k in _NPZ_META and v.ndim == 0})
    file_layout = str(arrays["__layout__"]) if "__layout__" in arrays else None
    w = {k: v for k, v in arrays.items() if k not in _NPZ_META}
    if not w:
        raise SourceError(f"{path}: .npz holds no weight arrays")
    named = all(re.search(r"[./](weight|kernel|bias)$", k) for k in w)
    if named:
        if layout is not None:
            lay, why = layout, f"layout={layout!r} given"
        elif file_layout:
            lay, why = file_layout, f"__layout__={file_layout!r} in the file"
        else:
            lay, why = "out_in", "'.weight' keys follow PyTorch: (out, in)"
        layers = _from_state_dict(path, w, lay, why, notes, order="natural")
        return _Snapshot(layers, meta, "npz", path, notes=notes)
    lay = layout or file_layout
    if lay not in ("in_out", "out_in"):
        raise SourceError(
            f"{path}: plain .npz arrays {sorted(w)[:6]}: their layout is unknown; pass "
            "layout='in_out' or 'out_in', store __layout__, or name keys '<layer>.weight' "
            "(PyTorch (out, in)) / '<layer>/kernel' (Flax (in, out)) with '.bias'/'/bias'")
    why = f"layout={layout!r} given" if layout else f"__layout__={file_layout!r} in the file"
    layers = []
    for k in sorted(w, key=natural_key):
        if w[k].ndim != 2:
            raise SourceError(f"{path}: array '{k}' has shape {w[k].shape}; plain .npz entries must "
                              "be 2-D weight matrices (name biases '<layer>.bias' with "
                              "'<layer>.weight' keys)")
        layers.append(_dense(k, w[k], None, lay, why, path, notes))
    return _Snapshot(layers, meta, "npz", path, notes=notes)


_READERS = {".safetensors": _read_safetensors, ".pt": _read_torch, ".pth": _read_torch,
            ".bin": _read_torch, ".keras": _read_keras, ".h5": _read_keras, ".hdf5": _read_keras,
            ".npz": _read_npz}


def _read_file(path: str, layout) -> _Snapshot:
    if not os.path.exists(path):
        raise SourceError(f"{path}: file not found")
    ext = os.path.splitext(path)[1].lower()
    if ext not in _READERS:
        raise SourceError(f"{path}: unknown extension {ext!r}; supported: {', '.join(EXTENSIONS)}, "
                          "a directory of those, or a tapjax run directory")
    return _READERS[ext](path, layout, [])


# --------------------------------------------------------------------------- in-memory objects
def _is_torch_module(x) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.nn.Module)


def _read_object(src, layout, name) -> _Snapshot:
    where = name or type(src).__name__
    notes: list = []
    if _is_torch_module(src):
        _check_claim(where, layout, "out_in", "torch.nn.Linear.weight is (out, in)")
        return _Snapshot(_from_torch_module(src, where, notes), {}, "torch-module", where,
                         config={"module": type(src).__name__}, notes=notes)
    if hasattr(src, "coefs_") or type(src).__name__ in ("MLPClassifier", "MLPRegressor"):
        if not hasattr(src, "coefs_"):
            raise SourceError(f"{where}: scikit-learn model is not fitted (no coefs_); call fit() first")
        _check_claim(where, layout, "in_out", "scikit-learn coefs_ are (in, out)")
        layers = [_dense(f"coefs_[{i}]", w, b, "in_out", "scikit-learn coefs_ are (in, out)",
                         where, notes) for i, (w, b) in enumerate(zip(src.coefs_, src.intercepts_))]
        meta = {"step": float(getattr(src, "n_iter_", 0)), "epoch": float(getattr(src, "n_iter_", 0))}
        if getattr(src, "loss_", None) is not None:
            meta["train_loss"] = float(src.loss_)
        return _Snapshot(layers, meta, "sklearn", where,
                         config={"estimator": type(src).__name__,
                                 "activation": getattr(src, "activation", None)}, notes=notes)
    if isinstance(src, Mapping):
        if not src:
            raise SourceError(f"{where}: empty mapping: no weights")
        leaves = list(src.values())
        if all(type(v).__module__.startswith("torch") for v in leaves):
            where = name or "state_dict"
            _check_claim(where, layout, "out_in", "PyTorch weight tensors are (out, in)")
            return _Snapshot(_from_state_dict(where, src, "out_in",
                                              "PyTorch state_dict: weight is (out, in)", notes),
                             {}, "torch-state-dict", where, notes=notes)
        if not any(isinstance(v, Mapping) for v in leaves) and all(
                re.search(r"\.(weight|bias)$", str(k)) for k in src):
            lay = layout or "out_in"
            why = f"layout={layout!r} given" if layout else "'.weight' keys follow PyTorch: (out, in)"
            return _Snapshot(_from_state_dict(where, src, lay, why, notes), {}, "state-dict",
                             where, notes=notes)
        _check_claim(where, layout, "in_out", "Flax kernels are (in, out)")
        return _Snapshot(_from_flax(where, src, notes), {}, "flax", where, notes=notes)
    if hasattr(src, "weights") and type(src).__name__ == "LayeredCouplings":
        src = list(src.weights)
    if isinstance(src, (list, tuple)):
        if not src:
            raise SourceError(f"{where}: empty list: no weights")
        lay = layout or "in_out"
        why = f"layout={layout!r} given" if layout else "list of arrays: tapjax layout (in, out) by default"
        layers = []
        for i, w in enumerate(src):
            if np.ndim(w) != 2:
                raise SourceError(f"{where}: entry {i} has shape {np.shape(w)}; a list must hold 2-D "
                                  "weight matrices (pass a conv net as an nn.Module, Flax params or file)")
            layers.append(_dense(f"W{i + 1}", w, None, lay, why, where, notes))
        return _Snapshot(layers, {}, "arrays", where, notes=notes)
    raise SourceError(f"{where}: cannot read a {type(src).__name__}; supported sources: a list of "
                      "arrays, Flax params, a torch nn.Module or state_dict, a scikit-learn MLP, a "
                      f"file ({', '.join(EXTENSIONS)}), a directory or a list of files")


# --------------------------------------------------------------------------- assembly
def _spatial_from(shape, d, kernel_layout, channels, c_in, where, lname):
    shape = tuple(int(s) for s in shape)
    if len(shape) == d:
        return shape
    if len(shape) == d + 1:
        c, sp = (shape[0], shape[1:]) if channels == "first" else (shape[-1], shape[:-1])
        if c != c_in:
            raise SourceError(f"{where}: input_shape={shape} has {c} channels but layer '{lname}' "
                              f"expects {c_in} (order {'(C, H, W)' if channels == 'first' else '(H, W, C)'})")
        return sp
    raise SourceError(f"{where}: input_shape={shape} does not fit the {d}-D convolution '{lname}'")


def _assemble(snap: _Snapshot, input_shape, conv_opts, max_bytes):
    conv = conv_opts
    where = snap.path
    if not snap.layers:
        raise SourceError(f"{where}: no weight layers found ({snap.fmt})")
    blocks, biases, infos, geom = [], [], [], None
    for i, L in enumerate(snap.layers):
        info = {"name": L.name, "kind": L.kind, "source_shape": list(L.source_shape),
                "layout": L.layout, "layout_rule": L.why}
        if L.kind == "conv":
            opts = dict(L.conv)
            user = (conv_opts or {}).get(L.name)
            if user:
                opts.update(user)
            k = _conv.torch_kernel(L.weight, L.layout)
            d = k.ndim - 2
            channels = opts.pop("channels", "first" if L.layout == "torch" else "last")
            if geom is not None and geom.channels == channels and len(geom.out_spatial) == d:
                spatial = geom.out_spatial
            elif i == 0 and (input_shape is not None or L.input_shape is not None):
                spatial = _spatial_from(input_shape if input_shape is not None else L.input_shape,
                                        d, L.layout, channels, k.shape[1] * int(opts.get("groups", 1)),
                                        where, L.name)
            else:
                raise SourceError(
                    f"{where}: layer '{L.name}' is a convolution whose input spatial size is not "
                    "stored in the source; pass input_shape=(C, H, W) (PyTorch) or (H, W, C) "
                    "(Keras/Flax), or just (H, W), for the network input"
                    + ("" if i == 0 else " (a conv after a dense layer needs a reshape, which is not supported)"))
            try:
                w, geom = _conv.conv_coupling(k, spatial, channels=channels, max_bytes=max_bytes,
                                              name=f"{where}: layer '{L.name}'", **opts)
            except _conv.ConvSizeError as e:
                raise SourceError(str(e)) from e
            except (ValueError, TypeError) as e:
                raise SourceError(f"{where}: layer '{L.name}': {e}") from e
            b = None if L.bias is None else _conv.conv_bias(L.bias, geom)
            info.update(conv=geom.as_dict(), conv_assumed=bool(L.conv_assumed and not user))
        else:
            w, b = L.weight, L.bias
            geom = None
        if b is not None and b.shape[0] != w.shape[1]:
            raise SourceError(f"{where}: layer '{L.name}' bias has {b.shape[0]} entries but the layer "
                              f"has {w.shape[1]} outputs")
        if blocks and blocks[-1].shape[1] != w.shape[0]:
            prev = snap.layers[i - 1]
            n_out, n_in = blocks[-1].shape[1], w.shape[0]
            flipped = (L.kind == "dense" and prev.kind == "dense"
                       and blocks[-1].shape[0] == w.shape[1])
            if L.kind == "dense" and (w.shape[1] == n_out or flipped):
                cause = (f"the weights look transposed: this source's rule is {L.layout} "
                         f"({L.why}); if the file was written with the other convention pass "
                         f"layout={'in_out' if L.layout == 'out_in' else 'out_in'!r}")
            elif prev.kind == "conv" and prev.conv_assumed and not (conv or {}).get(prev.name):
                cause = (f"the stride/padding of conv layer '{prev.name}' are not stored in this "
                         f"source and were assumed ({prev.conv}); pass conv={{'{prev.name}': "
                         "{'stride': ..., 'padding': ...}} (or a layer in between is not read)")
            else:
                cause = ("a layer between them that tapjax does not read (pooling, a reshape "
                         "that changes the size, concatenation) or a different layer order")
            raise SourceError(f"{where}: layer '{L.name}' takes {n_in} inputs but layer "
                              f"'{prev.name}' gives {n_out} outputs (blocks {blocks[-1].shape} "
                              f"and {w.shape}); likely cause: {cause}")
        info["block_shape"] = list(w.shape)
        info["bias"] = b is not None
        blocks.append(w)
        biases.append(b)
        infos.append(info)
    return blocks, biases, infos


# --------------------------------------------------------------------------- series
_PREFERRED = ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth", "model.keras",
              "model.h5", "model.weights.h5", "model.npz")
_NOT_WEIGHTS = ("optimizer", "scheduler", "rng_state", "training_args", "scaler")


def _dir_files(path: str) -> list[str]:
    files = [os.path.join(path, f) for f in os.listdir(path)
             if not f.startswith(".") and os.path.splitext(f)[1].lower() in EXTENSIONS
             and os.path.isfile(os.path.join(path, f))]
    if files:
        return files
    for sub in sorted(os.listdir(path), key=natural_key):   # e.g. checkpoint-500/model.safetensors
        p = os.path.join(path, sub)
        if os.path.isdir(p):
            inner = [f for f in os.listdir(p) if os.path.splitext(f)[1].lower() in EXTENSIONS
                     and not f.startswith(_NOT_WEIGHTS)]
            preferred = [f for f in _PREFERRED if f in inner]
            inner = preferred[:1] or inner
            if len(inner) > 1:
                raise SourceError(f"{p}: several weight files {sorted(inner)}; pass a list of files")
            files += [os.path.join(p, f) for f in inner]
    if not files:
        raise SourceError(f"{path}: directory holds no weight files ({', '.join(EXTENSIONS)}) and no "
                          "checkpoints/ folder of a tapjax run")
    return files


def _order(snaps: list[_Snapshot]) -> tuple[list[_Snapshot], str, np.ndarray, np.ndarray]:
    """Order snapshots by metadata step/epoch, else by the number in the file name."""
    n = len(snaps)
    if n == 1:
        m = snaps[0].meta
        step, ep = m.get("step", 0.0), m.get("epoch")
        return snaps, "single snapshot", np.array([ep if ep is not None else step], float), \
            np.array([int(step)])
    for key in ("step", "epoch"):
        if all(key in s.meta for s in snaps):
            snaps = sorted(snaps, key=lambda s: s.meta[key])
            vals = [s.meta[key] for s in snaps]
            if len(set(vals)) < n:
                raise SourceError(f"snapshots share a metadata {key}: {vals}; pass the files in order "
                                  "as a list and rename them")
            steps = np.array([int(s.meta.get("step", i)) for i, s in enumerate(snaps)])
            if all("epoch" in s.meta for s in snaps):
                t, tnote = np.array([s.meta["epoch"] for s in snaps], float), "t is the metadata epoch"
            else:
                t, tnote = steps.astype(float), "t is the metadata step (no epoch stored)"
            return snaps, f"ordered by the metadata {key!r}; {tnote}", t, steps
    snaps = sorted(snaps, key=lambda s: natural_key(s.path))   # also orders checkpoint-N/ dirs
    nums = [re.findall(r"\d+", os.path.basename(s.path))
            or re.findall(r"\d+", os.path.basename(os.path.dirname(s.path))) for s in snaps]
    if all(nums):
        steps = np.array([int(x[-1]) for x in nums])
        if len(set(steps.tolist())) == n:
            return snaps, ("no step/epoch metadata in every file: ordered by the file name (natural "
                           "sort); step and t are the last number in each name (or in its folder's name)"), steps.astype(float), steps
    return snaps, ("no step/epoch metadata and no number in every file name: natural sort of the "
                   "names; t and step are the snapshot index"), np.arange(n, float), np.arange(n)


def _series(snaps: list[_Snapshot], *, input_shape, conv, max_bytes, name, layout,
            source_desc: str) -> RunHistory:
    snaps, time_rule, t, steps = _order(snaps)
    assembled = [_assemble(s, input_shape, conv, max_bytes) for s in snaps]
    first_shapes = [b.shape for b in assembled[0][0]]
    for s, (blocks, _, _) in zip(snaps, assembled):
        shapes = [b.shape for b in blocks]
        if shapes != first_shapes:
            raise SourceError(f"{s.path}: block shapes {shapes} differ from the series' first "
                              f"snapshot {snaps[0].path} {first_shapes}")
    L = len(first_shapes)
    weights = []
    for k in range(L):
        stack = [a[0][k] for a in assembled]
        dt = np.float64 if all(x.dtype == np.float64 for x in stack) else np.float32
        weights.append(np.stack([x.astype(dt, copy=False) for x in stack]))
    biases = []
    for k in range(L):
        bs = [a[1][k] for a in assembled]
        biases.append(None if any(b is None for b in bs) else np.stack(bs))
    infos = assembled[0][2]
    names = tuple(i["name"] for i in infos)
    n_bias = sum(b is not None for b in biases)
    bias_layers = [names[k] for k in range(L) if biases[k] is not None]
    label = name or source_desc
    if n_bias:
        warnings.warn(f"tapjax.sources: {label}: {n_bias} bias vector(s) ({', '.join(bias_layers)}) "
                      "dropped from the spin model (kept in RunHistory.biases; TAP ignores them)",
                      BiasWarning, stacklevel=_caller_stacklevel())
    assumed = [i["name"] for i in infos if i.get("conv_assumed")]
    if assumed:
        warnings.warn(f"tapjax.sources: {label}: stride/padding of conv layer(s) {assumed} are not "
                      "stored in this source; framework defaults assumed (pass conv={name: "
                      "{'stride': ..., 'padding': ...}} to state them)", ConvAssumptionWarning,
                      stacklevel=_caller_stacklevel())
    notes = [n for s in snaps for n in s.notes]
    layouts = sorted({(i["layout"], i["layout_rule"]) for i in infos})
    info = {
        "format": snaps[0].fmt, "source": source_desc, "name": name,
        "layout": {"stored": [l for l, _ in layouts], "rule": [r for _, r in layouts],
                   "claimed": layout, "note": "blocks are returned (in, out) = (N_{k-1}, N_k)"},
        "biases": {"dropped_from_spin_model": n_bias, "layers": bias_layers,
                   "kept_in": "RunHistory.biases", "without_bias": L - n_bias},
        "time": time_rule, "layers": infos,
        "sizes": [int(first_shapes[0][0]), *(int(s[1]) for s in first_shapes)],
        "dtype": sorted(set(n for n in notes if "converted" in n)),
        "notes": sorted(set(n for n in notes if "converted" not in n)),
    }
    meta = [s.meta for s in snaps]
    f = lambda key: np.array([m.get(key, np.nan) for m in meta], float)
    config = dict(snaps[-1].config)
    return RunHistory(t=t, step=steps, train_loss=f("train_loss"), val_error=f("val_error"),
                      weights=tuple(weights), config=config, paths=tuple(s.path for s in snaps),
                      layer_names=names, biases=tuple(biases), info=info)


def _tapjax_run(path: str, name) -> RunHistory:
    try:
        h = load_run(path)
    except CheckpointError as e:
        raise SourceError(str(e)) from e
    n = len(h.weights)
    info = {"format": "tapjax-run", "source": path, "name": name,
            "layout": {"stored": ["in_out"], "rule": ["tapjax checkpoints hold Flax kernels (in, out)"],
                       "claimed": None, "note": "blocks are returned (in, out) = (N_{k-1}, N_k)"},
            "biases": {"dropped_from_spin_model": 0, "layers": [], "kept_in": "RunHistory.biases",
                       "without_bias": n},
            "time": "ordered by checkpoint step (tapjax.checkpoints.load_run)",
            "layers": [{"name": f"layer{k + 1}", "kind": "dense",
                        "block_shape": list(h.weights[k].shape[1:])} for k in range(n)],
            "sizes": [int(h.weights[0].shape[1]), *(int(w.shape[2]) for w in h.weights)]}
    return dataclasses.replace(h, layer_names=tuple(f"layer{k + 1}" for k in range(n)),
                               biases=(None,) * n, info=info)


def _is_pathlike(x) -> bool:
    return isinstance(x, (str, os.PathLike))


def load_series(source, *, layout: Layout | None = None, name: str | None = None,
                input_shape: Sequence[int] | None = None, conv: Mapping[str, Mapping] | None = None,
                max_bytes: int = _conv.DEFAULT_MAX_BYTES) -> RunHistory:
    r"""Any network source (or a time series of snapshots) → :class:`RunHistory` of couplings.

    Args:
      source: a list/tuple of 2-D arrays (one snapshot, ``(in, out)`` unless ``layout``), a
        Flax params pytree (``{"params": ...}`` or bare; modules in natural-sort order), a torch
        ``nn.Module`` or state_dict, a fitted scikit-learn ``MLPClassifier``/``MLPRegressor``, a
        file path (``.safetensors``, ``.pt``/``.pth``/``.bin``, ``.keras``/``.h5``, ``.npz`` incl.
        tapjax checkpoints), a directory of such files or a list of paths (a time series), or a
        tapjax run directory (with ``checkpoints/``), or a list of in-memory snapshots (state
        dicts, Flax params, modules: a series in list order unless they carry a step).
      layout: ``"in_out"`` or ``"out_in"`` for formats without a fixed convention (lists of
        arrays, ``.safetensors``, ``.npz``); contradicting a format's own convention (PyTorch,
        Keras, Flax, scikit-learn) raises :class:`SourceError`.
      name: label used in messages and ``info["name"]``.
      input_shape: per-sample network input shape, needed when the first layer is a
        convolution whose source does not store it: ``(C, H, W)`` for PyTorch, ``(H, W, C)`` for
        Keras/Flax, or just ``(H, W)`` / ``(L,)``.
      conv: per conv layer name, hyperparameters the source does not store
        (``{"conv1": {"stride": 2, "padding": 1}}``; state dicts and Flax params hold only kernels).
      max_bytes: size guard of each dense conv block (:func:`tapjax.conv.conv_coupling`).

    Returns:
      :class:`RunHistory` with ``weights[k]`` of shape ``(T, N_{k-1}, N_k)``, ``biases``,
      ``layer_names`` and ``info`` (format, layout rule, bias count, time ordering, per-layer
      source names/shapes and conv geometry).

    Raises:
      SourceError: missing/foreign file, unknown extension, unsupported layer, sizes that do not
        chain, bad dtype, empty or non-finite weights (the message names the file and layer).
    """
    if layout not in (None, "in_out", "out_in"):
        raise SourceError(f"layout={layout!r}: use 'in_out', 'out_in' or None (the format's own rule)")
    if isinstance(source, RunHistory):
        return source
    kw = dict(input_shape=input_shape, conv=conv, max_bytes=max_bytes, name=name, layout=layout)
    if _is_pathlike(source):
        path = os.fspath(source)
        if os.path.isdir(path):
            if os.path.isdir(os.path.join(path, "checkpoints")):
                _check_claim(path, layout, "in_out", "tapjax checkpoints hold Flax kernels (in, out)")
                return _tapjax_run(path, name)
            files = _dir_files(path)
            return _series([_read_file(p, layout) for p in files], source_desc=path, **kw)
        return _series([_read_file(path, layout)], source_desc=path, **kw)
    if isinstance(source, (list, tuple)) and source and all(_is_pathlike(s) for s in source):
        return _series([_read_file(os.fspath(p), layout) for p in source],
                       source_desc=f"{len(source)} files", **kw)
    if isinstance(source, (list, tuple)) and source and all(np.ndim(w) == 3 for w in source) \
            and not any(isinstance(w, Mapping) for w in source):
        stacks = [np.asarray(w) if not type(w).__module__.startswith("torch") else w for w in source]
        if len({np.shape(w)[0] for w in stacks}) != 1:
            raise SourceError(f"{name or 'arrays'}: 3-D arrays are (T, ·, ·) stacks and must share T")
        snaps = [_read_object([w[i] for w in stacks], layout, name) for i in range(np.shape(stacks[0])[0])]
        for i, s in enumerate(snaps):
            s.path, s.meta = f"{name or 'arrays'}[t={i}]", {"step": float(i)}
        return _series(snaps, source_desc="stacked arrays", **kw)
    if isinstance(source, (list, tuple)) and source and all(
            isinstance(s, Mapping) or _is_torch_module(s) or hasattr(s, "coefs_") for s in source):
        snaps = [_read_object(s, layout, name) for s in source]   # in-memory snapshots, in order
        for i, s in enumerate(snaps):
            s.path = f"{s.path}[{i}]"
            s.meta.setdefault("step", float(i))
        return _series(snaps, source_desc=f"{len(snaps)} in-memory snapshots", **kw)
    snap = _read_object(source, layout, name)
    return _series([snap], source_desc=snap.path, **kw)


def load_network(source, **kw) -> RunHistory:
    """One snapshot (T = 1) of any source :func:`load_series` reads; a series raises."""
    h = load_series(source, **kw)
    if len(h) != 1:
        raise SourceError(f"{h.info.get('source')}: holds {len(h)} snapshots; use load_series")
    return h


__all__ = ["BiasWarning", "ConvAssumptionWarning", "EXTENSIONS", "SourceError", "load_network",
           "load_series", "natural_key"]
