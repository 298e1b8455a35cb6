"""MetricsD metric state: Coda Hale-style metrics, and the table that flushes them to samples.

The metrics follow Coda Hale (Dropwizard) Metrics: a counter holds a running total, a gauge the
last value, a histogram an exponentially decaying reservoir (1028 samples, alpha 0.015, rescaled
hourly, weighted percentiles), a meter a count and 1/5/15-minute EWMA rates ticking every 5 s, a
timer a histogram of durations plus a meter of calls. `MetricTable` keeps one metric per
(host, name), picks each one's flush interval from the configured handlers, emits
`(host, name + "." + stat, value, timestamp)` tuples when an interval is due, expires idle metrics
and caps how many live at once. docs/metricsd.rst is the user-facing description.

Rules: no I/O, no logging, no clock reads. The table's calls take `now` (wall-clock epoch seconds,
which may jump either way: used only for the timestamps written) and `mono` (a monotonic reading,
defaulting to `now`: when flushes are due, idle expiry, and the metrics' own time, e.g. EWMA ticks
and reservoir decay, which see only `mono`). Flushes follow bucky.aggregate.schedule.FlushGrid:
due on `mono`, stamped with the wall-clock grid slot that ended. Randomness comes from an
injected `random.Random`. Emitted values are always finite; a stat that is not (float
overflow) is left out and counted.
"""

from __future__ import annotations

import heapq
import math
import random
import re
from bisect import bisect_right
from collections import Counter as CountMap
from collections.abc import Iterable
from itertools import accumulate
from operator import itemgetter, mul
from typing import NamedTuple, Protocol

from bucky.aggregate.schedule import FlushGrid, stamp
from bucky.protocol.metricsd import Action, Kind, Record

Number = int | float
Stat = tuple[str, Number]  # (suffix, value): the sample name is metric name + "." + suffix
Key = tuple[str | None, str]  # (host, metric name)
SampleTuple = tuple[str | None, str, Number, int]
Handler = tuple[re.Pattern[str], float, int]  # (pattern, interval seconds, priority)

RESERVOIR_SIZE = 1028
RESERVOIR_ALPHA = 0.015
RESCALE_AFTER = 3600.0  # seconds between reservoir rescales, as Coda Hale
TICK_INTERVAL = 5.0  # seconds between EWMA ticks
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("median", 0.5),
    ("p75", 0.75),
    ("p95", 0.95),
    ("p98", 0.98),
    ("p99", 0.99),
    ("p999", 0.999),
)

_BY_VALUE = itemgetter(1)  # reservoir entries are (priority, value, weight)

DEFAULT_MAX_METRICS = 10_000
DEFAULT_EXPIRE_INTERVALS = 360


class Metric(Protocol):
    def update(self, value: Number, now: float) -> None: ...
    def clear(self, now: float) -> None: ...
    def stats(self, now: float) -> list[Stat]: ...


# -- metrics --------------------------------------------------------------------------------------


class Counter:
    """A running total: each update adds its value (negative values subtract)."""

    __slots__ = ("count",)

    def __init__(self, now: float, rng: random.Random | None = None) -> None:
        self.count: Number = 0

    def update(self, value: Number, now: float) -> None:
        self.count += value

    def clear(self, now: float) -> None:
        self.count = 0

    def stats(self, now: float) -> list[Stat]:
        return [("count", self.count)]


class Gauge:
    """The last value sent. Cleared (or never set) it has no value and emits nothing."""

    __slots__ = ("value",)

    def __init__(self, now: float, rng: random.Random | None = None) -> None:
        self.value: Number | None = None

    def update(self, value: Number, now: float) -> None:
        self.value = value

    def clear(self, now: float) -> None:
        self.value = None

    def stats(self, now: float) -> list[Stat]:
        return [] if self.value is None else [("value", self.value)]


