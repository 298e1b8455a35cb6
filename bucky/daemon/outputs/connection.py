"""One Graphite destination: a TCP connection to one carbon, its backoff and its bounded buffer.

The output client (graphite.py) encodes and routes; each destination it feeds is one
GraphiteConnection, which takes encoded chunks (plaintext lines or pickle frames, all the same to
it) and owns everything else, so one dead or slow carbon never delays another:

- Chunks wait in a buffer bounded by `graphite_buffer_size` datapoints. Beyond it the oldest whole
  chunks are dropped and counted in `dropped.buffer_full`; the newest chunk is always kept, so the
  bound is exceeded by at most one batch. Self-metrics (`front=True`) go ahead of user data.
  The buffer is a constructor argument: anything with _ChunkBuffer's methods fits (the disk
  spool wraps it this way).
- A slow or stalled carbon only fills the socket and then this buffer: `add` stays fast, memory
  stays bounded, and once carbon reads again the data goes out first-in-first-out.
- Reconnects follow `Backoff` (graphite_reconnect_delay x graphite_backoff_factor ... up to
  graphite_backoff_max). A connection that dies within a second counts as a failed attempt, so a
  carbon that accepts and resets is not hammered.
- After `graphite_max_reconnects` failed attempts in one outage (negative: never) the connection
  logs an error, drops what it buffered (`dropped.reconnects_exhausted`) and, until a connection
  succeeds again, drops new data on arrival under the same counter, instead of holding data that
  would be old by the time it is sent. It keeps retrying on the same schedule (so at least every
  graphite_backoff_max seconds), and recovers by itself when carbon returns.
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
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bucky.addresses import format_address
from bucky.daemon.backoff import Backoff
from bucky.daemon.outputs.base import BUSY_POLL, IDLE_POLL
from bucky.daemon.outputs.buffer import _ChunkBuffer
from bucky.daemon.outputs.resolver import Resolver
from bucky.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from bucky.config import Config

log = logging.getLogger("bucky.daemon.outputs")

WRITE_BUDGET = 4 * 1024 * 1024  # bytes per poll, so a fast socket cannot starve the queue reader
CONNECT_TIMEOUT = 5.0
MIN_RECONNECT_DELAY = 0.01
_SEND_FLAGS = socket.MSG_NOSIGNAL  # Linux: a closed peer is an EPIPE error, not a SIGPIPE
_IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, errno.EINTR}

DOWN, CONNECTING, UP = "down", "connecting", "up"


def wait_writable(sock: socket.socket, timeout: float) -> bool:
    """poll(2) rather than select(2): no FD_SETSIZE limit on the descriptor number."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLOUT)
    return bool(poller.poll(max(0, int(timeout * 1000))))


