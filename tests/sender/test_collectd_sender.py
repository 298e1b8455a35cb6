"""Unit tests of bucky.sender.collectd with an injected clock and transport (no collectd needed).

What is checked: the classic module's record/set_exact/sanitizing semantics, singletons, that
calls never raise, exact sums under many threads, datagram size limits (plain, signed,
encrypted), the wire identity of each value, the threads and the exit-time send.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from bucky.protocol import collectd as codec
from bucky.protocol.collectd_records import GAUGE
from bucky.sender import collectd

REPO = Path(__file__).resolve().parents[2]
NOW = 1_700_000_000.25


class Wire:
    """A transport that keeps what it is given."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.lock = threading.Lock()

    def __call__(self, datagram: bytes, address: tuple[str, int]) -> None:
        with self.lock:
            self.sent.append((datagram, address))

    def datagrams(self) -> list[bytes]:
        with self.lock:
            return [datagram for datagram, _ in self.sent]

    def values(self, credentials: dict[str, bytes] | None = None) -> dict[str, float]:
        """type_instance -> value summed over everything sent so far."""
        totals: dict[str, float] = {}
        for datagram in self.datagrams():
            decoded = codec.decode(datagram, 0, credentials)
            assert decoded.errors == []
            for record in decoded.records:
                totals[record.type_instance] = totals.get(record.type_instance, 0.0) + sum(
                    value for _, value in record.values
                )
        return totals


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
def reporter(wire: Wire) -> collectd.Reporter:
    return collectd.Reporter(interval=10, clock=lambda: NOW, transport=wire)


@pytest.fixture
def conn(reporter: collectd.Reporter) -> collectd.Connection:
    return collectd.Connection(hostname="app-01", reporter=reporter)


def test_record_adds_to_the_specific_and_the_base_count(conn, reporter, wire):
    # The classic documentation's example.
    conn.example.record(baz=1)
    conn.example.record("foo", baz=2)
    conn.example.record("bar", baz=3)
    reporter.flush()
    assert wire.values() == {"example-baz": 6.0, "example-foo-baz": 2.0, "example-bar-baz": 3.0}


def test_several_specifics_and_stats_in_one_call(conn):
    conn.req.record("GET", "cached", count=1, seconds=0.5)
    assert conn.req.snapshot() == {
        "req-count": 1.0,
        "req-seconds": 0.5,
        "req-GET-count": 1.0,
        "req-GET-seconds": 0.5,
        "req-cached-count": 1.0,
        "req-cached-seconds": 0.5,
    }


def test_values_reset_after_each_snapshot_and_keep_being_sent_as_zero(conn):
    conn.hits.record(n=2)
    conn.hits.record(n=3)
    assert conn.hits.snapshot() == {"hits-n": 5.0}
    assert conn.hits.snapshot() == {"hits-n": 0.0}  # as the classic module: idle stats send 0
    conn.hits.record(n=1)
    assert conn.hits.snapshot() == {"hits-n": 1.0}


def test_set_exact_sets_and_then_resets(conn):
    conn.queue.record(size=5)
    conn.queue.set_exact(size=17)
    conn.queue.set_exact(size=12)
    assert conn.queue.snapshot() == {"queue-size": 12.0}
    assert conn.queue.snapshot() == {"queue-size": 0.0}


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("^@#@foo%$&&*", "foo"),
        ("*()#@spam!@$^&*", "spam"),
        ("()#@bar&*()baz$^_+", "bar_baz"),
        ("some_counter", "some_counter"),
        ("a--b..c", "a_b_c"),
        ("Grüße", "Gr_e"),  # ASCII only, as collectd identifiers
        ("@@", ""),
    ],
)
def test_sanitize(raw, clean):
    assert collectd.sanitize(raw) == clean


def test_sanitized_names_as_documented(conn):
    counter = getattr(conn, "^@#@foo%$&&*")
    counter.record("()#@bar&*()baz$^_+", **{"*()#@spam!@$^&*": 1})
    assert counter.snapshot() == {"foo-spam": 1.0, "foo-bar_baz-spam": 1.0}


