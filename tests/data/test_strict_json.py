"""JSON that tunesmith writes is standard JSON: no bare NaN or Infinity."""

import json
import math

from tunesmith.data.records import dumps_strict


def _strict(text: str) -> object:
    def refuse(word: str) -> None:
        raise AssertionError(f"{word} in {text}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_floats_become_null() -> None:
    value = {"loss": math.nan, "rows": [1.5, math.inf, {"x": -math.inf}], "t": (2, "NaN")}
    assert _strict(dumps_strict(value)) == {"loss": None, "rows": [1.5, None, {"x": None}],
                                            "t": [2, "NaN"]}
    assert dumps_strict({"a": 1.0}, indent=1) == json.dumps({"a": 1.0}, indent=1)
