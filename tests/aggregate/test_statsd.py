"""StatsD aggregation with an injected clock: every statistic, names, idle rules, TTL, key cap."""

from __future__ import annotations

import math
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bucky.aggregate.statsd import (
    StatsdAggregator,
    StatsdSettings,
    js_number_text,
    js_round,
)
from bucky.config import make_config
from bucky.protocol.statsd import Kind, StatsdMetric

T0 = 1_000_000.0  # a grid point for flush_time 10


def make_cfg(**overrides: Any) -> Any:
    return make_config(**overrides)


def aggregator(**settings: Any) -> StatsdAggregator:
    agg = StatsdAggregator(StatsdSettings(**settings))
    assert agg.tick(T0) == []  # the first call starts the grid
    return agg


def feed(agg: StatsdAggregator, text: str, now: float = T0 + 1) -> None:
    agg.ingest(text.encode(), now)


def flush(agg: StatsdAggregator, now: float = T0 + 10) -> dict[str, float]:
    samples = agg.tick(now)
    names = [name for _, name, _, _ in samples]
    assert len(names) == len(set(names)), "duplicate names in one flush"
    for host, _, value, timestamp in samples:
        assert host is None
        assert type(timestamp) is int
        assert type(value) in (int, float) and math.isfinite(value)
    return {name: value for _, name, value, _ in samples}


def user(stats: dict[str, float]) -> dict[str, float]:
    """Without the reference's own statistics."""
    return {
        k: v
        for k, v in stats.items()
        if ".statsd." not in k and not k.startswith("statsd.") and "numStats" not in k
    }


# --- counters ----------------------------------------------------------------------------------


def test_counter_rate_and_count_with_sample_rates() -> None:
    agg = aggregator()
    feed(agg, "a:1|c\na:2|c|@0.5\na:3|c:1|c|@0.25\nb:-2.5|c")
    assert user(flush(agg)) == {
        "stats.a": 1.2,  # (1 + 2/0.5 + 3 + 1/0.25) / 10 s
        "stats_counts.a": 12.0,
        "stats.b": -0.25,
        "stats_counts.b": -2.5,
    }


def test_counters_new_namespace_and_prefixes() -> None:
    agg = aggregator(legacy_namespace=False)
    feed(agg, "a:5|c")
    assert user(flush(agg)) == {"stats.counters.a.rate": 0.5, "stats.counters.a.count": 5.0}
    agg = aggregator(legacy_namespace=False, global_prefix="", prefix_counter=None)
    feed(agg, "a:5|c")
    assert user(flush(agg)) == {"a.rate": 0.5, "a.count": 5.0}


# --- timers ------------------------------------------------------------------------------------

TEN = "\n".join(f"t:{v}|ms" for v in (7, 3, 10, 1, 9, 2, 8, 6, 4, 5))


def test_timer_all_statistics_and_percentiles() -> None:
    agg = aggregator(percentile_thresholds=(90, 99.9, -10))
    feed(agg, TEN)
    got = user(flush(agg))
    expected = {
        # 90: round(0.9 * 10) = 9 lowest values
        "count_90": 9, "mean_90": 5.0, "upper_90": 10 - 1.0, "sum_90": 45.0,
        "sum_squares_90": 285.0,
        # 99.9: round(9.99) = 10, named 99_9
        "count_99_9": 10, "mean_99_9": 5.5, "upper_99_9": 10.0, "sum_99_9": 55.0,
        "sum_squares_99_9": 385.0,
        # -10: the top round(1.0) = 1 value; its lower bound
        "count_top10": 1, "mean_top10": 10.0, "lower_top10": 10.0, "sum_top10": 10.0,
        "sum_squares_top10": 100.0,
        "mean": 5.5, "upper": 10.0, "lower": 1.0, "count": 10.0, "count_ps": 1.0, "sum": 55.0,
        "sum_squares": 385.0, "median": 5.5, "std": math.sqrt(8.25),
    }  # fmt: skip
    assert got == {f"stats.timers.t.{k}": v for k, v in expected.items()}


def test_timer_odd_median_single_value_and_skipped_percentile() -> None:
    agg = aggregator(percentile_thresholds=(90, -10))
    feed(agg, "o:1|ms\no:5|ms\no:3|ms\none:4|ms\ntwo:1|ms\ntwo:2|ms")
    got = user(flush(agg))
    assert got["stats.timers.o.median"] == 3.0
    # one value: every percentile is that value (the reference's count == 1 rule)
    assert got["stats.timers.one.upper_90"] == 4.0
    assert got["stats.timers.one.lower_top10"] == 4.0
    assert got["stats.timers.one.count_top10"] == 1
    assert got["stats.timers.one.std"] == 0.0
    # two values, -10: round(0.2) = 0 values, so no top10 statistics at all
    assert "stats.timers.two.count_top10" not in got
    assert got["stats.timers.two.count_90"] == 2


