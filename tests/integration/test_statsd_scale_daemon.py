"""StatsD at scale through the real daemon: N workers, the management port, a Bucky proxy in front
of three Bucky aggregators, the npm package's proxy.js choosing the same nodes, and a node lost
and found again while the proxy runs."""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import inputs.test_statsd_reference as ref
import pytest
from buckyproc import Bucky, free_port
from fakecarbon import FakeCarbon
from peers import npm_package

from bucky.config import make_config
from bucky.inputs.statsd import StatsdInput

# The reference StatsD (npm statsd 0.9.0) as the single-process comparison runs it.
reference = ref.reference
reference_package = ref.reference_package

pytestmark = pytest.mark.integration

INPUT = Path(__file__).resolve().parent.parent / "data" / "statsd" / "reference_input.json"
OWN = ("statsd.", "processing_time", "timestamp_lag", "numStats")


def datagrams() -> list[bytes]:
    return [d.encode("ascii") for d in json.loads(INPUT.read_text())["datagrams"]]


class _Sink:
    def __init__(self) -> None:
        self.samples: list[tuple] = []

    def extend(self, samples: list[tuple]) -> None:
        self.samples.extend(samples)

    def append(self, sample: tuple) -> None:
        self.samples.append(sample)


def one_process(tmp_path: Path, data: list[bytes]) -> dict[str, float]:
    """What a single StatsdInput makes of `data` in one interval, closed by SIGTERM."""
    sink = _Sink()
    inp = StatsdInput(make_config(directory=str(tmp_path), statsd_flush_time=3600.0), sink)
    now = 1_000_000.0
    inp.tick(now)
    for d in data:
        inp.handle(d, None, now + 1)
    inp.close(now + 2)
    return {s[1]: s[2] for s in sink.samples}


