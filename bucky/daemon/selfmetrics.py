"""Bucky's own metrics: every process's counters become samples `bucky.<process>.<counter>`.

Counters are cumulative inside a process; what is emitted is the change since the last report, so
Graphite shows events per interval (like StatsD counts). Gauges (queue depths) are emitted as is.
The timestamp is wall-clock seconds; the interval comes from `self_metrics_interval` (0 = off).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping


class SelfMetrics:
    def __init__(self, process: str, interval: float, wallclock: Callable[[], float]) -> None:
        self._prefix = "bucky." + process.replace(".", "_") + "."
        self._interval = interval
        self._wallclock = wallclock
        self._last: dict[str, float] = {}
        self._next_due: float | None = None

    def due(self, now: float) -> bool:
        if self._interval <= 0:
            return False
        if self._next_due is None:
            self._next_due = now + self._interval
            return False
        return now >= self._next_due

    def collect(self, now: float, counters: Iterable[Mapping[str, float]],
                gauges: Mapping[str, float] | None = None) -> list[tuple]:
        """Samples for this interval (call when `due`, or at shutdown)."""
        if self._interval > 0:
            self._next_due = now + self._interval
        ts = int(self._wallclock())
        totals: dict[str, float] = {}
        for mapping in counters:
            for key, value in mapping.items():
                totals[key] = totals.get(key, 0) + value
        out = []
        last = self._last
        prefix = self._prefix
        for key, total in totals.items():
            delta = total - last.get(key, 0)
            last[key] = total
            out.append((None, prefix + key, delta, ts))
        for key, value in (gauges or {}).items():
            out.append((None, prefix + key, value, ts))
        return out
