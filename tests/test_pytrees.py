"""tapjax.pytrees.jsonable: numpy → JSON types, and the strict-JSON mode the experiment files use."""

import json
import math

import numpy as np
import pytest

from tapjax.pytrees import jsonable


def test_jsonable_converts_numpy_recursively():
    doc = {"a": np.float32(1.5), 2: (np.int64(3), np.bool_(True)), "arr": np.arange(3.0),
           "nested": [{"x": np.array([[1, 2]])}], "s": "text", "none": None}
    out = jsonable(doc)
    assert out == {"a": 1.5, "2": [3, True], "arr": [0.0, 1.0, 2.0], "nested": [{"x": [[1, 2]]}],
                   "s": "text", "none": None}
    assert type(out["a"]) is float and type(out["2"][0]) is int and type(out["2"][1]) is bool
    json.dumps(out, allow_nan=False)


def test_jsonable_nonfinite_modes():
    doc = {"nan": np.float64("nan"), "inf": float("inf"), "arr": np.array([1.0, np.nan, -np.inf])}
    keep = jsonable(doc)
    assert math.isnan(keep["nan"]) and keep["inf"] == math.inf and math.isnan(keep["arr"][1])
    with pytest.raises(ValueError):
        json.dumps(keep, allow_nan=False)            # NaN is not strict JSON
    strict = jsonable(doc, nonfinite="null")
    assert strict == {"nan": None, "inf": None, "arr": [1.0, None, None]}
    json.dumps(strict, allow_nan=False)
    with pytest.raises(ValueError, match="nonfinite='drop'"):
        jsonable(doc, nonfinite="drop")


def test_experiment_alias_is_the_strict_mode():
    from experiments import fits as fits_lib
    assert fits_lib._jsonable is fits_lib.jsonable                 # reproduce.py's import keeps working
    assert fits_lib.jsonable({"x": float("nan"), "y": np.int32(2)}) == {"x": None, "y": 2}
