"""The running daemon receives MetricsD from the sender and flushes at the handler intervals."""

import time

import pytest
from buckyproc import Bucky
from fakecarbon import FakeCarbon

from bucky.sender.metricsd import MetricsdClient

pytestmark = pytest.mark.integration


def test_metricsd_handler_intervals_and_malformed_datagrams(tmp_path):
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {
            "graphite_port": carbon.port, "statsd_enabled": False, "collectd_enabled": False,
            "metricsd_default_interval": 4.0,
            "metricsd_handlers": [(r"fast\.", 1.0), (r"fast\.but\.slow", 3.0, 5)],
        }).start()
        try:
            port = bucky.ports["metricsd_port"]
            with MetricsdClient(port=port, hostname="app1.example.com") as m:
                m.counter("fast.hits", 3)
                m.gauge("fast.but.slow.level", 9)
                m.meter("slow.events", 1)
                m.timer("fast.latency", 0.25)
            for junk in (b"", b"\xaa", b"\xaa\x00\x05ab", b"\x00" * 64, b"\xaa\x00\x01\x00\x07",
                         b"EXIT"):
                bucky.send_udp("metricsd_port", junk)
            with MetricsdClient(port=port, hostname="app1.example.com") as m:
                m.counter("fast.hits", 2)
            prefix = "com.example.app1."
            assert carbon.wait_for(
                lambda pts: any(p == prefix + "fast.hits.count" and v == 5 for p, v, _ in pts), 10)
            t0 = time.monotonic()
            assert carbon.wait_for(lambda pts: sum(p == prefix + "fast.hits.count"
                                                   for p, _, _ in pts) >= 3, 10)
            fast_period = (time.monotonic() - t0) / 2
            assert fast_period < 2.0
            assert carbon.wait_for(lambda pts: prefix + "slow.events.rate_1m" in
                                   {p[0] for p in pts}, 10)
            assert carbon.wait_for(lambda pts: prefix + "fast.but.slow.level.value" in
                                   {p[0] for p in pts}, 10)
            assert carbon.wait_for(lambda pts: prefix + "fast.latency.p99" in
                                   {p[0] for p in pts}, 10)
            points = carbon.points
            def stamps(path):
                return sorted({int(ts) for p, _, ts in points if p == path})
            slow = stamps(prefix + "fast.but.slow.level.value")
            fast = stamps(prefix + "fast.hits.count")
            # priority 5 beats the first match: every 3 s on the grid, the fast ones every 1 s
            assert all(ts % 3 == 0 for ts in slow)
            assert len(fast) > len(slow)
            assert all(ts % 4 == 0 for ts in stamps(prefix + "slow.events.count"))
            assert bucky.proc.poll() is None
        finally:
            assert bucky.stop() == 0
