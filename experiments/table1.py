r"""Table 1: validation error per configuration, ours next to the paper's.

    python -m experiments.table1 --runs_root=results/runs --out=results

Reads ``RUNS_ROOT/<run>/config.json`` and ``history.json`` for the four configurations
(binarized/standard × lr 1e-4/1e-6) and writes ``OUT/table1.json`` and ``OUT/table1.md`` with,
per configuration: the paper's epochs and error, the epochs we planned and completed, the
data, the final and best validation error, and a status (complete / partial / not run).
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from .figures import CONFIG_NAMES, load_history
from tapjax.checkpoints import atomic_write_bytes, atomic_write_json

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("runs_root", "results/runs", "Directory holding the run directories.")
    flags.DEFINE_string("out", "results", "Output directory.")


# Table 1 of the paper.
PAPER = {
    "binarized_lr1e-4": {"epochs": 500, "val_error": 0.0266},
    "binarized_lr1e-6": {"epochs": 960, "val_error": 0.0742},
    "standard_lr1e-4": {"epochs": 60, "val_error": 0.0189},
    "standard_lr1e-6": {"epochs": 960, "val_error": 0.0267},
}


def table_rows(runs: dict[str, str | None], planned_epochs: dict[str, int] | None = None) -> list[dict]:
    """One row per configuration from the run directories (``None``/missing → "not run")."""
    rows = []
    for name in CONFIG_NAMES:
        kind, lr = name.split("_lr")
        wd = runs.get(name)
        row = {"config": name, "kind": kind, "lr": float(lr), "paper_epochs": PAPER[name]["epochs"],
               "paper_val_error": PAPER[name]["val_error"], "workdir": wd}
        hist = load_history(wd)
        cfg = None
        if wd and os.path.exists(os.path.join(wd, "config.json")):
            with open(os.path.join(wd, "config.json")) as f:
                cfg = json.load(f)
        planned = (planned_epochs or {}).get(name) or (cfg or {}).get("epochs")
        row["planned_epochs"] = planned
        if not hist:
            row.update(status="not run", epochs_done=0, val_error=None, best_val_error=None)
        else:
            done = int(hist[-1]["epoch"])
            errs = [h["val_error"] for h in hist if h.get("val_error") is not None]
            row.update(epochs_done=done, val_error=errs[-1], best_val_error=min(errs),
                       status="complete" if planned and done >= planned else f"partial ({done}/{planned} epochs)")
            row["rel_diff_vs_paper"] = errs[-1] / PAPER[name]["val_error"] - 1.0
        if cfg:
            row.update(dataset=cfg.get("dataset"), seed=cfg.get("seed"),
                       widths=cfg.get("model", {}).get("widths"), batch_size=cfg.get("batch_size"),
                       momentum=cfg.get("momentum"), margin=cfg.get("margin"))
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    head = ("| configuration | paper epochs | paper val. error | our epochs (done/planned) | "
            "our val. error (final) | best | data | status |\n|---|---|---|---|---|---|---|---|\n")
    body = ""
    for r in rows:
        f = lambda v: "—" if v is None else f"{v:.4f}"
        body += (f"| {r['kind']}, lr={r['lr']:g} | {r['paper_epochs']} | {r['paper_val_error']:.4f} | "
                 f"{r['epochs_done']}/{r['planned_epochs'] or '—'} | {f(r['val_error'])} | "
                 f"{f(r['best_val_error'])} | {r.get('dataset') or '—'} | {r['status']} |\n")
    return head + body


def write_table1(runs: dict[str, str | None], out_dir: str,
                 planned_epochs: dict[str, int] | None = None) -> list[dict]:
    """Writes ``out_dir/table1.json`` and ``out_dir/table1.md``; returns the rows."""
    rows = table_rows(runs, planned_epochs)
    atomic_write_json(os.path.join(out_dir, "table1.json"), rows)
    atomic_write_bytes(os.path.join(out_dir, "table1.md"), markdown(rows).encode())
    return rows


def main(argv):
    del argv
    runs = {n: os.path.join(FLAGS.runs_root, n) for n in CONFIG_NAMES}
    rows = write_table1(runs, FLAGS.out)
    print(markdown(rows))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
