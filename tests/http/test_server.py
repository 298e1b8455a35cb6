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
    """At most MAX_CONNECTIONS requests are answered at once (here 2, both held in route)."""
    srv._slots = threading.BoundedSemaphore(2)
    release = threading.Event()
    route = srv.app.route

    def held_route(path, query):
        if path == "/hold":
            release.wait(10)
        return route(path, query)

    monkeypatch.setattr(srv.app, "route", held_route)
    held = [threading.Thread(target=request, args=(srv, "GET", "/hold")) for _ in range(2)]
    for t in held:
        t.start()
    try:
        time.sleep(0.3)
        status, _, body = request(srv, "GET", "/api/status")
        assert status == 503 and body == b""
    finally:
        release.set()
        for t in held:
            t.join(5)
    deadline = time.monotonic() + 5
    while request(srv, "GET", "/api/status")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert srv.app.state.counters["refused"] >= 1


def trickle(srv, clients: int, seconds: float, stop: threading.Event) -> list[socket.socket]:
    """`clients` connections each sending a request one byte a second (issue 19's attack)."""
    socks = [socket.create_connection(("127.0.0.1", srv.server_port), timeout=5)
             for _ in range(clients)]

    def drip() -> None:
        line = b"GET /health HTTP/1.0\r\nX-Slow: " + b"y" * 1000
        i = 0
        while not stop.wait(1.0) and i < len(line):
            for s in socks:
                try:
                    s.send(line[i:i + 1])
                except OSError:
                    pass
            i += 1

    threading.Thread(target=drip, daemon=True).start()
    return socks


@pytest.mark.parametrize("clients", [32, 200])
def test_health_answers_within_a_second_while_clients_trickle(srv, clients) -> None:
    """Issue 19: 32 connections trickling a byte a second made /health answer 503 (every slot
    held); with 200 of them open /health must still answer within 1 s."""
    stop = threading.Event()
    socks = trickle(srv, clients, 3.0, stop)
    try:
        time.sleep(2.5)  # every connection has sent a couple of bytes
        for _ in range(3):
            t0 = time.monotonic()
            status, _, body = request(srv, "GET", "/health")
            assert time.monotonic() - t0 < 1.0
            assert status == 503 and json.loads(body)["reasons"]  # the state's own answer
            assert body != b""
    finally:
        stop.set()
        for s in socks:
            s.close()


def test_a_trickling_client_is_dropped_at_the_request_deadline(srv, monkeypatch) -> None:
    monkeypatch.setattr(server_mod, "REQUEST_DEADLINE", 1.0)
    stop = threading.Event()
    socks = trickle(srv, 1, 5.0, stop)
    try:
        socks[0].settimeout(4)
        t0 = time.monotonic()
        assert socks[0].recv(100) == b""  # closed by the server, no answer
        assert 0.8 < time.monotonic() - t0 < 3
        assert srv.app.state.counters["slow_clients"] == 1
    finally:
        stop.set()
        socks[0].close()


def test_series_with_non_finite_values_are_valid_json(srv) -> None:
    """Issue 19: a series holding inf made /api/series answer 500; now the point's value is
    null (the plot skips it) and the tree's last value too."""
    now = time.time()
    srv.app.state.handle(("tap", "graphite", [(None, "x.inf", float("inf"), now - 2),
                                              (None, "x.inf", 2.0, now - 1),
                                              (None, "x.nan", float("nan"), now)]), now)
    status, _, body = request(srv, "GET", "/api/series?path=x.inf&path=x.nan")
    assert status == 200
    series = json.loads(body)["series"]
    assert [v for _, v in series["x.inf"]] == [None, 2.0]
    assert [v for _, v in series["x.nan"]] == [None]
    status, _, body = request(srv, "GET", "/api/tree?prefix=x")
    assert status == 200 and {n["last"] for n in json.loads(body)["children"]} == {2.0, None}


def test_a_slow_client_is_dropped_after_the_timeout(srv, monkeypatch) -> None:
    monkeypatch.setattr(server_mod.StatusHandler, "timeout", 0.3)
    with socket.create_connection(("127.0.0.1", srv.server_port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.0\r\n")
        t0 = time.monotonic()
        assert s.recv(100) == b""  # closed by the server, no answer
        assert time.monotonic() - t0 < 3


def test_api_answers_an_index_of_the_api_and_every_listed_endpoint_answers(srv) -> None:
    status, headers, body = request(srv, "GET", "/api")
    assert status == 200 and headers["Content-Type"] == "application/json"
    paths = [e["path"] for e in json.loads(body)["endpoints"]]
    assert {"/health", "/metrics", "/api/status", "/api/history", "/api/tree?prefix=P"} <= set(
        paths)
    for path in paths:
        code = request(srv, "GET", path.split("[")[0].replace("=P", "=a"))[0]
        assert code in (200, 503), path  # 503: /health before the first process list


def test_the_page_has_a_favicon_and_the_relay_history(srv) -> None:
    status, headers, body = request(srv, "GET", "/favicon.ico")
    assert status == 200 and headers["Content-Type"] == "image/svg+xml"
    assert body.startswith(b"<svg")
    assert b'rel="icon"' in request(srv, "GET", "/")[2]
    status, _, body = request(srv, "GET", "/api/history")
    history = json.loads(body)
    assert status == 200 and history["history_seconds"] == 600.0
    assert [p["key"] for p in history["plots"]] == ["in", "out", "drops", "backlog", "spool"]
