"""The reference's own statistics of N StatsD workers, merged into the one flush stats.js emits.

Every worker flushes its share of the keys on the same grid; the statistics StatsD keeps about
itself (bad_lines_seen, packets_received, metrics_received, numStats, timestamp_lag,
processing_time) must still come out once per flush timestamp, as from one process. The other
workers report theirs to worker 0 (over the mesh); worker 0 emits once per timestamp when all
have reported, or after `wait` seconds (counted in `stats_merge_incomplete`):
- the own counters summed, their rates recomputed from the sums (rate = count / flush_time);
- timestamp_lag and processing_time: the largest;
- numStats: the user's series of every worker, plus the own counters and timestamp_lag once.

State over time with `now` injected (the rules of bucky/aggregate/): no clock read here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from bucky.aggregate.statsd import OwnStatNames
from bucky.sample import Sample


class StatsMerger:
    """Worker 0's merge of the own statistics of every worker, per flush timestamp."""

    def __init__(self, names: OwnStatNames, flush_time: float, workers: int, wait: float,
                 emit: Callable[[list[Sample]], None], counters: Counter[str]) -> None:
        self.workers = workers
        self.wait = wait
        self._names = names
        self._flush_time = flush_time
        self._emit = emit
        self.counters = counters
        self._pending: dict[int, tuple[float, set[int], list[dict[str, float]]]] = {}

    def add(self, worker: int, ts: int, values: dict[str, float], now: float) -> None:
        """Worker `worker`'s own statistics of the flush stamped `ts`."""
        first, seen, parts = self._pending.setdefault(ts, (now, set(), []))
        seen.add(worker)
        parts.append(values)
        if len(seen) >= self.workers:
            self._out(ts)

    def poll(self, now: float, force: bool = False) -> None:
        """Emit what waited long enough (everything when `force`: the last flush)."""
        for ts, (first, seen, _) in sorted(self._pending.items()):
            if force or now - first >= self.wait:
                if len(seen) < self.workers:
                    self.counters["stats_merge_incomplete"] += 1
                self._out(ts)

    def _out(self, ts: int) -> None:
        _, _, parts = self._pending.pop(ts)
        names = self._names
        num_stats, largest, lag_name = names.num_stats, names.largest, names.timestamp_lag
        merged: dict[str, float] = {}
        own_counters: set[str] = set()
        lag = False
        users = 0.0
        for values in parts:
            counted = 0
            for name, value in values.items():
                if name == num_stats:
                    continue
                if name in largest:
                    merged[name] = max(merged.get(name, value), value)
                else:
                    merged[name] = merged.get(name, 0.0) + value
                    own_counters.add(name)
                    counted += 1
            lag_here = lag_name in values
            lag = lag or lag_here
            if num_stats in values:  # this worker's numStats minus what is counted once below
                users += values[num_stats] - counted / 2 - (1 if lag_here else 0)
        for rate, count in names.rates.items():
            if rate in merged and count in merged:
                merged[rate] = merged[count] / self._flush_time
        samples: list[Sample] = [(None, name, value, ts) for name, value in merged.items()]
        if any(num_stats in values for values in parts):
            total = users + len(own_counters) / 2 + (1 if lag else 0)
            samples.append((None, num_stats, int(total) if total.is_integer() else total, ts))
        self._emit(samples)
