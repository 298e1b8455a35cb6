"""Bucky in front of a real Graphite cluster: three carbon-cache instances (a, b, c).

Each instance has its own data directory, so where a whisper file appears shows which instance
received the metric. StatsD data (and Bucky's own self-metrics) go through the daemon with
`graphite_destinations`; afterwards every whisper file on every instance must belong there
according to carbon's own ConsistentHashingRouter (Debian's graphite-carbon, run by
tests/data/carbon_placement.py), and every metric sent must be stored on exactly one instance.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from buckyproc import Bucky, carbon_ports
from carboncache import CarbonCache, start_all
from fakecarbon import FakeCarbon, free_port
from peers import missing

from bucky.protocol.placement import make_router, parse_destinations

pytestmark = pytest.mark.integration

DEBIAN_PYTHON = "/usr/bin/python3"
ORACLE = Path(__file__).resolve().parent.parent / "data" / "carbon_placement.py"
INSTANCES = "abc"


@pytest.fixture
def cluster(tmp_path: Path):
    caches = start_all([CarbonCache(tmp_path / f"carbon-{i}", i) for i in INSTANCES])
    yield caches
    for cache in caches:
        cache.stop()


def carbon_placement(names: list[str], destinations: list[tuple[str, int, str]]) -> list[int]:
    """The destination index carbon's consistent-hashing router (carbon_ch) picks per name."""
    if not os.access(DEBIAN_PYTHON, os.X_OK):
        missing("Debian's /usr/bin/python3 with graphite-carbon is needed for carbon's router")
    job = {"names": names, "configs": [{
        "destinations": [list(d) for d in destinations], "method": "consistent-hashing",
        "hash_type": "carbon_ch", "replication_factor": 1, "diverse_replicas": False}]}
    proc = subprocess.run([DEBIAN_PYTHON, str(ORACLE)], input=json.dumps(job),
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"})
    if proc.returncode != 0 and "No module named 'carbon" in proc.stderr:
        missing("carbon is not importable by /usr/bin/python3 (apt-get install graphite-carbon)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [int(chosen) for chosen in json.loads(proc.stdout)["placements"][0]]


@pytest.mark.parametrize("pickle", [False, True], ids=["plaintext", "pickle"])
def test_statsd_and_carbon_input_data_are_stored_on_exactly_the_instance_carbons_ring_names(
        cluster: list[CarbonCache], tmp_path: Path, pickle: bool) -> None:
    destinations = [("127.0.0.1", c.pickle_port if pickle else c.line_port, str(c.instance))
                    for c in cluster]
    bucky = Bucky(tmp_path, {
        "graphite_destinations": [f"{h}:{p}:{i}" for h, p, i in destinations],
        "graphite_pickle_enabled": pickle, "statsd_flush_time": 1.0,
        "metricsd_enabled": False, "collectd_enabled": False, "self_metrics_interval": 1.0,
        "carbon_enabled": True, **carbon_ports(),
    }).start()
    gauges = [f"cluster.g{n}" for n in range(60)]
    lines = [f"cluster.line{n}.value" for n in range(60)]
    try:
        deadline = time.monotonic() + 40
        stored: list[set[str]] = [set() for _ in cluster]
        while time.monotonic() < deadline:
            payload = "\n".join(f"{g}:{n}|g" for n, g in enumerate(gauges))
            bucky.send_udp("statsd_port", payload.encode())
            now = int(time.time())
            with socket.create_connection(("127.0.0.1", bucky.options["carbon_line_port"])) as tcp:
                tcp.sendall("".join(f"{name} {n} {now}\n" for n, name in enumerate(lines)).encode())
            stored = [c.stored_paths() for c in cluster]
            everything = set().union(*stored)
            if all(any(p.endswith("." + g) for p in everything) for g in gauges) and any(
                    p.startswith("bucky.") for p in everything) and set(lines) <= everything:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"not every gauge stored: {stored}\n{[c.log() for c in cluster]}")
    finally:
        assert bucky.stop() == 0
    time.sleep(1.5)  # carbon writes what it still caches within about a second
    stored = [c.stored_paths() for c in cluster]
    names = sorted(set().union(*stored))
    placed = dict(zip(names, carbon_placement(names, destinations), strict=True))
    for index, paths in enumerate(stored):
        wrong = sorted(p for p in paths if placed[p] != index)
        assert wrong == [], f"instance {INSTANCES[index]} holds metrics carbon places elsewhere"
        assert paths, f"instance {INSTANCES[index]} received nothing"
    for a in range(len(stored)):
        for b in range(a + 1, len(stored)):
            assert not stored[a] & stored[b]
    assert sum(any(p.startswith("bucky.") for p in paths) for paths in stored) >= 2


def test_one_destination_down_the_others_get_everything_and_the_loss_is_counted(
        tmp_path: Path) -> None:
    live = [FakeCarbon().start(), FakeCarbon().start()]
    try:
        # A dead port whose own self-metrics are placed on a live carbon, so they can be read.
        for _ in range(200):
            dead = free_port()
            specs = [f"127.0.0.1:{c.port}:{i}" for c, i in zip(live, "ab", strict=True)]
            specs.append(f"127.0.0.1:{dead}:c")
            route = make_router(parse_destinations(specs)).route
            label = f"127_0_0_1_{dead}_c"
            watched = [f"bucky.graphite.{label}.dropped.buffer_full",
                       f"bucky.graphite.{label}.connect_failures"]
            if all(route(name) != (2,) for name in watched):
                break
        bucky = Bucky(tmp_path, {
            "graphite_destinations": specs, "graphite_buffer_size": 300,
            "graphite_reconnect_delay": 0.05, "graphite_backoff_max": 0.2,
            "graphite_max_reconnects": -1, "statsd_flush_time": 0.5, "self_metrics_prefix": "bucky",
            "metricsd_enabled": False, "collectd_enabled": False, "self_metrics_interval": 1.0,
            "graphite_spool_max_bytes": 0,  # the memory bound's count; the spool: test_spool_*
        }).start()
        gauges = [f"down.g{n}" for n in range(900)]
        placed = [[g for g in gauges if route(f"stats.gauges.{g}") == (i,)] for i in range(3)]
        assert all(placed)
        try:
            for rnd in range(4):  # every round: all 900 gauges, then one flush
                for start in range(0, len(gauges), 50):
                    part = gauges[start:start + 50]
                    bucky.send_udp("statsd_port",
                                   "\n".join(f"{g}:{rnd}|g" for g in part).encode())
                for carbon, mine in zip(live, placed[:2], strict=True):
                    wanted = {(f"stats.gauges.{g}", float(rnd)) for g in mine}
                    assert carbon.wait_for(
                        lambda pts, wanted=wanted: wanted <= {(p, v) for p, v, _ in pts}, 10), (
                        f"round {rnd}: a live carbon is missing points placed on it")
            everything = live[0].points + live[1].points
            assert not {p for p, _, _ in everything} & {f"stats.gauges.{g}" for g in placed[2]}

            def total(name: str) -> float:
                return sum(v for c in live for p, v, _ in c.points if p == name)

            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not (total(watched[0]) > 0
                                                       and total(watched[1]) > 0):
                time.sleep(0.2)
            assert total(watched[0]) > 0 and total(watched[1]) > 0
        finally:
            assert bucky.stop() == 0
    finally:
        for carbon in live:
            carbon.stop()
