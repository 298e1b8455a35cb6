"""Graphite codecs: plaintext formatting and parsing, pickle frames and the allow-list unpickler."""

from __future__ import annotations

import os
import pickle
import pickletools
import struct
import sys
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bucky.errors import ProtocolError
from bucky.protocol.decoded import Decoded
from bucky.protocol.graphite import (
    MAX_PICKLE_FRAME,
    WHITESPACE,
    clean_path,
    decode_pickle_frames,
    decode_pickle_payload,
    decode_plaintext,
    decode_plaintext_lines,
    encode_pickle,
    encode_pickle_trusted,
    format_line,
    format_plaintext,
    format_plaintext_batch,
    format_value,
    parse_plaintext_line,
    pickle_point,
    split_frames,
)

# value -> text carbon must receive: ints as ints, floats as their shortest round-trip repr
VALUE_CASES = [
    (0, "0"),
    (42, "42"),
    (-7, "-7"),
    (2**64, "18446744073709551616"),
    (0.1, "0.1"),
    (-5000.0, "-5000.0"),
    (-5e-07, "-5e-07"),
    (1e300, "1e+300"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (123456.789, "123456.789"),
    (1 / 3, "0.3333333333333333"),
    (True, "1"),
    (Decimal("2.5"), "2.5"),
    ("17", "17.0"),
]


@pytest.mark.parametrize(("value", "text"), VALUE_CASES)
def test_format_value(value: object, text: str) -> None:
    assert format_value(value) == text
    assert float(text) == float(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [None, "abc", object(), [1]])
def test_format_value_rejects_non_numbers(value: object) -> None:
    assert format_value(value) is None
    assert format_line("a.b", value, 1) is None


def test_format_line_truncates_timestamps_to_seconds() -> None:
    assert format_line("a.b", 1, 1700000000.9) == "a.b 1 1700000000\n"
    assert format_line("a.b", 1.5, 1700000000) == "a.b 1.5 1700000000\n"
    assert format_line("a.b", 1, float("nan")) is None


def test_clean_path_removes_whitespace_that_would_split_or_inject_lines() -> None:
    assert clean_path("a b\tc\nd.e") == "a_b_c_d.e"
    assert clean_path("servers.web-1.cpu.0") == "servers.web-1.cpu.0"


def test_whitespace_is_everything_str_split_splits_on() -> None:
    assert WHITESPACE == {chr(c) for c in range(0x110000) if chr(c).isspace()}
    changed = {chr(c) for c in range(0x110000) if clean_path(chr(c)) != chr(c)}
    assert changed == WHITESPACE | {"\0"}
    assert {"\xa0", "\u2000", "\u200a", "\u3000", "\u1680", "\u202f", "\u205f"} <= WHITESPACE


def test_clean_path_turns_every_unicode_space_into_an_underscore() -> None:
    for char in sorted(WHITESPACE | {"\0"}):
        assert clean_path(f"a{char}b.c{char}") == "a_b.c_", hex(ord(char))
        line = format_plaintext([(f"a{char}b", 1, 10)])
        assert line == b"a_b 1 10\n" and len(line.decode().split()) == 3
    assert clean_path("caf\u00e9.\u00fcber\u200b") == "caf\u00e9.\u00fcber\u200b"  # not spaces


def test_format_plaintext_points() -> None:
    data = format_plaintext([("a.b", 1, 10), ("c d", -2.5, 11.7), ("x", "bad", 12)])
    assert data == b"a.b 1 10\nc_d -2.5 11\n"


def _prefixes(batch: list[tuple]) -> list[str]:
    return [(f"{host}.{name}" if host else name) + " " for host, name, _, _ in batch]


@pytest.mark.parametrize(("value", "text"), VALUE_CASES[:11])
def test_format_plaintext_batch_fast_path(value: object, text: str) -> None:
    batch = [("h", "m", value, 1700000000.5), (None, "n", value, 1700000001)]
    out, skipped = format_plaintext_batch(batch, _prefixes(batch))
    assert skipped == 0
    assert out == f"h.m {text} 1700000000\nn {text} 1700000001\n"


def test_format_plaintext_batch_falls_back_line_by_line() -> None:
    batch = [
        ("h", "ok", 1, 100),
        ("h", "bool", True, 100),  # an unusual type: slow path, still formatted
        ("h", "nan_ts", 1, float("nan")),  # skipped
        ("h", "str", "x", 100),  # skipped
        ("h", "huge", 10**5000, 100),  # more digits than int->str allows, not a float: skipped
        ("h", "ok2", 2.5, 101),
    ]
    out, skipped = format_plaintext_batch(batch, _prefixes(batch))
    assert skipped == 3
    assert out == "h.ok 1 100\nh.bool 1 100\nh.ok2 2.5 101\n"
    assert format_plaintext_batch([], []) == ("", 0)


def test_format_plaintext_batch_template_cache_handles_many_lengths() -> None:
    for n in range(1, 150):
        samples = [(None, "a", i, 1) for i in range(n)]
        out, _ = format_plaintext_batch(samples, _prefixes(samples))
        assert out.count("\n") == n


samples = st.lists(
    st.tuples(
        st.one_of(st.none(), st.sampled_from(["h1", "web.example.com"])),
        st.sampled_from(["cpu.0", "load", "a.b.c"]),
        st.one_of(st.integers(-(2**80), 2**80), st.floats(), st.booleans()),
        st.one_of(st.integers(0, 2**40), st.floats(allow_nan=True)),
    ),
    max_size=40,
)


@given(samples)
def test_batch_formatting_matches_line_by_line(batch: list[tuple]) -> None:
    expected = [format_line(p[:-1], v, t) for p, (_, _, v, t) in zip(_prefixes(batch), batch,
                                                                      strict=True)]
    text, skipped = format_plaintext_batch(batch, _prefixes(batch))
    assert text == "".join(line for line in expected if line is not None)
    assert skipped == expected.count(None)


def test_codec_module_does_no_io() -> None:
    import ast

    import bucky.protocol.graphite as module

    imported = set()
    for node in ast.walk(ast.parse(open(module.__file__).read())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"socket", "select", "logging", "multiprocessing", "threading"}


def test_decode_plaintext_keeps_good_lines_and_the_incomplete_rest() -> None:
    decoded = decode_plaintext(b"a.b 1 10\nbad line\n\nc 2.5 11\nd 3 1")
    assert decoded.records == [("a.b", 1, 10), ("c", 2.5, 11)]
    assert len(decoded.errors) == 1 and decoded.errors[0].reason == "fields"
    assert decoded.rest == b"d 3 1"
    assert decode_plaintext(b"\xff\xfe 1 2\n").errors[0].reason == "not-utf8"


def test_parse_plaintext_line() -> None:
    assert parse_plaintext_line(b"a.b -5e3 1700000000") == ("a.b", -5000.0, 1700000000)
    with pytest.raises(ProtocolError):
        parse_plaintext_line(b"a.b x 1")


BIG = "1" + "0" * 400  # float() of it is inf, int() of it does not fit a float


@pytest.mark.parametrize(("line", "reason"), [
    (f"crash.http {BIG} 1700000000", "bad-value"),
    (f"a -{BIG} 1700000000", "bad-value"),
    ("a 1e400 1700000000", "bad-value"),  # digits that overflow: not the spelled-out inf
    ("a " + "9" * 5000 + " 1700000000", "bad-value"),  # more digits than int() reads
    (f"a 1 {BIG}", "bad-timestamp"),
    ("a 1 9223372036854775808", "bad-timestamp"),  # 2**63: beyond an int64
    ("a 1 1e19", "bad-timestamp"),
], ids=["400-digits", "minus-400-digits", "1e400", "5000-digits", "ts-400-digits", "ts-2**63",
        "ts-1e19"])
def test_numbers_beyond_a_float_or_an_int64_are_refused(line: str, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_plaintext_line(line.encode())
    assert info.value.reason == reason
    decoded = decode_plaintext_lines([line.encode(), b"ok 1 1700000000"])
    assert decoded.records == [("ok", 1, 1700000000)]
    assert [e.reason for e in decoded.errors] == [reason]


def test_the_largest_numbers_that_fit_and_spelled_out_infinities_still_pass() -> None:
    top = int(sys.float_info.max)
    assert parse_plaintext_line(f"a {top} 9223372036854775807".encode()) == (
        "a", top, 2**63 - 1)
    assert parse_plaintext_line(b"a -inf -1")[1] == float("-inf")  # carbon keeps infinities
    assert parse_plaintext_line(b"a 1e308 1.7e9") == ("a", 1e308, 1.7e9)


def test_bad_lines_share_one_error_per_reason() -> None:
    lines = [b"x"] * 1000 + [b"a y 1"] * 1000 + [b"\xff 1 1", b"a 1 1"]
    decoded = decode_plaintext_lines(lines)
    assert decoded.records == [("a", 1, 1)]
    assert len(decoded.errors) == 2001  # one per bad line: the count is exact, the objects not
    by_reason = {e.reason: e for e in decoded.errors}
    assert {id(e) for e in decoded.errors} == {id(e) for e in by_reason.values()}
    assert set(by_reason) == {"fields", "bad-value", "not-utf8"}
    utf8 = decode_plaintext_lines([b"x"] * 10 + [b"a 1 1"])  # the bulk (all UTF-8) path as well
    assert len(utf8.errors) == 10 and len({id(e) for e in utf8.errors}) == 1


def test_carbons_receiver_rules_and_the_sample_shape_on_request() -> None:
    lines = [b"a nan 1", b"b 1 -1", b"c 2 -1.5", b"d 3 -5", b"e inf 1", b"f 4 -1", b"bad"]
    decoded = decode_plaintext_lines(lines, now=99.0, sample_host="H")
    assert decoded.records == [("H", "b", 1, 99.0), ("H", "c", 2, 99.0), ("H", "d", 3, -5),
                               ("H", "e", float("inf"), 1), ("H", "f", 4, 99.0)]
    assert [e.reason for e in decoded.errors] == ["nan", "fields"]
    plain = decode_plaintext_lines(lines)  # without: points as parse_plaintext_line reads them
    assert [p[0] for p in plain.records] == ["a", "b", "c", "d", "e", "f"]
    assert plain.records[1] == ("b", 1, -1)


NUMBERISH = st.one_of(
    st.sampled_from(["1", "-1", "1.5", "1e3", "1_000", "nan", "inf", "-Infinity", "0x10", "12.",
                     ".5", "+7", "\u0661\u0662", "1e400", "-1e400", BIG, "9" * 5000, "1e19",
                     "9223372036854775807", "9223372036854775808", "-9223372036854775808",
                     "x", ""]),
    st.integers().map(str), st.floats().map(repr))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.sampled_from(["a.b", "\u00e9"]), NUMBERISH, NUMBERISH)
                          .map(" ".join), st.text(max_size=20)), max_size=8))
