r"""Train the paper's MLP and write checkpoints along training time.

    python -m experiments.train --model=standard --lr=1e-4 --epochs=60 \
        --dataset=idx:/path/to/mnist --workdir=runs/standard_lr1e-4

Re-running the same command resumes from the last saved state (bit-identical to an
uninterrupted run, wherever it was killed); a second command on the same --workdir while the
first runs is refused with the holder's pid. ``--loss=one_vs_rest`` trains Tang's (2013)
one-vs-rest L2-SVM instead of the Weston-Watkins squared hinge. Results: ``WORKDIR/checkpoints/*.npz``, ``history.json``, ``config.json``
and ``validation_error.png``.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

from tapjax.checkpoints import CheckpointError
from tapjax.data import DataError, load_dataset
from tapjax.losses import LOSSES
from tapjax.models import ModelConfig
from tapjax.training import TrainConfig, train

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "standard", ["standard", "binarized"], "Net type (Table 1).")
flags.DEFINE_float("lr", 1e-4, "SGD learning rate (paper: 1e-4, 1e-6).")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_integer("epochs", 5, "Training epochs (paper: 500/960/60/960).")
flags.DEFINE_integer("batch_size", 32, "Mini-batch size.")
flags.DEFINE_integer("seed", 0, "PRNG seed (init + shuffling).")
flags.DEFINE_string("workdir", "runs/train", "Run directory (checkpoints, history, plots).")
flags.DEFINE_string("dataset", "embedded",
                    "'embedded' (5k MNIST subset shipped with tapjax, offline), 'idx:DIR' "
                    "(MNIST-format IDX files) or 'tfds:mnist[:MANUAL_DIR]'.")
flags.DEFINE_string("schedule", "log:16", "Checkpoints after epoch 1: 'every' or 'log:K' per decade.")
flags.DEFINE_integer("first_epoch_levels", 6, "Checkpoints at t=2^-j, j=levels..1 in epoch 1.")
flags.DEFINE_list("widths", ["512", "512", "512", "10"], "Layer widths N_1..N_L.")
flags.DEFINE_float("init_scale", 2.0, "C of the N(0, C/N_in) init.")
flags.DEFINE_bool("use_bias", False, "Add biases (not part of the spin model).")
flags.DEFINE_float("margin", 10.0, "Hinge margin.")
flags.DEFINE_enum("loss", "weston_watkins", list(LOSSES),
                  "L2 hinge loss: 'weston_watkins' (PyTorch MultiMarginLoss(p=2)) or 'one_vs_rest' "
                  "(Tang 2013's L2-SVM: a squared-hinge binary SVM per output against +-1 targets).")
flags.DEFINE_bool("progress", True, "Show a progress bar.")


def plot_history(history, path: str, title: str) -> None:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    if not history:
        return
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([h["t"] for h in history], [h["val_error"] for h in history], "o-", ms=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation error")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    try:
        run()
    except (DataError, CheckpointError, FloatingPointError) as e:
        sys.exit(f"error: {e}")


def run():
    data = load_dataset(FLAGS.dataset)
    model = ModelConfig(kind=FLAGS.model, input_dim=data.input_dim,
                        widths=tuple(int(w) for w in FLAGS.widths),
                        init_scale=FLAGS.init_scale, use_bias=FLAGS.use_bias)
    cfg = TrainConfig(model=model, lr=FLAGS.lr, momentum=FLAGS.momentum,
                      batch_size=FLAGS.batch_size, epochs=FLAGS.epochs, seed=FLAGS.seed,
                      margin=FLAGS.margin, schedule=FLAGS.schedule,
                      first_epoch_levels=FLAGS.first_epoch_levels, dataset=data.name,
                      loss=FLAGS.loss)
    result = train(cfg, data, FLAGS.workdir, progress=FLAGS.progress)
    plot_history(result.history, os.path.join(FLAGS.workdir, "validation_error.png"),
                 f"{FLAGS.model}, lr={FLAGS.lr:g}, {data.name}")
    last = result.history[-1] if result.history else {}
    print(json.dumps({"workdir": FLAGS.workdir, "epochs": len(result.history),
                      "final_val_error": last.get("val_error"), "seconds": round(result.seconds, 1)}))


if __name__ == "__main__":
    app.run(main)
