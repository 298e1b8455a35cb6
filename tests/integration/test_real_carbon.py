"""End to end against a real carbon-cache: Bucky's Graphite outputs write, whisper files hold it.

Timestamps are current (whisper silently drops points outside its 1 h retention or in the
future); carbon writes about once a second, so every check polls for up to ~10 s.
"""

from __future__ import annotations

import time

import pytest
from carboncache import CarbonCache

from bucky.config import make_config
from bucky.daemon.outputs import GraphiteClient, build_outputs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def carbon(tmp_path_factory: pytest.TempPathFactory):
    cache = CarbonCache(tmp_path_factory.mktemp("carbon"))
    with cache:
        yield cache


def _client(port: int, pickle: bool) -> GraphiteClient:
    (client,) = build_outputs(make_config(
        graphite_port=port, graphite_pickle_enabled=pickle, name_prefix="buckytest",
        graphite_reconnect_delay=0.1, graphite_backoff_max=0.5))
    assert isinstance(client, GraphiteClient)
    return client


@pytest.mark.parametrize("pickle", [False, True], ids=["plaintext", "pickle"])
def test_points_land_in_whisper(carbon: CarbonCache, pickle: bool) -> None:
    port = carbon.pickle_port if pickle else carbon.line_port
    client = _client(port, pickle)
    kind = "pickle" if pickle else "plain"
    now = int(time.time()) - 2
    samples = [
        ("web1.example.com", f"{kind}.gauge", 42, now),
        ("web1.example.com", f"{kind}.gauge", 43, now + 1),
        (None, f"{kind}.float", 0.1, now),
        (None, f"{kind}.negative", -5e3, now),
        (None, f"{kind}.big", 12345678901, now),
    ]
    client.send(samples, time.monotonic())
    assert client.flush(time.monotonic() + 10), client.counters
    client.close()
    assert client.counters["sent"] == len(samples)
    gauge = f"buckytest.com.example.web1.{kind}.gauge"
    assert carbon.wait_for_value(gauge, now) == 42, carbon.log()
    assert carbon.wait_for_value(gauge, now + 1) == 43
    assert carbon.wait_for_value(f"buckytest.{kind}.float", now) == 0.1
    assert carbon.wait_for_value(f"buckytest.{kind}.negative", now) == -5000.0
    assert carbon.wait_for_value(f"buckytest.{kind}.big", now) == 12345678901.0


@pytest.mark.parametrize("pickle", [False, True], ids=["plaintext", "pickle"])
def test_daemon_to_real_carbon(carbon: CarbonCache, tmp_path, pickle: bool) -> None:
    """The whole relay: StatsD and collectd in, the bucky daemon, carbon-cache's whisper files."""
    from buckyproc import Bucky

    from bucky.protocol.collectd import encode
    from bucky.protocol.collectd_records import DERIVE, GAUGE, ValueList

    kind = "pickle" if pickle else "plain"
    port = carbon.pickle_port if pickle else carbon.line_port
    bucky = Bucky(tmp_path, {"graphite_port": port, "graphite_pickle_enabled": pickle,
                             "statsd_flush_time": 1.0, "metricsd_enabled": False}).start()
    try:
        bucky.send_udp("statsd_port", f"e2e.{kind}.hits:7|c\ne2e.{kind}.level:3.5|g".encode())
        now = time.time()
        records = [ValueList("e2e-host", kind, "", "gauge", "g", now - 1, 1.0, ((GAUGE, 12.5),)),
                   ValueList("e2e-host", kind, "", "derive", "d", now - 2, 1.0, ((DERIVE, 100),)),
                   ValueList("e2e-host", kind, "", "derive", "d", now - 1, 1.0, ((DERIVE, 160),))]
        for datagram in encode(records):
            bucky.send_udp("collectd_port", datagram)
        assert carbon.wait_for_value(f"e2e-host.{kind}.gauge.g", int(now - 1)) == 12.5, carbon.log()
        assert carbon.wait_for_value(f"e2e-host.{kind}.derive.d", int(now - 1)) == 60.0
        deadline = time.monotonic() + 15
        found = {}
        while time.monotonic() < deadline and len(found) < 2:
            for path, expected in ((f"stats_counts.e2e.{kind}.hits", 7.0),
                                   (f"stats.gauges.e2e.{kind}.level", 3.5)):
                if carbon.wsp_path(path).exists():
                    values = [v for _, v in carbon.fetch(path, int(now) - 30, int(now) + 30)
                              if v is not None]
                    if expected in values:
                        found[path] = expected
            time.sleep(0.2)
        assert len(found) == 2, (found, carbon.log())
    finally:
        assert bucky.stop() == 0
