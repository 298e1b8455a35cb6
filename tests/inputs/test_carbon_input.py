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


BIG = "1" + "0" * 400


def test_numbers_beyond_a_float_are_refused_at_the_input_and_nothing_downstream_can_raise() -> None:
    """Issue 19: six `crash.http 1<400 zeros> <now>` datagrams stopped the daemon (the status
    server's tap raised OverflowError on float() of the value)."""
    from bucky.protocol.graphite import encode_pickle, format_plaintext_batch

    carbon, sink = make()
    carbon.handle(f"crash.http {BIG} {int(NOW)}\n".encode(), ADDR, NOW)
    stream = carbon.open_stream("line", ADDR)
    assert stream.feed(f"a 1 {BIG}\nb 1e400 1\nok 1 {int(NOW)}\n".encode(), NOW)
    pickled = carbon.open_stream("pickle", ADDR)
    assert pickled.feed(frame([("p", (NOW, 10**5000)), ("q", (10**5000, 1)),
                               ("r", (2**63, 1)), ("ok2", (NOW, 2))]), NOW)
    assert carbon.counters["bad_lines.bad-value"] == 2
    assert carbon.counters["bad_lines.bad-timestamp"] == 1
    assert carbon.counters["bad_points"] == 3
    assert carbon.counters["errors.internal"] == 0
    assert [s[1] for s in sink.samples] == ["ok", "ok2"]
    for _, _path, value, timestamp in sink.samples:  # what the tap and the encoders do with them
        float(value), float(timestamp)
    text, skipped = format_plaintext_batch(sink.samples, [s[1] + " " for s in sink.samples])
    assert skipped == 0 and len(text) < 100
    encode_pickle([(s[1], (s[3], s[2])) for s in sink.samples])


def test_a_frame_of_references_to_one_bad_entry_is_counted_per_entry() -> None:
    payload = pickle.dumps([("a", ("x", 1))] * 500_000, protocol=2)
    carbon, sink = make()
    stream = carbon.open_stream("pickle", ADDR)
    assert stream.feed(struct.pack("!L", len(payload)) + payload, NOW)
    assert carbon.counters["bad_points"] == 500_000 and carbon.counters["pickle_frames"] == 1
    assert sink.samples == [] and carbon.counters["errors.internal"] == 0


# -- connections: idle and slow clients, one port never starving the other ---------------------


def test_a_connection_without_a_complete_line_or_frame_for_the_idle_timeout_expires() -> None:
    from bucky.daemon.tcp_limits import SWEEP_PERIOD, ConnectionLimits

    carbon, _ = make()
    assert carbon.idle_timeout == 120.0  # carbon_idle_timeout's default
    limits: ConnectionLimits[str] = ConnectionLimits(1024, 512, carbon.idle_timeout)
    streams = {name: carbon.open_stream(kind, ADDR) for name, kind in (
        ("honest", "line"), ("trickle", "line"), ("silent", "line"), ("pickler", "pickle"),
        ("half-frame", "pickle"))}
    for name, stream in streams.items():
        kind = "pickle" if name in ("pickler", "half-frame") else "line"
        limits.opened(name, kind, stream.completed, 0.0)
    streams["half-frame"].feed(struct.pack("!L", 1000), NOW)  # a frame that never completes

    def feed(name: str, data: bytes, mono: float) -> None:
        streams[name].feed(data, NOW)
        limits.fed(name, streams[name].completed, mono)

    for second in range(1, 130):  # mono is injected: 130 s of one byte a second
        feed("trickle", b"x", second)
        feed("half-frame", b"x", second)
        if second % 60 == 0:  # a line or a frame a minute: progress
            feed("honest", b"a 1 1\n", second)
            feed("pickler", frame([("p", (1, 1))]), second)
        expired = limits.expired(float(second))
        if second < 120:
            assert expired == []
        elif expired:
            break
    assert sorted(expired) == ["half-frame", "silent", "trickle"]
    assert limits.expired(second + SWEEP_PERIOD / 2) == []  # it looks at most once a second
    never: ConnectionLimits[str] = ConnectionLimits(1024, None, None)
    never.opened("silent", "line", 0, 0.0)
    assert never.expired(10**9) == []


