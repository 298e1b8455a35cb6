"""The TCP connections an input's loop holds: how many each listener may keep, and which ones make
no progress and are to be closed. No sockets and no clock of its own (the loop passes `mono`).

Rules:
- Each listener gets an equal share of the input's `max_tcp_connections` (two listeners: half
  each), so clients flooding one port (the carbon pickle port, say) never refuse the other's.
- With an idle timeout (the input's `idle_timeout`, e.g. `carbon_idle_timeout`), a connection
  whose stream has completed no line or frame (`Stream.completed` unchanged) for that long is due
  to be closed, whether it sends nothing or one byte a second: otherwise such clients hold every
  slot forever and refuse every honest one. `expired()` looks at most once a second. Without
  an idle timeout `Stream.completed` is never read (streams of other inputs need not count).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from typing import Generic, TypeVar

from bucky.inputs.base import Stream

Conn = TypeVar("Conn", bound=Hashable)
SWEEP_PERIOD = 1.0  # seconds between looks for idle connections


class _Entry:
    __slots__ = ("completed", "kind", "progress_at", "stream")

    def __init__(self, kind: str, stream: Stream, completed: int, mono: float) -> None:
        self.kind = kind
        self.stream = stream
        self.completed = completed
        self.progress_at = mono


class TcpConnections(Generic[Conn]):
    def __init__(self, max_connections: int, kinds: Sequence[str],
                 idle_timeout: float | None = None) -> None:
        self.per_listener = max(1, max_connections // max(1, len(set(kinds))))
        self.idle_timeout = idle_timeout
        self._entries: dict[Conn, _Entry] = {}
        self._open: dict[str, int] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Conn]:
        return iter(self._entries)

    def __contains__(self, conn: object) -> bool:
        return conn in self._entries

    def full(self, kind: str) -> bool:
        """True when the listener of `kind` holds its share: refuse the next client."""
        return self._open.get(kind, 0) >= self.per_listener

    def add(self, conn: Conn, kind: str, stream: Stream, mono: float) -> None:
        completed = stream.completed if self.idle_timeout is not None else 0
        self._entries[conn] = _Entry(kind, stream, completed, mono)
        self._open[kind] = self._open.get(kind, 0) + 1

    def stream(self, conn: Conn) -> Stream:
        return self._entries[conn].stream

    def fed(self, conn: Conn, mono: float) -> None:
        """The loop fed the connection's stream: a completed line or frame is progress."""
        if self.idle_timeout is None:
            return
        entry = self._entries.get(conn)
        if entry is not None and entry.stream.completed != entry.completed:
            entry.completed = entry.stream.completed
            entry.progress_at = mono

    def remove(self, conn: Conn) -> Stream:
        entry = self._entries.pop(conn)
        self._open[entry.kind] -= 1
        return entry.stream

    def expired(self, mono: float) -> list[Conn]:
        """Connections without progress for idle_timeout seconds (the caller closes them)."""
        if self.idle_timeout is None or mono < self._next_sweep:
            return []
        self._next_sweep = mono + SWEEP_PERIOD
        oldest = mono - self.idle_timeout
        return [conn for conn, entry in self._entries.items() if entry.progress_at <= oldest]


__all__ = ["SWEEP_PERIOD", "TcpConnections"]
