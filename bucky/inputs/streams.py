"""Stream decoders an input gives the loop for its TCP connections (contract: bucky.inputs.base).

`LineStream` is a connection of newline-delimited lines (StatsD over TCP): bytes are cut by
bucky.protocol.framing.LineFramer with the input's own bound on one line, and complete lines go to
the input's `on_lines(lines, now, mono)`. An over-long line is skipped (and counted in
`tcp.overlong_lines`), the connection stays; a partial line left when the client goes away is
counted in `tcp.truncated_lines`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from bucky.protocol.framing import LineFramer

LinesCallback = Callable[[list[bytes], float, "float | None"], None]


class LineStream:
    def __init__(self, on_lines: LinesCallback, max_line_length: int,
                 counters: Counter[str]) -> None:
        self._on_lines = on_lines
        self._framer = LineFramer(max_line_length)
        self._counters = counters

    def feed(self, data: bytes, now: float, mono: float | None = None) -> bool:
        framer = self._framer
        lines = framer.feed(data)
        if lines:
            self._on_lines(lines, now, mono)
        if framer.overlong_lines:
            self._counters["tcp.overlong_lines"] += framer.overlong_lines
            framer.overlong_lines = 0
        return True

    def close(self, now: float) -> None:
        framer = self._framer
        framer.close()
        if framer.truncated_lines:
            self._counters["tcp.truncated_lines"] += framer.truncated_lines
            framer.truncated_lines = 0