def test_names_that_sanitise_alike_are_merged(conn, reporter, wire):
    conn.foo.record("foo-bar", baz=2)
    conn.foo.record("foo/bar", baz=3)
    getattr(conn, "foo!").record(baz=4)  # another Counter, same sanitized category
    reporter.flush()
    assert wire.values() == {"foo-foo_bar-baz": 5.0, "foo-baz": 9.0}


def test_an_identifier_without_alphanumerics_counts_only_in_the_base(conn):
    conn.x.record("@@", n=1)
    assert conn.x.snapshot() == {"x-n": 1.0}


def test_an_identifier_given_twice_counts_once(conn):
    conn.x.record("a", "a!", n=1)
    assert conn.x.snapshot() == {"x-n": 1.0, "x-a-n": 1.0}


def test_long_names_are_cut_to_what_collectd_accepts(conn, reporter, wire):
    conn.c.record("s" * 200, n=1)
    reporter.flush()
    names = wire.values()
    assert len(names) == 2
    assert all(len(name) <= collectd.MAX_NAME_LENGTH for name in names)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.record(n="1"),
        lambda c: c.record(n=None),
        lambda c: c.record(7, n=1),
        lambda c: c.record(n=1, m=object()),  # a bad stat after a good one: nothing recorded
        lambda c: c.record(**{"@@": 1}),
        lambda c: c.record(n=10**400),  # too big for a float
        lambda c: c.set_exact(n=[1]),
        lambda c: c.set_exact(n=1, **{"%": 2}),
    ],
)
def test_bad_calls_never_raise_record_nothing_and_are_logged(conn, caplog, call):
    with caplog.at_level(logging.ERROR, logger="collectd"):
        assert call(conn.bad) is None
    assert conn.bad.snapshot() == {}
    assert [r.name for r in caplog.records] == ["collectd"]
    assert caplog.records[0].exc_info is not None


def test_a_failing_log_handler_does_not_make_record_raise(conn):
    class Exploding(logging.Handler):
        def emit(self, record):
            raise RuntimeError("handler broke")

        def handleError(self, record):
            raise RuntimeError("and its error handling too")

    handler = Exploding()
    collectd.logger.addHandler(handler)
    try:
        conn.bad.record(n="x")
    finally:
        collectd.logger.removeHandler(handler)


def test_the_logger_has_a_null_handler():
    assert any(isinstance(h, logging.NullHandler) for h in collectd.logger.handlers)


def test_connections_with_identical_arguments_are_one_object(reporter):
    first = collectd.Connection("h", "localhost", 25826, "pi", reporter=reporter)
    first.keep.record(n=1)
    again = collectd.Connection("h", "localhost", 25826, "pi", reporter=reporter)
    by_keyword = collectd.Connection(hostname="h", plugin_inst="pi", reporter=reporter)
    assert first is again is by_keyword
    assert first.keep.snapshot() == {"keep-n": 1.0}  # a repeated Connection(...) kept counters
    assert collectd.Connection("h", plugin_inst="other", reporter=reporter) is not first
    assert collectd.Connection("h", plugin_name="app", reporter=reporter) is not first


def test_default_hostname_is_the_machine_name(reporter):
    default = collectd.Connection(reporter=reporter)
    assert default is collectd.Connection(socket.gethostname(), reporter=reporter)


def test_counters_are_cached_per_category(conn):
    assert conn.foo is conn.foo
    assert conn.foo is not conn.bar
    assert isinstance(conn.foo, collectd.Counter)
    assert conn.foo.category == "foo"


def test_dunder_lookups_stay_attribute_errors(conn):
    assert not hasattr(conn, "__len__")
    assert copy.copy(conn) is not None  # copy probes __reduce_ex__ etc.: no Counter sneaks in


