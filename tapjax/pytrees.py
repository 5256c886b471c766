"""Helpers over nested containers (dicts, lists, tuples of numpy and Python values).

:func:`jsonable` is the one converter the library and the experiment scripts use before
writing JSON (``QabResult.save``, ``experiments/fits.py``, ``experiments/reproduce.py``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np


def jsonable(x: Any, *, nonfinite: Literal["keep", "null"] = "keep") -> Any:
    """``x`` with numpy scalars and arrays turned into Python values, for ``json.dump``.

    Dicts (keys become ``str``), lists and tuples (both become lists) are converted
    recursively; arrays become nested lists; numpy floats, ints and bools become Python ones.
    Anything else is returned unchanged.

    Args:
      x: the nested container.
      nonfinite: ``"keep"`` leaves NaN and ±inf as floats (``json`` writes them as ``NaN`` /
        ``Infinity``, which Python reads back); ``"null"`` replaces them by ``None`` (strict
        JSON, for files other tools read).
    """
    if nonfinite not in ("keep", "null"):
        raise ValueError(f"nonfinite={nonfinite!r}: use 'keep' or 'null'")
    if isinstance(x, dict):
        return {str(k): jsonable(v, nonfinite=nonfinite) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v, nonfinite=nonfinite) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist(), nonfinite=nonfinite) if nonfinite == "null" else x.tolist()
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return None if nonfinite == "null" and not math.isfinite(x) else x
    return x


def check_fields(cls, d: dict, what: str) -> None:
    """Raises ValueError naming the keys of ``d`` that are not fields of dataclass ``cls``."""
    import dataclasses  # pylint: disable=import-outside-toplevel
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {what} field(s) {unknown}; known: {sorted(known)}")


__all__ = ["check_fields", "jsonable"]
