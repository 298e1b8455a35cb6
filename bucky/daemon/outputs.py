"""Output clients: Graphite (plaintext or pickle over TCP), debug stdout, InfluxDB, custom classes.

Each output runs in its own process, whose loop calls `send(batch, now)`, `poll(now)` (non-blocking
progress), `flush(deadline)` at shutdown and `close()`. Rules for every client:

- The constructor does no I/O (the supervisor builds clients only to learn their names); sockets,
  threads and custom-client instances appear on the first `poll`/`send`, inside the process.
- `send` and `poll` never wait on the network: sockets are non-blocking, host names resolve in a
  daemon thread (numeric addresses at once), and a resolution failure counts as a failed attempt.
- Everything lost is counted in `counters` (cumulative; the process turns them into self-metrics).

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
import select
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from operator import getitem, itemgetter
from typing import Any, TextIO

from bucky.daemon.backoff import Backoff
from bucky.errors import ConfigError
from bucky.names import NameRules
from bucky.protocol.graphite import (
    clean_path,
    encode_pickle_trusted,
    format_plaintext_batch,
    pickle_point,
)
from bucky.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

IDLE_POLL = 1.0  # nothing to do until data arrives
BUSY_POLL = 0.01  # socket full or connect in progress: look again soon, cheaply
WRITE_BUDGET = 4 * 1024 * 1024  # bytes per poll, so a fast socket cannot starve the queue reader
COALESCE_BYTES = 64 * 1024  # small chunks (self-metrics, tiny batches) are joined into one write
CONNECT_TIMEOUT = 5.0
MIN_RECONNECT_DELAY = 0.01
PICKLE_MAX_AGE = 1.0  # a partial pickle message waits at most this long for more points
PATH_CACHE_LIMIT = 200_000
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)
_IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, errno.EINTR}

_HOST = itemgetter(0)
_NAME = itemgetter(1)


class OutputClient:
    """The contract between an output process's loop and one destination."""

    name: str = "output"

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()

    def send(self, samples: list[tuple], now: float, front: bool = False) -> None:
        """Take a batch; never blocks. `front`: self-metrics, to go ahead of queued data."""
        raise NotImplementedError

    def notify(self, notification: Any) -> None:
        """A collectd Notification record; only custom clients do something with it."""

    def poll(self, now: float) -> float:
        """Non-blocking progress; returns seconds until it wants to be polled again."""
        return IDLE_POLL

    def pending(self) -> int:
        """Datapoints held, not yet written."""
        return 0

    def flush(self, deadline: float) -> bool:
        """Block until everything is written or `deadline` (time.monotonic()) passes."""
        return True

    def close(self) -> None:
        """Release sockets; whatever is still pending is counted as dropped."""


# --- shared pieces --------------------------------------------------------------------------------


class _PathCache:
    """(host, name) -> cleaned Graphite path + `suffix`, computed once per distinct pair.

    Two levels, host then name, both dicts filled by `__missing__`: looking up a whole batch
    is then three C-level `map`s with no tuple built per sample (the hot path of the relay).
    """

    def __init__(self, rules: NameRules, suffix: str = "") -> None:
        self._rules = rules
        self._suffix = suffix
        self._hosts = _HostPaths(self)
        self.size = 0

    def path(self, host: str | None, name: str) -> str:
        return self._hosts[host][name]

    def for_batch(self, batch: Sequence[tuple]) -> list[str]:
        return list(map(getitem, map(self._hosts.__getitem__, map(_HOST, batch)),
                        map(_NAME, batch)))

    def _compute(self, host: str | None, name: str) -> str:
        self.size += 1
        if self.size > PATH_CACHE_LIMIT:  # names churn: stay bounded, rebuild on demand
            self._hosts.clear()
            self.size = 1
        return clean_path(self._rules.statname(host, name)) + self._suffix


class _HostPaths(dict):
    def __init__(self, cache: _PathCache) -> None:
        super().__init__()
        self._cache = cache

    def __missing__(self, host: str | None) -> _NamePaths:
        names = self[host] = _NamePaths(self._cache, host)
        return names


class _NamePaths(dict):
    def __init__(self, cache: _PathCache, host: str | None) -> None:
        super().__init__()
        self._cache = cache
        self._host = host

    def __missing__(self, name: str) -> str:
        path = self[name] = self._cache._compute(self._host, name)
        return path


