"""Glue shared by the experiment scripts: precision setup and figure output.

Library logic lives in :mod:`tapjax`; this module holds only what several scripts did the same
way around it (the ``--x64`` switch, the Agg backend, writing a figure).
"""

from __future__ import annotations

import numpy as np


def use_precision(x64: bool):
    """Enables float64 in JAX when ``x64`` (call before any array is made); returns the float
    dtype the script then computes in (``np.float64`` or ``np.float32``)."""
    if x64:
        import jax  # pylint: disable=import-outside-toplevel
        jax.config.update("jax_enable_x64", True)
    return np.float64 if x64 else np.float32


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    return plt


def save_figure(fig, path: str, dpi: int = 120) -> None:
    """Lays out ``fig``, writes it to ``path`` and closes it (frees its memory)."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)


__all__ = ["pyplot", "save_figure", "use_precision"]
