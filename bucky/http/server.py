"""The `http` child process: the status server (GET /, /health, /metrics, /api, /api/...).

The process's loop (bucky.daemon.http_runner) reads its channels (status snapshots, tap and
self-metrics from the outputs; the process list from the supervisor) and keeps them in a
StatusState (bucky/http/state.py); requests are answered here. The listening socket is bound by
the supervisor (like every other socket) and inherited. Nothing in bucky/http imports
bucky.daemon (tests/protocol/test_layering.py).

Limits, so one client cannot block the others: the server's own loop reads every request head
without blocking (a slow or silent client costs a few bytes and no thread: dropped after
REQUEST_TIMEOUT of silence or REQUEST_DEADLINE in all; beyond MAX_ARRIVING such connections the
oldest goes, and each is counted in `slow_clients`), MAX_REQUEST_BYTES for the request line and
headers together (more: 431). A complete head is answered by stdlib http.server's handler in a
thread, at most MAX_CONNECTIONS at a time (more get 503 at once), one request per connection
(HTTP/1.0), REQUEST_TIMEOUT for each write of the answer. Only GET and HEAD: other methods get 405;
unknown paths 404.
"""

from __future__ import annotations

import io
import json
import logging
import selectors
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bucky.http.state import StatusState

log = logging.getLogger("bucky")

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_CONNECTIONS = 32  # requests being answered at once
MAX_ARRIVING = 512  # connections still sending their request head
REQUEST_TIMEOUT = 5.0
REQUEST_DEADLINE = 10.0
MAX_REQUEST_BYTES = 16 * 1024
MAX_SERIES_PER_REQUEST = 20
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8", ".png": "image/png",
                  ".svg": "image/svg+xml"}
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# What GET /api answers: every endpoint, and what it gives.
API_INDEX = [
    {"path": "/health", "gives": "ok, degraded or failing, with the reasons (503 when failing)"},
    {"path": "/metrics", "gives": "self-metrics and destination figures, Prometheus text"},
    {"path": "/api/status", "gives": "processes, inputs, destinations, rejects, counters, about"},
    {"path": "/api/history", "gives": "the relay's own figures over http_history_seconds"},
    {"path": "/api/tree?prefix=P", "gives": "the children of P in the series tree"},
    {"path": "/api/series?path=P[&path=Q...]",
     "gives": f"the points of up to {MAX_SERIES_PER_REQUEST} series"},
]
# The page's icon (also linked from index.html): a small SVG, served at the path browsers try.
FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
           b'<rect width="16" height="16" rx="3" fill="#243447"/>'
           b'<path d="M3 12 L6 7 L9 9 L13 3" stroke="#4caf50" stroke-width="2" fill="none"/>'
           b'</svg>')


def _load_static() -> dict[str, tuple[str, bytes]]:
    """The page's files, read when the module is imported: the supervisor imports it before
    privileges are dropped (the package may not be readable by the user Bucky runs as)."""
    if not STATIC_DIR.is_dir():
        return {}
    return {p.name: (_CONTENT_TYPES.get(p.suffix, "application/octet-stream"), p.read_bytes())
            for p in STATIC_DIR.iterdir() if p.is_file()}


STATIC_FILES = _load_static()


class StatusApp:
    """The shared state and the lock the loop and the request threads take in turn."""

    def __init__(self, state: StatusState, clock: Any = time.time) -> None:
        self.state = state
        self.lock = threading.Lock()
        self.clock = clock
        self.static = STATIC_FILES

    def count(self, counter: str) -> None:
        with self.lock:
            self.state.counters[counter] += 1

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        now = self.clock()
        if path == "/health":
            with self.lock:
                ok, body = self.state.health(now)
            return (200 if ok else 503), "application/json", _json(body)
        if path == "/metrics":
            with self.lock:
                text = self.state.prometheus(now)
            return 200, PROMETHEUS_TYPE, text.encode()
        if path == "/api/status":
            with self.lock:
                body = self.state.status(now)
            return 200, "application/json", _json(body)
        if path == "/api/history":
            with self.lock:
                body = self.state.history(now)
            return 200, "application/json", _json(body)
        if path in ("/api", "/api/"):
            return 200, "application/json", _json({"endpoints": API_INDEX})
        if path == "/favicon.ico":
            return 200, _CONTENT_TYPES[".svg"], FAVICON
        if path == "/api/tree":
            prefix = (query.get("prefix") or [""])[0].strip(".")
            with self.lock:
                children = self.state.series.tree(prefix)
            return 200, "application/json", _json({"prefix": prefix, "children": children})
        if path == "/api/series":
            paths = (query.get("path") or [])[:MAX_SERIES_PER_REQUEST]
            with self.lock:
                series = {p: self.state.series.points(p, now) for p in paths}
            return 200, "application/json", _json({"time": now, "series": series})
        name = "index.html" if path in ("/", "/index.html") else None
        if path.startswith("/static/"):
            name = path[len("/static/"):]
        if name is not None and name in self.static:
            ctype, data = self.static[name]
            return 200, ctype, data
        return 404, "application/json", _json({"error": "not found", "path": path})


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str).encode()


