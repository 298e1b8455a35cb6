"""Bucky 2 style custom client classes, run inside an output process."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bucky.daemon.backoff import Backoff
from bucky.daemon.outputs.base import BUSY_POLL, OutputClient
from bucky.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from bucky.config import Config

log = logging.getLogger("bucky.daemon.outputs")


class CustomClientAdapter(OutputClient):
    """Runs a Bucky 2 style client class (`bucky.client.Client`) in an output process.

    The class is instantiated as `cls(cfg, None)` on first use inside the process, and gets
    `send(host, name, value, timestamp)` for every sample, raw (no name rules), as in Bucky 2;
    `notify(notification)` for collectd notifications; `tick()` about once a second; `close()`.
    Its exceptions are counted (`errors`) and logged at most once a minute; they never stop the
    process or the other samples. A constructor that fails is retried with backoff (1 s .. 60 s)
    and samples arriving meanwhile are dropped (`dropped.unavailable`). The client's own calls
    run inline: a client that blocks, blocks only its own output process.
    """

    TICK_EVERY = 1.0

    def __init__(self, cls: type, cfg: Config, *, name: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.name = name or f"custom_{cls.__name__}"
        self._cls = cls
        self._cfg = cfg
        self._clock = clock
        self._instance: Any = None
        self._backoff = Backoff(1.0, 2.0, 60.0, -1, clock)
        self._ratelog = RateLimitedLog(log, 60.0, clock)
        self._next_tick = float("-inf")

    def _client(self, now: float) -> Any:
        if self._instance is None and self._backoff.ready(now):
            try:
                self._instance = self._cls(self._cfg, None)
            except Exception as exc:
                self._backoff.failure(now)
                self.counters["errors.init"] += 1
                self._ratelog.error("init", "%s(cfg, None) failed: %r; retrying in %.0f s",
                                    self._cls.__name__, exc,
                                    self._backoff.current_delay())
        return self._instance

    def send(self, samples: list[tuple], now: float, front: bool = False) -> None:
        client = self._client(now)
        if client is None:
            self.counters["dropped.unavailable"] += len(samples)
            return
        send = client.send
        errors = 0
        error: Exception | None = None
        for sample in samples:
            try:
                host, name, value, timestamp = sample
                send(host, name, value, timestamp)
            except Exception as exc:
                errors += 1
                error = exc
        self.counters["sent"] += len(samples) - errors
        if errors:
            self.counters["errors"] += errors
            self._ratelog.error("send", "send() failed for %d of %d samples, last: %r",
                                errors, len(samples), error)

    def notify(self, notification: Any) -> None:
        client = self._client(self._clock())
        if client is None:
            self.counters["dropped.unavailable"] += 1
            return
        try:
            client.notify(notification)
            self.counters["notifications"] += 1
        except Exception as exc:
            self.counters["errors"] += 1
            self._ratelog.error("notify", "notify() failed: %r", exc)

    def poll(self, now: float) -> float:
        client = self._client(now)
        if client is None:
            return max(self._backoff.wait_time(now), BUSY_POLL)
        if now >= self._next_tick:
            self._next_tick = now + self.TICK_EVERY
            try:
                client.tick()
            except Exception as exc:
                self.counters["errors"] += 1
                self._ratelog.error("tick", "tick() failed: %r", exc)
        return max(0.0, self._next_tick - now)

    def close(self) -> None:
        client, self._instance = self._instance, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:
                log.error("close() failed: %r", exc)


