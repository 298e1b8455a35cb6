"""Rates, wraps, bounds, type checks and expiry of bucky.aggregate.collectd (no I/O, no clock)."""

from __future__ import annotations

import math
import pickle
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bucky.aggregate.collectd import CollectdAggregator, counter_increase
from bucky.aggregate.collectd_names import build_converter_table
from bucky.protocol.collectd_records import ABSOLUTE, COUNTER, DERIVE, GAUGE, ValueList

U64 = (1 << 64) - 1


class DataSource(NamedTuple):  # the shape of bucky.protocol.typesdb.DataSource
    name: str
    ds_type: int
    min: float | None
    max: float | None


class DataSet(NamedTuple):
    name: str
    sources: tuple[DataSource, ...]


def dataset(name: str, *sources: tuple[str, int, float | None, float | None]) -> DataSet:
    return DataSet(name, tuple(DataSource(*s) for s in sources))


DATASETS = {
    ds.name: ds
    for ds in (
        dataset("gauge", ("value", GAUGE, None, None)),
        dataset("counter", ("value", COUNTER, None, None)),
        dataset("derive", ("value", DERIVE, None, None)),
        dataset("absolute", ("value", ABSOLUTE, None, None)),
        dataset("percent", ("value", GAUGE, 0, 100.1)),
        dataset("bounded_counter", ("value", COUNTER, 3, 8)),
        dataset("counter_max", ("value", COUNTER, 0, 1e6)),
        dataset("counter_max2", ("a", COUNTER, 0, 1e6), ("b", COUNTER, 0, 1e6)),
        dataset("if_octets", ("rx", DERIVE, 0, None), ("tx", DERIVE, 0, None)),
        dataset("mysql_threads", ("running", GAUGE, 0, None), ("created", COUNTER, 0, None)),
        dataset("bounded_gauge", ("value", GAUGE, -5, 5)),
        dataset("bounded_derive", ("value", DERIVE, -5, 5)),
        *(dataset(name + "2", ("a", kind, lo, hi), ("b", kind, lo, hi)) for name, kind, lo, hi in (
            ("gauge", GAUGE, None, None), ("counter", COUNTER, None, None),
            ("derive", DERIVE, None, None), ("absolute", ABSOLUTE, None, None),
            ("bounded_gauge", GAUGE, -5, 5), ("bounded_derive", DERIVE, -5, 5))),
    )
}


def make(counter_eq_derive: bool = False, ttl_intervals: float = 4) -> CollectdAggregator:
    table = build_converter_table(None, use_entry_points=False)
    return CollectdAggregator(
        DATASETS, table, counter_eq_derive=counter_eq_derive, ttl_intervals=ttl_intervals
    )


def vl(type_: str, t: float, *values: tuple[int, float | int], host: str = "h",
       pi: str = "", ti: str = "", interval: float = 10.0, plugin: str = "p") -> ValueList:
    return ValueList(host, plugin, pi, type_, ti, t, interval, tuple(values))


def feed(agg: CollectdAggregator, type_: str, kind: int, points, **kw) -> list:
    """Feed (time, value) points of one single-DS series; every emitted value, in order."""
    out = []
    for t, v in points:
        out.extend(s[2] for s in agg.process([vl(type_, t, (kind, v), **kw)], now=t))
    return out


# -- every DS type --------------------------------------------------------------------------------

def test_gauge_passes_through_from_the_first_value():
    agg = make()
    samples = agg.process([vl("gauge", 1700000000.75, (GAUGE, 26.75), pi="sys")], now=0.0)
    assert samples == [("h", "p.sys.gauge", 26.75, 1700000000)]
    assert type(samples[0]) is tuple


def test_derive_is_signed_difference_over_time():
    agg = make()
    assert feed(agg, "derive", DERIVE, [(100, -10), (101, -3), (103, -13)]) == [7.0, -5.0]
    assert agg.counters["primed"] == 1


def test_counter_is_increase_over_time():
    assert feed(make(), "counter", COUNTER, [(10, 1000), (20, 3000), (30, 3000)]) == [200.0, 0.0]


def test_absolute_is_value_over_elapsed_time():
    assert feed(make(), "absolute", ABSOLUTE, [(0, 99), (2, 10), (6, 0)]) == [5.0, 0.0]


