"""The daemon as a subprocess on loopback: delivery, shutdown, restarts, outages, reload."""

import os
import signal
import socket
import time

import pytest
from buckyproc import Bucky
from fakecarbon import FakeCarbon

from bucky.daemon.selfmetrics import expand_prefix
from bucky.sender.metricsd import MetricsdClient

SELF = expand_prefix("bucky.{host}") + "."  # self-metrics of this host

pytestmark = pytest.mark.integration


def statsd(bucky, payload: bytes) -> None:
    bucky.send_udp("statsd_port", payload)


def values(carbon, path):
    return [v for p, v, _ in carbon.points if p == path]


@pytest.fixture
def carbon():
    with FakeCarbon() as c:
        yield c


@pytest.fixture
def pickle_carbon():
    with FakeCarbon(mode="pickle") as c:
        yield c


def start(tmp_path, carbon, **options):
    opts = {"graphite_port": carbon.port, "statsd_flush_time": 0.5,
            "metricsd_default_interval": 0.5, "graphite_reconnect_delay": 0.1,
            "graphite_backoff_max": 0.5}
    opts.update(options)
    return Bucky(tmp_path, opts).start()


def test_statsd_and_metricsd_reach_carbon_over_plaintext(tmp_path, carbon):
    bucky = start(tmp_path, carbon)
    try:
        statsd(bucky, b"app.hits:3|c\napp.lat:12|ms\napp.level:5|g")
        with MetricsdClient(port=bucky.ports["metricsd_port"], hostname="h1.example.com") as m:
            m.counter("reqs", 5)
        assert carbon.wait_for(lambda pts: {"stats_counts.app.hits", "stats.gauges.app.level",
                                            "stats.timers.app.lat.upper",
                                            "com.example.h1.reqs.count"} <= {p[0] for p in pts})
        assert values(carbon, "stats_counts.app.hits")[0] == 3
        assert values(carbon, "com.example.h1.reqs.count")[0] == 5
    finally:
        assert bucky.stop() == 0


def test_pickle_output(tmp_path, pickle_carbon):
    bucky = start(tmp_path, pickle_carbon, graphite_pickle_enabled=True)
    try:
        statsd(bucky, b"pickled.hits:4|c")
        assert pickle_carbon.wait_for(lambda pts: "stats_counts.pickled.hits" in
                                      {p[0] for p in pts})
        assert values(pickle_carbon, "stats_counts.pickled.hits")[0] == 4
        assert not pickle_carbon.errors
    finally:
        assert bucky.stop() == 0


def test_sigterm_flushes_pending_statsd_interval_and_exits_0(tmp_path, carbon):
    bucky = start(tmp_path, carbon, statsd_flush_time=60)
    statsd(bucky, b"zqterm:5|c\nzqgauge:7|g\nzqtimer:3|ms")
    time.sleep(0.3)  # the datagram is in the kernel buffer or handled; either way it must arrive
    children = bucky.child_pids()
    assert bucky.stop(signal.SIGTERM) == 0
    got = {p[0]: p[1] for p in carbon.points}
    assert got.get("stats_counts.zqterm") == 5
    assert got.get("stats.gauges.zqgauge") == 7
    assert got.get("stats.timers.zqtimer.upper") == 3
    for pid in children.values():
        assert not os.path.exists(f"/proc/{pid}"), "a child outlived the supervisor"


def test_killed_children_are_restarted_and_traffic_continues(tmp_path, carbon):
    bucky = start(tmp_path, carbon)
    try:
        for title in ("bucky: statsd", "bucky: graphite"):
            pid = bucky.child_pids()[title]
            os.kill(pid, signal.SIGKILL)
            bucky.wait_stderr(lambda line, t=title: f"{t[7:]} died unexpectedly" in line)
            bucky.wait_stderr(lambda line, t=title: f"{t[7:]} restarted" in line)
            name = f"after.{title[7:]}"
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                statsd(bucky, f"{name}:1|c".encode())
                if carbon.wait_for(lambda pts, n=name: f"stats_counts.{n}" in {p[0] for p in pts},
                                   1.0):
                    break
            assert f"stats_counts.{name}" in carbon.paths()
    finally:
        assert bucky.stop() == 0


def test_carbon_down_at_start_then_up(tmp_path):
    carbon = FakeCarbon()
    carbon.start()
    port = carbon.port
    carbon.stop()  # nothing listens now
    bucky = start(tmp_path, carbon, graphite_port=port)
    try:
        for i in range(5):
            statsd(bucky, f"outage.g{i}:{i}|g".encode())
        time.sleep(1.5)  # a few flushes happen while carbon is down
        carbon.port = port
        carbon.start()
        assert carbon.wait_for(lambda pts: {f"stats.gauges.outage.g{i}" for i in range(5)}
                               <= {p[0] for p in pts}, 20)
    finally:
        assert bucky.stop() == 0
        carbon.stop()


