"""The `http` child process: the status server (GET /, /health, /metrics, /api/...).

The process reads its channels (status snapshots, tap and self-metrics from the outputs; the
process list from the supervisor) in its main loop and keeps them in a StatusState
(bucky/http/state.py); requests are answered by stdlib http.server in threads. The listening
socket is bound by the supervisor (like every other socket) and inherited.

Limits, so one client cannot block the others: at most MAX_CONNECTIONS requests at a time (more
get 503 at once), one request per connection (HTTP/1.0), REQUEST_TIMEOUT per socket operation and
REQUEST_DEADLINE for the whole request, MAX_REQUEST_BYTES for the request line and headers
together. Only GET and HEAD: other methods get 405; unknown paths 404.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bucky.daemon.selfmetrics import prefix_from_config
from bucky.http.state import StatusState
from bucky.names import NameRules

log = logging.getLogger("bucky")

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_CONNECTIONS = 32
REQUEST_TIMEOUT = 5.0
REQUEST_DEADLINE = 10.0
MAX_REQUEST_BYTES = 16 * 1024
MAX_SERIES_PER_REQUEST = 20
EXPIRE_EVERY = 5.0
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8", ".png": "image/png",
                  ".svg": "image/svg+xml"}
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _load_static() -> dict[str, tuple[str, bytes]]:
    """The page's files, read when the module is imported: the supervisor imports it before
    privileges are dropped (the package may not be readable by the user Bucky runs as)."""
    if not STATIC_DIR.is_dir():
        return {}
    return {p.name: (_CONTENT_TYPES.get(p.suffix, "application/octet-stream"), p.read_bytes())
            for p in STATIC_DIR.iterdir() if p.is_file()}


STATIC_FILES = _load_static()


class _BoundedReader:
    """The request's input, cut off after `limit` bytes or once `deadline` (monotonic) passed:
    the handler then sees an end of input and answers 400 or gives up."""

    def __init__(self, raw: Any, limit: int, deadline: float) -> None:
        self._raw = raw
        self._left = limit
        self._deadline = deadline

    def readline(self, size: int = -1) -> bytes:
        if self._left <= 0 or time.monotonic() > self._deadline:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        line = self._raw.readline(size)
        self._left -= len(line)
        return line

    def read(self, size: int = -1) -> bytes:
        return b""  # no endpoint reads a body

    def close(self) -> None:
        self._raw.close()


class StatusApp:
    """The shared state and the lock the loop and the request threads take in turn."""

    def __init__(self, state: StatusState, clock: Any = time.time) -> None:
        self.state = state
        self.lock = threading.Lock()
        self.clock = clock
        self.static = STATIC_FILES

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
    server: StatusServer
    protocol_version = "HTTP/1.0"
    server_version = "bucky"
    timeout = REQUEST_TIMEOUT

    def setup(self) -> None:
        super().setup()
        self.rfile = _BoundedReader(self.rfile, MAX_REQUEST_BYTES,  # type: ignore[assignment]
                                    time.monotonic() + REQUEST_DEADLINE)

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
        with app.lock:
            app.state.counters["requests"] += 1
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


class StatusServer(ThreadingHTTPServer):
    """ThreadingHTTPServer on a socket bound elsewhere, with a bound on concurrent requests."""

    daemon_threads = True

    def __init__(self, sock: socket.socket, app: StatusApp) -> None:
        # BaseServer only: the TCPServer constructor would create (and bind) a socket of its own.
        import socketserver

        socketserver.BaseServer.__init__(self, sock.getsockname()[:2], StatusHandler)
        self.socket = sock
        self.address_family = sock.family
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]
        self.app = app
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with self.app.lock:
                self.app.state.counters["refused"] += 1
            try:
                request.settimeout(0.5)
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        thread = threading.Thread(target=self._run, args=(request, client_address), daemon=True)
        thread.start()

    def _run(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            self._slots.release()


class HttpRunner:
    """The http child's loop (bucky/daemon/children.py runs it like the other runners)."""

    def __init__(self, spec: Any, flags: Any) -> None:
        cfg = spec.cfg
        self.spec = spec
        self.flags = flags
        self.readers = [ch.reader() for ch in spec.in_channels]
        rules = NameRules.from_config(cfg)
        self.state = StatusState(prefix_from_config(cfg), cfg.http_history_seconds,
                                 rules.statname)
        self.app = StatusApp(self.state)
        listener = dict(spec.streams).get("http")
        if listener is None:
            raise RuntimeError("the http process needs its listening socket")
        self.server = StatusServer(listener, self.app)

    def run(self) -> Any:
        import os

        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                  name="http-server", daemon=True)
        thread.start()
        state, lock = self.state, self.app.lock
        next_expire = time.monotonic() + EXPIRE_EVERY
        last_parent_check = 0.0
        while not self.flags.stop:
            for reader in wait(self.readers, 0.2):
                msgs = reader.read()  # type: ignore[union-attr]
                if msgs:
                    now = time.time()
                    with lock:
                        for msg in msgs:
                            state.handle(msg, now)
            mono = time.monotonic()
            if mono >= next_expire:
                next_expire = mono + EXPIRE_EVERY
                with lock:
                    state.expire(time.time())
            if mono - last_parent_check > 1.0:
                last_parent_check = mono
                if os.getppid() != self.spec.parent_pid:
                    break
        self.server.shutdown()
        return None
