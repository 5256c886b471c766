r"""Convolutions as exact coupling blocks between flattened spin layers.

A 1-D or 2-D convolution (cross-correlation, as in PyTorch, Keras, Flax and
``jax.lax.conv_general_dilated``) is a linear map from the input activations
:math:`x_{c,\mathbf p}` (channel :math:`c`, spatial position :math:`\mathbf p`) to the output
activations

.. math::
    y_{o,\mathbf q} = \sum_{c} \sum_{\mathbf k} K_{o,c,\mathbf k}\;
                      x_{c,\; \mathbf q \odot \mathbf s - \mathbf p_{lo} + \mathbf k \odot \mathbf d},

(stride :math:`\mathbf s`, dilation :math:`\mathbf d`, zero padding :math:`\mathbf p_{lo}` in front;
terms whose input index falls in the padding vanish). Flattening both activation tensors makes it
a matrix: the coupling block :math:`W` of shape :math:`(C_{in} H W,\; C_{out} H' W')` with
``x_flat @ W == conv(x)_flat``, i.e. exactly the :math:`W^{(k)}` of eq. 1 between two spin layers
(:mod:`tapjax.spin_model`). Each entry of :math:`W` is one kernel entry or zero, so the block is
built exactly by index scatter (:func:`conv_coupling`); :func:`conv_matvec` / :func:`conv_rmatvec`
apply it matrix-free for layers too large to store.

Conventions, as each framework stores them:

* ``kernel_layout="torch"``: kernel ``(C_out, C_in/groups, *k)``; activations flattened
  channels-first (NCHW / NCL, what ``torch.flatten`` after ``nn.Conv2d`` gives).
* ``kernel_layout="keras"`` (also Flax ``nn.Conv``): kernel ``(*k, C_in/groups, C_out)``;
  activations flattened channels-last (NHWC / NLC, what ``keras.layers.Flatten`` and
  ``x.reshape(n, -1)`` in Flax give). ``channels=`` overrides the flattening order (Keras
  ``data_format="channels_first"``).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

KernelLayout = Literal["torch", "keras"]
Channels = Literal["first", "last"]

#: Default size guard for a dense conv block (bytes).
DEFAULT_MAX_BYTES = 1 << 30


class ConvSizeError(ValueError):
    """The dense coupling block of a convolution would exceed the memory limit."""


class ConvGeometry(NamedTuple):
    """Shapes of one convolution between two flattened spin layers.

    Attributes:
      c_in, c_out: channels.
      groups: feature groups (``c_in`` and ``c_out`` are multiples of it).
      kernel_size: ``(k_1, ..., k_d)``.
      in_spatial, out_spatial: ``(H, W)`` / ``(H', W')`` (``(L,)`` / ``(L',)`` in 1-D).
      stride, dilation: per spatial axis.
      pads: ``((lo_1, hi_1), ...)`` zero padding per spatial axis.
      channels: flattening order of both activation tensors, ``"first"`` (C, H, W) or
        ``"last"`` (H, W, C).
    """

    c_in: int
    c_out: int
    groups: int
    kernel_size: tuple[int, ...]
    in_spatial: tuple[int, ...]
    out_spatial: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    channels: Channels

    @property
    def in_size(self) -> int:
        """:math:`N_{k-1} = C_{in} \\prod H`."""
        return self.c_in * math.prod(self.in_spatial)

    @property
    def out_size(self) -> int:
        """:math:`N_k = C_{out} \\prod H'`."""
        return self.c_out * math.prod(self.out_spatial)

    @property
    def in_shape(self) -> tuple[int, ...]:
        """Per-sample input activation shape in the flattening order."""
        return ((self.c_in, *self.in_spatial) if self.channels == "first"
                else (*self.in_spatial, self.c_in))

    @property
    def out_shape(self) -> tuple[int, ...]:
        return ((self.c_out, *self.out_spatial) if self.channels == "first"
                else (*self.out_spatial, self.c_out))

    def as_dict(self) -> dict:
        """JSON-friendly description (for ``RunHistory.info``)."""
        return {"c_in": self.c_in, "c_out": self.c_out, "groups": self.groups,
                "kernel_size": list(self.kernel_size), "in_spatial": list(self.in_spatial),
                "out_spatial": list(self.out_spatial), "stride": list(self.stride),
                "dilation": list(self.dilation), "pads": [list(p) for p in self.pads],
                "channels": self.channels, "in_shape": list(self.in_shape),
                "out_shape": list(self.out_shape)}


def _per_axis(v, d: int, what: str) -> tuple[int, ...]:
    t = (int(v),) * d if np.ndim(v) == 0 else tuple(int(x) for x in v)
    if len(t) != d or any(x < 1 for x in t):
        raise ValueError(f"{what}={v!r}: need {d} positive integer(s) for a {d}-D convolution")
    return t


def torch_kernel(kernel, kernel_layout: KernelLayout) -> np.ndarray:
    """The kernel as ``(C_out, C_in/groups, *k)`` (PyTorch / ``lax`` OIHW order)."""
    k = np.asarray(kernel)
    if k.ndim not in (3, 4):
        raise ValueError(f"conv kernel of shape {k.shape}: need a 1-D (3 axes) or 2-D (4 axes) kernel")
    if kernel_layout == "torch":
        return k
    if kernel_layout == "keras":
        d = k.ndim - 2
        return np.transpose(k, (d + 1, d, *range(d)))
    raise ValueError(f"kernel_layout={kernel_layout!r}: use 'torch' or 'keras'")


def _pads(padding, in_spatial, ksize, stride, dilation) -> tuple[tuple[int, int], ...]:
    d = len(in_spatial)
    if isinstance(padding, str):
        p = padding.lower()
        if p == "valid":
            return ((0, 0),) * d
        if p == "same":   # TF / Flax / lax "SAME"; equals PyTorch's padding="same" for stride 1
            out = []
            for n, k, s, r in zip(in_spatial, ksize, stride, dilation):
                total = max((-(-n // s) - 1) * s + r * (k - 1) + 1 - n, 0)
                out.append((total // 2, total - total // 2))
            return tuple(out)
        if p == "causal" and d == 1:   # Keras Conv1D(padding="causal")
            return ((dilation[0] * (ksize[0] - 1), 0),)
        raise ValueError(f"padding={padding!r}: use an int, per-axis ints or (lo, hi) pairs, "
                         "'valid', 'same' (or 'causal' in 1-D); circular/reflect padding is not "
                         "a zero-padded linear map between spin layers here")
    if np.ndim(padding) == 0:
        pads = ((int(padding), int(padding)),) * d
    else:
        items = list(padding)
        if len(items) != d:
            raise ValueError(f"padding={padding!r}: need {d} entries for a {d}-D convolution")
        pads = tuple((int(x), int(x)) if np.ndim(x) == 0 else (int(x[0]), int(x[1])) for x in items)
    if any(a < 0 or b < 0 for a, b in pads):
        raise ValueError(f"padding={padding!r}: negative padding is not supported")
    return pads


def conv_geometry(kernel_shape: Sequence[int], in_spatial: Sequence[int], *, stride=1, padding=0,
                  dilation=1, groups: int = 1, channels: Channels = "first") -> ConvGeometry:
    """Geometry of a convolution with a ``(C_out, C_in/groups, *k)`` kernel on ``in_spatial``.

    Output size per axis: :math:`\\lfloor (n + lo + hi - d(k-1) - 1)/s \\rfloor + 1`.

    Raises:
      ValueError: inconsistent channels/groups, bad stride/padding/dilation, or an empty output.
    """
    kernel_shape = tuple(int(x) for x in kernel_shape)
    d = len(kernel_shape) - 2
    if d not in (1, 2):
        raise ValueError(f"conv kernel of shape {kernel_shape}: only 1-D and 2-D convolutions are supported")
    in_spatial = _per_axis(in_spatial, d, "input spatial shape")
    stride = _per_axis(stride, d, "stride")
    dilation = _per_axis(dilation, d, "dilation")
    groups = int(groups)
    c_out, c_in_g = kernel_shape[:2]
    if groups < 1 or c_out % groups:
        raise ValueError(f"groups={groups}: C_out={c_out} must be a positive multiple of groups")
    if channels not in ("first", "last"):
        raise ValueError(f"channels={channels!r}: use 'first' (C, H, W) or 'last' (H, W, C)")
    ksize = kernel_shape[2:]
    pads = _pads(padding, in_spatial, ksize, stride, dilation)
    out = tuple((n + lo + hi - r * (k - 1) - 1) // s + 1
                for n, (lo, hi), k, s, r in zip(in_spatial, pads, ksize, stride, dilation))
    if any(o < 1 for o in out):
        raise ValueError(f"convolution with kernel {ksize}, stride {stride}, dilation {dilation}, "
                         f"padding {pads} on input {in_spatial} has an empty output {out}")
    return ConvGeometry(c_in=c_in_g * groups, c_out=c_out, groups=groups, kernel_size=ksize,
                        in_spatial=in_spatial, out_spatial=out, stride=stride, dilation=dilation,
                        pads=pads, channels=channels)


def _taps(geom: ConvGeometry):
    """All valid (input position, output position, kernel offset) triples, spatially flattened."""
    per_axis = []
    for n, o, k, s, r, (lo, _) in zip(geom.in_spatial, geom.out_spatial, geom.kernel_size,
                                      geom.stride, geom.dilation, geom.pads):
        q, kk = np.meshgrid(np.arange(o), np.arange(k), indexing="ij")
        i = q * s - lo + kk * r
        ok = (i >= 0) & (i < n)
        per_axis.append((i[ok], q[ok], kk[ok]))
    if len(per_axis) == 1:
        return per_axis[0]
    (i0, q0, k0), (i1, q1, k1) = per_axis
    a, b = np.meshgrid(np.arange(len(i0)), np.arange(len(i1)), indexing="ij")
    a, b = a.ravel(), b.ravel()
    n1, o1, kw = geom.in_spatial[1], geom.out_spatial[1], geom.kernel_size[1]
    return i0[a] * n1 + i1[b], q0[a] * o1 + q1[b], k0[a] * kw + k1[b]


def conv_coupling(kernel, in_spatial: Sequence[int], *, stride=1, padding=0, dilation=1,
                  groups: int = 1, kernel_layout: KernelLayout = "torch",
                  channels: Channels | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                  name: str = "conv") -> tuple[np.ndarray, ConvGeometry]:
    r"""Exact dense coupling block of a convolution → ``(W, geometry)``.

    ``W`` has shape ``(C_in·∏H, C_out·∏H')`` and satisfies ``x_flat @ W == conv(x)_flat`` for the
    framework's own convolution and flattening (see the module docstring); its dtype is the
    kernel's (float64 stays float64).

    Args:
      kernel: ``(C_out, C_in/groups, *k)`` for ``"torch"``, ``(*k, C_in/groups, C_out)`` for
        ``"keras"`` (Keras and Flax).
      in_spatial: input ``(H, W)`` or ``(L,)``.
      stride, padding, dilation, groups: as in ``torch.nn.Conv2d`` (padding also ``"same"``,
        ``"valid"``, per-axis ``(lo, hi)`` pairs, or ``"causal"`` in 1-D).
      kernel_layout: how the kernel is stored.
      channels: flattening order; default ``"first"`` for torch, ``"last"`` for keras.
      max_bytes: size guard for the dense block; raise it, or use :func:`conv_matvec`.
      name: the layer's name, for error messages.

    Raises:
      ConvSizeError: the block would need more than ``max_bytes``.
    """
    k = torch_kernel(kernel, kernel_layout)
    if channels is None:
        channels = "first" if kernel_layout == "torch" else "last"
    geom = conv_geometry(k.shape, in_spatial, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, channels=channels)
    dtype = k.dtype if np.issubdtype(k.dtype, np.floating) else np.float32
    nbytes = geom.in_size * geom.out_size * np.dtype(dtype).itemsize
    if nbytes > max_bytes:
        raise ConvSizeError(
            f"{name}: the dense coupling block of this convolution is ({geom.in_size}, "
            f"{geom.out_size}) = {nbytes / 2**30:.2f} GiB, over max_bytes={max_bytes} "
            f"({max_bytes / 2**30:.2f} GiB); raise max_bytes= or use tapjax.conv.conv_matvec")
    w = np.zeros((geom.in_size, geom.out_size), dtype)
    i_pos, o_pos, k_pos = _taps(geom)
    c_out, c_in_g = k.shape[:2]
    co = np.arange(c_out)[:, None, None]
    ci = (co // (c_out // geom.groups)) * c_in_g + np.arange(c_in_g)[None, :, None]
    s_in, s_out = math.prod(geom.in_spatial), math.prod(geom.out_spatial)
    if channels == "first":
        rows, cols = ci * s_in + i_pos, co * s_out + o_pos
    else:
        rows, cols = i_pos * geom.c_in + ci, o_pos * geom.c_out + co
    rows, cols = np.broadcast_arrays(rows, cols)
    vals = k.reshape(c_out, c_in_g, -1)[:, :, k_pos]
    w[rows, cols] = vals          # each (row, col) pair occurs once: distinct offsets hit distinct inputs
    return w, geom


def conv_bias(bias, geom: ConvGeometry) -> np.ndarray:
    """Per-channel bias ``(C_out,)`` broadcast to the flattened output layer ``(N_k,)``."""
    b = np.asarray(bias).reshape(-1)
    if b.shape[0] != geom.c_out:
        raise ValueError(f"conv bias of shape {np.shape(bias)} does not match C_out={geom.c_out}")
    s = math.prod(geom.out_spatial)
    return np.repeat(b, s) if geom.channels == "first" else np.tile(b, s)


def _lax_conv(k_oihw: jax.Array, geom: ConvGeometry, x: jax.Array) -> jax.Array:
    lead = x.shape[:-1]
    x = x.reshape((-1, *geom.in_shape))
    if geom.channels == "last":
        x = jnp.moveaxis(x, -1, 1)
    y = jax.lax.conv_general_dilated(x, k_oihw.astype(x.dtype), geom.stride, list(geom.pads),
                                     rhs_dilation=geom.dilation, feature_group_count=geom.groups,
                                     precision=jax.lax.Precision.HIGHEST)
    if geom.channels == "last":
        y = jnp.moveaxis(y, 1, -1)
    return y.reshape((*lead, geom.out_size))


def conv_matvec(kernel, geom: ConvGeometry, x: jax.Array, kernel_layout: KernelLayout = "torch") -> jax.Array:
    """Matrix-free ``x @ W``: ``x`` of shape ``(..., N_{k-1})`` → ``(..., N_k)`` (one convolution)."""
    k = jnp.asarray(torch_kernel(kernel, kernel_layout))
    return _lax_conv(k, geom, jnp.asarray(x))


def conv_rmatvec(kernel, geom: ConvGeometry, y: jax.Array, kernel_layout: KernelLayout = "torch") -> jax.Array:
    """Matrix-free ``W @ y``: ``y`` of shape ``(..., N_k)`` → ``(..., N_{k-1})`` (the transposed conv).

    The two products give the bond matvec of eq. 4 on a conv layer pair:
    ``(Jσ)^{(k-1)} += W σ^{(k)}``, ``(Jσ)^{(k)} += Wᵀ σ^{(k-1)}``.
    """
    k = jnp.asarray(torch_kernel(kernel, kernel_layout))
    y = jnp.asarray(y)
    x0 = jnp.zeros((*y.shape[:-1], geom.in_size), y.dtype)
    (out,) = jax.linear_transpose(lambda x: _lax_conv(k, geom, x), x0)(y)
    return out


__all__ = ["ConvGeometry", "ConvSizeError", "DEFAULT_MAX_BYTES", "conv_bias", "conv_coupling",
           "conv_geometry", "conv_matvec", "conv_rmatvec", "torch_kernel"]
