r"""The whole paper in one command: train → analyze → figures → fits → Table 1 → claims.

    python -m experiments.reproduce --preset=quick --out=results/quick          # CPU, minutes
    python -m experiments.reproduce --preset=paper --dataset=idx:/data/mnist \
        --out=results/paper                                                     # Table 1 exactly
    python -m experiments.reproduce --preset=paper --runs_root=/work/runs --train=false \
        --out=/work/runs/analysis                                               # existing runs

Presets (``PRESETS``):

* ``paper``: Table 1 exactly — 784-512-512-512-10, SGD momentum 0.9, batch 32, hinge margin
  10, lr 1e-4 / 1e-6, 500/960 epochs (binarized) and 60/960 (standard); full MNIST
  (``--dataset=idx:DIR`` or ``tfds:mnist``). Days on a 2-core CPU; a GPU is advised.
* ``quick``: the embedded 5k MNIST subset (4,000 train / 1,000 validation), **hidden widths
  128** (not 512) and tens of epochs — the whole chain on a CPU in a few minutes. Same lrs as
  the paper; with 125 steps per epoch an epoch here is 1/15 of a full-MNIST epoch.
* ``tiny``: the CI smoke test — 14×14 images (every other pixel of the embedded data, so
  N_0 = 196), widths 32, 1,024 training images, 4 epochs. Numbers are meaningless; it checks
  that every stage runs and writes sane files.

Layout of ``--out``: ``runs/<config>/`` (training, unless taken from ``--runs_root``),
``analysis/<config>[_ends].{npz,json}``, ``figures/fig3..fig9*.png`` and ``fits.png``,
``fits.json``, ``table1.{json,md}``, ``claims.json`` and ``summary.json``.

Resumable: training resumes from its last state (a finished run is skipped), an analysis is
skipped when its outputs are newer than the run's last checkpoint, Fig. 3 is cached; figures,
fits, table and claims are cheap and always regenerated. Runs found under ``--runs_root`` are
only read (never trained into).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import app, flags, logging

from . import analyze as analyze_lib
from . import figures as figures_lib
from . import fits as fits_lib
from . import msk as msk_lib
from . import table1 as table1_lib
from tapjax import checkpoints as ckpt
from tapjax.data import Dataset, load_dataset
from tapjax.models import ModelConfig
from tapjax.training import TrainConfig, train

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_enum("preset", "quick", ["tiny", "quick", "paper"], "Which reproduction to run.")
    flags.DEFINE_string("out", None, "Output root (default results/<preset>).")
    flags.DEFINE_string("runs_root", None, "Directory (or comma-separated directories) with existing run "
                        "directories named <config>, only read; configs missing there are trained "
                        "under OUT/runs if --train.")
    flags.DEFINE_string("dataset", None, "Override the preset's dataset ('embedded', 'idx:DIR', 'tfds:mnist').")
    flags.DEFINE_bool("train", True, "Train configurations that have no run yet.")
    flags.DEFINE_list("configs", list(figures_lib.CONFIG_NAMES), "Subset of configurations.")
    flags.DEFINE_bool("progress", True, "Progress bars.")
    flags.DEFINE_integer("bootstrap", None, "Bootstrap replicates of the fits (default: preset's).")


PAPER_WIDTHS = (512, 512, 512, 10)

PRESETS = {
    "paper": dict(widths=PAPER_WIDTHS, dataset=None, n_train=None, n_val=None,
                  epochs={"binarized_lr1e-4": 500, "binarized_lr1e-6": 960,
                          "standard_lr1e-4": 60, "standard_lr1e-6": 960},
                  schedule="log:16", first_epoch_levels=6, num_betas=128, fit_t_min=1.0,
                  bootstrap=500),
    "quick": dict(widths=(128, 128, 128, 10), dataset="embedded", n_train=None, n_val=None,
                  epochs={"binarized_lr1e-4": 40, "binarized_lr1e-6": 60,
                          "standard_lr1e-4": 20, "standard_lr1e-6": 60},
                  schedule="log:6", first_epoch_levels=4, num_betas=48, fit_t_min=1.0,
                  bootstrap=300),
    "tiny": dict(widths=(32, 32, 32, 10), dataset="embedded", n_train=1024, n_val=500, pixel_stride=2,
                 epochs={"binarized_lr1e-4": 4, "binarized_lr1e-6": 4,
                         "standard_lr1e-4": 4, "standard_lr1e-6": 4},
                 schedule="every", first_epoch_levels=3, num_betas=32, fit_t_min=0.0,
                 bootstrap=50),
}


def subsample_pixels(data: Dataset, stride: int) -> Dataset:
    """Keeps every ``stride``-th row and column of square images (28×28 → 14×14 for 2)."""
    side = int(round(np.sqrt(data.input_dim)))
    if side * side != data.input_dim:
        raise ValueError(f"{data.name}: {data.input_dim} features are not a square image")
    pick = lambda x: x.reshape(-1, side, side)[:, ::stride, ::stride].reshape(x.shape[0], -1)
    return Dataset(pick(data.x_train), data.y_train, pick(data.x_val), data.y_val,
                   f"{data.name}[pixels::{stride}]")


def prepare_data(dataset: str, preset: dict) -> Dataset:
    """Loads ``dataset`` and applies the preset's subset and pixel subsampling."""
    data = load_dataset(dataset)
    if preset.get("n_train") or preset.get("n_val"):
        data = data.subset(preset.get("n_train"), preset.get("n_val"))
    if preset.get("pixel_stride", 1) > 1:
        data = subsample_pixels(data, preset["pixel_stride"])
    return data


