"""proxy.js's health checks of the nodes a StatsD proxy forwards to that have an adminport.

Polled from the proxy's tick (every loop turn) and never blocking: non-blocking sockets looked
at with a zero-timeout select, connected to the node's resolved address (a node whose name is
still resolving is checked at the next round). As proxy.js: connect, send `health\\r\\n`, read
one answer; "up" in it = healthy; refused, reset, silent for a whole interval = unhealthy.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
from collections.abc import Callable


class _Check:
    def __init__(self, sock: socket.socket, started: float) -> None:
        self.sock = sock
        self.started = started
        self.sent = False
        self.answer = b""


class HealthChecker:
    """proxy.js's health checks of nodes that have an adminport; `on_result(node, healthy)`."""

    def __init__(self, nodes: dict[str, int], address: Callable[[str], str | None],
                 interval: float, on_result: Callable[[str, bool], None]) -> None:
        self.nodes = nodes  # node id "host:port" -> adminport
        self._address = address  # node -> its resolved address (None while it resolves)
        self.interval = interval
        self._on_result = on_result
        self._checks: dict[str, _Check] = {}
        self._next = -1.0  # first round at the first poll

    def poll(self, now: float) -> None:
        if now >= self._next:
            self._next = now + self.interval
            for node, port in self.nodes.items():
                host = self._address(node)
                if node not in self._checks and host is not None:
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
            err = errno.EHOSTUNREACH
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
