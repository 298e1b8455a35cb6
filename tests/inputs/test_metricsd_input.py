"""MetricsdInput: datagrams in, samples out on the sink at flush time; bad datagrams counted."""

from __future__ import annotations

import logging
import pickle
import random
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bucky.inputs.metricsd import MetricsdInput
from bucky.protocol.metricsd import Action, Kind, Record, encode, encode_header

T0 = 1_699_999_200.0  # on the 10 s and 60 s grids
LOGGER = "bucky.inputs.metricsd"


class ListSink:
    def __init__(self) -> None:
        self.batches: list[list[tuple]] = []

    def extend(self, samples: list[tuple]) -> None:
        assert samples and all(type(s) is tuple and len(s) == 4 for s in samples)
        self.batches.append(samples)

    @property
    def samples(self) -> list[tuple]:
        return [s for batch in self.batches for s in batch]

    def by_name(self) -> dict[tuple, Any]:
        return {(s[0], s[1]): s[2] for s in self.samples}


def make_cfg(**overrides: Any) -> Any:
    from bucky.config import make_config

    return make_config(**overrides)


@pytest.fixture
def sink() -> ListSink:
    return ListSink()


@pytest.fixture
def metricsd(sink: ListSink) -> MetricsdInput:
    return MetricsdInput(make_cfg(), sink, rng=random.Random(7))


def update(kind: Kind, name: str, value: float) -> Record:
    return Record(kind, Action.UPDATE, name, value)


ADDR = ("192.0.2.1", 40000)


def test_updates_are_emitted_at_the_flush(metricsd: MetricsdInput, sink: ListSink) -> None:
    metricsd.handle(
        encode("web1.example", [update(Kind.COUNTER, "jobs", 2), update(Kind.GAUGE, "load", 0.5)]),
        ADDR,
        T0 + 1,
    )
    metricsd.handle(encode("web1.example", [update(Kind.COUNTER, "jobs", 3)]), ADDR, T0 + 2)
    metricsd.tick(T0 + 5)
    assert sink.samples == []
    metricsd.tick(T0 + 10.02)
    assert sorted(sink.samples) == [
        ("web1.example", "jobs.count", 5, int(T0 + 10)),
        ("web1.example", "load.value", 0.5, int(T0 + 10)),
    ]
    assert metricsd.counters["datagrams"] == 2
    assert metricsd.counters["updates"] == 3
    assert metricsd.counters["samples"] == 2


def test_empty_hostname_gives_host_none(metricsd: MetricsdInput, sink: ListSink) -> None:
    metricsd.handle(encode(None, [update(Kind.METER, "hits", 4)]), None, T0)
    metricsd.close(T0 + 1)
    assert {s[0] for s in sink.samples} == {None}
    assert sink.by_name()[(None, "hits.count")] == 4


def test_malformed_datagrams_between_good_ones(metricsd: MetricsdInput, sink: ListSink) -> None:
    good = encode("h", [update(Kind.COUNTER, "c", 1)])
    partial = good + b"\x55\x00\x02x\x00"  # a good record, then an unknown metric type
    for data in (good, b"", b"\x00garbage", good[:-1], partial, b"\xaa\x00\x05ab", good):
        metricsd.handle(data, ADDR, T0)
    metricsd.close(T0 + 1)
    assert sink.by_name()[("h", "c.count")] == 3  # good, partial's good record, good
    assert metricsd.counters["datagrams"] == 7
    bad = {k: v for k, v in metricsd.counters.items() if k.startswith("bad_datagrams.")}
    assert bad == {
        "bad_datagrams.empty": 1,
        "bad_datagrams.bad-magic": 1,
        "bad_datagrams.truncated-number": 1,
        "bad_datagrams.bad-kind": 1,
        "bad_datagrams.truncated-string": 1,
    }


