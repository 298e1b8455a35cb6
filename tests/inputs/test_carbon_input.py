"""The carbon input: Graphite plaintext (UDP datagrams, TCP streams) and pickle frames (TCP).

Accepts what carbon's own receivers accept; bad input is counted by reason and never raises;
a client breaking the framing (an over-long line, a frame over 1 MiB) is told to disconnect.
"""

from __future__ import annotations

import pickle
import struct
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from bucky.config import make_config
from bucky.daemon.outputs.paths import PathCache
from bucky.inputs.carbon import MAX_LINE_LENGTH, CarbonInput
from bucky.names import NameRules
from bucky.protocol.graphite import WHITESPACE, encode_pickle
from bucky.sample import GRAPHITE_PATH

NOW = 1_700_000_000.0
ADDR = ("127.0.0.1", 40000)


class ListSink:
    wants_records = False

    def __init__(self) -> None:
        self.samples: list[tuple] = []

    def extend(self, samples: list[tuple]) -> None:
        self.samples.extend(samples)

    def append(self, sample: tuple) -> None:
        self.samples.append(sample)


def make() -> tuple[CarbonInput, ListSink]:
    sink = ListSink()
    return CarbonInput(None, sink), sink


def frame(obj: object, protocol: int = 2) -> bytes:
    payload = pickle.dumps(obj, protocol=protocol)
    return struct.pack("!L", len(payload)) + payload


def test_udp_datagram_lines_keep_their_path_value_and_timestamp() -> None:
    carbon, sink = make()
    carbon.handle(b"a.b.c 1 1699999990\nx.y 2.5 1699999991\r\n\n  d.e\t-3e2  1699999992  \n",
                  ADDR, NOW)
    assert sink.samples == [
        (GRAPHITE_PATH, "a.b.c", 1, 1699999990),
        (GRAPHITE_PATH, "x.y", 2.5, 1699999991),
        (GRAPHITE_PATH, "d.e", -300.0, 1699999992),
    ]
    assert carbon.counters["lines"] == 3 and carbon.counters["points"] == 3


def test_bad_lines_are_counted_by_reason_and_the_good_ones_kept() -> None:
    carbon, sink = make()
    carbon.handle_lines([b"only two", b"a x 1", b"a 1 y", b"\xff\xfe 1 2", b"a 1 nan",
                         b"a 1 2 3", b"good 7 1699999999"], NOW)
    assert [s[1:] for s in sink.samples] == [("good", 7, 1699999999)]
    assert carbon.counters["bad_lines.fields"] == 2
    assert carbon.counters["bad_lines.bad-value"] == 1
    assert carbon.counters["bad_lines.bad-timestamp"] == 2
    assert carbon.counters["bad_lines.not-utf8"] == 1


def test_nan_is_dropped_and_minus_one_means_now_as_in_carbon() -> None:
    carbon, sink = make()
    carbon.handle(b"a nan 1699999990\nb 1 -1\nc inf 1699999990\n", ADDR, NOW)
    assert [s[1:] for s in sink.samples] == [("b", 1, NOW), ("c", float("inf"), 1699999990)]
    assert carbon.counters["dropped.nan"] == 1


def test_paths_pass_the_name_rules_unchanged() -> None:
    rules = NameRules(prefix="pre", postfix="post", strip_duplicates=True, host_trim=["x"])
    carbon, sink = make()
    carbon.handle(b"servers.web.web.cpu 1 1699999990\na..b;tag=v 2 1699999990\n", ADDR, NOW)
    assert [rules.statname(h, n) for h, n, _, _ in sink.samples] == [
        "servers.web.web.cpu", "a..b;tag=v"]
    assert rules.statname(None, "servers.web.web.cpu") == "pre.servers.web.cpu.post"


def test_unicode_spaces_split_a_line_as_in_carbon_and_become_underscores_from_pickle() -> None:
    """Carbon 1.x splits a line with str.split(): a U+00A0 (or any str.isspace() character)
    inside a plaintext path splits it there (the line has too many fields and is refused, as
    carbon refuses it). A pickled path may hold any of them: it reaches Graphite with "_"."""
    paths = PathCache(NameRules.from_config(make_config()))
    for char in sorted(WHITESPACE - {"\n"}):
        carbon, sink = make()
        line = carbon.open_stream("line", ADDR)
        assert line.feed(f"a{char}b 1 1699999990\n".encode(), NOW)
        assert sink.samples == [] and carbon.counters["bad_lines.fields"] == 1, hex(ord(char))
        stream = carbon.open_stream("pickle", ADDR)
        assert stream.feed(frame([(f"a{char}b.c{char}", (1699999990, 1))]), NOW)
        assert [paths.path(host, name) for host, name, _, _ in sink.samples] == ["a_b.c_"]


