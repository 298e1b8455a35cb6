"""The forwarding proxy's health checks, driven by hand: a drained node (`health: down`) and a
node that stops answering leave the ring; they rejoin when they answer `health: up` again."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

from bucky.config import make_config
from bucky.daemon.outputs.statsd_forward import StatsdProxyInput


class Admin:
    def __init__(self) -> None:
        self.answer = b"health: up\n"
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.settimeout(1)
                    conn.recv(100)
                    if self.answer:
                        conn.sendall(self.answer)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_drained_and_silent_nodes_leave_and_rejoin(tmp_path: Path) -> None:
    admins = [Admin(), Admin()]
    ports = [udp_port(), udp_port(), udp_port()]
    forward = [f"127.0.0.1:{ports[0]}:{admins[0].port}", f"127.0.0.1:{ports[1]}:{admins[1].port}",
               f"127.0.0.1:{ports[2]}"]  # no adminport: always in
    clock = [0.0]
    proxy = StatsdProxyInput(make_config(directory=str(tmp_path), statsd_forward=forward,
                                         statsd_forward_check_interval=1.0),
                             sink=None, clock=lambda: clock[0])

    def settle(ticks: int = 40) -> None:
        for _ in range(ticks):
            proxy.tick(time.time())
            time.sleep(0.01)

    try:
        settle()
        assert proxy.ring.servers == [f"127.0.0.1:{p}" for p in ports]
        admins[0].answer = b"health: down\n"  # drained
        admins[1].answer = b""  # connects, never answers
        clock[0] = 1.0
        settle()
        clock[0] = 2.0  # the silent one times out after one interval
        settle()
        assert proxy.ring.servers == [f"127.0.0.1:{ports[2]}"]
        label0 = f"127_0_0_1_{ports[0]}"
        assert proxy.counters[f"forward.{label0}.removed"] == 1
        proxy.handle(b"a:1|c\nb:1|c", None, 0.0)
        proxy.tick(0.0)
        assert proxy.counters[f"forward.127_0_0_1_{ports[2]}.lines"] == 2
        for a in admins:
            a.answer = b"health: up\n"
        clock[0] = 3.0
        settle()
        clock[0] = 4.0
        settle()
        assert sorted(proxy.ring.servers) == sorted(f"127.0.0.1:{p}" for p in ports)
        assert proxy.counters[f"forward.{label0}.rejoined"] == 1
    finally:
        proxy.close(0.0)
        for a in admins:
            a.close()


def test_node_names_resolve_without_blocking_and_lines_wait_for_them(tmp_path: Path,
                                                                    monkeypatch: Any) -> None:
    """A node given by name: the proxy starts at once (no DNS on its loop), holds that node's
    lines until the name resolves in the background, then sends them; a name that does not
    resolve is counted, never raised."""
    import socket as socket_module

    from bucky.daemon.outputs import resolver

    release = threading.Event()
    real = socket_module.getaddrinfo

    def slow_dns(host: str, port: int, family: int = 0, type: int = 0, proto: int = 0,
                 flags: int = 0) -> Any:
        if flags & socket_module.AI_NUMERICHOST or host not in ("statsd-node.test",
                                                                "nowhere.invalid"):
            return real(host, port, family, type, proto, flags)
        if host == "nowhere.invalid":
            raise socket_module.gaierror("Name or service not known")
        release.wait(10)  # a slow resolver
        return real("127.0.0.1", port, family, type, proto, flags)

    monkeypatch.setattr(resolver.socket, "getaddrinfo", slow_dns)
    node = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    node.bind(("127.0.0.1", 0))
    node.settimeout(5)
    port = node.getsockname()[1]
    started = time.monotonic()
    proxy = StatsdProxyInput(make_config(directory=str(tmp_path), statsd_forward=[
        f"statsd-node.test:{port}", "nowhere.invalid:8125"]), sink=None)
    try:
        key = next(k for k in (f"k{i}" for i in range(100))
                   if proxy.ring.get(k) == f"statsd-node.test:{port}")
        proxy.handle(f"{key}:1|c".encode(), None, 0.0)
        proxy.tick(0.0)
        assert time.monotonic() - started < 1.0  # nothing waited for the DNS
        release.set()
        deadline = time.monotonic() + 5
        while proxy.counters[f"forward.statsd-node_test_{port}.lines"] == 0:
            assert time.monotonic() < deadline
            proxy.tick(0.0)
            time.sleep(0.01)
        assert node.recv(100) == f"{key}:1|c".encode()
        deadline = time.monotonic() + 5
        while proxy.counters["forward.resolve_failures"] == 0:
            assert time.monotonic() < deadline
            proxy.tick(0.0)
            time.sleep(0.01)
    finally:
        release.set()
        proxy.close(0.0)
        node.close()
