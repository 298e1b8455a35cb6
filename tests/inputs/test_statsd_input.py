"""StatsdInput: the handler contract, rate-limited logging, persistence of gauges, hand-over."""

from __future__ import annotations

import errno
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bucky.inputs.statsd as statsd_input
from bucky.config import make_config
from bucky.inputs.statsd import StatsdInput, decode_gauges, encode_gauges
from bucky.protocol.framing import LineFramer

T0 = 1_000_000.0  # on the 10 s grid


def make_cfg(directory: Path | str, **overrides: Any) -> Any:
    return make_config(directory=str(directory), **overrides)


class ListSink:
    def __init__(self) -> None:
        self.batches: list[list[tuple]] = []

    def extend(self, samples: list[tuple]) -> None:
        self.batches.append(list(samples))

    def append(self, sample: tuple) -> None:
        self.batches.append([sample])

    def last(self) -> dict[str, float]:
        return {name: value for _, name, value, _ in self.batches[-1]}


@pytest.fixture
def sink() -> ListSink:
    return ListSink()


def started(cfg: Any, sink: ListSink, state: object = None) -> StatsdInput:
    inp = StatsdInput(cfg, sink, state)
    inp.tick(T0)
    return inp


def test_one_batch_per_flush_on_the_grid(tmp_path: Path, sink: ListSink) -> None:
    inp = started(make_cfg(tmp_path), sink)
    inp.handle(b"a:1|c\nt:5|ms", ("127.0.0.1", 5000), T0 + 1)
    inp.handle(b"a:2|c", None, T0 + 2)
    inp.tick(T0 + 9.9)
    assert sink.batches == []
    inp.tick(T0 + 10.05)
    assert len(sink.batches) == 1
    batch = sink.batches[0]
    assert all(type(s) is tuple and len(s) == 4 and s[0] is None for s in batch)
    assert {s[3] for s in batch} == {int(T0) + 10}
    got = sink.last()
    assert got["stats_counts.a"] == 3.0
    assert got["stats.timers.t.mean"] == 5.0
    assert got["stats.statsd.processing_time"] >= 0.0
    assert inp.counters["datagrams"] == 2
    assert inp.counters["lines"] == 3
    assert inp.counters["flushes"] == 1
    assert inp.counters["samples"] == len(batch)


def test_a_datagram_after_the_boundary_belongs_to_the_next_interval(
    tmp_path: Path, sink: ListSink
) -> None:
    inp = started(make_cfg(tmp_path), sink)
    inp.handle(b"a:1|c", None, T0 + 5)
    inp.handle(b"a:10|c", None, T0 + 10.01)  # no tick in between: handle() flushes first
    assert sink.last()["stats_counts.a"] == 1.0
    inp.tick(T0 + 20)
    assert sink.last()["stats_counts.a"] == 10.0


def test_bad_lines_are_counted_and_logged_at_most_once_a_minute(
    tmp_path: Path, sink: ListSink, caplog: pytest.LogCaptureFixture
) -> None:
    inp = started(make_cfg(tmp_path), sink)
    caplog.set_level(logging.WARNING, logger="bucky.inputs.statsd")
    for i in range(50):
        inp.handle(b"good:1|c\nbad\nx:y|c", None, T0 + i * 0.5)
    inp.tick(T0 + 30)
    assert inp.counters["bad_lines"] == 100
    assert inp.counters["bad_lines.no-value"] == 50
    assert inp.counters["bad_lines.bad-value"] == 50
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2  # one per reason
    caplog.clear()
    inp.handle(b"bad", None, T0 + 61)
    assert len(caplog.records) == 1
    assert "49 similar messages suppressed" in caplog.records[0].getMessage()
    assert "'bad'" in caplog.records[0].getMessage()


def test_events_and_service_checks_are_counted(tmp_path: Path, sink: ListSink) -> None:
    inp = started(make_cfg(tmp_path), sink)
    inp.handle(b"_e{1,2}:a|bc\n_sc|svc|0", None, T0 + 1)
    inp.tick(T0 + 2)
    assert inp.counters["events"] == 1
    assert inp.counters["service_checks"] == 1
    assert inp.counters["bad_lines"] == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_handle_never_raises(datagrams: list[bytes]) -> None:
    inp = StatsdInput(make_cfg("/nonexistent"), ListSink())
    for i, data in enumerate(datagrams):
        inp.handle(data, None, T0 + i)
    inp.close(T0 + 100)
    assert inp.counters["errors.internal"] == 0


