"""MetricsD metric math against known series, and the table's flush, handlers, expiry and cap."""

from __future__ import annotations

import math
import pickle
import random
import re
from collections import Counter as CountMap

import pytest

from bucky.aggregate.metricsd import (
    PERCENTILES,
    RESCALE_AFTER,
    Counter,
    DecayingReservoir,
    Gauge,
    Histogram,
    Meter,
    MetricTable,
    Timer,
    next_flush_time,
)
from bucky.protocol.metricsd import Action, Kind, Record

T0 = 1_699_999_200.0  # a multiple of 3600, so flush grids are easy to read


def rng() -> random.Random:
    return random.Random(20240601)


def as_dict(stats: list) -> dict:
    return dict(stats)


# -- counter and gauge -----------------------------------------------------------------------------


def test_counter_adds_and_clears() -> None:
    c = Counter(T0)
    for v in (1, 2, -1, 0.5):
        c.update(v, T0)
    assert c.stats(T0) == [("count", 2.5)]
    c.clear(T0)
    assert c.stats(T0) == [("count", 0)]


def test_gauge_keeps_the_last_value_and_clear_forgets_it() -> None:
    g = Gauge(T0)
    assert g.stats(T0) == []
    g.update(3, T0)
    g.update(-7.5, T0)
    assert g.stats(T0) == [("value", -7.5)]
    g.clear(T0)
    assert g.stats(T0) == []


# -- meter / EWMA ----------------------------------------------------------------------------------

WINDOWS = (("rate_1m", 1), ("rate_5m", 5), ("rate_15m", 15))


@pytest.mark.parametrize("minutes", [1, 5, 15])
def test_ewma_decay_matches_the_closed_form(minutes: int) -> None:
    # 50 events in the first 5-s tick: instant rate 10/s, which initialises every EWMA. Each of the
    # following idle ticks multiplies the rate by (1 - alpha) = exp(-5 / (60 * window_minutes)),
    # so after `minutes` of ticks the rate is 10 * exp(-minutes / window_minutes).
    stepped, jumped = Meter(T0), Meter(T0)
    for m in (stepped, jumped):
        m.update(50, T0 + 1)
    end = T0 + 5 + minutes * 60
    for k in range(1, minutes * 12 + 2):
        stepped.stats(T0 + 5 * k)
    got_stepped, got_jumped = as_dict(stepped.stats(end)), as_dict(jumped.stats(end))
    for label, window in WINDOWS:
        expected = 10.0 * math.exp(-minutes / window)
        assert got_stepped[label] == pytest.approx(expected, rel=1e-12)
        assert got_jumped[label] == pytest.approx(expected, rel=1e-12)
    assert got_stepped["count"] == 50


def test_meter_at_a_constant_rate_reports_that_rate() -> None:
    m = Meter(T0)
    for second in range(30 * 60):
        m.update(10, T0 + second + 0.5)
    stats = as_dict(m.stats(T0 + 30 * 60))
    assert stats["count"] == 18000
    assert stats["rate_mean"] == pytest.approx(10.0)
    for label, _ in WINDOWS:
        assert stats[label] == pytest.approx(10.0, rel=1e-9)


def test_meter_rates_follow_a_rate_change() -> None:
    m = Meter(T0)
    for second in range(600):
        m.update(2, T0 + second + 0.5)
    for second in range(600, 900):  # 5 minutes at 12/s after 10 minutes at 2/s
        m.update(12, T0 + second + 0.5)
    stats = as_dict(m.stats(T0 + 900))
    assert stats["rate_1m"] == pytest.approx(12 - 10 * math.exp(-5), rel=1e-9)
    assert stats["rate_5m"] == pytest.approx(12 - 10 * math.exp(-1), rel=1e-9)
    assert stats["rate_15m"] == pytest.approx(12 - 10 * math.exp(-1 / 3), rel=1e-9)
    assert stats["rate_mean"] == pytest.approx((1200 + 3600) / 900)


def test_meter_before_the_first_tick_and_after_clear() -> None:
    m = Meter(T0)
    m.update(5, T0 + 1)
    assert as_dict(m.stats(T0 + 2)) == {
        "count": 5, "rate_mean": 2.5, "rate_1m": 0.0, "rate_5m": 0.0, "rate_15m": 0.0,
    }  # fmt: skip
    m.clear(T0 + 3)
    assert as_dict(m.stats(T0 + 3)) == {
        "count": 0, "rate_mean": 0.0, "rate_1m": 0.0, "rate_5m": 0.0, "rate_15m": 0.0,
    }  # fmt: skip


