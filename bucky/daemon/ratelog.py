"""Rate-limited logging: at most one line per key per period, with a count of what was held back.

Bad datagrams arrive in floods; the log must stay readable and cheap while they are counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, period: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._period = period
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, msg: str, *args: object, **kwargs: Any) -> None:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._period:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        held = self._suppressed.pop(key, 0)
        self._last[key] = now
        if held:
            msg += " (%d similar messages suppressed)"
            args = (*args, held)
        self._logger.log(level, msg, *args, **kwargs)

    def warning(self, key: str, msg: str, *args: object, **kwargs: Any) -> None:
        self.log(logging.WARNING, key, msg, *args, **kwargs)

    def error(self, key: str, msg: str, *args: object, **kwargs: Any) -> None:
        self.log(logging.ERROR, key, msg, *args, **kwargs)
