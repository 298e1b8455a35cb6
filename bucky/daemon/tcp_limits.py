"""What an input may hold in TCP connections: at most its bound over all listeners and, if it says
so, at most a bound per listener; no connection that makes no progress for longer than its idle
timeout. Pure bookkeeping: no sockets and no clock of its own (the caller passes `mono`);
bucky.daemon.tcp_streams applies it.

Rules:
- At most `max_connections` (the input's `max_tcp_connections`) at once; with `per_listener`
  (the input's `max_tcp_connections_per_listener`) also at most that many per listener, so
  clients flooding one port (the carbon pickle port, say) never refuse the other's.
- With an idle timeout (the input's `idle_timeout`, e.g. `carbon_idle_timeout`), a connection
  whose stream completed no line or frame (`Stream.completed` unchanged) for that long is due to
  be closed, whether it sends nothing or one byte a second: otherwise such clients hold every
  slot forever and refuse every honest one. `expired()` looks at most once a second.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

Conn = TypeVar("Conn", bound=Hashable)
SWEEP_PERIOD = 1.0  # seconds between looks for idle connections


class _Progress:
    __slots__ = ("completed", "kind", "at")

    def __init__(self, kind: str, completed: int, at: float) -> None:
        self.kind = kind
        self.completed = completed
        self.at = at


class ConnectionLimits(Generic[Conn]):
    def __init__(self, max_connections: int, per_listener: int | None = None,
                 idle_timeout: float | None = None) -> None:
        self.max_connections = max_connections
        self.per_listener = max_connections if per_listener is None else per_listener
        self.idle_timeout = idle_timeout
        self._open: dict[str, int] = {}
        self._progress: dict[Conn, _Progress] = {}
        self._next_sweep = 0.0

    def full(self, kind: str) -> bool:
        """True when the next client of the listener of `kind` is to be refused."""
        return (len(self._progress) >= self.max_connections
                or self._open.get(kind, 0) >= self.per_listener)

    def opened(self, conn: Conn, kind: str, completed: int, mono: float) -> None:
        self._progress[conn] = _Progress(kind, completed, mono)
        self._open[kind] = self._open.get(kind, 0) + 1

    def fed(self, conn: Conn, completed: int, mono: float) -> None:
        """The connection's stream was fed and has completed `completed` lines or frames so far:
        a change is progress."""
        progress = self._progress.get(conn)
        if progress is not None and completed != progress.completed:
            progress.completed = completed
            progress.at = mono

    def closed(self, conn: Conn) -> None:
        progress = self._progress.pop(conn, None)
        if progress is not None:
            self._open[progress.kind] -= 1

    def expired(self, mono: float) -> list[Conn]:
        """Connections without progress for idle_timeout seconds (the caller closes them)."""
        if self.idle_timeout is None or mono < self._next_sweep:
            return []
        self._next_sweep = mono + SWEEP_PERIOD
        oldest = mono - self.idle_timeout
        return [conn for conn, progress in self._progress.items() if progress.at <= oldest]


__all__ = ["SWEEP_PERIOD", "ConnectionLimits"]
