"""StatsD aggregation over flush intervals, named as the reference statsd's Graphite backend.

State over time and nothing else: no I/O, no logging, no clock. Every call takes `now` (wall-clock
epoch seconds, used only for the timestamps written) and `mono` (a monotonic reading, used for
everything that is a duration: when a flush is due, gauge TTLs, onlychanged, timestamp_lag);
`mono` defaults to `now` for callers with one clock. The aggregator is the parser's visitor, so
a datagram goes from text to dict updates without intermediate records.

- Flushes follow bucky.aggregate.schedule.FlushGrid: due on the monotonic clock, stamped with the
  wall-clock grid slot (multiples of flush_time since the epoch) that just ended, so timestamps
  never drift and a clock step neither stops nor bursts flushing (see that module for what is
  stamped across a step). A late tick flushes once and skips the missed intervals. The final
  (partial) interval is stamped with its grid end too: stamping it "now" would land in the
  Graphite bucket of the previous flush and overwrite it.
- Counters emit rate (per second of flush_time) and count; timers the reference's statistics and
  percentiles (numbers match process_metrics.js, including its rounding); gauges persist across
  flushes; sets emit the count of distinct members. Tags are part of the key.
- Idle handling follows Bucky 2: delete_counters/timers/sets and onlychanged_gauges are given here
  already combined with delete_idlestats. Gauges may also expire after gauges_max_ttl seconds
  without an update, and max_keys caps live keys: updates for new keys beyond it are dropped and
  counted.
- Samples are plain tuples (None, name, value, timestamp); non-finite values are never emitted.
- Timer values are kept in array('d') (8 bytes a value, not a 32-byte float object in a list).
  At the flush a timer of up to 65,536 values is sorted as a list; a bigger one is sorted in
  chunks in place and merged (heapq.merge) into a second array, so a hot key costs at most about
  16 bytes a value at its peak; its statistics read prefix sums only at the few indices they
  need (itertools.accumulate + islice, in C). Either way sums run left to right in sorted order
  as the reference's do, so results are bit-identical to it.
"""

from __future__ import annotations

import heapq
import math
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import reduce
from itertools import accumulate, islice, repeat
from operator import add, mul, sub
from typing import TYPE_CHECKING, Any

from bucky.aggregate.schedule import FlushGrid, stamp
from bucky.protocol.statsd import Kind, StatsdMetric, StatsdParser, make_key, sanitize
from bucky.sample import Sample

if TYPE_CHECKING:  # aggregate/ takes plain values; the config object only as a type
    from bucky.config import Config

TIMER_STATS = ("mean", "upper", "lower", "count", "count_ps", "sum", "sum_squares", "median", "std")

_SMALL_TIMER = 1 << 16  # timers with more values are sorted in chunks, then merged
_SORT_CHUNK = 1 << 14  # values sorted at once (as float objects) in a big timer
BadLineHook = Callable[[str, str, float], None]  # (reason, line, now)


