"""The installed ``tapjax`` command, run as a user would: from a directory outside the repository."""

import os
import shutil
import subprocess
import sys

import numpy as np


def _cmd():
    exe = shutil.which("tapjax")
    return [exe] if exe else [sys.executable, "-m", "tapjax.cli"]


def _run(args, cwd, cache):
    env = dict(os.environ, TAPJAX_CACHE_DIR=str(cache), OPENBLAS_NUM_THREADS="1")
    return subprocess.run(_cmd() + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_analyze_a_series_of_foreign_snapshots(tmp_path):
    """Two PyTorch-layout snapshots in a directory → summary table, CSV/JSON and a T_c(t) PNG."""
    rng = np.random.default_rng(0)
    sizes = (24, 16, 16, 6)
    ws = [rng.normal(0, np.sqrt(1 / 3 / m), (m, n)) for m, n in zip(sizes[:-1], sizes[1:])]
    src = tmp_path / "snaps"
    src.mkdir()
    for step, a in ((0, 1.0), (100, 1.3)):
        # state-dict key convention: <layer>.weight is PyTorch (out, in)
        np.savez(src / f"model_step{step}.npz",
                 **{f"fc{k}.weight": (a * w).T.astype(np.float32) for k, w in enumerate(ws)})
    out = tmp_path / "out"
    r = _run(["analyze", str(src), "--out", str(out), "--quiet"], cwd=tmp_path, cache=tmp_path / "cache")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "T_c" in r.stdout and "crossing" in r.stdout
    for f in ("analysis.npz", "analysis.json", "analysis.csv", "T_c.png"):
        assert (out / f).exists(), f
    import pandas as pd
    df = pd.read_csv(out / "analysis.csv")
    assert len(df) == 2 and np.all(np.isfinite(df["T_c"]))
    assert df["T_c"].iloc[1] > df["T_c"].iloc[0]      # larger couplings melt later


def test_bad_inputs_exit_2_with_the_file_named(tmp_path):
    r = _run(["analyze", str(tmp_path / "missing.safetensors")], cwd=tmp_path, cache=tmp_path / "c")
    assert r.returncode == 2 and "missing.safetensors" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    r = _run(["analyze", str(bad)], cwd=tmp_path, cache=tmp_path / "c")
    assert r.returncode == 2 and "notes.txt" in r.stderr


def test_every_subpackage_is_installed():
    """pyproject lists packages explicitly (experiments/ is mapped to tapjax.paper): a new
    subpackage that is not listed would be missing from a non-editable install."""
    import tomllib
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        cfg = tomllib.load(f)["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {os.path.relpath(d, root).replace(os.sep, ".") for d, _, files in os.walk(os.path.join(root, "tapjax"))
             if "__init__.py" in files}
    assert found | {"tapjax.paper"} == listed
    assert cfg["package-dir"]["tapjax.paper"] == "experiments"
