"""MetricsD input: what the daemon's socket loop calls with each datagram and on every tick.

datagram -> bucky.protocol.metricsd.decode -> bucky.aggregate.metricsd.MetricTable -> samples
`(host, "<name>.<stat>", value, timestamp)` on the sink when a metric's flush interval is due.

Rules: no sockets, no threads; `handle` never raises (a bad datagram is counted under
"bad_datagrams.<reason>", logged at most once a minute per reason, and the good records before
the bad one are still applied); every call takes `now` (wall-clock epoch seconds, for the
timestamps written) and `mono` (a monotonic reading, for schedules and the metrics' own time;
defaults to `now`). On a config
reload `carry_state()` hands the live metrics to the next instance, which re-assigns intervals
from its own handlers.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import TYPE_CHECKING, Any, NamedTuple

from bucky.addresses import format_peer
from bucky.aggregate.metricsd import (
    CarriedMetric,
    MetricTable,
)
from bucky.errors import ProtocolError
from bucky.inputs.base import InputHandler, Sink
from bucky.protocol.metricsd import decode
from bucky.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from bucky.config import Config

log = logging.getLogger(__name__)

LOG_PERIOD = 60.0  # seconds: at most one log line per reason in this period


class MetricsdState(NamedTuple):
    """What a reloaded input inherits: live metrics, cumulative counters, the random stream."""

    metrics: list[CarriedMetric]
    counters: Counter[str]
    rng: random.Random


class MetricsdInput(InputHandler):
    """The MetricsD input handler (the contract: bucky.inputs.base)."""

    name = "metricsd"

    def __init__(
        self,
        cfg: Config,
        sink: Sink,
        state: MetricsdState | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.counters: Counter[str] = Counter(state.counters) if state else Counter()
        self._sink = sink
        self._handed_over = False
        self._rng = rng or (state.rng if state else random.Random())
        self._ratelog = RateLimitedLog(log, LOG_PERIOD)
        self._table = MetricTable(
            rng=self._rng,
            counters=self.counters,
            default_interval=cfg.metricsd_default_interval,
            handlers=cfg.metricsd_handlers,
            max_metrics=cfg.metricsd_max_metrics,
            expire_intervals=cfg.metricsd_expire_intervals,
        )
        if state is not None:
            self._table.adopt(state.metrics)

    def __len__(self) -> int:
        """Number of live metrics."""
        return len(self._table)

    def handle(self, data: bytes, addr: Any, now: float, mono: float | None = None) -> None:
        if mono is None:
            mono = now
        self.counters["datagrams"] += 1
        decoded = decode(data)
        try:
            apply = self._table.apply
            host = decoded.host
            for record in decoded.records:
                apply(host, record, now, mono)
        except Exception:  # a bug in the metric code must not take the input down
            self.counters["errors.internal"] += 1
            self._ratelog.log_at(logging.ERROR, "internal", mono,
                                 "metricsd: error applying a datagram from %s", format_peer(addr),
                                 exc_info=True)
        for error in decoded.errors:
            self._bad_datagram(error, addr, mono)

    def tick(self, now: float, mono: float | None = None) -> None:
        table = self._table
        steps = table.clock_steps
        self._emit(table.due(now, mono))
        if table.clock_steps > steps:
            self.counters["clock_steps"] += table.clock_steps - steps

    def close(self, now: float, mono: float | None = None) -> None:
        """Final flush of every live metric, unless carry_state() handed them to a successor
        (a reload): then the successor emits them and close() emits nothing."""
        if self._handed_over:
            return
        self._emit(self._table.flush_all(now, mono))

    def carry_state(self) -> MetricsdState:
        self._handed_over = True
        return MetricsdState(self._table.export(), Counter(self.counters), self._rng)

    def _emit(self, samples: list[tuple]) -> None:
        if samples:
            self.counters["samples"] += len(samples)
            self._sink.extend(samples)

    def _bad_datagram(self, err: ProtocolError, addr: Any, now: float) -> None:
        self.counters[f"bad_datagrams.{err.reason}"] += 1
        self._ratelog.log_at(logging.WARNING, err.reason, now,
                             "metricsd: bad datagram from %s: %s", format_peer(addr), err)