def test_timer_top_percentile_covering_every_value() -> None:
    # The reference reads an index of -1 here and emits NaN; we emit the right numbers.
    agg = aggregator(percentile_thresholds=(-100,))
    feed(agg, "t:1|ms\nt:2|ms\nt:3|ms")
    got = user(flush(agg))
    assert got["stats.timers.t.sum_top100"] == 6.0
    assert got["stats.timers.t.lower_top100"] == 1.0


def test_timer_sample_rate_scales_count_only() -> None:
    agg = aggregator()
    feed(agg, "t:10|ms|@0.5\nt:20|ms|@0.5\nt:30|ms|@0.25\nh:1|h|@0.1\nd:2|d")
    got = user(flush(agg))
    assert got["stats.timers.t.count"] == 8.0
    assert got["stats.timers.t.count_ps"] == 0.8
    assert got["stats.timers.t.mean"] == 20.0
    assert got["stats.timers.t.count_90"] == 3  # values, not the scaled count
    assert got["stats.timers.h.count"] == 10.0  # h and d are timings
    assert got["stats.timers.d.sum"] == 2.0


def test_timer_statistics_can_be_switched_off() -> None:
    agg = aggregator(
        percentile_thresholds=(90, -10), timer_stats=frozenset({"upper", "count", "median"})
    )
    feed(agg, TEN)
    got = user(flush(agg))
    assert set(got) == {
        f"stats.timers.t.{s}"
        for s in ("upper", "count", "median", "upper_90", "count_90", "count_top10")
    }


def test_histogram_bins_as_the_reference() -> None:
    bins = (
        ("nothing", ()),  # an empty list excludes matching metrics (first match wins)
        ("lat", (2.0, 5.0, math.inf)),
        ("", (0.5, 3.0)),
    )
    agg = aggregator(histogram=bins, percentile_thresholds=())
    feed(agg, TEN.replace("t:", "app.lat:") + "\n" + TEN.replace("t:", "x:"))
    feed(agg, "nothing.lat:1|ms")
    got = user(flush(agg))
    hist = {k: v for k, v in got.items() if ".histogram." in k}
    assert hist == {
        "stats.timers.app.lat.histogram.bin_2": 1,
        "stats.timers.app.lat.histogram.bin_5": 3,
        "stats.timers.app.lat.histogram.bin_inf": 6,
        "stats.timers.x.histogram.bin_0_5": 0,
        "stats.timers.x.histogram.bin_3": 2,  # values >= the last bound are not counted
    }


# --- gauges and sets ---------------------------------------------------------------------------


def test_gauge_deltas_on_new_and_existing_gauges_persist_across_flushes() -> None:
    agg = aggregator()
    feed(agg, "up:+5|g\ndown:-7|g\nset:10|g\nset:-3|g\nset:+1.5|g")
    assert user(flush(agg)) == {
        "stats.gauges.up": 5.0,
        "stats.gauges.down": -7.0,  # a signed value on a new gauge: starts from 0
        "stats.gauges.set": 8.5,  # 10 - 3 + 1.5
    }
    feed(agg, "up:-1|g\nset:4|g", now=T0 + 11)
    assert user(flush(agg, T0 + 20)) == {
        "stats.gauges.up": 4.0,
        "stats.gauges.down": -7.0,
        "stats.gauges.set": 4.0,
    }


def test_sets_count_distinct_members_per_interval() -> None:
    agg = aggregator(legacy_namespace=False)
    feed(agg, "u:alice|s\nu:bob|s\nu:alice|s\nu:|s\nu:0|s")
    assert user(flush(agg)) == {"stats.sets.u.count": 3}
    assert user(flush(agg, T0 + 20)) == {"stats.sets.u.count": 0}  # kept, emptied


# --- idle statistics (Bucky 2 rules through the config) ----------------------------------------


def from_cfg(**options: Any) -> StatsdAggregator:
    agg = StatsdAggregator(StatsdSettings.from_config(make_cfg(**options)))
    agg.tick(T0)
    return agg


IDLE_INPUT = "c:1|c\nt:1|ms\ns:x|s\ng:1|g\ng2:1|g"