def test_absolute_huge_values_stay_exact_enough():
    out = feed(make(), "absolute", ABSOLUTE, [(0, U64), (1, 0), (2, 1 << 63), (3, 12345)])
    assert out == [0.0, 9.223372036854776e18, 12345.0]


def test_multi_value_mixed_types_share_the_time():
    agg = make()
    first = agg.process([vl("mysql_threads", 10, (GAUGE, 2.0), (COUNTER, 176))], now=10)
    second = agg.process([vl("mysql_threads", 12, (GAUGE, 3.0), (COUNTER, 180))], now=12)
    assert [s[1:3] for s in first] == [("p.mysql_threads.running", 2.0)]
    assert [s[1:3] for s in second] == [
        ("p.mysql_threads.running", 3.0), ("p.mysql_threads.created", 2.0)]


def test_series_are_keyed_by_full_identifier():
    agg = make()
    for host in ("a", "b"):
        agg.process([vl("counter", 10, (COUNTER, 100), host=host, ti="x")], now=10)
    out = agg.process([vl("counter", 20, (COUNTER, 200), host="a", ti="x"),
                       vl("counter", 20, (COUNTER, 600), host="b", ti="x"),
                       vl("counter", 20, (COUNTER, 5), host="a", ti="other")], now=20)
    assert [(s[0], s[2]) for s in out] == [("a", 10.0), ("b", 50.0)]


# -- wraps and resets -----------------------------------------------------------------------------

def test_counter_32bit_wrap():
    out = feed(make(), "counter", COUNTER, [(0, 4294967288), (1, 4294967290), (2, 0), (3, 8)])
    assert out == [2.0, 6.0, 8.0]


def test_counter_64bit_wrap_from_max_is_a_real_wrap():
    out = feed(make(), "counter", COUNTER, [(0, U64), (1, 1), (3, 31)])
    assert out == [2.0, 15.0]


def test_counter_64bit_wrap_near_the_top():
    assert feed(make(), "counter", COUNTER, [(0, U64 - 999), (10, 1000)]) == [200.0]


def test_counter_absurd_drop_reprimes_instead_of_a_spike():
    agg = make()
    out = feed(agg, "counter", COUNTER, [(0, 5_000_000_000), (10, 12), (20, 112)])
    assert out == [10.0]
    assert agg.counters["dropped.counter_reset"] == 1


def test_counter_small_32bit_drop_is_a_reset():
    agg = make()
    assert feed(agg, "counter", COUNTER, [(0, 100), (1, 12), (2, 15)]) == [3.0]
    assert agg.counters["dropped.counter_reset"] == 1


def test_counter_increase_rule_edges():
    half32, half64 = 1 << 31, 1 << 63
    assert counter_increase(5, 7) == 2
    assert counter_increase((1 << 32) - 1, 0) == 1
    assert counter_increase((1 << 32) - 1 - half32 + 1, 0) == half32  # exactly half: a wrap
    assert counter_increase((1 << 32) - half32 - 1, 0) is None  # just over half: a reset
    assert counter_increase(U64, U64 - 1) is None
    assert counter_increase(1 << 32, 0) is None  # 64-bit width from 2^32 up
    assert counter_increase(U64 - half64 + 1, 0) == half64
    assert counter_increase(5_000_000_000, 12) is None


@given(previous=st.integers(0, U64), increase=st.integers(1, 1 << 31))
def test_counter_increase_recovers_any_wrap_up_to_half_width(previous, increase):
    width = (1 << 32) if previous < (1 << 32) else (1 << 64)
    current = (previous + increase) % width
    if current < (1 << 64) and (previous + increase) >= width:
        assert counter_increase(previous, current) == increase
    else:
        assert counter_increase(previous, previous + increase) == increase


def test_derive_never_wraps():
    lo, hi = -(1 << 63), (1 << 63) - 1
    assert feed(make(), "derive", DERIVE, [(0, lo), (1, -1), (2, hi), (3, lo)]) == [
        9.223372036854776e18, 9.223372036854776e18, -1.8446744073709552e19]


# -- time -----------------------------------------------------------------------------------------

def test_time_going_backwards_reprimes_from_the_late_value():
    agg = make()
    points = [(10, 100), (20, 200), (15, 150), (30, 300)]
    assert feed(agg, "counter", COUNTER, points) == [10.0, 10.0]
    assert agg.counters["dropped.time_not_increasing"] == 1


