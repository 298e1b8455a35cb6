"""What an output process tells the status server: status snapshots, a sampled tap, self-metrics.

The status server is not on the data path: an output hands it copies over its own channel
(non-blocking; a full channel drops the message and counts `dropped.status_messages`), so a slow
or dead http process never slows an output. Message kinds: bucky.messages; their formats:
bucky/http/state.py. The output process's loop (bucky.daemon.output_runner) drives the feed.

The tap: only the first output taps (every output gets the same batches). While fewer than
TAP_BUDGET samples went to the tap in the current TAP_PERIOD, whole batches are copied; above it,
every n-th sample of a batch so the period's budget is not exceeded. The copies travel once per
TAP_PERIOD, with the status snapshot, as one frame.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from bucky.daemon.channels import ChannelWriter
from bucky.messages import STATUS, TAP

TAP_PERIOD = 0.5  # seconds between tap frames and status snapshots
TAP_BUDGET = 1000  # samples per TAP_PERIOD (2,000 a second)
MAX_PENDING_BYTES = 4 * 1024 * 1024


def destination_status(client: Any) -> list[dict[str, Any]]:
    """The per-destination part of a status snapshot (format in bucky/http/state.py).

    Clients with a `status()` method describe themselves; `accepting` is added from their
    `connections` when they have them. Others are one destination named after the client."""
    status = getattr(client, "status", None)
    if callable(status):
        entries = [dict(e) for e in status()]
        conns = {getattr(c, "label", None): c for c in getattr(client, "connections", ())}
        for entry in entries:
            conn = conns.get(entry.get("label"))
            if conn is not None and "accepting" not in entry:
                entry["accepting"] = bool(getattr(conn, "accepting", True))
            entry.setdefault("accepting", True)
        if entries:
            return entries
    state = getattr(client, "_state", "up")
    host, port = getattr(client, "host", None), getattr(client, "port", None)
    return [{
        "label": client.name,
        "address": f"{host}:{port}" if host is not None else client.name,
        "state": state if state in ("up", "connecting", "down") else "up",
        "accepting": not getattr(client, "_given_up", False) or state == "up",
        "pending": client.pending(),
        "counters": dict(client.counters),
    }]


class HttpFeed:
    def __init__(self, writer: ChannelWriter, title: str, *, tap: bool, forward_self: bool,
                 counters: Mapping[str, float] | Any) -> None:
        self.writer = writer
        self.title = title
        self.tap_enabled = tap
        self.forward_self = forward_self  # only one output forwards the others' self-metrics
        self.counters = counters  # the output's Counter: drops are counted there
        self._tap: list[tuple] = []
        self._used = 0
        self._next = 0.0

    def batch(self, batch: list[tuple]) -> None:
        """A batch the output takes (cheap: a list slice at most)."""
        if not self.tap_enabled:
            return
        room = TAP_BUDGET - self._used
        if room <= 0:
            return
        n = len(batch)
        if n <= room:
            self._tap.extend(batch)
            self._used += n
        else:
            step = -(-n // room)
            picked = batch[::step]
            self._tap.extend(picked)
            self._used += len(picked)

    def self_metrics(self, frame: tuple, own: bool = False) -> None:
        """A ("self", samples[, gauges]) frame: from another process, or this one's (`own`)."""
        if own or self.forward_self:
            self._put(frame)

    def tick(self, now: float, client: Any) -> None:
        if now < self._next:
            return
        self._next = now + TAP_PERIOD
        if self._tap:
            self._put((TAP, self.title, self._tap))
            self._tap = []
        self._used = 0
        snapshot = {
            "time": time.time(),
            "pending": client.pending(),
            "counters": dict(self.counters),
            "destinations": destination_status(client),
        }
        self._put((STATUS, self.title, snapshot))

    def _put(self, msg: object) -> None:
        if not self.writer.put(msg):
            self.counters["dropped.status_messages"] += 1
        else:
            self.writer.pump()