def test_bad_datagrams_log_once_a_minute_per_reason(
    metricsd: MetricsdInput, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for i in range(100):
        metricsd.handle(b"\x01", ADDR, T0 + i * 0.1)  # bad-magic, 10 s of them
        metricsd.handle(b"", ADDR, T0 + i * 0.1)  # empty
    assert len(caplog.records) == 2
    assert "192.0.2.1:40000" in caplog.records[0].getMessage()
    caplog.clear()
    metricsd.handle(b"\x01", ("2001:db8::1", 5, 0, 0), T0 + 61)
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "99 similar messages suppressed" in message and "[2001:db8::1]:5" in message
    assert metricsd.counters["bad_datagrams.bad-magic"] == 101


def test_kinds_and_actions_end_to_end(metricsd: MetricsdInput, sink: ListSink) -> None:
    records = [
        update(Kind.TIMER, "t", 0.2),
        update(Kind.TIMER, "t", 0.4),
        update(Kind.HISTOGRAM, "h", 10),
        Record(Kind.HISTOGRAM, Action.CLEAR, "h"),
        update(Kind.GAUGE, "gone", 1),
        Record(Kind.GAUGE, Action.DELETE, "gone"),
    ]
    metricsd.handle(encode("", records), ADDR, T0 + 1)
    metricsd.tick(T0 + 10)
    got = sink.by_name()
    assert got[(None, "t.count")] == 2
    assert got[(None, "t.mean")] == pytest.approx(0.3)
    assert got[(None, "h.count")] == 0 and (None, "h.min") not in got
    assert not any(name.startswith("gone.") for _, name in got)
    assert len(metricsd) == 2


def test_handler_intervals_from_config(sink: ListSink) -> None:
    cfg = make_cfg(metricsd_handlers=((re.compile(r"slow\."), 60.0, 0),))
    metricsd = MetricsdInput(cfg, sink, rng=random.Random(1))
    metricsd.handle(encode("h", [update(Kind.COUNTER, "slow.c", 1)]), ADDR, T0 + 1)
    metricsd.handle(encode("h", [update(Kind.COUNTER, "fast.c", 1)]), ADDR, T0 + 1)
    metricsd.tick(T0 + 10)
    assert [s[1] for s in sink.samples] == ["fast.c.count"]
    metricsd.tick(T0 + 60)
    assert sorted(s[1] for s in sink.batches[-1]) == ["fast.c.count", "slow.c.count"]


def test_cap_option_is_honoured(sink: ListSink) -> None:
    metricsd = MetricsdInput(make_cfg(metricsd_max_metrics=2), sink)
    metricsd.handle(encode("h", [update(Kind.COUNTER, f"c{i}", 1) for i in range(4)]), ADDR, T0)
    assert len(metricsd) == 2
    assert metricsd.counters["dropped.max_metrics"] == 2


def test_reload_carries_metrics_and_counters(sink: ListSink) -> None:
    first = MetricsdInput(make_cfg(), sink, rng=random.Random(3))
    first.handle(encode("h", [update(Kind.COUNTER, "api.c", 5)]), ADDR, T0 + 1)
    first.handle(b"junk", ADDR, T0 + 1)
    state = pickle.loads(pickle.dumps(first.carry_state()))
    cfg = make_cfg(metricsd_handlers=((re.compile("api"), 60.0, 0),))
    second = MetricsdInput(cfg, sink, state)
    second.tick(T0 + 2)
    second.handle(encode("h", [update(Kind.COUNTER, "api.c", 1)]), ADDR, T0 + 3)
    second.tick(T0 + 10)
    assert sink.samples == []  # now on the 60 s interval
    second.tick(T0 + 60)
    assert sink.by_name()[("h", "api.c.count")] == 6
    assert second.counters["datagrams"] == 3
    assert second.counters["bad_datagrams.bad-magic"] == 1


def test_an_internal_error_is_counted_not_raised(
    metricsd: MetricsdInput, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(metricsd._table, "apply", broken)
    caplog.set_level(logging.ERROR, logger=LOGGER)
    metricsd.handle(encode("h", [update(Kind.COUNTER, "c", 1)]), ADDR, T0)
    metricsd.handle(encode("h", [update(Kind.COUNTER, "c", 1)]), ADDR, T0)
    assert metricsd.counters["errors.internal"] == 2
    assert len(caplog.records) == 1 and "RuntimeError: bug" in caplog.text


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=64), max_size=10))
def test_handle_never_raises(datagrams: list[bytes]) -> None:
    metricsd = MetricsdInput(make_cfg(metricsd_max_metrics=50), ListSink(), rng=random.Random(0))
    for i, data in enumerate(datagrams):
        metricsd.handle(encode_header("h") + data, ADDR, T0 + i)
        metricsd.handle(data, None, T0 + i)
    metricsd.tick(T0 + 100)
    metricsd.close(T0 + 101)
    assert metricsd.counters["datagrams"] == 2 * len(datagrams)
    assert metricsd.counters["errors.internal"] == 0  # bad bytes are rejected, never a bug


def test_works_with_the_real_config() -> None:
    config = pytest.importorskip("bucky.config")
    cfg = config.make_config(metricsd_handlers=[("^db", 30)])
    sink = ListSink()
    metricsd = MetricsdInput(cfg, sink)
    metricsd.handle(encode("h", [update(Kind.GAUGE, "db.size", 3)]), ADDR, T0 + 1)
    metricsd.tick(T0 + 10)
    assert sink.samples == []
    metricsd.tick(T0 + 30)
    assert sink.samples == [("h", "db.size.value", 3, int(T0 + 30))]


def test_a_clock_step_is_counted_and_flushing_goes_on(
    metricsd: MetricsdInput, sink: ListSink
) -> None:
    """README "Clock steps": flushes on the monotonic clock, stamps on the wall clock."""
    metricsd.handle(encode("h", [update(Kind.GAUGE, "g", 1)]), ADDR, T0 + 1, 1.0)
    metricsd.tick(T0 + 10.02, 10.02)
    metricsd.tick(T0 + 7200 + 20.02, 20.02)  # two hours forward on the wall clock
    metricsd.tick(T0 + 7200 + 30.02, 30.02)
    assert [batch[0][3] for batch in sink.batches] == [
        int(T0) + 10, int(T0) + 7220, int(T0) + 7230
    ]
    assert metricsd.counters["clock_steps"] == 1
