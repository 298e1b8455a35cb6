"""Rate-limited logging: at most one line per key per period, with a count of what was held back.

Bad datagrams arrive in floods; the log must stay readable and cheap while they are counted.
Keys can embed names chosen by whoever sends datagrams, so the table of keys is bounded. Time
comes either from the injected `clock` (`log`, `warning`, `error`) or from the caller (`log_at`,
for code that is handed `now`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

_MAX_KEYS = 4096


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, period: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._period = period
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()  # the plugin host reports from its callback threads

    def admit(self, key: str, now: float | None = None) -> int | None:
        """None when `key` was admitted less than a period before `now` (counted as held back);
        otherwise how many were held back since its last admission (the caller logs)."""
        if now is None:
            now = self._clock()
        with self._lock:
            last = self._last.get(key)
            # abs(): a clock stepped back must not silence a key for as long as it stepped.
            if last is not None and abs(now - last) < self._period:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            if len(self._last) >= _MAX_KEYS:
                self._last.clear()
                self._suppressed.clear()
            self._last[key] = now
            return self._suppressed.pop(key, 0)

    def log_at(self, level: int, key: str, now: float, msg: str, *args: object,
               **kwargs: Any) -> bool:
        """Log unless `key` was logged less than a period before `now`; True when logged."""
        held = self.admit(key, now)
        if held is None:
            return False
        if held:
            msg += " (%d similar messages suppressed)"
            args = (*args, held)
        self._logger.log(level, msg, *args, **kwargs)
        return True

    def log(self, level: int, key: str, msg: str, *args: object, **kwargs: Any) -> bool:
        return self.log_at(level, key, self._clock(), msg, *args, **kwargs)

    def warning(self, key: str, msg: str, *args: object, **kwargs: Any) -> bool:
        return self.log(logging.WARNING, key, msg, *args, **kwargs)

    def error(self, key: str, msg: str, *args: object, **kwargs: Any) -> bool:
        return self.log(logging.ERROR, key, msg, *args, **kwargs)
