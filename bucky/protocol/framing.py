"""Framing of byte streams (TCP) into records: sans-I/O, bytes in, complete frames out.

`LineFramer` cuts newline-delimited text (StatsD over TCP, Graphite plaintext) into complete
lines with a bound on the length of one line, so a connection never holds more than one bounded
partial line. What to do with an over-long line (skip it, or disconnect the client) is the
caller's decision: the framer only counts.
"""

from __future__ import annotations


class LineFramer:
    """Newline-delimited lines over a byte stream (TCP): bytes in, complete lines out.

    A partial line is kept until its newline arrives. A line longer than `max_line_length` bytes is
    discarded up to the next newline and counted in `overlong_lines`; close() drops a partial line
    (the client went away mid-line) and counts it in `truncated_lines`. Empty lines are skipped.
    """

    def __init__(self, max_line_length: int) -> None:
        self.max_line_length = max_line_length
        self.overlong_lines = 0
        self.truncated_lines = 0
        self._partial = bytearray()
        self._discarding = False  # inside an over-long line: drop until the next newline

    def feed(self, data: bytes) -> list[bytes]:
        limit = self.max_line_length
        *complete, tail = data.split(b"\n")
        lines: list[bytes] = []
        if complete:
            first = complete[0]
            if self._discarding:
                self._discarding = False
                complete = complete[1:]  # the end of the over-long line
            elif self._partial:
                self._partial += first
                complete[0] = bytes(self._partial)
            self._partial.clear()
            for line in complete:
                if len(line) > limit:
                    self.overlong_lines += 1
                elif line:
                    lines.append(line)
        if not self._discarding and tail:
            if len(self._partial) + len(tail) > limit:
                self.overlong_lines += 1
                self._discarding = True
                self._partial.clear()
            else:
                self._partial += tail
        return lines

    def close(self) -> None:
        if self._partial:
            self.truncated_lines += 1
        self._partial.clear()
        self._discarding = False
