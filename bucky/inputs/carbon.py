"""The carbon input: what carbon-relay accepts (Graphite plaintext over TCP and UDP, pickle over
TCP), so Bucky can stand in front of a Graphite cluster where carbon-relay stood.

Each point becomes the sample `(GRAPHITE_PATH, path, value, timestamp)`: the path goes to the
outputs unchanged (no name rule applies: bucky.names passes GRAPHITE_PATH samples through; the
outputs still turn whitespace into "_", as for every path) and the point keeps its own timestamp.
As carbon's receivers do: a NaN value is dropped, a timestamp of -1 means "now".

Bounds and bad input (the contract: bucky.inputs.base; nothing here raises, whatever the bytes):
- numbers: a value a float cannot hold (an int of 400 digits, "1e400") or a timestamp that is
  not finite or beyond an int64 is refused here (bad_lines.bad-value / bad-timestamp, or one of
  bad_points), so nothing downstream (tap, encoders) ever sees one.
- plaintext: decoded by bucky.protocol.graphite.decode_plaintext_lines (the one decoder, with
  its bulk fast path); a bad line is counted under bad_lines.<reason> (fields, not-utf8,
  bad-value, bad-timestamp) and skipped; the connection stays. A line longer than
  MAX_LINE_LENGTH bytes (carbon's LineOnlyReceiver limit, 16 KiB) disconnects the client, as
  carbon does: that is what binary garbage on the line port looks like. A connection holds at
  most one partial line (bucky.inputs.streams.LineStream, the framing of every line port).
- pickle: a frame whose header announces more than MAX_PICKLE_FRAME bytes (1 MiB, carbon's
  PICKLE_RECEIVER_MAX_LENGTH) disconnects the client (disconnected.frame-too-large): garbage on
  the pickle port, or a 2 GiB length prefix, ends there. A frame that is not a safe pickle of a
  list (no globals at all; decoding never recurses) is counted under bad_frames.bad-pickle and
  skipped, an entry that is not (path, (timestamp, value)) under bad_points, as carbon skips them
  (counted without an object per entry: a frame costs what its size costs).
  A connection holds at most one partial frame, and all connections together at most
  MAX_PENDING_BYTES (64 MiB): past that, a client holding a large partial frame is disconnected
  (disconnected.buffers-full).
- connections: at most MAX_CONNECTIONS at once, MAX_CONNECTIONS_PER_PORT (half) per port so
  neither port can starve the other (the loop refuses more: tcp.refused); a connection that
  completes no line or frame for `carbon_idle_timeout` seconds (default 120; it sends nothing,
  or one byte a second) is closed by the loop (tcp.idle_closed; bucky.daemon.tcp_limits).
Counters: lines, points, pickle_frames, bad_lines.<reason>, bad_frames.<reason>, bad_points,
dropped.nan, disconnected.<reason>, errors.internal.
"""

from __future__ import annotations

import logging
from collections import Counter
from operator import attrgetter
from typing import Any

from bucky.addresses import format_peer
from bucky.config import Config
from bucky.errors import DecodeError, ProtocolError
from bucky.inputs.base import InputHandler, Sink, Stream
from bucky.inputs.streams import LineStream
from bucky.protocol.graphite import (
    BAD_PICKLE,
    MAX_PICKLE_FRAME,
    NAN,
    decode_pickle_payload,
    decode_plaintext_lines,
    split_frames,
)
from bucky.ratelog import RateLimitedLog
from bucky.sample import GRAPHITE_PATH

log = logging.getLogger(__name__)

MAX_LINE_LENGTH = 16384  # twisted's LineOnlyReceiver.MAX_LENGTH, which carbon's receiver keeps
MAX_CONNECTIONS = 1024
MAX_CONNECTIONS_PER_PORT = MAX_CONNECTIONS // 2  # a flood on one port leaves the other half free
DEFAULT_IDLE_TIMEOUT = 120.0  # carbon_idle_timeout's default, for a handler built without a config
# Partial pickle frames held over all connections: past this, a client holding more than a small
# partial frame is disconnected (1024 clients x 1 MiB frames would otherwise be 1 GiB).
MAX_PENDING_BYTES = 64 * 1024 * 1024
_SMALL_PARTIAL = 65536
_LOG_PERIOD = 60.0
_reason = attrgetter("reason")


