"""Output clients against a fake carbon (and a UDP sink): delivery, outages, backpressure, resets.

Every wait is a poll loop with a deadline; backoff uses short real delays or synthetic `now`s.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fakecarbon import FakeCarbon, free_port
from outputdrive import FAST_BACKOFF, batch, run_until

from bucky.client import Client
from bucky.config import make_config
from bucky.daemon.outputs import (
    CustomClientAdapter,
    DebugClient,
    GraphiteClient,
    GraphitePickleClient,
    InfluxDBClient,
    _ChunkBuffer,
    build_outputs,
    influx_prefix,
    output_factories,
    pack_lines,
    parse_host_port,
)
from bucky.errors import ConfigError
from bucky.names import NameRules


def cfg(**overrides: Any) -> Any:
    return make_config(**overrides)


def graphite(port: int, pickle: bool = False, **overrides: Any) -> GraphiteClient:
    # the memory buffer's own behaviour; the disk spool has tests/daemon/test_spooled_buffer.py
    options = dict(FAST_BACKOFF, graphite_port=port, graphite_pickle_enabled=pickle,
                   graphite_spool_max_bytes=0)
    options.update(overrides)
    (client,) = build_outputs(cfg(**options))
    assert isinstance(client, GraphiteClient)
    return client


@pytest.fixture
def carbon():
    with FakeCarbon() as fake:
        yield fake


@pytest.fixture
def pickle_carbon():
    with FakeCarbon(mode="pickle") as fake:
        yield fake


# --- plaintext delivery ------------------------------------------------------------------------


def test_delivery_in_order_with_name_rules(carbon: FakeCarbon) -> None:
    client = graphite(carbon.port, name_prefix="pre")
    sent = []
    for b in range(10):
        samples = [("web1.example.com", f"cpu.{i}", b * 100 + i + 0.5, 1_700_000_000 + b)
                   for i in range(100)]
        sent += samples
        client.send(samples, time.monotonic())
        client.poll(time.monotonic())
    assert run_until(client, lambda: len(carbon.points) >= 1000)
    rules = NameRules.from_config(cfg(name_prefix="pre"))
    assert carbon.points == [(rules.statname(h, n), v, t) for h, n, v, t in sent]
    assert carbon.points[0][0] == "pre.com.example.web1.cpu.0"
    assert client.counters["sent"] == 1000 and client.counters["connects"] == 1
    assert client.pending() == 0 and carbon.errors == []
    client.close()


def test_values_and_timestamps_on_the_wire(carbon: FakeCarbon) -> None:
    client = graphite(carbon.port)
    samples = [(None, "int", 42, 1700000000.9), (None, "neg", -5e-07, 1700000000),
               (None, "huge", 2**70, 1700000000), (None, "exp", 1e300, 1700000000),
               (None, "bad", "x", 1700000000), (None, "spaced name", 1, 1700000000)]
    client.send(samples, time.monotonic())
    assert run_until(client, lambda: len(carbon.points) >= 5)
    assert carbon.points == [("int", 42, 1700000000), ("neg", -5e-07, 1700000000),
                             ("huge", 2**70, 1700000000), ("exp", 1e300, 1700000000),
                             ("spaced_name", 1, 1700000000)]
    assert client.counters["dropped.invalid"] == 1


def test_carbon_down_at_start_then_up_delivers_the_buffered_points() -> None:
    port = free_port()
    client = graphite(port)
    start = time.monotonic()
    for b in range(5):
        client.send(batch("early", b * 10, 10), time.monotonic())
        client.poll(time.monotonic())
    assert time.monotonic() - start < 0.5  # nothing waits on the dead carbon
    assert run_until(client, lambda: client.counters["connect_failures"] >= 3, 5)
    assert client.pending() == 50
    with FakeCarbon(port=port) as carbon:
        client.send(batch("late", 0, 5), time.monotonic())
        assert run_until(client, lambda: len(carbon.points) >= 55)
        assert carbon.paths() == [f"early.m{i}" for i in range(50)] + [
            f"late.m{i}" for i in range(5)]
    client.close()


def test_carbon_restarted_mid_stream_loses_nothing_within_the_buffer() -> None:
    carbon = FakeCarbon().start()
    client = graphite(carbon.port)
    client.send(batch("a", 0, 100), time.monotonic())
    assert run_until(client, lambda: len(carbon.points) >= 100)
    carbon.stop()
    carbon.clear()
    # The client notices the closed connection by itself (it reads before it writes). Data
    # written before that would be the documented in-flight loss, so wait for it here.
    assert run_until(client, lambda: client.counters["disconnects"] == 1, 5)
    for b in range(5):
        client.send(batch("b", b * 20, 20), time.monotonic())
        client.poll(time.monotonic())
    assert run_until(client, lambda: client.counters["connect_failures"] >= 2, 5)
    carbon.start()  # same port
    client.send(batch("c", 0, 10), time.monotonic())
    try:
        assert run_until(client, lambda: "c.m9" in carbon.paths())
        expected = [f"b.m{i}" for i in range(100)] + [f"c.m{i}" for i in range(10)]
        got = carbon.paths()
        assert got == expected  # nothing lost, nothing repeated: no chunk was in flight
        assert client.counters["connects"] == 2
    finally:
        carbon.stop()
        client.close()


def test_chunk_cut_by_a_disconnect_is_resent_whole(carbon: FakeCarbon) -> None:
    client = graphite(carbon.port)
    client.send(batch("x", 0, 1), time.monotonic())
    assert run_until(client, lambda: len(carbon.points) == 1)
    # simulate a break half-way through a chunk: as if the socket failed mid-write
    client.send(batch("y", 0, 3), time.monotonic())
    (conn,) = client.connections
    assert conn._next_chunk()
    conn._offset = 5
    conn._lost(time.monotonic(), "test break")
    assert client.pending() == 3 and client.counters["requeued"] == 3
    assert run_until(client, lambda: len(carbon.points) >= 4)
    assert carbon.paths()[1:] == ["y.m0", "y.m1", "y.m2"]


def test_stalled_carbon_keeps_send_fast_and_memory_bounded_then_newest_arrives() -> None:
    with FakeCarbon(rcvbuf=4096) as carbon:
        client = graphite(carbon.port, graphite_buffer_size=20_000)
        client.send(batch("warm", 0, 1), time.monotonic())
        assert run_until(client, lambda: len(carbon.points) == 1)
        carbon.stall()
        slowest = 0.0
        started = time.monotonic()
        for b in range(300):  # 300k points, ~15 MB: far beyond the socket buffers
            samples = [(None, f"stall.{b}.{i}", i, 1_700_000_000) for i in range(1000)]
            t0 = time.monotonic()
            client.send(samples, t0)
            client.poll(time.monotonic())
            slowest = max(slowest, time.monotonic() - t0)
            assert client.pending() <= 20_000 + 2 * 1000  # bound + the in-flight and newest chunk
        elapsed = time.monotonic() - started
        assert slowest < 0.25, f"send+poll took {slowest:.3f} s"
        assert elapsed < 20
        assert client.counters["dropped.buffer_full"] > 0
        carbon.resume()
        assert run_until(client, lambda: "stall.299.999" in carbon.paths(), 20)
        assert client.pending() == 0
        paths = carbon.paths()
        assert paths.index("stall.299.0") < paths.index("stall.299.999")  # still in order
        delivered = len(paths) - 1
        dropped = client.counters["dropped.buffer_full"]
        assert delivered + dropped >= 300_000  # every point is either delivered or counted
        client.close()


def test_reset_mode_backs_off() -> None:
    with FakeCarbon() as carbon:
        carbon.reset_mode = True
        client = graphite(carbon.port, graphite_reconnect_delay=0.05,
                          graphite_backoff_factor=2.0, graphite_backoff_max=0.4)
        run_until(client, lambda: False, timeout=1.5)
        # immediate reconnects would make hundreds; the schedule 0.05, 0.1, 0.2, 0.4 ... allows ~8
        assert 2 <= carbon.connections <= 12, carbon.connections
        carbon.reset_mode = False
        client.send(batch("probe", 0, 1), time.monotonic())
        assert run_until(client, lambda: "probe.m0" in carbon.paths(), 5)
        client.close()


def test_exhausted_reconnects_drop_the_buffer_and_recover_when_carbon_returns() -> None:
    port = free_port()
    client = graphite(port, graphite_max_reconnects=2, graphite_reconnect_delay=1.0,
                      graphite_backoff_factor=2.0, graphite_backoff_max=4.0)
    now = 1000.0  # synthetic time: the connection attempts are real, the waits are not
    client.send(batch("old", 0, 30), now)
    client.poll(now)
    assert client.counters["connect_failures"] == 1 and client.pending() == 30
    now += 1.0
    client.poll(now)
    assert client.counters["connect_failures"] == 2
    assert client.counters["dropped.reconnects_exhausted"] == 30 and client.pending() == 0
    client.send(batch("during", 0, 7), now)
    assert client.counters["dropped.reconnects_exhausted"] == 37 and client.pending() == 0
    now += 1.9
    client.poll(now)
    assert client.counters["connect_failures"] == 2  # the schedule goes on: next try after 2 s
    with FakeCarbon(port=port) as carbon:
        now += 0.1
        client.poll(now)
        assert client.counters["connects"] == 1
        client.send(batch("new", 0, 3), now)
        deadline = time.monotonic() + 5
        while len(carbon.points) < 3 and time.monotonic() < deadline:
            client.poll(now)
        assert carbon.paths() == ["new.m0", "new.m1", "new.m2"]
    client.close()


def test_self_metrics_go_ahead_of_buffered_user_data() -> None:
    port = free_port()
    client = graphite(port)
    client.send(batch("user", 0, 5), time.monotonic())
    client.send([(None, "bucky.self.sent", 5, 1_700_000_000)], time.monotonic(), front=True)
    with FakeCarbon(port=port) as carbon:
        assert run_until(client, lambda: len(carbon.points) >= 6)
        assert carbon.paths()[0] == "bucky.self.sent"
    client.close()


def test_ipv6_loopback() -> None:
    try:
        fake = FakeCarbon(host="::1").start()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        client = graphite(fake.port, graphite_ip="::1")
        client.send(batch("v6", 0, 3), time.monotonic())
        assert run_until(client, lambda: len(fake.points) >= 3)
        assert fake.paths() == ["v6.m0", "v6.m1", "v6.m2"]
        client.close()
    finally:
        fake.stop()


def test_localhost_by_name(carbon: FakeCarbon) -> None:
    client = graphite(carbon.port, graphite_ip="localhost")
    client.send(batch("byname", 0, 2), time.monotonic())
    assert run_until(client, lambda: len(carbon.points) >= 2)
    assert client.counters["connects"] == 1


def test_next_address_is_tried_when_the_first_refuses(carbon: FakeCarbon) -> None:
    client = graphite(carbon.port)
    dead = ("127.0.0.1", free_port())
    infos = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", dead),
             (socket.AF_INET, socket.SOCK_STREAM, 6, "", carbon.address)]
    client.connections[0]._resolver.lookup = lambda: list(infos)  # type: ignore[method-assign]
    client.send(batch("fallback", 0, 1), time.monotonic())
    assert run_until(client, lambda: len(carbon.points) == 1)
    assert client.counters["connect_failures"] == 0  # one attempt, second address


def test_unresolvable_host_counts_as_failed_attempt() -> None:
    client = graphite(2003, graphite_ip="no-such-host.invalid")
    client.connections[0]._connect_timeout = 1.0  # whatever the resolver does, the attempt ends
    assert run_until(client, lambda: client.counters["connect_failures"] >= 1, 10)
    assert client.counters["connects"] == 0


def test_flush_and_close(carbon: FakeCarbon) -> None:
    client = graphite(carbon.port)
    client.send(batch("f", 0, 500), time.monotonic())
    assert client.flush(time.monotonic() + 5) is True
    assert client.pending() == 0
    assert carbon.wait_for(500, 5)
    client.close()
    down = graphite(free_port())
    down.send(batch("g", 0, 10), time.monotonic())
    t0 = time.monotonic()
    assert down.flush(time.monotonic() + 0.3) is False
    assert time.monotonic() - t0 < 2
    down.close()
    assert down.counters["dropped.shutdown"] == 10


# --- pickle --------------------------------------------------------------------------------------


def test_pickle_messages_are_bounded_and_flushed_by_age(pickle_carbon: FakeCarbon) -> None:
    client = GraphitePickleClient(cfg(**FAST_BACKOFF, graphite_port=pickle_carbon.port,
                                      graphite_pickle_buffer_size=7), max_age=0.5)
    t0 = 5000.0  # synthetic `now`: the age logic is driven explicitly
    client.send([("h.example", f"m{i}", i * 1.5, 1_700_000_000) for i in range(20)], t0)

    def pump(now: float, until: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            client.poll(now)
            if until():
                return True
        return False

    assert pump(t0, lambda: len(pickle_carbon.points) >= 14)
    assert pickle_carbon.frame_sizes == [7, 7]
    assert client.pending() == 6
    assert client.poll(t0 + 0.4) == pytest.approx(0.1)  # wants a poll when the partial is due
    assert client.pending() == 6
    assert pump(t0 + 0.5, lambda: len(pickle_carbon.points) >= 20)
    assert pickle_carbon.frame_sizes == [7, 7, 6]
    assert pickle_carbon.points[0] == ("example.h.m0", 0.0, 1_700_000_000)
    assert [p[1] for p in pickle_carbon.points] == [i * 1.5 for i in range(20)]
    assert pickle_carbon.errors == []
    client.close()


def test_pickle_self_metrics_are_framed_at_once(pickle_carbon: FakeCarbon) -> None:
    client = graphite(pickle_carbon.port, pickle=True)
    assert client.name == "graphite_pickle"
    client.send(batch("user", 0, 3), time.monotonic())  # waits for more (partial message)
    client.send([(None, "bucky.self", 1, 1_700_000_000)], time.monotonic(), front=True)
    assert run_until(client, lambda: len(pickle_carbon.points) >= 1)
    assert pickle_carbon.paths()[0] == "bucky.self"
    assert client.flush(time.monotonic() + 5)
    assert pickle_carbon.wait_for(4, 5)
    assert pickle_carbon.paths()[1:] == ["user.m0", "user.m1", "user.m2"]


def test_pickle_converts_odd_values_and_skips_bad_ones(pickle_carbon: FakeCarbon) -> None:
    from decimal import Decimal

    client = graphite(pickle_carbon.port, pickle=True)
    client.send([(None, "dec", Decimal("2.5"), 1_700_000_000.7), (None, "bad", "x", 1),
                 (None, "ok", 3, 1_700_000_001)], time.monotonic())
    assert client.flush(time.monotonic() + 5)
    assert pickle_carbon.wait_for(2, 5)
    assert pickle_carbon.points == [("dec", 2.5, 1_700_000_000), ("ok", 3, 1_700_000_001)]
    assert client.counters["dropped.invalid"] == 1 and pickle_carbon.errors == []


# --- the buffer ----------------------------------------------------------------------------------


def test_chunk_buffer_drops_oldest_whole_chunks_and_keeps_the_newest() -> None:
    buf = _ChunkBuffer(10)
    assert buf.append(b"a" * 4, 4) == 0
    assert buf.append(b"b" * 4, 4) == 0
    assert buf.append(b"c" * 4, 4) == 4  # 12 > 10: the oldest whole chunk goes
    assert buf.points == 8
    assert buf.append(b"d" * 30, 30) == 8  # alone over the bound: kept, the rest dropped
    assert buf.points == 30
    assert buf.take() == (b"d" * 30, 30) and not buf


def test_chunk_buffer_prefers_dropping_user_data_over_self_metrics() -> None:
    buf = _ChunkBuffer(10)
    buf.append(b"s", 4, front=True)
    buf.append(b"u", 4)
    assert buf.append(b"v", 4) == 4  # the older user chunk goes, the self-metrics stay
    assert buf.append(b"t", 4, front=True) == 4  # user data first, but never the newest chunk
    assert buf.take() == (b"st", 8)


def test_chunk_buffer_front_and_coalescing() -> None:
    buf = _ChunkBuffer(100)
    buf.append(b"1", 1)
    buf.append(b"2", 1)
    buf.append(b"S", 1, front=True)
    buf.push_head(b"R", 1)
    assert buf.take() == (b"RS12", 4)
    buf.append(b"x" * 10, 1)
    buf.append(b"y" * 10, 1)
    assert buf.take(max_bytes=15) == (b"x" * 10, 1)
    assert buf.clear() == 1 and buf.points == 0


# --- debug, influxdb, custom ---------------------------------------------------------------------


def test_debug_writes_graphite_lines_to_stdout() -> None:
    out = io.StringIO()
    outputs = build_outputs(cfg(debug=True, influxdb_enabled=True), stdout=out)
    assert [o.name for o in outputs] == ["debug", "influxdb"]
    debug = outputs[0]
    assert isinstance(debug, DebugClient)
    debug.send([("web1.example.com", "load", 0.5, 1_700_000_000.2), (None, "n", 3, 1)], 0.0)
    assert out.getvalue() == "com.example.web1.load 0.5 1700000000\nn 3 1\n"
    assert debug.counters["sent"] == 2 and debug.pending() == 0 and debug.flush(0.0)


def test_debug_survives_a_closed_stdout() -> None:
    out = io.StringIO()
    debug = DebugClient(cfg(), stdout=out)
    out.close()
    debug.send([(None, "n", 1, 1)], 0.0)
    assert debug.counters["errors"] == 1


def test_influx_line_protocol_escaping() -> None:
    assert influx_prefix("web 1", "cpu,load;env=prod;dc=a b") == (
        "cpu\\,load,dc=a\\ b,env=prod,host=web\\ 1 value=")
    assert influx_prefix(None, "plain") == "plain value="
    assert influx_prefix("", "a=b;k=") == "a=b value="
    assert pack_lines(["aaaa", "bbbb", "cc"], 10) == [b"aaaa\nbbbb", b"cc"]
    assert pack_lines(["x" * 20, "y"], 10) == [b"x" * 20, b"y"]


def test_parse_host_port() -> None:
    assert parse_host_port("h:1", 9) == ("h", 1)
    assert parse_host_port("h", 9) == ("h", 9)
    assert parse_host_port("[::1]:5", 9) == ("::1", 5)
    assert parse_host_port("::1", 9) == ("::1", 9)
    for bad in ("h:x", "h:0", ":5", "[::1]x"):
        with pytest.raises(ConfigError):
            parse_host_port(bad, 9)


def test_influxdb_sends_to_every_host_without_blocking() -> None:
    sinks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for s in sinks:
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
    hosts = tuple(f"127.0.0.1:{s.getsockname()[1]}" for s in sinks)
    (client,) = build_outputs(cfg(graphite_enabled=False, influxdb_enabled=True,
                                  influxdb_hosts=hosts))
    assert isinstance(client, InfluxDBClient)
    client.send([("h1", "cpu", 5, 1_700_000_000), (None, "x", 0.25, 1.5),
                 (None, "nan", float("nan"), 1)], time.monotonic())
    for s in sinks:
        data = s.recv(65536)
        assert data == b"cpu,host=h1 value=5.0 1700000000000000000\nx value=0.25 1500000000"
        s.close()
    assert client.counters["sent"] == 2 and client.counters["dropped.invalid"] == 1
    client.close()


def test_influxdb_by_name_is_resolved_in_the_background() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(5)
        client = InfluxDBClient(cfg(influxdb_hosts=(f"localhost:{sink.getsockname()[1]}",)))
        client.send([(None, "early", 1, 1)], time.monotonic())  # held until resolved
        assert run_until(client, lambda: client.counters["bytes_sent"] > 0, 5)
        assert sink.recv(65536) == b"early value=1.0 1000000000"


class Recorder(Client):
    instances: list[Recorder] = []

    def __init__(self, cfg: Any, pipe: Any) -> None:
        super().__init__(cfg, pipe)
        self.samples: list[tuple] = []
        self.notes: list[Any] = []
        self.ticks = 0
        self.closed = False
        Recorder.instances.append(self)

    def send(self, host, name, value, timestamp, metadata=None):  # type: ignore[no-untyped-def]
        if name == "boom":
            raise RuntimeError("custom client bug")
        self.samples.append((host, name, value, timestamp))

    def notify(self, notification: Any) -> None:
        self.notes.append(notification)

    def tick(self) -> None:
        self.ticks += 1

    def close(self) -> None:
        self.closed = True


def test_custom_client_gets_every_raw_sample_and_survives_its_exceptions() -> None:
    Recorder.instances.clear()
    outputs = build_outputs(cfg(graphite_enabled=False, custom_clients=(Recorder, Recorder)))
    assert [o.name for o in outputs] == ["custom_Recorder", "custom_Recorder_2"]
    assert Recorder.instances == []  # built lazily, inside the output process
    adapter = outputs[0]
    samples = [("web1.example.com", "cpu.0", 1, 10), (None, "boom", 2, 11), (None, "b", 3.5, 12)]
    adapter.send(samples, 100.0)
    (recorder,) = Recorder.instances
    assert recorder.cfg is not None and recorder.pipe is None
    assert recorder.samples == [samples[0], samples[2]]  # raw host and name: no name rules
    assert adapter.counters["errors"] == 1 and adapter.counters["sent"] == 2
    adapter.send([(None, "later", 4, 13)], 100.0)
    assert recorder.samples[-1] == (None, "later", 4, 13)
    adapter.notify("a notification")
    assert recorder.notes == ["a notification"]
    adapter.poll(100.0)
    adapter.poll(100.5)
    adapter.poll(101.0)
    assert recorder.ticks == 2
    adapter.close()
    assert recorder.closed


def test_custom_client_constructor_failure_is_retried() -> None:
    calls = []

    class Flaky(Client):
        def __init__(self, cfg: Any, pipe: Any) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise OSError("cannot connect yet")
            super().__init__(cfg, pipe)
            self.got: list[tuple] = []

        def send(self, host, name, value, timestamp, metadata=None):  # type: ignore[no-untyped-def]
            self.got.append((host, name, value, timestamp))

    clock = [0.0]
    adapter = CustomClientAdapter(Flaky, cfg(), clock=lambda: clock[0])
    adapter.send([(None, "a", 1, 1)], 0.0)
    assert adapter.counters["dropped.unavailable"] == 1 and adapter.counters["errors.init"] == 1
    adapter.send([(None, "b", 1, 1)], 0.5)  # before the retry delay: not even tried
    assert len(calls) == 1
    adapter.send([(None, "c", 1, 1)], 1.0)
    assert len(calls) == 2 and adapter._instance.got == [(None, "c", 1, 1)]


def test_bucky2_style_super_call_still_works() -> None:
    class Old(Client):
        def __init__(self, cfg: Any, pipe: Any) -> None:
            super().__init__(pipe)  # Bucky 2's base took only the pipe
            self.config = cfg

        def send(self, host, name, value, timestamp, metadata=None):  # type: ignore[no-untyped-def]
            self.last = name

    adapter = CustomClientAdapter(Old, cfg())
    adapter.send([(None, "x", 1, 1)], 0.0)
    assert adapter._instance.last == "x" and adapter._instance.config is not None
    with pytest.raises(NotImplementedError):
        Client().send(None, "n", 1, 1)


# --- assembly -----------------------------------------------------------------------------------


def test_build_outputs_order_names_and_no_io() -> None:
    before = threading.active_count()
    outputs = build_outputs(cfg(graphite_port=free_port(), influxdb_enabled=True,
                                influxdb_hosts=("localhost:1",), custom_clients=(Recorder,)))
    assert [o.name for o in outputs] == ["graphite", "influxdb", "custom_Recorder"]
    graphite_client = outputs[0]
    assert isinstance(graphite_client, GraphiteClient)
    assert graphite_client.connections[0]._sock is None and threading.active_count() == before
    assert build_outputs(cfg(graphite_pickle_enabled=True))[0].name == "graphite_pickle"
    assert build_outputs(cfg(graphite_enabled=False)) == []


def test_output_factories_name_outputs_without_building_them() -> None:
    built = []

    class Counted(Recorder):
        def __init__(self, *args: Any) -> None:
            built.append(self)
            super().__init__(*args)

    options = cfg(debug=True, influxdb_enabled=True, custom_clients=(Counted, Counted))
    factories = output_factories(options)
    assert [f.name for f in factories] == ["debug", "influxdb", "custom_Counted",
                                           "custom_Counted_2"]
    assert built == []
    client = factories[3].build()
    assert client.name == "custom_Counted_2"


def test_bad_influxdb_host_fails_while_planning() -> None:
    with pytest.raises(ConfigError, match="influxdb_hosts"):
        output_factories(cfg(influxdb_enabled=True, influxdb_hosts=("[::1",)))


# --- throughput (a measurement, with a floor far below the target so CI stays stable) ------------


def test_plaintext_throughput_send_to_socket_sink() -> None:
    received = [0]
    ready = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def sink() -> None:
        conn, _ = listener.accept()
        ready.set()
        with conn:
            while True:
                data = conn.recv(1 << 20)
                if not data:
                    return
                received[0] += data.count(b"\n")

    thread = threading.Thread(target=sink, daemon=True)
    thread.start()
    client = graphite(listener.getsockname()[1], graphite_buffer_size=10_000_000)
    hosts = [f"host{i}.example.com" for i in range(20)]
    batches = []
    for b in range(20):
        batches.append([(hosts[i % 20], f"cpu.{i % 50}.idle", (i * 7919) % 1000 if i % 2 else
                         round(i * 0.37, 2), 1_700_000_000 + b) for i in range(1000)])
    client.poll(time.monotonic())
    assert ready.wait(5)
    rounds = 100
    t0 = time.perf_counter()
    for r in range(rounds):
        client.send(batches[r % 20], 0.0)
        client.poll(0.0)
    assert client.flush(time.monotonic() + 30)
    client.close()
    thread.join(30)
    elapsed = time.perf_counter() - t0
    listener.close()
    assert received[0] == rounds * 1000
    rate = rounds * 1000 / elapsed
    print(f"\nplaintext output: {rate:,.0f} samples/s (send() to bytes received by a sink)")
    assert rate > 100_000


def test_path_cache_forgets_names_gone_quiet_and_keeps_names_in_use() -> None:
    from bucky.daemon.outputs.paths import PathCache

    now = [0.0]
    computed = []

    class Rules:
        def statname(self, host: str | None, name: str) -> str:
            computed.append(name)
            return name

    cache = PathCache(Rules(), " ", clock=lambda: now[0], generation=60.0)  # type: ignore
    assert cache.for_batch([(None, "a", 1, 1), (None, "b", 1, 1)]) == ["a ", "b "]
    now[0] = 61.0  # a new generation: both still found in the previous one, computed once
    assert cache.for_batch([(None, "a", 1, 1)]) == ["a "]
    now[0] = 122.0  # another: "b" was not used for a whole generation and is forgotten
    assert cache.for_batch([(None, "a", 1, 1), (None, "b", 1, 1)]) == ["a ", "b "]
    assert computed == ["a", "b", "b"]
    assert "b" not in cache._hosts[None].previous


def test_path_cache_stays_bounded_over_all_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    from bucky.daemon.outputs import paths

    monkeypatch.setattr(paths, "CACHE_LIMIT", 20)  # new paths a generation, all hosts together
    computed = []

    class Rules:
        def statname(self, host: str | None, name: str) -> str:
            computed.append((host, name))
            return f"{host}.{name}"

    cache = paths.PathCache(Rules(), clock=lambda: 0.0)  # type: ignore
    for i in range(500):
        assert cache.for_batch([(f"h{i % 7}", f"n{i}", 1, 1), ("web", "busy", 1, 1)]) == [
            f"h{i % 7}.n{i}", "web.busy"]
        held = sum(names.entries() for names in {**cache._hosts.previous, **cache._hosts}.values())
        assert held <= 2 * (20 + 1)  # two generations of new paths plus the one in use
    assert computed.count(("web", "busy")) == 1 and len(computed) == 501



def test_output_log_lines_leave_the_output_name_to_the_process_name(caplog) -> None:
    """Each output runs in a process named after it ("bucky: custom_Broken"), which every log
    line starts with; the messages do not say it again."""

    class Broken(Client):
        def __init__(self, cfg: Any, pipe: Any) -> None:
            raise OSError("cannot connect yet")

    class Unwritable(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("disk full")

    adapter = CustomClientAdapter(Broken, cfg(), clock=lambda: 0.0)
    debug = DebugClient(cfg(), stdout=Unwritable())
    with caplog.at_level("WARNING", logger="bucky"):
        adapter.send([(None, "a", 1, 1)], 0.0)
        debug.send([(None, "a", 1, 1)], 0.0)
    messages = [record.getMessage() for record in caplog.records]
    assert any("Broken(cfg, None) failed" in m for m in messages), messages
    assert any("cannot write to stdout" in m for m in messages), messages
    for message in messages:
        assert not message.startswith(("custom_Broken", "debug:")), message
