"""Reconnect pacing for outputs: exponential backoff with an attempt budget per outage. Pure logic.

After the n-th failed attempt of an outage the next attempt waits
`min(delay * factor ** (n - 1), max_delay)`: 1, 1.5, 2.25, ... 60 s with the defaults. The first
attempt (start-up, or right after a connection that had been healthy) is immediate.

`max_attempts` failures make the outage "exhausted" (`failure()` returns True exactly once, so
the caller can log and drop what it buffered); attempts go on after that on the same schedule
(so at most every `max_delay`), and the relay recovers by itself. A negative `max_attempts` never
exhausts.

A connection that dies within `stable_after` seconds (a peer that accepts and resets at once)
counts as a failed attempt, so such a peer is retried on the same growing schedule instead of in
a tight loop. Only a connection that lived that long resets the schedule.

Time comes from the injected `clock` (or the `now` argument), so tests never sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        delay: float,
        factor: float,
        max_delay: float,
        max_attempts: int,
        clock: Callable[[], float] = time.monotonic,
        stable_after: float | None = None,
    ) -> None:
        self.delay = max(0.0, float(delay))
        self.factor = max(1.0, float(factor))
        self.max_delay = max(self.delay, float(max_delay))
        self.max_attempts = int(max_attempts)
        self.stable_after = max(1.0, self.delay) if stable_after is None else float(stable_after)
        self._clock = clock
        self.attempts = 0  # failed attempts in the current outage
        self._next_at = float("-inf")  # no attempt before this time
        self._connected_at: float | None = None

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    @property
    def exhausted(self) -> bool:
        return 0 <= self.max_attempts <= self.attempts

    def current_delay(self) -> float:
        """The wait that follows the latest failure (0 before any)."""
        if self.attempts == 0:
            return 0.0
        try:
            return min(self.delay * self.factor ** (self.attempts - 1), self.max_delay)
        except OverflowError:  # factor ** attempts beyond float range, when retrying forever
            return self.max_delay

    def ready(self, now: float | None = None) -> bool:
        """May an attempt start now?"""
        return self._now(now) >= self._next_at

    def wait_time(self, now: float | None = None) -> float:
        """Seconds until the next attempt may start (0 if it may start now)."""
        return max(0.0, self._next_at - self._now(now))

    def failure(self, now: float | None = None) -> bool:
        """Record a failed attempt and schedule the next; True when this one used up the budget."""
        was_exhausted = self.exhausted
        self.attempts += 1
        self._connected_at = None
        self._next_at = self._now(now) + self.current_delay()
        return self.exhausted and not was_exhausted

    def connected(self, now: float | None = None) -> None:
        """An attempt succeeded; the schedule resets once the connection has proved stable."""
        self._connected_at = self._now(now)

    def is_stable(self, now: float | None = None) -> bool:
        return (self._connected_at is not None
                and self._now(now) - self._connected_at >= self.stable_after)

    def disconnected(self, now: float | None = None) -> bool:
        """The connection was lost. Returns what `failure()` returns when it was short-lived
        (see the module docstring); after a stable connection, resets and allows an attempt now."""
        now = self._now(now)
        if self.is_stable(now):
            self.reset()
            return False
        return self.failure(now)

    def reset(self) -> None:
        self.attempts = 0
        self._next_at = float("-inf")
        self._connected_at = None
