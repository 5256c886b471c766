"""Deprecated: the annealing / backprop / exact comparison moved to ``experiments/sgtrain_compare.py``.

It is experiment code (data sets, the settings of docs/sgtrain.md, a timing harness), so it
lives beside the script that runs it. The names below still resolve here, with a
``DeprecationWarning``, when the repository's ``experiments`` package is importable (a source
checkout run from its root). Import them as ``from experiments import sgtrain_compare``.
The library pieces it uses are public: :func:`tapjax.sgtrain.networks.fit_one_layer_jit`,
:func:`~tapjax.sgtrain.networks.fit_two_layer_jit`, :func:`~tapjax.sgtrain.networks.fit_backprop_jit`.
"""

from __future__ import annotations

import importlib
import sys
import warnings

_MOVED = ("METHODS", "Setup", "Task", "default_setup", "diabetes_task", "load_diabetes_arrays",
          "markdown_table", "mnist_task", "run_setup", "summarize")


def __getattr__(name):
    if name not in _MOVED:
        raise AttributeError(f"module 'tapjax.sgtrain.compare' has no attribute {name!r}")
    warnings.warn(f"tapjax.sgtrain.compare.{name} is deprecated: use experiments.sgtrain_compare.{name} "
                  "(the comparison is experiment code and moved to experiments/)",
                  DeprecationWarning, stacklevel=2)
    try:
        # experiments/ is installed as tapjax.paper; reuse the copy already imported under
        # either name so that the objects stay identical
        loaded = sys.modules.get("experiments.sgtrain_compare")
        moved = loaded or importlib.import_module("tapjax.paper.sgtrain_compare")
    except ImportError as e:
        raise ImportError(
            f"tapjax.sgtrain.compare.{name} moved to experiments/sgtrain_compare.py, which is not "
            "importable here: run from the root of a tapjax source checkout (the experiments "
            "package is not installed with the library)") from e
    return getattr(moved, name)


__all__ = list(_MOVED)