def test_carbon_restarted_mid_stream_loses_nothing_buffered(tmp_path, carbon):
    bucky = start(tmp_path, carbon, statsd_enabled=False, metricsd_default_interval=0.2)
    try:
        with MetricsdClient(port=bucky.ports["metricsd_port"], hostname="") as m:
            m.gauge("before", 1)
        assert carbon.wait_for(lambda pts: "before.value" in {p[0] for p in pts})
        carbon.stop()
        with MetricsdClient(port=bucky.ports["metricsd_port"], hostname="") as m:
            for i in range(20):
                m.gauge(f"during{i}", i)
        time.sleep(1.0)
        carbon.start()
        assert carbon.wait_for(lambda pts: {f"during{i}.value" for i in range(20)}
                               <= {p[0] for p in pts}, 20)
    finally:
        assert bucky.stop() == 0


def test_stalled_carbon_does_not_stop_inputs(tmp_path):
    carbon = FakeCarbon(rcvbuf=4096).start()
    bucky = start(tmp_path, carbon, graphite_buffer_size=20000, statsd_flush_time=0.2)
    try:
        statsd(bucky, b"warmup:1|c")
        assert carbon.wait_for(lambda pts: "stats_counts.warmup" in {p[0] for p in pts})
        carbon.stall()
        payload = b"\n".join(f"stall.k{i}:1|c".encode() for i in range(200))
        for _ in range(150):  # many distinct keys: output bytes far beyond the socket buffers
            statsd(bucky, payload)
            time.sleep(0.01)
        statsd(bucky, b"probe.after.stall:1|c")
        time.sleep(1.0)
        carbon.resume()
        assert carbon.wait_for(lambda pts: "stats_counts.probe.after.stall" in {p[0] for p in pts},
                               30)
    finally:
        assert bucky.stop() == 0
        carbon.stop()


def test_hostile_datagrams_never_stop_the_daemon(tmp_path, carbon):
    bucky = start(tmp_path, carbon)
    try:
        junk = [b"EXIT", b"", b"\xff" * 100, b"\x00" * 2000, os.urandom(65000), b"\xaa",
                b"\x00\x06\x00\x02", b":|@#\n\r\n" * 50]
        for port in ("statsd_port", "collectd_port", "metricsd_port"):
            for data in junk:
                bucky.send_udp(port, data)
        statsd(bucky, b"still.alive:1|c")
        assert carbon.wait_for(lambda pts: "stats_counts.still.alive" in {p[0] for p in pts})
        assert bucky.proc.poll() is None
        assert len(bucky.child_pids()) >= 4
    finally:
        assert bucky.stop() == 0


def test_processor_filters_renames_and_survives_errors(tmp_path, carbon):
    extra = (
        "def processor(host, name, value, timestamp):\n"
        "    if 'drop' in name:\n"
        "        return None\n"
        "    if 'boom' in name:\n"
        "        raise ValueError('boom')\n"
        "    return host, name.replace('old', 'new'), value, timestamp\n"
    )
    bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "statsd_flush_time": 0.5},
                  extra_config=extra).start()
    try:
        assert "bucky: processor" in bucky.child_pids()
        statsd(bucky, b"old.name:1|c\ndrop.me:1|c\nboom.kept:2|c")
        assert carbon.wait_for(lambda pts: {"stats_counts.new.name", "stats_counts.boom.kept"}
                               <= {p[0] for p in pts})
        assert not any("drop.me" in p for p in carbon.paths())
        bucky.wait_stderr(lambda line: "processor failed" in line)
    finally:
        assert bucky.stop() == 0


def test_self_metrics_are_sent(tmp_path, carbon):
    bucky = start(tmp_path, carbon, self_metrics_interval=0.5)
    try:
        statsd(bucky, b"x:1|c")
        assert carbon.wait_for(lambda pts: any(p[0].startswith(SELF + "statsd.") for p in pts)
                               and any(p[0].startswith(SELF + "graphite.") for p in pts), 15)
    finally:
        assert bucky.stop() == 0


def test_sighup_reload_keeps_running_config_when_invalid_and_applies_valid(tmp_path, carbon):
    bucky = start(tmp_path, carbon, metricsd_enabled=False, collectd_enabled=False)
    try:
        statsd(bucky, b"reload.gauge:42|g")
        assert carbon.wait_for(lambda pts: "stats.gauges.reload.gauge" in {p[0] for p in pts})
        good = bucky.config_path.read_text()
        bucky.config_path.write_text(good + "statsd_port = 'nope'\n")
        bucky.send_signal(signal.SIGHUP)
        bucky.wait_stderr(lambda line: "reload failed, keeping the running configuration" in line)
        bucky.config_path.write_text(good + "statsd_global_prefix = 'reloaded'\n"
                                     "statsd_legacy_namespace = False\n")
        bucky.send_signal(signal.SIGHUP)
        bucky.wait_stderr(lambda line: "configuration reloaded" in line, 30)
        carbon.clear()
        # The gauge set before the reload is still known after it, under the new names.
        assert carbon.wait_for(lambda pts: "reloaded.gauges.reload.gauge" in {p[0] for p in pts},
                               15)
        assert values(carbon, "reloaded.gauges.reload.gauge")[-1] == 42
    finally:
        assert bucky.stop() == 0