def test_each_port_keeps_its_share_of_the_connections() -> None:
    from bucky.daemon.tcp_limits import ConnectionLimits

    carbon, _ = make()
    assert (carbon.max_tcp_connections, carbon.max_tcp_connections_per_listener) == (1024, 512)
    limits: ConnectionLimits[int] = ConnectionLimits(4, 2, 120.0)
    for i in range(2):
        assert not limits.full("line")
        limits.opened(i, "line", 0, 0.0)
    assert limits.full("line") and not limits.full("pickle")  # a flood of line clients ...
    limits.opened(10, "pickle", 0, 0.0)  # ... leaves the pickle port its share
    limits.closed(0)
    assert not limits.full("line")
    limits.opened(11, "pickle", 0, 0.0)
    limits.opened(2, "line", 0, 0.0)
    assert limits.full("tls")  # the bound over all listeners still holds
    shared: ConnectionLimits[int] = ConnectionLimits(3)  # no bound per listener: one may take all
    for i in range(3):
        assert not shared.full("line")
        shared.opened(i, "line", 0, 0.0)
    assert shared.full("line") and shared.full("pickle")


def test_the_input_loop_closes_idle_and_trickling_carbon_clients() -> None:
    """The input loop's TCP connections (bucky.daemon.tcp_streams) over loopback sockets, their
    monotonic clock injected: the silent and the trickling client are closed and counted, the
    honest one stays, and the pickle port still takes a client while the line port is full."""
    import logging
    import selectors
    import socket
    import time

    from bucky.daemon.tcp_streams import StreamConnections
    from bucky.ratelog import RateLimitedLog

    carbon, sink = make()
    carbon.max_tcp_connections, carbon.max_tcp_connections_per_listener = 6, 3
    counters: Counter[str] = Counter()
    sel = selectors.DefaultSelector()
    conns = StreamConnections(carbon, sel, "carbon", counters,
                              RateLimitedLog(logging.getLogger("test")))
    clock = [1000.0]
    conns.monotonic = lambda: clock[0]

    def pump(until: int) -> None:
        deadline = time.monotonic() + 5
        while len(sink.samples) < until and time.monotonic() < deadline:
            for key, _ in sel.select(0.05):
                key.data(key.fileobj)

    with socket.create_server(("127.0.0.1", 0)) as lines, \
            socket.create_server(("127.0.0.1", 0)) as pickles:
        conns.listen("line", lines)
        conns.listen("pickle", pickles)
        clients = [socket.create_connection(lines.getsockname()) for _ in range(4)]
        clients.append(socket.create_connection(pickles.getsockname()))
        honest, trickle, silent, _refused, pickler = clients
        try:
            for _ in range(4):
                conns.accept(lines, "line")
            conns.accept(pickles, "pickle")  # the line port is full, the pickle port is not
            assert len(conns) == 4 and counters["tcp.refused"] == 1
            clock[0] = 1100.0
            honest.sendall(b"a 1 1700000000\n")
            pickler.sendall(frame([("p", (1700000000, 2))]))
            trickle.sendall(b"b")  # bytes, but no complete line: no progress
            pump(2)
            time.sleep(0.1)
            pump(3)  # the trickled byte is read too
            assert sorted(s[1] for s in sink.samples) == ["a", "p"]
            conns.close_idle(NOW, 1000.0 + carbon.idle_timeout - 1)
            assert len(conns) == 4
            conns.close_idle(NOW, 1000.0 + carbon.idle_timeout + 1)
            assert counters["tcp.idle_closed"] == 2 and len(conns) == 2
            assert carbon.counters["bad_lines.truncated"] == 1  # the trickled partial line
            for client in (trickle, silent):
                client.settimeout(5)
                assert client.recv(1) == b""  # closed by the input
            conns.close_idle(NOW, 1100.0 + carbon.idle_timeout + 1)
            assert counters["tcp.idle_closed"] == 4 and len(conns) == 0
        finally:
            for conn in list(conns.streams):
                conn.close()
            for client in clients:
                client.close()
            sel.close()


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


def test_carbon_idle_timeout_is_validated() -> None:
    import pytest

    from bucky.config import make_config
    from bucky.errors import ConfigError

    assert make_config().carbon_idle_timeout == 120.0
    assert make_config(carbon_idle_timeout=None).carbon_idle_timeout is None
    assert CarbonInput(make_config(carbon_idle_timeout=5), ListSink()).idle_timeout == 5.0
    for bad in (0, -1, "soon", float("inf")):
        with pytest.raises(ConfigError, match="carbon_idle_timeout"):
            make_config(carbon_idle_timeout=bad)


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