def test_an_internal_error_is_contained(
    tmp_path: Path, sink: ListSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    inp = started(make_cfg(tmp_path), sink)

    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(inp._agg, "ingest", broken)
    inp.handle(b"a:1|c", None, T0 + 1)
    inp.handle(b"a:1|c", None, T0 + 2)
    assert inp.counters["errors.internal"] == 2


def test_handle_lines_from_a_framer(tmp_path: Path, sink: ListSink) -> None:
    inp = started(make_cfg(tmp_path), sink)
    framer = LineFramer(1000)
    inp.handle_lines(framer.feed(b"a:1|c\nb:2|g\nc:"), T0 + 1)
    inp.handle_lines(framer.feed(b"3|ms\n"), T0 + 2)
    inp.tick(T0 + 10)
    got = sink.last()
    assert got["stats_counts.a"] == 1.0
    assert got["stats.gauges.b"] == 2.0
    assert got["stats.timers.c.upper"] == 3.0
    assert got["stats_counts.statsd.packets_received"] == 2


def test_a_tcp_client_is_a_line_stream_with_the_statsd_bound(tmp_path: Path,
                                                              sink: ListSink) -> None:
    inp = started(make_cfg(tmp_path, statsd_max_line_length=64), sink)
    stream = inp.open_stream(statsd_input.TCP_STREAM, ("127.0.0.1", 5000))
    assert stream.feed(b"a:1|c\n" + b"x" * 70 + b"\nb:2", T0 + 1, T0 + 1)  # the client stays
    assert stream.feed(b"|g\nc:3", T0 + 2, T0 + 2)
    stream.close(T0 + 3)
    assert inp.counters["tcp.overlong_lines"] == 1
    assert inp.counters["tcp.truncated_lines"] == 1
    inp.tick(T0 + 10)
    got = sink.last()
    assert got["stats_counts.a"] == 1.0 and got["stats.gauges.b"] == 2.0
    assert "stats_counts.c" not in got
    with pytest.raises(ValueError):
        inp.open_stream("pickle", None)


def test_close_flushes_the_partial_interval(tmp_path: Path, sink: ListSink) -> None:
    inp = started(make_cfg(tmp_path), sink)
    inp.handle(b"a:4|c", None, T0 + 3)
    inp.close(T0 + 4)
    assert len(sink.batches) == 1
    assert {s[3] for s in sink.batches[0]} == {int(T0) + 10}
    assert sink.last()["stats_counts.a"] == 4.0
    inp.close(T0 + 5)
    inp.tick(T0 + 30)
    assert len(sink.batches) == 1


def test_close_without_any_traffic_sends_nothing(tmp_path: Path, sink: ListSink) -> None:
    inp = StatsdInput(make_cfg(tmp_path), sink)
    inp.close(T0)
    assert sink.batches == []


# --- persistence -------------------------------------------------------------------------------


def persistent(tmp_path: Path, **overrides: Any) -> Any:
    return make_cfg(tmp_path, statsd_persistent_gauges=True, **overrides)


def test_gauges_survive_a_restart(tmp_path: Path, sink: ListSink) -> None:
    cfg = persistent(tmp_path, statsd_metadata={"env": "x"}, statsd_tags="graphite")
    first = started(cfg, sink)
    first.handle(b"g:5|g\nh;k=v:-2|g\nc:1|c", None, T0 + 1)
    first.close(T0 + 2)
    saved = json.loads((tmp_path / "gauges.save").read_text())
    assert saved["format"] == "bucky-statsd-gauges"
    assert saved["gauges"] == {"g": [5.0, T0 + 1], "h;k=v": [-2.0, T0 + 1]}
    assert first.counters["gauges_saves"] == 1

    second_sink = ListSink()
    second = started(cfg, second_sink)
    second.handle(b"g:+1|g", None, T0 + 11)
    second.tick(T0 + 20)
    got = second_sink.last()
    assert got["stats.gauges.g;env=x"] == 6.0
    assert got["stats.gauges.h;env=x;k=v"] == -2.0
    assert second.counters["gauges_restored"] == 2


def test_gauges_are_saved_periodically_and_only_when_changed(
    tmp_path: Path, sink: ListSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[str] = []
    real = statsd_input.atomic_write

    def counting(path: str, data: bytes) -> None:
        writes.append(path)
        real(path, data)

    monkeypatch.setattr(statsd_input, "atomic_write", counting)
    inp = started(persistent(tmp_path, statsd_gauges_save_interval=30.0), sink)
    inp.handle(b"g:1|g", None, T0 + 1)
    inp.tick(T0 + 29)
    assert writes == []
    inp.tick(T0 + 30)
    assert len(writes) == 1
    inp.tick(T0 + 60)  # nothing changed: no write
    assert len(writes) == 1
    inp.handle(b"g:2|g", None, T0 + 61)
    inp.tick(T0 + 90)
    assert len(writes) == 2
    assert decode_gauges((tmp_path / "gauges.save").read_bytes())[0] == {"g": (2.0, T0 + 61)}


def test_a_failed_save_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, sink: ListSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    save = tmp_path / "gauges.save"
    old = encode_gauges({"old": (1.0, T0)})
    save.write_bytes(old)
    inp = started(persistent(tmp_path), sink)
    inp.handle(b"new:2|g", None, T0 + 1)

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(statsd_input.os, "fsync", disk_full)
    inp.close(T0 + 2)
    assert save.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gauges.save"]
    assert inp.counters["errors.gauges_save"] == 1
    assert sink.last()["stats.gauges.new"] == 2.0  # the flush went out all the same


def test_a_corrupt_file_is_moved_aside_and_the_input_starts(
    tmp_path: Path, sink: ListSink, caplog: pytest.LogCaptureFixture
) -> None:
    save = tmp_path / "gauges.save"
    for attempt, junk in enumerate([b'{"a": [1.0, {}', b"\x00\xff", b"[]", b'{"a": "x"}']):
        save.write_bytes(junk)
        inp = started(persistent(tmp_path), sink)
        assert inp.counters["errors.gauges_corrupt"] == 1
        assert not save.exists()
        suffix = ".corrupt" + (f".{attempt}" if attempt else "")
        assert (tmp_path / ("gauges.save" + suffix)).read_bytes() == junk
        inp.handle(b"g:1|g", None, T0 + 1)
        inp.close(T0 + 2)
        assert decode_gauges(save.read_bytes())[0] == {"g": (1.0, T0 + 1)}
        save.unlink()
    assert "moved to" in caplog.text


def test_an_unusable_directory_is_survived(tmp_path: Path, sink: ListSink) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    inp = started(persistent(not_a_directory, statsd_gauges_save_interval=1.0), sink)
    inp.handle(b"g:1|g", None, T0 + 1)
    inp.tick(T0 + 1.5)
    inp.tick(T0 + 10)
    inp.close(T0 + 11)
    assert inp.counters["errors.gauges_save"] >= 2
    assert sink.batches[0][0][0] is None and "stats.gauges.g" in sink.last()


def test_bucky2_save_files_are_read(tmp_path: Path, sink: ListSink) -> None:
    (tmp_path / "gauges.save").write_text(
        json.dumps(
            {
                "old.style": 3,  # Bucky <= 2.2: {name: value}
                "with.meta": [4.5, {"host": "web1"}],  # 2.3: {name: [value, metadata]}
                "bad": "x",
                "inf": [1e999],
            }
        )
    )
    inp = started(persistent(tmp_path, statsd_delete_idlestats=True), sink)
    assert inp.counters["gauges_load_skipped"] == 2
    inp.tick(T0 + 10)
    got = sink.last()
    # sent at the first flush although unchanged (onlychanged_gauges is on), as Bucky 2 did
    assert got["stats.gauges.old.style"] == 3.0
    assert got["stats.gauges.with.meta"] == 4.5
    inp.tick(T0 + 20)
    assert "stats.gauges.old.style" not in sink.last()


def test_save_file_codec() -> None:
    data = encode_gauges({"b": (2.0, 5.0), "a;k=v": (-1.5, 6.0)})
    assert decode_gauges(data) == ({"a;k=v": (-1.5, 6.0), "b": (2.0, 5.0)}, 0)
    broken = b'{"format":"bucky-statsd-gauges","version":1,"gauges":{"a":[1],"%":[1,2],"b":[1,2]}}'
    assert decode_gauges(broken) == ({"b": (1.0, 2.0)}, 2)
    with pytest.raises(statsd_input.DecodeError):
        decode_gauges(b'{"format":"bucky-statsd-gauges","version":9,"gauges":{}}')
    with pytest.raises(statsd_input.DecodeError):
        decode_gauges(b"[" * 100_000)


# --- reload -------------------------------------------------------------------------------------


def test_carry_state_hands_pending_data_to_the_next_instance(
    tmp_path: Path, sink: ListSink
) -> None:
    old = started(persistent(tmp_path), sink)
    old.handle(b"a:1|c\ng:7|g\nt:3|ms\ns:x|s\nbad", None, T0 + 1)
    state = old.carry_state()
    old.close(T0 + 2)  # hands over: neither flushes nor saves
    assert sink.batches == [] and not (tmp_path / "gauges.save").exists()

    new_cfg = persistent(tmp_path, statsd_legacy_namespace=False)
    new = StatsdInput(new_cfg, sink, state)
    new.handle(b"a:2|c\ns:y|s", None, T0 + 3)
    new.tick(T0 + 10)
    got = sink.last()
    assert got["stats.counters.a.count"] == 3.0
    assert got["stats.gauges.g"] == 7.0
    assert got["stats.timers.t.upper"] == 3.0
    assert got["stats.sets.s.count"] == 2
    assert got["stats.counters.statsd.bad_lines_seen.count"] == 1
    assert new.counters["datagrams"] == 2


def test_a_bad_state_is_reported_and_ignored(tmp_path: Path, sink: ListSink) -> None:
    inp = started(make_cfg(tmp_path), sink, state={"version": 1, "aggregator": {"version": 7}})
    assert inp.counters["errors.state"] == 1
    inp.handle(b"a:1|c", None, T0 + 1)
    inp.tick(T0 + 10)
    assert sink.last()["stats_counts.a"] == 1.0


def test_values_are_plain_numbers(tmp_path: Path, sink: ListSink) -> None:
    inp = started(make_cfg(tmp_path, statsd_percentile_thresholds=[90, 99.9, -10]), sink)
    inp.handle(b"\n".join(b"t:%d|ms" % i for i in range(100)) + b"\nc:1|c\nu:a|s", None, T0 + 1)
    inp.tick(T0 + 10)
    for _, name, value, timestamp in sink.batches[0]:
        assert type(name) is str and type(timestamp) is int
        assert type(value) in (int, float) and math.isfinite(value), name
    assert os.listdir(tmp_path) == []


def test_a_clock_step_is_counted_and_logged_and_flushing_goes_on(
    tmp_path: Path, sink: ListSink, caplog: pytest.LogCaptureFixture
) -> None:
    """README "Clock steps": the input flushes on the monotonic clock; a step is counted."""
    inp = StatsdInput(make_cfg(tmp_path, statsd_persistent_gauges=True), sink)
    inp.tick(T0, 100.0)
    inp.handle(b"a:1|c", None, T0 + 1, 101.0)
    inp.tick(T0 + 10, 110.0)
    inp.handle(b"a:1|c", None, T0 - 3600 + 15, 115.0)  # the wall clock went an hour back
    inp.tick(T0 - 3600 + 20, 120.0)  # flushed on time, stamped on the new wall clock
    stamps = [batch[0][3] for batch in sink.batches]
    assert stamps == [int(T0) + 10, int(T0) - 3600 + 20]
    assert inp.counters["clock_steps"] == 1
    assert "the wall clock stepped" in caplog.text
    inp.close(T0 - 3600 + 21, 121.0)
    saved = json.loads((tmp_path / "gauges.save").read_text())
    assert saved["format"] == "bucky-statsd-gauges"
