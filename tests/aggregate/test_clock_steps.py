"""Wall-clock steps: flushes run on the monotonic clock, stamps follow the wall-clock grid.

An injected clock (wall = monotonic + offset) is stepped one hour back, then two hours forward,
while StatsD and MetricsD are fed and ticked as the daemon's loop does (every 50 ms).
"""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from bucky.aggregate.metricsd import MetricTable
from bucky.aggregate.schedule import FlushGrid
from bucky.aggregate.statsd import StatsdAggregator, StatsdSettings
from bucky.protocol.metricsd import Action, Kind, Record

T0 = 1_700_000_000.0
F = 10.0


class Clock:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.offset = T0 + 3.3 - self.mono  # wall = mono + offset

    @property
    def wall(self) -> float:
        return self.mono + self.offset


def run(flush, feed=None, steps=((95.0, -3600.0), (185.0, 7200.0)), until=300.0):  # type: ignore[no-untyped-def]
    """Tick every 50 ms for `until` seconds; step the wall clock at the given monotonic offsets.
    Returns [(mono, wall, stamps)] for every tick that flushed."""
    clock = Clock()
    start = clock.mono
    pending = list(steps)
    flushes = []
    for i in range(int(until / 0.05)):
        clock.mono = start + i * 0.05
        if pending and clock.mono - start >= pending[0][0]:
            clock.offset += pending.pop(0)[1]
        if feed is not None:
            feed(clock.wall, clock.mono)
        out = flush(clock.wall, clock.mono)
        if out:
            flushes.append((clock.mono - start, clock.wall, {s[3] for s in out}))
    return flushes


def check(flushes, interval=F):  # type: ignore[no-untyped-def]
    times = [m for m, _, _ in flushes]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # Flushes keep coming: no gap of two intervals, no burst (nothing closer than half one).
    assert all(interval / 2 <= g <= 2 * interval + 0.1 for g in gaps), gaps
    assert len(flushes) >= 300 / interval - 3
    stamps = []
    for _, wall, st in flushes:
        assert len(st) == 1  # one timestamp per flush
        ts = st.pop()
        assert ts % interval == 0  # on the grid
        assert wall - 2 * interval <= ts <= wall + interval  # follows the wall clock
        stamps.append(ts)
    # Never the same slot twice in a row.
    assert all(a != b for a, b in zip(stamps, stamps[1:], strict=False))
    return stamps


def test_statsd_flushes_every_interval_across_steps() -> None:
    agg = StatsdAggregator(StatsdSettings(flush_time=F))
    stamps = check(run(agg.tick, lambda now, mono: agg.ingest(b"a:1|c", now, mono)))
    assert agg.clock_steps == 2
    # Before the step, stamps advance by one interval each; after a step they advance likewise
    # on the new clock: -1 h repeats the slots of the stepped-over hour, +2 h skips slots.
    diffs = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    back = [d for d in diffs if d < 0]
    forward = [d for d in diffs if d > 1000]
    assert len(back) == 1 and -3600 <= back[0] <= -3600 + 2 * F
    assert len(forward) == 1 and 7200 <= forward[0] <= 7200 + 2 * F
    assert set(diffs) - {back[0], forward[0]} <= {F, 2 * F}


def test_statsd_counts_survive_the_steps() -> None:
    agg = StatsdAggregator(StatsdSettings(flush_time=F))
    sent = 0
    total = 0.0

    def feed(now: float, mono: float) -> None:
        nonlocal sent
        agg.ingest(b"hits:1|c", now, mono)
        sent += 1

    def flush(now: float, mono: float) -> list:
        nonlocal total
        out = agg.tick(now, mono)
        total += sum(s[2] for s in out if s[1] == "stats_counts.hits")
        return out

    run(flush, feed)
    clock_end = Clock()
    total += sum(s[2] for s in agg.flush(clock_end.wall + 400, clock_end.mono + 400)
                 if s[1] == "stats_counts.hits")
    assert total == sent  # nothing lost, nothing counted twice


def test_small_backward_step_never_repeats_a_slot() -> None:
    grid = FlushGrid(F)
    grid.anchor(T0 + 1, 0.0)  # first flush due at wall T0 + 10 = mono 9
    assert grid.take(T0 + 10.02, 9.02) == T0 + 10
    # The wall clock goes back 3 s: at the next deadline it reads T0 + 17, slot T0 + 10 again.
    slot = grid.take(T0 + 17.0, 19.0)
    assert slot == T0 + 20  # the next slot instead, never the same one twice
    assert grid.deadline == pytest.approx(19.0 + 13.0)  # next at wall T0 + 30: a longer interval


