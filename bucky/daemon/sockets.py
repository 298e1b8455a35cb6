"""Binding the listening sockets, in the supervisor, before privileges are dropped.

A port in use is a fatal, clearly worded error: sharing a port (SO_REUSEADDR on UDP) would split the
traffic silently between two processes. collectd workers share one port through SO_REUSEPORT;
the kernel then keeps each sender (source address and port) on one worker, so rate state stays
with one process. A multicast listen address is joined (IPv4 or IPv6).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import struct

from bucky.addresses import format_address
from bucky.errors import BuckyError

log = logging.getLogger("bucky")

_RCVBUF = 16 * 1024 * 1024  # absorbs bursts while a process is busy; the kernel caps it


class BindError(BuckyError):
    pass


def _resolve(host: str, port: int, kind: int) -> tuple[int, tuple]:
    try:
        infos = socket.getaddrinfo(host, port, 0, kind, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(f"cannot resolve {host!r}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def _describe(proto: str, host: str, port: int) -> str:
    return f"{proto} {format_address(host, port)}"


def _is_multicast(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_multicast
    except ValueError:
        return False


def _grow_rcvbuf(sock: socket.socket) -> int:
    """Ask for a large receive buffer; returns what the kernel granted.

    SO_RCVBUFFORCE (root with CAP_NET_ADMIN) passes net.core.rmem_max; SO_RCVBUF is capped by
    it. Linux reports twice the usable size (it counts its own bookkeeping), so the granted size
    is read back / 2. Shortfalls are reported once for all sockets by
    `report_receive_buffers`, not here: one line per socket said the same thing three times."""
    for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if opt is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, _RCVBUF)
            break
        except OSError:
            continue
    return granted_rcvbuf(sock)


def granted_rcvbuf(sock: socket.socket) -> int:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2


def receive_buffer_advice(short: list[tuple[str, int]], euid: int) -> str | None:
    """One line about every socket granted less than `_RCVBUF`: (description, granted bytes).

    It says what to do: the exact sysctl, and starting as root only to someone who is not root
    (root without CAP_NET_ADMIN, e.g. in a container, gets the sysctl alone)."""
    if not short:
        return None
    smallest = min(granted for _, granted in short)
    where = ", ".join(what for what, _ in short)
    text = (f"the kernel granted {smallest // 1024} KiB receive buffers instead of "
            f"{_RCVBUF // 1024} KiB ({where}); bursts may be dropped. To allow them: "
            f"sysctl -w net.core.rmem_max={_RCVBUF} (and in /etc/sysctl.d/ to keep it)")
    if euid != 0:
        text += ", or start bucky as root (it binds, then switches to uid)"
    return text


def report_receive_buffers(socks: list[tuple[str, socket.socket]], euid: int | None = None
                           ) -> None:
    """Log `receive_buffer_advice` for (description, socket) pairs, once."""
    short = [(what, granted) for what, sock in socks
             if (granted := granted_rcvbuf(sock)) < _RCVBUF]
    advice = receive_buffer_advice(short, os.geteuid() if euid is None else euid)
    if advice:
        log.warning("%s", advice)


def _bind_error(sock: socket.socket, proto: str, host: str, port: int, purpose: str,
                exc: OSError) -> BindError:
    sock.close()
    return BindError(
        f"cannot bind {_describe(proto, host, port)} for {purpose}: {exc.strerror or exc}")


def _for_the_children(sock: socket.socket) -> socket.socket:
    """A bound socket as every child gets it: non-blocking (the loops never wait on a socket)
    and inheritable (a restarted child is handed the same socket)."""
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock


def bind_udp(host: str, port: int, purpose: str, reuseport: bool = False) -> socket.socket:
    family, sockaddr = _resolve(host, port, socket.SOCK_DGRAM)
    multicast = _is_multicast(host)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if multicast:
            # Several listeners of one group on a host is the normal multicast case.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            bind_addr = ("", port) if family == socket.AF_INET else ("::", port)
            sock.bind(bind_addr)
            join_multicast(sock, host, _daemon_interfaces())
        else:
            sock.bind(sockaddr)
        _grow_rcvbuf(sock)
    except OSError as exc:
        raise _bind_error(sock, "UDP", host, port, purpose, exc) from None
    return _for_the_children(sock)


def join_multicast(sock: socket.socket, group: str, interfaces: list[int]) -> None:
    """Join `group` on each interface index (0: the kernel picks one); one join must succeed.

    IPv4 uses struct ip_mreqn (group, any local address, interface index), IPv6 ipv6_mreq; the
    first error is raised when no join succeeded."""
    address = ipaddress.ip_address(group.split("%", 1)[0])
    error: OSError | None = None
    joined = False
    for index in interfaces:
        try:
            if address.version == 6:
                mreq = address.packed + struct.pack("@I", index)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            else:
                mreq = address.packed + bytes(4) + struct.pack("@i", index)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            joined = True
        except OSError as exc:
            error = error or exc
    if not joined and error is not None:
        raise error


def _daemon_interfaces() -> list[int]:
    """The default interface and loopback, so senders on this host are heard too."""
    try:
        return [0, socket.if_nametoindex("lo")]
    except OSError:
        return [0]


def bind_udp_workers(host: str, port: int, purpose: str, count: int) -> list[socket.socket]:
    if count == 1:
        return [bind_udp(host, port, purpose)]
    # Probe without SO_REUSEPORT first, so a port held by someone else is refused, not shared.
    bind_udp(host, port, purpose).close()
    socks = []
    try:
        for _ in range(count):
            socks.append(bind_udp(host, port, purpose, reuseport=True))
    except BindError:
        for s in socks:
            s.close()
        raise
    return socks


def bind_tcp(host: str, port: int, purpose: str, backlog: int = 128) -> socket.socket:
    family, sockaddr = _resolve(host, port, socket.SOCK_STREAM)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # TIME_WAIT leftovers of our own previous run must not block a restart.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        raise _bind_error(sock, "TCP", host, port, purpose, exc) from None
    return _for_the_children(sock)