def test_tcp_line_stream_frames_lines_across_reads() -> None:
    carbon, sink = make()
    stream = carbon.open_stream("line", ADDR)
    assert stream.feed(b"a.b 1 16999", NOW)
    assert sink.samples == []
    assert stream.feed(b"99990\nc 2 1699999991\npart", NOW)
    stream.close(NOW)
    assert [s[1:] for s in sink.samples] == [("a.b", 1, 1699999990), ("c", 2, 1699999991)]
    assert carbon.counters["bad_lines.truncated"] == 1


def test_an_over_long_line_disconnects_the_client() -> None:
    carbon, sink = make()
    stream = carbon.open_stream("line", ADDR)
    assert stream.feed(b"ok 1 1699999990\n", NOW)
    assert not stream.feed(b"x" * (MAX_LINE_LENGTH + 1), NOW)
    assert carbon.counters["disconnected.line-too-long"] == 1
    assert len(sink.samples) == 1


def test_pickle_frames_as_carbons_client_sends_them() -> None:
    carbon, sink = make()
    stream = carbon.open_stream("pickle", ADDR)
    data = frame([("a.b", (1699999990, 1.5)), ("c", (1699999991, 2))])
    data += encode_pickle([("d", (1699999992, 3))])
    for i in range(0, len(data), 7):  # any split across reads
        assert stream.feed(data[i : i + 7], NOW)
    assert [s[1:] for s in sink.samples] == [
        ("a.b", 1.5, 1699999990), ("c", 2, 1699999991), ("d", 3, 1699999992)]
    assert carbon.counters["pickle_frames"] == 2


def test_pickle_bad_entries_are_skipped_the_rest_kept() -> None:
    carbon, sink = make()
    stream = carbon.open_stream("pickle", ADDR)
    assert stream.feed(frame([("a", (1699999990, 1)), "junk", ("b", ("x", 1)), ("", (1, 1)),
                              ("c", ("1699999990", "2.5")), ("n", (1699999990, float("nan"))),
                              ("t", (-1, 4))]), NOW)
    assert [s[1:] for s in sink.samples] == [
        ("a", 1, 1699999990), ("c", 2.5, 1699999990.0), ("t", 4, NOW)]
    assert carbon.counters["bad_points"] == 3 and carbon.counters["dropped.nan"] == 1


def test_pickle_with_globals_or_wrong_shape_is_counted_and_the_connection_kept() -> None:
    carbon, sink = make()
    stream = carbon.open_stream("pickle", ADDR)
    evil = frame(Counter(a=1))  # needs a global: refused, never imported
    assert stream.feed(evil + frame({"a": 1}) + frame([("ok", (1699999990, 1))]), NOW)
    assert carbon.counters["bad_frames.bad-pickle"] == 2
    assert [s[1] for s in sink.samples] == ["ok"]


def test_two_gib_length_prefix_disconnects_without_buffering() -> None:
    carbon, sink = make()
    stream = carbon.open_stream("pickle", ADDR)
    assert not stream.feed(struct.pack("!L", 2**31) + b"\x00" * 1000, NOW)
    assert carbon.counters["disconnected.frame-too-large"] == 1
    assert stream._buffer == bytearray()  # type: ignore[attr-defined]


def test_deeply_nested_pickle_is_a_bad_frame_not_a_crash() -> None:
    depth = 200_000
    payload = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."  # [[[[...]]]]
    carbon, sink = make()
    stream = carbon.open_stream("pickle", ADDR)
    assert stream.feed(struct.pack("!L", len(payload)) + payload, NOW)
    assert carbon.counters["bad_points"] == 1  # the one entry is no (path, (ts, value))
    assert carbon.counters["errors.internal"] == 0
    nested_point = [("a", ([[[[[[[[1]]]]]]]], 1))]
    assert stream.feed(frame(nested_point), NOW)
    assert carbon.counters["bad_points"] == 2 and carbon.counters["errors.internal"] == 0


