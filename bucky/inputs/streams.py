"""Stream decoders an input gives the loop for its TCP connections (contract: bucky.inputs.base).

`LineStream` is a connection of newline-delimited lines (StatsD over TCP, Graphite plaintext):
bytes are cut by bucky.protocol.framing.LineFramer with the input's own bound on one line, and
complete lines go to the input's `on_lines(lines, now, mono)`. An over-long line is skipped (and
counted in `tcp.overlong_lines`), the connection stays, unless the input passes `on_overlong`:
then that decides (the carbon input disconnects, as carbon does). A partial line left when the
client goes away is counted in `truncated` (default `tcp.truncated_lines`). `completed` counts
the lines handed on (the loop's idle timeout watches it: bucky.daemon.tcp_limits).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from bucky.protocol.framing import LineFramer

LinesCallback = Callable[[list[bytes], float, "float | None"], None]


class LineStream:
    def __init__(self, on_lines: LinesCallback, max_line_length: int, counters: Counter[str], *,
                 on_overlong: Callable[[float], bool] | None = None,
                 truncated: str = "tcp.truncated_lines") -> None:
        self._on_lines = on_lines
        self._framer = LineFramer(max_line_length)
        self._counters = counters
        self._on_overlong = on_overlong  # (now) -> keep the connection?
        self._truncated = truncated
        self.completed = 0

    def feed(self, data: bytes, now: float, mono: float | None = None) -> bool:
        framer = self._framer
        lines = framer.feed(data)
        if lines:
            self.completed += len(lines)
            self._on_lines(lines, now, mono)
        if framer.overlong_lines:
            framer.overlong_lines, overlong = 0, framer.overlong_lines
            if self._on_overlong is not None:
                return self._on_overlong(now)
            self._counters["tcp.overlong_lines"] += overlong
        return True

    def close(self, now: float) -> None:
        framer = self._framer
        framer.close()
        if framer.truncated_lines:
            self._counters[self._truncated] += framer.truncated_lines
            framer.truncated_lines = 0
