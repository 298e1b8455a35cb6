"""Driving an output client in tests as its output process would: poll loop, sample batches."""

from __future__ import annotations

import time
from collections.abc import Callable

from bucky.daemon.outputs import OutputClient

FAST_BACKOFF = dict(
    graphite_reconnect_delay=0.02, graphite_backoff_factor=1.5, graphite_backoff_max=0.1,
    graphite_max_reconnects=-1,
)


def run_until(client: OutputClient, done: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Drive the client as the output process does, until `done()` or the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        wait = client.poll(now)
        if done():
            return True
        if now >= deadline:
            return False
        time.sleep(min(max(wait, 0.0005), 0.01))


def batch(prefix: str, start: int, count: int, ts: int = 1_700_000_000) -> list[tuple]:
    return [(None, f"{prefix}.m{i}", i, ts) for i in range(start, start + count)]
