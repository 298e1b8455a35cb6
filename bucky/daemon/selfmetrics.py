"""Bucky's own metrics: every process's counters become samples `bucky.<process>.<counter>`.

Counters are cumulative inside a process; what is emitted is the change since the last report, so
Graphite shows events per interval (like StatsD counts). Gauges (queue depths) are emitted as is.
The interval comes from `self_metrics_interval` (0 = off). The schedule runs on the caller's
monotonic `now`; the timestamp is the wall-clock grid slot (a multiple of the interval) given by
bucky.aggregate.schedule.FlushGrid, so a clock step neither stops the reports nor stamps two
reports with the same slot in a row (which would overwrite a delta in Graphite).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from bucky.aggregate.schedule import FlushGrid, stamp


class SelfMetrics:
    def __init__(self, process: str, interval: float, wallclock: Callable[[], float]) -> None:
        self._prefix = "bucky." + process.replace(".", "_") + "."
        self._interval = interval
        self._wallclock = wallclock
        self._last: dict[str, float] = {}
        self._grid = FlushGrid(interval) if interval > 0 else None

    def due(self, now: float) -> bool:
        """`now` is monotonic time."""
        grid = self._grid
        if grid is None:
            return False
        if not grid.anchored:
            grid.anchor(self._wallclock(), now)
            return False
        return grid.due(now)

    def collect(self, now: float, counters: Iterable[Mapping[str, float]],
                gauges: Mapping[str, float] | None = None) -> list[tuple]:
        """Samples for this interval (call when `due`, or at shutdown)."""
        grid, wall = self._grid, self._wallclock()
        if grid is None or not grid.anchored:
            ts = int(wall)
        elif grid.due(now):
            ts = stamp(grid.take(wall, now))
        else:  # at shutdown: the end of the interval in progress, never the last slot again
            ts = stamp(grid.final_slot(wall))
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