def test_meter_survives_clock_jumps() -> None:
    m = Meter(T0)
    m.update(100, T0 + 1)
    m.stats(T0 + 10)
    m.update(1, T0 - 3600)  # stepped back an hour
    m.update(1, T0 + 86400 * 365)  # then a year ahead: decay in O(1), no overflow
    stats = as_dict(m.stats(T0 + 86400 * 365 + 5))
    assert all(math.isfinite(v) for v in stats.values())
    assert stats["count"] == 102


# -- reservoir / histogram -------------------------------------------------------------------------


def feed(reservoir_or_histogram, values, start: float, duration: float) -> None:  # type: ignore[no-untyped-def]
    step = duration / len(values)
    for i, v in enumerate(values):
        reservoir_or_histogram.update(v, start + i * step)


def test_histogram_of_a_small_known_series() -> None:
    h = Histogram(T0, rng())
    for v in (4, 1, 3, 2):
        h.update(v, T0)  # same instant: equal weights
    stats = as_dict(h.stats(T0))
    assert stats["count"] == 4
    assert (stats["min"], stats["max"]) == (1, 4)
    assert stats["mean"] == pytest.approx(2.5)
    assert stats["std"] == pytest.approx(math.sqrt(1.25))  # weighted population std
    # Coda Hale's weighted quantile: the value whose cumulative weight span contains q.
    assert (stats["median"], stats["p75"], stats["p99"]) == (3, 4, 4)


def test_histogram_of_one_value_and_empty() -> None:
    h = Histogram(T0, rng())
    assert h.stats(T0) == [("count", 0)]  # no min/max/mean of nothing
    h.update(7, T0)
    stats = as_dict(h.stats(T0))
    assert stats["std"] == 0.0
    assert {stats[k] for k in ("min", "max", "mean", "median", "p999")} == {7}
    h.clear(T0)
    assert h.stats(T0) == [("count", 0)]


def test_histogram_emits_every_stat_in_order() -> None:
    h = Histogram(T0, rng())
    h.update(1, T0)
    labels = [label for label, _ in h.stats(T0)]
    assert labels == ["count", "min", "max", "mean", "std"] + [label for label, _ in PERCENTILES]


def test_reservoir_percentiles_of_uniform_data() -> None:
    source = random.Random(1)
    r = DecayingReservoir(T0, rng())
    # Over one minute the weights differ by at most exp(0.9): nearly a plain random sample.
    feed(r, [source.random() for _ in range(20_000)], T0, 60)
    assert len(r) == 1028
    snap = r.snapshot()
    assert snap is not None
    for q in (0.5, 0.75, 0.95, 0.98, 0.99):
        assert snap.quantile(q) == pytest.approx(q, abs=0.03)
    assert snap.mean() == pytest.approx(0.5, abs=0.03)
    assert snap.std() == pytest.approx(math.sqrt(1 / 12), abs=0.02)


def test_reservoir_percentiles_of_skewed_data() -> None:
    source = random.Random(2)
    r = DecayingReservoir(T0, rng())
    feed(r, [source.expovariate(1.0) for _ in range(20_000)], T0, 60)
    snap = r.snapshot()
    assert snap is not None
    for q, tolerance in ((0.5, 0.1), (0.75, 0.1), (0.95, 0.12), (0.99, 0.2)):
        assert snap.quantile(q) == pytest.approx(-math.log(1 - q), rel=tolerance)
    assert snap.mean() == pytest.approx(1.0, rel=0.1)


def test_reservoir_favours_recent_values() -> None:
    h = Histogram(T0, rng())
    feed(h, [1] * 20_000, T0, 1800)  # half an hour of 1s
    feed(h, [100] * 3_000, T0 + 1800, 300)  # then five minutes of 100s
    stats = as_dict(h.stats(T0 + 2100))
    assert stats["count"] == 23_000
    assert stats["median"] == 100
    assert stats["min"] == 1  # a few old values are still there, with little weight