def test_same_time_twice_gives_no_rate_and_no_division_by_zero():
    agg = make()
    assert feed(agg, "derive", DERIVE, [(10, 1), (10, 5), (12, 9)]) == [2.0]
    assert agg.counters["dropped.time_not_increasing"] == 1


def test_gauge_ignores_time_order():
    assert feed(make(), "gauge", GAUGE, [(10, 1.0), (5, 2.0), (5, 3.0)]) == [1.0, 2.0, 3.0]


def test_high_resolution_time():
    t0 = 1825361637670912000 / 2**30
    assert feed(make(), "derive", DERIVE, [(t0, 0), (t0 + 0.5, 10)]) == [20.0]


# -- bounds and non-finite values -----------------------------------------------------------------

def test_gauge_bounds():
    agg = make()
    assert feed(agg, "percent", GAUGE, [(1, -0.5), (2, 0), (3, 100.1), (4, 100.2)]) == [0, 100.1]
    assert agg.counters["dropped.out_of_range"] == 2


def test_rate_bounds_apply_to_the_rate_not_the_value():
    agg = make()  # bounded_counter value:COUNTER:3:8, values i^2 two seconds apart
    out = feed(agg, "bounded_counter", COUNTER, [(2 * i, i * i) for i in range(10)])
    assert out == [(2 * i + 1) / 2 for i in range(1, 9) if 3 <= (2 * i + 1) / 2 <= 8]
    assert out == [3.5, 4.5, 5.5, 6.5, 7.5]


def test_negative_derive_dropped_when_min_is_zero():
    agg = make()
    out = agg.process([vl("if_octets", 0, (DERIVE, 10), (DERIVE, 10)),
                       vl("if_octets", 1, (DERIVE, 5), (DERIVE, 20))], now=1)
    assert [s[1:3] for s in out] == [("p.if_octets.tx", 10.0)]
    assert agg.counters["dropped.out_of_range"] == 1


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_gauges_are_never_emitted(bad):
    agg = make()
    assert feed(agg, "gauge", GAUGE, [(1, 1.0), (2, bad), (3, 2.0)]) == [1.0, 2.0]
    assert agg.counters["dropped.not_finite"] == 1


# -- type checks ----------------------------------------------------------------------------------

def test_unknown_type_rejected_counted_and_reported_once():
    agg = make()
    for t in range(3):
        assert agg.process([vl("nosuchtype", t, (GAUGE, 1.0))], now=t) == []
    assert agg.counters["rejected.unknown_type"] == 3
    assert [e[0] for e in agg.events] == ["unknown_type:nosuchtype"]


def test_value_count_mismatch_rejects_the_value_list_only():
    agg = make()
    out = agg.process([vl("if_octets", 1, (DERIVE, 1)), vl("gauge", 1, (GAUGE, 4.0))], now=1)
    assert [s[2] for s in out] == [4.0]
    assert agg.counters["rejected.ds_count_mismatch"] == 1
    agg.process([vl("gauge", 2, (GAUGE, 1.0), (GAUGE, 2.0))], now=2)  # known series now
    assert agg.counters["rejected.ds_count_mismatch"] == 2


def test_type_mismatch_rejected_and_leaves_state_untouched():
    agg = make()
    agg.process([vl("mysql_threads", 0, (GAUGE, 1.0), (COUNTER, 100))], now=0)
    out = agg.process([vl("mysql_threads", 1, (GAUGE, 2.0), (GAUGE, 7.0))], now=1)
    assert out == [] and agg.counters["rejected.ds_type_mismatch"] == 1
    out = agg.process([vl("mysql_threads", 2, (GAUGE, 3.0), (COUNTER, 110))], now=2)
    assert [s[2] for s in out] == [3.0, 5.0]


def test_counter_derive_swap_rejected_without_counter_eq_derive():
    agg = make()
    assert feed(agg, "counter", DERIVE, [(0, 1), (1, 2)]) == []
    assert feed(agg, "derive", COUNTER, [(0, 1), (1, 2)]) == []
    assert agg.counters["rejected.ds_type_mismatch"] == 4


