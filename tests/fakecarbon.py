"""A threaded fake carbon for tests: plaintext or pickle over TCP on 127.0.0.1 (or ::1), port 0.

It decodes what it receives with Bucky's own codecs (pickle through the allow-list unpickler)
and collects `(path, value, timestamp)` in arrival order. Fault modes for the output tests and the
daemon's integration tests:

- `stop()` / `start()`: carbon down and back up on the same port (SO_REUSEADDR).
- `stall()` / `resume()`: connections stay open but nothing is read; with `rcvbuf=4096` the peer's
  writes block quickly (set before the peer connects: the window is fixed at the handshake).
- `reset_mode = True`: every connection is accepted and at once reset (SO_LINGER 0).
- `connections`: how many connections were accepted; `errors`: decode errors seen;
  `frame_sizes`: points per pickle message.

One thread runs a selector over the listener and the connections; `wait_for` polls with a
deadline, so tests never sleep to synchronise.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable

from bucky.errors import ProtocolError
from bucky.protocol.graphite import decode_pickle_frames, decode_plaintext

Point = tuple[str, float, float]


class FakeCarbon:
    def __init__(self, mode: str = "plaintext", host: str = "127.0.0.1", port: int = 0,
                 rcvbuf: int | None = None) -> None:
        if mode not in ("plaintext", "pickle"):
            raise ValueError(mode)
        self.mode = mode
        self.host = host
        self.port = port
        self.rcvbuf = rcvbuf
        self.reset_mode = False
        self.connections = 0
        self.errors: list[ProtocolError] = []
        self.frame_sizes: list[int] = []  # pickle mode: points in each message received
        self._points: list[Point] = []
        self._lock = threading.Lock()
        self._stalled = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._conns: dict[socket.socket, bytes] = {}

    # -- lifecycle

    def start(self) -> FakeCarbon:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.rcvbuf:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        listener.bind((self.host, self.port))
        listener.listen(64)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fakecarbon", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection (what a carbon restart looks like)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> FakeCarbon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def stall(self) -> None:
        self._stalled.set()

    def resume(self) -> None:
        self._stalled.clear()

    # -- results

    @property
    def points(self) -> list[Point]:
        with self._lock:
            return list(self._points)

    def paths(self) -> list[str]:
        return [p[0] for p in self.points]

    def clear(self) -> None:
        with self._lock:
            self._points.clear()

    def wait_for(self, predicate_or_count: int | Callable[[list[Point]], bool],
                 timeout: float = 10.0) -> bool:
        """Poll until `count` points arrived or `predicate(points)` holds; False on timeout."""
        if isinstance(predicate_or_count, int):
            count = predicate_or_count
            predicate: Callable[[list[Point]], bool] = lambda pts: len(pts) >= count
        else:
            predicate = predicate_or_count
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self.points):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    # -- the server thread

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        assert self._listener is not None
        selector.register(self._listener, selectors.EVENT_READ, None)
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(0.02):
                    if key.data is None:
                        self._accept(selector)
                    elif not self._stalled.is_set():
                        self._read(selector, key.fileobj)  # type: ignore[arg-type]
                if self._stalled.is_set():
                    time.sleep(0.01)  # readable connections would otherwise spin the selector
        finally:
            for conn in list(self._conns):
                self._drop(selector, conn)
            selector.close()
            self._listener.close()
            self._listener = None

    def _accept(self, selector: selectors.BaseSelector) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            self.connections += 1
            if self.reset_mode:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                continue
            conn.setblocking(False)
            self._conns[conn] = b""
            selector.register(conn, selectors.EVENT_READ, "conn")

    def _read(self, selector: selectors.BaseSelector, conn: socket.socket) -> None:
        try:
            data = conn.recv(256 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(selector, conn)
            return
        buffer = self._conns[conn] + data
        try:
            if self.mode == "plaintext":
                decoded = decode_plaintext(buffer)
                points = decoded.records
                self.errors.extend(decoded.errors)
                rest = decoded.rest
            else:
                points, rest = self._decode_frames(buffer)
        except ProtocolError as exc:
            self.errors.append(exc)
            self._drop(selector, conn)
            return
        self._conns[conn] = rest
        if points:
            with self._lock:
                self._points.extend(points)

    def _decode_frames(self, buffer: bytes) -> tuple[list[Point], bytes]:
        """Frame by frame, so the size of every message is recorded in `frame_sizes`."""
        points: list[Point] = []
        while len(buffer) >= 4:
            (length,) = struct.unpack("!L", buffer[:4])
            if len(buffer) < 4 + length:
                break
            decoded = decode_pickle_frames(buffer[: 4 + length])
            if decoded.errors:  # strict, unlike carbon: a test wants to see a bad frame fail
                raise decoded.errors[0]
            self.frame_sizes.append(len(decoded.records))
            points.extend((path, value, ts) for path, (ts, value) in decoded.records)
            buffer = buffer[4 + length :]
        return points, buffer

    def _drop(self, selector: selectors.BaseSelector, conn: socket.socket) -> None:
        self._conns.pop(conn, None)
        try:
            selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (for 'carbon down at start')."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
