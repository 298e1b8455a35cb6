"""The memory buffer of a Graphite destination: encoded chunks waiting for the socket."""

from __future__ import annotations

from collections import deque

COALESCE_BYTES = 64 * 1024  # small chunks (self-metrics, tiny batches) are joined into one write


class _ChunkBuffer:
    """Encoded chunks waiting for the socket, bounded in datapoints (by whole chunks)."""

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
            _, count = queue.popleft()
            self.points -= count
            dropped += count
        return dropped

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