def test_wire_identity_and_high_resolution_time(reporter, wire):
    conn = collectd.Connection(
        "app-01", plugin_inst="worker3", plugin_name="myapp", reporter=reporter
    )
    conn.jobs.record("mail", done=2)
    reporter.flush()
    (datagram,) = wire.datagrams()
    records = codec.decode(datagram).records
    assert {r.type_instance for r in records} == {"jobs-done", "jobs-mail-done"}
    for record in records:
        assert record.host == "app-01"
        assert record.plugin == "myapp"
        assert record.plugin_instance == "worker3"
        assert record.type == "gauge"
        assert record.time == NOW
        assert record.interval == 10.0
        assert record.values == ((GAUGE, 2.0),)
    part_types = _part_types(datagram)
    assert codec.TIME_HR in part_types and codec.INTERVAL_HR in part_types
    assert codec.TIME not in part_types and codec.INTERVAL not in part_types
    assert wire.sent[0][1] == ("localhost", 25826)


def _part_types(datagram: bytes) -> set[int]:
    types, offset = set(), 0
    while offset + 4 <= len(datagram):
        part_type = int.from_bytes(datagram[offset : offset + 2], "big")
        length = int.from_bytes(datagram[offset + 2 : offset + 4], "big")
        types.add(part_type)
        offset += length
    return types


def test_the_default_plugin_is_any(conn, reporter, wire):
    conn.a.record(b=1)
    reporter.flush()
    assert {r.plugin for r in codec.decode(wire.datagrams()[0]).records} == {"any"}


def _many_stats(conn: collectd.Connection, count: int) -> dict[str, float]:
    expected = {}
    for i in range(count):
        stat = f"stat_{i:04d}_" + "x" * 40
        conn.bulk.record(**{stat: i})
        expected[f"bulk-{stat}"] = float(i)
    return expected


@pytest.mark.parametrize("max_packet_size", [1452, 1024])
@pytest.mark.parametrize(
    ("level", "credentials"),
    [(0, None), (1, {"alice": b"secret"}), (2, {"alice": b"secret"})],
)
def test_datagrams_never_exceed_the_limit(reporter, wire, max_packet_size, level, credentials):
    conn = collectd.Connection(
        "app-01",
        security_level=level,
        username="alice" if level else None,
        password="secret" if level else None,
        max_packet_size=max_packet_size,
        reporter=reporter,
    )
    expected = _many_stats(conn, 500)
    reporter.flush()
    datagrams = wire.datagrams()
    assert len(datagrams) > 10
    assert max(map(len, datagrams)) <= max_packet_size
    assert wire.values(credentials) == expected
    security = {0: "none", 1: "sign", 2: "encrypt"}[level]
    for datagram in datagrams:
        decoded = codec.decode(datagram, level, credentials)
        assert {r.security for r in decoded.records} == {security}


def test_encrypted_data_needs_the_right_password(reporter, wire):
    conn = collectd.Connection(
        "app-01", security_level="encrypt", username="alice", password="secret", reporter=reporter
    )
    conn.a.record(b=1)
    reporter.flush()
    decoded = codec.decode(wire.datagrams()[0], 2, {"alice": b"wrong"})
    assert decoded.records == [] and decoded.errors


def test_bad_connection_settings_raise_at_once(reporter):
    with pytest.raises(ValueError, match="username and a password"):
        collectd.Connection(security_level=1, username="alice", reporter=reporter)
    with pytest.raises(ValueError):
        collectd.Connection(security_level="paranoid", reporter=reporter)
    with pytest.raises(ValueError):
        collectd.Connection("h" * 200, reporter=reporter)  # longer than collectd accepts


def test_a_failing_transport_is_logged_and_other_connections_still_send(reporter, wire, caplog):
    def broken(datagram, address):
        raise OSError("network is down")

    bad = collectd.Connection("bad", transport=broken, reporter=reporter)
    good = collectd.Connection("good", reporter=reporter)
    bad.a.record(n=1)
    good.a.record(n=1)
    with caplog.at_level(logging.ERROR, logger="collectd"):
        assert reporter.flush() == 1
    assert wire.values() == {"a-n": 1.0}
    assert "cannot send" in caplog.text


def test_flush_without_data_sends_nothing(reporter, wire):
    collectd.Connection("idle", reporter=reporter)
    assert reporter.flush() == 0
    assert wire.sent == []


