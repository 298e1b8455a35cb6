"""Shared pieces of the benchmarks: a counting TCP sink and process-tree CPU/RSS accounting."""

from __future__ import annotations

import os
import socket
import threading
import time


class LineSink:
    """A TCP server on 127.0.0.1 that counts newline-terminated lines (plaintext carbon).

    Optionally keeps the lines whose path starts with one of `keep_prefixes` (to read values)."""

    def __init__(self, keep_prefixes: tuple[str, ...] = ()) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.lines = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.kept: list[str] = []
        self._keep = tuple(p.encode() for p in keep_prefixes)
        self._stop = False
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        conn.settimeout(None)  # never inherit the listener's accept timeout
        rest = b""
        while True:
            try:
                data = conn.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            now = time.monotonic()
            if self.first_at is None:
                self.first_at = now
            self.last_at = now
            count = data.count(b"\n")
            with self._lock:  # one reader thread per connection: += alone would lose counts
                self.lines += count
            if self._keep:
                data = rest + data
                cut = data.rfind(b"\n") + 1
                rest = data[cut:]
                for line in data[:cut].split(b"\n"):
                    if line.startswith(self._keep):
                        self.kept.append(line.decode())

    def wait_idle(self, idle: float = 1.0, timeout: float = 120.0) -> None:
        """Return once no data arrived for `idle` seconds (or after `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.last_at
            if last is not None and time.monotonic() - last > idle:
                return
            time.sleep(0.05)

    def wait_stable(self, measure, stable: float = 2.5, timeout: float = 120.0) -> None:
        """Return once `measure()` (what the benchmark counts as delivered) has not changed for
        `stable` seconds (or after `timeout`). Unlike wait_idle, this ends while StatsD still
        writes its own statistics and zero counters every flush interval."""
        deadline = time.monotonic() + timeout
        value, since = measure(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now_value = measure()
            if now_value != value:
                value, since = now_value, time.monotonic()
            elif time.monotonic() - since >= stable:
                return

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            continue
    return total


def rss_mb(pids: list[int], peak: bool = True) -> float:
    key = "VmHWM:" if peak else "VmRSS:"
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith(key):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024