def test_counter_eq_derive_reads_bits_as_the_types_db_type():
    agg = make(counter_eq_derive=True)
    # wire DERIVE -1 is the uint64 2^64-1 for a COUNTER type: then +2 wraps to 1
    assert feed(agg, "counter", DERIVE, [(0, -1), (1, 1)]) == [2.0]
    # wire COUNTER 2^64-1 is the int64 -1 for a DERIVE type
    assert feed(agg, "derive", COUNTER, [(0, U64), (1, 4)], ti="x") == [5.0]
    assert feed(agg, "gauge", COUNTER, [(0, 1)], ti="y") == []  # other swaps stay rejected


def test_invalid_values_from_a_plugin_reject_that_value_list_only():
    agg = make()
    out = agg.process([vl("gauge", 1, (GAUGE, "12")), vl("derive", 1, (DERIVE, None)),
                       vl("counter", 1, (COUNTER, math.nan)), vl("derive", 1, (DERIVE, 7), ti="x"),
                       vl("gauge", 1, (GAUGE, 5.0), ti="ok")], now=1)
    assert [s[2] for s in out] == [5.0]
    assert agg.counters["rejected.invalid_value"] == 3
    out = agg.process([vl("derive", 2, (DERIVE, None), ti="x"), vl("derive", 3, (DERIVE, 1)),
                       vl("derive", 4, (DERIVE, 9), ti="x")], now=4)
    assert [s[2] for s in out] == [2 / 3]  # the primed series survived the bad value list
    assert agg.counters["rejected.invalid_value"] == 4
    # odd shapes from a plugin: no interval, no time, a non-sequence of values
    odd = [vl("gauge", 5, (GAUGE, 1.0), interval=None), vl("gauge", None, (GAUGE, 1.0)),
           vl("counter", 5, (DERIVE, "x"), ti="new"), ValueList("h", "p", "", "gauge", "", 5,
                                                             10, 7),
           vl("gauge", 5, (GAUGE, 1.0), plugin=None), ("short",), None]
    assert make(counter_eq_derive=True).process(odd, now=5) == []


# -- expiry and memory ----------------------------------------------------------------------------

def test_state_expires_after_ttl_intervals_of_its_own_interval():
    agg = make(ttl_intervals=4)
    agg.process([vl("counter", 0, (COUNTER, 1), interval=10, ti="slow"),
                 vl("counter", 0, (COUNTER, 1), interval=1, ti="fast")], now=1000.0)
    assert agg.sweep(1003.9) == 0
    assert agg.sweep(1004.0) == 1 and len(agg) == 1
    assert agg.sweep(1040.0) == 1 and len(agg) == 0
    # the expired series primes again instead of computing a rate across the gap
    assert feed(agg, "counter", COUNTER, [(100, 500)], ti="slow") == []


def test_the_series_table_is_rebuilt_when_most_series_expired():
    """A dict keeps its largest table after deletions; the sweep copies it so that a burst of
    series gives its memory back once it expires."""
    agg = make(ttl_intervals=1)
    agg.process([vl("gauge", 0, (GAUGE, 1.0), interval=1, ti=str(i)) for i in range(1000)],
                now=0.0)
    agg.process([vl("gauge", 0, (GAUGE, 1.0), interval=100, ti="stays")], now=0.0)
    table = agg._series
    assert agg.sweep(10.0) == 1000 and len(agg) == 1
    assert agg._series is not table and list(agg._series) == list(table)


def test_tick_sweeps_periodically():
    agg = make(ttl_intervals=1)
    agg.process([vl("gauge", 0, (GAUGE, 1.0), interval=1)], now=0.0)
    agg.tick(0.0)
    agg.tick(4.9)
    assert len(agg) == 1
    agg.tick(5.0)
    assert len(agg) == 0 and agg.counters["series_expired"] == 1


@pytest.mark.parametrize("interval", [0.0, -1.0, math.nan, 1e300])
def test_odd_intervals_are_clamped(interval):
    agg = make(ttl_intervals=4)
    agg.process([vl("gauge", 0, (GAUGE, 1.0), interval=interval)], now=0.0)
    agg.sweep(4 * 86400.0)
    assert len(agg) == 0


def test_memory_is_bounded_when_series_come_and_go():
    agg = make(ttl_intervals=2)
    now = 0.0
    for wave in range(4):
        batch = [vl("counter", now, (COUNTER, wave), ti=f"w{wave}-{i}", interval=1)
                 for i in range(25_000)]
        agg.process(batch, now)
        agg.process([v._replace(time=now + 1, values=((COUNTER, wave + 5),)) for v in batch],
                    now + 1)
        now += 10.0
        agg.tick(now)
        agg.tick(now + 5)
        assert len(agg) <= 25_000
    assert agg.counters["samples"] == 100_000
    agg.sweep(now + 100)
    assert len(agg) == 0 and not agg.export_state()


