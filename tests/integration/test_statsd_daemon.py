"""Real StatsD clients (PyPI `statsd`, DogStatsD from `datadog`) and TCP, through the daemon."""

import socket
import time

import pytest
from buckyproc import Bucky, free_port
from fakecarbon import FakeCarbon
from peers import client_library

pytestmark = pytest.mark.integration


def by_path(carbon):
    out = {}
    for path, value, _ in carbon.points:
        out.setdefault(path, []).append(value)
    return out


def test_pypi_statsd_client(tmp_path):
    statsd = client_library("statsd")
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "statsd_flush_time": 1.0,
                                 "statsd_percentile_thresholds": [90, 99.9]}).start()
        try:
            client = statsd.StatsClient("127.0.0.1", bucky.ports["statsd_port"], prefix="py")
            for _ in range(10):
                client.incr("requests")
            client.incr("sampled", 1, rate=1.0)
            client.decr("requests", 3)
            for ms in range(1, 11):
                client.timing("latency", ms)
            client.gauge("level", 40)
            client.gauge("level", 2, delta=True)
            client.set("users", "alice")
            client.set("users", "bob")
            client.set("users", "alice")
            with client.pipeline() as pipe:
                pipe.incr("piped", 4)
                pipe.timing("piped_time", 7)
            want = {"stats_counts.py.requests", "stats.timers.py.latency.upper_99_9",
                    "stats.gauges.py.level", "stats.sets.py.users.count", "stats_counts.py.piped",
                    "stats.timers.py.piped_time.mean"}
            assert carbon.wait_for(lambda pts: want <= {p[0] for p in pts}, 15)
            got = by_path(carbon)
            assert sum(got["stats_counts.py.requests"]) == 7
            assert got["stats.timers.py.latency.upper"][0] == 10
            assert got["stats.timers.py.latency.mean_90"][0] == pytest.approx(5.0)
            assert got["stats.timers.py.latency.count"][0] == 10
            assert got["stats.timers.py.latency.median"][0] == pytest.approx(5.5)
            assert got["stats.gauges.py.level"][-1] == 42
            assert got["stats.sets.py.users.count"][0] == 2
            assert sum(got["stats_counts.py.piped"]) == 4
        finally:
            assert bucky.stop() == 0


def _dogstatsd_traffic(datadog, port):  # type: ignore[no-untyped-def]
    dog = datadog.dogstatsd.base.DogStatsd(host="127.0.0.1", port=port, disable_telemetry=True)
    dog.increment("dd.hits", 2, tags=["env:prod", "region:eu"])
    dog.increment("dd.hits", 1, tags=["env:dev"])
    dog.gauge("dd.temp", 21.5, tags=["room:a"])
    dog.histogram("dd.size", 100)
    dog.distribution("dd.dist", 3)
    dog.event("deploy", "v1 shipped")
    dog.service_check("dd.check", 0)
    dog.flush()


def test_dogstatsd_client_tags_as_graphite_tags(tmp_path):
    datadog = client_library("datadog")
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "statsd_flush_time": 1.0,
                                 "statsd_legacy_namespace": False,
                                 "statsd_tags": "graphite"}).start()
        try:
            _dogstatsd_traffic(datadog, bucky.ports["statsd_port"])
            want = {"stats.counters.dd.hits.count;env=prod;region=eu",
                    "stats.counters.dd.hits.count;env=dev", "stats.gauges.dd.temp;room=a",
                    "stats.timers.dd.size.upper", "stats.timers.dd.dist.upper"}
            assert carbon.wait_for(lambda pts: want <= {p[0] for p in pts}, 15), carbon.paths()
            got = by_path(carbon)
            assert got["stats.counters.dd.hits.count;env=prod;region=eu"][0] == 2
            assert got["stats.gauges.dd.temp;room=a"][0] == 21.5
        finally:
            assert bucky.stop() == 0


def test_dogstatsd_tags_stay_out_of_names_by_default(tmp_path):
    """A Bucky 2 config (legacy namespace, no statsd_tags): Bucky 2's names, tag sets summed."""
    datadog = client_library("datadog")
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "statsd_flush_time": 1.0,
                                 "statsd_metadata": {"team": "web"}}).start()
        try:
            _dogstatsd_traffic(datadog, bucky.ports["statsd_port"])
            want = {"stats_counts.dd.hits", "stats.dd.hits", "stats.gauges.dd.temp",
                    "stats.timers.dd.size.upper", "stats.timers.dd.dist.upper"}
            assert carbon.wait_for(lambda pts: want <= {p[0] for p in pts}, 15), carbon.paths()
        finally:
            assert bucky.stop() == 0
        got = by_path(carbon)
        assert sum(got["stats_counts.dd.hits"]) == 3  # both tag sets in one series
        assert got["stats.gauges.dd.temp"][0] == 21.5
        assert not [p for p in got if ";" in p or "team" in p or "env" in p], sorted(got)


def test_statsd_over_tcp_with_partial_lines(tmp_path):
    tcp_port = free_port(socket.SOCK_STREAM)
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "statsd_flush_time": 1.0,
                                 "statsd_tcp_port": tcp_port}).start()
        try:
            with socket.create_connection(("127.0.0.1", tcp_port), timeout=5) as s:
                s.sendall(b"tcp.a:1|c\ntcp.b:2|")
                time.sleep(0.05)
                s.sendall(b"c\ntcp.lost:5")  # the client goes away mid-line: only this is lost
            with socket.create_connection(("127.0.0.1", tcp_port), timeout=5) as s:
                s.sendall(b"tcp.a:1|c\n")
            assert carbon.wait_for(lambda pts: {"stats_counts.tcp.a", "stats_counts.tcp.b"}
                                   <= {p[0] for p in pts}, 15)
            got = by_path(carbon)
            assert sum(got["stats_counts.tcp.a"]) == 2
            assert sum(got["stats_counts.tcp.b"]) == 2
            assert "stats_counts.tcp.lost" not in got
        finally:
            assert bucky.stop() == 0