def test_without_delete_idlestats_idle_stats_are_sent_as_zero() -> None:
    agg = from_cfg()  # statsd_delete_* are true but only act with statsd_delete_idlestats
    feed(agg, IDLE_INPUT)
    flush(agg)
    feed(agg, "g:2|g", now=T0 + 12)
    got = user(flush(agg, T0 + 20))
    assert got == {
        "stats.c": 0.0,
        "stats_counts.c": 0.0,
        "stats.timers.t.count": 0,
        "stats.timers.t.count_ps": 0,
        "stats.sets.s.count": 0,
        "stats.gauges.g": 2.0,
        "stats.gauges.g2": 1.0,
    }


def test_delete_idlestats_deletes_idle_stats_and_sends_only_changed_gauges() -> None:
    agg = from_cfg(statsd_delete_idlestats=True)
    feed(agg, IDLE_INPUT)
    assert len(user(flush(agg))) == 2 + 14 + 1 + 2  # everything was updated
    feed(agg, "g:2|g", now=T0 + 12)
    assert user(flush(agg, T0 + 20)) == {"stats.gauges.g": 2.0}


def test_delete_idlestats_with_per_type_exceptions() -> None:
    agg = from_cfg(
        statsd_delete_idlestats=True,
        statsd_delete_counters=False,
        statsd_onlychanged_gauges=False,
    )
    feed(agg, IDLE_INPUT)
    flush(agg)
    assert user(flush(agg, T0 + 20)) == {
        "stats.c": 0.0,
        "stats_counts.c": 0.0,
        "stats.gauges.g": 1.0,
        "stats.gauges.g2": 1.0,
    }


def test_gauges_expire_after_their_ttl() -> None:
    agg = aggregator(gauges_max_ttl=25.0)
    feed(agg, "old:1|g\nfresh:1|g", now=T0 + 1)
    assert set(user(flush(agg))) == {"stats.gauges.old", "stats.gauges.fresh"}
    feed(agg, "fresh:2|g", now=T0 + 21)
    assert set(user(flush(agg, T0 + 20))) == {"stats.gauges.old", "stats.gauges.fresh"}
    assert set(user(flush(agg, T0 + 30))) == {"stats.gauges.fresh"}  # old: idle 29 s > 25 s
    assert agg.counts()["gauges_expired"] == 1
    feed(agg, "old:+3|g", now=T0 + 31)  # a delta on an expired gauge starts from nothing
    assert user(flush(agg, T0 + 40))["stats.gauges.old"] == 3.0


def test_max_keys_drops_new_keys_and_counts_them() -> None:
    agg = aggregator(max_keys=3, delete_counters=True)
    feed(agg, "a:1|c\nb:1|ms\nc:1|g\nd:1|s\ne:1|c\na:2|c\nc:+1|g")
    got = user(flush(agg))
    assert got == {
        "stats.a": 0.3,
        "stats_counts.a": 3.0,
        "stats.timers.b.count": 1.0,
        "stats.timers.b.count_ps": 0.1,
        "stats.timers.b.upper_90": 1.0,
        "stats.timers.b.mean_90": 1.0,
        "stats.timers.b.sum_90": 1.0,
        "stats.timers.b.sum_squares_90": 1.0,
        "stats.timers.b.count_90": 1,
        "stats.timers.b.std": 0.0,
        "stats.timers.b.upper": 1.0,
        "stats.timers.b.lower": 1.0,
        "stats.timers.b.sum": 1.0,
        "stats.timers.b.sum_squares": 1.0,
        "stats.timers.b.mean": 1.0,
        "stats.timers.b.median": 1.0,
        "stats.gauges.c": 2.0,
    }
    assert agg.counts()["dropped.max_keys"] == 2
    feed(agg, "e:1|c", now=T0 + 11)  # counter "a" was deleted at the flush: room again
    assert "stats_counts.e" in flush(agg, T0 + 20)


# --- tags and names ----------------------------------------------------------------------------


def test_tags_are_part_of_the_key_and_metadata_is_added() -> None:
    agg = aggregator(keep_tags=True, metadata=(("env", "prod"), ("dc", None)))
    feed(agg, "a:1|c|#k:v\na:1|c|#k:w\na:1|c\na:1|c|#env:test\ng:1|g|#k:v")
    got = flush(agg)
    assert {k: v for k, v in got.items() if k.startswith("stats_counts.a")} == {
        "stats_counts.a;dc=true;env=prod;k=v": 1.0,
        "stats_counts.a;dc=true;env=prod;k=w": 1.0,
        "stats_counts.a;dc=true;env=prod": 1.0,
        "stats_counts.a;dc=true;env=test": 1.0,  # the metric's own tag wins
    }
    assert "stats.gauges.g;dc=true;env=prod;k=v" in got
    assert "statsd.numStats;dc=true;env=prod" in got


