"""MetricsD codec: the vector table drives decode and encode; Hypothesis guards the contract."""

from __future__ import annotations

import ast
import json
import math
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bucky.protocol.metricsd as codec
from bucky.errors import DecodeError, EncodeError, ProtocolError
from bucky.protocol.decoded import Decoded
from bucky.protocol.metricsd import (
    Action,
    Kind,
    NumberType,
    Record,
    decode,
    encode,
    encode_header,
    encode_number,
    encode_record,
    smallest_number_type,
)

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "metricsd" / "vectors.json").read_text()
)["vectors"]


def _bytes(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text.replace(" ", ""))


def _record(row: list) -> Record:
    kind, action, name, value = row
    return Record(Kind[kind.upper()], Action[action.upper()], name, value)


def _ids(vectors: list[dict]) -> list[str]:
    return [v["title"] for v in vectors]


GOOD = [v for v in VECTORS if "raises" not in v and v["error"] is None]
PARTIAL = [v for v in VECTORS if "raises" not in v and v["error"] is not None]
REJECTED = [v for v in VECTORS if "raises" in v]


@pytest.mark.parametrize("vector", GOOD, ids=_ids(GOOD))
def test_good_vectors_decode(vector: dict) -> None:
    records = [_record(r) for r in vector["records"]]
    assert decode(_bytes(vector["hex"])) == Decoded(records, [], host=vector["host"])


@pytest.mark.parametrize("vector", GOOD, ids=_ids(GOOD))
def test_good_vectors_encode(vector: dict) -> None:
    records = [_record(r) for r in vector["records"]]
    data = encode(vector["host"], records)
    if vector["canonical"]:
        assert data == _bytes(vector["hex"])
    assert decode(data) == Decoded(records, [], host=vector["host"])


@pytest.mark.parametrize("vector", PARTIAL, ids=_ids(PARTIAL))
def test_bad_record_keeps_the_records_before_it(vector: dict) -> None:
    decoded = decode(_bytes(vector["hex"]))
    assert decoded.host == vector["host"]
    assert decoded.records == [_record(r) for r in vector["records"]]
    [error] = decoded.errors
    assert isinstance(error, DecodeError)
    assert error.reason == vector["error"]


@pytest.mark.parametrize("vector", REJECTED, ids=_ids(REJECTED))
def test_bad_header_rejects_the_datagram(vector: dict) -> None:
    decoded = decode(_bytes(vector["hex"]))
    assert decoded.records == [] and decoded.host is None
    [error] = decoded.errors
    assert isinstance(error, DecodeError)
    assert error.reason == vector["raises"]
    with pytest.raises(DecodeError) as info:  # the header reader on its own raises
        codec.decode_header(_bytes(vector["hex"]))
    assert info.value.reason == vector["raises"]


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("action", list(Action))
def test_every_kind_and_action_round_trips(kind: Kind, action: Action) -> None:
    value = 7 if action is Action.UPDATE else None
    record = Record(kind, action, "svc.requests", value)
    wire = encode_record(record)
    assert wire[0] == kind.value | action.value
    assert decode(encode_header("h") + wire) == Decoded([record], [], host="h")


NUMBERS = [
    (NumberType.U8, 200, "00c8"),
    (NumberType.I8, -2, "01fe"),
    (NumberType.U16, 513, "100201"),
    (NumberType.I16, -2, "11fffe"),
    (NumberType.U32, 65536, "2000010000"),
    (NumberType.I32, -65536, "21ffff0000"),
    (NumberType.U64, 2**64 - 1, "30ffffffffffffffff"),
    (NumberType.I64, -(2**63), "318000000000000000"),
    (NumberType.F32, 1.5, "403fc00000"),
    (NumberType.F64, -0.25, "41bfd0000000000000"),
]


@pytest.mark.parametrize(
    ("number_type", "value", "wire"), NUMBERS, ids=[n[0].name for n in NUMBERS]
)
def test_every_number_type_round_trips(number_type: NumberType, value: float, wire: str) -> None:
    assert encode_number(value, number_type).hex() == wire
    record = Record(Kind.HISTOGRAM, Action.UPDATE, "x", value)
    data = encode_header(None) + encode_record(record, number_type)
    assert data.endswith(bytes.fromhex(wire))
    decoded = decode(data)
    assert decoded.records == [record]
    assert type(decoded.records[0].value) is type(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, NumberType.U8), (255, NumberType.U8), (256, NumberType.U16), (-1, NumberType.I8),
        (-128, NumberType.I8), (-129, NumberType.I16), (65535, NumberType.U16),
        (65536, NumberType.U32), (-32769, NumberType.I32), (2**32 - 1, NumberType.U32),
        (2**32, NumberType.U64), (-(2**31) - 1, NumberType.I64), (2**63, NumberType.U64),
        (1.0, NumberType.F64), (0.0, NumberType.F64),
    ],
)  # fmt: skip
def test_encoder_picks_the_smallest_type(value: float, expected: NumberType) -> None:
    assert smallest_number_type(value) is expected


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: encode_number(2**64), ValueError),
        (lambda: encode_number(-(2**63) - 1), ValueError),
        (lambda: encode_number(math.nan), ValueError),
        (lambda: encode_number(math.inf), ValueError),
        (lambda: encode_number(1e39, NumberType.F32), ValueError),
        (lambda: encode_number(10**400, NumberType.F64), ValueError),
        (lambda: encode_number(300, NumberType.U8), ValueError),
        (lambda: encode_number(1.5, NumberType.I32), EncodeError),
        (lambda: encode_number(True), EncodeError),
        (lambda: encode_number("1"), EncodeError),  # type: ignore[arg-type]
        (lambda: encode_record(Record(Kind.GAUGE, Action.UPDATE, "g")), ValueError),
        (lambda: encode_record(Record(Kind.GAUGE, Action.CLEAR, "g", 1)), ValueError),
        (lambda: encode_record(Record(Kind.GAUGE, Action.UPDATE, "", 1)), ValueError),
        (lambda: encode_record(Record(Kind.GAUGE, Action.UPDATE, "a b", 1)), ValueError),
        (lambda: encode_record(Record(Kind.GAUGE, Action.UPDATE, "a\x00", 1)), ValueError),
        (lambda: encode_record(Record(Kind.GAUGE, Action.UPDATE, "x" * 65535, 1)), ValueError),
        (lambda: encode_header("bad\thost"), ValueError),
    ],
)
def test_encoder_refuses_what_the_decoder_would_reject(call, error) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error):
        call()