@dataclass(frozen=True)
class StatsdSettings:
    flush_time: float = 10.0
    legacy_namespace: bool = True
    global_prefix: str | None = "stats"
    prefix_counter: str | None = "counters"
    prefix_timer: str | None = "timers"
    prefix_gauge: str | None = "gauges"
    prefix_set: str | None = "sets"
    prefix_stats: str | None = "statsd"
    metadata: tuple[tuple[str, str | None], ...] = ()
    keep_tags: bool = False  # statsd_tags = "drop" (Bucky 2 names)
    # Effective idle rules (Bucky 2: each only applies when statsd_delete_idlestats is true).
    delete_counters: bool = False
    delete_timers: bool = False
    delete_sets: bool = False
    onlychanged_gauges: bool = False
    gauges_max_ttl: float = 0.0  # seconds; 0 = never expire
    max_keys: int = 500_000  # 0 = unlimited
    percentile_thresholds: tuple[float, ...] = (90,)
    timer_stats: frozenset[str] = field(default_factory=lambda: frozenset(TIMER_STATS))
    histogram: tuple[tuple[str, tuple[float, ...]], ...] = ()

    @classmethod
    def from_config(cls, cfg: Config) -> StatsdSettings:
        idle = bool(cfg.statsd_delete_idlestats)
        return cls(
            flush_time=float(cfg.statsd_flush_time),
            legacy_namespace=bool(cfg.statsd_legacy_namespace),
            global_prefix=cfg.statsd_global_prefix,
            prefix_counter=cfg.statsd_prefix_counter,
            prefix_timer=cfg.statsd_prefix_timer,
            prefix_gauge=cfg.statsd_prefix_gauge,
            prefix_set=cfg.statsd_prefix_set,
            prefix_stats=cfg.statsd_prefix_stats,
            metadata=tuple(dict(cfg.statsd_metadata or {}).items()),
            keep_tags=cfg.statsd_tags == "graphite",
            delete_counters=idle and bool(cfg.statsd_delete_counters),
            delete_timers=idle and bool(cfg.statsd_delete_timers),
            delete_sets=idle and bool(cfg.statsd_delete_sets),
            onlychanged_gauges=idle and bool(cfg.statsd_onlychanged_gauges),
            gauges_max_ttl=float(cfg.statsd_gauges_max_ttl or 0.0),
            max_keys=int(cfg.statsd_max_keys or 0),
            percentile_thresholds=tuple(cfg.statsd_percentile_thresholds),
            timer_stats=frozenset(s for s in TIMER_STATS if getattr(cfg, f"statsd_timer_{s}")),
            histogram=tuple((str(m), tuple(bins)) for m, bins in cfg.statsd_histogram),
        )


def js_number_text(x: float) -> str:
    """A number as JavaScript's String(x) writes it (90, 99.9, 0.00001), for reference names."""
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if float(x).is_integer():
        return str(int(x))
    text = repr(float(x))
    return format(Decimal(text), "f") if "e" in text else text


def js_round(x: float) -> int:
    """Math.round for x >= 0: halves go up (Python's round() goes to even)."""
    n = math.floor(x)
    return n + 1 if x - n >= 0.5 else n


def _join(*parts: str | None) -> str:
    return ".".join(p for p in parts if p)


def _namespace(*parts: str | None) -> str:
    """The prefix a key is appended to: "a.b." or "" (a None or empty part is skipped)."""
    joined = _join(*parts)
    return joined + "." if joined else ""


class _Names:
    """Graphite names exactly as the reference's backends/graphite.js builds them."""

    def __init__(self, s: StatsdSettings) -> None:
        meta: dict[str, str] = {}
        if s.keep_tags:
            for k, v in s.metadata:
                k = sanitize(str(k))
                if k:
                    meta[k] = sanitize("" if v is None else str(v)) or "true"
        self.meta = meta
        self.meta_suffix = "".join(f";{k}={meta[k]}" for k in sorted(meta))
        self._merged: dict[str, str] = {}
        stats = s.prefix_stats or None
        if s.legacy_namespace:  # fixed names; the prefixes only apply to the new namespace
            self.counter_rate = ("stats.", "")
            self.counter_count = ("stats_counts.", "")
            self.timer = "stats.timers."
            self.gauge = "stats.gauges."
            self.set = "stats.sets."
            self.num_stats = _join(stats, "numStats")
            self.stats_namespace = _join("stats", stats)
        else:
            top = s.global_prefix or None
            counter = _namespace(top, s.prefix_counter)
            self.counter_rate = (counter, ".rate")
            self.counter_count = (counter, ".count")
            self.timer = _namespace(top, s.prefix_timer)
            self.gauge = _namespace(top, s.prefix_gauge)
            self.set = _namespace(top, s.prefix_set)
            self.num_stats = _join(top, stats, "numStats")
            self.stats_namespace = _join(top, stats)
        # The reference keeps its own counters and timestamp_lag among the user's metrics.
        self.bad_lines_key = _join(stats, "bad_lines_seen")
        self.packets_key = _join(stats, "packets_received")
        self.metrics_key = _join(stats, "metrics_received")
        self.timestamp_lag_key = _join(stats, "timestamp_lag")

    def split(self, key: str) -> tuple[str, str]:
        """key -> (name, tag suffix with statsd_metadata merged in; the key's own tags win)."""
        name, sep, tags = key.partition(";")
        if not sep:
            return name, self.meta_suffix
        if not self.meta:
            return name, sep + tags
        suffix = self._merged.get(tags)
        if suffix is None:
            merged = dict(self.meta)
            merged.update(p.partition("=")[::2] for p in tags.split(";"))
            suffix = "".join(f";{k}={merged[k]}" for k in sorted(merged))
            if len(self._merged) > 100_000:
                self._merged.clear()
            self._merged[tags] = suffix
        return name, suffix

    def self_stat(self, stat: str) -> str:
        """processing_time and co: `stats.statsd.<stat>` (legacy) / `<global>.statsd.<stat>`."""
        return _join(self.stats_namespace, stat) + self.meta_suffix


