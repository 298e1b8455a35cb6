"""The Graphite output with its disk spool, against a fake carbon: outages beyond the memory
buffer, stops during an outage, protocol switches, removed destinations, full disks."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from typing import Any

from fakecarbon import FakeCarbon, free_port
from outputdrive import run_until

from bucky.config import make_config
from bucky.daemon.outputs import GraphiteClient, build_outputs
from bucky.daemon.outputs.spooled_buffer import SpooledBuffer, spool_problem

FAST = dict(graphite_reconnect_delay=0.02, graphite_backoff_factor=1.5,
            graphite_backoff_max=0.1, graphite_max_reconnects=-1)
TS = 1_700_000_000


def client_for(port: int, spool_dir: str, pickle: bool = False, **kw: Any) -> GraphiteClient:
    options = dict(FAST, graphite_port=port, graphite_pickle_enabled=pickle,
                   graphite_spool_dir=spool_dir, graphite_buffer_size=1000,
                   graphite_spool_sync_interval=0.05)
    options.update(kw)
    (client,) = build_outputs(make_config(**options))
    assert isinstance(client, GraphiteClient)
    return client


def batches(prefix: str, n: int, size: int = 100) -> list[list[tuple]]:
    return [[(None, f"{prefix}.b{b}.m{i}", b * size + i, TS + b) for i in range(size)]
            for b in range(n)]


def expected(samples: list[list[tuple]]) -> set[tuple]:
    return {(name, float(value), float(ts)) for batch in samples for _, name, value, ts in batch}


def received(carbon: FakeCarbon) -> set[tuple]:
    return {(p, float(v), float(t)) for p, v, t in carbon.points}


def spool_of(client: GraphiteClient) -> SpooledBuffer:
    buffer = client.connections[0]._buffer
    assert isinstance(buffer, SpooledBuffer)
    return buffer


def test_outage_beyond_memory_goes_to_disk_and_all_arrives_once_up(tmp_path):
    port = free_port()
    client = client_for(port, str(tmp_path))
    sent = batches("out", 100)  # 10,000 points, 10x the memory bound
    for batch in sent:
        client.send(batch, time.monotonic())
        client.poll(time.monotonic())
    buffer = spool_of(client)
    assert buffer.points <= 1000 + 100
    assert buffer.spool.points >= 9000
    assert client.counters["dropped.buffer_full"] == 0
    assert client.gauges()["spool_points"] == buffer.spool.points
    with FakeCarbon(port=port) as carbon:
        assert run_until(client, lambda: len(carbon.points) >= 10_000)
        time.sleep(0.1)
        client.poll(time.monotonic())
        assert received(carbon) == expected(sent)
        assert len(carbon.points) == 10_000
    counters = client.counters
    assert counters["spooled"] == counters["replayed"] >= 9000
    assert buffer.spool.points == 0
    assert not [f for f in os.listdir(buffer.spool.directory) if f.endswith(".seg")]


def test_new_data_queues_behind_the_spool(tmp_path):
    """Spool first, then memory, then new data: oldest first across all three."""
    port = free_port()
    client = client_for(port, str(tmp_path), graphite_buffer_size=300)
    early = batches("early", 20)
    for batch in early:
        client.send(batch, time.monotonic())
    with FakeCarbon(port=port) as carbon:
        late = [[(None, f"late.m{i}", i, TS + 100) for i in range(50)]]
        client.send(late[0], time.monotonic())
        assert run_until(client, lambda: len(carbon.points) >= 2050)
        order = [p for p, _, _ in carbon.points]
        assert order.index("late.m0") > max(order.index(f"early.b{b}.m0") for b in range(20))
        assert [order.index(f"early.b{b}.m0") for b in range(20)] == sorted(
            order.index(f"early.b{b}.m0") for b in range(20))


def test_stop_during_outage_spools_memory_and_a_pickle_successor_sends_it(tmp_path):
    port = free_port()
    client = client_for(port, str(tmp_path), graphite_buffer_size=100_000)
    sent = batches("stop", 30)
    for batch in sent:
        client.send(batch, time.monotonic())
    client.poll(time.monotonic())
    assert client.flush(time.monotonic() + 5)  # nothing volatile left: all in the spool
    client.close()
    assert client.counters["dropped.shutdown"] == 0
    successor = client_for(port, str(tmp_path), pickle=True)
    with FakeCarbon(port=port, mode="pickle") as carbon:
        assert run_until(successor, lambda: len(carbon.points) >= 3000)
        assert received(carbon) == expected(sent)
    assert successor.counters["spool_converted"] == 3000


def test_pickle_spool_replayed_by_a_plaintext_successor(tmp_path):
    port = free_port()
    client = client_for(port, str(tmp_path), pickle=True, graphite_buffer_size=200)
    sent = batches("pk", 10)
    for batch in sent:
        client.send(batch, time.monotonic())
    client.flush(time.monotonic() + 5)
    client.close()
    successor = client_for(port, str(tmp_path))
    with FakeCarbon(port=port) as carbon:
        assert run_until(successor, lambda: len(carbon.points) >= 1000)
        assert received(carbon) == expected(sent)


def test_a_removed_destinations_spool_is_rerouted(tmp_path):
    old_port, new_port = free_port(), free_port()
    old = client_for(old_port, str(tmp_path), graphite_buffer_size=100)
    sent = batches("moved", 10)
    for batch in sent:
        old.send(batch, time.monotonic())
    old.flush(time.monotonic() + 5)
    old.close()
    old_dir = spool_of(old).spool.directory
    assert os.path.isdir(old_dir)
    new = client_for(new_port, str(tmp_path))
    with FakeCarbon(port=new_port) as carbon:
        assert run_until(new, lambda: len(carbon.points) >= 1000)
        assert received(carbon) == expected(sent)
    assert new.counters["rerouted"] == 1000
    assert not os.path.exists(old_dir)


def test_reconnects_exhausted_drop_nothing_with_a_spool(tmp_path):
    port = free_port()
    client = client_for(port, str(tmp_path), graphite_max_reconnects=2)
    sent = batches("ex", 20)
    for batch in sent:
        client.send(batch, time.monotonic())
    assert run_until(client, lambda: client.counters["connect_failures"] >= 4, 5)
    more = batches("ex2", 5)
    for batch in more:
        client.send(batch, time.monotonic())
    assert client.counters["dropped.reconnects_exhausted"] == 0
    with FakeCarbon(port=port) as carbon:
        assert run_until(client, lambda: len(carbon.points) >= 2500)
        assert received(carbon) == expected(sent) | expected(more)


def test_disk_errors_fall_back_to_memory_and_count(tmp_path):
    port = free_port()
    client = client_for(port, str(tmp_path), graphite_buffer_size=500)
    client.send(batches("warm", 1)[0], time.monotonic())
    client.poll(time.monotonic())
    buffer = spool_of(client)
    assert buffer.spool.is_open

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    buffer.spool._os_write = full
    for batch in batches("full", 20):
        client.send(batch, time.monotonic())  # never raises
        client.poll(time.monotonic())
    counters = client.counters
    assert counters["spool_errors.ENOSPC"] == 1
    assert counters["dropped.buffer_full"] > 0
    assert buffer.points <= 600
    assert counters["dropped.buffer_full"] + buffer.points + buffer.spool.points == 2100


def test_spool_off_is_memory_only(tmp_path):
    client = client_for(free_port(), str(tmp_path), graphite_spool_max_bytes=0)
    assert not isinstance(client.connections[0]._buffer, SpooledBuffer)
    for batch in batches("off", 20):
        client.send(batch, time.monotonic())
    assert client.counters["dropped.buffer_full"] >= 1000
    assert os.listdir(tmp_path) == []


def test_spool_directory_problems(tmp_path):
    assert spool_problem(make_config(graphite_spool_dir=str(tmp_path))) is None
    missing = make_config(graphite_spool_dir=str(tmp_path / "nope"))
    assert "graphite_spool_dir" in spool_problem(missing) and "missing" in spool_problem(missing)
    assert spool_problem(make_config(graphite_spool_dir=str(tmp_path / "nope"),
                                     graphite_spool_max_bytes=0)) is None
    (tmp_path / "file").write_text("x")
    bad = make_config(graphite_spool_dir=str(tmp_path / "file"))
    assert "graphite_spool_dir" in spool_problem(bad)


def test_cli_exits_2_with_one_line_for_a_missing_spool_dir(tmp_path):
    conf = tmp_path / "bucky.conf"
    conf.write_text(f"graphite_spool_dir = {str(tmp_path / 'missing')!r}\n"
                    f"directory = {str(tmp_path / 'state')!r}\n"
                    "collectd_enabled = False\nstatsd_enabled = False\n"
                    "metricsd_enabled = False\n")
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    out = subprocess.run([sys.executable, "-m", "bucky", str(conf)], capture_output=True,
                         text=True, timeout=30, env=env)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "graphite_spool_dir" in lines[0] and "missing" in lines[0]


def test_successor_waits_for_the_spool_without_dropping(tmp_path):
    """A reload starts the new output next to the old one: the new one holds its data (bounded)
    until the old one has stopped and let go of the spool, then spools it."""
    port = free_port()
    old = client_for(port, str(tmp_path), graphite_buffer_size=200)
    old.send(batches("old", 5)[0], time.monotonic())
    old.poll(time.monotonic())
    assert spool_of(old).spool.is_open
    new = client_for(port, str(tmp_path), graphite_buffer_size=200)
    sent = batches("new", 10)
    for batch in sent:
        new.send(batch, time.monotonic())
        new.poll(time.monotonic())
    assert new.counters["dropped.buffer_full"] == 0
    assert spool_of(new).points == 1000  # beyond its bound, for the moment
    old.flush(time.monotonic() + 2)
    old.close()
    assert run_until(new, lambda: spool_of(new).spool.is_open, 2)
    for batch in batches("later", 3):
        new.send(batch, time.monotonic())
    assert spool_of(new).points <= 300
    with FakeCarbon(port=port) as carbon:
        assert run_until(new, lambda: len(carbon.points) >= 1400)
        assert received(carbon) == expected(sent) | expected(batches("old", 5)[:1]) | expected(
            batches("later", 3))
    assert new.counters["dropped.buffer_full"] == 0


def test_check_and_reload_refuse_a_missing_spool_dir(tmp_path):
    """The plan (bucky --check, start-up, SIGHUP) names the option without touching the disk."""
    from bucky.daemon.outputs.spooled_buffer import check as check_spool
    from bucky.errors import ConfigError

    check_spool(make_config(graphite_spool_dir=str(tmp_path)))
    try:
        check_spool(make_config(graphite_spool_dir=str(tmp_path / "nope")))
    except ConfigError as exc:
        assert "graphite_spool_dir" in str(exc) and "missing" in str(exc)
    else:
        raise AssertionError("no ConfigError")
    assert not (tmp_path / "nope").exists()
    conf = tmp_path / "bucky.conf"
    conf.write_text(f"graphite_spool_dir = {str(tmp_path / 'nope')!r}\n")
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    out = subprocess.run([sys.executable, "-m", "bucky", "--check", str(conf)],
                         capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode == 2 and "graphite_spool_dir" in out.stderr, out.stderr


def test_a_removed_destination_still_running_is_rerouted_once_it_stops(tmp_path):
    """A reload: the old output (another destination) still runs when the new one starts."""
    old_port, new_port = free_port(), free_port()
    old = client_for(old_port, str(tmp_path), graphite_buffer_size=100)
    old.send(batches("early", 1)[0], time.monotonic())
    old.poll(time.monotonic())  # opens (and locks) its spool
    new = client_for(new_port, str(tmp_path))
    with FakeCarbon(port=new_port) as carbon:
        run_until(new, lambda: False, 0.3)  # finds the old directory, locked
        sent = batches("late", 10)
        for batch in sent:
            old.send(batch, time.monotonic())
        old.flush(time.monotonic() + 2)
        old.close()  # spools what it holds, lets go
        assert run_until(new, lambda: len(carbon.points) >= 1100)
        assert received(carbon) == expected(sent) | expected(batches("early", 1))
    assert not os.path.exists(spool_of(old).spool.directory)


def test_a_full_disk_at_start_is_not_a_config_error(tmp_path, monkeypatch):
    from bucky.daemon.outputs import spooled_buffer as module
    from bucky.daemon.outputs.spool_files import SpoolUnavailable

    def full(path, private=True):
        raise SpoolUnavailable(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(module, "check_directory", full)
    assert spool_problem(make_config(graphite_spool_dir=str(tmp_path))) is None


def test_status_says_the_reconnect_plan_is_used_up_while_the_spool_keeps_the_data(tmp_path):
    port = free_port()
    client = client_for(port, str(tmp_path), graphite_max_reconnects=2)
    client.send(batches("st", 1)[0], time.monotonic())
    assert run_until(client, lambda: client.status()[0]["reconnects_exhausted"], 5)
    status = client.status()[0]
    assert status["accepting"] and status["spool"] is not None
    with FakeCarbon(port=port) as carbon:
        assert run_until(client, lambda: len(carbon.points) >= 100)
        assert not client.status()[0]["reconnects_exhausted"]


def test_the_reconnect_plan_used_up_is_logged_whatever_the_retry_warnings(tmp_path, caplog):
    """Issue 19: with a spool the line saying the plan is used up went through the rate limiter
    of the retry warnings, which had just logged "attempt 2": it was swallowed."""
    caplog.set_level("WARNING", logger="bucky")
    client = client_for(free_port(), str(tmp_path), graphite_max_reconnects=3)
    client.send(batches("lg", 1)[0], time.monotonic())
    assert run_until(client, lambda: client.status()[0]["reconnects_exhausted"], 5)
    messages = [r.getMessage() for r in caplog.records]
    assert any("(attempt 2)" in m for m in messages), messages
    assert sum("unreachable after 3 attempts" in m and "reconnect plan is used up" in m
               for m in messages) == 1, messages


def test_status_names_the_placement_and_the_age_of_the_spool(tmp_path):
    client = client_for(free_port(), str(tmp_path), graphite_max_reconnects=2)
    for batch in batches("age", 15):  # 1,500 datapoints: beyond memory (1,000), to disk
        client.send(batch, time.monotonic())
    assert run_until(client, lambda: (client.status()[0]["spool"] or 0) > 0, 5)
    time.sleep(0.3)
    client.poll(time.monotonic())
    status = client.status()[0]
    assert status["placement"] == "consistent-hashing (carbon_ch, replication 1) over 1 destination"
    assert 0.25 <= status["spool_age"] < 30
    client.close()