def test_state_carries_the_counters() -> None:
    carbon, _ = make()
    carbon.handle(b"a 1 1\n", ADDR, NOW)
    successor = CarbonInput(None, ListSink(), carbon.carry_state())
    assert successor.counters["points"] == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_fuzz_any_bytes_never_raise_out_of_the_input(chunks: list[bytes]) -> None:
    carbon, sink = make()
    line, pickled = carbon.open_stream("line", ADDR), carbon.open_stream("pickle", ADDR)
    for chunk in chunks:
        carbon.handle(chunk, ADDR, NOW)
        line.feed(chunk, NOW)
        pickled.feed(chunk, NOW)
    line.close(NOW)
    pickled.close(NOW)
    assert carbon.counters["errors.internal"] == 0
    assert all(s[0] == GRAPHITE_PATH and isinstance(s[1], str) for s in sink.samples)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text()
                    | st.binary(), lambda kids: st.lists(kids, max_size=4)
                    | st.tuples(kids, kids), max_leaves=20))
def test_fuzz_any_pickled_builtin_never_raises(obj: object) -> None:
    carbon, sink = make()
    stream = carbon.open_stream("pickle", ADDR)
    assert stream.feed(frame(obj) + frame([obj]) + frame([("p", obj)]), NOW)
    assert carbon.counters["errors.internal"] == 0


NUMBERISH = st.sampled_from(["1", "-1", "1.5", "-0.25", "1e3", "1E-3", "1_000", "nan", "inf",
                             "-inf", "0x10", "12.", ".5", "+7", "١٢", "1700000000",
                             "1700000000.5", "x", ""])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.sampled_from(["a.b", "é.x", "a;t=v"]), NUMBERISH, NUMBERISH).map(" ".join),
    st.text(max_size=30)), max_size=8))
def test_the_bulk_path_decodes_exactly_as_parse_plaintext_line(texts: list[str]) -> None:
    from bucky.errors import DecodeError
    from bucky.protocol.graphite import parse_plaintext_line

    lines = [t.encode("utf-8", "surrogatepass").replace(b"\n", b" ") for t in texts]
    carbon, sink = make()
    carbon.handle_lines(lines, NOW)
    want = []
    for line in lines:
        try:
            path, value, timestamp = parse_plaintext_line(line)
        except DecodeError:
            continue
        if value == value:
            want.append((GRAPHITE_PATH, path, value, NOW if -2 < timestamp <= -1 else timestamp))
    assert [(s, tuple(map(type, s))) for s in sink.samples] == [
        (s, tuple(map(type, s))) for s in want]
    assert carbon.counters["errors.internal"] == 0


def test_config_errors_name_the_option() -> None:
    import pytest

    from bucky.config import make_config
    from bucky.errors import ConfigError

    with pytest.raises(ConfigError, match="carbon_pickle_port: expected a port other than "
                                          "carbon_line_port"):
        make_config(carbon_enabled=True, carbon_line_port=2013, carbon_pickle_port=2013)
    with pytest.raises(ConfigError, match="carbon_line_port: .*1-65535.*70000"):
        make_config(carbon_line_port=70000)
    cfg = make_config()
    assert (cfg.carbon_enabled, cfg.carbon_ip, cfg.carbon_line_port, cfg.carbon_pickle_port) == (
        False, "127.0.0.1", 2013, 2014)


def test_the_socket_plan_gives_the_carbon_process_udp_and_two_tcp_listeners() -> None:
    from bucky.config import make_config
    from bucky.daemon import plan as plan_mod

    cfg = make_config(carbon_enabled=True, statsd_enabled=False, collectd_enabled=False,
                      metricsd_enabled=False, http_enabled=False)
    plan = plan_mod.plan_daemon(cfg)
    assert [(s.name, s.proto, s.host, s.port) for s in plan.sockets] == [
        ("carbon", "udp", "127.0.0.1", 2013), ("carbon_line", "tcp", "127.0.0.1", 2013),
        ("carbon_pickle", "tcp", "127.0.0.1", 2014)]
    [carbon] = [c for c in plan.children if c.role == "input"]
    assert (carbon.kind, carbon.udp, carbon.streams) == (
        "carbon", (("carbon", 0),), (("line", "carbon_line"), ("pickle", "carbon_pickle")))