class _Resolver:
    """getaddrinfo without blocking the caller: numeric hosts at once, names in a daemon thread.

    A daemon thread (not an executor) so a hung DNS lookup can never hold up process exit. One
    lookup at a time; a caller that finds it still running simply asks again later.
    """

    def __init__(self, host: str, port: int, socktype: int) -> None:
        self.host = host
        self.port = port
        self._socktype = socktype
        self._thread: threading.Thread | None = None
        self._outcome: tuple[list, BaseException | None] | None = None

    def lookup(self) -> list | None:
        """Addresses, or None while a lookup runs; raises OSError when the name does not resolve."""
        if self._thread is not None:
            if self._thread.is_alive():
                return None
            self._thread = None
            outcome, self._outcome = self._outcome, None
            if outcome is not None:
                infos, error = outcome
                if error is not None:
                    raise error
                return infos
        try:
            return socket.getaddrinfo(self.host, self.port, 0, self._socktype, 0,
                                      socket.AI_NUMERICHOST)
        except (socket.gaierror, UnicodeError):
            pass
        self._thread = threading.Thread(target=self._run, name=f"resolve {self.host}", daemon=True)
        self._thread.start()
        return None

    def _run(self) -> None:
        try:
            infos = socket.getaddrinfo(self.host, self.port, 0, self._socktype)
            self._outcome = (infos, None)
        except (OSError, UnicodeError) as exc:
            self._outcome = ([], OSError(f"cannot resolve {self.host!r}: {exc}"))


class _ChunkBuffer:
    """Encoded chunks waiting for the socket, bounded in datapoints (by whole chunks)."""

    def __init__(self, max_points: int) -> None:
        self.max_points = max(1, int(max_points))
        self._urgent: deque[tuple[bytes, int]] = deque()  # self-metrics, and a chunk to resend
        self._normal: deque[tuple[bytes, int]] = deque()
        self.points = 0

    def __bool__(self) -> bool:
        return bool(self._urgent or self._normal)

    def append(self, data: bytes, points: int, front: bool = False) -> int:
        """Queue a chunk; returns how many datapoints were dropped to stay within the bound."""
        (self._urgent if front else self._normal).append((data, points))
        self.points += points
        dropped = 0
        # Oldest user data goes first, then old self-metrics; the chunk just added always stays.
        keep_normal, keep_urgent = (0, 1) if front else (1, 0)
        while self.points > self.max_points:
            if len(self._normal) > keep_normal:
                queue = self._normal
            elif len(self._urgent) > keep_urgent:
                queue = self._urgent
            else:
                break
            _, count = queue.popleft()
            self.points -= count
            dropped += count
        return dropped

    def push_head(self, data: bytes, points: int) -> None:
        """Put back a chunk that could not be written whole: it goes out first."""
        self._urgent.appendleft((data, points))
        self.points += points

    def take(self, max_bytes: int = COALESCE_BYTES) -> tuple[bytes, int] | None:
        """The next chunk to write; consecutive small chunks are joined into one."""
        first = self._pop()
        if first is None:
            return None
        data, points = first
        if len(data) >= max_bytes:
            return first
        parts, size = [data], len(data)
        while True:
            queue = self._urgent if self._urgent else self._normal
            if not queue or size + len(queue[0][0]) > max_bytes:
                break
            more, count = self._pop()  # type: ignore[misc]
            parts.append(more)
            size += len(more)
            points += count
        return (b"".join(parts) if len(parts) > 1 else data), points

    def _pop(self) -> tuple[bytes, int] | None:
        queue = self._urgent if self._urgent else self._normal
        if not queue:
            return None
        chunk = queue.popleft()
        self.points -= chunk[1]
        return chunk

    def clear(self) -> int:
        dropped = self.points
        self._urgent.clear()
        self._normal.clear()
        self.points = 0
        return dropped


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
                self._peer = _format_address(address)
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


# --- debug ---------------------------------------------------------------------------------------