class CarbonInput(InputHandler):
    """Graphite lines (UDP datagrams, TCP "line" streams) and pickle frames ("pickle" streams)."""

    name = "carbon"
    max_tcp_connections = MAX_CONNECTIONS
    max_tcp_connections_per_listener = MAX_CONNECTIONS_PER_PORT

    def __init__(self, cfg: Config, sink: Sink, state: object = None) -> None:
        self.counters: Counter[str] = Counter()
        if isinstance(state, dict):
            self.counters.update(state.get("counters") or {})
        self._sink = sink
        self._log = RateLimitedLog(log, _LOG_PERIOD).log  # on its monotonic clock
        self.pending_bytes = 0  # partial pickle frames held by all connections
        self.idle_timeout: float | None = (
            DEFAULT_IDLE_TIMEOUT if cfg is None else cfg.carbon_idle_timeout)

    # -- the input contract (bucky.inputs.base) ------------------------------------------------
    def handle(self, data: bytes, addr: Any, now: float, mono: float | None = None) -> None:
        """A UDP datagram of plaintext lines (no partial line carries over), split as carbon
        splits a datagram: at every line boundary str.splitlines() knows."""
        try:
            try:
                lines = [line.encode() for line in data.decode("utf-8").splitlines()]
            except UnicodeDecodeError:
                lines = data.splitlines()  # carbon drops such a datagram; we keep its good lines
            self._handle_lines(lines, now, addr)
        except Exception:
            self._internal_error(now)

    def handle_lines(self, lines: list[bytes], now: float, mono: float | None = None) -> None:
        self._handle_lines(lines, now, None)

    def _handle_lines(self, lines: list[bytes], now: float, addr: Any) -> None:
        try:
            self._sink.extend(self._points_from_lines(lines, now, addr))
        except Exception:
            self._internal_error(now)

    def open_stream(self, kind: str, addr: Any) -> Stream:
        if kind == "line":
            return LineStream(
                lambda lines, now, mono: self._handle_lines(lines, now, addr), MAX_LINE_LENGTH,
                self.counters, truncated="bad_lines.truncated",
                on_overlong=lambda now: self._disconnect(
                    "line-too-long", addr, now, f"a line longer than {MAX_LINE_LENGTH} bytes"))
        if kind == "pickle":
            return _PickleStream(self, addr)
        raise ValueError(f"carbon input: unknown stream kind {kind!r}")

    def carry_state(self) -> object:
        return {"counters": dict(self.counters)}

    # -- decoding -------------------------------------------------------------------------------
    def _points_from_lines(self, lines: list[bytes], now: float, addr: Any) -> list[tuple]:
        """Samples for lines, decoded by bucky.protocol.graphite.decode_plaintext_lines with
        carbon's receiver rules (-1 means now, a NaN value is dropped)."""
        decoded = decode_plaintext_lines(lines, now, GRAPHITE_PATH)
        samples, errors = decoded.records, decoded.errors
        counters = self.counters
        if errors:
            self._count_bad("bad_lines", errors, addr)
        counters["lines"] += len(samples) + len(errors)
        counters["points"] += len(samples)
        return samples

    def _points_from_payload(self, payload: bytes, now: float, addr: Any) -> list[tuple]:
        counters = self.counters
        counters["pickle_frames"] += 1
        decoded = decode_pickle_payload(payload)
        if decoded.errors and decoded.errors[0].reason == BAD_PICKLE:  # the whole frame
            self._count_bad("bad_frames", decoded.errors, addr)
            return []
        if decoded.errors:
            counters["bad_points"] += len(decoded.errors)
            self._log(logging.WARNING, "bad-point", "carbon input: %d bad points from %s: %s",
                      len(decoded.errors), format_peer(addr), decoded.errors[0])
        samples: list[tuple] = []
        nan = 0
        for path, (timestamp, value) in decoded.records:
            if value != value:
                nan += 1
                continue
            if not path:
                counters["bad_points"] += 1
                continue
            if -2 < timestamp <= -1:
                timestamp = now
            samples.append((GRAPHITE_PATH, path, value, timestamp))
        counters["points"] += len(samples)
        if nan:
            counters["dropped.nan"] += nan
        return samples

    def _count_bad(self, what: str, errors: list[ProtocolError], addr: Any) -> None:
        """Count errors by reason (a NaN value is dropped.nan, not bad) and log the first of
        each reason, rate-limited. Counted in bulk: a 1 MiB read may hold 500k bad lines."""
        reasons = Counter(map(_reason, errors))
        nan = reasons.pop(NAN, 0)
        if nan:
            self.counters["dropped.nan"] += nan
        for reason, count in reasons.items():
            self.counters[f"{what}.{reason}"] += count
            first = next(error for error in errors if error.reason == reason)
            self._log(logging.WARNING, f"{what}.{reason}", "carbon input: %s from %s: %s",
                      what.replace("_", " ")[:-1], format_peer(addr), first)

    def _disconnect(self, reason: str, addr: Any, now: float, detail: str) -> bool:
        self.counters[f"disconnected.{reason}"] += 1
        self._log(logging.WARNING, f"disconnected.{reason}",
                  "carbon input: disconnecting %s: %s", format_peer(addr), detail)
        return False

    def _internal_error(self, now: float) -> None:
        self.counters["errors.internal"] += 1
        self._log(logging.ERROR, "internal", "carbon input: internal error", exc_info=True)


class _PickleStream:
    """A pickle TCP connection: 4-byte big-endian length + pickle, at most MAX_PICKLE_FRAME."""

    def __init__(self, owner: CarbonInput, addr: Any) -> None:
        self._owner = owner
        self._addr = addr
        self._buffer = bytearray()
        self.completed = 0

    def feed(self, data: bytes, now: float, mono: float | None = None) -> bool:
        owner = self._owner
        buffer = self._buffer
        held = len(buffer)
        buffer += data
        try:
            payloads = split_frames(buffer, MAX_PICKLE_FRAME)
        except DecodeError as exc:
            self._release(held)
            return owner._disconnect(exc.reason, self._addr, now, str(exc))
        owner.pending_bytes += len(buffer) - held
        if len(buffer) > _SMALL_PARTIAL and owner.pending_bytes > MAX_PENDING_BYTES:
            self._release(len(buffer))
            return owner._disconnect("buffers-full", self._addr, now,
                                     f"partial frames of all clients over {MAX_PENDING_BYTES}")
        self.completed += len(payloads)
        try:
            for payload in payloads:
                samples = owner._points_from_payload(payload, now, self._addr)
                if samples:
                    owner._sink.extend(samples)
        except Exception:
            owner._internal_error(now)
        return True

    def close(self, now: float) -> None:
        if self._buffer:
            self._owner.counters["bad_frames.truncated"] += 1
            self._release(len(self._buffer))

    def _release(self, held: int) -> None:
        self._owner.pending_bytes -= held
        self._buffer.clear()
