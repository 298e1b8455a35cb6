"""An input process's TCP connections: accept, read, feed the handler's stream, disconnect.

The one place that keeps the connection bookkeeping (which connection, which stream, how many):
every TCP listener of an input (ChildSpec.streams, `(kind, listener)`) is served the same way.
Per accepted connection the handler's `open_stream(kind, addr)` gives the Stream that decodes it
(the contract: bucky.inputs.base); this module only moves bytes:

- accept: at most `handler.max_tcp_connections` connections over all listeners and
  `handler.max_tcp_connections_per_listener` per listener (bucky.daemon.tcp_limits); more are
  refused (closed at once, `tcp.refused`); a stream that
  cannot be opened closes the connection (`errors.handler`). Accepted connections are counted in
  `tcp.connections`.
- read: up to RECV_BYTES per readable event, fed to the stream with `now` and `mono`.
- disconnect: when the client closed, a read failed, or the stream said so (its feed returned
  False); `stream.close(now)` always runs once. `tcp.disconnected` counts the closes of clients
  that were still sending (the stream said so, or a feed raised).
- answer: a stream that answers (bucky.inputs.base.AnsweringStream: the StatsD management port)
  is asked `outgoing()` after each read and every loop turn (`write_answers`), so answers that
  come later go out too; what it gives is written without blocking (the stream keeps what the
  socket did not take, and bounds it), and the connection closes when the stream says so.
- idle: with the handler's `idle_timeout`, `close_idle(now, mono)` (the loop's tick) closes the
  connections whose stream completed no line or frame for that long (`tcp.idle_closed`).
Nothing here raises: errors are counted (`errors.accept`, `errors.handler`) and logged
rate-limited.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections import Counter

from bucky.daemon.tcp_limits import ConnectionLimits
from bucky.inputs.base import AnsweringStream, InputHandler, Stream
from bucky.ratelog import RateLimitedLog

RECV_BYTES = 262144


class StreamConnections:
    def __init__(self, handler: InputHandler, sel: selectors.BaseSelector, title: str,
                 counters: Counter[str], ratelog: RateLimitedLog) -> None:
        self.handler = handler
        self.sel = sel
        self.title = title
        self.counters = counters
        self.ratelog = ratelog
        self.streams: dict[socket.socket, Stream] = {}
        self.answering: dict[socket.socket, AnsweringStream] = {}
        self.limits: ConnectionLimits[socket.socket] = ConnectionLimits(
            handler.max_tcp_connections, handler.max_tcp_connections_per_listener,
            handler.idle_timeout)
        self.monotonic = time.monotonic  # the connections' clock (tests inject theirs)

    def __len__(self) -> int:
        return len(self.streams)

    def listen(self, kind: str, listener: socket.socket) -> None:
        self.sel.register(listener, selectors.EVENT_READ, lambda sock: self.accept(sock, kind))

    def accept(self, listener: socket.socket, kind: str) -> None:
        try:
            conn, addr = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.counters["errors.accept"] += 1
            self.ratelog.error("accept", "%s: accept failed: %s", self.title, exc)
            return
        if self.limits.full(kind):
            self.counters["tcp.refused"] += 1
            self.ratelog.warning("tcp-limit", "%s: too many TCP clients, refusing one", self.title)
            conn.close()
            return
        try:
            stream = self.handler.open_stream(kind, addr)
        except Exception:
            self.counters["errors.handler"] += 1
            self.ratelog.error("open", "%s: cannot open a stream", self.title, exc_info=True)
            conn.close()
            return
        conn.setblocking(False)
        self.counters["tcp.connections"] += 1
        self.streams[conn] = stream
        self.limits.opened(conn, kind, stream.completed, self.monotonic())
        self.sel.register(conn, selectors.EVENT_READ, self.read)
        if isinstance(stream, AnsweringStream):
            self.answering[conn] = stream

    def read(self, conn: socket.socket) -> None:
        stream = self.streams[conn]
        try:
            data = conn.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        now = time.time()
        keep = False
        if data:
            try:
                keep = stream.feed(data, now, time.monotonic())
            except Exception:
                self.counters["errors.handler"] += 1
                self.ratelog.error("handle", "%s: TCP data could not be handled", self.title,
                                   exc_info=True)
            self.limits.fed(conn, stream.completed, self.monotonic())
        if not keep:
            if data:
                self.counters["tcp.disconnected"] += 1
            self.disconnect(conn, now)
        elif conn in self.answering:
            self.write_answer(conn)

    def write_answers(self) -> None:
        """Every loop turn: what the answering streams have to say (answers that came later)."""
        for conn in list(self.answering):
            self.write_answer(conn)

    def write_answer(self, conn: socket.socket) -> None:
        """Write what the stream has to say, as far as the socket takes it without blocking;
        close the connection when the stream is done with it."""
        stream = self.answering[conn]
        try:
            data, done = stream.outgoing()
            while data:
                try:
                    sent = conn.send(data)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    done = True
                    break
                stream.sent(sent)
                if sent < len(data):
                    return
                data, done = stream.outgoing()
        except Exception:
            self.counters["errors.handler"] += 1
            self.ratelog.error("answer", "%s: cannot answer a TCP client", self.title,
                               exc_info=True)
            done = True
        if done:
            self.disconnect(conn, time.time())

    def close_idle(self, now: float, mono: float) -> None:
        """Close the connections that made no progress for the handler's idle_timeout."""
        for conn in self.limits.expired(mono):
            self.counters["tcp.idle_closed"] += 1
            self.ratelog.warning("tcp-idle", "%s: closing a TCP client idle for %gs", self.title,
                                 self.limits.idle_timeout)
            self.disconnect(conn, now)

    def disconnect(self, conn: socket.socket, now: float) -> None:
        stream = self.streams.pop(conn)
        self.answering.pop(conn, None)
        self.limits.closed(conn)
        try:
            stream.close(now)
        except Exception:
            self.counters["errors.handler"] += 1
            self.ratelog.error("close", "%s: error closing a stream", self.title, exc_info=True)
        self.sel.unregister(conn)
        conn.close()