# -- state hand-over on reload --------------------------------------------------------------------

def test_carry_state_continues_rates_in_a_new_instance():
    old = make()
    old.process([vl("counter", 10, (COUNTER, 100)), vl("gauge", 10, (GAUGE, 1.0))], now=10)
    state = pickle.loads(pickle.dumps(old.export_state()))
    assert list(state) == [("h", "p", "", "counter", "")]  # gauge-only series carry nothing
    new = make()
    new.import_state(state)
    assert [s[2] for s in new.process([vl("counter", 20, (COUNTER, 300))], now=20)] == [20.0]


def test_import_ignores_malformed_state():
    agg = make()
    agg.import_state(None)
    agg.import_state({"x": 1, ("a",): (1, 2, ()), ("h", "p", "", "gauge", ""): ("x", 1, (2,))})
    agg.import_state([1, 2])
    agg.sweep(1e9)
    assert feed(agg, "counter", COUNTER, [(1, 1), (2, 3)]) == [2.0]


# -- properties -----------------------------------------------------------------------------------

finite_or_not = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                          st.integers(-(1 << 63), U64))
point = st.tuples(st.floats(-1e12, 1e12, allow_nan=False), st.sampled_from(
    ["gauge", "counter", "derive", "absolute", "percent", "nosuch"]), finite_or_not)


@settings(max_examples=300, deadline=None)
@given(st.lists(point, max_size=40), st.booleans())
def test_never_raises_and_only_emits_finite_plain_tuples(points, eq_derive):
    agg = make(counter_eq_derive=eq_derive)
    kinds = {"gauge": GAUGE, "counter": COUNTER, "derive": DERIVE, "absolute": ABSOLUTE,
             "percent": GAUGE, "nosuch": GAUGE}
    for t, type_, value in points:
        kind = kinds[type_]
        if kind in (COUNTER, ABSOLUTE):
            value = int(value) % (U64 + 1) if math.isfinite(value) else 0
        elif kind == DERIVE:
            value = int(value) if math.isfinite(value) else 0
        for host, name, rate, ts in agg.process([vl(type_, t, (kind, value))], now=0.0):
            assert isinstance(rate, int | float) and math.isfinite(rate)
            assert type(ts) is int and isinstance(name, str) and host == "h"


@given(st.lists(st.integers(0, 10**6), min_size=2, max_size=30), st.floats(0.001, 100))
def test_monotonic_counter_rates_are_exact(increments, dt):
    agg = make()
    value, points = 0, []
    for i, inc in enumerate(increments):
        value += inc
        points.append((1000 + i * dt, value))
    out = feed(agg, "counter", COUNTER, points)
    assert len(out) == len(increments) - 1
    pairs = zip(points[:-1], points[1:], strict=True)
    for rate, inc, ((t1, _), (t2, _)) in zip(out, increments[1:], pairs, strict=True):
        assert rate == pytest.approx(inc / (t2 - t1))


KIND_OF = {"gauge": GAUGE, "counter": COUNTER, "derive": DERIVE, "absolute": ABSOLUTE,
           "bounded_gauge": GAUGE, "bounded_derive": DERIVE}


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(KIND_OF)), st.lists(st.tuples(
    st.sampled_from([-1.0, 0.0, 0.5, 1.0, 10.0]),
    st.one_of(st.integers(0, 40), st.sampled_from([U64, U64 - 3, (1 << 32) - 2, 5 * 10**9]),
              st.sampled_from([math.nan, math.inf, -2.5]))), max_size=25),
    st.booleans())