def test_rescaling_changes_no_result() -> None:
    # Rescaling multiplies every weight and priority by the same factor: compared with a reservoir
    # that never rescales (fine for 90 minutes: exp(0.015 * 5400) is still finite), the kept values
    # and normalised weights are the same.
    source = random.Random(3)
    values = [source.gauss(50, 10) for _ in range(30_000)]
    rescaled = DecayingReservoir(T0, rng())
    plain = DecayingReservoir(T0, rng(), rescale_after=math.inf)
    feed(rescaled, values, T0, 5400)
    feed(plain, values, T0, 5400)
    assert rescaled.landmark == pytest.approx(T0 + RESCALE_AFTER, abs=1)
    assert plain.landmark == T0
    a, b = rescaled.snapshot(), plain.snapshot()
    assert a is not None and b is not None
    assert a.values == b.values
    assert a.weights == pytest.approx(b.weights, rel=1e-9)
    assert a.mean() == pytest.approx(b.mean(), rel=1e-9)


def test_a_day_of_updates_keeps_weights_finite_and_results_right() -> None:
    source = random.Random(4)
    h = Histogram(T0, rng())
    feed(h, [source.random() for _ in range(50_000)], T0, 86_400)
    weights = h.reservoir.weights()
    assert all(math.isfinite(w) and w > 0 for w in weights)
    assert max(weights) <= math.exp(0.015 * RESCALE_AFTER)
    stats = as_dict(h.stats(T0 + 86_400))
    assert all(math.isfinite(v) for v in stats.values())
    assert stats["median"] == pytest.approx(0.5, abs=0.06)


def test_values_older_than_the_weights_can_hold_are_dropped_at_rescale() -> None:
    h = Histogram(T0, rng())
    feed(h, list(range(100)), T0, 60)
    h.update(-5, T0 + 2 * 86_400)  # two idle days: old weights underflow to 0
    stats = as_dict(h.stats(T0 + 2 * 86_400))
    assert (stats["min"], stats["max"], stats["median"]) == (-5, -5, -5)
    assert stats["count"] == 101


def test_reservoir_clock_stepping_back_keeps_weights_sane() -> None:
    r = DecayingReservoir(T0, rng())
    feed(r, [1.0] * 100, T0, 100)
    feed(r, [2.0] * 100, T0 - 86_400, 100)  # a day back: treated as "now" for the reservoir
    assert all(math.isfinite(w) and w > 0 for w in r.weights())


def test_huge_values_never_give_non_finite_stats_to_the_table() -> None:
    counters: CountMap[str] = CountMap()
    table = _table(counters)
    for v in (1e308, 1.5e308, -1e308):
        table.apply(None, Record(Kind.HISTOGRAM, Action.UPDATE, "big", v), T0)
    samples = table.flush_all(T0)
    assert all(math.isfinite(s[2]) for s in samples)
    assert counters["dropped.not_finite"] >= 1  # std overflows


def test_timer_is_a_histogram_plus_a_meter_with_one_count() -> None:
    t = Timer(T0, rng())
    for d in (0.1, 0.2, 0.3):
        t.update(d, T0 + 1)
    stats = t.stats(T0 + 5)
    labels = [label for label, _ in stats]
    assert labels == [
        "count", "min", "max", "mean", "std", "median", "p75", "p95", "p98", "p99", "p999",
        "rate_mean", "rate_1m", "rate_5m", "rate_15m",
    ]  # fmt: skip
    got = as_dict(stats)
    assert got["count"] == 3
    assert got["mean"] == pytest.approx(0.2)
    assert got["rate_1m"] == pytest.approx(3 / 5)
    t.clear(T0 + 6)
    assert as_dict(t.stats(T0 + 6))["count"] == 0


# -- the table -------------------------------------------------------------------------------------


def _table(counters: CountMap[str] | None = None, **kwargs) -> MetricTable:  # type: ignore[no-untyped-def]
    options = {"default_interval": 10.0, "handlers": ()} | kwargs
    return MetricTable(rng=rng(), counters=CountMap() if counters is None else counters, **options)


def _update(table: MetricTable, kind: Kind, name: str, value: float, now: float, host=None) -> None:  # type: ignore[no-untyped-def]
    table.apply(host, Record(kind, Action.UPDATE, name, value), now)


def _names(samples: list) -> set[str]:
    return {s[1] for s in samples}


