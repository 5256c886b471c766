"""The ``tapjax`` command: ``tapjax analyze PATH``, ``tapjax train``, ``tapjax reproduce``.

Installed by ``pip install tapjax`` (``[project.scripts]``), so it works from any directory::

    tapjax analyze model.safetensors --out=results/      # any network, one snapshot or a series
    tapjax analyze runs/quick                            # a tapjax run directory
    tapjax train --workdir=runs/quick --epochs=5         # the paper's MLP on the embedded MNIST
    tapjax reproduce --preset=quick                      # Table 1 and Figs. 3–9 of the paper

Flags live here only (a thin script): each subcommand turns its flags into a config and makes
one library call. Compiled XLA programs are kept in JAX's persistent compilation cache
(``--cache_dir``, default ``$TAPJAX_CACHE_DIR`` or ``~/.cache/tapjax/jax``), so a second
process on the same architecture does not recompile.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

REFERENCES = ("auto", "init", "shuffled", "gaussian", "msk")
LAYOUTS = ("in_out", "out_in")


def default_cache_dir() -> str:
    return os.environ.get("TAPJAX_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "tapjax", "jax")


def enable_compilation_cache(cache_dir: str | None) -> str | None:
    """Points JAX's persistent compilation cache at ``cache_dir`` (``""`` or None: off)."""
    if not cache_dir:
        return None
    import jax  # pylint: disable=import-outside-toplevel
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError as e:
        print(f"tapjax: compilation cache disabled: cannot create {cache_dir} ({e})", file=sys.stderr)
        return None
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    # cache every program: the analysis compiles many small ones, and a cold process pays for each
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return cache_dir


# --------------------------------------------------------------------------- analyze
def _cmd_analyze(args: argparse.Namespace) -> int:
    # pylint: disable=import-outside-toplevel
    from tapjax import analysis, sources
    load_kw = {}
    if args.layout:
        load_kw["layout"] = args.layout
    if args.input_shape:
        load_kw["input_shape"] = tuple(int(s) for s in args.input_shape.split(","))
    source = sources.load_series(args.path, **load_kw) if load_kw else args.path
    a = analysis.analyze(source, reference=args.reference, progress=not args.quiet,
                         level_spacing=False if args.no_level_spacing else "auto")
    out = args.out or _default_out(args.path)
    os.makedirs(out, exist_ok=True)
    prefix = os.path.join(out, "analysis")
    analysis.save_analysis(a, prefix)
    written = [p for p in analysis.table_paths(prefix).values() if os.path.exists(p)]
    png = os.path.join(out, "T_c.png")
    try:
        a.plot(png)
        written.append(png)
    except ValueError as e:  # nothing finite to draw (every row without a crossing): say so
        print(f"tapjax analyze: no plot: {e}", file=sys.stderr)
    print(a.summary())
    print("\nwritten: " + ", ".join(written))
    return 0


def _default_out(path: str) -> str:
    base = os.path.basename(os.path.normpath(path)) or "analysis"
    stem = base.split(".")[0] or "analysis"
    return os.path.join("tapjax_out", stem)


# --------------------------------------------------------------------------- train
def _cmd_train(args: argparse.Namespace) -> int:
    # pylint: disable=import-outside-toplevel
    from tapjax.data import load_dataset
    from tapjax.models import ModelConfig
    from tapjax.training import TrainConfig, train
    data = load_dataset(args.dataset)
    model = ModelConfig(kind=args.model, input_dim=data.input_dim,
                        widths=tuple(int(w) for w in args.widths.split(",")),
                        init_scale=args.init_scale, use_bias=args.use_bias)
    extra = {"loss": args.loss} if args.loss else {}
    cfg = TrainConfig(model=model, lr=args.lr, momentum=args.momentum, batch_size=args.batch_size,
                      epochs=args.epochs, seed=args.seed, margin=args.margin,
                      schedule=args.schedule, first_epoch_levels=args.first_epoch_levels,
                      dataset=data.name, **extra)
    result = train(cfg, data, args.workdir, progress=not args.quiet)
    last = result.history[-1] if result.history else {}
    print(json.dumps({"workdir": args.workdir, "epochs": len(result.history),
                      "final_val_error": last.get("val_error"), "seconds": round(result.seconds, 1)}))
    print(f"next: tapjax analyze {args.workdir}")
    return 0