class Snapshot(NamedTuple):
    """Weighted view of a reservoir: values ascending, weights normalised to sum 1."""

    values: list[Number]
    weights: list[float]
    positions: list[float]  # positions[i] = sum(weights[:i]); the quantile where values[i] starts

    def quantile(self, q: float) -> Number:
        index = bisect_right(self.positions, q) - 1
        return self.values[min(max(index, 0), len(self.values) - 1)]

    # Plain sum() and d * d on purpose: math.fsum and ** raise OverflowError on huge values,
    # these give inf, which the table leaves out of the flush. map(mul) keeps a flush of
    # thousands of full reservoirs fast.
    def mean(self) -> float:
        return sum(map(mul, self.values, self.weights))

    def std(self, mean: float | None = None) -> float:
        """Weighted population standard deviation (as Coda Hale's WeightedSnapshot)."""
        if mean is None:
            mean = self.mean()
        deviations = [v - mean for v in self.values]
        return math.sqrt(sum(map(mul, map(mul, deviations, deviations), self.weights)))


class DecayingReservoir:
    """Exponentially decaying reservoir (Cormode et al. forward decay, as Coda Hale Metrics).

    Each value gets weight exp(alpha * (t - landmark)) and priority weight / u, u uniform in
    (0, 1]; the `size` highest priorities are kept (min-heap on priority). Weights grow with time,
    so the landmark moves to `now` every RESCALE_AFTER seconds and everything is scaled down by
    the same factor, which keeps weights finite and does not change any ratio between them.
    """

    __slots__ = ("size", "alpha", "rescale_after", "_rng", "_heap", "_landmark", "_latest")

    def __init__(
        self,
        now: float,
        rng: random.Random,
        size: int = RESERVOIR_SIZE,
        alpha: float = RESERVOIR_ALPHA,
        rescale_after: float = RESCALE_AFTER,
    ) -> None:
        self.size = size
        self.alpha = alpha
        self.rescale_after = rescale_after
        self._rng = rng
        self._heap: list[tuple[float, Number, float]] = []  # (priority, value, weight)
        self._landmark = now
        self._latest = now

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def landmark(self) -> float:
        """Time origin of the current weights (moves forward at each rescale)."""
        return self._landmark

    def weights(self) -> list[float]:
        """Raw (unnormalised) weights of the kept values, for inspection."""
        return [w for _, _, w in self._heap]

    def clear(self, now: float) -> None:
        self._heap = []
        self._landmark = self._latest = now

    def update(self, value: Number, now: float) -> None:
        # Time inside the reservoir never runs backwards: a clock stepped back would give new
        # values tiny weights (or, after a rescale, old values huge ones).
        if now < self._latest:
            now = self._latest
        self._latest = now
        if now - self._landmark >= self.rescale_after:
            self._rescale(now)
        weight = math.exp(self.alpha * (now - self._landmark))
        priority = weight / (1.0 - self._rng.random())  # 1 - [0, 1) is (0, 1]: never / 0
        heap = self._heap
        if len(heap) < self.size:
            heapq.heappush(heap, (priority, value, weight))
        elif priority > heap[0][0]:
            heapq.heapreplace(heap, (priority, value, weight))

    def _rescale(self, now: float) -> None:
        factor = math.exp(-self.alpha * (now - self._landmark))
        self._landmark = now
        # Scaling by a positive factor keeps heap order; values whose weight underflows to 0
        # (idle for many hours) can no longer influence anything and are dropped.
        kept = [(p * factor, v, w * factor) for p, v, w in self._heap if w * factor > 0.0]
        heapq.heapify(kept)
        self._heap = kept

    def snapshot(self) -> Snapshot | None:
        if not self._heap:
            return None
        entries = sorted(self._heap, key=_BY_VALUE)
        values = [e[1] for e in entries]
        weights = [e[2] for e in entries]
        total = sum(weights)
        if total > 0.0 and math.isfinite(total):
            scale = 1.0 / total
            weights = [w * scale for w in weights]
        else:  # cannot happen with rescaling in place; equal weights are the safe fallback
            weights = [1.0 / len(values)] * len(values)
        positions = [0.0, *accumulate(weights[:-1])]
        return Snapshot(values, weights, positions)