def test_samples_carry_host_stat_name_value_and_timestamp() -> None:
    table = _table()
    _update(table, Kind.COUNTER, "jobs", 3, T0 + 1, host="web1.example")
    _update(table, Kind.GAUGE, "temp", 21.5, T0 + 1)
    assert table.due(T0 + 1) == []
    assert table.due(T0 + 9.99) == []
    samples = table.due(T0 + 10.05)
    assert sorted(samples, key=str) == sorted(
        [("web1.example", "jobs.count", 3, int(T0 + 10)), (None, "temp.value", 21.5, int(T0 + 10))],
        key=str,
    )
    assert table.due(T0 + 10.1) == []  # once per interval
    assert len(table.due(T0 + 20)) == 2  # cumulative metrics are re-sent every interval


@pytest.mark.parametrize(
    ("kind", "suffixes"),
    [
        (Kind.COUNTER, {"count"}),
        (Kind.GAUGE, {"value"}),
        (Kind.HISTOGRAM, {"count", "min", "max", "mean", "std", "median", "p75", "p95", "p98",
                          "p99", "p999"}),
        (Kind.METER, {"count", "rate_mean", "rate_1m", "rate_5m", "rate_15m"}),
        (Kind.TIMER, {"count", "min", "max", "mean", "std", "median", "p75", "p95", "p98", "p99",
                      "p999", "rate_mean", "rate_1m", "rate_5m", "rate_15m"}),
    ],
)  # fmt: skip
def test_stat_names_per_kind(kind: Kind, suffixes: set[str]) -> None:
    table = _table()
    _update(table, kind, "svc.m", 1, T0)
    assert _names(table.flush_all(T0 + 1)) == {f"svc.m.{s}" for s in suffixes}


def test_handlers_choose_intervals_by_priority_then_order_with_match_semantics() -> None:
    handlers = (
        (re.compile(r"api\."), 60.0, 0),
        (re.compile(r"api\.slow"), 300.0, 0),  # shadowed: same priority, comes later
        (re.compile(r"api\.fast"), 1.0, 5),  # wins over the first by priority
        (re.compile(r"db"), 30.0, 0),
        (re.compile(r".*cache$"), 15.0, -1),
    )
    table = _table(handlers=handlers)
    assert table.interval_for("api.requests") == 60.0
    assert table.interval_for("api.slow.calls") == 60.0
    assert table.interval_for("api.fast.calls") == 1.0
    assert table.interval_for("db.queries") == 30.0
    assert table.interval_for("app.db.queries") == 10.0  # re.match: anchored at the start
    assert table.interval_for("app.cache") == 15.0
    assert table.interval_for("other") == 10.0


def test_each_interval_flushes_on_its_own_grid() -> None:
    table = _table(handlers=((re.compile("slow"), 60.0, 0),))
    _update(table, Kind.COUNTER, "slow.c", 1, T0 + 0.5)
    _update(table, Kind.COUNTER, "fast.c", 1, T0 + 0.5)
    flushed: dict[str, list[int]] = {"slow.c.count": [], "fast.c.count": []}
    now = T0 + 0.5
    while now < T0 + 125:
        for sample in table.due(now):
            flushed[sample[1]].append(sample[3] - int(T0))
        now += 0.1
    assert flushed["fast.c.count"] == list(range(10, 130, 10))
    assert flushed["slow.c.count"] == [60, 120]


def test_next_flush_time_is_on_the_grid() -> None:
    assert next_flush_time(T0, 10) == T0 + 10
    assert next_flush_time(T0 + 3.2, 10) == T0 + 10
    assert next_flush_time(T0 + 0.1, 0.5) == pytest.approx(T0 + 0.5)


def test_clock_stepping_back_keeps_the_schedule() -> None:
    table = _table()
    mono = 500.0  # the monotonic clock has its own origin
    table.apply(None, Record(Kind.GAUGE, Action.UPDATE, "g", 1), T0, mono)
    table.due(T0 + 1, mono + 1)
    assert len(table.due(T0 + 10, mono + 10)) == 1  # flushed; next at T0 + 20
    assert table.due(T0 - 3600 + 5, mono + 15) == []  # the wall clock went an hour back
    late = table.due(T0 - 3600 + 10.5, mono + 20.5)  # not silent for an hour
    assert [s[3] for s in late] == [int(T0) - 3600 + 10]  # stamped on the new wall clock
    assert table.clock_steps == 1


