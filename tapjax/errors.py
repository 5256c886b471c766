"""The error classes of tapjax, in one place.

Defined here (the numerics side):

* :class:`NoCrossingError` — λ_min(I − M(β)) never reaches the threshold on the searched β
  range (a legitimate "no melting point found", not a bug; analysis tables write NaN).
* :class:`ConvergenceError` — an iterative search stopped at its iteration cap before
  reaching the requested precision; the number it had is not returned.
* :class:`CouplingsError` — couplings that cannot give a meaningful result (NaN/Inf entries
  in a :class:`~tapjax.spin_model.LayeredCouplings` built without validation, or a scale
  outside the dtype's range); the message names the block.

Re-exported (defined next to the code that raises them, loaded on first use so that
``import tapjax.errors`` stays cheap and cycle-free):

* :class:`~tapjax.data.idx.DataError` — a data file that cannot be read.
* :class:`~tapjax.checkpoints.CheckpointError` — a checkpoint or run directory that cannot be
  read.

All are :class:`ValueError` subclasses, so ``except ValueError`` keeps catching them.
"""

from __future__ import annotations

import importlib


class NoCrossingError(ValueError):
    """λ_min(I − M(β)) never reaches the threshold on the searched β range."""


class ConvergenceError(ValueError):
    """An iterative search hit its iteration cap before the requested tolerance."""


class CouplingsError(ValueError):
    """Couplings for which the engine cannot return a meaningful number (message names the block)."""


_REEXPORTS = {"DataError": "tapjax.data.idx", "CheckpointError": "tapjax.checkpoints"}


def __getattr__(name):
    if name in _REEXPORTS:
        return getattr(importlib.import_module(_REEXPORTS[name]), name)
    raise AttributeError(f"module 'tapjax.errors' has no attribute {name!r}")


__all__ = ["CheckpointError", "ConvergenceError", "CouplingsError", "DataError", "NoCrossingError"]
