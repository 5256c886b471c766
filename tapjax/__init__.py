"""tapjax: neural networks as layered Ising spin models, analyzed with TAP in JAX.

Layers (import downward only):

* generic numerics and errors: ``linalg``, ``errors``, ``pytrees``;
* the spin model and its physics: ``spin_model`` → ``tap``, ``recurrence``, ``msk``,
  ``spectra``, ``levels``, ``spacing``, ``melting`` (gradients), ``reference`` (the §3.2 rule);
* inputs: ``data``, ``checkpoints``, ``locking``, ``sources`` and ``conv`` (any network);
* the analysis: ``analysis`` (``tapjax.analyze``), ``fits``, scale-out ``sharding`` and
  ``distributed``;
* training (Flax, optax; loaded on first use): ``models``, ``losses``, ``binarize``,
  ``training``, ``multirun``, ``tc_regularizer``;
* beyond TAP: ``overlap`` (Monte Carlo replica overlaps), ``sgtrain``; the command: ``cli``.
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
_LAZY_MODULES = ("binarize", "conv", "distributed", "errors", "fits", "levels", "linalg", "melting", "locking", "losses", "models", "multirun",
                 "overlap", "pytrees", "reference", "sgtrain", "sharding", "sources", "spacing", "tc_regularizer", "training")
# Names loaded with their module on first use: name -> module.
_LAZY_NAMES = {"load_series": "sources", "load_network": "sources", "SourceError": "sources",
               "Reference": "reference", "ReferenceResult": "reference",
               "ReferenceRangeError": "reference", "MLP": "models", "ModelConfig": "models",
               "weights_from_params": "models", "TrainConfig": "training", "train": "training",
               "train_many": "multirun",
               "WorkdirLock": "locking", "WorkdirBusyError": "locking",
               "ConvergenceError": "errors", "CouplingsError": "errors",
               "SearchStatus": "recurrence", "as_couplings": "spin_model",
               "coupling_scale": "spin_model", "level_spacing": "levels",
               "lowest_eigenvalues": "levels", "critical_beta_smooth": "levels",
               "smooth_margin": "levels", "melting_temperature": "melting",
               "T_c": "melting", "critical_beta_fn": "melting", "reference_level": "melting",
               "ReferenceLevel": "melting", "attribution": "melting",
               "TcPenalty": "tc_regularizer", "PenaltyReference": "tc_regularizer",
               "penalty_reference": "tc_regularizer", "penalty_value_and_grad": "tc_regularizer",
               "choose_every_k": "tc_regularizer"}


def __getattr__(name):
    if name == "T_c":  # tapjax.T_c(ws, reference) is melting.melting_temperature, differentiable
        return importlib.import_module("tapjax.melting").melting_temperature
    if name in _LAZY_MODULES:
        return importlib.import_module(f"tapjax.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f"tapjax.{_LAZY_NAMES[name]}"), name)
    raise AttributeError(f"module 'tapjax' has no attribute {name!r}")


_EAGER = ["Analysis", "CheckpointError", "DataError", "Dataset", "LayeredCouplings",
          "NoCrossingError", "RunHistory", "analysis", "analyze", "analyze_run", "checkpoints",
          "couplings", "critical_beta", "critical_beta_bisect", "critical_beta_grid",
          "critical_beta_search", "data", "inertia", "least_eigenvalue", "load_analysis",
          "load_checkpoint", "load_dataset", "load_run", "logdet", "msk", "positive_definite",
          "random_couplings", "read_analysis", "recurrence", "reference_threshold",
          "save_analysis", "spectra", "spin_model", "tap"]
__all__ = sorted({*_EAGER, *_LAZY_MODULES, *_LAZY_NAMES, "T_c"})


def __dir__():
    return __all__
