"""Bucky's StatsD input against the reference statsd (npm `statsd`, run with node) on one input.

The reference runs as a subprocess on 127.0.0.1 with a TCP server and its Graphite backend pointed
at a small carbon listener in this test (one TCP connection per flush, flushInterval 1000 ms). It
gets the recorded datagrams of tests/data/statsd/ right after one of its flushes, so they all land
in the next one; Bucky gets the same datagrams with an injected clock. Names and values must agree
(within float rounding) for counters, timers (every statistic, percentiles 90, 99.9 and -10, and
histogram bins), gauges, sets and the reference's own counters, in both namespaces.

The package comes from tests/peers.py (`npm_package`): .ci/run installs statsd 0.9.0 into
$BUCKY_PEERS_DIR (default /opt/bucky-peers); missing, the test skips locally and fails in CI.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import npm_package

from bucky.config import make_config
from bucky.inputs.statsd import StatsdInput

pytestmark = pytest.mark.integration

INPUT = Path(__file__).resolve().parent.parent / "data" / "statsd" / "reference_input.json"
PERCENTILES = [90, 99.9, -10]
HISTOGRAM = [{"metric": "hist", "bins": [10, 50, 100, "inf"]}]
START_TIMEOUT = 30.0  # node start-up plus its first flush
FLUSH_TIMEOUT = 10.0
T0 = 1_000_000.0

# Only the reference has these (they describe its Graphite connection), or their values are
# timings that cannot match.
REFERENCE_ONLY = ("graphiteStats",)
VALUE_NOT_COMPARED = ("processing_time", "timestamp_lag", "packets_received")


@pytest.fixture(scope="session")
def reference_package() -> Path:
    """The npm statsd package (0.9.0, pinned), installed by .ci/run; never fetched by a test."""
    return npm_package("statsd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FlushCatcher:
    """A carbon plaintext listener; the reference opens one connection per flush."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]

    def next_flush(self, timeout: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        self.listener.settimeout(timeout)
        conn, _ = self.listener.accept()
        chunks = []
        with conn:
            while True:
                conn.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = conn.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        points = {}
        for line in b"".join(chunks).decode().splitlines():
            name, value, _timestamp = line.split(" ")
            points[name] = float(value)
        return points

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def reference(reference_package: Path, tmp_path: Path) -> Iterator[Any]:
    started: list[tuple[subprocess.Popen, FlushCatcher, Any]] = []

    def start(legacy: bool) -> tuple[FlushCatcher, int]:
        carbon = FlushCatcher()
        port = free_port()
        config = {
            "graphiteHost": "127.0.0.1",
            "graphitePort": carbon.port,
            "flushInterval": 1000,
            "servers": [{"server": "./servers/tcp", "address": "127.0.0.1", "port": port}],
            "mgmt_address": "127.0.0.1",
            "mgmt_port": free_port(),
            "percentThreshold": PERCENTILES,
            "histogram": HISTOGRAM,
            "graphite": {"legacyNamespace": legacy},
        }
        config_path = tmp_path / f"config-{legacy}.js"
        config_path.write_text(json.dumps(config))
        log = (tmp_path / f"statsd-{legacy}.log").open("wb")
        process = subprocess.Popen(
            [shutil.which("node") or "node", "stats.js", str(config_path)],
            cwd=reference_package,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append((process, carbon, log))
        return carbon, port

    yield start
    for process, carbon, log in started:
        process.kill()
        process.wait(10)
        carbon.close()
        log.close()


def recorded_datagrams() -> list[bytes]:
    return [d.encode("ascii") for d in json.loads(INPUT.read_text())["datagrams"]]


def metrics_received(points: dict[str, float]) -> float:
    legacy, new = "stats_counts.statsd", "stats.counters.statsd"
    for name in (f"{legacy}.metrics_received", f"{new}.metrics_received.count"):
        if name in points:
            return points[name]
    raise AssertionError("no metrics_received in a reference flush")


def reference_flush(start: Any, legacy: bool, datagrams: list[bytes]) -> dict[str, float]:
    lines = sum(1 for d in datagrams for line in d.split(b"\n") if line)
    carbon, port = start(legacy)
    carbon.next_flush(START_TIMEOUT)  # up, and a flush just happened: ~1 s until the next one
    with socket.create_connection(("127.0.0.1", port), timeout=FLUSH_TIMEOUT) as conn:
        conn.sendall(b"\n".join(datagrams) + b"\n")
    for _ in range(3):
        points = carbon.next_flush(FLUSH_TIMEOUT)
        received = metrics_received(points)
        if received == lines:
            return points
        if received != 0:  # the input straddled a flush: cannot compare this run
            pytest.fail(f"the reference got {received} of {lines} lines in one flush")
    pytest.fail("the reference never flushed the recorded input")


class ListSink:
    def __init__(self) -> None:
        self.batches: list[list[tuple]] = []

    def extend(self, samples: list[tuple]) -> None:
        self.batches.append(samples)

    def append(self, sample: tuple) -> None:
        self.batches.append([sample])


def bucky_flush(legacy: bool, datagrams: list[bytes], directory: Path) -> dict[str, float]:
    cfg = make_config(
        directory=str(directory),
        statsd_flush_time=1.0,
        statsd_legacy_namespace=legacy,
        statsd_tags="graphite",  # the reference (0.9.0) writes tags as Graphite 1.1 tags
        statsd_percentile_thresholds=PERCENTILES,
        statsd_histogram=[(h["metric"], h["bins"]) for h in HISTOGRAM],
    )
    sink = ListSink()
    inp = StatsdInput(cfg, sink)
    inp.tick(T0)
    inp.tick(T0 + 1)  # an empty flush first, as the reference had (so timestamp_lag exists)
    for datagram in datagrams:
        inp.handle(datagram, ("127.0.0.1", 40000), T0 + 1.5)
    inp.tick(T0 + 2)
    assert len(sink.batches) == 2
    return {name: value for _, name, value, _ in sink.batches[-1]}


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "new-namespace"])
def test_same_names_and_values_as_the_reference(
    reference: Any, legacy: bool, tmp_path: Path
) -> None:
    datagrams = recorded_datagrams()
    theirs = reference_flush(reference, legacy, datagrams)
    ours = bucky_flush(legacy, datagrams, tmp_path)

    theirs = {k: v for k, v in theirs.items() if not any(x in k for x in REFERENCE_ONLY)}
    assert sorted(set(theirs) - set(ours)) == []
    assert sorted(set(ours) - set(theirs)) == []
    differ = {
        name: (ours[name], theirs[name])
        for name in theirs
        if not any(x in name for x in VALUE_NOT_COMPARED)
        and not math.isclose(ours[name], theirs[name], rel_tol=1e-9, abs_tol=1e-9)
    }
    assert differ == {}
    # the input exercises what it should
    assert any("upper_99_9" in k for k in ours) and any("lower_top10" in k for k in ours)
    assert any(".histogram.bin_inf" in k for k in ours)
    assert any(";env=prod;region=eu" in k for k in ours)
    bad = "statsd.bad_lines_seen"
    bad = f"stats_counts.{bad}" if legacy else f"stats.counters.{bad}.count"
    assert ours[bad] == 6
