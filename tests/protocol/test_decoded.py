"""Every decoder returns the one result shape, bucky.protocol.decoded.Decoded, and never raises
for bad bytes; no codec defines a result type of its own."""

from __future__ import annotations

import ast
import struct
import typing
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bucky.protocol
from bucky.errors import ProtocolError
from bucky.protocol import collectd, graphite, metricsd, statsd
from bucky.protocol.decoded import Decoded

DECODERS: dict[str, Callable[[bytes], Decoded]] = {
    "collectd.decode": collectd.decode,
    "metricsd.decode": metricsd.decode,
    "statsd.parse": statsd.parse,
    "graphite.decode_plaintext": graphite.decode_plaintext,
    "graphite.decode_pickle_payload": graphite.decode_pickle_payload,
    "graphite.decode_pickle_frames": graphite.decode_pickle_frames,
}

# Bytes each decoder reads as something: a start for Hypothesis to mutate.
GOOD = {
    "collectd.decode": collectd.encode([collectd.ValueList(
        "h", "cpu", "0", "cpu", "idle", 1_700_000_000.0, 10.0, ((collectd.DERIVE, 5),))])[0],
    "metricsd.decode": metricsd.encode("h", [metricsd.Record(
        metricsd.Kind.COUNTER, metricsd.Action.UPDATE, "a", 1)]),
    "statsd.parse": b"a:1|c\nb:2|ms|@0.5\n_e{1,1}:a|b",
    "graphite.decode_plaintext": b"a.b 1 10\nc 2 11\n",
    "graphite.decode_pickle_payload": graphite.encode_pickle([("a", (10, 1))])[4:],
    "graphite.decode_pickle_frames": graphite.encode_pickle([("a", (10, 1))]),
}


@pytest.mark.parametrize("name", DECODERS)
def test_each_decoder_is_annotated_to_return_decoded(name: str) -> None:
    decoder = DECODERS[name]
    returned = typing.get_type_hints(decoder)["return"]
    assert typing.get_origin(returned) is Decoded or returned is Decoded


@pytest.mark.parametrize("name", DECODERS)
def test_good_bytes_give_records_and_no_errors(name: str) -> None:
    decoded = DECODERS[name](GOOD[name])
    assert type(decoded) is Decoded
    assert decoded.records and decoded.errors == [] and decoded.rest == b""


def _check(decoded: object, data: bytes) -> None:
    assert type(decoded) is Decoded
    assert isinstance(decoded.records, list)
    assert all(isinstance(e, ProtocolError) and e.reason for e in decoded.errors)
    assert isinstance(decoded.rest, bytes) and data.endswith(decoded.rest)
    assert decoded.host is None or isinstance(decoded.host, str)


@pytest.mark.parametrize("name", DECODERS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_bytes_give_the_one_shape_and_never_raise(name: str, data: st.DataObject) -> None:
    good = GOOD[name]
    blob = data.draw(st.one_of(
        st.binary(max_size=300),
        # flip, cut or extend the good bytes: nearer to what a decoder has to think about
        st.tuples(st.integers(0, len(good) - 1), st.integers(0, 255)).map(
            lambda flip: good[: flip[0]] + bytes([flip[1]]) + good[flip[0] + 1 :]),
        st.integers(0, len(good)).map(lambda cut: good[:cut]),
        st.binary(max_size=40).map(lambda tail: good + tail),
    ))
    _check(DECODERS[name](blob), blob)


def test_a_whole_rejected_input_is_one_error_and_no_records() -> None:
    for decoded in (
        metricsd.decode(b"\x00not metricsd"),
        graphite.decode_pickle_payload(b"garbage"),
        graphite.decode_pickle_frames(struct.pack("!L", graphite.MAX_PICKLE_FRAME + 1)),
        collectd.decode(b"\x02\x00\x00\x05x", security_level=2),
    ):
        assert decoded.records == [] and len(decoded.errors) == 1


def test_no_codec_defines_a_result_type_of_its_own() -> None:
    """A NamedTuple with an `errors` (or `error`) field outside decoded.py is a second shape."""
    second_shapes = []
    for path in Path(bucky.protocol.__file__).parent.glob("*.py"):
        if path.name == "decoded.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            fields = {
                item.target.id for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            }
            if fields & {"errors", "error"}:
                second_shapes.append(f"{path.name}: {node.name}")
    assert second_shapes == []
