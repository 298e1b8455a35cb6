"""StatsD line protocol: table of cases, bad lines, Hypothesis (total parser, fast == general path).
The TCP line framer: tests/protocol/test_framing.py."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bucky.errors import DecodeError
from bucky.protocol.decoded import Decoded
from bucky.protocol.graphite import WHITESPACE
from bucky.protocol.statsd import (
    REASONS,
    Kind,
    StatsdEvent,
    StatsdMetric,
    StatsdParser,
    _RecordCollector,
    make_key,
    parse,
    parse_number,
    sanitize,
    split_key,
)

C, G, GD, MS, H, D, S = (
    Kind.COUNTER,
    Kind.GAUGE,
    Kind.GAUGE_DELTA,
    Kind.TIMER,
    Kind.HISTOGRAM,
    Kind.DISTRIBUTION,
    Kind.SET,
)


def metrics(result: Decoded) -> list[StatsdMetric]:
    return [m for m in result.records if type(m) is StatsdMetric]


def metrics_of(result: Decoded) -> list[tuple]:
    return [tuple(m) for m in metrics(result)]


def reasons_of(result: Decoded) -> list[str]:
    return [error.reason for error in result.errors]


def bad_lines_of(result: Decoded) -> list[tuple[str, bytes]]:
    """(reason, the line's own bytes) of each bad line."""
    return [(e.reason, e.detail.encode("utf-8", "surrogateescape")) for e in result.errors]


# (datagram, [(name, value, kind, rate, tags, timestamp)], [bad-line reasons])
GOOD = [
    # every type
    (b"a.b:1|c", [("a.b", 1.0, C, 1.0, (), None)], []),
    (b"a:2.5|c", [("a", 2.5, C, 1.0, (), None)], []),
    (b"a:-3|c", [("a", -3.0, C, 1.0, (), None)], []),
    (b"a:1e3|c", [("a", 1000.0, C, 1.0, (), None)], []),
    (b"g:42|g", [("g", 42.0, G, 1.0, (), None)], []),
    (b"g:+4|g", [("g", 4.0, GD, 1.0, (), None)], []),
    (b"g:-4.5|g", [("g", -4.5, GD, 1.0, (), None)], []),
    (b"t:12.5|ms", [("t", 12.5, MS, 1.0, (), None)], []),
    (b"t:0|ms", [("t", 0.0, MS, 1.0, (), None)], []),
    (b"h:3|h", [("h", 3.0, H, 1.0, (), None)], []),
    (b"d:3|d", [("d", 3.0, D, 1.0, (), None)], []),
    (b"s:user1|s", [("s", "user1", S, 1.0, (), None)], []),
    (b"s:|s", [("s", "0", S, 1.0, (), None)], []),  # as the reference: empty member is "0"
    (b"s:x y|s", [("s", "x y", S, 1.0, (), None)], []),
    # sample rates
    (b"a:1|c|@0.1", [("a", 1.0, C, 0.1, (), None)], []),
    (b"t:5|ms|@0.25", [("t", 5.0, MS, 0.25, (), None)], []),
    (b"a:1|c|@2", [("a", 1.0, C, 2.0, (), None)], []),
    (b"a:1|c|@1e-1", [("a", 1.0, C, 0.1, (), None)], []),
    # several groups per name
    (b"a:1|c:2|c", [("a", 1.0, C, 1.0, (), None), ("a", 2.0, C, 1.0, (), None)], []),
    (
        b"a:1|c|@0.5:7|ms:3|g",
        [("a", 1.0, C, 0.5, (), None), ("a", 7.0, MS, 1.0, (), None), ("a", 3.0, G, 1.0, (), None)],
        [],
    ),
    # DogStatsD tags, sorted, bare tag -> "true", "=" accepted, blanks around tags stripped
    (b"a:1|c|#env:prod,az:b", [("a", 1.0, C, 1.0, (("az", "b"), ("env", "prod")), None)], []),
    (b"a:1|c|#flag", [("a", 1.0, C, 1.0, (("flag", "true"),), None)], []),
    (b"a:1|c|#k=v, j:w,", [("a", 1.0, C, 1.0, (("j", "w"), ("k", "v")), None)], []),
    (b"a:1|c|#k:1,k:2", [("a", 1.0, C, 1.0, (("k", "2"),), None)], []),
    (b"a:1|c|#url:http://x/y", [("a", 1.0, C, 1.0, (("url", "http--x-y"),), None)], []),
    (b"a:1|c|#", [("a", 1.0, C, 1.0, (), None)], []),
    (b"a:1|c|@0.5|#k:v", [("a", 1.0, C, 0.5, (("k", "v"),), None)], []),
    (
        b"a:1|c:2|ms|#k:v",
        [("a", 1.0, C, 1.0, (("k", "v"),), None), ("a", 2.0, MS, 1.0, (("k", "v"),), None)],
        [],
    ),
    # Graphite tags inside the name, merged with DogStatsD tags (those win)
    (b"a;k=v;z=1:1|c", [("a", 1.0, C, 1.0, (("k", "v"), ("z", "1")), None)], []),
    (b"a;k=v:1|c|#k:w,j:x", [("a", 1.0, C, 1.0, (("j", "x"), ("k", "w")), None)], []),
    (b"a;bare:1|c", [("a", 1.0, C, 1.0, (("bare", "true"),), None)], []),
    # DogStatsD extensions: container id, timestamp, external data, cardinality; rate after tags
    (b"a:1|c|#k:v|c:abc123", [("a", 1.0, C, 1.0, (("k", "v"),), None)], []),
    (b"a:1|c|c:abc:def", [("a", 1.0, C, 1.0, (), None)], []),
    (b"a:1|g|T1700000000", [("a", 1.0, G, 1.0, (), 1700000000)], []),
    (b"a:1|c|#k:v|T17|e:x|card:low", [("a", 1.0, C, 1.0, (("k", "v"),), 17)], []),
    (b"a:1|c|#k:v|@0.5", [("a", 1.0, C, 0.5, (("k", "v"),), None)], []),
    # sanitizing as the reference: whitespace runs -> "_", "/" -> "-", the rest dropped
    (b"my app/x  y:1|c", [("my_app-x_y", 1.0, C, 1.0, (), None)], []),
    (b"a$b%c!:1|c", [("abc", 1.0, C, 1.0, (), None)], []),
    (b" lead:1|c", [("_lead", 1.0, C, 1.0, (), None)], []),
    # line endings, blank lines, trailing blanks
    (b"a:1|c\r\nb:2|c\r\n", [("a", 1.0, C, 1.0, (), None), ("b", 2.0, C, 1.0, (), None)], []),
    (b"\n\na:1|c\n\n  \n", [("a", 1.0, C, 1.0, (), None)], []),
    (b"a:1|c  ", [("a", 1.0, C, 1.0, (), None)], []),
    (b"a: 1 |c", [("a", 1.0, C, 1.0, (), None)], []),
    (b"", [], []),
]

BAD = [
    (b"bare.key", "no-value"),
    (b"a|#k:v", "no-value"),
    (b"a:1", "no-type"),
    (b"a:", "no-type"),
    (b"a:1|", "bad-type"),
    (b"a:1|zz", "bad-type"),
    (b"a:1|C", "bad-type"),
    (b"a:abc|c", "bad-value"),
    (b"a:|c", "bad-value"),
    (b"a:nan|c", "bad-value"),
    (b"a:inf|g", "bad-value"),
    (b"a:1e999|c", "bad-value"),
    (b"a:1_000|c", "bad-value"),
    (b"a:0x10|c", "bad-value"),
    ("a:\u0661|c".encode(), "bad-value"),  # an Arabic-Indic digit: float() would take it
    (b"a:|g", "bad-value"),
    (b"a:-1|ms", "negative-timing"),
    (b"a:-1|h", "negative-timing"),
    (b"a:1|c|@", "bad-rate"),
    (b"a:1|c|@0", "bad-rate"),
    (b"a:1|c|@-0.5", "bad-rate"),
    (b"a:1|c|@x", "bad-rate"),
    (b"a:1|c|#k|@nan", "bad-rate"),
    (b"a:1|c|T", "bad-timestamp"),
    (b"a:1|c|T12x", "bad-timestamp"),
    (b"a:1|c|T0", "bad-timestamp"),
    (b"a:1|c|T" + b"9" * 40, "bad-timestamp"),
    (b"a:1|c|garbage", "bad-field"),
    (b"a:1|c|", "bad-field"),
    (b"a:1|c|@0.5|", "bad-field"),
    (b"a:1|c|#k|zz:", "bad-field"),
    (b"%%%:1|c", "bad-name"),
    (b":1|c", "bad-name"),
    (b"\xff\xfe:1|c", "bad-name"),
]


@pytest.mark.parametrize(("datagram", "expected", "reasons"), GOOD, ids=repr)
def test_good_lines(datagram: bytes, expected: list[tuple], reasons: list[str]) -> None:
    result = parse(datagram)
    assert metrics_of(result) == expected
    assert reasons_of(result) == reasons


@pytest.mark.parametrize(("datagram", "reason"), BAD, ids=repr)
def test_bad_lines(datagram: bytes, reason: str) -> None:
    result = parse(datagram)
    assert result.records == []
    assert bad_lines_of(result) == [(reason, datagram)]
    assert all(isinstance(error, DecodeError) for error in result.errors)


def test_bad_lines_do_not_spoil_the_good_ones() -> None:
    result = parse(b"a:1|c\nbroken\nb:x|g\nc:2|ms\n\xff\x00:1|c")
    assert [m.name for m in metrics(result)] == ["a", "c"]
    assert reasons_of(result) == ["no-value", "bad-value", "bad-name"]
    assert bad_lines_of(result)[2][1] == b"\xff\x00:1|c"  # the line's own bytes, undecoded


def test_each_bad_group_is_a_bad_line_and_good_groups_stay() -> None:
    # The reference splits on ":": "1" has no type, "x|c" is not a number, "3|c" is fine.
    result = parse(b"a:1:x|c:3|c")
    assert metrics_of(result) == [("a", 3.0, C, 1.0, (), None)]
    assert sorted(reasons_of(result)) == ["bad-value", "no-type"]


def test_events_and_service_checks_are_records_not_bad() -> None:
    result = parse(b"_e{5,4}:title|text|#k:v\n_sc|check|0|m:ok\na:1|c\n_e{1,1}:a|b")
    kinds = [r.kind if type(r) is StatsdEvent else r.name for r in result.records]
    assert kinds == ["event", "service_check", "a", "event"]  # in line order
    assert result.errors == []


def test_tags_can_be_dropped() -> None:
    result = parse(b"a;x=1:1|c|#k:v\nb:2|g|#z", keep_tags=False)
    assert [(m.name, m.tags) for m in metrics(result)] == [("a", ()), ("b", ())]


def test_64k_datagram_of_nul_and_garbage() -> None:
    junk = bytes(range(256)) * 256  # 64 KiB: NUL, every byte, several "\n"
    result = parse(junk)
    assert isinstance(result, Decoded)
    big_line = b"a:" + b"9" * 65000 + b"|c"
    assert reasons_of(parse(big_line)) == ["bad-value"]  # 1e65000 is not finite
    many = b"\n".join(b"k%d:1|c" % i for i in range(6000))
    assert len(parse(many).records) == 6000


def test_sanitize_and_keys() -> None:
    assert sanitize("a b\tc/d;e=f") == "a_b_c-def"
    assert make_key("x y", [("k", "v"), ("a", None), ("", "dropped")]) == "x_y;a=true;k=v"
    assert make_key("%%", []) is None
    assert split_key("n;a=1;b=2") == ("n", (("a", "1"), ("b", "2")))
    assert split_key("n") == ("n", ())


def test_every_unicode_space_in_a_name_becomes_an_underscore_on_both_paths() -> None:
    for fast in (True, False):
        parser = StatsdParser(fast_path=fast)
        for char in sorted(WHITESPACE - {"\n"}):  # "\n" ends the line
            lines = [f"a{char}b:1|c", f"a{char}b;k=v:2|ms", f"a{char}b:3|g|#k:v{char}w"]
            collector = _RecordCollector()
            parser.feed("\n".join(lines), collector)
            got = [(m.name, m.tags) for m in collector.records]
            want = [("a_b", ()), ("a_b", (("k", "v"),)), ("a_b", (("k", "v_w"),))]
            assert got == want, (fast, hex(ord(char)))


def test_parse_number_is_strict() -> None:
    assert parse_number(" 12.5 ") == 12.5
    assert parse_number("-1e-3") == -0.001
    for text in ("", "nan", "-inf", "Infinity", "1_0", "0x1", "1e400", "\u0661", "1.2.3"):
        assert parse_number(text) is None


# --- Hypothesis: total parser ------------------------------------------------------------------

NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")
TAG_PART_RE = re.compile(r"[A-Za-z0-9_.\-]+")


def check_result(result: Decoded) -> None:
    assert isinstance(result, Decoded)
    assert result.rest == b"" and result.host is None
    for m in result.records:
        if type(m) is StatsdEvent:
            assert m.kind in ("event", "service_check")
            continue
        assert NAME_RE.fullmatch(m.name)
        for k, v in m.tags:
            assert TAG_PART_RE.fullmatch(k) and TAG_PART_RE.fullmatch(v)
        assert list(m.tags) == sorted(dict(m.tags).items())
        assert isinstance(m.kind, Kind)
        assert math.isfinite(m.rate) and m.rate > 0
        if m.kind is Kind.SET:
            assert isinstance(m.value, str)
        else:
            assert isinstance(m.value, float) and math.isfinite(m.value)
        if m.kind in (Kind.TIMER, Kind.HISTOGRAM, Kind.DISTRIBUTION):
            assert m.value >= 0
        assert m.timestamp is None or (isinstance(m.timestamp, int) and m.timestamp > 0)
    for error in result.errors:
        assert type(error) is DecodeError
        assert error.reason in REASONS
        assert isinstance(error.detail, str)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_parse_without_exception(data: bytes) -> None:
    check_result(parse(data))
    check_result(parse(data, keep_tags=False))


PIECES = st.sampled_from(
    [
        "a", "b.c", "x y", "/", ";", "=", ":", "|", "#", "@", ",", "\n", "\r", " ", "\x00", "é",
        "c", "g", "ms", "h", "d", "s", "1", "-2", "+3", "0.5", "1e3", "nan", "_e{", "_sc|", "T",
        "T17", "c:", "card:", "e:", "@0.1", "|#", "k:v", "k=v", "\udcff",
    ]
)  # fmt: skip


def statsd_like_lines(line_pieces: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(line_pieces, max_size=14).map("".join)


VALID_LINES = st.builds(
    lambda name, value, typ, rate, tags, tail: f"{name}:{value}|{typ}{rate}{tags}{tail}",
    st.sampled_from(["a", "b.c", "d;k=v", " x", "_e{1", "q r", "n/m"]),
    st.sampled_from(["1", "0", "-1", "+2", "2.5", "", "x", "1:2", "3|ms:4", "nan"]),
    st.sampled_from(["c", "g", "ms", "h", "d", "s", "zz", "c ", "c\r"]),
    st.sampled_from(["", "|@0.5", "|@0", "|@x", "|@0.5:3|c", "|"]),
    st.sampled_from(["", "|#k:v", "|#b,a:1", "|#", "|#k:v ", "|#k\r", "|#a|#b", "|#z:1|T5"]),
    st.sampled_from(["", "\r", " ", "|c:abc", "|T17", "|x"]),
)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def counter(self, *args: object) -> None:
        self.calls.append(("counter", *args))

    def timer(self, *args: object) -> None:
        self.calls.append(("timer", *args))

    def gauge(self, *args: object) -> None:
        self.calls.append(("gauge", *args))

    def set_member(self, *args: object) -> None:
        self.calls.append(("set", *args))

    def bad_line(self, *args: object) -> None:
        self.calls.append(("bad", *args))

    def event(self, *args: object) -> None:
        self.calls.append(("event", *args))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(VALID_LINES, statsd_like_lines(PIECES)), max_size=12),
    st.booleans(),
)
def test_fast_path_makes_the_same_calls_as_the_general_path(
    lines: list[str], keep_tags: bool
) -> None:
    fast = StatsdParser(keep_tags=keep_tags, memo_size=16)  # tiny memo: churn is exercised too
    general = StatsdParser(keep_tags=keep_tags, fast_path=False)
    text = "\n".join(lines)
    for _ in range(2):  # the second pass runs on warm memo tables
        got, want = Recorder(), Recorder()
        assert fast.feed(text, got) == general.feed(text, want)
        assert got.calls == want.calls


def test_line_end_blanks_read_the_same_on_both_paths() -> None:
    # The general path strips the end of a line; a field learnt mid-line, where its blanks are
    # not stripped, must not make the fast path read the same text differently at a line end.
    text = "a:1|c|#k:v |c:x\na:1|c|#k:v \nb:1 |c|@0.5 |T1\nb:1 |c|@0.5 "
    got, want = Recorder(), Recorder()
    StatsdParser().feed(text, got)
    StatsdParser(fast_path=False).feed(text, want)
    assert got.calls == want.calls
    assert [call[1] for call in got.calls] == ["a;k=v", "a;k=v", "b", "b"]


def test_the_codec_does_no_io() -> None:
    import ast

    import bucky.protocol.statsd as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    imported |= {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert not imported & {"socket", "logging", "multiprocessing", "time", "os", "threading"}
    assert "bucky" not in imported or all(
        n.module in ("bucky.errors", "bucky.sample", "bucky.protocol.decoded")
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("bucky")
    )
