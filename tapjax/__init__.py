"""tapjax: trained neural networks as layered Ising spin models, analyzed with TAP in JAX.

Modules (import downward only): ``data`` → ``models``/``losses``/``binarize`` →
``training``/``checkpoints`` → ``spin_model`` → ``tap``, ``recurrence``, ``msk``, ``spectra``
→ ``analysis``, ``fits``; ``sharding`` and ``multirun`` (scale-out), ``overlap`` (Monte Carlo
replica overlaps) and ``sgtrain`` (spin-glass layer training) sit on top.
"""

import importlib

from tapjax import analysis, checkpoints, data, msk, recurrence, spectra, spin_model, tap
from tapjax.analysis import (Analysis, analyze, analyze_run, load_analysis, read_analysis,
                             save_analysis)
from tapjax.checkpoints import CheckpointError, RunHistory, load_checkpoint, load_run
from tapjax.data import DataError, Dataset, load_dataset
from tapjax.recurrence import (critical_beta, critical_beta_bisect, critical_beta_search, inertia,
                               logdet, positive_definite)
from tapjax.spin_model import LayeredCouplings, couplings, random_couplings
from tapjax.tap import (NoCrossingError, critical_beta_grid, least_eigenvalue,
                        reference_threshold)

__version__ = "0.1.0"

# Loaded on first use (``tapjax.sharding`` …), so ``import tapjax`` does not pay for them.
# The training side (Flax, optax) is loaded on first use too: the physics needs neither.
_LAZY_MODULES = ("binarize", "conv", "distributed", "errors", "fits", "levels", "linalg", "locking", "losses", "models", "multirun",
                 "overlap", "pytrees", "reference", "sgtrain", "sharding", "sources", "spacing", "training")
# Names loaded with their module on first use: name -> module.
_LAZY_NAMES = {"load_series": "sources", "load_network": "sources", "SourceError": "sources",
               "Reference": "reference", "ReferenceResult": "reference",
               "ReferenceRangeError": "reference", "MLP": "models", "ModelConfig": "models",
               "weights_from_params": "models", "TrainConfig": "training", "train": "training",
               "WorkdirLock": "locking", "WorkdirBusyError": "locking",
               "ConvergenceError": "errors", "CouplingsError": "errors",
               "SearchStatus": "recurrence", "as_couplings": "spin_model",
               "coupling_scale": "spin_model", "level_spacing": "levels",
               "lowest_eigenvalues": "levels", "critical_beta_smooth": "levels",
               "smooth_margin": "levels"}


def __getattr__(name):
    if name in _LAZY_MODULES:
        return importlib.import_module(f"tapjax.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f"tapjax.{_LAZY_NAMES[name]}"), name)
    raise AttributeError(f"module 'tapjax' has no attribute {name!r}")


__all__ = [
    "Analysis", "CheckpointError", "Reference", "WorkdirBusyError", "WorkdirLock", "locking", "SourceError", "analyze", "conv", "distributed",
    "load_network", "load_series", "reference", "sources", "DataError", "Dataset", "LayeredCouplings", "MLP",
    "ModelConfig", "NoCrossingError", "RunHistory", "TrainConfig", "analysis", "analyze_run",
    "binarize", "checkpoints", "couplings", "critical_beta", "critical_beta_bisect",
    "critical_beta_grid", "critical_beta_search", "data", "fits", "inertia", "least_eigenvalue",
    "load_analysis", "load_checkpoint", "load_dataset", "load_run", "logdet", "losses", "models",
    "msk", "multirun", "overlap", "pytrees", "positive_definite", "random_couplings", "recurrence",
    "reference_threshold", "save_analysis", "sgtrain", "sharding", "spacing", "spectra", "spin_model", "tap",
    "train", "training",
    "weights_from_params",
]