def test_longest_name_fits() -> None:
    name = "x" * codec.MAX_STRING_BYTES
    record = Record(Kind.COUNTER, Action.DELETE, name)
    assert decode(encode(None, [record])).records == [record]


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = encode("h", [Record(Kind.COUNTER, Action.UPDATE, "a", 1)])
    assert decode(bytearray(data)) == decode(data) == decode(memoryview(data))


def test_float32_values_decode_to_the_nearest_float32() -> None:
    data = encode_header(None) + encode_record(
        Record(Kind.GAUGE, Action.UPDATE, "g", 0.1), NumberType.F32
    )
    assert decode(data).records[0].value == struct.unpack(">f", struct.pack(">f", 0.1))[0]


# -- properties --------------------------------------------------------------------------------

_name_chars = st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"))
names = st.text(_name_chars, min_size=1, max_size=40).filter(
    lambda s: not any(c.isspace() for c in s)
)
values = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)


@st.composite
def records(draw: st.DrawFn) -> Record:
    action = draw(st.sampled_from(Action))
    value = draw(values) if action is Action.UPDATE else None
    return Record(draw(st.sampled_from(Kind)), action, draw(names), value)


@given(st.binary(max_size=300))
def test_decode_any_bytes_gives_records_or_protocol_error(data: bytes) -> None:
    _decode_contract(data)


@given(st.binary(max_size=200))
def test_decode_any_records_after_a_valid_header(tail: bytes) -> None:
    _decode_contract(encode_header("host.example") + tail)


@given(st.one_of(st.none(), names), st.lists(records(), max_size=8), st.data())
def test_mutated_datagrams_keep_the_contract(host, recs, data) -> None:  # type: ignore[no-untyped-def]
    wire = bytearray(encode(host, recs))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    _decode_contract(bytes(wire[:cut]))


@given(st.one_of(st.none(), names), st.lists(records(), max_size=10))
def test_decode_encode_round_trip(host: str | None, recs: list[Record]) -> None:
    assert decode(encode(host, recs)) == Decoded(recs, [], host=host)


@settings(max_examples=50)
@given(st.sampled_from(NumberType), values)
def test_numbers_round_trip_in_every_type_they_fit(number_type: NumberType, value: float) -> None:
    try:
        wire = encode_number(value, number_type)
    except (ValueError, TypeError):
        return  # does not fit that type
    decoded = decode(encode_header(None) + bytes((Kind.GAUGE,)) + b"\x00\x02g\x00" + wire)
    got = decoded.records[0].value
    if number_type is NumberType.F32:
        assert got == struct.unpack(">f", struct.pack(">f", value))[0]
    elif number_type is NumberType.F64:
        assert got == float(value)  # an int sent as float64 is rounded to 53 bits
    else:
        assert got == value


def _reference_decode(data: bytes) -> Decoded:
    """The careful record-at-a-time decoder the fast path must agree with."""
    host, pos = codec.decode_header(data)
    records = []
    while pos < len(data):
        try:
            record, pos = codec._decode_record(data, pos)
        except DecodeError as err:
            return Decoded(records, [err], host=host)
        records.append(record)
    return Decoded(records, [], host=host)


@given(st.lists(st.one_of(records(), st.binary(max_size=12)), max_size=8))
def test_fast_decoder_agrees_with_the_careful_one(parts: list) -> None:
    data = encode_header("h") + b"".join(
        p if isinstance(p, bytes) else encode_record(p) for p in parts
    )
    fast, careful = decode(data), _reference_decode(data)
    assert fast.records == careful.records
    assert [e.reason for e in fast.errors] == [e.reason for e in careful.errors]
    assert fast.host == careful.host
    slow = decode(bytearray(data))  # bytearray slices are unhashable: the careful path
    assert slow.records == fast.records


def _decode_contract(data: bytes) -> None:
    decoded = decode(data)  # never raises, whatever the bytes
    assert isinstance(decoded, Decoded) and decoded.rest == b""
    assert len(decoded.errors) <= 1  # a bad header, or the first bad record, ends decoding
    for error in decoded.errors:
        assert isinstance(error, ProtocolError) and error.reason
    for record in decoded.records:
        assert record.name and isinstance(record.kind, Kind) and isinstance(record.action, Action)
        if record.action is Action.UPDATE:
            assert isinstance(record.value, int | float)
            assert isinstance(record.value, int) or math.isfinite(record.value)
        else:
            assert record.value is None


def test_codec_does_no_io() -> None:
    tree = ast.parse(Path(codec.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert not imported & {"socket", "logging", "multiprocessing", "time", "select", "asyncio"}
    assert "bucky.config" not in Path(codec.__file__).read_text()
