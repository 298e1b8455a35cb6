"""The input contract on a reload: carry_state() first, then always close(); what was handed over
is emitted by the successor only, never twice."""

from __future__ import annotations

import random
from typing import Any

import pytest

from bucky.config import make_config
from bucky.inputs.collectd import CollectdInput
from bucky.inputs.metricsd import MetricsdInput
from bucky.inputs.statsd import StatsdInput
from bucky.protocol.metricsd import Action, Kind, Record, encode

T0 = 1_000_000.0


class ListSink:
    def __init__(self) -> None:
        self.samples: list[tuple] = []

    def extend(self, samples: list[tuple]) -> None:
        self.samples.extend(samples)

    def notify(self, notification: Any) -> None:
        pass


def statsd(cfg: Any, sink: ListSink, state: object = None) -> Any:
    inp = StatsdInput(cfg, sink, state)
    inp.tick(T0)
    inp.handle(b"c:3|c\ng:7|g", None, T0 + 1)
    return inp


def metricsd(cfg: Any, sink: ListSink, state: object = None) -> Any:
    inp = MetricsdInput(cfg, sink, state, rng=random.Random(1))
    inp.handle(encode("h", [Record(Kind.COUNTER, Action.UPDATE, "c", 3)]), None, T0 + 1)
    return inp


@pytest.mark.parametrize("make", [statsd, metricsd], ids=["statsd", "metricsd"])
def test_close_after_carry_state_emits_nothing_and_the_successor_emits_it_once(tmp_path, make):
    cfg = make_config(directory=str(tmp_path))
    old_sink, new_sink = ListSink(), ListSink()
    old = make(cfg, old_sink)
    state = old.carry_state()
    old.close(T0 + 2)
    assert old_sink.samples == []
    new = type(old)(cfg, new_sink, state)
    new.close(T0 + 3)
    assert new_sink.samples  # what was pending reaches the successor's final flush


def test_collectd_close_after_carry_state_is_harmless():
    inp = CollectdInput(make_config(), ListSink())
    state = inp.carry_state()
    inp.close(T0)
    CollectdInput(make_config(), ListSink(), state)