class StatusHandler(BaseHTTPRequestHandler):
    """Answers one request whose head (request line and headers) the server already read."""

    server: StatusServer
    protocol_version = "HTTP/1.0"
    server_version = "bucky"
    timeout = REQUEST_TIMEOUT  # per socket operation; also how long a silent client is kept

    def setup(self) -> None:
        super().setup()  # the socket's timeout, the writer
        self.rfile.close()  # the head was read already: the handler reads it from memory
        self.rfile = io.BytesIO(self.server.take_head(self.request))

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _not_allowed(self) -> None:
        self._send(405, "application/json", _json({"error": "read-only: use GET"}),
                   head=False, extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _answer(self, head: bool) -> None:
        app = self.server.app
        app.count("requests")
        parts = urlsplit(self.path)
        try:
            status, ctype, body = app.route(parts.path, parse_qs(parts.query))
        except Exception:
            log.exception("http: %s failed", parts.path)
            status, ctype, body = 500, "application/json", _json({"error": "internal error"})
        self._send(status, ctype, body, head)

    def _send(self, status: int, ctype: str, body: bytes, head: bool,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: %s " + format, self.address_string(), *args)


class _Arriving:
    """A connection whose request head is still arriving (read by the server's own loop)."""

    __slots__ = ("sock", "addr", "data", "deadline", "idle_until")

    def __init__(self, sock: socket.socket, addr: Any, now: float) -> None:
        self.sock, self.addr, self.data = sock, addr, bytearray()
        self.deadline = now + REQUEST_DEADLINE
        self.idle_until = now + StatusHandler.timeout


_HEAD_ENDS = (b"\r\n\r\n", b"\n\n")
_TOO_LARGE = (b"HTTP/1.0 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
              b"Connection: close\r\n\r\n")
_BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"


class StatusServer:
    """Requests on a socket bound elsewhere. One loop (serve_forever's thread) accepts and reads
    every request head without blocking, so a client that sends slowly, or not at all, holds a
    few bytes of memory and no thread: it is dropped after REQUEST_TIMEOUT of silence or
    REQUEST_DEADLINE in all, and beyond MAX_ARRIVING such connections the oldest goes first.
    A complete head is answered in a thread of its own, at most MAX_CONNECTIONS at a time (more
    get 503 at once)."""

    def __init__(self, sock: socket.socket, app: StatusApp) -> None:
        self.socket = sock
        self.server_address = sock.getsockname()[:2]
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]
        self.app = app
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._arriving: dict[socket.socket, _Arriving] = {}  # oldest first
        self._heads: dict[socket.socket, bytes] = {}
        self._heads_lock = threading.Lock()
        self._stop = threading.Event()
        self._stopped = threading.Event()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._stopped.clear()
        sel = selectors.DefaultSelector()
        self.socket.setblocking(False)
        sel.register(self.socket, selectors.EVENT_READ, None)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(poll_interval):
                    if key.data is None:
                        self._accept(sel)
                    else:
                        self._read(sel, key.data)
                self._expire(sel, time.monotonic())
        finally:
            for conn in list(self._arriving.values()):
                self._drop(sel, conn)
            sel.close()
            self._stopped.set()

    def shutdown(self) -> None:
        self._stop.set()
        self._stopped.wait(5.0)

    def take_head(self, sock: socket.socket) -> bytes:
        with self._heads_lock:
            return self._heads.pop(sock, b"")

    def _accept(self, sel: selectors.BaseSelector) -> None:
        for _ in range(64):
            try:
                sock, addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of file descriptors: the slowest arriving goes
                self.app.count("slow_clients")
                if self._arriving:
                    self._drop(sel, next(iter(self._arriving.values())))
                return
            if len(self._arriving) >= MAX_ARRIVING:
                self.app.count("slow_clients")
                self._drop(sel, next(iter(self._arriving.values())))
            sock.setblocking(False)
            conn = self._arriving[sock] = _Arriving(sock, addr, time.monotonic())
            sel.register(sock, selectors.EVENT_READ, conn)

    def _read(self, sel: selectors.BaseSelector, conn: _Arriving) -> None:
        try:
            chunk = conn.sock.recv(MAX_REQUEST_BYTES + 1 - len(conn.data))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(sel, conn)
            return
        searched = max(len(conn.data) - 3, 0)
        conn.data += chunk
        conn.idle_until = time.monotonic() + StatusHandler.timeout
        if any(conn.data.find(end, searched) >= 0 for end in _HEAD_ENDS):
            self._forget(sel, conn)
            self._dispatch(conn)
        elif len(conn.data) > MAX_REQUEST_BYTES:
            self._answer_and_close(conn, _TOO_LARGE)
            self._drop(sel, conn)

    def _expire(self, sel: selectors.BaseSelector, now: float) -> None:
        late = [c for c in self._arriving.values() if now >= c.deadline or now >= c.idle_until]
        for conn in late:
            self.app.count("slow_clients")
            self._drop(sel, conn)

    def _forget(self, sel: selectors.BaseSelector, conn: _Arriving) -> None:
        sel.unregister(conn.sock)
        del self._arriving[conn.sock]

    def _drop(self, sel: selectors.BaseSelector, conn: _Arriving) -> None:
        self._forget(sel, conn)
        conn.sock.close()

    @staticmethod
    def _answer_and_close(conn: _Arriving, answer: bytes) -> None:
        try:
            conn.sock.send(answer)  # a few bytes into an empty socket buffer: never blocks
        except OSError:
            pass

    def _dispatch(self, conn: _Arriving) -> None:
        if not self._slots.acquire(blocking=False):
            self.app.count("refused")
            self._answer_and_close(conn, _BUSY)
            conn.sock.close()
            return
        with self._heads_lock:
            self._heads[conn.sock] = bytes(conn.data)
        conn.sock.setblocking(True)
        thread = threading.Thread(target=self._run, args=(conn.sock, conn.addr), daemon=True)
        thread.start()

    def _run(self, sock: socket.socket, addr: Any) -> None:
        try:
            StatusHandler(sock, addr, self)
        except Exception:  # a client that went away mid-answer, or a bug: never the server
            log.debug("http: answering %s failed", addr, exc_info=True)
        finally:
            self.take_head(sock)
            try:
                sock.close()
            except OSError:
                pass
            self._slots.release()

