"""collectd's AuthFile (`user: password` lines), re-read when the file changes, as collectd does.

One implementation for the daemon's collectd input and for `bucky.reader`: the file is read at
start (an unreadable file is the caller's error to report), then `refresh(now)` looks at its
stat signature at most every `check_every` seconds and re-reads it when it changed. A failed
re-read raises and keeps the credentials read last, so a file being replaced never locks senders
out. `now` is a monotonic reading: a wall-clock step cannot stop or hurry the checks.
"""

from __future__ import annotations

import os

from bucky.protocol.collectd_security import parse_auth_file


def _signature(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


class AuthFile:
    def __init__(self, path: str, check_every: float = 1.0) -> None:
        self.path = path
        self.check_every = check_every
        self._next_check: float | None = None
        self.credentials: dict[str, bytes] = {}
        self._signature: tuple[int, ...] | None = None
        self._read()  # OSError, or ValueError for bytes that are not UTF-8

    def _read(self) -> None:
        with open(self.path, encoding="utf-8") as handle:
            signature = _signature(os.fstat(handle.fileno()))
            text = handle.read()
        self.credentials = parse_auth_file(text)
        self._signature = signature

    def refresh(self, now: float) -> bool:
        """Re-read the file if it changed (checked at most every `check_every` s): True when it
        was re-read. Raises OSError/ValueError when it cannot be; the old credentials stay."""
        if self._next_check is not None and now < self._next_check:
            return False
        self._next_check = now + self.check_every
        if _signature(os.stat(self.path)) == self._signature:
            return False
        self._read()
        return True