def admin(port: int, command: str, timeout: float = 5.0) -> str:
    """One command on the management port; the answer is what arrives until it goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(command.encode() + b"\n")
        data = conn.recv(65536)
        conn.settimeout(0.15)
        deadline = time.monotonic() + timeout
        while data and time.monotonic() < deadline:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        return data.decode()


def send_all(port: int, data: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in data:
            s.sendto(d, ("127.0.0.1", port))
            time.sleep(0.001)  # loopback UDP drops bursts beyond the receive buffer


def user_series(points: list[tuple]) -> dict[str, float]:
    return {p[0]: p[1] for p in points if not any(x in p[0] for x in OWN)}


@pytest.mark.parametrize("workers", [2, 4])
def test_workers_in_the_daemon_give_one_process_results(tmp_path: Path, workers: int) -> None:
    data = datagrams()
    want = one_process(tmp_path, data)
    admin_port = free_port(socket.SOCK_STREAM)
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "statsd_flush_time": 3600.0,
                                 "statsd_workers": workers, "statsd_admin_port": admin_port,
                                 "statsd_tcp_port": free_port(socket.SOCK_STREAM)}).start()
        try:
            titles = " ".join(bucky.child_pids())
            assert all(f"statsd.{i + 1}" in titles for i in range(workers))
            send_all(bucky.ports["statsd_port"], data)
            deadline = time.monotonic() + 10
            lines = int(want["stats_counts.statsd.metrics_received"])
            while time.monotonic() < deadline:  # every line arrived (asked over the mesh)
                counters = admin(admin_port, "counters")
                if f"'statsd.metrics_received': {lines}" in counters:
                    break
                time.sleep(0.1)
            assert "'statsd.bad_lines_seen': 6" in counters
            assert "'app.requests': 13" in counters or "'app.requests': 13," in counters
            assert admin(admin_port, "health") == "health: up\n"
            assert admin(admin_port, "health down") == "health: down\n"
            assert "messages.bad_lines_seen: 6\n" in admin(admin_port, "stats")
        finally:
            assert bucky.stop() == 0
        assert carbon.wait_for(lambda pts: any("numStats" in p[0] for p in pts), 10)
    points = carbon.points
    got = {p[0]: p[1] for p in points}
    assert Counter(p[0] for p in points).most_common(1)[0][1] == 1  # every series once
    assert len({p[2] for p in points}) == 1  # one flush, one timestamp (the grid's)
    assert {k for k in got if "processing_time" not in k} == {
        k for k in want if "processing_time" not in k}
    assert {k: v for k, v in got.items() if "processing_time" not in k} == {
        k: v for k, v in want.items() if "processing_time" not in k}


def test_an_admin_client_cannot_hold_up_the_flushes(tmp_path: Path) -> None:
    """Issue 19: `counters` 2,000 times in one write stopped the flushes for over 95 s and lost
    the counters sent meanwhile. Now the client is disconnected (and counted) at once, and the
    flushes keep their one-second schedule."""
    admin_port = free_port(socket.SOCK_STREAM)
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "statsd_flush_time": 1.0,
                                 "statsd_workers": 2, "statsd_admin_port": admin_port,
                                 "self_metrics_interval": 0.5}).start()
        try:
            send_all(bucky.ports["statsd_port"],
                     ["\n".join(f"held.key{i}.{j}:1|c" for j in range(100)).encode()
                      for i in range(50)])  # 5,000 keys: each `counters` answer is big
            with socket.create_connection(("127.0.0.1", admin_port), timeout=10) as conn:
                conn.sendall(b"counters\n" * 2000)
                started = time.monotonic()
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    for _ in range(20):
                        probe.sendto(b"probe:1|c", ("127.0.0.1", bucky.ports["statsd_port"]))
                        time.sleep(0.2)
                closed = False
                while not closed and time.monotonic() - started < 10:
                    try:
                        closed = conn.recv(1 << 20) == b""
                    except ConnectionResetError:
                        closed = True
                assert closed, "the management port kept the client"
            ends = [p[2] for p in carbon.points if p[0] == "stats_counts.probe"]
            assert carbon.wait_for(lambda pts: any(
                p[0].endswith("admin.disconnected.too_many_commands") for p in pts), 10)
        finally:
            assert bucky.stop() == 0
    probes = [p for p in carbon.points if p[0] == "stats_counts.probe"]
    assert sum(p[1] for p in probes) == 20  # nothing lost
    # the probes were flushed on schedule while the client wrote: at least 3 of the ~4 flushes
    assert len(set(ends)) >= 3, sorted(ends)


# --- forwarding ----------------------------------------------------------------------------------


class FakeNode:
    """A UDP StatsD node that records lines, with a TCP admin port answering `health: up`."""

    def __init__(self) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.2)
        self.port = self.udp.getsockname()[1]
        self.admin = socket.socket()
        self.admin.bind(("127.0.0.1", 0))
        self.admin.listen(16)
        self.admin.settimeout(0.2)
        self.adminport = self.admin.getsockname()[1]
        self.lines: list[bytes] = []
        self._stop = False
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._recv, self._serve)]
        for t in self._threads:
            t.start()

    def _recv(self) -> None:
        while not self._stop:
            try:
                data = self.udp.recv(65536)
            except (TimeoutError, OSError):
                continue
            self.lines.extend(line for line in data.split(b"\n") if line)

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.admin.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                try:
                    conn.settimeout(1)
                    conn.recv(100)
                    conn.sendall(b"health: up\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._stop = True
        for t in self._threads:
            t.join(2)
        self.udp.close()
        self.admin.close()


def wait_lines(nodes: list[FakeNode], count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while sum(len(n.lines) for n in nodes) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_bucky_proxy_chooses_the_nodes_proxy_js_chooses(tmp_path: Path) -> None:
    package = npm_package("statsd")
    keys = [f"scale.key{i}.{'é' if i % 7 == 0 else 'x'}" for i in range(5000)]
    lines = [f"{k}:1|c".encode() for k in keys]
    packets = [b"\n".join(lines[i:i + 20]) for i in range(0, len(lines), 20)]

    def placement(nodes: list[FakeNode]) -> dict[bytes, int]:
        where = {}
        for i, node in enumerate(nodes):
            for line in node.lines:
                where[line.partition(b":")[0]] = i
        return where

    nodes = [FakeNode() for _ in range(3)]
    try:
        # proxy.js in front of the three nodes
        port = free_port()
        config = {"nodes": [{"host": "127.0.0.1", "port": n.port, "adminport": n.adminport}
                            for n in nodes],
                  "server": "./servers/udp", "address": "127.0.0.1", "port": port,
                  "mgmt_address": "127.0.0.1", "mgmt_port": free_port(socket.SOCK_STREAM),
                  "checkInterval": 1000}
        (tmp_path / "proxy.json").write_text(json.dumps(config))
        with (tmp_path / "proxy.log").open("wb") as log:
            proc = subprocess.Popen([shutil.which("node") or "node", "proxy.js",
                                     str(tmp_path / "proxy.json")],
                                    cwd=package, stdout=log, stderr=subprocess.STDOUT)
            try:
                time.sleep(1.5)  # up, first health checks answered
                send_all(port, packets)
                wait_lines(nodes, len(lines))
                theirs = placement(nodes)
            finally:
                proc.kill()
                proc.wait(10)
        assert len(theirs) == len(keys), f"proxy.js delivered {len(theirs)} of {len(keys)} keys"
        for n in nodes:
            n.lines.clear()
        # Bucky as the proxy, in front of the same three nodes
        forward = [f"127.0.0.1:{n.port}:{n.adminport}" for n in nodes]
        bucky = Bucky(tmp_path, {"statsd_forward": forward, "graphite_enabled": False}).start()
        try:
            send_all(bucky.ports["statsd_port"], packets)
            wait_lines(nodes, len(lines))
            ours = placement(nodes)
        finally:
            assert bucky.stop() == 0
    finally:
        for n in nodes:
            n.close()
    assert len(ours) == len(keys)
    assert ours == theirs
    assert sorted(Counter(ours.values()).values())[0] > 1000  # all three nodes have keys


def aggregator(tmp_path: Path, name: str, carbon: FakeCarbon, **extra: Any) -> Bucky:
    home = tmp_path / name
    home.mkdir(exist_ok=True)
    options = {"graphite_port": carbon.port, "statsd_flush_time": 3600.0,
               "statsd_admin_port": free_port(socket.SOCK_STREAM), **extra}
    return Bucky(home, options)


def metrics_received(admin_port: int) -> int:
    text = admin(admin_port, "counters")
    for part in text.replace("\n", ",").split(","):
        if "'statsd.metrics_received'" in part:
            return int(part.split(":")[1].strip(" }"))
    return -1


def test_proxy_in_front_of_three_aggregators_gives_one_process_results(tmp_path: Path) -> None:
    data = datagrams()
    want = one_process(tmp_path, data)
    total = sum(1 for d in data for line in d.split(b"\n") if line)
    carbons = [FakeCarbon().start() for _ in range(3)]
    aggs = [aggregator(tmp_path, f"agg{i}", c) for i, c in enumerate(carbons)]
    proxy = None
    try:
        for a in aggs:
            a.start()
        forward = [f"127.0.0.1:{a.ports['statsd_port']}:{a.options['statsd_admin_port']}"
                   for a in aggs]
        (tmp_path / "proxy").mkdir()
        proxy = Bucky(tmp_path / "proxy", {"statsd_forward": forward,
                                           "graphite_enabled": False}).start()
        send_all(proxy.ports["statsd_port"], data)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            got = [metrics_received(a.options["statsd_admin_port"]) for a in aggs]
            if sum(got) >= total:
                break
            time.sleep(0.1)
        assert sum(got) == total and all(g > 0 for g in got), got
    finally:
        if proxy is not None:
            assert proxy.stop() == 0
        for a in aggs:
            assert a.stop() == 0
    per_node = []
    for c in carbons:
        assert c.wait_for(lambda pts: any("numStats" in p[0] for p in pts), 10)
        per_node.append(user_series(c.points))
        c.stop()
    union: dict[str, float] = {}
    for series in per_node:
        assert not set(series) & set(union)  # each key on exactly one aggregator
        union.update(series)
    assert union == user_series([(k, v) for k, v in want.items()])


def test_a_lost_aggregator_leaves_the_ring_and_rejoins(tmp_path: Path) -> None:
    from bucky.protocol.statsd_ring import HashRing

    carbons = [FakeCarbon().start() for _ in range(4)]
    aggs = [aggregator(tmp_path, f"agg{i}", c) for i, c in enumerate(carbons[:3])]
    proxy = None
    try:
        for a in aggs:
            a.start()
        nodes = [f"127.0.0.1:{a.ports['statsd_port']}" for a in aggs]
        forward = [f"{n}:{a.options['statsd_admin_port']}" for n, a in zip(nodes, aggs,
                                                                              strict=True)]
        (tmp_path / "proxy").mkdir()
        proxy = Bucky(tmp_path / "proxy", {
            "statsd_forward": forward, "statsd_forward_check_interval": 0.3,
            "graphite_port": carbons[3].port, "self_metrics_interval": 0.5,
        }).start()
        ring = HashRing(nodes)
        victim = aggs[1]
        label = nodes[1].replace(".", "_").replace(":", "_")
        keys = [k for k in (f"lost.k{i}" for i in range(400)) if ring.get(k) == nodes[1]][:40]
        assert len(keys) == 40

        def self_metric(name: str) -> float:
            path = f".statsd.forward.{label}.{name}"  # after self_metrics_prefix
            return sum(p[1] for p in carbons[3].points if p[0].endswith(path))

        victim.kill()  # SIGKILL: no goodbye
        assert carbons[3].wait_for(lambda pts: self_metric("removed") >= 1, 15)
        send_all(proxy.ports["statsd_port"], [f"{k}:1|c".encode() for k in keys])
        found: set[str] = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(found) < len(keys):
            for a in (aggs[0], aggs[2]):
                text = admin(a.options["statsd_admin_port"], "counters")
                found |= {k for k in keys if f"'{k}': 1" in text}
            time.sleep(0.1)
        assert found == set(keys)  # the lost node's keys moved to the others

        again = Bucky(victim.tmp_path, victim.options).start()  # same ports, same config
        aggs[1] = again
        assert carbons[3].wait_for(lambda pts: self_metric("rejoined") >= 1, 15)
        send_all(proxy.ports["statsd_port"], [f"{k}:2|c".encode() for k in keys])
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline:
            text = admin(again.options["statsd_admin_port"], "counters")
            if all(f"'{k}': 2" in text for k in keys):
                break
            time.sleep(0.1)
        assert all(f"'{k}': 2" in text for k in keys)  # back home
        assert self_metric("failed_checks") >= 1
    finally:
        if proxy is not None:
            assert proxy.stop() == 0  # nothing crashed
        for a in aggs:
            if a.proc is not None and a.proc.poll() is None:
                a.stop()
        for c in carbons:
            c.stop()


# --- the management interface against the reference's ---------------------------------------------

ADMIN_INPUT = [b"a.b:1|c\nfoo:2|c|@0.5", b"api.t:5|ms\napi.t:7.5|ms\ng:3|g", b"bad line",
               b"s:x|s\nlong.counter.name.number.one:1|c\nlong.counter.name.number.two:2|c",
               # names the two workers share out in an order that is not the arrival order
               b"z.first:1|c\nm.second:2|c\nb.third:3|c\nq.fourth;k=v:1|c\nq.fourth:1|c",
               b"t.z:1|ms\nt.a:2|ms\nt.m:3|ms\ng.z:1|g\ng.a:2|g\ng.m:3|g\ng;k=v:4|g"]
ADMIN_COMMANDS = ["health", "health down", "health", "health up", "help", "counters", "timers",
                  "gauges", "stats", "delcounters foo nothere", "deltimers api.*", "delgauges g",
                  "counters", "timers", "gauges", "nonsense"]


def ask_all(port: int) -> list[str]:
    return [admin(port, c, timeout=2.0) for c in ADMIN_COMMANDS]


@pytest.mark.parametrize("workers", [1, 2])
def test_management_answers_as_the_reference(tmp_path: Path, workers: int) -> None:
    package = npm_package("statsd")
    udp, mgmt = free_port(), free_port(socket.SOCK_STREAM)
    config = {"port": udp, "address": "127.0.0.1", "mgmt_address": "127.0.0.1",
              "mgmt_port": mgmt, "flushInterval": 3_600_000, "backends": []}
    (tmp_path / "ref.json").write_text(json.dumps(config))
    with (tmp_path / "ref.log").open("wb") as log:
        proc = subprocess.Popen([shutil.which("node") or "node", "stats.js",
                                 str(tmp_path / "ref.json")],
                                cwd=package, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    admin(mgmt, "health", timeout=0.5)
                    break
                except OSError:
                    time.sleep(0.1)
            send_all(udp, ADMIN_INPUT)
            time.sleep(0.5)
            theirs = ask_all(mgmt)
        finally:
            proc.kill()
            proc.wait(10)
    port = free_port(socket.SOCK_STREAM)
    (tmp_path / "bucky").mkdir()
    bucky = Bucky(tmp_path / "bucky", {"statsd_flush_time": 3600.0, "statsd_admin_port": port,
                                       "statsd_workers": workers, "graphite_enabled": False,
                                       "statsd_tags": "graphite"})  # keys as the reference's
    bucky.start()
    try:
        send_all(bucky.ports["statsd_port"], ADMIN_INPUT)
        time.sleep(0.5)
        ours = ask_all(port)
    finally:
        assert bucky.stop() == 0
    # Byte for byte, with N workers too: the keys in the order one process met them (stats.js
    # prints its objects in insertion order). `stats`: the uptime and the age of the last
    # message are seconds of each run's own clock; everything else is compared as it is.
    for command, mine, reference_answer in zip(ADMIN_COMMANDS, ours, theirs, strict=True):
        if command == "stats":
            def masked(text: str) -> str:
                return re.sub(r"^(uptime|messages\.last_msg_seen): \d+$", r"\1: N", text,
                              flags=re.M)

            assert masked(mine) == masked(reference_answer), command
            assert re.search(r"^uptime: \d$", mine, re.M), mine
        else:
            assert mine == reference_answer, command


def test_reload_to_another_worker_count_keeps_pending_aggregates(tmp_path: Path) -> None:
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "statsd_flush_time": 3600.0,
                                 "statsd_workers": 2, "statsd_persistent_gauges": True})
        bucky.start()
        try:
            send_all(bucky.ports["statsd_port"],
                     [f"r.c{i}:1|c\nr.g{i}:{i}|g\nr.t{i}:{i}|ms".encode() for i in range(30)])
            time.sleep(0.5)
            text = bucky.config_path.read_text().replace("statsd_workers = 2",
                                                         "statsd_workers = 3")
            bucky.config_path.write_text(text)
            bucky.send_signal(signal.SIGHUP)
            bucky.wait_stderr(lambda line: "configuration reloaded" in line, 30)
            assert "statsd.3" in " ".join(bucky.child_pids())
            send_all(bucky.ports["statsd_port"], [f"r.c{i}:2|c".encode() for i in range(30)])
            time.sleep(0.5)
        finally:
            assert bucky.stop() == 0
        assert carbon.wait_for(lambda pts: any("numStats" in p[0] for p in pts), 10)
    got = {p[0]: p[1] for p in carbon.points}
    assert Counter(p[0] for p in carbon.points).most_common(1)[0][1] == 1
    assert all(got[f"stats_counts.r.c{i}"] == 3 for i in range(30))
    assert all(got[f"stats.gauges.r.g{i}"] == i for i in range(30))
    assert all(got[f"stats.timers.r.t{i}.upper"] == i for i in range(30))
    assert got["stats_counts.statsd.metrics_received"] == 120
    saved = sorted(p.name for p in (tmp_path / "state").iterdir() if p.name.startswith("gauges"))
    assert saved == ["gauges.save.w1", "gauges.save.w2", "gauges.save.w3"]


# --- the daemon against the reference StatsD, on Graphite-tagged names -------------------------

def tagged_datagrams() -> list[bytes]:
    """The recorded input plus Graphite-tagged names (`name;k=v`): several tag sets of one name
    (the router must keep each key whole, wherever the name goes), timers with enough values for
    every percentile, gauge deltas and sets."""
    extra = [b"app.gt;env=prod:3|c\napp.gt;env=dev:1|c\napp.gt:2|c\napp.gt;env=prod:4|c|@0.5",
             b"pool.gt;host=a:5|g\npool.gt;host=b:7|g\npool.gt;host=a:+3|g\npool.gt;host=b:-2|g",
             b"users.gt;team=a:u1|s\nusers.gt;team=a:u2|s\nusers.gt;team=b:u1|s\n"
             b"users.gt;team=a:u1|s"]
    for start in range(1, 41, 10):
        extra.append("\n".join(f"api.gt;route=home:{i * 1.37:.2f}|ms" for i in
                               range(start, start + 10)).encode())
    extra.append(b"api.gt;route=away:3|ms\napi.gt;route=away:11.5|ms|@0.25\nhist;k=v:42|ms")
    return datagrams() + extra


def reference_options(legacy: bool = True) -> dict[str, Any]:
    return {"statsd_tags": "graphite", "statsd_legacy_namespace": legacy,
            "statsd_percentile_thresholds": ref.PERCENTILES,
            "statsd_histogram": [(h["metric"], h["bins"]) for h in ref.HISTOGRAM]}


def differences(ours: dict[str, float], theirs: dict[str, float], skip: tuple[str, ...] = ()
                ) -> dict[str, tuple]:
    theirs = {k: v for k, v in theirs.items()
              if not any(x in k for x in ref.REFERENCE_ONLY + skip)}
    ours = {k: v for k, v in ours.items() if not any(x in k for x in skip)}
    out: dict[str, tuple] = {k: (ours.get(k), theirs.get(k)) for k in set(ours) ^ set(theirs)}
    out.update({k: (ours[k], theirs[k]) for k in set(ours) & set(theirs)
                if not any(x in k for x in ref.VALUE_NOT_COMPARED)
                and not math.isclose(ours[k], theirs[k], rel_tol=1e-9, abs_tol=1e-9)})
    return out


def test_workers_in_the_daemon_flush_what_the_reference_flushes(tmp_path: Path,
                                                                 reference: Any) -> None:
    """statsd_workers = 2 through the real daemon, one whole flush (own statistics included)
    against stats.js's flush of the same tagged input."""
    data = tagged_datagrams()
    lines = sum(1 for d in data for line in d.split(b"\n") if line)
    theirs = ref.reference_flush(reference, True, data)
    assert any(";env=prod" in k for k in theirs) and any(";route=home" in k for k in theirs)
    (tmp_path / "bucky").mkdir()
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path / "bucky", {"graphite_port": carbon.port, "statsd_flush_time": 1.0,
                                           "statsd_workers": 2, **reference_options()}).start()
        try:
            def flushes() -> dict[int, dict[str, float]]:
                by_ts: dict[int, dict[str, float]] = {}
                for name, value, ts in carbon.points:
                    by_ts.setdefault(int(ts), {})[name] = value
                return by_ts

            ours: dict[str, float] = {}
            for _attempt in range(3):
                assert carbon.wait_for(lambda pts: any("numStats" in p[0] for p in pts), 15)
                seen = max(flushes())
                # right after a flush: the whole input lands in the next one
                deadline = time.monotonic() + 5
                while max(flushes()) == seen and time.monotonic() < deadline:
                    time.sleep(0.005)
                send_all(bucky.ports["statsd_port"], data)
                after = max(flushes())
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    done = {ts: f for ts, f in flushes().items()
                            if ts > after and any(k.endswith("numStats") for k in f)}
                    if done:  # the workers' parts come separately: until it stops growing
                        ts = min(done)
                        size = -1
                        while size != len(flushes()[ts]):
                            size = len(flushes()[ts])
                            time.sleep(0.3)
                        ours = flushes()[ts]
                        break
                    time.sleep(0.05)
                if ours.get("stats_counts.statsd.metrics_received") == lines:
                    break
        finally:
            assert bucky.stop() == 0
    assert ours.get("stats_counts.statsd.metrics_received") == lines, "input straddled flushes"
    assert differences(ours, theirs) == {}


