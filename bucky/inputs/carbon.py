"""The carbon input: what carbon-relay accepts (Graphite plaintext over TCP and UDP, pickle over
TCP), so Bucky can stand in front of a Graphite cluster where carbon-relay stood.

Each point becomes the sample `(GRAPHITE_PATH, path, value, timestamp)`: the path goes to the
outputs unchanged (no name rule applies: bucky.names passes GRAPHITE_PATH samples through; the
outputs still turn whitespace into "_", as for every path) and the point keeps its own timestamp.
As carbon's receivers do: a NaN value is dropped, a timestamp of -1 means "now".

Bounds and bad input (the contract: bucky.inputs.base; nothing here raises, whatever the bytes):
- plaintext: a bad line is counted under bad_lines.<reason> (fields, not-utf8, bad-value,
  bad-timestamp) and skipped; the connection stays. A line longer than MAX_LINE_LENGTH bytes
  (carbon's LineOnlyReceiver limit, 16 KiB) disconnects the client, as carbon does: that is what
  binary garbage on the line port looks like. A connection holds at most one partial line.
- pickle: a frame whose header announces more than MAX_PICKLE_FRAME bytes (1 MiB, carbon's
  PICKLE_RECEIVER_MAX_LENGTH) disconnects the client (disconnected.frame-too-large): garbage on
  the pickle port, or a 2 GiB length prefix, ends there. A frame that is not a safe pickle of a
  list (no globals at all; decoding never recurses) is counted under bad_frames.bad-pickle and
  skipped, an entry that is not (path, (timestamp, value)) under bad_points, as carbon skips them.
  A connection holds at most one partial frame, and all connections together at most
  MAX_PENDING_BYTES (64 MiB): past that, a client holding a large partial frame is disconnected
  (disconnected.buffers-full).
- connections: at most MAX_CONNECTIONS at once (the loop refuses more: tcp.refused).
Counters: lines, points, pickle_frames, bad_lines.<reason>, bad_frames.<reason>, bad_points,
dropped.nan, disconnected.<reason>, errors.internal.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any

from bucky.addresses import format_peer
from bucky.errors import DecodeError
from bucky.inputs.base import InputHandler, Sink, Stream
from bucky.protocol.framing import LineFramer
from bucky.protocol.graphite import (
    BAD_PICKLE,
    MAX_PICKLE_FRAME,
    _number,
    decode_pickle_payload,
    parse_plaintext_line,
    split_frames,
)
from bucky.ratelog import RateLimitedLog
from bucky.sample import GRAPHITE_PATH

log = logging.getLogger(__name__)

MAX_LINE_LENGTH = 16384  # twisted's LineOnlyReceiver.MAX_LENGTH, which carbon's receiver keeps
MAX_CONNECTIONS = 1024
# Partial pickle frames held over all connections: past this, a client holding more than a small
# partial frame is disconnected (1024 clients x 1 MiB frames would otherwise be 1 GiB).
MAX_PENDING_BYTES = 64 * 1024 * 1024
_SMALL_PARTIAL = 65536
_LOG_PERIOD = 60.0


class CarbonInput(InputHandler):
    """Graphite lines (UDP datagrams, TCP "line" streams) and pickle frames ("pickle" streams)."""

    name = "carbon"
    max_tcp_connections = MAX_CONNECTIONS

    def __init__(self, cfg: Any, sink: Sink, state: object = None) -> None:
        self.counters: Counter[str] = Counter()
        if isinstance(state, dict):
            self.counters.update(state.get("counters") or {})
        self._sink = sink
        self._log = RateLimitedLog(log, _LOG_PERIOD).log  # on its monotonic clock
        self.pending_bytes = 0  # partial pickle frames held by all connections

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
            return _LineStream(self, addr)
        if kind == "pickle":
            return _PickleStream(self, addr)
        raise ValueError(f"carbon input: unknown stream kind {kind!r}")

    def carry_state(self) -> object:
        return {"counters": dict(self.counters)}

    # -- decoding -------------------------------------------------------------------------------
    def _points_from_lines(self, lines: list[bytes], now: float, addr: Any) -> list[tuple]:
        """Samples for lines; the common case (UTF-8, three fields, plain numbers) is decoded
        in bulk, anything else goes through parse_plaintext_line for its reason."""
        try:
            texts = b"\n".join(lines).decode("utf-8").split("\n")
        except UnicodeDecodeError:
            texts = None
        samples: list[tuple] = []
        append = samples.append
        nan = seen = 0
        for text in texts if texts is not None else lines:
            fields = text.split()
            if not fields:
                continue
            seen += 1
            point = None
            if texts is not None and len(fields) == 3:
                path, v, t = fields
                try:
                    value = int(v) if v.isdecimal() else float(v) if "." in v else _number(v)
                    timestamp = int(t) if t.isdecimal() else float(t) if "." in t else _number(t)
                except ValueError:
                    pass
                else:
                    if type(timestamp) is int or math.isfinite(timestamp):
                        point = (path, value, timestamp)
            if point is None:
                try:
                    point = parse_plaintext_line(text if texts is None else text.encode())
                except DecodeError as exc:
                    self._bad("bad_lines", exc, addr, now)
                    continue
            path, value, timestamp = point
            if value != value:  # NaN: carbon drops it
                nan += 1
                continue
            if -2 < timestamp <= -1:  # carbon: int(timestamp) == -1 means "now"
                timestamp = now
            append((GRAPHITE_PATH, path, value, timestamp))
        counters = self.counters
        counters["lines"] += seen
        counters["points"] += len(samples)
        if nan:
            counters["dropped.nan"] += nan
        return samples

    def _points_from_payload(self, payload: bytes, now: float, addr: Any) -> list[tuple]:
        counters = self.counters
        counters["pickle_frames"] += 1
        decoded = decode_pickle_payload(payload)
        if decoded.errors and decoded.errors[0].reason == BAD_PICKLE:  # the whole frame
            self._bad("bad_frames", decoded.errors[0], addr, now)
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
            if type(timestamp) is float and not math.isfinite(timestamp):
                counters["bad_points"] += 1
                continue
            if -2 < timestamp <= -1:
                timestamp = now
            samples.append((GRAPHITE_PATH, path, value, timestamp))
        counters["points"] += len(samples)
        if nan:
            counters["dropped.nan"] += nan
        return samples

    def _bad(self, what: str, exc: DecodeError, addr: Any, now: float) -> None:
        self.counters[f"{what}.{exc.reason}"] += 1
        self._log(logging.WARNING, f"{what}.{exc.reason}", "carbon input: %s from %s: %s",
                  what.replace("_", " ")[:-1], format_peer(addr), exc)

    def _disconnect(self, reason: str, addr: Any, now: float, detail: str) -> bool:
        self.counters[f"disconnected.{reason}"] += 1
        self._log(logging.WARNING, f"disconnected.{reason}",
                  "carbon input: disconnecting %s: %s", format_peer(addr), detail)
        return False

    def _internal_error(self, now: float) -> None:
        self.counters["errors.internal"] += 1
        self._log(logging.ERROR, "internal", "carbon input: internal error", exc_info=True)


class _LineStream:
    """A plaintext TCP connection: complete lines to the input; an over-long line disconnects."""

    def __init__(self, owner: CarbonInput, addr: Any) -> None:
        self._owner = owner
        self._addr = addr
        self._framer = LineFramer(MAX_LINE_LENGTH)

    def feed(self, data: bytes, now: float, mono: float | None = None) -> bool:
        framer = self._framer
        lines = framer.feed(data)
        if lines:
            self._owner._handle_lines(lines, now, self._addr)
        if framer.overlong_lines:
            return self._owner._disconnect("line-too-long", self._addr, now,
                                           f"a line longer than {MAX_LINE_LENGTH} bytes")
        return True

    def close(self, now: float) -> None:
        self._framer.close()
        if self._framer.truncated_lines:
            self._owner.counters["bad_lines.truncated"] += self._framer.truncated_lines


class _PickleStream:
    """A pickle TCP connection: 4-byte big-endian length + pickle, at most MAX_PICKLE_FRAME."""

    def __init__(self, owner: CarbonInput, addr: Any) -> None:
        self._owner = owner
        self._addr = addr
        self._buffer = bytearray()

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