def train_config(name: str, preset: dict, input_dim: int, dataset_name: str) -> TrainConfig:
    kind, lr = name.split("_lr")
    return TrainConfig(model=ModelConfig(kind=kind, input_dim=input_dim, widths=preset["widths"]),
                       lr=float(lr), epochs=preset["epochs"][name], schedule=preset["schedule"],
                       first_epoch_levels=preset["first_epoch_levels"], dataset=dataset_name)


def _epochs_done(workdir: str) -> int:
    path = os.path.join(workdir, "history.json")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        hist = json.load(f)
    return int(hist[-1]["epoch"]) if hist else 0


def resolve_runs(configs, out_dir: str, runs_root: str | None) -> dict[str, tuple[str, bool]]:
    """config → (run directory, read_only).

    ``runs_root`` is one directory or a comma-separated list; the first one holding
    checkpoints for a config wins and is only read. Other configs train under ``out_dir/runs``.
    """
    roots = [r for r in (runs_root or "").split(",") if r]
    runs = {}
    for name in configs:
        found = next((os.path.join(r, name) for r in roots
                      if ckpt.list_checkpoints(os.path.join(r, name))), None)
        runs[name] = (found, True) if found else (os.path.join(out_dir, "runs", name), False)
    return runs


def train_missing(runs, preset: dict, dataset: str | None, progress: bool) -> dict[str, dict]:
    """Trains (or resumes) every writable run that has not reached its epochs."""
    report, data = {}, None
    for name, (wd, read_only) in runs.items():
        if read_only:
            report[name] = {"skipped": "read-only run from --runs_root", "epochs_done": _epochs_done(wd)}
            continue
        if _epochs_done(wd) >= preset["epochs"][name]:
            report[name] = {"skipped": "finished", "epochs_done": _epochs_done(wd)}
            continue
        if data is None:
            if not dataset:
                raise app.UsageError("this preset needs --dataset=idx:DIR or tfds:mnist to train")
            data = prepare_data(dataset, preset)
        cfg = train_config(name, preset, data.input_dim, data.name)
        t0 = time.monotonic()
        res = train(cfg, data, wd, progress=progress)
        report[name] = {"seconds": time.monotonic() - t0, "epochs_done": len(res.history),
                        "final_val_error": res.history[-1]["val_error"] if res.history else None}
    return report


# --------------------------------------------------------------------------- claims
def _verdict(ok_all: bool, ok_some: bool) -> str:
    return "reproduced" if ok_all else ("partly" if ok_some else "not reproduced")


def spectrum_split(before: np.ndarray, after: np.ndarray) -> dict:
    """How many eigenvalues of ``after`` left the support of ``before`` (upper edge), and how far."""
    b, a = np.sort(before[np.isfinite(before)]), np.sort(after[np.isfinite(after)])
    if b.size == 0 or a.size == 0:
        return {}
    edge = b[-1]
    out = a[a > edge]
    q = lambda x: float(np.percentile(np.abs(x), 90))
    return {"n": int(a.size), "num_above_initial_edge": int(out.size), "initial_edge": float(edge),
            "largest_after": float(a[-1]), "largest_over_edge": float(a[-1] / edge) if edge > 0 else None,
            "bulk_p90_rel_change": q(a) / q(b) - 1.0}


