"""`--debug`: the lines Graphite would get, written to stdout."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from bucky.daemon.outputs.base import OutputClient
from bucky.daemon.outputs.paths import PathCache
from bucky.names import NameRules
from bucky.protocol.graphite import format_plaintext_batch
from bucky.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from bucky.config import Config

log = logging.getLogger("bucky.daemon.outputs")


class DebugClient(OutputClient):
    """`--debug`: the lines Graphite would get, on stdout, flushed per batch."""

    name = "debug"

    def __init__(self, cfg: Config, *, stdout: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._stdout = stdout
        self._paths = PathCache(NameRules.from_config(cfg), " ")
        self._ratelog = RateLimitedLog(log, 60.0, clock)

    def send(self, samples: list[tuple], now: float, front: bool = False) -> None:
        if not samples:
            return
        try:
            text, skipped = format_plaintext_batch(samples, self._paths.for_batch(samples))
        except Exception:
            text, skipped = "", len(samples)
        out = self._stdout if self._stdout is not None else sys.stdout
        try:
            out.write(text)
            out.flush()
        except (OSError, ValueError) as exc:  # closed or broken stdout: count, never die
            self.counters["errors"] += 1
            self._ratelog.error("write", "cannot write to stdout: %s", exc)
            return
        self.counters["sent"] += len(samples) - skipped
        if skipped:
            self.counters["dropped.invalid"] += skipped