def test_tags_dropped_merge_series() -> None:
    agg = StatsdAggregator(
        StatsdSettings.from_config(make_cfg(statsd_tags="drop", statsd_metadata={"env": "x"}))
    )
    agg.tick(T0)
    feed(agg, "a:1|c|#k:v\na;z=1:1|c|#k:w\na:1|c")
    assert user(flush(agg)) == {"stats.a": 0.3, "stats_counts.a": 3.0}


def test_default_config_writes_bucky2_names_with_tag_sets_summed() -> None:
    """README "Upgrading from Bucky 2": without statsd_tags, tags never reach Graphite names."""
    cfg = make_cfg(statsd_metadata={"env": "x"})
    assert cfg.statsd_tags == "drop"
    agg = StatsdAggregator(StatsdSettings.from_config(cfg))
    agg.tick(T0)
    feed(agg, "hits:2|c|#env:prod,region:eu\nhits:1|c|#env:dev\nhits:4|c\n"
              "lat:10|ms|#k:v\nlat:30|ms|#k:w\ntemp:21.5|g|#room:a\nusers:u1|s|#a:b\n"
              "users:u2|s")
    got = user(flush(agg))
    assert got["stats_counts.hits"] == 7.0 and got["stats.hits"] == 0.7
    assert got["stats.timers.lat.count"] == 2 and got["stats.timers.lat.mean"] == 20.0
    assert got["stats.gauges.temp"] == 21.5
    assert got["stats.sets.users.count"] == 2
    assert not [name for name in got if ";" in name]


def test_statsd_tags_graphite_keeps_tag_sets_apart() -> None:
    agg = StatsdAggregator(StatsdSettings.from_config(make_cfg(statsd_tags="graphite")))
    agg.tick(T0)
    feed(agg, "hits:2|c|#env:prod\nhits:1|c|#env:dev\nhits:4|c")
    got = user(flush(agg))
    assert {k: v for k, v in got.items() if k.startswith("stats_counts.")} == {
        "stats_counts.hits;env=prod": 2.0, "stats_counts.hits;env=dev": 1.0,
        "stats_counts.hits": 4.0,
    }


@pytest.mark.parametrize("legacy", [True, False])
def test_names_of_every_kind_and_of_the_own_statistics(legacy: bool) -> None:
    agg = aggregator(legacy_namespace=legacy, percentile_thresholds=())
    feed(agg, "c:1|c\nt:1|ms\ng:1|g\ns:1|s\nbad line")
    first = set(flush(agg))
    feed(agg, "c:1|c", now=T0 + 11)
    second = flush(agg, T0 + 20)
    t = [f"t.{s}" for s in ("mean", "upper", "lower", "count", "count_ps", "sum")] + [
        f"t.{s}" for s in ("sum_squares", "median", "std")
    ]
    if legacy:
        expected = (
            {"stats.c", "stats_counts.c", "stats.gauges.g", "stats.sets.s.count"}
            | {f"stats.timers.{x}" for x in t}
            | {f"stats.statsd.{x}" for x in ("bad_lines_seen", "packets_received")}
            | {f"stats_counts.statsd.{x}" for x in ("bad_lines_seen", "packets_received")}
            | {"stats.statsd.metrics_received", "stats_counts.statsd.metrics_received"}
            | {"statsd.numStats"}
        )
        lag = "stats.gauges.statsd.timestamp_lag"
    else:
        own = ("bad_lines_seen", "packets_received", "metrics_received")
        expected = (
            {"stats.counters.c.rate", "stats.counters.c.count", "stats.gauges.g"}
            | {"stats.sets.s.count"}
            | {f"stats.timers.{x}" for x in t}
            | {f"stats.counters.statsd.{x}.{r}" for x in own for r in ("rate", "count")}
            | {"stats.statsd.numStats"}
        )
        lag = "stats.gauges.statsd.timestamp_lag"
    assert first == expected
    idle_timer = {f"stats.timers.t.{s}" for s in ("count", "count_ps")}
    assert set(second) == {n for n in expected if ".timers." not in n} | idle_timer | {lag}
    assert second[lag] == 0.0
    numstats = "statsd.numStats" if legacy else "stats.statsd.numStats"
    assert second[numstats] == 3 + 4 + 1  # own counters + c t g s + timestamp_lag
    count = "statsd.bad_lines_seen"
    count = f"stats_counts.{count}" if legacy else f"stats.counters.{count}.count"
    assert flush(agg, T0 + 30)[count] == 0
    assert agg.self_sample("processing_time", 1.5, 7) == (
        None,
        "stats.statsd.processing_time",
        1.5,
        7,
    )


