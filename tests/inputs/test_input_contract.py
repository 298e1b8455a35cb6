"""The input contract (bucky.inputs.base): every input declares it, and close() always runs."""

from __future__ import annotations

import dataclasses
import random
import types
from collections import Counter
from typing import Any

import pytest

from bucky.daemon import input_runner
from bucky.daemon.tcp_streams import StreamConnections
from bucky.inputs.base import InputHandler, Sink
from bucky.protocol.metricsd import Action, Kind, Record, encode

T0 = 1_699_999_200.0


@pytest.mark.parametrize("kind", sorted(input_runner.INPUT_HANDLERS))
def test_every_input_declares_the_contract(kind: str) -> None:
    loaded = input_runner.load_handler(kind)
    # A factory (statsd: workers or proxy) names every class it may build.
    for cls in getattr(loaded, "handler_classes", (loaded,)):
        assert InputHandler in cls.__mro__  # declared, so the defaults apply
        for method in ("handle", "open_stream", "deliver", "tick", "carry_state", "close",
                       "extra_fds"):
            assert callable(getattr(cls, method))
        assert cls.name == kind


def test_the_batch_sink_is_a_sink() -> None:
    from bucky.daemon.sink import BatchSink

    assert isinstance(BatchSink([]), Sink)


class ListSink:
    wants_records = False

    def __init__(self) -> None:
        self.samples: list[tuple] = []

    def extend(self, samples: list[tuple]) -> None:
        self.samples.extend(samples)

    def append(self, sample: tuple) -> None:
        self.samples.append(sample)


def test_metricsd_close_after_carry_state_emits_nothing_handed_over() -> None:
    from bucky.config import make_config
    from bucky.inputs.metricsd import MetricsdInput

    cfg = make_config()
    sink = ListSink()
    first = MetricsdInput(cfg, sink, rng=random.Random(1))
    first.handle(encode("h", [Record(Kind.COUNTER, Action.UPDATE, "c", 1.0)]), None, T0)
    state = first.carry_state()
    first.close(T0 + 1)
    assert sink.samples == []
    second = MetricsdInput(cfg, sink, state)
    second.close(T0 + 2)
    assert sink.samples, "the successor flushes what it was handed"


def test_statsd_close_after_carry_state_emits_nothing_handed_over(tmp_path: Any) -> None:
    from bucky.config import Config
    from bucky.inputs.statsd import StatsdInput

    cfg = dataclasses.replace(Config(), directory=str(tmp_path))
    sink = ListSink()
    first = StatsdInput(cfg, sink)
    first.handle(b"a:1|c", None, T0 + 1)
    state = first.carry_state()
    first.close(T0 + 2)
    assert sink.samples == []
    second = StatsdInput(cfg, sink, state)
    second.close(T0 + 3)
    assert "stats.a" in {s[1] for s in sink.samples}


class Recorder(InputHandler):
    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.counters = Counter()

    def carry_state(self) -> object:
        self.calls.append("carry_state")
        return {"x": 1}

    def close(self, now: float, mono: float | None = None) -> None:
        self.calls.append("close")


def _runner(reload: bool) -> tuple[input_runner.InputRunner, Recorder]:
    runner = input_runner.InputRunner.__new__(input_runner.InputRunner)
    runner.spec = types.SimpleNamespace(
        udp=[], cfg=types.SimpleNamespace(process_join_timeout=0.5, self_metrics_interval=0),
        title="recorder")
    runner.flags = types.SimpleNamespace(stop=True, reload=reload)
    runner.readers = []
    runner.handler = Recorder()
    runner.sink = types.SimpleNamespace(drain=lambda deadline: True)
    return runner, runner.handler


@pytest.mark.parametrize("reload", [False, True])
def test_runner_always_closes_the_handler(reload: bool) -> None:
    runner, handler = _runner(reload)
    state = runner.finish()
    if reload:
        assert handler.calls == ["carry_state", "close"] and state == {"x": 1}
    else:
        assert handler.calls == ["close"] and state is None


def test_connections_beyond_the_handlers_bound_are_refused() -> None:
    import selectors
    import socket

    from bucky.inputs.carbon import MAX_CONNECTIONS, CarbonInput

    assert CarbonInput.max_tcp_connections == MAX_CONNECTIONS == 1024
    handler = CarbonInput(None, ListSink())
    handler.max_tcp_connections = 2
    counters: Counter[str] = Counter()
    sel = selectors.DefaultSelector()
    conns = StreamConnections(handler, sel, "carbon", counters,
                              input_runner.RateLimitedLog(input_runner.log))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        clients = [socket.create_connection(listener.getsockname()) for _ in range(3)]
        try:
            for _ in clients:
                conns.accept(listener, "line")
            assert len(conns) == 2
            assert counters["tcp.refused"] == 1
            assert counters["tcp.connections"] == 2
        finally:
            for conn in list(conns.streams):
                conn.close()
            for client in clients:
                client.close()
            sel.close()