# --------------------------------------------------------------------------- reproduce
def _cmd_reproduce(args: argparse.Namespace) -> int:
    from tapjax.paper import reproduce as reproduce_lib  # pylint: disable=import-outside-toplevel
    out = args.out or os.path.join("results", args.preset)
    configs = args.configs.split(",") if args.configs else None
    kw = {"configs": configs} if configs else {}
    summary = reproduce_lib.reproduce(args.preset, out, runs_root=args.runs_root,
                                      dataset=args.dataset, do_train=not args.no_train,
                                      progress=not args.quiet, bootstrap=args.bootstrap, **kw)
    print(json.dumps(summary, indent=1, default=str))
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tapjax", description="Neural networks as layered Ising spin models: TAP melting "
        "temperature T_c, spectra and level spacings of any network, along training.")
    p.add_argument("--cache_dir", default=None,
                   help="JAX persistent compilation cache (default $TAPJAX_CACHE_DIR or "
                        "~/.cache/tapjax/jax; '' disables it)")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("analyze", help="T_c(t), λ_max(J), s0/s_typ of a network or a series of "
                       "snapshots (PyTorch, Flax, Keras, safetensors, scikit-learn, NumPy, tapjax)")
    a.add_argument("path", help="a weights file (.safetensors .pt .pth .bin .keras .h5 .npz), a "
                   "directory of such files (a time series), or a tapjax run directory")
    a.add_argument("--reference", choices=REFERENCES, default="auto",
                   help="the §3.2 threshold λ*: 'init' (the t = 0 snapshot), 'shuffled' (entries "
                        "permuted per layer), 'gaussian', 'msk' (eq. 15 with measured C_k); "
                        "'auto': init when the series starts at t = 0, else shuffled")
    a.add_argument("--layout", choices=LAYOUTS, default=None,
                   help="weight layout of plain arrays (.npz without tapjax metadata); framework "
                        "formats use their own convention")
    a.add_argument("--input_shape", default=None,
                   help="C,H,W (or C,L) of the input, needed for conv layers in a bare state dict")
    a.add_argument("--no_level_spacing", action="store_true", help="skip s0/s_typ")
    a.add_argument("--out", default=None, help="output directory (default tapjax_out/<name>)")
    a.add_argument("--quiet", action="store_true", help="no progress output")
    a.set_defaults(fn=_cmd_analyze)

    t = sub.add_parser("train", help="train the paper's MLP and write checkpoints along training "
                       "time (re-running resumes)")
    t.add_argument("--workdir", required=True)
    t.add_argument("--model", choices=("standard", "binarized"), default="standard")
    t.add_argument("--dataset", default="embedded",
                   help="'embedded' (5k MNIST shipped with tapjax), 'idx:DIR', 'tfds:mnist[:DIR]'")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--momentum", type=float, default=0.9)
    t.add_argument("--batch_size", type=int, default=32)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--widths", default="512,512,512,10", help="N_1..N_L, comma-separated")
    t.add_argument("--init_scale", type=float, default=2.0, help="C of the N(0, C/N_in) init")
    t.add_argument("--use_bias", action="store_true")
    t.add_argument("--margin", type=float, default=10.0)
    t.add_argument("--loss", default=None, help="hinge loss reading (see tapjax.losses)")
    t.add_argument("--schedule", default="log:16")
    t.add_argument("--first_epoch_levels", type=int, default=6)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(fn=_cmd_train)

    r = sub.add_parser("reproduce", help="the paper's Table 1 and Figs. 3–9 in one command")
    r.add_argument("--preset", choices=("tiny", "quick", "paper"), default="quick")
    r.add_argument("--out", default=None, help="output root (default results/<preset>)")
    r.add_argument("--runs_root", default=None, help="read existing runs from here")
    r.add_argument("--dataset", default=None, help="override the preset's dataset")
    r.add_argument("--configs", default=None, help="comma-separated subset of configurations")
    r.add_argument("--no_train", action="store_true", help="only analyze existing runs")
    r.add_argument("--bootstrap", type=int, default=None)
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(fn=_cmd_reproduce)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    enable_compilation_cache(default_cache_dir() if args.cache_dir is None else args.cache_dir)
    try:
        return args.fn(args)
    except (ValueError, OSError, ImportError) as e:  # library errors name the file / layer
        if os.environ.get("TAPJAX_DEBUG"):
            raise
        print(f"tapjax {args.command}: error: {e}\n(set TAPJAX_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tapjax {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