def test_idle_metrics_expire_and_active_ones_stay() -> None:
    counters: CountMap[str] = CountMap()
    table = _table(counters, expire_intervals=3)
    _update(table, Kind.COUNTER, "idle", 1, T0)
    for k in range(1, 8):
        _update(table, Kind.COUNTER, "busy", 1, T0 + 10 * k - 5)
        names = _names(table.due(T0 + 10 * k))
        assert ("idle.count" in names) == (k <= 3)
    assert len(table) == 1
    assert counters["metrics_expired"] == 1
    _update(table, Kind.COUNTER, "idle", 1, T0 + 75)  # comes back from zero
    assert "idle.count" in _names(table.due(T0 + 80))


def test_cap_on_live_metrics_drops_new_ones_and_counts() -> None:
    counters: CountMap[str] = CountMap()
    table = _table(counters, max_metrics=3)
    for i in range(5):
        _update(table, Kind.COUNTER, f"c{i}", 1, T0)
    _update(table, Kind.COUNTER, "c0", 1, T0)  # existing ones keep working
    assert len(table) == 3
    assert counters["dropped.max_metrics"] == 2
    assert ("c0.count" in _names(table.flush_all(T0))) and counters["updates"] == 4
    table.apply(None, Record(Kind.COUNTER, Action.DELETE, "c1"), T0)
    _update(table, Kind.COUNTER, "c4", 1, T0)  # room again
    assert len(table) == 3 and counters["dropped.max_metrics"] == 2


def test_state_is_per_host_and_name_and_kind_mismatch_is_dropped() -> None:
    counters: CountMap[str] = CountMap()
    table = _table(counters)
    _update(table, Kind.COUNTER, "x", 1, T0, host="a")
    _update(table, Kind.COUNTER, "x", 5, T0, host="b")
    _update(table, Kind.GAUGE, "x", 9, T0, host="a")  # same name, other kind
    table.apply("a", Record(Kind.GAUGE, Action.CLEAR, "x"), T0)
    table.apply("a", Record(Kind.GAUGE, Action.DELETE, "x"), T0)
    assert sorted(table.flush_all(T0)) == [
        ("a", "x.count", 1, int(T0)),
        ("b", "x.count", 5, int(T0)),
    ]
    assert counters["dropped.kind_mismatch"] == 3


def test_clear_resets_and_delete_removes() -> None:
    counters: CountMap[str] = CountMap()
    table = _table(counters)
    _update(table, Kind.COUNTER, "c", 4, T0)
    table.apply(None, Record(Kind.COUNTER, Action.CLEAR, "c"), T0)
    assert table.flush_all(T0) == [(None, "c.count", 0, int(T0))]
    table.apply(None, Record(Kind.COUNTER, Action.DELETE, "c"), T0)
    assert table.flush_all(T0) == []
    table.apply(None, Record(Kind.COUNTER, Action.DELETE, "c"), T0)
    table.apply(None, Record(Kind.METER, Action.CLEAR, "never"), T0)
    assert counters["dropped.unknown_metric"] == 2
    assert (counters["clears"], counters["deletes"]) == (1, 1)
    assert len(table) == 0


def test_export_pickles_and_adopt_applies_new_handlers() -> None:
    old = _table()
    _update(old, Kind.TIMER, "api.t", 0.5, T0)
    _update(old, Kind.COUNTER, "c", 2, T0, host="h")
    carried = pickle.loads(pickle.dumps(old.export()))
    new = _table(handlers=((re.compile("api"), 60.0, 0),), max_metrics=10)
    new.adopt(carried)
    assert new.interval_for("api.t") == 60.0
    assert new.due(T0 + 5) == []  # adopted metrics go on the grid at the first tick
    names_at_10 = _names(new.due(T0 + 10))
    assert names_at_10 == {"c.count"}
    assert "api.t.count" in _names(new.due(T0 + 60))
    _update(new, Kind.TIMER, "api.t", 1.5, T0 + 61)
    assert as_dict([(s[1], s[2]) for s in new.flush_all(T0 + 62)])["api.t.count"] == 2


def test_table_rejects_a_non_positive_interval() -> None:
    with pytest.raises(ValueError):
        _table(default_interval=0.0)
    with pytest.raises(ValueError):
        _table(handlers=((re.compile("x"), -1.0, 0),))


def test_aggregate_does_no_io() -> None:
    import ast
    from pathlib import Path

    import bucky.aggregate.metricsd as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert not imported & {"socket", "logging", "multiprocessing", "time", "select", "asyncio"}