def test_one_ds_fast_path_equals_the_general_loop(type_, steps, eq_derive):
    """The same series as a one-DS type and as both DS of a two-DS type: same rates, counts."""
    kind = KIND_OF[type_]
    single, double = make(counter_eq_derive=eq_derive), make(counter_eq_derive=eq_derive)
    t, out_single, out_double = 100.0, [], []
    for step, value in steps:
        t += step
        if kind != GAUGE:
            value = int(value) % (U64 + 1) if math.isfinite(value) else 7
            if kind == DERIVE:
                value -= 1 << 63
        wire = kind
        if eq_derive and kind == COUNTER:  # the same 64 bits sent as a DERIVE (int64)
            wire, value = DERIVE, value - (1 << 64) if value >= 1 << 63 else value
        elif eq_derive and kind == DERIVE:  # ... or as a COUNTER (uint64)
            wire, value = COUNTER, value & U64
        out_single += [s[2] for s in single.process([vl(type_, t, (wire, value))], now=t)]
        out_double += [s[2] for s in double.process(
            [vl(type_ + "2", t, (wire, value), (wire, value))], now=t)]
    assert out_double == [x for x in out_single for _ in (0, 1)]
    for counter, n in single.counters.items():  # per value: twice; per value list: once
        assert double.counters[counter] == (n if counter.startswith("rejected.") else 2 * n)


# -- wrap or reset at the boundaries (README: which resets are caught) ---------------------------

P31, P32, P63, P64 = 1 << 31, 1 << 32, 1 << 63, 1 << 64


@pytest.mark.parametrize(("previous", "current", "expected"), [
    # 32-bit width (previous <= 2^32 - 1)
    (P32 - 1, 0, 1),  # the plain wrap
    (P32 - 1, P31 - 1, P31),  # fell by exactly 2^31: still a wrap
    (P32 - 1, P31, None),  # fell by less than 2^31: a reset
    (P31 - 1, 0, None),  # a reset from below 2^31: always caught
    (P31, 0, P31),  # a reset from 2^31 to 0: NOT caught without a max (taken for a wrap)
    (P32 - 5, 3, 8),
    (4294967295, 3, 4),  # README's examples
    (2147483647, 0, None),
    (3_000_000_000, 5, 1_294_967_301),  # NOT caught without a max
    (5_000_000_000, 12, None),
    # 64-bit width (previous >= 2^32)
    (P32, 0, None),  # a 64-bit counter reset from 2^32
    (P32, P32 - 1, None),
    (P63 - 1, 0, None),  # a reset from below 2^63: caught
    (P63, 0, P63),  # a reset from 2^63 to 0: NOT caught without a max
    (P64 - 1, 0, 1),  # the 64-bit wrap
    (P64 - 1, P63 - 1, P63),
    (P64 - 1, P63, None),
])
def test_wrap_or_reset_without_a_max(previous, current, expected):
    assert counter_increase(previous, current) == expected
    agg = make()
    out = feed(agg, "counter", COUNTER, [(0, previous), (10, current), (20, current + 100)])
    if expected is None:
        assert out == [10.0] and agg.counters["dropped.counter_reset"] == 1
    else:
        assert out == [expected / 10, 10.0] and agg.counters["dropped.counter_reset"] == 0


@pytest.mark.parametrize(("previous", "current", "wrap"), [
    (P32 - 1, 0, True),  # increase 1 in 10 s: 0.1/s <= max
    (P32 - 10_000_000, 0, True),  # exactly 1e6/s (= the max): a wrap ...
    (P32 - 10_000_001, 0, False),  # ... but this is above: a reset, caught by the max
    (P31, 0, False),  # the reset the half-width rule misses is caught with a max
    (3_000_000_000, 5, False),
    (P63, 0, False),
    (P64 - 1, 0, True),
    (P64 - 10_000_000, 0, True),  # exactly 1e6/s: a wrap
])
def test_wrap_or_reset_with_a_types_db_max(previous, current, wrap):
    for type_ in ("counter_max", "counter_max2"):
        agg = make()
        out = []
        for t, v in [(0, previous), (10, current), (20, current + 100)]:
            values = (COUNTER, v) if type_ == "counter_max" else ((COUNTER, v),) * 2
            lists = [vl(type_, t, values)] if type_ == "counter_max" else [vl(type_, t, *values)]
            out.extend(s[2] for s in agg.process(lists, now=t))
        per = 1 if type_ == "counter_max" else 2
        if wrap:
            increase = counter_increase(previous, current)
            assert out == [increase / 10] * per + [10.0] * per
            assert agg.counters["dropped.counter_reset"] == 0
        else:
            assert out == [10.0] * per
            assert agg.counters["dropped.counter_reset"] == per
            assert agg.counters["dropped.out_of_range"] == 0