def test_exact_sums_with_many_threads(conn, reporter, wire):
    threads_count, calls = 16, 2000
    start = threading.Barrier(threads_count + 1)
    done = threading.Event()

    def work(index: int) -> None:
        start.wait(timeout=10)
        for _ in range(calls):
            conn.load.record(f"t{index % 4}", hits=1, bytes=3)
            conn.level.set_exact(**{f"t{index}": index})

    def snapshots() -> None:
        start.wait(timeout=10)
        while not done.wait(0.002):
            reporter.take_snapshots()  # concurrent snapshots must not lose or double anything

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads_count)]
    snapshotter = threading.Thread(target=snapshots)
    for thread in [*workers, snapshotter]:
        thread.start()
    for thread in workers:
        thread.join(timeout=60)
        assert not thread.is_alive()
    done.set()
    snapshotter.join(timeout=10)
    reporter.flush()
    totals = wire.values()
    assert totals["load-hits"] == threads_count * calls
    assert totals["load-bytes"] == 3 * threads_count * calls
    for group in range(4):
        assert totals[f"load-t{group}-hits"] == threads_count / 4 * calls


def test_start_threads_twice_raises(wire):
    reporter = collectd.Reporter(interval=60, transport=wire)
    reporter.start_threads()
    try:
        with pytest.raises(RuntimeError):
            reporter.start_threads()
    finally:
        reporter.close(timeout=5)


def _wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)  # polling with a deadline, not synchronising by sleeping
    return condition()


def test_threads_send_every_interval_and_close_sends_the_rest(wire):
    reporter = collectd.Reporter(interval=0.05, transport=wire)
    conn = collectd.Connection("app-01", reporter=reporter)
    reporter.start_threads()
    try:
        conn.tick.record(n=1)
        assert _wait_for(lambda: wire.values().get("tick-n") == 1.0)
        assert _wait_for(lambda: len(wire.datagrams()) >= 3)  # zeros keep coming each interval
        conn.tick.record(n=2)
    finally:
        reporter.close(timeout=5)
    assert wire.values()["tick-n"] == 3.0
    assert not any(thread.is_alive() for thread in reporter._threads)
    sent = len(wire.datagrams())
    conn.tick.record(n=5)
    assert len(wire.datagrams()) == sent  # closed: no thread sends any more


def test_udp_transport_sends_to_ipv4_names_and_ipv6():
    transport = collectd.UdpTransport()
    receivers = []
    try:
        v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receivers.append(v4)
        v4.bind(("127.0.0.1", 0))
        v4.settimeout(10)
        transport(b"by-name", ("localhost", v4.getsockname()[1]))  # IPv4 preferred
        assert v4.recv(100) == b"by-name"
        if socket.has_ipv6:
            v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            receivers.append(v6)
            try:
                v6.bind(("::1", 0))
            except OSError as err:
                pytest.skip(f"no IPv6 loopback: {err}")
            v6.settimeout(10)
            transport(b"v6", ("::1", v6.getsockname()[1]))
            assert v6.recv(100) == b"v6"
    finally:
        transport.close()
        for sock in receivers:
            sock.close()


def _run_script(script: str, port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_module_api_and_the_send_at_exit():
    """A short script: start_threads(), record, exit at once; the exit hook sends it all."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(30)
        result = _run_script(
            """
            import sys
            from bucky.sender import collectd
            collectd.start_threads()
            try:
                collectd.start_threads()
            except RuntimeError:
                print("second start refused")
            conn = collectd.Connection("script-host", "127.0.0.1", int(sys.argv[1]))
            conn.jobs.record("mail", done=3)
            conn.jobs.set_exact(queued=7)
            """,
            receiver.getsockname()[1],
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "second start refused"
        records = codec.decode(receiver.recv(65535)).records
    assert {r.type_instance: r.values[0][1] for r in records} == {
        "jobs-done": 3.0,
        "jobs-mail-done": 3.0,
        "jobs-queued": 7.0,
    }
    assert {r.host for r in records} == {"script-host"}
