"""The contract between an output process's loop and its output client.

Each output runs in its own process, whose loop calls `send(batch, now)`, `poll(now)` (non-blocking
progress), `flush(deadline)` at shutdown and `close()`. Rules for every client:

- Clients are built inside their output process by the factory `output_factories` names; the
  constructor does no I/O, sockets and threads appear on the first `poll`/`send`.
- `send` and `poll` never wait on the network: sockets are non-blocking, host names resolve in a
  daemon thread (numeric addresses at once), and a resolution failure counts as a failed attempt.
- Everything lost is counted in `counters` (cumulative; the process turns them into self-metrics)
  and what is held right now in `gauges()` (emitted as is).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

IDLE_POLL = 1.0  # nothing to do until data arrives
BUSY_POLL = 0.01  # socket full or connect in progress: look again soon, cheaply


class OutputClient:
    """The contract between an output process's loop and one output."""

    name: str = "output"

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()

    def send(self, samples: list[tuple], now: float, front: bool = False) -> None:
        """Take a batch; never blocks. `front`: self-metrics, to go ahead of queued data."""
        raise NotImplementedError

    def notify(self, notification: Any) -> None:
        """A collectd Notification record; only custom clients do something with it."""

    def poll(self, now: float) -> float:
        """Non-blocking progress; returns seconds until it wants to be polled again."""
        return IDLE_POLL

    def pending(self) -> int:
        """Datapoints held, not yet written."""
        return 0

    def gauges(self) -> Mapping[str, float]:
        """Levels to report as self-metrics as they are (not as changes): at least `pending`."""
        return {"pending": self.pending()}

    def status(self) -> list[dict[str, Any]]:
        """Per destination: label, state ("up", "connecting", "down"), pending, counters."""
        return []

    def flush(self, deadline: float) -> bool:
        """Block until everything is written or `deadline` (time.monotonic()) passes."""
        return True

    def close(self) -> None:
        """Release sockets; whatever is still pending is counted as dropped."""