def test_a_proxy_in_front_of_aggregators_gives_what_the_reference_gives(
        tmp_path: Path, reference: Any) -> None:
    """A Bucky proxy in front of two Bucky aggregators (statsd_workers = 2 each): the union of
    their user series is stats.js's, on the tagged input."""
    data = tagged_datagrams()
    theirs = ref.reference_flush(reference, True, data)
    total = sum(1 for d in data for line in d.split(b"\n") if line)
    carbons = [FakeCarbon().start() for _ in range(2)]
    aggs = [aggregator(tmp_path, f"agg{i}", c, statsd_workers=2, **reference_options())
            for i, c in enumerate(carbons)]
    proxy = None
    try:
        for a in aggs:
            a.start()
        forward = [f"127.0.0.1:{a.ports['statsd_port']}:{a.options['statsd_admin_port']}"
                   for a in aggs]
        (tmp_path / "proxy").mkdir()
        proxy = Bucky(tmp_path / "proxy", {"statsd_forward": forward,
                                           "graphite_enabled": False}).start()
        send_all(proxy.ports["statsd_port"], data)
        deadline = time.monotonic() + 15
        got: list[int] = []
        while time.monotonic() < deadline:
            got = [metrics_received(a.options["statsd_admin_port"]) for a in aggs]
            if sum(got) >= total:
                break
            time.sleep(0.1)
        # blank lines and events are not forwarded as lines a node counts the same way
        assert sum(got) >= total - 1 and all(g > 0 for g in got), (got, total)
    finally:
        if proxy is not None:
            assert proxy.stop() == 0
        for a in aggs:
            assert a.stop() == 0
    union: dict[str, float] = {}
    for c in carbons:
        assert c.wait_for(lambda pts: any("numStats" in p[0] for p in pts), 10)
        series = user_series(c.points)
        c.stop()
        assert not set(series) & set(union)  # each key on exactly one aggregator
        union.update(series)
    want = {k: v for k, v in theirs.items() if not any(x in k for x in OWN + ("graphiteStats",))}
    assert any(";host=a" in k for k in want)
    # The aggregators flush once, at their SIGTERM (the input cannot straddle a flush there);
    # per-second rates are per their 3,600 s interval where the reference's are per 1 s.
    for name in union:
        base = name.partition(";")[0]
        if base.endswith(".count_ps") or (base.startswith("stats.") and not base.startswith(
                ("stats.timers.", "stats.gauges.", "stats.sets."))):
            union[name] *= 3600.0
    assert differences(union, want) == {}