def sorted_values(values: array[float]) -> Sequence[float]:
    """The values in ascending order: a list for a small timer; for a big one an array('d')
    (chunks sorted in place, then merged), so no million float objects live at once."""
    n = len(values)
    if n <= _SMALL_TIMER:
        return sorted(values)
    for i in range(0, n, _SORT_CHUNK):
        values[i : i + _SORT_CHUNK] = array("d", sorted(values[i : i + _SORT_CHUNK]))
    with memoryview(values) as view:
        runs = [view[i : i + _SORT_CHUNK] for i in range(0, n, _SORT_CHUNK)]
        merged = array("d")
        merged.extend(heapq.merge(*runs))
        for run in runs:
            run.release()
    return merged


def _prefix_sums(values: Iterable[float], indices: list[int]) -> dict[int, float]:
    """{i: values[0] + ... + values[i]} for the ascending `indices`, summed left to right (as
    the reference's cumulative array), without keeping the other prefix sums."""
    running = accumulate(values)
    out: dict[int, float] = {}
    position = -1
    for index in indices:
        out[index] = next(islice(running, index - position - 1, None))
        position = index
    return out


class StatsdAggregator:
    """Parser visitor + interval state. Not thread-safe; one per StatsD input process."""

    def __init__(self, settings: StatsdSettings, on_bad_line: BadLineHook | None = None) -> None:
        if not settings.flush_time > 0:
            raise ValueError("flush_time must be > 0")
        self.settings = settings
        self.parser = StatsdParser(keep_tags=settings.keep_tags)
        self._on_bad_line = on_bad_line
        self._names = _Names(settings)
        self._flush_time = settings.flush_time
        self._max_keys = settings.max_keys
        self._counters: dict[str, float] = {}
        self._timers: dict[str, array[float]] = {}
        # A timing sampled at rate r counts 1/r times; the count is len(values) + the extra of
        # sampled ones, so the common unsampled timing costs one dict operation, not two.
        self._timer_extra: dict[str, float] = {}
        self._gauges: dict[str, float] = {}
        self._gauge_updated: dict[str, float] = {}  # key -> `mono` of its last update
        self._gauges_unsent: set[str] = set()  # restored gauges: sent once even if unchanged
        self._sets: dict[str, set[str]] = {}
        self._now = 0.0  # `mono` of the current call
        self._grid = FlushGrid(self._flush_time)  # anchored at the first tick
        self._interval_start = -math.inf  # `mono` when the current interval began
        self._last_flush_now: float | None = None
        self.last_timestamp: int | None = None  # timestamp of the most recent flush
        # The reference's own counters, for the current interval.
        self._packets = 0
        self._lines = 0
        self._bad_lines = 0
        self.totals: Counter[str] = Counter()  # cumulative counts of everything else
        self._thresholds = self._threshold_specs()
        self._enabled = settings.timer_stats
        self._bins: dict[str, tuple[tuple[float, str], ...]] = {}

    # --- feeding -------------------------------------------------------------------------------

    @property
    def next_flush(self) -> float:
        """When the next flush is due, on the monotonic clock (-inf before the first tick)."""
        return self._grid.deadline

    @property
    def clock_steps(self) -> int:
        """Wall-clock steps seen at flushes (see bucky.aggregate.schedule)."""
        return self._grid.steps

    def ingest(self, datagram: bytes, now: float, mono: float | None = None,
               packets: int = 1) -> None:
        """One datagram (or one chunk of complete lines). `packets`: how many datagrams this
        counts as in packets_received (StatsD workers count a datagram where it was read: the
        lines it routes to another worker arrive there as part of a chunk counting 0)."""
        self._now = now if mono is None else mono
        self._packets += packets
        self._lines += self.parser.feed(datagram.decode("utf-8", "surrogateescape"), self)

    def ingest_lines(self, lines: list[bytes], now: float, mono: float | None = None) -> None:
        """Complete lines without their newline (from a bucky.protocol.framing.LineFramer);
        counts as one packet."""
        # Joining then splitting once is ~3x cheaper than decoding line by line.
        self.ingest(b"\n".join(lines), now, mono)

    def add(self, metric: StatsdMetric, now: float, mono: float | None = None) -> None:
        """One record (the parse() API), e.g. from tests or an embedding program."""
        self._now = now if mono is None else mono
        self._lines += 1
        key = make_key(metric.name, metric.tags if self.settings.keep_tags else ())
        if key is None:
            self.bad_line("bad-name", metric.name)
        elif metric.kind is Kind.COUNTER:
            self.counter(key, float(metric.value), metric.rate, metric.timestamp)
        elif metric.kind is Kind.GAUGE or metric.kind is Kind.GAUGE_DELTA:
            delta = metric.kind is Kind.GAUGE_DELTA
            self.gauge(key, float(metric.value), metric.rate, metric.timestamp, delta)
        elif metric.kind is Kind.SET:
            self.set_member(key, str(metric.value), metric.rate, metric.timestamp)
        else:
            self.timer(key, float(metric.value), metric.rate, metric.timestamp, metric.kind)

    # --- visitor methods (hot) -------------------------------------------------------------------

    def counter(self, key: str, value: float, rate: float, timestamp: int | None) -> None:
        try:
            self._counters[key] += value * (1.0 / rate)  # the reference multiplies by 1/rate
        except KeyError:
            if self._admit():
                self._counters[key] = value * (1.0 / rate)

    def timer(self, key: str, value: float, rate: float, timestamp: int | None, kind: Kind) -> None:
        try:
            self._timers[key].append(value)
        except KeyError:
            if not self._admit():
                return
            self._timers[key] = array("d", (value,))
        if rate != 1.0:
            extra = self._timer_extra
            extra[key] = extra.get(key, 0.0) + (1.0 / rate - 1.0)

    def gauge(
        self, key: str, value: float, rate: float, timestamp: int | None, delta: bool
    ) -> None:
        gauges = self._gauges
        if key in gauges:
            if delta:
                value += gauges[key]
        elif not self._admit():
            return
        gauges[key] = value
        self._gauge_updated[key] = self._now

    def set_member(self, key: str, member: str, rate: float, timestamp: int | None) -> None:
        try:
            self._sets[key].add(member)
        except KeyError:
            if self._admit():
                self._sets[key] = {member}

    def bad_line(self, reason: str, line: str) -> None:
        self._bad_lines += 1
        self.totals["bad_lines." + reason] += 1
        if self._on_bad_line is not None:
            self._on_bad_line(reason, line, self._now)

    def event(self, kind: str) -> None:
        self.totals["events" if kind == "event" else "service_checks"] += 1

    def _admit(self) -> bool:
        """Room for one more live key?"""
        cap = self._max_keys
        if cap and (
            len(self._counters) + len(self._timers) + len(self._gauges) + len(self._sets) >= cap
        ):
            self.totals["dropped.max_keys"] += 1
            return False
        return True

    # --- time ------------------------------------------------------------------------------------

    def tick(self, now: float, mono: float | None = None) -> list[Sample]:
        """The samples of the interval that ended, if one did; else []."""
        if mono is None:
            mono = now
        grid = self._grid
        if mono < grid.deadline:
            return []
        if not grid.anchored:
            grid.anchor(now, mono)
            self._interval_start = mono
            return []
        return self._flush(stamp(grid.take(now, mono)), mono, final=False)

    def flush(self, now: float, mono: float | None = None) -> list[Sample]:
        """Final flush (shutdown): what is due, then the partial interval, stamped at its end."""
        if mono is None:
            mono = now
        samples = self.tick(now, mono)
        if samples or (self._packets == 0 and self._lines == 0):
            return samples  # nothing arrived since the last flush: nothing to add
        return self._flush(stamp(self._grid.final_slot(now)), mono, final=True)

    def self_sample(self, stat: str, value: float, timestamp: int) -> Sample:
        """A sample under the reference's stats namespace (e.g. processing_time, measured by the
        caller because this module reads no clock)."""
        return (None, self._names.self_stat(stat), value, timestamp)

    # --- flush -----------------------------------------------------------------------------------

    def _flush(self, timestamp: int, now: float, final: bool) -> list[Sample]:
        s = self.settings
        names = self._names
        split = names.split
        flush_time = self._flush_time
        out: list[Sample] = []
        append = out.append
        skipped = 0
        num_stats = 0

        rate_prefix, rate_suffix = names.counter_rate
        count_prefix, count_suffix = names.counter_count
        own = (
            (names.bad_lines_key, self._bad_lines),
            (names.packets_key, self._packets),
            (names.metrics_key, self._lines),
        )
        for key, value in (*own, *self._counters.items()):
            if value - value != 0.0:  # inf or NaN after overflow
                skipped += 1
                continue
            name, suffix = split(key)
            append((None, rate_prefix + name + rate_suffix + suffix, value / flush_time, timestamp))
            append((None, count_prefix + name + count_suffix + suffix, value, timestamp))
            num_stats += 1

        timer_prefix = names.timer
        extra = self._timer_extra
        for key, values in self._timers.items():
            name, suffix = split(key)
            base = timer_prefix + name + "."
            count = len(values) + extra.get(key, 0.0)
            for stat, value in self._timer_stats(key, values, count):
                if value - value != 0.0:
                    skipped += 1
                    continue
                append((None, base + stat + suffix, value, timestamp))
            num_stats += 1

        self._expire_gauges(now)
        gauge_prefix = names.gauge
        only_changed = s.onlychanged_gauges
        updated, since, unsent = self._gauge_updated, self._interval_start, self._gauges_unsent
        for key, value in self._gauges.items():
            if only_changed and updated[key] < since and key not in unsent:
                continue
            if value - value != 0.0:
                skipped += 1
                continue
            name, suffix = split(key)
            append((None, gauge_prefix + name + suffix, value, timestamp))
            num_stats += 1
        unsent.clear()
        if not final and self._last_flush_now is not None:
            lag = round(now - self._last_flush_now - flush_time, 6)
            name, suffix = split(names.timestamp_lag_key)
            append((None, gauge_prefix + name + suffix, lag, timestamp))
            num_stats += 1

        set_prefix = names.set
        for key, members in self._sets.items():
            name, suffix = split(key)
            append((None, set_prefix + name + ".count" + suffix, len(members), timestamp))
            num_stats += 1

        append((None, names.num_stats + names.meta_suffix, num_stats, timestamp))

        self._reset_interval(now, final)
        self.last_timestamp = timestamp
        if skipped:
            self.totals["dropped.not_finite"] += skipped
        self.totals["flushes"] += 1
        self.totals["samples"] += len(out)
        return out

    def _reset_interval(self, now: float, final: bool) -> None:
        s = self.settings
        self.totals["datagrams"] += self._packets
        self.totals["lines"] += self._lines
        self.totals["bad_lines"] += self._bad_lines
        self._packets = self._lines = self._bad_lines = 0
        if s.delete_counters:
            self._counters = {}
        else:
            self._counters = dict.fromkeys(self._counters, 0.0)
        if s.delete_timers:
            self._timers = {}
        else:
            self._timers = {key: array("d") for key in self._timers}
        self._timer_extra = {}
        if s.delete_sets:
            self._sets = {}
        else:
            self._sets = {key: set() for key in self._sets}
        self._interval_start = now
        if not final:
            self._last_flush_now = now

    def _expire_gauges(self, now: float) -> None:
        ttl = self.settings.gauges_max_ttl
        if ttl <= 0:
            return
        updated = self._gauge_updated
        expired = [key for key, when in updated.items() if now - when > ttl]
        for key in expired:
            del self._gauges[key]
            del updated[key]
            self._gauges_unsent.discard(key)
        if expired:
            self.totals["gauges_expired"] += len(expired)

    # --- timer statistics (lib/process_metrics.js) -----------------------------------------------

    def _threshold_specs(self) -> list[tuple[float, list[tuple[int, str]]]]:
        """Per percentile: which of (count, mean, bound, sum, sum_squares) to emit, and names."""
        enabled = self.settings.timer_stats
        specs = []
        for pct in self.settings.percentile_thresholds:
            clean = js_number_text(pct).replace(".", "_", 1).replace("-", "top", 1)
            bound, bound_toggle = ("upper", "upper") if pct > 0 else ("lower", "lower")
            wanted = [
                (0, "count", "count"),
                (1, "mean", "mean"),
                (2, bound, bound_toggle),
                (3, "sum", "sum"),
                (4, "sum_squares", "sum_squares"),
            ]
            fields = [(i, f"{stat}_{clean}") for i, stat, toggle in wanted if toggle in enabled]
            if fields:
                specs.append((float(pct), fields))
        return specs

    def _timer_stats(self, key: str, values: array[float], count: float) -> list[tuple[str, float]]:
        enabled = self._enabled
        n = len(values)
        if n == 0:  # a timer kept from an earlier interval
            return [(stat, 0) for stat in ("count", "count_ps") if stat in enabled]
        ordered = sorted_values(values)
        low, high = ordered[0], ordered[-1]
        out: list[tuple[str, float]] = []
        # Which prefix sums are read: the total, and per percentile its part (see below).
        rows: list[tuple[float, list[tuple[int, str]], int, int]] = []
        needed = {n - 1}
        for pct, fields in self._thresholds:
            if n > 1:
                within = js_round(abs(pct) / 100 * n)
                if within == 0:
                    continue
                end = within - 1 if pct > 0 else n - within - 1  # the reference reads -1 as 0
                if end >= 0:
                    needed.add(end)
            else:
                within, end = 1, 0
            rows.append((pct, fields, within, end))
        sums: Sequence[float] | dict[int, float]
        squares: Sequence[float] | dict[int, float]
        if n <= _SMALL_TIMER:  # all prefix sums: cheapest for the common small timer
            sums = list(accumulate(ordered))
            squares = list(accumulate(map(mul, ordered, ordered)))
        else:  # only those read: no million-entry lists
            indices = sorted(needed)
            sums = _prefix_sums(ordered, indices)
            squares = _prefix_sums(map(mul, ordered, ordered), indices)
        total, total_squares = sums[n - 1], squares[n - 1]
        for pct, fields, within, end in rows:
            if n == 1:
                bound, part, part_squares, mean = high, low, low * low, low
            else:
                if pct > 0:
                    bound, part, part_squares = ordered[end], sums[end], squares[end]
                else:
                    bound = ordered[n - within]
                    part = total - (sums[end] if end >= 0 else 0.0)
                    part_squares = total_squares - (squares[end] if end >= 0 else 0.0)
                mean = part / within
            row = (within, mean, bound, part, part_squares)
            out.extend((name, row[i]) for i, name in fields)
        mean = total / n
        if "std" in enabled:
            diffs = map(mul, map(sub, ordered, repeat(mean)), map(sub, ordered, repeat(mean)))
            sum_of_diffs = reduce(add, diffs)
            out.append(("std", math.sqrt(sum_of_diffs / n)))
        if "upper" in enabled:
            out.append(("upper", high))
        if "lower" in enabled:
            out.append(("lower", low))
        if "count" in enabled:
            out.append(("count", count))
        if "count_ps" in enabled:
            out.append(("count_ps", count / self._flush_time))
        if "sum" in enabled:
            out.append(("sum", total))
        if "sum_squares" in enabled:
            out.append(("sum_squares", total_squares))
        if "mean" in enabled:
            out.append(("mean", mean))
        if "median" in enabled:
            mid = n // 2
            out.append(("median", ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2))
        if self.settings.histogram:
            start = 0
            for upper_bound, stat in self._histogram_bins(key):
                # Values at or above the last bound are not counted, by the reference's design.
                end = n if upper_bound == math.inf else bisect_left(ordered, upper_bound, start)
                out.append((stat, end - start))
                start = end
        return out

    def _histogram_bins(self, key: str) -> tuple[tuple[float, str], ...]:
        bins = self._bins.get(key)
        if bins is None:
            bins = ()
            for metric, bounds in self.settings.histogram:
                if metric in key:  # first match wins; an empty bin list excludes the metric
                    bins = tuple(
                        (b, "histogram.bin_" + js_number_text(b).replace(".", "_", 1))
                        for b in bounds
                    )
                    break
            if len(self._bins) > 100_000:
                self._bins.clear()
            self._bins[key] = bins
        return bins

    # --- state: restore and hand-over ----------------------------------------------------------

    def _rekey(self, key: str) -> str:
        return key if self.settings.keep_tags else key.partition(";")[0]

    def restore_gauges(self, gauges: Mapping[str, tuple[float, float | None]], now: float,
                       mono: float | None = None) -> int:
        """Saved gauges (key -> (value, last update as wall-clock time, or None)); sent at the
        next flush. Returns how many were taken (the key cap applies)."""
        offset = 0.0 if mono is None else mono - now  # wall -> monotonic
        taken = 0
        for key, (value, updated) in gauges.items():
            key = self._rekey(key)
            if key not in self._gauges and not self._admit():
                continue
            self._gauges[key] = value
            self._gauge_updated[key] = (now if updated is None else updated) + offset
            self._gauges_unsent.add(key)
            taken += 1
        return taken

    def gauges_snapshot(
        self, now: float | None = None, mono: float | None = None
    ) -> dict[str, tuple[float, float]]:
        """key -> (value, last update) for the finite gauges (what is worth saving); with both
        clocks given, the last update is converted to wall-clock time."""
        offset = 0.0 if now is None or mono is None else now - mono  # monotonic -> wall
        updated = self._gauge_updated
        return {k: (v, updated[k] + offset) for k, v in self._gauges.items() if v - v == 0.0}

    def export_state(self) -> dict[str, Any]:
        """Everything pending, as builtins (picklable), for a new aggregator after a reload."""
        return {
            "version": 1,
            "flush_time": self._flush_time,
            "grid": self._grid.export(),
            "interval_start": self._interval_start,
            "last_flush_now": self._last_flush_now,
            "counters": dict(self._counters),
            "timers": {k: array("d", v) for k, v in self._timers.items()},
            "timer_extra": dict(self._timer_extra),
            "gauges": dict(self._gauges),
            "gauge_updated": dict(self._gauge_updated),
            "gauges_unsent": sorted(self._gauges_unsent),
            "sets": {k: sorted(v) for k, v in self._sets.items()},
            "own": (self._packets, self._lines, self._bad_lines),
            "totals": dict(self.totals),
        }

    def import_state(self, state: Mapping[str, Any]) -> None:
        """Adopt export_state() of a predecessor (possibly with other settings)."""
        if state.get("version") != 1:
            raise ValueError("unknown StatsD state version")
        rekey = self._rekey
        for key, value in state["counters"].items():
            k = rekey(key)
            self._counters[k] = self._counters.get(k, 0.0) + value
        for key, values in state["timers"].items():
            k = rekey(key)
            self._timers.setdefault(k, array("d")).extend(values)
        for key, extra in state["timer_extra"].items():
            k = rekey(key)
            self._timer_extra[k] = self._timer_extra.get(k, 0.0) + extra
        updated = state["gauge_updated"]
        for key, value in state["gauges"].items():
            k = rekey(key)
            self._gauges[k] = value
            self._gauge_updated[k] = updated[key]
        self._gauges_unsent.update(rekey(k) for k in state["gauges_unsent"])
        for key, members in state["sets"].items():
            self._sets.setdefault(rekey(key), set()).update(members)
        packets, lines, bad = state["own"]
        self._packets += packets
        self._lines += lines
        self._bad_lines += bad
        self.totals.update(state["totals"])
        self._last_flush_now = state["last_flush_now"]
        if state["flush_time"] == self._flush_time:
            self._grid.adopt(state["grid"])
            self._interval_start = state["interval_start"]
        # else: the grid restarts at the next call; the pending data goes out at its first end

    def counts(self) -> dict[str, int]:
        """Cumulative counts including the current interval (for self-metrics)."""
        out = dict(self.totals)
        out["datagrams"] = out.get("datagrams", 0) + self._packets
        out["lines"] = out.get("lines", 0) + self._lines
        out["bad_lines"] = out.get("bad_lines", 0) + self._bad_lines
        return out

    def live_keys(self) -> int:
        return len(self._counters) + len(self._timers) + len(self._gauges) + len(self._sets)

    # --- the management interface's views (stats.js's mgmt_server) ------------------------------

    def own_counts(self) -> dict[str, int]:
        """The reference's own counters of the current interval, by their key (as `counters`
        shows them among the user's)."""
        names = self._names
        return {names.bad_lines_key: self._bad_lines, names.packets_key: self._packets,
                names.metrics_key: self._lines}

    def counter_values(self) -> dict[str, float]:
        return dict(self._counters)

    def timer_values(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in self._timers.items()}

    def gauge_values(self) -> dict[str, float]:
        return dict(self._gauges)

    def stat_keys(self, kind: str) -> list[str]:
        """The keys of `kind` ("counters", "timers" or "gauges") in the current interval."""
        return list({"counters": self._counters, "timers": self._timers,
                     "gauges": self._gauges}[kind])

    def delete(self, kind: str, keys: Iterable[str]) -> None:
        """Forget `keys` of `kind` ("counters", "timers" or "gauges"), as the delcounters,
        deltimers and delgauges commands do."""
        table: dict = {"counters": self._counters, "timers": self._timers,
                       "gauges": self._gauges}[kind]
        for key in keys:
            table.pop(key, None)
            if kind == "timers":
                self._timer_extra.pop(key, None)
            elif kind == "gauges":
                self._gauge_updated.pop(key, None)
                self._gauges_unsent.discard(key)


