"""The status server in the running daemon: /health follows carbon, /metrics parses, data shows.

README promises checked here: /health is ok/200 while every process runs and each destination
is connected, degraded/200 while the spool keeps what carbon does not take, failing/503 with the
reasons while data is dropped; /metrics has every
process's self-metrics and each destination's counters in the Prometheus format."""

from __future__ import annotations

import json

import pytest
from buckyproc import Bucky, wait_until
from fakecarbon import FakeCarbon
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration


def health(bucky: Bucky) -> tuple[int, dict]:
    status, body = bucky.http_get("/health")
    return status, json.loads(body)


@pytest.mark.parametrize("options,state,code", [
    ({"graphite_spool_max_bytes": 0}, "failing", 503),  # no spool: new data is dropped
    ({}, "degraded", 200),  # the disk spool keeps the data: nothing is lost
    ({"http_degraded_status": 503}, "degraded", 503),
], ids=["no-spool", "spool", "spool-degraded-503"])
def test_health_flips_when_carbon_goes_away_and_back_when_it_returns(tmp_path, options, state,
                                                                     code) -> None:
    carbon = FakeCarbon().start()
    bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "graphite_max_reconnects": 2,
                             "graphite_reconnect_delay": 0.1, "graphite_backoff_max": 0.5,
                             "statsd_flush_time": 0.5, **options}).start()
    try:
        assert wait_until(lambda: health(bucky)[1]["status"] == "ok"), health(bucky)
        carbon.stop()
        bucky.send_udp("statsd_port", b"flip:1|c")  # something to write makes the loss visible
        assert wait_until(lambda: any("reconnect plan is used up" in r
                                      for r in health(bucky)[1]["reasons"])), health(bucky)
        status, body = health(bucky)
        assert status == code and body["status"] == state, body
        carbon.start()
        assert wait_until(lambda: health(bucky)[0] == 200, 30), health(bucky)
        assert wait_until(lambda: health(bucky)[1]["status"] == "ok", 30), health(bucky)
    finally:
        assert bucky.stop() == 0
        carbon.stop()


def test_health_is_503_while_a_process_is_down(tmp_path) -> None:
    import os
    import signal

    carbon = FakeCarbon().start()
    bucky = Bucky(tmp_path, {"graphite_port": carbon.port}).start()
    try:
        assert wait_until(lambda: health(bucky)[0] == 200), health(bucky)
        pid = bucky.child_pids()["bucky: metricsd"]
        os.kill(pid, signal.SIGKILL)
        body = wait_until(lambda: (lambda h: h[1] if h[0] == 503 else None)(health(bucky)), 10)
        assert body and "process metricsd is down" in body["reasons"], body
        assert wait_until(lambda: health(bucky)[0] == 200, 20)  # restarted
    finally:
        bucky.stop()
        carbon.stop()


def test_metrics_has_every_process_and_destination_and_parses(tmp_path) -> None:
    carbon = FakeCarbon().start()
    bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "self_metrics_interval": 0.5,
                             "statsd_flush_time": 0.5}).start()
    try:
        bucky.send_udp("statsd_port", b"m.one:1|c\nm.two:5|g\nbad line")

        def parsed() -> dict | None:
            status, body = bucky.http_get("/metrics")
            assert status == 200
            fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
            procs = {s.labels.get("process") for f in fams.values() for s in f.samples}
            names = {s.name for f in fams.values() for s in f.samples}
            if {"statsd", "collectd", "metricsd", "graphite"} <= procs and \
                    {"bucky_bad_lines_total", "bucky_destination_sent_total"} <= names:
                return fams
            return None

        fams = wait_until(parsed, 20)
        assert fams, bucky.http_get("/metrics")[1].decode()[:3000]
        samples = [s for f in fams.values() for s in f.samples]
        for f in fams.values():
            if f.type == "counter":
                assert all(s.name.endswith("_total") for s in f.samples), f
        bad = [s for s in samples if s.name == "bucky_bad_lines_total"]
        assert bad and bad[0].labels == {"process": "statsd"} and bad[0].value >= 1
        sent = [s for s in samples if s.name == "bucky_destination_sent_total"]
        assert sent and sent[0].labels["process"] == "graphite" and "destination" in sent[0].labels
        up = {s.labels["process"]: s.value for s in samples if s.name == "bucky_process_up"}
        assert up == {"http": 1, "graphite": 1, "statsd": 1, "collectd": 1, "metricsd": 1}
    finally:
        assert bucky.stop() == 0
        carbon.stop()


def test_http_can_be_disabled(tmp_path) -> None:
    import socket

    bucky = Bucky(tmp_path, {"http_enabled": False}, debug=True).start()
    try:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", bucky.ports["http_port"]), timeout=1).close()
        assert "bucky: http" not in bucky.child_pids()
    finally:
        assert bucky.stop() == 0


@pytest.mark.parametrize("change", ["statsd_flush_time = 2.0", "http_history_seconds = 60.0"])
def test_health_stays_right_across_a_reload(tmp_path, change) -> None:
    import signal

    carbon = FakeCarbon().start()
    bucky = Bucky(tmp_path, {"graphite_port": carbon.port}).start()
    try:
        assert wait_until(lambda: health(bucky)[0] == 200), health(bucky)
        with open(bucky.config_path, "a") as fh:
            fh.write(change + "\n")
        bucky.send_signal(signal.SIGHUP)
        bucky.wait_stderr(lambda line: "configuration reloaded" in line)
        assert wait_until(lambda: health(bucky)[0] == 200, 10), health(bucky)
        titles = sorted(p["title"] for p in health(bucky)[1]["processes"])
        assert titles == ["collectd", "graphite", "http", "metricsd", "statsd"]
        assert len([t for t in bucky.child_pids() if t == "bucky: http"]) == 1
    finally:
        assert bucky.stop() == 0
        carbon.stop()
