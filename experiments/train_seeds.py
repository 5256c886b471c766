r"""Train the issue-16 run groups with the vmapped multi-run engine (:func:`tapjax.multirun.train_many`).

    python -m experiments.train_seeds --group=mnist_std --mnist=DIR --runs_root=runs
    python -m experiments.train_seeds --group=fashion --fashion=/usr/share/datasets/fashion-mnist
    python -m experiments.train_seeds --group=mnist_bin --epochs=40
    python -m experiments.train_seeds --group=ovr          # one-vs-rest loss pair (issue 16.5)

Groups (784-512-512-512-10, lr 1e-4, log:16 checkpoints, 6 first-epoch levels):
``mnist_std`` 5 standard seeds × 60 epochs; ``mnist_bin`` 5 binarized seeds × ``--epochs``
(the paper: 500); ``fashion`` standard + binarized seed 0 × 60 on Fashion-MNIST; ``ovr`` standard
+ binarized seed 0 × 60 with ``loss="one_vs_rest"``. Each run writes
``RUNS_ROOT/<group dir>/<kind>_seed<s>/``; a group whose runs all have a history is skipped.
``train_many`` starts fresh runs; an interrupted run is resumed one by one with
``python -m experiments.train`` on its directory (same config).
"""

from __future__ import annotations

import dataclasses
import os
import time

from absl import app, flags

from tapjax.data import load_dataset
from tapjax.models import ModelConfig
from tapjax.multirun import train_many
from tapjax.training import TrainConfig

FLAGS = flags.FLAGS
flags.DEFINE_enum("group", "mnist_std", ["mnist_std", "mnist_bin", "fashion", "ovr"], "Run group.")
flags.DEFINE_string("mnist", "../shared/data/mnist", "Directory of the four MNIST IDX files.")
flags.DEFINE_string("fashion", "/usr/share/datasets/fashion-mnist", "Fashion-MNIST IDX directory.")
flags.DEFINE_string("runs_root", "runs", "Where the group directories go.")
flags.DEFINE_integer("epochs", 40, "Epochs of the binarized seeds (mnist_bin).")


@dataclasses.dataclass(frozen=True)
class Group:
    """One group of runs trained together: directory name, dataset, (kind, seed, epochs, loss)."""

    directory: str
    dataset: str
    runs: tuple[tuple[str, int, int, str], ...]


def groups(bin_epochs: int) -> dict[str, Group]:
    ww = "weston_watkins"
    return {
        "mnist_std": Group("seeds_standard_lr1e-4", "mnist", tuple(("standard", s, 60, ww) for s in range(5))),
        "mnist_bin": Group("seeds_binarized_lr1e-4", "mnist",
                           tuple(("binarized", s, bin_epochs, ww) for s in range(5))),
        "fashion": Group("fashion_lr1e-4", "fashion", (("standard", 0, 60, ww), ("binarized", 0, 60, ww))),
        "ovr": Group("ovr_lr1e-4", "mnist", (("standard", 0, 60, "one_vs_rest"),
                                             ("binarized", 0, 60, "one_vs_rest"))),
    }


def config(kind: str, seed: int, epochs: int, loss: str, dataset: str) -> TrainConfig:
    return TrainConfig(model=ModelConfig(kind=kind, input_dim=784, widths=(512, 512, 512, 10)),
                       lr=1e-4, epochs=epochs, seed=seed, schedule="log:16", first_epoch_levels=6,
                       dataset=dataset, loss=loss)


def main(argv):
    del argv
    g = groups(FLAGS.epochs)[FLAGS.group]
    data = load_dataset("idx:" + (FLAGS.mnist if g.dataset == "mnist" else FLAGS.fashion))
    cfgs = [config(k, s, e, loss, data.name) for k, s, e, loss in g.runs]
    wds = [os.path.join(FLAGS.runs_root, g.directory, f"{c.model.kind}_seed{c.seed}") for c in cfgs]
    if all(os.path.exists(os.path.join(w, "history.json")) for w in wds):
        print(f"{FLAGS.group}: every run already has a history; skipped")
        return
    t0 = time.monotonic()
    train_many(cfgs, data, wds, progress=True)
    print(f"{FLAGS.group}: {len(cfgs)} runs in {time.monotonic() - t0:.0f} s → {os.path.dirname(wds[0])}")


if __name__ == "__main__":
    app.run(main)
