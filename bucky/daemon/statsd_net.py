"""Small non-blocking TCP pieces of the StatsD input: the management port and proxy health checks.

Both are polled from the input's tick (every loop turn, at most ~50 ms apart) and never block:
sockets are non-blocking and looked at with a zero-timeout select. The management server reads
lines and hands each to a callback that returns the answer now (text), or None when the answer
will come later through `reply()` (a query fanned out to the other StatsD workers). The health
checker does what proxy.js does for a node with an adminport: connect, send `health\\r\\n`, read
one answer; "up" in it = healthy; refused, reset, silent for a whole interval = unhealthy.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
from collections.abc import Callable

from bucky.daemon.sockets import bind_tcp

_MAX_CLIENTS = 32
_MAX_LINE = 64 * 1024

Answer = Callable[[int, str, float], "str | None"]  # (connection id, line, now) -> text or None


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = b""
        self.outbuf = b""
        self.closing = False  # `quit`: close once the output is written
        self.waiting = 0  # answers still to come through reply()


class AdminServer:
    """The management TCP port (stats.js's mgmt_server)."""

    def __init__(self, host: str, port: int, answer: Answer) -> None:
        self.listener = bind_tcp(host, port, "StatsD management")
        self.listener.setblocking(False)
        self._answer = answer
        self._conns: dict[int, _Conn] = {}
        self._next_id = 1
        self.errors = 0

    def fileno(self) -> int:
        return self.listener.fileno()

    def poll(self, now: float) -> None:
        socks = [self.listener] + [c.sock for c in self._conns.values()]
        try:
            readable, _, _ = select.select(socks, [], [], 0)
        except (OSError, ValueError):
            readable = []
        by_sock = {c.sock: cid for cid, c in self._conns.items()}
        for sock in readable:
            if sock is self.listener:
                self._accept()
            else:
                self._read(by_sock[sock], now)
        for cid in list(self._conns):
            self._write(cid)

    def reply(self, cid: int, text: str) -> None:
        conn = self._conns.get(cid)
        if conn is not None:
            conn.waiting = max(0, conn.waiting - 1)
            conn.outbuf += text.encode("ascii", "replace")
            self._write(cid)

    def close(self) -> None:
        for conn in self._conns.values():
            with contextlib.suppress(OSError):
                conn.sock.close()
        self._conns.clear()
        self.listener.close()

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        if len(self._conns) >= _MAX_CLIENTS:
            sock.close()
            self.errors += 1
            return
        sock.setblocking(False)
        self._conns[self._next_id] = _Conn(sock)
        self._next_id += 1

    def _read(self, cid: int, now: float) -> None:
        conn = self._conns[cid]
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(cid)
            return
        conn.inbuf += data
        if len(conn.inbuf) > _MAX_LINE and b"\n" not in conn.inbuf:
            self.errors += 1
            self._drop(cid)
            return
        # The reference treats each received chunk as one command; a line is the same for
        # every client that writes `command\n` (telnet, nc, proxy.js) and is safer for others.
        *lines, conn.inbuf = conn.inbuf.split(b"\n")
        for raw in lines:
            if conn.closing:
                break
            line = raw.decode("ascii", "replace")
            if not line.strip():
                continue
            if line.strip().split(" ")[0] == "quit":
                conn.closing = True
                break
            try:
                text = self._answer(cid, line, now)
            except Exception:
                self.errors += 1
                text = "ERROR\n"
            if text is None:
                conn.waiting += 1
            else:
                conn.outbuf += text.encode("ascii", "replace")

    def _write(self, cid: int) -> None:
        conn = self._conns.get(cid)
        if conn is None:
            return
        if conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
                conn.outbuf = conn.outbuf[sent:]
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._drop(cid)
                return
        if conn.closing and not conn.outbuf and not conn.waiting:
            self._drop(cid)

    def _drop(self, cid: int) -> None:
        conn = self._conns.pop(cid, None)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.sock.close()


class _Check:
    def __init__(self, sock: socket.socket, started: float) -> None:
        self.sock = sock
        self.started = started
        self.sent = False
        self.answer = b""


class HealthChecker:
    """proxy.js's health checks of nodes that have an adminport; `on_result(node, healthy)`."""

    def __init__(self, nodes: dict[str, tuple[str, int]], interval: float,
                 on_result: Callable[[str, bool], None]) -> None:
        self.nodes = nodes  # node id "host:port" -> (host, adminport)
        self.interval = interval
        self._on_result = on_result
        self._checks: dict[str, _Check] = {}
        self._next = -1.0  # first round at the first poll

    def poll(self, now: float) -> None:
        if now >= self._next:
            self._next = now + self.interval
            for node, (host, port) in self.nodes.items():
                if node not in self._checks:
                    self._start(node, host, port, now)
        if not self._checks:
            return
        socks = {c.sock: node for node, c in self._checks.items()}
        try:
            readable, writable, _ = select.select(list(socks), list(socks), [], 0)
        except (OSError, ValueError):
            readable, writable = [], []
        for sock in writable:
            check = self._checks.get(socks[sock])
            if check is not None and not check.sent:
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self._finish(socks[sock], False)
                    continue
                try:
                    sock.send(b"health\r\n")
                    check.sent = True
                except OSError:
                    self._finish(socks[sock], False)
        for sock in readable:
            node = socks[sock]
            check = self._checks.get(node)
            if check is None:
                continue
            try:
                data = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                self._finish(node, False)
                continue
            if not data:
                self._finish(node, False)
            else:
                self._finish(node, b"up" in data)
        for node, check in list(self._checks.items()):
            if now - check.started >= self.interval:
                self._finish(node, False)  # proxy.js's socket timeout = the check interval

    def close(self) -> None:
        for check in self._checks.values():
            with contextlib.suppress(OSError):
                check.sock.close()
        self._checks.clear()

    def _start(self, node: str, host: str, port: int, now: float) -> None:
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
        except OSError:
            self._on_result(node, False)
            return
        try:
            err = sock.connect_ex((host, port))
        except OSError:
            err = errno.EHOSTUNREACH  # e.g. a host name that does not resolve
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            sock.close()
            self._on_result(node, False)
            return
        self._checks[node] = _Check(sock, now)

    def _finish(self, node: str, healthy: bool) -> None:
        check = self._checks.pop(node, None)
        if check is not None:
            with contextlib.suppress(OSError):
                check.sock.close()
        self._on_result(node, healthy)