class GraphiteConnection:
    """One carbon: connect, back off, buffer, write. Encoded chunks in; never blocks.

    `label` names the destination in self-metrics and status (`host_port_instance`); `name`
    prefixes its log messages: the destination as configured (`host:port[:instance]`), never the
    output's name, which the process name in every log line already gives ("bucky: graphite").
    """

    def __init__(
        self,
        cfg: Config,
        host: str,
        port: int,
        *,
        label: str,
        name: str = "",
        clock: Callable[[], float] = time.monotonic,
        connect_timeout: float = CONNECT_TIMEOUT,
        buffer: _ChunkBuffer | None = None,
    ) -> None:
        self.host = host.strip("[]")
        self.port = int(port)
        self.label = label
        self.name = name or format_address(self.host, self.port)
        self.counters: Counter[str] = Counter()
        self._clock = clock
        self._connect_timeout = connect_timeout
        self._buffer = buffer if buffer is not None else _ChunkBuffer(cfg.graphite_buffer_size)
        self._backoff = Backoff(
            max(cfg.graphite_reconnect_delay, MIN_RECONNECT_DELAY),  # 0 would spin on refusals
            cfg.graphite_backoff_factor,
            cfg.graphite_backoff_max,
            cfg.graphite_max_reconnects,
            clock,
        )
        self._resolver = Resolver(self.host, self.port, socket.SOCK_STREAM)
        self._ratelog = RateLimitedLog(log, 60.0, clock)
        self.state = DOWN
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
        self._exhausted = False  # the same, also when a disk spool keeps the data (health)
        self._buffer.attach(self.counters, name)

    # -- what the output client calls

    @property
    def accepting(self) -> bool:
        """False while new data would only be dropped (reconnects exhausted, not connected)."""
        return not self._given_up or self.state is UP

    def add(self, data: bytes, points: int, front: bool = False) -> None:
        """Queue one encoded chunk of `points` datapoints."""
        if not self.accepting:
            self.counters["dropped.reconnects_exhausted"] += points
            return
        dropped = self._buffer.append(data, points, front)
        if dropped:
            self.counters["dropped.buffer_full"] += dropped
            self._ratelog.warning("buffer_full", "%s: buffer full (%d datapoints): dropped the "
                                  "oldest %d", self.name, self._buffer.max_points, dropped)

    def refuse(self, points: int) -> None:
        """Count datapoints the client did not even encode because `accepting` is False."""
        self.counters["dropped.reconnects_exhausted"] += points

    def poll(self, now: float) -> float:
        housekeeping = self._buffer.tick(now, self.state is UP)
        if self.state is DOWN and self._backoff.ready(now):
            self._begin_attempt(now)
        if self.state is CONNECTING:
            self._continue_attempt(now)
        if self.state is UP:
            self._pump(now)
        return min(self._next_poll(now), housekeeping)

    def pending(self) -> int:
        """Datapoints not yet written: memory, the chunk being written, and the disk spool."""
        return self._buffer.points + self._inflight_points + self._buffer.spooled

    def volatile(self) -> int:
        """Datapoints a stop of the process would lose: in memory, not in the spool."""
        return self._buffer.points + self._inflight_points

    def writable_fd(self) -> int | None:
        """The socket to wait on while data waits for it (flush), else None."""
        if self._sock is None or self.state is DOWN:
            return None
        if self.state is UP and self._inflight is None and not self._buffer:
            return None
        return self._sock.fileno()

    def stopping(self) -> None:
        """The process stops soon: a spool takes what memory holds instead of waiting for carbon."""
        self._buffer.stopping()

    def close(self) -> None:
        """Drop the socket; what is still held (not spooled) is counted in `dropped.shutdown`."""
        if self._inflight is not None:
            self._buffer.push_head(self._inflight_data, self._inflight_points)
            self._clear_inflight()
        self._buffer.persist()
        left = self.volatile()
        if left:
            self.counters["dropped.shutdown"] += left
        self._buffer.clear()
        self._close_socket()
        self.state = DOWN

    def status(self) -> dict[str, Any]:
        return {"label": self.label, "address": format_address(self.host, self.port),
                "state": self.state, "pending": self.pending(), "counters": dict(self.counters),
                "accepting": self.accepting,
                "reconnects_exhausted": self._exhausted and self.state is not UP,
                "spool": self._buffer.spooled if self._buffer.durable else None}

    # -- connecting

    def _begin_attempt(self, now: float) -> None:
        self.state = CONNECTING
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
                self._peer = format_address(address[0], address[1])
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
                    self._last_error = self._peer_note("{}: ") + errno.errorcode.get(err, str(err))
                    self._close_socket()
                    continue
            if wait_writable(self._sock, 0):
                err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err == 0:
                    self._connected(now)
                    return
                self._last_error = self._peer_note("{}: ") + errno.errorcode.get(err, str(err))
                self._close_socket()
                continue
            if now >= self._attempt_deadline:
                self._last_error = self._peer_note("{}: ") + "connect timed out"
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
        self.state = UP
        self._blocked = False
        self.counters["connects"] += 1
        self._backoff.connected(now)
        if self._given_up or failed:
            self._ratelog.warning("up", "%s: connected%s after %d failed attempts; %d "
                                  "datapoints buffered", self.name, self._peer_note(), failed,
                                  self.pending())
        else:
            log.info("%s: connected%s", self.name, self._peer_note())
        self._given_up = False
        self._exhausted = False

    def _peer_note(self, template: str = " to {}") -> str:
        """The address connected to (` to 10.0.0.5:2003`), unless the name already says it."""
        return "" if self._peer in self.name else template.format(self._peer)

    def _attempt_failed(self, now: float, reason: str) -> None:
        self._close_socket()
        self.state = DOWN
        self.counters["connect_failures"] += 1
        exhausted = self._backoff.failure(now)
        self._report_down(reason, exhausted)

    def _lost(self, now: float, reason: str) -> None:
        """The connection broke: put the chunk being written back, and plan the reconnect."""
        self._close_socket()
        self.state = DOWN
        self.counters["disconnects"] += 1
        if self._inflight is not None:
            self.counters["requeued"] += self._inflight_points
            self._buffer.push_head(self._inflight_data, self._inflight_points)
            self._clear_inflight()
        exhausted = self._backoff.disconnected(now)
        self._report_down(f"connection{self._peer_note()} lost: {reason}", exhausted)

    def _report_down(self, reason: str, exhausted: bool) -> None:
        attempts = self._backoff.attempts
        wait = self._backoff.current_delay()
        if exhausted:
            self._exhausted = True
        if exhausted and self._buffer.durable:
            # Once an outage, and never through the rate limiter of the retry warnings: an
            # operator must see that the reconnect plan is used up.
            log.warning("%s: unreachable after %d attempts (%s); its reconnect plan is used up; "
                        "the disk spool keeps the data; retrying in %.1f s", self.name,
                        attempts, reason, wait)
        elif exhausted:
            dropped = self._buffer.clear()
            self.counters["dropped.reconnects_exhausted"] += dropped
            self._given_up = True
            log.error("%s: unreachable after %d attempts (%s); dropped %d buffered "
                      "datapoints; new data is dropped until a connection succeeds; retrying "
                      "every %.1f s", self.name, attempts, reason, dropped, wait)
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
                self._buffer.written()

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
        if self.state is CONNECTING:
            return BUSY_POLL
        if self.state is DOWN:
            return self._backoff.wait_time(now)
        if self._inflight is not None or self._buffer:
            return BUSY_POLL if self._blocked else 0.0
        return IDLE_POLL