class Histogram:
    """Count of updates plus a decaying reservoir of the values, for percentiles."""

    __slots__ = ("count", "reservoir", "_stats")

    def __init__(self, now: float, rng: random.Random) -> None:
        self.count = 0
        self.reservoir = DecayingReservoir(now, rng)
        self._stats: list[Stat] | None = None  # normalised weights do not change with time alone

    def update(self, value: Number, now: float) -> None:
        self.count += 1
        self.reservoir.update(value, now)
        self._stats = None

    def clear(self, now: float) -> None:
        self.count = 0
        self.reservoir.clear(now)
        self._stats = None

    def stats(self, now: float) -> list[Stat]:
        if self._stats is None:
            self._stats = self._compute_stats()
        return self._stats

    def _compute_stats(self) -> list[Stat]:
        snap = self.reservoir.snapshot()
        if snap is None:  # no data: min/max/mean... are undefined, not 0
            return [("count", self.count)]
        mean = snap.mean()
        return [
            ("count", self.count),
            ("min", snap.values[0]),
            ("max", snap.values[-1]),
            ("mean", mean),
            ("std", snap.std(mean)),
            *((label, snap.quantile(q)) for label, q in PERCENTILES),
        ]


class Ewma:
    """Exponentially weighted moving average of a per-second rate, ticked every 5 s."""

    __slots__ = ("alpha", "rate", "uncounted", "initialized")

    def __init__(self, minutes: float) -> None:
        self.alpha = 1.0 - math.exp(-TICK_INTERVAL / (60.0 * minutes))
        self.rate = 0.0
        self.uncounted: Number = 0
        self.initialized = False

    def add(self, n: Number) -> None:
        self.uncounted += n

    def tick(self, ticks: int = 1) -> None:
        """Apply `ticks` ticks; events counted since the last tick all fall in the first one."""
        instant = self.uncounted / TICK_INTERVAL
        self.uncounted = 0
        if self.initialized:
            self.rate += self.alpha * (instant - self.rate)
        else:
            self.rate = instant
            self.initialized = True
        if ticks > 1:  # idle ticks: rate *= (1 - alpha) each, in closed form (O(1) after a gap)
            self.rate *= (1.0 - self.alpha) ** (ticks - 1)


