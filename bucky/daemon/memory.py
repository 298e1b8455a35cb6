"""Giving freed memory back to the system, so a process shrinks after its keys expire.

CPython frees objects into its own pools and glibc's heap, which keep the pages: after a burst
of cardinality (a deploy that renamed every metric, a sender gone mad) RSS would stay at its
peak for ever. `Trimmer.maybe_trim(now)` calls glibc's malloc_trim(0) at most every `period`
seconds of the monotonic clock; elsewhere (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _load_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class Trimmer:
    def __init__(self, period: float = 30.0) -> None:
        self.period = period
        self._trim = _load_trim()
        self._next: float | None = None
        self.trims = 0

    def maybe_trim(self, now: float) -> bool:
        if self._trim is None:
            return False
        if self._next is None:
            self._next = now + self.period
            return False
        if now < self._next:
            return False
        self._next = now + self.period
        self._trim(0)
        self.trims += 1
        return True