def test_the_bulk_decoder_reads_each_line_as_parse_plaintext_line(texts: list[str]) -> None:
    lines = [t.encode("utf-8", "surrogatepass").replace(b"\n", b" ") for t in texts]
    want_points, want_reasons = [], []
    for line in lines:
        if not line.decode("utf-8", "replace").split():
            continue
        try:
            want_points.append(parse_plaintext_line(line))
        except ProtocolError as exc:
            want_reasons.append(exc.reason)
    decoded = decode_plaintext_lines(lines)
    assert repr(decoded.records) == repr(want_points)  # repr: nan == nan, and ints stay ints
    assert [type(v) for _, v, _ in decoded.records] == [type(v) for _, v, _ in want_points]
    assert [e.reason for e in decoded.errors] == want_reasons


plain_values = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)
paths = st.text(alphabet="abcxyz._-0123456789", min_size=1, max_size=30).filter(
    lambda p: p.strip()
)


@given(st.lists(st.tuples(paths, plain_values, st.integers(0, 2**33)), max_size=20))
def test_plaintext_round_trip(points: list[tuple]) -> None:
    decoded = decode_plaintext(format_plaintext(points))
    assert decoded.errors == [] and decoded.rest == b""
    assert decoded.records == points
    for (_, sent, _), (_, got, _) in zip(points, decoded.records, strict=True):
        assert type(got) is type(sent)  # ints stay ints, floats stay floats


