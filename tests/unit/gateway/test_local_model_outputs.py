"""Model outputs are made JSON-safe before the pipeline settles (and charges) the request."""

from __future__ import annotations

import numpy
import orjson
import pytest

from creditgate.errors import UpstreamError
from creditgate.gateway.local_models import _json_safe


def test_numpy_values_and_map_keys_become_json() -> None:
    value = [{numpy.int64(0): numpy.float32(0.25), 1: numpy.float64(0.75)},
             {"labels": numpy.array(["a", "b"], dtype=object), "count": numpy.uint8(2), "ok": numpy.bool_(True)},
             (numpy.array([[1, 2]], dtype=numpy.int64), numpy.array([0.5], dtype=numpy.float16))]
    safe = _json_safe(value, "out")
    assert safe == [{"0": 0.25, "1": 0.75}, {"labels": ["a", "b"], "count": 2, "ok": True}, [[[1, 2]], [0.5]]]
    assert type(safe[1]["count"]) is int and type(safe[1]["ok"]) is bool
    assert orjson.loads(orjson.dumps(safe)) == safe


@pytest.mark.parametrize("value", [[complex(1, 2)], numpy.array([1 + 2j]), {(1, 2): 0.5}, [b"raw"], object()])
def test_what_json_cannot_hold_is_the_models_fault(value: object) -> None:
    with pytest.raises(UpstreamError) as raised:
        _json_safe(value, "out")
    assert "'out'" in raised.value.message