def test_own_statistics_count_packets_lines_and_bad_lines() -> None:
    agg = aggregator()
    feed(agg, "a:1|c\n\nbad\nx:1|zz:2|c")
    feed(agg, "_e{1,1}:a|b")
    got = flush(agg)
    assert got["stats_counts.statsd.packets_received"] == 2
    assert got["stats_counts.statsd.metrics_received"] == 4  # blank lines are not metrics
    assert got["stats_counts.statsd.bad_lines_seen"] == 2
    counts = agg.counts()
    assert counts["bad_lines.no-value"] == 1 and counts["bad_lines.bad-type"] == 1
    assert counts["events"] == 1


# --- time --------------------------------------------------------------------------------------


def test_flushes_sit_on_the_grid_without_drift() -> None:
    agg = StatsdAggregator(StatsdSettings(flush_time=10.0))
    assert agg.tick(T0 + 3.2) == [] and agg.next_flush == T0 + 10
    feed(agg, "a:1|c", now=T0 + 4)
    assert agg.tick(T0 + 9.999) == []
    assert {s[3] for s in agg.tick(T0 + 10.04)} == {int(T0) + 10}
    stamps = []
    now = T0 + 10.04
    for _ in range(1000):  # ticks that arrive a little late each time never shift the grid
        now += 10.0007
        stamps.append({s[3] for s in agg.tick(now)})
    assert stamps[-1] == {int(T0) + 10 * 1001}
    late = agg.tick(now + 35)  # a stalled loop: one flush, the missed intervals are skipped
    assert {s[3] for s in late} == {int(T0) + 10 * 1002}
    assert agg.next_flush == int(T0) + 10 * 1005


def test_fractional_flush_time_gives_integer_timestamps() -> None:
    agg = StatsdAggregator(StatsdSettings(flush_time=2.5))
    agg.tick(T0 + 0.1)
    feed(agg, "a:4|c", now=T0 + 0.2)
    samples = agg.tick(T0 + 2.5)
    assert {s[3] for s in samples} == {int(T0) + 2}
    assert dict((s[1], s[2]) for s in samples)["stats.a"] == 1.6


def test_final_flush_sends_the_partial_interval_stamped_at_its_end() -> None:
    agg = aggregator()
    feed(agg, "a:1|c\ng:5|g", now=T0 + 12)
    flush(agg)
    feed(agg, "a:2|c", now=T0 + 13)
    final = agg.flush(T0 + 14)
    assert {s[3] for s in final} == {int(T0) + 20}
    got = {name: value for _, name, value, _ in final}
    assert got["stats_counts.a"] == 2.0
    assert "stats.gauges.statsd.timestamp_lag" not in got
    assert agg.flush(T0 + 15) == []  # nothing new since


def test_final_flush_when_overdue_sends_only_the_due_interval() -> None:
    agg = aggregator()
    feed(agg, "a:1|c")
    final = agg.flush(T0 + 10.5)
    assert {s[3] for s in final} == {int(T0) + 10}


def test_non_finite_results_are_never_emitted() -> None:
    agg = aggregator()
    feed(agg, "big:1e308|c\nbig:1e308|c\nsq:1e200|ms\ng:1e308|g\ng:+1e308|g\nok:1|c")
    got = flush(agg)  # flush() asserts every value is finite
    assert "stats_counts.ok" in got and "stats_counts.big" not in got
    assert "stats.timers.sq.upper" in got and "stats.timers.sq.sum_squares" not in got
    assert "stats.gauges.g" not in got
    assert agg.counts()["dropped.not_finite"] >= 4


