r"""Training layers as spin glasses: weights are spins, data statistics are couplings (issue 7).

For a dense layer with MSE loss on inactivated neurons the loss *is* a sum of per-unit
quadratic Hamiltonians, :math:`D(\omega) = \sum_i [S_i^\top J S_i + h_i^\top S_i + E_0^i]`
(Sorba's note eqs. 11–12). Modules:

* :mod:`~tapjax.sgtrain.activations` — invertible activations f, f⁻¹ with target checks.
* :mod:`~tapjax.sgtrain.hamiltonian` — (J, h, E0) for dense and 1-D conv layers, energies, the
  exact ground state.
* :mod:`~tapjax.sgtrain.bit_encoding` — n-bit window encoding of weights as Ising spins.
* :mod:`~tapjax.sgtrain.annealing` — Metropolis simulated annealing of that encoding.
* :mod:`~tapjax.sgtrain.langevin` — annealed Langevin dynamics of continuous spins.
* :mod:`~tapjax.sgtrain.exact` — the exact quadratic minimiser as a minimiser object.
* :mod:`~tapjax.sgtrain.networks` — one- and two-layer training loops and the backprop baseline.
* ``experiments/sgtrain_compare.py`` — data sets and the annealing / backprop / exact comparison
  (formerly ``tapjax.sgtrain.compare``, a deprecated alias now).
"""

from tapjax.sgtrain.activations import Identity, LeakyReLU, Tanh
from tapjax.sgtrain.annealing import Annealing, anneal_window, geometric
from tapjax.sgtrain.bit_encoding import center_bits, decode, ising_couplings, ising_energy
from tapjax.sgtrain.exact import ExactSolve
from tapjax.sgtrain.hamiltonian import (LayerHamiltonian, conv1d_hamiltonian, conv1d_patches,
                                        dense_hamiltonian, energy, ground_state,
                                        ground_state_energy, layer_loss, with_bias)
from tapjax.sgtrain.langevin import Langevin, langevin
from tapjax.sgtrain.networks import (fit_backprop, fit_one_layer, fit_two_layer, forward,
                                     init_params, mse)

__all__ = [
    "Annealing", "ExactSolve", "Identity", "LayerHamiltonian", "LeakyReLU", "Langevin", "Tanh",
    "anneal_window", "center_bits", "conv1d_hamiltonian", "conv1d_patches", "decode",
    "dense_hamiltonian", "energy", "fit_backprop", "fit_one_layer", "fit_two_layer", "forward",
    "geometric", "ground_state", "ground_state_energy", "init_params", "ising_couplings",
    "ising_energy", "langevin", "layer_loss", "mse", "with_bias",
]