# --- pickle ---------------------------------------------------------------------------------


def test_encode_pickle_is_carbon_framing_protocol_2_builtins_only() -> None:
    points = [("a.b", (1700000000, 1)), ("c.d", (1700000001, -2.5))]
    frame = encode_pickle(points)
    (length,) = struct.unpack("!L", frame[:4])
    assert length == len(frame) - 4
    assert frame[4:6] == b"\x80\x02"  # PROTO 2

    opcodes = {op.name for op, _, _ in pickletools.genops(frame[4:])}
    # no class references: carbon's safe unpickler would refuse them
    assert not opcodes & {"GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "INST", "OBJ", "NEWOBJ"}
    assert pickle.loads(frame[4:]) == points


def test_encode_pickle_converts_foreign_numbers() -> None:
    frame = encode_pickle([("a", (Decimal(5), Decimal("2.5"))), ("b", (1, True))])
    points, errors, rest, _ = decode_pickle_frames(frame)
    assert points == [("a", (5.0, 2.5)), ("b", (1, 1))] and rest == b"" and errors == []
    assert [type(v) for _, (_, v) in points] == [float, int]
    with pytest.raises(ValueError):
        pickle_point("a", 1, "not a number")


def test_decode_pickle_frames_several_frames_and_a_partial_one() -> None:
    first = encode_pickle([("a", (1, 1.5))])
    second = encode_pickle_trusted([("b", (2, 2)), ("c", (3, -3.0))])
    buffer = first + second + second[:7]
    decoded = decode_pickle_frames(buffer)
    assert decoded.records == [("a", (1, 1.5)), ("b", (2, 2)), ("c", (3, -3.0))]
    assert decoded.rest == second[:7] and decoded.errors == []
    again = decode_pickle_frames(decoded.rest + second[7:])
    assert again == Decoded([("b", (2, 2)), ("c", (3, -3.0))], [], b"")
    assert decode_pickle_frames(b"") == Decoded([], [], b"")


def test_decode_accepts_python2_and_statsd_style_protocol_0_pickles() -> None:
    # Python 2 str paths (STRING opcode), and statsd's hand-written pickles with text numbers
    payload = b"(lp0\n(S'a.b'\np1\n(I10\nF1.5\ntp2\ntp3\na(S'c'\n(S'11'\nS'2'\nttp4\na."
    decoded = decode_pickle_frames(struct.pack("!L", len(payload)) + payload)
    assert decoded.records == [("a.b", (10, 1.5)), ("c", (11.0, 2.0))]


class _Evil:
    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps([_Evil()], protocol=2),  # a global (os.system): refused before it runs
        pickle.dumps(_Evil(), protocol=0),
        pickle.dumps([("a", (1, Decimal(2)))], protocol=2),  # any class, even a harmless one
    ],
)
def test_malicious_pickle_is_rejected(payload: bytes) -> None:
    good = encode_pickle([("ok", (1, 2))])
    decoded = decode_pickle_frames(struct.pack("!L", len(payload)) + payload + good)
    assert [error.reason for error in decoded.errors] == ["bad-pickle"]
    assert decoded.records == [("ok", (1, 2))]  # the framing holds: the next frame still counts


