"""The Graphite output with several carbon destinations: placement, fan-out, independence.

Fake carbons (tests/fakecarbon.py) stand for carbon-cache instances a, b, c on 127.0.0.1; the
expected placement comes from bucky.protocol.placement's router (which tests/protocol checks
against carbon's own classes), so these tests are about delivery: every point reaches exactly the
destinations its name is placed on, and one dead or stalled destination never holds up the others.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fakecarbon import FakeCarbon, free_port
from outputdrive import FAST_BACKOFF, batch, run_until

from bucky.config import make_config
from bucky.daemon.outputs import GraphiteClient, build_outputs
from bucky.protocol.placement import make_router, parse_destinations


def cluster_cfg(destinations: list[str], **overrides: Any) -> Any:
    options = dict(FAST_BACKOFF, graphite_destinations=destinations)
    options.update(overrides)
    return make_config(**options)


def cluster_client(destinations: list[str], **overrides: Any) -> GraphiteClient:
    (client,) = build_outputs(cluster_cfg(destinations, **overrides))
    assert isinstance(client, GraphiteClient)
    return client


def specs(carbons: list[FakeCarbon]) -> list[str]:
    return [f"127.0.0.1:{c.port}:{'abc'[i]}" for i, c in enumerate(carbons)]


@pytest.fixture
def three() -> Iterator[list[FakeCarbon]]:
    carbons = [FakeCarbon().start() for _ in range(3)]
    yield carbons
    for carbon in carbons:
        carbon.stop()


@pytest.fixture
def three_pickle() -> Iterator[list[FakeCarbon]]:
    carbons = [FakeCarbon(mode="pickle").start() for _ in range(3)]
    yield carbons
    for carbon in carbons:
        carbon.stop()


def names(count: int) -> list[tuple]:
    return [(None, f"cluster.n{i}.value", i, 1_700_000_000) for i in range(count)]


def expected_placement(destinations: list[str], paths: list[str], **router: Any
                       ) -> list[set[str]]:
    route = make_router(parse_destinations(destinations), **router).route
    placed: list[set[str]] = [set() for _ in destinations]
    for path in paths:
        for index in route(path):
            placed[index].add(path)
    return placed


def deliver(client: GraphiteClient, carbons: list[FakeCarbon], samples: list[tuple],
            total: int) -> None:
    for start in range(0, len(samples), 500):
        client.send(samples[start:start + 500], time.monotonic())
        client.poll(time.monotonic())
    assert run_until(client, lambda: sum(len(c.points) for c in carbons) >= total, 15)


@pytest.mark.parametrize("method", ["consistent-hashing", "jump-hashing"])
def test_every_point_reaches_exactly_the_destination_the_ring_names(
        three: list[FakeCarbon], method: str) -> None:
    dests = specs(three)
    samples = names(3000)
    client = cluster_client(dests, graphite_relay_method=method)
    deliver(client, three, samples, 3000)
    placed = expected_placement(dests, [s[1] for s in samples], method=method)
    for carbon, want in zip(three, placed, strict=True):
        assert sorted(carbon.paths()) == sorted(want)
        assert want  # 3000 names spread over three instances: each gets some
    assert client.counters["sent"] == 3000 and client.pending() == 0
    client.close()


def test_pickle_and_replication_two(three_pickle: list[FakeCarbon]) -> None:
    dests = specs(three_pickle)
    samples = names(2000)
    client = cluster_client(dests, graphite_pickle_enabled=True, graphite_replication_factor=2)
    deliver(client, three_pickle, samples, 4000)
    placed = expected_placement(dests, [s[1] for s in samples], replication_factor=2)
    for carbon, want in zip(three_pickle, placed, strict=True):
        assert sorted(carbon.paths()) == sorted(want)
    copies: dict[str, int] = {}
    for carbon in three_pickle:
        for path in carbon.paths():
            copies[path] = copies.get(path, 0) + 1
    assert set(copies.values()) == {2} and len(copies) == 2000
    assert client.counters["sent"] == 4000
    client.close()


def test_broadcast_sends_everything_everywhere_encoded_once(three: list[FakeCarbon]) -> None:
    client = cluster_client(specs(three), graphite_relay_method="broadcast")
    assert client._router is None  # one encoding for all three
    deliver(client, three, names(1000), 3000)
    for carbon in three:
        assert carbon.paths() == [f"cluster.n{i}.value" for i in range(1000)]
    client.close()


def test_tagged_names_are_normalized_then_routed_and_sent(three: list[FakeCarbon]) -> None:
    dests = specs(three)
    client = cluster_client(dests)
    tagged = [(None, f"tagged.n{i};zone=z{i};app=a", i, 1_700_000_000) for i in range(300)]
    deliver(client, three, tagged, 300)
    normal = [f"tagged.n{i};app=a;zone=z{i}" for i in range(300)]
    placed = expected_placement(dests, normal)
    for carbon, want in zip(three, placed, strict=True):
        assert sorted(carbon.paths()) == sorted(want)
    client.close()


def test_one_destination_keeps_names_as_they_are() -> None:
    with FakeCarbon() as carbon:
        client = cluster_client([f"127.0.0.1:{carbon.port}:a"])
        assert client._router is None
        client.send([(None, "t;z=1;a=2", 1, 1_700_000_000)], time.monotonic())
        assert run_until(client, lambda: len(carbon.points) == 1)
        assert carbon.paths() == ["t;z=1;a=2"]
        client.close()


def test_broadcast_keeps_names_as_they_are(three: list[FakeCarbon]) -> None:
    client = cluster_client(specs(three), graphite_relay_method="broadcast")
    client.send([(None, "t;z=1;a=2", 1, 1_700_000_000)], time.monotonic())
    assert run_until(client, lambda: all(len(c.points) == 1 for c in three))
    assert [c.paths() for c in three] == [["t;z=1;a=2"]] * 3
    client.close()


def test_a_dead_destination_fills_its_own_buffer_and_delays_no_one(
        three: list[FakeCarbon]) -> None:
    dead = free_port()
    dests = specs(three[:2]) + [f"127.0.0.1:{dead}:c"]
    client = cluster_client(dests, graphite_buffer_size=200, graphite_spool_max_bytes=0)
    samples = names(6000)
    placed = expected_placement(dests, [s[1] for s in samples])
    started = time.monotonic()
    for start in range(0, len(samples), 500):
        client.send(samples[start:start + 500], time.monotonic())
        client.poll(time.monotonic())
    assert time.monotonic() - started < 1.0  # nothing waited on the dead carbon
    live = len(placed[0]) + len(placed[1])
    assert run_until(client, lambda: len(three[0].points) + len(three[1].points) >= live, 10)
    for carbon, want in zip(three[:2], placed[:2], strict=True):
        assert sorted(carbon.paths()) == sorted(want)
    counters = client.counters
    dead_label = f"127_0_0_1_{dead}_c"
    held = client.status()[2]["pending"]
    assert client.status()[2]["state"] in ("down", "connecting")
    assert client.gauges()[f"{dead_label}.pending"] == held
    assert 0 < held <= 200 + 500
    assert counters[f"{dead_label}.dropped.buffer_full"] == len(placed[2]) - held
    assert counters["dropped.buffer_full"] == len(placed[2]) - held
    assert counters[f"{dead_label}.connect_failures"] >= 1
    label_a = f"127_0_0_1_{three[0].port}_a"
    assert counters[f"{label_a}.sent"] == len(placed[0])
    assert counters[f"{label_a}.dropped.buffer_full"] == 0
    client.close()


def test_a_stalled_destination_does_not_slow_the_others() -> None:
    carbons = [FakeCarbon().start(), FakeCarbon().start(), FakeCarbon(rcvbuf=4096).start()]
    try:
        dests = specs(carbons)
        client = cluster_client(dests, graphite_buffer_size=2_000, graphite_spool_max_bytes=0)
        client.send(names(300), time.monotonic())  # connect all three
        assert run_until(client, lambda: all(s["state"] == "up" for s in client.status()))
        assert run_until(client, lambda: sum(len(c.points) for c in carbons) == 300)
        carbons[2].stall()
        for carbon in carbons:
            carbon.clear()
        samples = [(None, f"stall.n{i}.v", i, 1_700_000_000) for i in range(300_000)]
        placed = expected_placement(dests, [s[1] for s in samples])
        slowest = 0.0
        for start in range(0, len(samples), 1000):  # ~3 MB for the stalled one: beyond its socket
            t0 = time.monotonic()
            client.send(samples[start:start + 1000], t0)
            client.poll(time.monotonic())
            slowest = max(slowest, time.monotonic() - t0)
            assert client.status()[2]["pending"] <= 2_000 + 2 * 1000
        assert slowest < 0.25, f"send+poll took {slowest:.3f} s"
        want = len(placed[0]) + len(placed[1])
        assert run_until(client, lambda: len(carbons[0].points) + len(carbons[1].points) >= want,
                         15)
        for carbon, expected in zip(carbons[:2], placed[:2], strict=True):
            assert sorted(carbon.paths()) == sorted(expected)
        stalled, first = client.status()[2], client.status()[0]
        assert stalled["state"] == "up" and stalled["counters"]["dropped.buffer_full"] > 0
        assert first["counters"].get("dropped.buffer_full", 0) == 0
        assert client.counters["dropped.buffer_full"] == stalled["counters"]["dropped.buffer_full"]
        client.close()
    finally:
        for carbon in carbons:
            carbon.stop()


def test_self_metric_names_per_destination_and_totals(three: list[FakeCarbon]) -> None:
    client = cluster_client(specs(three))
    deliver(client, three, names(900), 900)
    counters = client.counters
    labels = [f"127_0_0_1_{c.port}_{'abc'[i]}" for i, c in enumerate(three)]
    assert sum(counters[f"{label}.sent"] for label in labels) == counters["sent"] == 900
    assert all(counters[f"{label}.connects"] == 1 for label in labels)
    gauges = client.gauges()
    assert gauges["pending"] == 0 and all(gauges[f"{label}.pending"] == 0 for label in labels)
    status = client.status()
    assert [s["label"] for s in status] == labels
    assert {s["state"] for s in status} == {"up"}
    assert sum(s["counters"]["sent"] for s in status) == 900
    client.close()


def test_without_graphite_destinations_the_metric_names_are_as_before() -> None:
    with FakeCarbon() as carbon:
        (client,) = build_outputs(make_config(**FAST_BACKOFF, graphite_port=carbon.port))
        client.send(batch("legacy", 0, 3), time.monotonic())
        assert run_until(client, lambda: len(carbon.points) == 3)
        assert set(client.counters) == {"sent", "bytes_sent", "connects"}
        assert set(client.gauges()) == {"pending", "spool_bytes", "spool_points",
                                        "spool_oldest_age"}
        (status,) = client.status()
        assert status["label"] == f"127_0_0_1_{carbon.port}" and status["state"] == "up"
        client.close()


@pytest.mark.parametrize("labelled", [True, False])
def test_log_lines_name_the_output_and_the_destination_once(
        labelled: bool, caplog: pytest.LogCaptureFixture) -> None:
    """The daemon's log format starts with the process name ("bucky: graphite"); the connection's
    own prefix is the destination only, and a message does not repeat its address."""
    dead = free_port()
    spec = f"127.0.0.1:{dead}:b"
    options = {"graphite_destinations": [spec]} if labelled else {}
    (client,) = build_outputs(make_config(**FAST_BACKOFF, graphite_port=dead,
                                          graphite_spool_max_bytes=0, **options))
    with caplog.at_level("INFO", logger="bucky"):
        run_until(client, lambda: False, timeout=0.3)
    client.close()
    lines = [f"bucky: {client.name}: {record.getMessage()}" for record in caplog.records]
    assert lines, "a refused connection is logged"
    destination = spec if labelled else f"127.0.0.1:{dead}"
    for line in lines:
        assert line.startswith(f"bucky: graphite: {destination}: "), line
        assert line.count("graphite") == 1, line
        assert line.count(str(dead)) == 1, line
