"""Bucky's own metrics: every process's counters become samples `<prefix>.<process>.<counter>`.

The prefix is `self_metrics_prefix` (default "bucky.{host}", `{host}` = this machine's short host
name as one path component), so two Buckys writing to one carbon keep their numbers apart.
Counters are cumulative inside a process; what is emitted is the change since the last report, so
Graphite shows events per interval (like StatsD counts). Gauges (queue depths) are emitted as is;
`gauge_names` says which of the names just collected were gauges (the status server needs it).
The interval comes from `self_metrics_interval` (0 = off). The schedule runs on the caller's
monotonic `now`; the timestamp is the wall-clock grid slot (a multiple of the interval) given by
bucky.aggregate.schedule.FlushGrid, so a clock step neither stops the reports nor stamps two
reports with the same slot in a row (which would overwrite a delta in Graphite).

Counter names follow one style: lower_case words, '.' only between a kind and its reason
(`dropped.queue_full`, `errors.tick`, `bad_datagrams.<reason>`, `rejected.<reason>`).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from bucky.aggregate.schedule import FlushGrid, stamp

if TYPE_CHECKING:
    from bucky.config import Config

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def short_host(hostname: str | None = None) -> str:
    """The short host name as one Graphite path component: up to the first '.', other
    characters than letters, digits, '_' and '-' replaced by '_' ("localhost" when empty)."""
    name = (hostname if hostname is not None else socket.gethostname()).split(".")[0].strip()
    return _UNSAFE.sub("_", name) or "localhost"


def expand_prefix(template: str, hostname: str | None = None) -> str:
    """`self_metrics_prefix` with `{host}` filled in, without a trailing '.'."""
    return template.replace("{host}", short_host(hostname)).strip(".")


def prefix_from_config(cfg: Config) -> str:
    return expand_prefix(cfg.self_metrics_prefix)


def process_component(process: str) -> str:
    """A process title ("collectd.1") as one path component ("collectd_1")."""
    return process.replace(".", "_")


class SelfMetrics:
    def __init__(self, process: str, interval: float, wallclock: Callable[[], float],
                 prefix: str = "bucky") -> None:
        self._prefix = (prefix + "." if prefix else "") + process_component(process) + "."
        self._interval = interval
        self._wallclock = wallclock
        self._last: dict[str, float] = {}
        self._grid = FlushGrid(interval) if interval > 0 else None
        self.gauge_names: list[str] = []

    @classmethod
    def from_config(cls, process: str, cfg: Config, wallclock: Callable[[], float]) -> SelfMetrics:
        """The self-metrics of `process` as the config sets them (interval, prefix)."""
        return cls(process, cfg.self_metrics_interval, wallclock, prefix_from_config(cfg))

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
        self.gauge_names = [prefix + key for key in (gauges or {})]
        for key, value in (gauges or {}).items():
            out.append((None, prefix + key, value, ts))
        return out