@pytest.mark.parametrize("entry", [
    ("a", (1700000000, 10**5000)),  # a pickle LONG far beyond a float
    ("a", (10**5000, 1)),
    ("a", (2**63, 1)),  # a timestamp beyond an int64
    ("a", (float("inf"), 1)),
    ("a", (float("nan"), 1)),
    ("a", (1700000000, "1e400")),  # text that overflows a float
    ("a", (1700000000, -(2**1024))),
])
def test_pickled_numbers_beyond_a_float_or_an_int64_are_bad_points(entry: tuple) -> None:
    decoded = decode_pickle_payload(pickle.dumps([entry, ("ok", (1, 2))], protocol=2))
    assert decoded.records == [("ok", (1, 2))]
    assert [error.reason for error in decoded.errors] == ["bad-point"]
    big = decode_pickle_payload(pickle.dumps([("a", (1, 2**1000)), ("b", (1, "inf"))]))
    assert big.errors == [] and big.records == [("a", (1, 2**1000)), ("b", (1, float("inf")))]


def test_pickle_cost_is_bounded_by_size_not_by_what_the_frame_holds() -> None:
    """~500k references to one bad entry fill one 1 MiB frame: counted exactly, but with one
    error object (main built a DecodeError with message and traceback per reference: ~10 s of
    CPU and ~600 MB per frame), and so are distinct bad entries."""
    refs = pickle.dumps([("a", ("x", 1))] * 500_000, protocol=2)
    distinct = pickle.dumps(list(range(70_000, 270_000)), protocol=2)
    for payload, count in ((refs, 500_000), (distinct, 200_000)):
        assert len(payload) <= MAX_PICKLE_FRAME
        decoded = decode_pickle_payload(payload)
        assert decoded.records == [] and len(decoded.errors) == count
        assert len({id(error) for error in decoded.errors}) == 1
        assert decoded.errors[0].reason == "bad-point"
    good = decode_pickle_payload(pickle.dumps([("a", (1, 2))] * 1000 + [("b", (3, 4))]))
    assert good.records == [("a", (1, 2))] * 1000 + [("b", (3, 4))] and good.errors == []


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"a": 1}, "bad-pickle"),
        ("just a string", "bad-pickle"),
        ([("a", 1)], "bad-point"),
        ([("a", (1, 2, 3))], "bad-point"),
        ([(1, (1, 2))], "bad-point"),
        ([("a", (1, "two"))], "bad-point"),
        ([("a", (None, 2))], "bad-point"),
    ],
)
def test_decode_rejects_wrong_shapes(obj: object, reason: str) -> None:
    payload = pickle.dumps(obj if reason == "bad-pickle" else [*obj, ("ok", (1, 2))], protocol=2)
    decoded = decode_pickle_frames(struct.pack("!L", len(payload)) + payload)
    assert [error.reason for error in decoded.errors] == [reason]
    # as carbon's receiver: a bad entry is skipped, the good ones of the same list kept
    assert decoded.records == ([] if reason == "bad-pickle" else [("ok", (1, 2))])


