"""The StatsD management port as the input serves it: in the socket plan (bound by the supervisor
before privileges drop, served by the first StatsD process as its "admin" stream) and bounded, so
that no client can hold up the flushes or the memory (issue 19: `counters` repeated 600 times in
one write blocked the worker 7 s, 2,000 times over 95 s, with an unbounded, quadratic buffer)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from statsd_workers_harness import Workers

from bucky.config import make_config
from bucky.daemon.plan import plan_daemon
from bucky.inputs import statsd_admin
from bucky.inputs.statsd_admin import MAX_CLIENTS, MAX_COMMANDS_PER_READ, MAX_OUTPUT

T0 = 1_000_000.0


def config(tmp_path: Path, **extra: Any) -> Any:
    return make_config(directory=str(tmp_path), statsd_flush_time=1.0,
                       statsd_admin_port=18126, **extra)


def worker_with_keys(tmp_path: Path, keys: int, **extra: Any) -> Workers:
    ws = Workers(config(tmp_path, **extra), 1)
    ws.tick(T0)
    for i in range(0, keys, 500):
        ws.handle("\n".join(f"admin.key.{j}:1|c" for j in range(i, i + 500)).encode(), T0 + 0.1)
    ws.tick(T0 + 0.1)
    return ws


def drain(stream: Any) -> bytes:
    out = b""
    data, _ = stream.outgoing()
    while data:
        out += data
        stream.sent(len(data))
        data, _ = stream.outgoing()
    return out


def test_the_admin_listener_is_in_the_socket_plan(tmp_path: Path) -> None:
    for workers, forward in ((1, ()), (3, ()), (1, ("127.0.0.1:8125",))):
        plan = plan_daemon(config(tmp_path, statsd_admin_ip="127.0.0.2", statsd_workers=workers,
                                 statsd_forward=forward))
        sock = plan.socket("statsd_admin")
        assert sock is not None and (sock.proto, sock.host, sock.port) == ("tcp", "127.0.0.2",
                                                                           18126)
        statsd = [c for c in plan.children if c.kind == "statsd"]
        assert statsd[0].streams == (("admin", "statsd_admin"),)
        assert all(c.streams == () for c in statsd[1:])
    plan = plan_daemon(make_config(directory=str(tmp_path)))
    assert plan.socket("statsd_admin") is None
    assert "socket statsd_admin: TCP 127.0.0.2:18126" in plan_daemon(
        config(tmp_path, statsd_admin_ip="127.0.0.2")).describe()


def test_commands_are_answered_in_order_and_quit_closes(tmp_path: Path) -> None:
    ws = worker_with_keys(tmp_path, 3)
    stream = ws.workers[0].open_stream("admin", ("127.0.0.1", 1))
    assert stream.feed(b"health\nhea", T0) is True
    assert stream.feed(b"lth down\n", T0) is True
    assert drain(stream) == b"health: up\nhealth: down\n"
    assert stream.feed(b"quit\nhealth\n", T0) is True
    assert stream.outgoing() == (b"", True)
    stream.close(T0)
    ws.close()


def test_many_commands_in_one_write_disconnect_at_once(tmp_path: Path) -> None:
    ws = worker_with_keys(tmp_path, 5000)
    worker = ws.workers[0]
    stream = worker.open_stream("admin", ("127.0.0.1", 1))
    started = time.perf_counter()
    assert stream.feed(b"counters\n" * 2000, T0 + 0.2) is False
    assert time.perf_counter() - started < 0.5
    assert worker.counters["admin.disconnected.too_many_commands"] == 1
    assert stream.outgoing() == (b"", True)
    stream.close(T0 + 0.2)
    ok = worker.open_stream("admin", ("127.0.0.1", 2))  # up to the limit is answered
    assert ok.feed(b"health\n" * MAX_COMMANDS_PER_READ, T0 + 0.2) is True
    assert drain(ok) == b"health: up\n" * MAX_COMMANDS_PER_READ
    ws.close()


def test_answers_the_client_does_not_read_are_bounded(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    bound = MAX_OUTPUT // 16  # the same rule, a quicker test
    monkeypatch.setattr(statsd_admin, "MAX_OUTPUT", bound)
    ws = worker_with_keys(tmp_path, 5000)
    worker = ws.workers[0]
    reader = worker.open_stream("admin", ("127.0.0.1", 1))
    reader.feed(b"counters\n", T0 + 0.2)
    size = len(drain(reader))
    stream = worker.open_stream("admin", ("127.0.0.1", 2))
    fed = 0
    while stream.feed(b"counters\n", T0 + 0.2):
        fed += 1
        assert fed < 1000
    assert worker.counters["admin.disconnected.output_unread"] == 1
    assert fed * size <= bound < (fed + 1) * size  # it held what fits, no more
    assert stream.outgoing() == (b"", True)
    ws.close()


def test_a_flush_due_goes_before_the_next_command(tmp_path: Path) -> None:
    ws = worker_with_keys(tmp_path, 10)
    worker = ws.workers[0]
    stream = worker.open_stream("admin", ("127.0.0.1", 1))
    flushed = len(ws.sinks[0].batches)
    ws.now = T0 + 1.5  # the flush at T0 + 1 is due; no tick came (a busy admin client)
    assert stream.feed(b"counters\n", T0 + 1.5) is True
    assert len(ws.sinks[0].batches) == flushed + 1
    assert "'admin.key.3': 0" in drain(stream).decode()  # the answer after the flush
    ws.close()


def test_connections_beyond_the_limit_are_refused(tmp_path: Path) -> None:
    ws = worker_with_keys(tmp_path, 1)
    worker = ws.workers[0]
    streams = [worker.open_stream("admin", ("127.0.0.1", i)) for i in range(MAX_CLIENTS)]
    extra = worker.open_stream("admin", ("127.0.0.1", 99))
    assert extra.outgoing() == (b"", True) and worker.counters["admin.refused"] == 1
    streams[0].close(T0)
    again = worker.open_stream("admin", ("127.0.0.1", 100))
    assert again.feed(b"health\n", T0) and drain(again) == b"health: up\n"
    ws.close()


def test_the_readme_quotes_these_bounds() -> None:
    from buckyproc import ROOT

    from bucky.inputs.statsd_admin import MAX_LINE

    text = " ".join((ROOT / "README.rst").read_text().split())
    assert (f"a command of more than {MAX_LINE // 1024} KiB, more than {MAX_COMMANDS_PER_READ} "
            f"commands in one read, or more than {MAX_OUTPUT >> 20} MiB of answers") in text
    assert f"at most {MAX_CLIENTS} clients at once" in text