def test_ipv6_and_hostname_destinations(tmp_path):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with FakeCarbon(host="::1") as carbon:
        bucky = Bucky(tmp_path, {"graphite_ip": "::1", "graphite_port": carbon.port,
                                 "statsd_flush_time": 0.5, "statsd_ip": "::1"}).start()
        try:
            bucky.send_udp("statsd_port", b"v6.hits:1|c", host="::1")
            assert carbon.wait_for(lambda pts: "stats_counts.v6.hits" in {p[0] for p in pts})
        finally:
            assert bucky.stop() == 0


def test_sighup_keeps_what_outputs_buffer_while_carbon_is_down(tmp_path):
    carbon = FakeCarbon().start()
    port = carbon.port
    bucky = start(tmp_path, carbon, metricsd_enabled=False, collectd_enabled=False)
    try:
        statsd(bucky, b"first:1|c")
        assert carbon.wait_for(lambda pts: "stats_counts.first" in {p[0] for p in pts})
        carbon.stop()
        statsd(bucky, b"buffered.during.outage:5|c")
        time.sleep(1.5)  # flushed by statsd into the output's buffer; carbon is down
        bucky.config_path.write_text(bucky.config_path.read_text() + "statsd_flush_time = 0.7\n")
        bucky.send_signal(signal.SIGHUP)
        bucky.wait_stderr(lambda line: "configuration reloaded (outputs kept running)" in line, 30)
        carbon.port = port
        carbon.start()
        assert carbon.wait_for(lambda pts: "stats_counts.buffered.during.outage" in
                               {p[0] for p in pts}, 20)
    finally:
        assert bucky.stop() == 0
        carbon.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
def test_privileges_dropped_after_binding(tmp_path, carbon):
    import pwd

    nobody = pwd.getpwnam("nobody")
    os.chmod(tmp_path, 0o755)
    bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "statsd_flush_time": 0.5,
                             "uid": "nobody", "gid": nobody.pw_gid}).start()
    try:
        pids = [bucky.proc.pid, *bucky.child_pids().values()]
        for pid in pids:
            with open(f"/proc/{pid}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh)
            assert fields["Uid"].split()[0] == str(nobody.pw_uid)
            assert fields["Gid"].split()[0] == str(nobody.pw_gid)
            assert fields["Groups"].split() in ([], [str(nobody.pw_gid)])
        statsd(bucky, b"as.nobody:1|c")
        assert carbon.wait_for(lambda pts: "stats_counts.as.nobody" in {p[0] for p in pts})
        assert os.stat(tmp_path / "state").st_uid == nobody.pw_uid
    finally:
        assert bucky.stop() == 0


def test_custom_client_gets_every_sample_and_notifications(tmp_path, carbon):
    from bucky.protocol.collectd import encode
    from bucky.protocol.collectd_records import WARNING, Notification

    out = tmp_path / "custom.txt"
    extra = (
        "from bucky.client import Client\n"
        "class FileClient(Client):\n"
        "    def send(self, host, name, value, timestamp, metadata=None):\n"
        f"        with open({str(out)!r}, 'a') as fh:\n"
        "            fh.write(f'{host} {name} {value}\\n')\n"
        "    def notify(self, notification):\n"
        f"        with open({str(out)!r}, 'a') as fh:\n"
        "            fh.write(f'NOTE {notification.message}\\n')\n"
        "custom_clients = [FileClient]\n"
    )
    bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "statsd_flush_time": 0.5},
                  extra_config=extra).start()
    try:
        statsd(bucky, b"custom.hits:2|c")
        note = Notification("web1", "disk", "", "", "", time.time(), WARNING, "disk nearly full")
        for datagram in encode([note]):
            bucky.send_udp("collectd_port", datagram)
        deadline = time.monotonic() + 15
        text = ""
        while time.monotonic() < deadline:
            text = out.read_text() if out.exists() else ""
            if "None stats_counts.custom.hits 2" in text and "NOTE disk nearly full" in text:
                break
            time.sleep(0.1)
        assert "None stats_counts.custom.hits 2" in text
        assert "NOTE disk nearly full" in text
        # Graphite got the sample too, and never the notification.
        assert carbon.wait_for(lambda pts: "stats_counts.custom.hits" in {p[0] for p in pts})
        assert not any("disk" in p for p in carbon.paths())
    finally:
        assert bucky.stop() == 0
