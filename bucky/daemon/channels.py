"""One-writer, one-reader pipes that carry batches between Bucky's processes.

Why not multiprocessing.Queue: its shared locks stay held when a process is killed at the wrong
moment, which would wedge the restarted child; and its `put` blocks or grows without bound.
A Channel is an OS pipe created by the supervisor before the children fork, so a restarted child
inherits the same pipe and nothing queued in the kernel is lost. Each end is used by exactly one
process at a time, so no lock is needed.

Framing: MAGIC, a 4-byte big-endian length, a payload: b"M" + marshal data for sample batches
(lists of plain tuples; marshal is about twice as fast as pickle on them) or b"P" + a pickle for
everything else (control messages carrying records). A reader that finds garbage (a producer
killed mid-write) skips to the next MAGIC. The writer never blocks: frames wait in a bounded
pending buffer while the pipe is full, and a frame that would overflow it is refused (the caller
counts the drop). Batches are encoded once and the same bytes written to every destination.
"""

from __future__ import annotations

import errno
import fcntl
import marshal
import os
import pickle
import select
import struct
import time
from collections import deque
from collections.abc import Callable

MAGIC = b"\xb0\xc4\x79\x33"
_HEADER = struct.Struct(">4sI")
_HEADER_SIZE = _HEADER.size
_MAX_FRAME = 256 * 1024 * 1024
_PIPE_SIZE = 1024 * 1024  # Linux's default pipe-max-size; larger smooths bursts between processes
_READ_CHUNK = 1024 * 1024
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def encode_frame(obj: object) -> bytes:
    payload = None
    if type(obj) is list:
        try:
            payload = b"M" + marshal.dumps(obj)
        except ValueError:  # something marshal cannot carry (a subclass, an object): pickle it
            payload = None
    if payload is None:
        payload = b"P" + pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(MAGIC, len(payload)) + payload


def decode_payload(payload: bytes | bytearray | memoryview) -> object:
    kind = payload[0]
    if kind == 0x4D:  # "M"
        return marshal.loads(payload[1:])
    if kind == 0x50:  # "P"
        return pickle.loads(payload[1:])
    raise ValueError("unknown frame payload kind")


def _set_nonblocking(fd: int) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)


class Channel:
    """Both ends of a pipe, created in the supervisor; each child uses one end."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.read_fd, self.write_fd = os.pipe()
        for fd in (self.read_fd, self.write_fd):
            os.set_inheritable(fd, True)
        try:
            fcntl.fcntl(self.write_fd, F_SETPIPE_SZ, _PIPE_SIZE)
        except OSError:
            pass  # an unprivileged user over the per-user pipe quota keeps the default 64 KiB

    def writer(self, max_pending_bytes: int) -> ChannelWriter:
        return ChannelWriter(self.name, self.write_fd, max_pending_bytes)

    def reader(self) -> ChannelReader:
        return ChannelReader(self.name, self.read_fd)

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class ChannelWriter:
    def __init__(self, name: str, fd: int, max_pending_bytes: int) -> None:
        self.name = name
        self._fd = fd
        self._max_pending = max_pending_bytes
        self._pending: deque[memoryview] = deque()
        self.pending_bytes = 0
        self.dropped_frames = 0
        _set_nonblocking(fd)

    def put_frame(self, frame: bytes) -> bool:
        """Queue an encoded frame; False (and nothing queued) when the pending buffer is full."""
        if self._pending:
            self.pump()
            if self.pending_bytes + len(frame) > self._max_pending:
                self.dropped_frames += 1
                return False
            self._pending.append(memoryview(frame))
            self.pending_bytes += len(frame)
            return True
        try:
            written = os.write(self._fd, frame)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                self.dropped_frames += 1
                return False
            raise
        if written < len(frame):
            rest = memoryview(frame)[written:]
            if written == 0 and len(rest) > self._max_pending:
                self.dropped_frames += 1
                return False
            self._pending.append(rest)  # a started frame must be finished to keep framing
            self.pending_bytes += len(rest)
        return True

    def put(self, obj: object) -> bool:
        return self.put_frame(encode_frame(obj))

    def pump(self) -> None:
        """Write as much pending data as the pipe takes, without blocking."""
        pending = self._pending
        while pending:
            chunk = pending[0]
            try:
                written = os.write(self._fd, chunk)
            except BlockingIOError:
                return
            self.pending_bytes -= written
            if written < len(chunk):
                pending[0] = chunk[written:]
                return
            pending.popleft()

    def flush(self, deadline: float, clock: Callable[[], float] = time.monotonic) -> bool:
        """Block (politely) until everything pending is in the pipe or the deadline passes."""
        while self._pending:
            self.pump()
            remaining = deadline - clock()
            if not self._pending:
                break
            if remaining <= 0:
                return False
            select.select([], [self._fd], [], min(remaining, 0.05))
        return True


class ChannelReader:
    def __init__(self, name: str, fd: int) -> None:
        self.name = name
        self._fd = fd
        self._buf = bytearray()
        self.corrupt_frames = 0
        _set_nonblocking(fd)

    def fileno(self) -> int:
        return self._fd

    def read(self, max_bytes: int = 8 * _READ_CHUNK) -> list[object]:
        """Every complete object available now (reads at most about max_bytes)."""
        got = 0
        while got < max_bytes:
            try:
                data = os.read(self._fd, _READ_CHUNK)
            except BlockingIOError:
                break
            if not data:
                break
            self._buf += data
            got += len(data)
            if len(data) < _READ_CHUNK:
                break
        return self._parse() if self._buf else []

    def _parse(self) -> list[object]:
        buf = self._buf
        out: list[object] = []
        pos = 0
        end = len(buf)
        while end - pos >= _HEADER_SIZE:
            magic, length = _HEADER.unpack_from(buf, pos)
            if magic != MAGIC or length > _MAX_FRAME:
                nxt = buf.find(MAGIC, pos + 1)
                self.corrupt_frames += 1
                if nxt < 0:
                    pos = max(pos, end - len(MAGIC) + 1)
                    break
                pos = nxt
                continue
            if end - pos - _HEADER_SIZE < length:
                break
            start = pos + _HEADER_SIZE
            try:
                out.append(decode_payload(memoryview(buf)[start : start + length]))
                pos = start + length
            except Exception:  # a torn frame from a killed writer: resynchronise
                self.corrupt_frames += 1
                nxt = buf.find(MAGIC, pos + 1)
                pos = nxt if nxt >= 0 else end
        del buf[:pos]
        return out
