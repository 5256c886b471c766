"""Smoke test of experiments/loss_reading.py: import, checkpoint choice, spread placement."""

import numpy as np
import pytest

from experiments import loss_reading


def test_choose_indices_keeps_fit_range_and_t0():
    t = np.array([0, 1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1, 2, 3, 4], float)
    rows = loss_reading.choose_indices(t, 6, t_min=1.0)
    assert len(rows) == 6 and rows[0] == 0 and rows[-4:] == [7, 8, 9, 10]
    with pytest.raises(ValueError, match="max_checkpoints"):
        loss_reading.choose_indices(t, 4, t_min=1.0)


def test_against_spread():
    s = {"n": 3, "mean": 1.0, "std": 0.1, "min": 0.9, "max": 1.1, "one_seed_interval": (0.5, 1.5)}
    v = loss_reading.against_spread(1.2, s)
    assert v["z"] == pytest.approx(2.0) and v["in_one_seed_interval"] and not v["in_min_max"]
    assert loss_reading.against_spread(None, s)["z"] is None
