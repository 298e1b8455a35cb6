"""The memory buffer of a Graphite destination: encoded chunks waiting for the socket."""

from __future__ import annotations

from collections import deque
from typing import Any

COALESCE_BYTES = 64 * 1024  # small chunks (self-metrics, tiny batches) are joined into one write


class _ChunkBuffer:
    """Encoded chunks waiting for the socket, bounded in datapoints (by whole chunks).

    The hooks `_overflow`, `tick`, `written`, `persist`, `attach` and `durable` do nothing here;
    the disk spool (spooled_buffer.py) overrides them.
    """

    durable = False  # True: the data outlives the process (reconnects exhausted drops nothing)
    spooled = 0  # datapoints held on disk (not counted in `points`)

    def __init__(self, max_points: int) -> None:
        self.max_points = max(1, int(max_points))
        self._urgent: deque[tuple[bytes, int]] = deque()  # self-metrics, and a chunk to resend
        self._normal: deque[tuple[bytes, int]] = deque()
        self.points = 0

    def __bool__(self) -> bool:
        return bool(self._urgent or self._normal)

    def append(self, data: bytes, points: int, front: bool = False) -> int:
        """Queue a chunk; returns how many datapoints were dropped to stay within the bound."""
        (self._urgent if front else self._normal).append((data, points))
        self.points += points
        dropped = 0
        # Oldest user data goes first, then old self-metrics; the chunk just added always stays.
        keep_normal, keep_urgent = (0, 1) if front else (1, 0)
        while self.points > self.max_points:
            if len(self._normal) > keep_normal:
                queue = self._normal
            elif len(self._urgent) > keep_urgent:
                queue = self._urgent
            else:
                break
            chunk, count = queue.popleft()
            self.points -= count
            if not self._overflow(chunk, count):
                dropped += count
        return dropped

    def _overflow(self, data: bytes, points: int) -> bool:
        """A chunk pushed out by the bound: True when it was kept elsewhere (not dropped)."""
        return False

    def attach(self, counters: Any, name: str) -> None:
        """The owning connection's counters and log name."""

    def tick(self, now: float, connected: bool) -> float:
        """Housekeeping on every poll; seconds until it wants to run again."""
        return 3600.0

    def written(self) -> None:
        """The chunk from the latest `take` was written whole."""

    def persist(self) -> None:
        """Shutdown: move what memory holds somewhere that outlives the process, if any."""

    def stopping(self) -> None:
        """The process is about to stop: stop waiting for the connection to drain memory."""

    def push_head(self, data: bytes, points: int) -> None:
        """Put back a chunk that could not be written whole: it goes out first."""
        self._urgent.appendleft((data, points))
        self.points += points

    def take(self, max_bytes: int = COALESCE_BYTES) -> tuple[bytes, int] | None:
        """The next chunk to write; consecutive small chunks are joined into one."""
        first = self._pop()
        if first is None:
            return None
        data, points = first
        if len(data) >= max_bytes:
            return first
        parts, size = [data], len(data)
        while True:
            queue = self._urgent if self._urgent else self._normal
            if not queue or size + len(queue[0][0]) > max_bytes:
                break
            more, count = self._pop()  # type: ignore[misc]
            parts.append(more)
            size += len(more)
            points += count
        return (b"".join(parts) if len(parts) > 1 else data), points

    def _pop(self) -> tuple[bytes, int] | None:
        queue = self._urgent if self._urgent else self._normal
        if not queue:
            return None
        chunk = queue.popleft()
        self.points -= chunk[1]
        return chunk

    def clear(self) -> int:
        dropped = self.points
        self._urgent.clear()
        self._normal.clear()
        self.points = 0
        return dropped


