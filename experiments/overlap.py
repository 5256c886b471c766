r"""Q_ab curves (replica overlaps) of untrained and trained nets: issue 6, items 3–4.

    python -m experiments.overlap --workdir=runs/overlap --parts=training,conditions,planted,lowT

Parts (each can be run on its own; nets and curves already in --workdir are reused):
  * ``training``: standard and binarized MLPs trained on the embedded 4k-image MNIST subset.
    Q_ab curves at several training times, with P(q), compared with the TAP T_c.
  * ``conditions``: learning rate, batch size, a small training set (500 images) and 40 percent label
    noise, each against the base run.
  * ``planted``: a 4×4 white patch in the bottom-right corner of a few percent of the training
    images, relabelled to class 0 (a backdoor). Clean and planted nets over several seeds.
  * ``lowT``: a 4× longer, denser run below T = 2 for the final standard net (checks the
    non-monotonic low-T part of the trained curves).
  * ``paper``: the full-MNIST 784-512-512-512-10 standard run of Table 1 (read-only; ``--paper_run``).

Results: ``WORKDIR/curves/<name>.{npz,json}`` (one :class:`tapjax.overlap.QabResult` per net),
``WORKDIR/summary.json`` and the figures ``WORKDIR/overlap_*.png``.

Flags become one :class:`OverlapExperiment` in ``main``; every helper takes that config (or plain
arguments) and nothing but ``main`` reads ``FLAGS``. The curve readouts (onset temperature, P(q)
shape) are library functions in :mod:`tapjax.overlap.shape`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings

import numpy as np
from absl import app, flags

from .common import pyplot, save_figure
from tapjax.overlap.shape import onset_temperature, pq_shape, temperature_index

@dataclasses.dataclass(frozen=True)
class OverlapExperiment:
    """All settings of one invocation (the flags, typed). See the flag help for each field."""

    workdir: str = "runs/overlap"
    parts: tuple[str, ...] = ("training", "conditions", "planted", "lowT")
    widths: tuple[int, ...] = (128, 128, 10)
    epochs: int = 20
    lr: float = 1e-3
    times: tuple[float, ...] = (0.0, 1.0, 4.0, 20.0)
    n_replicas: int = 8
    n_temps: int = 32
    t_min: float = 0.4
    t_max: float = 16.0
    n_burn: int = 400
    n_measure: int = 1200
    seeds: int = 3
    plant_fraction: float = 0.05
    patch: int = 4
    label_noise: float = 0.4
    small_n: int = 500
    paper_run: str = ""
    map_T_frac: float = 0.5
    tap: bool = True

    def __post_init__(self):
        unknown = set(self.parts) - set(PARTS)
        if unknown:
            raise ValueError(f"--parts: unknown {sorted(unknown)}; choose from {PARTS}")
        if "paper" in self.parts and not self.paper_run:
            raise ValueError("--parts=paper needs --paper_run=<full-MNIST run directory>")

    @property
    def temperatures(self) -> np.ndarray:
        """The one absolute grid of the small nets: geometric, n_temps points in [t_min, t_max]."""
        return np.geomspace(self.t_min, self.t_max, self.n_temps)

    @classmethod
    def from_flags(cls, f) -> "OverlapExperiment":
        return cls(**{k.name: getattr(f, k.name) for k in dataclasses.fields(cls)} | {
            "parts": tuple(f.parts), "widths": tuple(int(w) for w in f.widths),
            "times": tuple(float(t) for t in f.times)})


PARTS = ("training", "conditions", "planted", "lowT", "paper")


# One source of truth: each field of OverlapExperiment is a flag with the field's default.
_HELP = {
    "workdir": "Where nets, curves, summary and figures go.",
    "parts": "training, conditions, planted, lowT, paper.",
    "widths": "Hidden and output widths of the small nets.",
    "epochs": "Training epochs of the base runs (embedded 4k training images).",
    "lr": "Base learning rate (SGD, momentum 0.9, batch 32, hinge loss).",
    "times": "Training times (epochs) whose curves are computed.",
    "n_replicas": "Replicas per temperature.",
    "n_temps": "Temperatures (geometric grid).",
    "t_min": "Lowest temperature (small nets).",
    "t_max": "Highest temperature (small nets).",
    "n_burn": "Burn-in sweeps.",
    "n_measure": "Measurement sweeps.",
    "seeds": "Training seeds per group in the planted-pattern experiment.",
    "plant_fraction": "Fraction of training images that carry the patch.",
    "patch": "Patch side (pixels), bottom-right corner.",
    "label_noise": "Fraction of training labels replaced by random labels.",
    "small_n": "Training-set size of the small-data run.",
    "paper_run": "Full-MNIST run directory (read-only); needed by --parts=paper.",
    "map_T_frac": "Input-layer maps are taken at this fraction of each net's TAP T_c.",
    "tap": "Also compute the TAP T_c of each net (paper section 3.2 rule).",
}
_DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           str: flags.DEFINE_string}


def _define_flags() -> None:
    for field in dataclasses.fields(OverlapExperiment):
        default = field.default
        if isinstance(default, tuple):
            flags.DEFINE_list(field.name, [f"{v:g}" if isinstance(v, float) else str(v) for v in default],
                              _HELP[field.name])
        else:
            _DEFINE[type(default)](field.name, default, _HELP[field.name])


_define_flags()
FLAGS = flags.FLAGS


# --------------------------------------------------------------------------- data variants
def with_label_noise(data, fraction: float, seed: int):
    """Replaces ``fraction`` of the training labels by uniform random labels (numpy generator)."""
    from tapjax.data import Dataset  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(seed)
    y = data.y_train.copy()
    idx = rng.choice(len(y), int(round(fraction * len(y))), replace=False)
    y[idx] = rng.integers(0, data.num_classes, len(idx))
    return Dataset(data.x_train, y, data.x_val, data.y_val, f"{data.name}+noise{fraction:g}")


def patch_pixels(side: int, size: int = 28, margin: int = 1) -> np.ndarray:
    """Flat indices of the side×side patch in the bottom-right corner (``margin`` px from the edge)."""
    rows = np.arange(size - margin - side, size - margin)
    return (rows[:, None] * size + rows[None, :]).ravel()


def with_planted_pattern(data, fraction: float, side: int, target: int, seed: int):
    """Adds a white patch to ``fraction`` of the training images and relabels them ``target``."""
    from tapjax.data import Dataset  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(seed)
    x, y = data.x_train.copy(), data.y_train.copy()
    idx = rng.choice(len(y), int(round(fraction * len(y))), replace=False)
    x[np.ix_(idx, patch_pixels(side))] = 255
    y[idx] = target
    return Dataset(x, y, data.x_val, data.y_val, f"{data.name}+patch{side}x{fraction:g}")


def attack_success(model_cfg, params, data, side: int, target: int) -> float:
    """Fraction of validation images with label ≠ target that the patch turns into ``target``."""
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    from tapjax.models import apply  # pylint: disable=import-outside-toplevel
    keep = data.y_val != target
    x = data.x_val[keep].copy()
    x[:, patch_pixels(side)] = 255
    pred = np.asarray(jnp.argmax(apply(model_cfg, params, jnp.asarray(x)), -1))
    return float(np.mean(pred == target))


# --------------------------------------------------------------------------- nets
def train_net(cfg: OverlapExperiment, name: str, data, *, kind="standard", lr=None, batch_size=32,
              epochs=None, seed=0) -> str:
    """Trains (or reuses) ``cfg.workdir/nets/name``; checkpoints at the requested times."""
    from tapjax.models import ModelConfig  # pylint: disable=import-outside-toplevel
    from tapjax.training import TrainConfig, train  # pylint: disable=import-outside-toplevel
    run = os.path.join(cfg.workdir, "nets", name)
    epochs = cfg.epochs if epochs is None else epochs
    hist = os.path.join(run, "history.json")
    if os.path.exists(hist):
        with open(hist) as f:
            if len(json.load(f)) >= epochs:
                return run
    tcfg = TrainConfig(model=ModelConfig(kind=kind, widths=cfg.widths),
                       lr=cfg.lr if lr is None else lr, batch_size=batch_size, epochs=epochs, seed=seed,
                       schedule="log:3", first_epoch_levels=0, dataset=data.name)
    t0 = time.time()
    res = train(tcfg, data, run, progress=False)
    print(f"  trained {name}: {epochs} epochs, val_error={res.history[-1]['val_error']:.4f} "
          f"({time.time() - t0:.0f} s)", flush=True)
    return run


def checkpoint_at(run: str, t: float) -> str:
    """Path of the checkpoint whose training time is closest to ``t`` epochs."""
    from tapjax.checkpoints import list_checkpoints, load_checkpoint  # pylint: disable=import-outside-toplevel
    paths = list_checkpoints(run)
    ts = [load_checkpoint(p)[1]["t"] for p in paths]
    return paths[int(np.argmin(np.abs(np.asarray(ts) - t)))]


# --------------------------------------------------------------------------- TAP reference
class TapReference:
    """The paper's T_c rule (section 3.2) for the small nets: λ* = min_β λ_min(I − M(β)) of the
    untrained net (:class:`tapjax.reference.Reference`, ``kind="init"``), then T_c = 1/β_c with
    β_c the first β at which λ_min(I − M(β)) ≤ λ* (:func:`tapjax.recurrence.critical_beta`,
    scan with β* as hint, secant).

    λ* is the minimum over 16 β in [0.8, 1.25] × the analytic β_c (C = 2), by dense
    diagonalization, without golden-section polish (the grid of the runs in docs/overlap.md;
    a minimum on the grid's edge extends the grid instead of being taken). For the untrained
    net itself, β_c is that minimizer.
    """

    def __init__(self, c0):
        from tapjax.msk import critical_beta  # pylint: disable=import-outside-toplevel
        from tapjax.reference import Reference  # pylint: disable=import-outside-toplevel
        betas = critical_beta(c0.sizes, 2.0) * np.linspace(0.8, 1.25, 16)
        self.reference = Reference(kind="init", betas=tuple(betas), backend="dense", refine=False).compute(c0)
        self.threshold_value, self.threshold_beta = self.reference.threshold, self.reference.beta_star
        self.reference_weights = [np.asarray(w) for w in c0.weights]

    def critical_temperature(self, c) -> float:
        from tapjax import recurrence  # pylint: disable=import-outside-toplevel
        from tapjax.tap import NoCrossingError  # pylint: disable=import-outside-toplevel
        if all(np.array_equal(np.asarray(w), r) for w, r in zip(c.weights, self.reference_weights)):
            return 1.0 / self.threshold_beta
        try:
            return 1.0 / recurrence.critical_beta(c, self.threshold_value, beta_max=2.0, num_scan=40,
                                                  hint=self.threshold_beta)
        except NoCrossingError:
            return float("nan")


# --------------------------------------------------------------------------- curves
def compute_curve(cfg: OverlapExperiment, name: str, source, temps, tap_ref=None, seed: int = 0, extra=None):
    """Q_ab curve of ``source`` saved as ``cfg.workdir/curves/name``; reused if present."""
    from tapjax import overlap as ov  # pylint: disable=import-outside-toplevel
    from tapjax.spin_model import couplings  # pylint: disable=import-outside-toplevel
    prefix = os.path.join(cfg.workdir, "curves", name)
    if os.path.exists(prefix + ".json"):
        return ov.QabResult.load(prefix)
    t0 = time.time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ov.EquilibrationWarning)
        res = ov.qab_curve(source, temps, n_replicas=cfg.n_replicas, n_burn=cfg.n_burn,
                           n_measure=cfg.n_measure, seed=seed)
    weights = ov.load_network(source)[0]
    c = couplings(weights)
    res.meta.update(extra or {})
    res.meta["name"] = name
    res.meta["tc_gaussian"] = ov.gaussian_equivalent_tc(c)
    res.meta["lambda_max_J"] = ov.largest_bond_eigenvalue(c)
    if tap_ref is not None:
        res.meta["tc_tap"] = tap_ref.critical_temperature(c)
    res.save(prefix)
    n_bad = len(res.diagnostics["problems"])
    print(f"  curve {name}: {time.time() - t0:.0f} s (sampling {res.settings['seconds']:.0f} s, "
          f"{res.settings['spin_updates_per_second'] / 1e6:.0f}M spin-updates/s), Qbar(T_min)={res.qbar[0]:.3f}, "
          f"T_c(TAP)={res.meta.get('tc_tap', float('nan')):.3g}, "
          f"{'equilibrated' if not n_bad else 'NOT equilibrated: ' + caught[-1].message.args[0][:300] if caught else ''}",
          flush=True)
    return res


# --------------------------------------------------------------------------- analysis helpers
def row(res) -> dict:
    d = {k: res.meta.get(k) for k in ("name", "t", "val_error", "tc_tap", "tc_gaussian", "lambda_max_J",
                                       "attack_success", "train_error", "group", "seed")}
    d.update(equilibrated=res.equilibrated, problems=res.diagnostics["problems"],
             onset_T=onset_temperature(res), onset_T_layer1=onset_temperature(res, layer=1),
             qbar_at_tmin=float(res.qbar[0]), qbar_layer_at_tmin=res.qbar_layer[0].tolist(),
             floor=res.floor, exchange_min=float(res.exchange_rate.min()) if res.exchange_rate.size else None,
             round_trips=res.round_trips, seconds=res.settings["seconds"])
    return d


def input_map(res, i: int, size: int = 28) -> np.ndarray:
    """Site decomposition of Qbar on the input layer at temperature index i, as an image."""
    return res.qbar_site[i, : size * size].reshape(size, size)


def best_window(m: np.ndarray, side: int) -> dict:
    """Blind localization: the side×side window with the largest mean, and its z-score among all windows."""
    c = np.pad(np.cumsum(np.cumsum(m, 0), 1), ((1, 0), (1, 0)))
    w = (c[side:, side:] - c[:-side, side:] - c[side:, :-side] + c[:-side, :-side]) / side ** 2
    r, col = np.unravel_index(int(np.argmax(w)), w.shape)
    return {"row": int(r), "col": int(col), "score": float(w[r, col]),
            "z": float((w[r, col] - w.mean()) / (w.std() + 1e-12))}


# --------------------------------------------------------------------------- figures
def plot_training(path, series: dict):
    """Qbar(T) at several training times: global and hidden layer 1, per net type."""
    plt = pyplot()
    kinds = list(series)
    fig, axes = plt.subplots(2, len(kinds), figsize=(5.2 * len(kinds), 7.5), squeeze=False)
    for j, kind in enumerate(kinds):
        cmap = plt.get_cmap("viridis")
        for n, res in enumerate(series[kind]):
            col = cmap(n / max(len(series[kind]) - 1, 1))
            lab = f"t={res.meta['t']:g} ep, err={res.meta['val_error']:.3f}"
            for i, (vals, ax) in enumerate(((res.qbar, axes[0, j]), (res.qbar_layer[:, 1], axes[1, j]))):
                ax.errorbar(res.temperatures, vals, yerr=res.qbar_err if i == 0 else None, color=col,
                            marker="o", ms=3, lw=1.2, label=lab)
                tc = res.meta.get("tc_tap")
                if tc and np.isfinite(tc):
                    ax.axvline(tc, color=col, ls="--", lw=0.8)
        for i, ax in enumerate(axes[:, j]):
            floor = series[kind][0].floor if i == 0 else series[kind][0].floor_layer[1]
            ax.axhline(floor, color="gray", ls=":", lw=1, label="random-spin floor")
            ax.set_xscale("log")
            ax.set_xlabel("T (raw weights)")
            ax.set_ylabel(r"$\bar Q$ = mean$_{a<b}|q_{ab}|$" + (" (all spins)" if i == 0 else " (hidden layer 1)"))
            ax.set_title(f"{kind}: " + ("global" if i == 0 else "layer 1") + "  (dashed: TAP $T_c$)")
        axes[0, j].legend(fontsize=7)
    save_figure(fig, path, dpi=110)


def plot_pq(path, panels: list):
    """P(q) of hidden layer 1 at temperatures below each net's TAP T_c: untrained vs trained."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, res, fracs) in zip(axes[0], panels):
        edges = res.bin_edges
        centers = 0.5 * (edges[1:] + edges[:-1])
        tc = res.meta.get("tc_tap") or res.meta["tc_gaussian"]
        for f in fracs:
            i = temperature_index(res, f * tc)
            j = list(res.layers).index(1)
            ax.plot(centers, res.pq_layer[i, j], lw=1.2, label=f"T={res.temperatures[i]:.2f} ({f:g} $T_c$)")
        ax.set_xlabel(r"$q^{(1)}_{ab}$ (hidden layer 1)")
        ax.set_ylabel("P(q)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    save_figure(fig, path, dpi=110)


def plot_maps(path, groups: dict, indices: dict, side: int):
    """Input-layer site overlaps (28×28) of each net, the planted patch outlined."""
    plt = pyplot()
    cols = max(len(v) for v in groups.values())
    fig, axes = plt.subplots(len(groups), cols, figsize=(2.6 * cols, 2.7 * len(groups)), squeeze=False)
    rows_px = patch_pixels(side) // 28
    r0, c0 = rows_px.min(), rows_px.min()
    vmax = max(float(input_map(r, indices[id(r)]).max()) for v in groups.values() for r in v)
    for g, (gname, results) in enumerate(groups.items()):
        for j, res in enumerate(results):
            ax = axes[g, j]
            i = indices[id(res)]
            im = ax.imshow(input_map(res, i), cmap="magma", vmin=0, vmax=vmax)
            ax.add_patch(plt.Rectangle((c0 - 0.5, r0 - 0.5), side, side, fill=False, ec="cyan", lw=1))
            ax.set_title(f"{gname} seed {res.meta.get('seed')}, T={res.temperatures[i]:.2f}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="site overlap (input layer)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_group(path, groups: dict, title: str, layers=(None, 0, 1)):
    """Qbar(T) of several groups of nets (global and per layer)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(layers), figsize=(4.6 * len(layers), 3.8), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, layer in zip(axes[0], layers):
        for g, (gname, results) in enumerate(groups.items()):
            for n, res in enumerate(results):
                if layer is None:
                    y = res.qbar
                else:
                    y = res.qbar_layer[:, list(res.layers).index(layer)]
                ax.plot(res.temperatures, y, color=colors(g), lw=1.1, alpha=0.85, marker=".", ms=3,
                        label=gname if n == 0 else None)
        ax.set_xscale("log")
        ax.set_xlabel("T")
        ax.set_ylabel(r"$\bar Q$" + ("" if layer is None else f" layer {layer}"))
        ax.set_title(("global" if layer is None else f"layer {layer}"), fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, dpi=110)


# --------------------------------------------------------------------------- parts
def untrained_tap_reference(cfg: OverlapExperiment, run: str) -> TapReference | None:
    from tapjax.checkpoints import load_checkpoint  # pylint: disable=import-outside-toplevel
    from tapjax.models import weights_from_params  # pylint: disable=import-outside-toplevel
    from tapjax.spin_model import couplings  # pylint: disable=import-outside-toplevel
    if not cfg.tap:
        return None
    return TapReference(couplings(weights_from_params(load_checkpoint(checkpoint_at(run, 0.0))[0])))


def part_training(cfg: OverlapExperiment, data, temps, summary):
    wd = cfg.workdir
    series = {}
    tap_ref = None
    for kind in ("standard", "binarized"):
        run = train_net(cfg, f"{kind}_base", data, kind=kind)
        if tap_ref is None:
            tap_ref = untrained_tap_reference(cfg, run)
        series[kind] = []
        for t in cfg.times:
            path = checkpoint_at(run, t)
            name = "untrained" if t == 0 else f"{kind}_t{t:g}"
            series[kind].append(compute_curve(cfg, name, path, temps, tap_ref))
    plot_training(os.path.join(wd, "overlap_training.png"), series)
    u = series["standard"][0]
    s_fin, b_fin = series["standard"][-1], series["binarized"][-1]
    panels = [("untrained (t=0)", u, (0.5, 0.75, 0.9)),
              (f"standard, t={s_fin.meta['t']:g}", s_fin, (0.5, 0.75, 0.9)),
              (f"binarized, t={b_fin.meta['t']:g}", b_fin, (0.5, 0.75, 0.9))]
    plot_pq(os.path.join(wd, "overlap_pq.png"), panels)
    from tapjax.msk import critical_temperature  # pylint: disable=import-outside-toplevel
    summary["training"] = {
        "analytic_tc_untrained": critical_temperature(u.settings["sizes"]),
        "tap_threshold": None if tap_ref is None else {"lambda_star": tap_ref.threshold_value,
                                                       "beta": tap_ref.threshold_beta},
        "rows": [row(r) for r in {id(r): r for k in series for r in series[k]}.values()],
        "pq_shape_layer1": {title: [pq_shape(res, temperature_index(res, f * (res.meta.get("tc_tap") or res.meta["tc_gaussian"])), 1)
                                    for f in fracs] for title, res, fracs in panels},
        "pq_shape_global": {title: [pq_shape(res, temperature_index(res, f * (res.meta.get("tc_tap") or res.meta["tc_gaussian"])))
                                    for f in fracs] for title, res, fracs in panels},
        "untrained_high_T_ratio_to_floor": float(np.mean(u.qbar[u.temperatures > 2 * u.meta["tc_gaussian"]]) / u.floor),
    }
    return tap_ref


def part_conditions(cfg: OverlapExperiment, data, temps, summary, tap_ref):
    wd = cfg.workdir
    base = compute_curve(cfg, f"standard_t{float(cfg.epochs):g}",
                         checkpoint_at(train_net(cfg, "standard_base", data), cfg.epochs), temps, tap_ref)
    variants = {
        f"lr={cfg.lr / 10:g}": dict(lr=cfg.lr / 10),
        f"lr={cfg.lr * 3:g}": dict(lr=cfg.lr * 3),     # 10x diverges with the margin-10 hinge loss
        "batch=256": dict(batch_size=256),
    }
    results = {f"base lr={cfg.lr:g}, batch=32": [base]}
    for label, kw in variants.items():
        name = "standard_" + label.replace("=", "").replace(".", "p")
        run = train_net(cfg, name, data, **kw)
        results[label] = [compute_curve(cfg, name, checkpoint_at(run, cfg.epochs), temps, tap_ref)]
    small = data.subset(n_train=cfg.small_n)
    steps_epochs = int(round(cfg.epochs * len(data.y_train) / cfg.small_n))
    run = train_net(cfg, "standard_small", small, epochs=steps_epochs)
    results[f"{cfg.small_n} images ({steps_epochs} ep)"] = [
        compute_curve(cfg, "standard_small", checkpoint_at(run, steps_epochs), temps, tap_ref)]
    noisy = with_label_noise(data, cfg.label_noise, seed=0)
    run = train_net(cfg, "standard_noisy", noisy)
    from tapjax.checkpoints import load_checkpoint  # pylint: disable=import-outside-toplevel
    from tapjax.models import ModelConfig, error_rate  # pylint: disable=import-outside-toplevel
    path = checkpoint_at(run, cfg.epochs)
    params, _ = load_checkpoint(path)
    mcfg = ModelConfig(kind="standard", widths=cfg.widths)
    train_err = error_rate(mcfg, params, noisy.x_train, noisy.y_train)
    results[f"{cfg.label_noise:.0%} label noise"] = [
        compute_curve(cfg, "standard_noisy", path, temps, tap_ref, extra={"train_error": train_err})]
    plot_group(os.path.join(wd, "overlap_conditions.png"), results,
               f"standard nets after {cfg.epochs} epochs-equivalent: training conditions")
    summary["conditions"] = {k: row(v[0]) for k, v in results.items()}


def part_planted(cfg: OverlapExperiment, data, temps, summary, tap_ref):
    wd = cfg.workdir
    from tapjax.checkpoints import load_checkpoint  # pylint: disable=import-outside-toplevel
    from tapjax.models import ModelConfig  # pylint: disable=import-outside-toplevel
    mcfg = ModelConfig(kind="standard", widths=cfg.widths)
    groups = {"clean": [], "planted": []}
    for seed in range(cfg.seeds):
        for group in groups:
            d = data if group == "clean" else with_planted_pattern(data, cfg.plant_fraction, cfg.patch, 0, seed)
            name = "standard_base" if (group == "clean" and seed == 0) else f"standard_{group}_s{seed}"
            run = train_net(cfg, name, d, seed=seed)
            path = checkpoint_at(run, cfg.epochs)
            asr = attack_success(mcfg, load_checkpoint(path)[0], data, cfg.patch, 0)
            cname = f"standard_t{float(cfg.epochs):g}" if name == "standard_base" else name
            res = compute_curve(cfg, cname, path, temps, tap_ref)
            res.meta.update(group=group, seed=seed, attack_success=asr)
            groups[group].append(res)
    # sampler-only variability: the clean seed-0 net with another sampler seed
    resample = compute_curve(cfg, "standard_base_sampler_seed1", checkpoint_at(os.path.join(wd, "nets", "standard_base"),
                                                                              cfg.epochs), temps, tap_ref, seed=1)
    plot_group(os.path.join(wd, "overlap_planted.png"), groups,
               f"clean vs planted ({cfg.plant_fraction:.0%} of images with a {cfg.patch}x{cfg.patch} patch → 0), "
               f"{cfg.seeds} seeds each")
    patch_sites = patch_pixels(cfg.patch)        # input layer = the first 784 spins
    stats = {}
    for label, pick in (("global", lambda r: r.qbar), ("layer0", lambda r: r.qbar_layer[:, 0]),
                        ("layer1", lambda r: r.qbar_layer[:, 1]), ("layer2", lambda r: r.qbar_layer[:, 2]),
                        ("patch_sites", lambda r: r.qbar_site[:, patch_sites].mean(-1))):
        a = np.stack([pick(r) for r in groups["clean"]])
        b = np.stack([pick(r) for r in groups["planted"]])
        spread = np.sqrt(0.5 * (a.var(0, ddof=1) + b.var(0, ddof=1))) if len(a) > 1 else np.full(a.shape[1], np.nan)
        d = (b.mean(0) - a.mean(0)) / np.maximum(spread, 1e-12)
        i = int(np.nanargmax(np.abs(d)))
        # leave-one-out nearest-centroid classification on the whole curve
        feats = np.concatenate([a, b])
        labels = np.array([0] * len(a) + [1] * len(b))
        correct = 0
        for k in range(len(feats)):
            m = np.ones(len(feats), bool)
            m[k] = False
            c0 = feats[m & (labels == 0)].mean(0)
            c1 = feats[m & (labels == 1)].mean(0)
            pred = int(np.linalg.norm(feats[k] - c1) < np.linalg.norm(feats[k] - c0))
            correct += pred == labels[k]
        stats[label] = {"max_abs_effect_size": float(abs(d[i])), "at_T": float(temps[i]),
                        "clean_mean": float(a.mean(0)[i]), "planted_mean": float(b.mean(0)[i]),
                        "loo_nearest_centroid_accuracy": correct / len(feats)}
    mc_noise = float(np.max(np.abs(resample.qbar - groups["clean"][0].qbar)))
    # blind localization on the input-layer site-overlap map at T = map_T_frac * T_c(TAP) of each net
    indices, windows = {}, {}
    for g, results in groups.items():
        windows[g] = []
        for res in results:
            tc = res.meta.get("tc_tap") or res.meta["tc_gaussian"]
            i = temperature_index(res, cfg.map_T_frac * tc)
            indices[id(res)] = i
            bw = best_window(input_map(res, i), cfg.patch)
            prow = patch_pixels(cfg.patch)[0] // 28
            bw.update(T=float(res.temperatures[i]), seed=res.meta.get("seed"),
                      hits_patch=bool(abs(bw["row"] - prow) <= 1 and abs(bw["col"] - prow) <= 1),
                      patch_mean=float(input_map(res, i).ravel()[patch_pixels(cfg.patch)].mean()),
                      map_mean=float(input_map(res, i).mean()))
            windows[g].append(bw)
    plot_maps(os.path.join(wd, "overlap_planted_maps.png"), groups, indices, cfg.patch)
    summary["planted"] = {"rows": [row(r) for g in groups.values() for r in g], "separation": stats,
                          "sampler_seed_max_abs_diff_qbar": mc_noise, "input_map_best_window": windows}


def part_low_t(cfg: OverlapExperiment, summary, tap_ref):
    """Longer, denser run below T = 2 for the final standard net: is the low-T dip of the curve real?"""
    wd = cfg.workdir
    run = os.path.join(wd, "nets", "standard_base")
    path = checkpoint_at(run, cfg.epochs)
    temps = np.geomspace(cfg.t_min, 2.0, 24)
    longer = dataclasses.replace(cfg, n_burn=4 * cfg.n_burn, n_measure=4 * cfg.n_measure)
    long = compute_curve(longer, f"standard_t{float(cfg.epochs):g}_lowT_long", path, temps, tap_ref)
    short = compute_curve(cfg, f"standard_t{float(cfg.epochs):g}", path, cfg.temperatures, tap_ref)
    saved = cfg.n_burn, cfg.n_measure
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
    for res, lab in ((short, f"{saved[0]}+{saved[1]} sweeps, 32 T in [{cfg.t_min:g}, {cfg.t_max:g}]"),
                     (long, f"{4 * saved[0]}+{4 * saved[1]} sweeps, 24 T in [{cfg.t_min:g}, 2]")):
        m = res.temperatures <= 2.05
        axes[0].errorbar(res.temperatures[m], res.qbar[m], yerr=res.qbar_err[m], marker="o", ms=3, label=lab)
        axes[1].plot(res.temperatures[m], res.qbar_layer[m, 1], marker="o", ms=3, label=lab)
    for ax, t in zip(axes, ("global", "hidden layer 1")):
        ax.set_xscale("log")
        ax.set_xlabel("T")
        ax.set_ylabel(r"$\bar Q$ " + t)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"standard net t={cfg.epochs}: low-temperature region, short vs 4x longer run", fontsize=10)
    save_figure(fig, os.path.join(wd, "overlap_lowT.png"), dpi=110)
    summary["low_T"] = {"long": row(long), "short": row(short),
                        "long_qbar": long.qbar.tolist(), "long_T": long.temperatures.tolist(),
                        "long_qbar_layer1": long.qbar_layer[:, 1].tolist(),
                        "long_exchange_rate": long.exchange_rate.tolist(),
                        "long_tau_qbar": long.tau_qbar.tolist()}


def part_paper(cfg: OverlapExperiment, summary):
    wd = cfg.workdir
    from tapjax import overlap as ov  # pylint: disable=import-outside-toplevel
    from tapjax.checkpoints import list_checkpoints, load_checkpoint  # pylint: disable=import-outside-toplevel
    from tapjax.models import weights_from_params  # pylint: disable=import-outside-toplevel
    from tapjax.spin_model import couplings  # pylint: disable=import-outside-toplevel
    paths = list_checkpoints(cfg.paper_run)
    if not paths:
        print(f"  paper: no checkpoints under {cfg.paper_run}; skipped", flush=True)
        return
    first, last = paths[0], paths[-1]
    c_last = couplings(weights_from_params(load_checkpoint(last)[0]))
    c0 = couplings(weights_from_params(load_checkpoint(first)[0]))
    temps = np.geomspace(0.4 * ov.gaussian_equivalent_tc(c0), 1.5 * ov.largest_bond_eigenvalue(c_last), cfg.n_temps)
    out = [compute_curve(cfg, f"paper_{os.path.basename(p)[:-4]}", p, temps, None) for p in (first, last)]
    plot_group(os.path.join(wd, "overlap_paper.png"),
               {f"t={r.meta['t']:g} ep, err={r.meta['val_error']:.3f}": [r] for r in out},
               "full-MNIST 784-512-512-512-10 standard net, lr=1e-4", layers=(None, 1, 3))
    summary["paper"] = [row(r) for r in out]


def run(cfg: OverlapExperiment) -> dict:
    """Runs ``cfg.parts`` in order; updates and returns ``cfg.workdir/summary.json``."""
    from tapjax.checkpoints import atomic_write_json  # pylint: disable=import-outside-toplevel
    from tapjax.data import load_dataset  # pylint: disable=import-outside-toplevel
    wd = cfg.workdir
    os.makedirs(os.path.join(wd, "curves"), exist_ok=True)
    data = load_dataset("embedded")
    temps = cfg.temperatures
    summary_path = os.path.join(wd, "summary.json")
    summary = {}
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
    summary["settings"] = {k: getattr(cfg, k) for k in ("widths", "epochs", "lr", "times", "n_replicas", "n_temps",
                                                        "t_min", "t_max", "n_burn", "n_measure", "seeds",
                                                        "plant_fraction", "patch", "label_noise", "small_n")}
    t0 = time.time()
    tap_ref = None

    def base_reference():
        return tap_ref if tap_ref is not None else untrained_tap_reference(cfg, train_net(cfg, "standard_base", data))

    for part in cfg.parts:
        print(f"[{time.time() - t0:6.0f} s] part {part}", flush=True)
        if part == "training":
            tap_ref = part_training(cfg, data, temps, summary)
        elif part == "conditions":
            tap_ref = base_reference()
            part_conditions(cfg, data, temps, summary, tap_ref)
        elif part == "planted":
            tap_ref = base_reference()
            part_planted(cfg, data, temps, summary, tap_ref)
        elif part == "paper":
            part_paper(cfg, summary)
        elif part == "lowT":
            tap_ref = base_reference()
            part_low_t(cfg, summary, tap_ref)
        summary.setdefault("seconds", {})[part] = time.time() - t0
        atomic_write_json(summary_path, summary)
    print(f"[{time.time() - t0:6.0f} s] done: {summary_path}", flush=True)
    return summary


def main(argv):
    del argv
    try:
        cfg = OverlapExperiment.from_flags(FLAGS)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    run(cfg)


if __name__ == "__main__":
    app.run(main)