def low_edge_count(ev: np.ndarray, frac: float = 0.1) -> int:
    """Eigenvalues within ``frac`` of the way from the lowest one to the median (edge density)."""
    ev = np.sort(ev[np.isfinite(ev)])
    if ev.size == 0:
        return 0
    return int(np.sum(ev <= ev[0] + frac * (np.median(ev) - ev[0])))


def _val(x) -> float | None:
    """A finite number, or None for a missing value (None/NaN: e.g. rows whose ``crossing`` is not a
    crossing have β_c = T_c = NaN, and fits.json writes NaN as null)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _ok(test, *xs) -> bool:
    """``test(*values)`` when every value is present, else False (missing is never a pass)."""
    vs = [_val(x) for x in xs]
    return all(v is not None for v in vs) and bool(test(*vs))


def _missing(d: dict, keys) -> list[str]:
    return [k for k in keys if _val(d.get(k)) is None]


def evaluate_claims(fits_doc: dict, rows: list[dict], analysis_dir: str) -> list[dict]:
    """Automatic evidence and verdicts for the paper's claims (criteria stated per claim).

    A missing number (None/NaN: a run whose last rows have no crossing, no level spacing, ...)
    counts as "not shown" for that run, never as a pass and never as a filled-in value; the
    evidence lists it under ``missing``.
    """
    R = fits_doc["runs"]
    claims = []

    ev = {r["config"]: {k: r.get(k) for k in ("val_error", "paper_val_error", "status", "epochs_done",
                                             "planned_epochs", "dataset")} for r in rows}
    good = [r["status"] == "complete" and _ok(lambda v, p: abs(v / p - 1) <= 0.2, r.get("val_error"),
                                              r.get("paper_val_error")) for r in rows]
    claims.append({"claim": "Table 1 validation error rates (0.0266, 0.0742, 0.0189, 0.0267)",
                   "criterion": "complete run within 20% of the paper's error", "evidence": ev,
                   "verdict": _verdict(all(good), any(good))})

    ev = {n: {"T_c0": r.get("T_c0"), "analytic_T_c": r.get("analytic_T_c"), "ratio": r.get("T_c0_over_analytic"),
              "missing": _missing(r, ("T_c0", "T_c0_over_analytic"))} for n, r in R.items()}
    ok = [_ok(lambda x: abs(x - 1) <= 0.05, r.get("T_c0_over_analytic")) for r in R.values()]
    claims.append({"claim": "T_c at initialization near the analytic MSK value",
                   "criterion": "|T_c(0)/T_c^MSK - 1| <= 5%", "evidence": ev,
                   "verdict": _verdict(bool(ok) and all(ok), any(ok))})

    ev, full, some = {}, [], []
    for n, r in R.items():
        if not n.endswith("1e-4"):
            continue
        f = r.get("T_c") or {"ok": False}
        e = {"T_c_growth": r.get("T_c_growth"), "fit_ok": f["ok"], "missing": _missing(r, ("T_c_growth",))}
        if f["ok"]:
            e.update(exponents=f["exponents"], exponent_ci=f["bootstrap_exponent_ci"], t_break=f["t_break"],
                     t_break_ci=f["t_break_ci"], delta_bic=f["delta_bic"],
                     plateau_time=r["val_error"].get("plateau_time"),
                     break_over_plateau=f.get("break_over_plateau"))
            bp = f.get("break_over_plateau")
            full.append(_ok(lambda g: g > 1, r.get("T_c_growth")) and bool(f.get("break_detected"))
                        and bool(f.get("exponent_drop_significant")) and _ok(lambda b: 1 / 3 <= b <= 3, bp))
            some.append(_ok(lambda g, a1: g > 1 and a1 > 0, r.get("T_c_growth"), (f.get("exponents") or [None])[0]))
        ev[n] = e
    claims.append({"claim": "T_c grows as a power law, with a smaller exponent after the error plateaus",
                   "criterion": "growth; break detected (ΔBIC>2); α2<α1 with disjoint bootstrap CIs; "
                                "break within 3x of the error plateau time (lr 1e-4 runs)",
                   "evidence": ev, "verdict": _verdict(bool(full) and all(full), any(some))})

    ev, ok = {}, []
    for n in R:
        if not n.endswith("1e-4"):
            continue
        e = figures_lib.load_results(analysis_dir, n, ends=True)
        if e is None or "bond_spectra" not in e:
            continue
        bond = spectrum_split(e["bond_spectra"][0], e["bond_spectra"][-1])
        c0, c1 = low_edge_count(e["tap_spectra"][0]), low_edge_count(e["tap_spectra"][-1])
        ev[n] = {"bond": bond, "tap_low_edge_count_before": c0, "tap_low_edge_count_after": c1,
                 "tap_s0_over_styp_before": _val(e["level_spacing"][0]),
                 "tap_s0_over_styp_after": _val(e["level_spacing"][-1])}
        ok.append(1 <= bond.get("num_above_initial_edge", 0) <= 0.05 * bond.get("n", 1) and 3 * c1 <= c0)
    claims.append({"claim": "eigenvalues split off the bulk of the bond spectrum and of I - M at T_c",
                   "criterion": "1..5% of the eigenvalues of J beyond the initial edge, and the number "
                                "of eigenvalues of I-M(beta_c) within 10% of the way from the lowest "
                                "to the median drops >= 3x", "evidence": ev,
                   "verdict": _verdict(bool(ok) and all(ok), any(ok))})

    ev, ok = {}, []
    for n, r in R.items():
        if n.endswith("1e-4"):
            jump = r.get("level_spacing_jump") or {}
            ev[n] = {"s0": r.get("level_spacing0"), "max_first_epoch_ratio": r.get("level_spacing_max_first_epoch_ratio"),
                     "largest_jump": jump,
                     "missing": _missing({**r, "jump_t": jump.get("t")},
                                         ("level_spacing0", "level_spacing_max_first_epoch_ratio", "jump_t"))}
            ok.append(_ok(lambda q, jt: q > 5 and jt <= 1.0, r.get("level_spacing_max_first_epoch_ratio"), jump.get("t")))
    claims.append({"claim": "the normalized first level spacing jumps early",
                   "criterion": "largest jump of s0/s_typ at t <= 1 epoch and > 5x within the first epoch (lr 1e-4)",
                   "evidence": ev, "verdict": _verdict(bool(ok) and all(ok), any(ok))})

    ev = {n: r.get("lambda_min_R_max_rel_change") for n, r in R.items()}
    ok = [_ok(lambda x: x < 0.012, v) for v in ev.values()]
    claims.append({"claim": "λ_min(R) changes by less than 1.2%", "criterion": "max_t |λ_min(R)(t)/λ_min(R)(0) - 1| < 0.012",
                   "evidence": ev, "verdict": _verdict(bool(ok) and all(ok), any(ok))})

    ev, ok = {}, []
    for kind in figures_lib.KINDS:
        hi, lo = R.get(f"{kind}_lr1e-4"), R.get(f"{kind}_lr1e-6")
        if not (hi and lo):
            continue
        e = {k: {"lr1e-4": hi.get(k), "lr1e-6": lo.get(k)} for k in ("onset_T_c", "onset_lambda_max_J", "onset_level_spacing")}
        ev[kind] = e
        # a missing onset at lr 1e-6 may mean "no growth yet" (later than any t), but a missing
        # onset at lr 1e-4 shows nothing: only a present 1e-4 onset can pass
        lo_on, hi_on = _val(lo.get("onset_T_c")), _val(hi.get("onset_T_c"))
        ok.append(hi_on is not None and (np.inf if lo_on is None else lo_on) > hi_on)
    claims.append({"claim": "100x smaller lr delays the growth of T_c and the spacing jump (lazy then rich)",
                   "criterion": "onset of T_c growth (5% above T_c(0)) later at lr 1e-6 than at 1e-4",
                   "evidence": ev, "verdict": _verdict(bool(ok) and all(ok), any(ok)) if ok else "not tested"})
    return claims


def reproduce(preset_name: str, out_dir: str, *, runs_root: str | None = None,
              dataset: str | None = None, do_train: bool = True, configs=None,
              progress: bool = True, bootstrap: int | None = None) -> dict:
    """Runs the chain; returns the summary (also written to ``out_dir/summary.json``)."""
    preset = PRESETS[preset_name]
    configs = list(configs or figures_lib.CONFIG_NAMES)
    dataset = dataset or preset["dataset"]
    os.makedirs(out_dir, exist_ok=True)
    fig_dir, an_dir = os.path.join(out_dir, "figures"), os.path.join(out_dir, "analysis")
    timings, t_all = {}, time.monotonic()
    runs = resolve_runs(configs, out_dir, runs_root)

    t0 = time.monotonic()
    train_report = train_missing(runs, preset, dataset, progress) if do_train else {}
    timings["train"] = time.monotonic() - t0

    t0 = time.monotonic()
    an_report = {}
    for name, (wd, _) in runs.items():
        if not ckpt.list_checkpoints(wd):
            an_report[name] = {"skipped": "no checkpoints"}
            continue
        logging.info("analyzing %s", wd)
        an_report[name] = analyze_lib.analyze_workdir(wd, os.path.join(an_dir, name),
                                                      num_betas=preset["num_betas"], progress=progress)
    timings["analyze"] = time.monotonic() - t0

    t0 = time.monotonic()
    first = next((wd for wd, _ in runs.values() if ckpt.list_checkpoints(wd)), None)
    sizes = None
    if first:
        with open(os.path.join(first, "config.json")) as f:
            m = json.load(f)["model"]
        sizes = (m["input_dim"], *m["widths"])
    if sizes is None:
        side = 28 // preset.get("pixel_stride", 1)
        sizes = (side * side, *preset["widths"])
    fig3 = msk_lib.run_fig3(fig_dir, sizes, num_betas=preset["num_betas"], chunk=preset["num_betas"],
                            progress=progress)
    timings["fig3"] = time.monotonic() - t0

    t0 = time.monotonic()
    run_dirs = {n: wd for n, (wd, _) in runs.items()}
    figs = figures_lib.make_figures(an_dir, run_dirs, fig_dir)
    timings["figures"] = time.monotonic() - t0

    t0 = time.monotonic()
    fits_doc = fits_lib.fit_all(an_dir, run_dirs, out_dir, t_min=preset["fit_t_min"],
                                bootstrap=bootstrap if bootstrap is not None else preset["bootstrap"])
    timings["fits"] = time.monotonic() - t0

    planned = {n: preset["epochs"][n] for n in runs}   # the preset's target, also for read-only runs
    rows = table1_lib.write_table1(run_dirs, out_dir, planned)
    claims = evaluate_claims(fits_doc, rows, an_dir)
    ckpt.atomic_write_json(os.path.join(out_dir, "claims.json"), fits_lib._jsonable(claims))
    timings["total"] = time.monotonic() - t_all

    summary = {"preset": preset_name, "preset_settings": {k: (list(v) if isinstance(v, tuple) else v)
                                                          for k, v in preset.items()},
               "dataset": dataset, "runs": {n: {"workdir": wd, "read_only": ro} for n, (wd, ro) in runs.items()},
               "train": train_report, "analysis": an_report,
               "fig3": {k: fig3[k] for k in ("analytic_T_c", "tap_min_beta", "tap_min_value", "analytic_beta_c")},
               "figures": {**figs["files"], "fig3": os.path.join(fig_dir, "fig3_msk.png"),
                           "fits": os.path.join(fig_dir, "fits.png")},
               "verdicts": {c["claim"]: c["verdict"] for c in claims},
               "seconds": timings}
    ckpt.atomic_write_json(os.path.join(out_dir, "summary.json"), fits_lib._jsonable(summary))
    return summary


def main(argv):
    del argv
    out = FLAGS.out or os.path.join("results", FLAGS.preset)
    s = reproduce(FLAGS.preset, out, runs_root=FLAGS.runs_root, dataset=FLAGS.dataset,
                  do_train=FLAGS.train, configs=FLAGS.configs, progress=FLAGS.progress,
                  bootstrap=FLAGS.bootstrap)
    print(json.dumps({"out": out, "verdicts": s["verdicts"],
                      "seconds": {k: round(v, 1) for k, v in s["seconds"].items()}}, indent=1))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