class DebugClient(OutputClient):
    """`--debug`: the lines Graphite would get, on stdout, flushed per batch."""

    name = "debug"

    def __init__(self, cfg: Any, *, stdout: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._stdout = stdout
        self._paths = _PathCache(NameRules.from_config(cfg), " ")
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
            self._ratelog.error("write", "debug: cannot write to stdout: %s", exc)
            return
        self.counters["sent"] += len(samples) - skipped
        if skipped:
            self.counters["dropped.invalid"] += skipped


# --- InfluxDB ------------------------------------------------------------------------------------

INFLUX_DEFAULT_PORT = 8089
INFLUX_MAX_DATAGRAM = 1400  # fits an Ethernet MTU: no IP fragmentation
INFLUX_RESOLVE_EVERY = 180.0  # Bucky 2's interval
INFLUX_UNRESOLVED_QUEUE = 256  # datagrams held per destination while its name resolves


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """"host", "host:port", "1.2.3.4:port", "[v6]:port" or a bare IPv6 address."""
    text = text.strip()
    try:
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else default_port
            if rest and not rest.startswith(":"):
                raise ValueError(text)
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
            port = int(port_text)
        else:
            host, port = text, default_port  # a name, an IPv4 address or a bare IPv6 address
    except ValueError:
        raise ConfigError(f"influxdb_hosts: expected host:port, got {text!r}") from None
    if not host or not 0 < port < 65536:
        raise ConfigError(f"influxdb_hosts: expected host:port, got {text!r}")
    return host, port


def _escape_measurement(text: str) -> str:
    return (text.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")
            .replace("\n", "_").replace("\r", "_"))


def _escape_tag(text: str) -> str:
    return _escape_measurement(text).replace("=", "\\=")


def influx_prefix(host: str | None, name: str) -> str:
    """`measurement,tag=v,... value=` for a sample; a Graphite tag suffix becomes tags."""
    measurement, *tag_parts = name.split(";")
    tags: dict[str, str] = {}
    for part in tag_parts:
        key, sep, value = part.partition("=")
        if sep and key and value:
            tags[key] = value
    if host:
        tags["host"] = host
    out = [_escape_measurement(measurement)]
    out.extend(f"{_escape_tag(k)}={_escape_tag(v)}" for k, v in sorted(tags.items()) if v)
    return ",".join(out) + " value="


def influx_timestamp_ns(timestamp: object) -> int:
    if type(timestamp) is int:
        return timestamp * 1_000_000_000
    return int(round(float(timestamp) * 1e9))  # type: ignore[arg-type]


def pack_lines(lines: Iterable[str], max_bytes: int) -> list[bytes]:
    """Join lines into datagrams of at most `max_bytes` (a longer line travels alone)."""
    datagrams: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        data = line.encode()
        if current and size + 1 + len(data) > max_bytes:
            datagrams.append(b"\n".join(current))
            current, size = [], 0
        size += len(data) + (1 if current else 0)
        current.append(data)
    if current:
        datagrams.append(b"\n".join(current))
    return datagrams


class _UdpDestination:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.resolver = _Resolver(host, port, socket.SOCK_DGRAM)
        self.address: tuple | None = None
        self.family = socket.AF_INET
        self.resolved_at = float("-inf")
        self.waiting: deque[bytes] = deque(maxlen=INFLUX_UNRESOLVED_QUEUE)


class InfluxDBClient(OutputClient):
    """Bucky 2's InfluxDB output: UDP line protocol `name,host=h value=v ts_ns` to every host.

    Values are always written as floats (`value=5.0`): InfluxDB refuses a field that changes
    type, and a metric may be an int once and a float the next time. NaN and infinities, which
    the line protocol cannot carry, are dropped and counted. Each configured destination gets
    every datagram (its first resolved address; names re-resolved every 180 s).
    """

    name = "influxdb"

    def __init__(self, cfg: Any, *, clock: Callable[[], float] = time.monotonic,
                 max_datagram: int = INFLUX_MAX_DATAGRAM) -> None:
        super().__init__()
        self._clock = clock
        self._max_datagram = max_datagram
        self._destinations = [
            _UdpDestination(*parse_host_port(h, INFLUX_DEFAULT_PORT)) for h in cfg.influxdb_hosts
        ]
        self._prefixes: dict[tuple, str] = {}
        self._sockets: dict[int, socket.socket] = {}
        self._ratelog = RateLimitedLog(log, 60.0, clock)

    def _lines(self, samples: list[tuple]) -> list[str]:
        prefixes = self._prefixes
        lines = []
        invalid = 0
        for sample in samples:
            try:
                host, name, value, timestamp = sample
                number = float(value)
                if number != number or number in (float("inf"), float("-inf")):
                    invalid += 1
                    continue
                key = (host, name)
                prefix = prefixes.get(key)
                if prefix is None:
                    if len(prefixes) >= PATH_CACHE_LIMIT:
                        prefixes.clear()
                    prefix = prefixes[key] = influx_prefix(host, name)
                lines.append(f"{prefix}{number!r} {influx_timestamp_ns(timestamp)}")
            except Exception:
                invalid += 1
        if invalid:
            self.counters["dropped.invalid"] += invalid
        return lines

    def send(self, samples: list[tuple], now: float, front: bool = False) -> None:
        lines = self._lines(samples)
        if not lines:
            return
        datagrams = pack_lines(lines, self._max_datagram)
        for dest in self._destinations:
            self._refresh(dest, now)
            if dest.address is None:
                dropped = max(0, len(dest.waiting) + len(datagrams) - INFLUX_UNRESOLVED_QUEUE)
                self.counters["dropped.unresolved_datagrams"] += dropped
                dest.waiting.extend(datagrams)
                continue
            self._transmit(dest, datagrams)
        self.counters["sent"] += len(lines)

    def poll(self, now: float) -> float:
        for dest in self._destinations:
            self._refresh(dest, now)
            if dest.address is not None and dest.waiting:
                waiting = list(dest.waiting)
                dest.waiting.clear()
                self._transmit(dest, waiting)
        if any(d.address is None for d in self._destinations):
            return BUSY_POLL * 10
        return IDLE_POLL

    def pending(self) -> int:
        return 0  # datagrams are not counted in datapoints; UDP keeps no backlog worth waiting on

    def _refresh(self, dest: _UdpDestination, now: float) -> None:
        if dest.address is not None and now - dest.resolved_at < INFLUX_RESOLVE_EVERY:
            return
        try:
            infos = dest.resolver.lookup()
        except OSError as exc:
            self.counters["resolve_failures"] += 1
            self._ratelog.warning("resolve:" + dest.host, "influxdb: %s", exc)
            dest.resolved_at = now  # keep the old address (if any) until the next interval
            return
        if infos:
            family, _, _, _, address = infos[0]
            dest.family, dest.address, dest.resolved_at = family, address, now

    def _socket(self, family: int) -> socket.socket:
        sock = self._sockets.get(family)
        if sock is None:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self._sockets[family] = sock
        return sock

    def _transmit(self, dest: _UdpDestination, datagrams: Sequence[bytes]) -> None:
        try:
            sock = self._socket(dest.family)
        except OSError as exc:
            self.counters["errors"] += len(datagrams)
            self._ratelog.error("socket", "influxdb: cannot open a UDP socket: %s", exc)
            return
        for data in datagrams:
            try:
                sock.sendto(data, dest.address)
                self.counters["bytes_sent"] += len(data)
            except (BlockingIOError, InterruptedError):
                self.counters["dropped.socket_full"] += 1
            except OSError as exc:
                self.counters["errors"] += 1
                self._ratelog.warning("send:" + dest.host, "influxdb: sending to %s:%d: %s",
                                      dest.host, dest.port, exc)

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()


# --- custom clients (Bucky 2 compatible) ---------------------------------------------------------


class CustomClientAdapter(OutputClient):
    """Runs a Bucky 2 style client class (`bucky.client.Client`) in an output process.

    The class is instantiated as `cls(cfg, None)` on first use inside the process, and gets
    `send(host, name, value, timestamp)` for every sample, raw (no name rules), as in Bucky 2;
    `notify(notification)` for collectd notifications; `tick()` about once a second; `close()`.
    Its exceptions are counted (`errors`) and logged at most once a minute; they never stop the
    process or the other samples. A constructor that fails is retried with backoff (1 s .. 60 s)
    and samples arriving meanwhile are dropped (`dropped.unavailable`). The client's own calls
    run inline: a client that blocks, blocks only its own output process.
    """

    TICK_EVERY = 1.0

    def __init__(self, cls: type, cfg: Any, *, name: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.name = name or f"custom_{cls.__name__}"
        self._cls = cls
        self._cfg = cfg
        self._clock = clock
        self._instance: Any = None
        self._backoff = Backoff(1.0, 2.0, 60.0, -1, clock)
        self._ratelog = RateLimitedLog(log, 60.0, clock)
        self._next_tick = float("-inf")

    def _client(self, now: float) -> Any:
        if self._instance is None and self._backoff.ready(now):
            try:
                self._instance = self._cls(self._cfg, None)
            except Exception as exc:
                self._backoff.failure(now)
                self.counters["errors.init"] += 1
                self._ratelog.error("init", "%s: %s(cfg, None) failed: %r; retrying in %.0f s",
                                    self.name, self._cls.__name__, exc,
                                    self._backoff.current_delay())
        return self._instance

    def send(self, samples: list[tuple], now: float, front: bool = False) -> None:
        client = self._client(now)
        if client is None:
            self.counters["dropped.unavailable"] += len(samples)
            return
        send = client.send
        errors = 0
        error: Exception | None = None
        for sample in samples:
            try:
                host, name, value, timestamp = sample
                send(host, name, value, timestamp)
            except Exception as exc:
                errors += 1
                error = exc
        self.counters["sent"] += len(samples) - errors
        if errors:
            self.counters["errors"] += errors
            self._ratelog.error("send", "%s: send() failed for %d of %d samples, last: %r",
                                self.name, errors, len(samples), error)

    def notify(self, notification: Any) -> None:
        client = self._client(self._clock())
        if client is None:
            self.counters["dropped.unavailable"] += 1
            return
        try:
            client.notify(notification)
            self.counters["notifications"] += 1
        except Exception as exc:
            self.counters["errors"] += 1
            self._ratelog.error("notify", "%s: notify() failed: %r", self.name, exc)

    def poll(self, now: float) -> float:
        client = self._client(now)
        if client is None:
            return max(self._backoff.wait_time(now), BUSY_POLL)
        if now >= self._next_tick:
            self._next_tick = now + self.TICK_EVERY
            try:
                client.tick()
            except Exception as exc:
                self.counters["errors"] += 1
                self._ratelog.error("tick", "%s: tick() failed: %r", self.name, exc)
        return max(0.0, self._next_tick - now)

    def close(self) -> None:
        client, self._instance = self._instance, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:
                log.error("%s: close() failed: %r", self.name, exc)


# --- assembly ------------------------------------------------------------------------------------


def build_outputs(cfg: Any, *, clock: Callable[[], float] = time.monotonic,
                  stdout: TextIO | None = None) -> list[OutputClient]:
    """The configured outputs, in a stable order (the output processes index into it).

    `debug` replaces the Graphite output with DebugClient (stdout), as Bucky 2's --debug did,
    whether or not graphite_enabled is set; InfluxDB and custom clients are unaffected. Nothing
    here touches the network or starts a thread: the supervisor calls it to learn the names.
    """
    outputs: list[OutputClient] = []
    if getattr(cfg, "debug", False):
        outputs.append(DebugClient(cfg, stdout=stdout, clock=clock))
    elif cfg.graphite_enabled:
        graphite = GraphitePickleClient if cfg.graphite_pickle_enabled else GraphiteClient
        outputs.append(graphite(cfg, clock=clock))
    if getattr(cfg, "influxdb_enabled", False):
        outputs.append(InfluxDBClient(cfg, clock=clock))
    taken = {o.name for o in outputs}
    for cls in getattr(cfg, "custom_clients", ()) or ():
        name = f"custom_{cls.__name__}"
        suffix = 2
        while name in taken:
            name = f"custom_{cls.__name__}_{suffix}"
            suffix += 1
        taken.add(name)
        outputs.append(CustomClientAdapter(cls, cfg, name=name, clock=clock))
    return outputs


# --- helpers -------------------------------------------------------------------------------------


def _wait_writable(sock: socket.socket, timeout: float) -> bool:
    """poll(2) rather than select(2): no FD_SETSIZE limit on the descriptor number."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLOUT)
    return bool(poller.poll(max(0, int(timeout * 1000))))


def _format_address(address: tuple) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
