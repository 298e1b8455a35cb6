"""The status server over HTTP: read-only, 404s, bounded requests, a stuck client blocks nobody."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest

from bucky.daemon.sockets import bind_tcp
from bucky.http import server as server_mod
from bucky.http.server import StatusApp, StatusServer
from bucky.http.state import StatusState
from bucky.names import NameRules


@pytest.fixture
def srv():
    sock = bind_tcp("127.0.0.1", 0, "http")
    state = StatusState("bucky.h", 600.0, NameRules().statname)
    state.handle(("tap", "graphite", [(None, "a.b.c", 1.5, time.time())]), time.time())
    server = StatusServer(sock, StatusApp(state))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    sock.close()


def request(server: StatusServer, method: str, path: str) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_endpoints_answer_and_unknown_paths_are_404(srv) -> None:
    status, headers, body = request(srv, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"/static/app.js" in body
    for name in ("app.js", "plot.js", "style.css"):
        assert request(srv, "GET", "/static/" + name)[0] == 200
    status, _, body = request(srv, "GET", "/api/tree?prefix=a")
    assert status == 200 and json.loads(body)["children"][0]["path"] == "a.b"
    status, _, body = request(srv, "GET", "/api/series?path=a.b.c&path=nope")
    series = json.loads(body)["series"]
    assert series["a.b.c"][0][1] == 1.5 and series["nope"] is None
    assert request(srv, "GET", "/health")[0] == 503  # no process list yet
    assert request(srv, "GET", "/metrics")[1]["Content-Type"].startswith("text/plain")
    for path in ("/nope", "/static/../server.py", "/static/", "/api/nothing"):
        assert request(srv, "GET", path)[0] == 404, path
    status, headers, body = request(srv, "HEAD", "/api/status")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_nothing_accepts_writes(srv, method) -> None:
    status, headers, _ = request(srv, method, "/health")
    assert status == 405 and headers["Allow"] == "GET, HEAD"


def test_oversized_request_is_cut_off(srv) -> None:
    with socket.create_connection(("127.0.0.1", srv.server_port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.0\r\n")
        try:
            for i in range(2000):
                s.sendall(b"X-Filler-%d: %s\r\n" % (i, b"y" * 100))
        except OSError:
            pass  # the server closed first: fine
        data = s.recv(1000)
    assert data == b"" or data.startswith(b"HTTP/1.0 4")


def test_a_stuck_client_does_not_block_others(srv, monkeypatch) -> None:
    idle = [socket.create_connection(("127.0.0.1", srv.server_port), timeout=5)
            for _ in range(5)]
    try:
        for s in idle:
            s.sendall(b"GET /hea")  # and then nothing
        t0 = time.monotonic()
        assert request(srv, "GET", "/api/status")[0] == 200
        assert time.monotonic() - t0 < 1.0
    finally:
        for s in idle:
            s.close()


def test_connections_beyond_the_bound_get_503_at_once(srv, monkeypatch) -> None:
    srv._slots = threading.BoundedSemaphore(2)
    idle = [socket.create_connection(("127.0.0.1", srv.server_port), timeout=5)
            for _ in range(2)]
    try:
        time.sleep(0.3)
        status, _, body = request(srv, "GET", "/api/status")
        assert status == 503 and body == b""
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 5
    while request(srv, "GET", "/api/status")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert srv.app.state.counters["refused"] >= 1


def test_a_slow_client_is_dropped_after_the_timeout(srv, monkeypatch) -> None:
    monkeypatch.setattr(server_mod.StatusHandler, "timeout", 0.3)
    with socket.create_connection(("127.0.0.1", srv.server_port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.0\r\n")
        t0 = time.monotonic()
        assert s.recv(100) == b""  # closed by the server, no answer
        assert time.monotonic() - t0 < 3