def test_add_records_and_export_import_state() -> None:
    agg = aggregator(percentile_thresholds=())
    agg.add(StatsdMetric("a b", 2.0, Kind.COUNTER, 0.5, (("k", "v"),), None), T0 + 1)
    agg.add(StatsdMetric("g", 3.0, Kind.GAUGE, 1.0, (), None), T0 + 1)
    agg.add(StatsdMetric("g", -1.0, Kind.GAUGE_DELTA, 1.0, (), None), T0 + 1)
    agg.add(StatsdMetric("s", "m", Kind.SET, 1.0, (), None), T0 + 1)
    agg.add(StatsdMetric("t", 4.0, Kind.DISTRIBUTION, 1.0, (), None), T0 + 1)
    state = pickle.loads(pickle.dumps(agg.export_state()))

    same = StatsdAggregator(StatsdSettings(percentile_thresholds=()))
    same.import_state(state)
    assert flush(same) == flush(agg)

    untagged = StatsdAggregator(StatsdSettings(keep_tags=False, flush_time=5.0))
    untagged.import_state(state)
    assert untagged.tick(T0 + 1) == []  # another flush time: the grid restarts
    got = user(flush(untagged, T0 + 5))
    assert got["stats_counts.a_b"] == 4.0
    assert got["stats.gauges.g"] == 2.0
    assert got["stats.sets.s.count"] == 1


def test_restored_gauges_are_sent_once_even_when_only_changed_gauges_are() -> None:
    agg = aggregator(onlychanged_gauges=True, keep_tags=True)
    assert agg.restore_gauges({"a": (1.5, None), "b;k=v": (2.0, T0 - 5)}, T0) == 2
    assert user(flush(agg)) == {"stats.gauges.a": 1.5, "stats.gauges.b;k=v": 2.0}
    assert user(flush(agg, T0 + 20)) == {}
    assert agg.gauges_snapshot() == {"a": (1.5, T0), "b;k=v": (2.0, T0 - 5)}


def test_reference_number_helpers() -> None:
    assert [js_number_text(x) for x in (90, 90.0, 99.9, -10, 0.00001, math.inf)] == [
        "90",
        "90",
        "99.9",
        "-10",
        "0.00001",
        "inf",
    ]
    assert [js_round(x) for x in (0.5, 1.5, 2.5, 0.49999999999999994, 9.99)] == [1, 2, 3, 0, 10]


def test_the_aggregator_reads_no_clock_and_does_no_io() -> None:
    import ast
    from pathlib import Path

    import bucky.aggregate.statsd as module

    tree = ast.parse(Path(module.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m.split(".")[0] for m in names} & {"socket", "logging", "time", "os", "threading"}


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["c", "ms"]),
            st.integers(min_value=0, max_value=10_000),
            st.sampled_from(["", "|@0.5", "|@0.25", "|@1"]),
        ),
        min_size=1,
        max_size=60,
    ),
    st.lists(st.sampled_from([50, 90, 99.9, -10, -50, 100, -100]), max_size=4, unique=True),
)
def test_aggregates_are_consistent(
    lines: list[tuple[str, int, str]], percentiles: list[float]
) -> None:
    agg = aggregator(percentile_thresholds=tuple(percentiles), legacy_namespace=False)
    feed(agg, "\n".join(f"x:{v}|{t}{r}" for t, v, r in lines))
    got = user(flush(agg))
    rate = {"": 1.0, "|@0.5": 0.5, "|@0.25": 0.25, "|@1": 1.0}
    counted = [(v, rate[r]) for t, v, r in lines if t == "c"]
    timed = sorted(v for t, v, _ in lines if t == "ms")
    if counted:
        assert got["stats.counters.x.count"] == pytest.approx(sum(v / r for v, r in counted))
        assert got["stats.counters.x.rate"] == pytest.approx(got["stats.counters.x.count"] / 10)
    if timed:
        t = {k.removeprefix("stats.timers.x."): v for k, v in got.items() if ".timers." in k}
        weights = sum(1 / rate[r] for kind, _, r in lines if kind == "ms")
        assert t["count"] == pytest.approx(weights)
        assert (t["lower"], t["upper"], t["sum"]) == (timed[0], timed[-1], sum(timed))
        assert t["lower"] <= t["median"] <= t["upper"]
        assert t["lower"] - 1e-9 <= t["mean"] <= t["upper"] + 1e-9
        for pct in percentiles:
            clean = js_number_text(pct).replace(".", "_").replace("-", "top")
            if f"count_{clean}" not in t:
                assert len(timed) > 1 and js_round(abs(pct) / 100 * len(timed)) == 0
                continue
            n = t[f"count_{clean}"]
            part = timed[:n] if pct > 0 else timed[len(timed) - n :]
            assert t[f"sum_{clean}"] == pytest.approx(sum(part))
            bound = f"upper_{clean}" if pct > 0 else f"lower_{clean}"
            assert t[bound] == (part[-1] if pct > 0 else part[0])