def test_decode_rejects_oversized_frames_and_garbage() -> None:
    good = encode_pickle([("ok", (1, 2))])
    oversized = struct.pack("!L", MAX_PICKLE_FRAME + 1) + b"x" * 10
    decoded = decode_pickle_frames(good + oversized + good)
    assert [error.reason for error in decoded.errors] == ["frame-too-large"]
    assert decoded.records == [("ok", (1, 2))]  # the frame before it; nothing after it
    assert decoded.rest == oversized + good  # the stream cannot be framed past that header
    with pytest.raises(ProtocolError) as info:  # the framing step on its own raises
        split_frames(bytearray(oversized))
    assert info.value.reason == "frame-too-large"
    assert reasons(decode_pickle_frames(struct.pack("!L", 3) + b"\x80\x02X")) == ["bad-pickle"]
    nested = b"\x80\x02" + b"(" * 100_000 + b"."
    assert reasons(decode_pickle_frames(struct.pack("!L", len(nested)) + nested)) == ["bad-pickle"]


def reasons(decoded: Decoded) -> list[str]:
    return [error.reason for error in decoded.errors]


pickle_points = st.lists(
    st.tuples(paths, st.tuples(st.integers(0, 2**40), plain_values)), max_size=30
)


@given(pickle_points)
def test_pickle_round_trip(points: list[tuple]) -> None:
    assert decode_pickle_frames(encode_pickle(points)) == Decoded(points, [], b"")


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_decode_any_bytes_gives_points_and_protocol_errors(data: bytes) -> None:
    for buffer in (data, struct.pack("!L", len(data)) + data):
        decoded = decode_pickle_frames(buffer)  # never raises, whatever the bytes
        assert all(isinstance(error, ProtocolError) and error.reason for error in decoded.errors)
        for path, (timestamp, value) in decoded.records:
            assert type(path) is str and type(timestamp) in (int, float)
            assert type(value) in (int, float)
        assert buffer.endswith(decoded.rest)
