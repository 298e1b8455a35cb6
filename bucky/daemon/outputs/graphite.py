"""Graphite over TCP: plaintext or pickle, with reconnects, backoff and a bounded buffer.

Graphite connection and buffer policy (GraphiteClient):

- Data waits as encoded chunks (one per batch; a pickle frame per <= graphite_pickle_buffer_size
  points) in a buffer bounded by `graphite_buffer_size` datapoints. Beyond it the oldest whole
  chunks are dropped and counted in `dropped.buffer_full`; the newest chunk is always kept, so the
  bound is exceeded by at most one batch. Self-metrics (`front=True`) go ahead of user data.
- A slow or stalled carbon only fills the socket and then this buffer: `send` stays fast, memory
  stays bounded, and once carbon reads again the newest data goes out first-in-first-out.
- Reconnects follow `Backoff` (graphite_reconnect_delay x graphite_backoff_factor ... up to
  graphite_backoff_max). A connection that dies within a second counts as a failed attempt, so a
  carbon that accepts and resets is not hammered.
- After `graphite_max_reconnects` failed attempts in one outage (negative: never) the client logs
  an error, drops what it buffered (`dropped.reconnects_exhausted`) and, until a connection
  succeeds again, drops new data on arrival under the same counter, instead of holding data that
  would be old by the time it is sent. It keeps retrying on the same schedule (so at least every
  graphite_backoff_max seconds), and the relay recovers by itself when carbon returns.
- Delivery is at-least-once for the chunk being written when a connection breaks: that whole
  chunk is sent again on the next connection (a pickle frame must be whole anyway; for plaintext
  the repeated lines carry the same timestamp and value, which carbon-cache simply overwrites).
  Bytes the kernel accepted before the break are considered sent: if the peer never read them
  they are lost (the "in-flight" loss of any TCP sender without acknowledgements; at most the
  socket buffers). A closed connection is noticed before the next write when carbon closed it
  first, which avoids the common case of writing into a dead socket.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from bucky.daemon.backoff import Backoff
from bucky.daemon.outputs.base import (
    BUSY_POLL,
    IDLE_POLL,
    OutputClient,
    _PathCache,
    _Resolver,
    _wait_writable,
    format_address,
)
from bucky.daemon.outputs.buffer import _ChunkBuffer
from bucky.names import NameRules
from bucky.protocol.graphite import encode_pickle_trusted, format_plaintext_batch, pickle_point
from bucky.ratelog import RateLimitedLog

log = logging.getLogger("bucky.daemon.outputs")

WRITE_BUDGET = 4 * 1024 * 1024  # bytes per poll, so a fast socket cannot starve the queue reader
CONNECT_TIMEOUT = 5.0
MIN_RECONNECT_DELAY = 0.01
PICKLE_MAX_AGE = 1.0  # a partial pickle message waits at most this long for more points
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)
_IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, errno.EINTR}

# --- Graphite ------------------------------------------------------------------------------------

_DOWN, _CONNECTING, _UP = "down", "connecting", "up"


class GraphiteClient(OutputClient):
    """Plaintext TCP to carbon; GraphitePickleClient changes only how chunks are encoded."""

    name = "graphite"
    path_suffix = " "  # plaintext: the cached path already carries the separator before the value

    def __init__(
        self,
        cfg: Any,
        *,
        clock: Callable[[], float] = time.monotonic,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        super().__init__()
        self.host = str(cfg.graphite_ip).strip("[]")
        self.port = int(cfg.graphite_port)
        self._clock = clock
        self._connect_timeout = connect_timeout
        self._paths = _PathCache(NameRules.from_config(cfg), self.path_suffix)
        self._buffer = _ChunkBuffer(cfg.graphite_buffer_size)
        self._backoff = Backoff(
            max(cfg.graphite_reconnect_delay, MIN_RECONNECT_DELAY),  # 0 would spin on refusals
            cfg.graphite_backoff_factor,
            cfg.graphite_backoff_max,
            cfg.graphite_max_reconnects,
            clock,
        )
        self._resolver = _Resolver(self.host, self.port, socket.SOCK_STREAM)
        self._ratelog = RateLimitedLog(log, 60.0, clock)
        self._state = _DOWN
        self._sock: socket.socket | None = None
        self._peer = ""
        # connect attempt in progress
        self._addresses: list | None = None
        self._attempt_deadline = 0.0
        self._last_error = ""
        # the chunk being written
        self._inflight: memoryview | None = None
        self._inflight_data = b""
        self._inflight_points = 0
        self._offset = 0
        self._blocked = False  # the socket refused more bytes on the latest try
        self._given_up = False  # graphite_max_reconnects exhausted and not connected since

    # -- the OutputClient contract

    def send(self, samples: list[tuple], now: float, front: bool = False) -> None:
        if not samples:
            return
        if self._given_up and self._state is not _UP:
            self.counters["dropped.reconnects_exhausted"] += len(samples)
            return
        self._enqueue(samples, now, front)

    def poll(self, now: float) -> float:
        self._frame_due(now)
        if self._state is _DOWN and self._backoff.ready(now):
            self._begin_attempt(now)
        if self._state is _CONNECTING:
            self._continue_attempt(now)
        if self._state is _UP:
            self._pump(now)
        return self._next_poll(now)

    def pending(self) -> int:
        return self._buffer.points + self._inflight_points + self._unframed_points()

    def flush(self, deadline: float) -> bool:
        self._frame_all()
        while True:
            self.poll(self._clock())
            if self.pending() == 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._wait(min(remaining, max(self._next_poll(self._clock()), 0.001)))

    def close(self) -> None:
        self._frame_all()
        left = self.pending()
        if left:
            self.counters["dropped.shutdown"] += left
        self._buffer.clear()
        self._clear_inflight()
        self._close_socket()
        self._state = _DOWN

    # -- encoding (the pickle client overrides these)

    def _enqueue(self, samples: list[tuple], now: float, front: bool) -> None:
        try:
            text, skipped = format_plaintext_batch(samples, self._paths.for_batch(samples))
        except Exception:  # a sample whose host or name is not text: isolate it
            text, skipped = self._format_one_by_one(samples)
        if skipped:
            self.counters["dropped.invalid"] += skipped
            self._ratelog.warning("invalid", "%s: dropped %d samples with a value or timestamp "
                                  "that is not a number", self.name, skipped)
        count = len(samples) - skipped
        if count:
            self._add_chunk(text.encode(), count, front)

    def _format_one_by_one(self, samples: list[tuple]) -> tuple[str, int]:
        parts, skipped = [], 0
        for sample in samples:
            try:
                text, bad = format_plaintext_batch([sample], self._paths.for_batch([sample]))
            except Exception:
                text, bad = "", 1
            parts.append(text)
            skipped += bad
        return "".join(parts), skipped

    def _frame_due(self, now: float) -> None:
        """Pickle: frame a partial message once it is old enough."""

    def _frame_all(self) -> None:
        """Pickle: frame the partial message now (shutdown)."""

    def _unframed_points(self) -> int:
        return 0

    def _unframed_wait(self, now: float) -> float:
        return IDLE_POLL

    def _drop_unframed(self) -> int:
        return 0

    def _add_chunk(self, data: bytes, points: int, front: bool = False) -> None:
        dropped = self._buffer.append(data, points, front)
        if dropped:
            self.counters["dropped.buffer_full"] += dropped
            self._ratelog.warning("buffer_full", "%s: buffer full (%d datapoints): dropped the "
                                  "oldest %d", self.name, self._buffer.max_points, dropped)

    # -- connecting

    def _begin_attempt(self, now: float) -> None:
        self._state = _CONNECTING
        self._addresses = None
        self._attempt_deadline = now + self._connect_timeout
        self._last_error = "no address"

    def _continue_attempt(self, now: float) -> None:
        if self._addresses is None:
            try:
                infos = self._resolver.lookup()
            except OSError as exc:
                self._attempt_failed(now, str(exc))
                return
            if infos is None:
                if now >= self._attempt_deadline:
                    self._attempt_failed(now, f"resolving {self.host!r} timed out")
                return
            self._addresses = list(infos)
        while True:
            if self._sock is None:
                if not self._addresses:
                    self._attempt_failed(now, self._last_error)
                    return
                family, socktype, proto, _, address = self._addresses.pop(0)
                self._peer = format_address(address)
                try:
                    sock = socket.socket(family, socktype, proto)
                except OSError as exc:
                    self._last_error = str(exc)
                    continue
                sock.setblocking(False)
                err = sock.connect_ex(address)
                self._sock = sock
                if err == 0:
                    self._connected(now)
                    return
                if err not in _IN_PROGRESS:
                    self._last_error = f"{self._peer}: {errno.errorcode.get(err, err)}"
                    self._close_socket()
                    continue
            if _wait_writable(self._sock, 0):
                err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err == 0:
                    self._connected(now)
                    return
                self._last_error = f"{self._peer}: {errno.errorcode.get(err, err)}"
                self._close_socket()
                continue
            if now >= self._attempt_deadline:
                self._last_error = f"{self._peer}: connect timed out"
                self._close_socket()
                self._attempt_failed(now, self._last_error)
            return

    def _connected(self, now: float) -> None:
        sock = self._sock
        assert sock is not None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        except OSError:
            pass
        failed = self._backoff.attempts
        self._state = _UP
        self._blocked = False
        self.counters["connects"] += 1
        self._backoff.connected(now)
        if self._given_up or failed:
            self._ratelog.warning("up", "%s: connected to %s after %d failed attempts; %d "
                                  "datapoints buffered", self.name, self._peer, failed,
                                  self.pending())
        else:
            log.info("%s: connected to %s", self.name, self._peer)
        self._given_up = False

    def _attempt_failed(self, now: float, reason: str) -> None:
        self._close_socket()
        self._state = _DOWN
        self.counters["connect_failures"] += 1
        exhausted = self._backoff.failure(now)
        self._report_down(reason, exhausted)

    def _lost(self, now: float, reason: str) -> None:
        """The connection broke: put the chunk being written back, and plan the reconnect."""
        self._close_socket()
        self._state = _DOWN
        self.counters["disconnects"] += 1
        if self._inflight is not None:
            self.counters["requeued"] += self._inflight_points
            self._buffer.push_head(self._inflight_data, self._inflight_points)
            self._clear_inflight()
        exhausted = self._backoff.disconnected(now)
        self._report_down(f"connection to {self._peer} lost: {reason}", exhausted)

    def _report_down(self, reason: str, exhausted: bool) -> None:
        attempts = self._backoff.attempts
        wait = self._backoff.current_delay()
        if exhausted:
            dropped = self._buffer.clear() + self._drop_unframed()
            self.counters["dropped.reconnects_exhausted"] += dropped
            self._given_up = True
            log.error("%s: %s:%d unreachable after %d attempts (%s); dropped %d buffered "
                      "datapoints; new data is dropped until a connection succeeds; retrying "
                      "every %.1f s", self.name, self.host, self.port, attempts, reason, dropped,
                      wait)
        elif attempts <= 1:
            log.warning("%s: %s; buffering up to %d datapoints, retrying in %.1f s",
                        self.name, reason, self._buffer.max_points, wait)
        else:
            self._ratelog.warning("down", "%s: %s (attempt %d), retrying in %.1f s",
                                  self.name, reason, attempts, wait)

    def _close_socket(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    # -- writing

    def _pump(self, now: float) -> None:
        sock = self._sock
        assert sock is not None
        # Carbon never talks back: readable means closed or reset. Noticing it here, before
        # writing, keeps the next chunk out of a socket that is already dead.
        try:
            if sock.recv(4096) == b"":
                self._lost(now, "closed by peer")
                return
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self._lost(now, exc.strerror or str(exc))
            return
        budget = WRITE_BUDGET
        self._blocked = False
        while budget > 0:
            if self._inflight is None and not self._next_chunk():
                return
            view = self._inflight
            assert view is not None
            try:
                written = sock.send(view[self._offset :], _SEND_FLAGS)
            except (BlockingIOError, InterruptedError):
                self._blocked = True
                return
            except OSError as exc:
                self._lost(now, exc.strerror or str(exc))
                return
            self._offset += written
            budget -= written
            self.counters["bytes_sent"] += written
            if self._offset >= len(view):
                self.counters["sent"] += self._inflight_points
                self._clear_inflight()

    def _next_chunk(self) -> bool:
        chunk = self._buffer.take()
        if chunk is None:
            return False
        self._inflight_data, self._inflight_points = chunk
        self._inflight = memoryview(self._inflight_data)
        self._offset = 0
        return True

    def _clear_inflight(self) -> None:
        if self._inflight is not None:
            self._inflight.release()
        self._inflight = None
        self._inflight_data = b""
        self._inflight_points = 0
        self._offset = 0

    def _next_poll(self, now: float) -> float:
        if self._state is _CONNECTING:
            return BUSY_POLL
        if self._state is _DOWN:
            return min(self._backoff.wait_time(now), self._unframed_wait(now))
        if self._inflight is not None or self._buffer:
            return BUSY_POLL if self._blocked else 0.0
        return self._unframed_wait(now)

    def _wait(self, timeout: float) -> None:
        """flush(): sleep until the socket can take more, or `timeout`."""
        if self._sock is not None and self._state in (_CONNECTING, _UP):
            _wait_writable(self._sock, timeout)
        else:
            time.sleep(timeout)


class GraphitePickleClient(GraphiteClient):
    """Carbon's pickle protocol: frames of at most graphite_pickle_buffer_size points.

    Points wait in a partial message until it is full or PICKLE_MAX_AGE old; self-metrics are
    framed at once so they are not held behind user data.
    """

    name = "graphite_pickle"
    path_suffix = ""

    def __init__(self, cfg: Any, *, clock: Callable[[], float] = time.monotonic,
                 connect_timeout: float = CONNECT_TIMEOUT,
                 max_age: float = PICKLE_MAX_AGE) -> None:
        super().__init__(cfg, clock=clock, connect_timeout=connect_timeout)
        self._per_message = max(1, int(cfg.graphite_pickle_buffer_size))
        self._max_age = max_age
        self._partial: list[tuple] = []
        self._partial_since = 0.0

    def _enqueue(self, samples: list[tuple], now: float, front: bool) -> None:
        points, skipped = self._points(samples)
        if skipped:
            self.counters["dropped.invalid"] += skipped
            self._ratelog.warning("invalid", "%s: dropped %d samples with a value or timestamp "
                                  "that is not a number", self.name, skipped)
        if front:
            self._frame(points, front=True)
            return
        if not self._partial:
            self._partial_since = now
        partial = self._partial
        partial.extend(points)
        size = self._per_message
        if len(partial) >= size:
            whole = len(partial) - len(partial) % size
            self._frame(partial[:whole])
            del partial[:whole]
            self._partial_since = now

    def _points(self, samples: list[tuple]) -> tuple[list[tuple], int]:
        paths = self._paths
        try:
            if set(map(type, [s[2] for s in samples])) <= {int, float}:
                return [(path, (int(s[3]), s[2]))
                        for path, s in zip(paths.for_batch(samples), samples, strict=True)], 0
        except Exception:  # an odd timestamp, host or name: sort it out sample by sample
            pass
        points, skipped = [], 0
        for sample in samples:
            try:
                host, name, value, timestamp = sample
                points.append(pickle_point(paths.path(host, name), int(timestamp), value))
            except Exception:
                skipped += 1
        return points, skipped

    def _frame(self, points: list[tuple], front: bool = False) -> None:
        size = self._per_message
        for start in range(0, len(points), size):
            part = points[start : start + size]
            self._add_chunk(encode_pickle_trusted(part), len(part), front)

    def _frame_due(self, now: float) -> None:
        if self._partial and now - self._partial_since >= self._max_age:
            self._frame_all()

    def _frame_all(self) -> None:
        if self._partial:
            self._frame(self._partial)
            self._partial = []

    def _unframed_points(self) -> int:
        return len(self._partial)

    def _unframed_wait(self, now: float) -> float:
        if not self._partial:
            return IDLE_POLL
        return max(0.0, self._partial_since + self._max_age - now)

    def _drop_unframed(self) -> int:
        dropped = len(self._partial)
        self._partial = []
        return dropped


