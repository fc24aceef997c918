"""The wire JSON without orjson: the stdlib stand-in decodes and refuses what orjson does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stratum import protocol

ROOT = Path(__file__).resolve().parent.parent

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def test_orjson_is_the_fast_path_when_installed():
    assert protocol.BACKEND == "orjson"


@given(json_values)
def test_stdlib_round_trip_matches_orjson(value):
    encoded = protocol.stdlib_dumps(value)
    assert orjson.loads(encoded) == orjson.loads(orjson.dumps(value))
    assert protocol.stdlib_loads(orjson.dumps(value)) == orjson.loads(orjson.dumps(value))


@pytest.mark.parametrize(
    "raw",
    [
        b"NaN",
        b"[Infinity]",
        b'{"id":-Infinity}',
        b"\xff",
        b'{"id":"\xc3"}',
        b"[" * 20_000,
        b"{}\x00",
        b"",
        b"{nope",
        b"[" + b"9" * 5000 + b"]",  # beyond Python's int-string limit
    ],
)
def test_stdlib_loads_refuses_what_orjson_refuses(raw):
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    with pytest.raises(json.JSONDecodeError) as exc:
        protocol.stdlib_loads(raw)
    assert exc.value.msg


def test_stdlib_dumps_is_compact_ascii_and_echoes_any_decoded_string():
    assert protocol.stdlib_dumps({"id": 1, "result": [0.001, "é"], "error": None}) == (
        b'{"id":1,"result":[0.001,"\\u00e9"],"error":null}'
    )
    lone = protocol.stdlib_loads(b'["\\ud800"]')[0]  # orjson refuses; json lets it through
    assert protocol.stdlib_loads(protocol.stdlib_dumps(lone)) == lone


# Block orjson's import the way a missing install does, then serve a few requests.
SCRIPT = r"""
import importlib.abc, sys
class NoOrjson(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "orjson":
            raise ImportError("simulated: orjson not installed")
        return None
sys.meta_path.insert(0, NoOrjson())
from stratum import protocol
print(protocol.BACKEND)
r = protocol.decode_request(b'{"id":"a","method":"mining.subscribe","params":["cgminer"]}')
print(r.id, r.method, r.params)
for bad in (b"{nope", b"[NaN]", b"\xff", b"[" * 20000):
    try:
        protocol.decode_request(bad)
    except protocol.ProtocolError as exc:
        print(exc.label, exc.fatal)
sys.stdout.flush()  # print() is buffered above .buffer unless PYTHONUNBUFFERED is set
sys.stdout.buffer.write(protocol.true_reply("x") + protocol.error_reply(7, 21, "Job not found"))
sys.stdout.buffer.write(protocol.set_difficulty(1024.0))
"""


def test_protocol_runs_on_the_standard_library_alone():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    assert out.splitlines() == [
        "json",
        "a mining.subscribe ['cgminer']",
        "invalid_json True",
        "invalid_json True",
        "invalid_json True",
        "invalid_json True",
        '{"id":"x","result":true,"error":null}',
        '{"id":7,"result":null,"error":[21,"Job not found",null]}',
        '{"id":null,"method":"mining.set_difficulty","params":[1024]}',
    ]