class Meter:
    """Event count, mean rate since start (or clear), and 1/5/15-minute EWMA rates (per second)."""

    __slots__ = ("count", "start", "last_tick", "m1", "m5", "m15")

    def __init__(self, now: float, rng: random.Random | None = None) -> None:
        self._reset(now)

    def _reset(self, now: float) -> None:
        self.count: Number = 0
        self.start = now
        self.last_tick = now
        self.m1, self.m5, self.m15 = Ewma(1), Ewma(5), Ewma(15)

    def _tick_if_needed(self, now: float) -> None:
        if now < self.last_tick:  # clock stepped back: restart the 5 s grid from here
            self.last_tick = now
            return
        ticks = int((now - self.last_tick) // TICK_INTERVAL)
        if ticks:
            self.last_tick += ticks * TICK_INTERVAL
            self.m1.tick(ticks)
            self.m5.tick(ticks)
            self.m15.tick(ticks)

    def update(self, value: Number, now: float) -> None:
        self._tick_if_needed(now)
        self.count += value
        self.m1.add(value)
        self.m5.add(value)
        self.m15.add(value)

    def clear(self, now: float) -> None:
        self._reset(now)

    def stats(self, now: float) -> list[Stat]:
        self._tick_if_needed(now)
        elapsed = now - self.start
        mean_rate = self.count / elapsed if self.count and elapsed > 0 else 0.0
        return [
            ("count", self.count),
            ("rate_mean", mean_rate),
            ("rate_1m", self.m1.rate),
            ("rate_5m", self.m5.rate),
            ("rate_15m", self.m15.rate),
        ]


class Timer:
    """Histogram of durations (seconds) and a meter of calls; `count` is emitted once."""

    __slots__ = ("histogram", "meter")

    def __init__(self, now: float, rng: random.Random) -> None:
        self.histogram = Histogram(now, rng)
        self.meter = Meter(now)

    def update(self, value: Number, now: float) -> None:
        self.histogram.update(value, now)
        self.meter.update(1, now)

    def clear(self, now: float) -> None:
        self.histogram.clear(now)
        self.meter.clear(now)

    def stats(self, now: float) -> list[Stat]:
        # Both halves count the same calls: the meter's "count" would repeat the histogram's.
        return self.histogram.stats(now) + self.meter.stats(now)[1:]


METRIC_CLASSES: dict[Kind, type] = {
    Kind.COUNTER: Counter,
    Kind.GAUGE: Gauge,
    Kind.HISTOGRAM: Histogram,
    Kind.METER: Meter,
    Kind.TIMER: Timer,
}


def make_metric(kind: Kind, now: float, rng: random.Random) -> Metric:
    return METRIC_CLASSES[kind](now, rng)


# -- the table ------------------------------------------------------------------------------------


def next_flush_time(now: float, interval: float) -> float:
    """The first multiple of `interval` after `now`: flushes land on a wall-clock grid."""
    return (math.floor(now / interval) + 1) * interval


def _is_finite(value: Number) -> bool:
    return type(value) is int or math.isfinite(value)


class _Entry:
    __slots__ = ("metric", "kind", "interval", "last_seen")

    def __init__(self, metric: Metric, kind: Kind, interval: float, last_seen: float) -> None:
        self.metric = metric
        self.kind = kind
        self.interval = interval
        self.last_seen = last_seen


class _Schedule:
    """The metrics that share one flush interval, and when they are next due."""

    __slots__ = ("interval", "grid", "entries")

    def __init__(self, interval: float, now: float | None, mono: float | None = None) -> None:
        self.interval = interval
        self.grid = FlushGrid(interval)
        # Without a `now` (metrics adopted on reload) the first due() puts it on the grid.
        if now is not None:
            self.grid.anchor(now, now if mono is None else mono)
        self.entries: dict[Key, _Entry] = {}

    @property
    def next_flush(self) -> float | None:
        """Monotonic time of the next flush (None until anchored)."""
        return self.grid.deadline if self.grid.anchored else None


class CarriedMetric(NamedTuple):
    """A live metric handed to a new table on config reload (picklable)."""

    host: str | None
    name: str
    kind: Kind
    metric: Metric
    last_seen: float


class MetricTable:
    """All live metrics of one MetricsD input, keyed by (host, name).

    A name has one kind per host: an update of another kind is dropped and counted (as Coda Hale's
    registry refuses it), since both would write the same Graphite paths. `counters` receives
    "metrics_created", "metrics_expired", "dropped.max_metrics",
    "dropped.kind_mismatch", "dropped.unknown_metric" (clear/delete of a metric that does not
    exist), "dropped.not_finite" (a stat that overflowed), and "updates", "clears", "deletes"
    (records applied).
    """

    def __init__(
        self,
        *,
        rng: random.Random,
        counters: CountMap[str],
        default_interval: float,
        handlers: Iterable[Handler] = (),
        max_metrics: int = DEFAULT_MAX_METRICS,
        expire_intervals: float = DEFAULT_EXPIRE_INTERVALS,
    ) -> None:
        # Stable sort: among equal priorities the config order decides.
        self._handlers = sorted(handlers, key=lambda h: -h[2])
        for _, interval, _ in [(None, default_interval, 0), *self._handlers]:
            if not (interval > 0 and math.isfinite(interval)):
                raise ValueError(f"flush interval must be a positive number, not {interval!r}")
        self._default_interval = default_interval
        self._max_metrics = max_metrics
        self._expire_intervals = expire_intervals
        self._rng = rng
        self.counters = counters
        self._entries: dict[Key, _Entry] = {}
        self._schedules: dict[float, _Schedule] = {}
        self._next_due = math.inf  # earliest deadline (monotonic) of any schedule: fast path
        self._steps_retired = 0  # clock steps counted by schedules since removed

    def __len__(self) -> int:
        return len(self._entries)

    def interval_for(self, name: str) -> float:
        """Interval of the first handler, by descending priority then config order, that matches.

        `re.match` semantics (anchored at the start of the name, not at its end), as Bucky 2 used;
        the subject is the metric name as sent, without the host.
        """
        for pattern, interval, _ in self._handlers:
            if pattern.match(name):
                return interval
        return self._default_interval

    def _add(
        self, key: Key, kind: Kind, metric: Metric, last_seen: float, now: float | None,
        mono: float | None = None,
    ) -> _Entry:
        interval = self.interval_for(key[1])
        entry = _Entry(metric, kind, interval, last_seen)
        schedule = self._schedules.get(interval)
        if schedule is None:
            schedule = self._schedules[interval] = _Schedule(interval, now, mono)
            first = schedule.next_flush
            self._next_due = -math.inf if first is None else min(self._next_due, first)
        schedule.entries[key] = entry
        self._entries[key] = entry
        return entry

    def _remove(self, key: Key, entry: _Entry) -> None:
        del self._entries[key]
        del self._schedules[entry.interval].entries[key]
        # An empty schedule stays until its next flush finds it empty (see due()).

    def apply(
        self, host: str | None, record: Record, now: float, mono: float | None = None
    ) -> None:
        """Apply one decoded record."""
        wall = now
        if mono is not None:
            now = mono  # the metrics' own time is the monotonic one
        key = (host, record.name)
        entry = self._entries.get(key)
        if record.action == Action.UPDATE:
            if entry is None:
                if len(self._entries) >= self._max_metrics:
                    self.counters["dropped.max_metrics"] += 1
                    return
                metric = make_metric(record.kind, now, self._rng)
                entry = self._add(key, record.kind, metric, now, wall, now)
                self.counters["metrics_created"] += 1
            elif entry.kind != record.kind:
                self.counters["dropped.kind_mismatch"] += 1
                return
            self.counters["updates"] += 1
            entry.metric.update(record.value, now)  # an UPDATE record always carries a value
            entry.last_seen = now
            return
        if entry is None:
            self.counters["dropped.unknown_metric"] += 1
        elif entry.kind != record.kind:
            self.counters["dropped.kind_mismatch"] += 1
        elif record.action == Action.CLEAR:
            entry.metric.clear(now)
            entry.last_seen = now
            self.counters["clears"] += 1
        else:
            self._remove(key, entry)
            self.counters["deletes"] += 1

    @property
    def clock_steps(self) -> int:
        """Wall-clock steps seen at flushes, over all intervals."""
        return sum(s.grid.steps for s in self._schedules.values()) + self._steps_retired

    def due(self, now: float, mono: float | None = None) -> list[SampleTuple]:
        """Samples of every interval whose flush time has come (cheap when none has)."""
        if mono is None:
            mono = now
        if mono < self._next_due:
            return []
        samples: list[SampleTuple] = []
        for interval, schedule in list(self._schedules.items()):
            grid = schedule.grid
            if not grid.anchored:  # adopted on reload: on the grid from now on
                grid.anchor(now, mono)
            if grid.due(mono):
                if not schedule.entries:
                    self._steps_retired += grid.steps
                    del self._schedules[interval]
                    continue
                self._flush(schedule, stamp(grid.take(now, mono)), mono, samples)
        self._next_due = min(
            (s.grid.deadline for s in self._schedules.values()), default=math.inf
        )
        return samples

    def flush_all(self, now: float, mono: float | None = None) -> list[SampleTuple]:
        """Samples of every live metric, due or not (final flush at shutdown), stamped `now`."""
        samples: list[SampleTuple] = []
        for schedule in self._schedules.values():
            self._flush(schedule, int(now), now if mono is None else mono, samples)
        return samples

    def _flush(self, schedule: _Schedule, timestamp: int, now: float,
               out: list[SampleTuple]) -> None:
        idle_limit = self._expire_intervals * schedule.interval
        expired: list[tuple[Key, _Entry]] = []
        non_finite = 0
        for key, entry in schedule.entries.items():
            if now - entry.last_seen > idle_limit:
                expired.append((key, entry))
                continue
            host, name = key
            for suffix, value in entry.metric.stats(now):
                if _is_finite(value):
                    out.append((host, f"{name}.{suffix}", value, timestamp))
                else:
                    non_finite += 1
        for key, entry in expired:
            self._remove(key, entry)
        if expired:
            self.counters["metrics_expired"] += len(expired)
        if non_finite:
            self.counters["dropped.not_finite"] += non_finite

    def export(self) -> list[CarriedMetric]:
        """The live metrics, to be adopted by the table of a reloaded input."""
        return [
            CarriedMetric(host, name, e.kind, e.metric, e.last_seen)
            for (host, name), e in self._entries.items()
        ]

    def adopt(self, carried: Iterable[CarriedMetric]) -> None:
        """Take over metrics from a previous table; intervals follow this table's handlers."""
        for item in carried:
            key = (item.host, item.name)
            if key in self._entries:
                continue
            if len(self._entries) >= self._max_metrics:
                self.counters["dropped.max_metrics"] += 1
                continue
            self._add(key, item.kind, item.metric, item.last_seen, None)