@dataclass(frozen=True)
class OwnStatNames:
    """The names of the reference's own statistics in a flush (what StatsD workers merge)."""

    rates: dict[str, str]  # each own counter's rate name -> its count's name
    largest: frozenset[str]  # merged as the largest value: timestamp_lag, processing_time
    timestamp_lag: str
    num_stats: str

    @property
    def all(self) -> frozenset[str]:
        return frozenset(self.rates) | frozenset(self.rates.values()) | self.largest | {
            self.num_stats}


def own_stat_names(settings: StatsdSettings) -> OwnStatNames:
    """The Graphite names of the reference's own statistics under these settings."""
    names = _Names(settings)
    rate_prefix, rate_suffix = names.counter_rate
    count_prefix, count_suffix = names.counter_count
    rates: dict[str, str] = {}
    for key in (names.bad_lines_key, names.packets_key, names.metrics_key):
        name, suffix = names.split(key)
        rates[rate_prefix + name + rate_suffix + suffix] = (
            count_prefix + name + count_suffix + suffix)
    lag_name, lag_suffix = names.split(names.timestamp_lag_key)
    return OwnStatNames(
        rates=rates,
        largest=frozenset({names.gauge + lag_name + lag_suffix,
                           names.self_stat("processing_time")}),
        timestamp_lag=names.gauge + lag_name + lag_suffix,
        num_stats=names.num_stats + names.meta_suffix,
    )