def test_late_flush_is_stamped_with_the_slot_that_was_due() -> None:
    grid = FlushGrid(F)
    grid.anchor(T0 + 1, 0.0)
    assert grid.take(T0 + 10.0, 9.0) == T0 + 10
    assert grid.take(T0 + 45.0, 44.0) == T0 + 20  # a stalled loop, not a step
    assert grid.deadline == pytest.approx(44.0 + 5.0) and grid.steps == 0


def test_forward_step_never_flushes_twice_in_a_row() -> None:
    grid = FlushGrid(F)
    grid.anchor(T0, 0.0)
    assert grid.take(T0 + 10.0, 10.0) == T0 + 10
    # +2 h + 9.9 s: the new grid's next boundary is 0.1 s away; that sliver joins the next one.
    assert grid.take(T0 + 7200 + 29.9, 20.0) == T0 + 7200 + 20
    assert grid.deadline == pytest.approx(20.0 + 10.1)
    assert grid.steps == 1


def test_statsd_gauge_ttl_and_saves_use_the_monotonic_clock() -> None:
    agg = StatsdAggregator(StatsdSettings(flush_time=F, gauges_max_ttl=60.0))
    agg.tick(T0, 0.0)
    agg.ingest(b"g:5|g", T0 + 1, 1.0)
    # Two hours forward on the wall clock, 10 s on the monotonic one: the gauge is not expired.
    out = agg.tick(T0 + 7200 + 11, 11.0)
    assert [s[2] for s in out if s[1] == "stats.gauges.g"] == [5.0]
    # Saved with its last update as wall-clock time (what a restart can use).
    assert agg.gauges_snapshot(T0 + 7200 + 11, 11.0) == {"g": (5.0, T0 + 7200 + 1)}
    # One hour back on the wall clock, 61 s later on the monotonic one: expired.
    out = agg.tick(T0 - 3600 + 70, 70.0)
    assert not [s for s in out if s[1] == "stats.gauges.g"]
    restored = StatsdAggregator(StatsdSettings(flush_time=F, gauges_max_ttl=60.0))
    restored.restore_gauges({"g": (7.0, T0 - 30)}, T0, 500.0)
    assert restored.gauges_snapshot(T0, 500.0) == {"g": (7.0, T0 - 30)}


def test_statsd_timestamp_lag_is_monotonic() -> None:
    agg = StatsdAggregator(StatsdSettings(flush_time=F))
    run_out = run(agg.tick, lambda now, mono: agg.ingest(b"a:1|c", now, mono))
    assert run_out
    agg2 = StatsdAggregator(StatsdSettings(flush_time=F))
    lags = []

    def flush(now: float, mono: float) -> list:
        out = agg2.tick(now, mono)
        lags.extend(s[2] for s in out if s[1] == "stats.gauges.statsd.timestamp_lag")
        return out

    run(flush)
    assert lags and max(abs(x) for x in lags) <= 2 * F  # never an hour


def test_metricsd_flushes_every_interval_across_steps() -> None:
    table = MetricTable(rng=random.Random(1), counters=Counter(),
                        default_interval=F,
                        handlers=[(re.compile("slow"), 30.0, 1)])

    def feed(now: float, mono: float) -> None:
        table.apply("h", Record(Kind.METER, Action.UPDATE, "m", 1), now, mono)
        table.apply("h", Record(Kind.COUNTER, Action.UPDATE, "slow.c", 1), now, mono)

    per_interval: dict[float, list] = {F: [], 30.0: []}
    last: dict[str, float] = {}

    def flush(now: float, mono: float) -> list:
        out = table.due(now, mono)
        last.update((s[1], s[2]) for s in out)
        for interval, prefix in ((F, "m."), (30.0, "slow.")):
            part = [s for s in out if s[1].startswith(prefix)]
            if part:
                per_interval[interval].append((mono, now, {s[3] for s in part}))
        return out

    run(flush, feed)
    check([(m - 1000.0, w, s) for m, w, s in per_interval[F]])
    check([(m - 1000.0, w, s) for m, w, s in per_interval[30.0]], interval=30.0)
    assert table.clock_steps >= 2
    # The meter's rates see only the monotonic clock: 20 marks/s, whatever the wall clock did.
    assert last["m.rate_mean"] == pytest.approx(20.0, rel=0.01)
    assert last["m.rate_1m"] == pytest.approx(20.0, rel=0.05)
