"""UDP destinations for the output side: names resolved without blocking, datagrams sent without
blocking. One mechanism for every UDP sender (the InfluxDB output, the StatsD forwarding proxy).

A destination's name is resolved by bucky.daemon.outputs.resolver.Resolver (numeric addresses at
once, names in a daemon thread) and again every `resolve_every` seconds; while it has no address
yet, datagrams wait in a bounded queue (the oldest dropped beyond `waiting`). Sockets are
non-blocking, one per address family. `send` never raises and never blocks: it reports what went
out and what was dropped (`Delivery`), and each caller counts that under its own names.
"""

from __future__ import annotations

import dataclasses
import socket
from collections import deque
from collections.abc import Sequence

from bucky.daemon.outputs.resolver import Resolver


@dataclasses.dataclass
class Delivery:
    """What became of the datagrams of one `send` or `poll`."""

    sent: list[bytes] = dataclasses.field(default_factory=list)
    dropped: list[bytes] = dataclasses.field(default_factory=list)  # full, failed or displaced
    full: int = 0  # the socket buffer was full
    failed: int = 0  # another send error (e.g. an ICMP refusal echoed by the kernel)
    displaced: int = 0  # dropped from the queue of a destination without an address yet
    error: OSError | None = None  # the last send error other than a full buffer
    no_socket: bool = False  # `error` is the failure to open a UDP socket
    resolve_error: OSError | None = None  # the name did not resolve (the old address is kept)

    def add(self, other: Delivery) -> None:
        self.sent += other.sent
        self.dropped += other.dropped
        self.full += other.full
        self.failed += other.failed
        self.displaced += other.displaced
        self.error = other.error or self.error
        self.no_socket = other.no_socket or self.no_socket
        self.resolve_error = other.resolve_error or self.resolve_error


class UdpDestination:
    def __init__(self, host: str, port: int, resolve_every: float, waiting: int) -> None:
        self.host = host
        self.port = port
        self.resolver = Resolver(host, port, socket.SOCK_DGRAM)
        self.resolve_every = resolve_every
        self.address: tuple | None = None
        self.family = socket.AF_INET
        self.resolved_at = float("-inf")
        self.waiting: deque[bytes] = deque(maxlen=waiting)

    def refresh(self, now: float) -> OSError | None:
        """Resolve the name if it is time to; the error if it does not resolve."""
        if self.address is not None and now - self.resolved_at < self.resolve_every:
            return None
        try:
            infos = self.resolver.lookup()
        except OSError as exc:
            self.resolved_at = now  # keep the old address (if any) until the next interval
            return exc
        if infos:
            family, _, _, _, address = infos[0]
            self.family, self.address, self.resolved_at = family, address, now
        return None


class UdpSender:
    """Non-blocking UDP sockets (one per address family) and the destinations they send to."""

    def __init__(self) -> None:
        self._sockets: dict[int, socket.socket] = {}

    def send(self, dest: UdpDestination, datagrams: Sequence[bytes], now: float) -> Delivery:
        """Datagrams to `dest`, now if its address is known, else once it is (bounded queue)."""
        result = Delivery(resolve_error=dest.refresh(now))
        if dest.address is None:
            room = (dest.waiting.maxlen or 0) - len(dest.waiting)
            over = max(0, len(datagrams) - room)
            if over:
                result.dropped += list(dest.waiting)[:over] + list(datagrams)[
                    :max(0, over - len(dest.waiting))]
                result.displaced += over
            dest.waiting.extend(datagrams)
            return result
        self._transmit(dest, datagrams, result)
        return result

    def poll(self, dest: UdpDestination, now: float) -> Delivery:
        """Re-resolve when due; send what waited for the address."""
        result = Delivery(resolve_error=dest.refresh(now))
        if dest.address is not None and dest.waiting:
            waiting = list(dest.waiting)
            dest.waiting.clear()
            self._transmit(dest, waiting, result)
        return result

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    def _transmit(self, dest: UdpDestination, datagrams: Sequence[bytes], result: Delivery
                  ) -> None:
        try:
            sock = self._sockets.get(dest.family)
            if sock is None:
                sock = socket.socket(dest.family, socket.SOCK_DGRAM)
                sock.setblocking(False)
                self._sockets[dest.family] = sock
        except OSError as exc:
            result.failed += len(datagrams)
            result.dropped += list(datagrams)
            result.error = exc
            result.no_socket = True
            return
        for data in datagrams:
            try:
                sock.sendto(data, dest.address)
            except (BlockingIOError, InterruptedError):
                result.full += 1
                result.dropped.append(data)
                continue
            except OSError as exc:
                result.failed += 1
                result.dropped.append(data)
                result.error = exc
                continue
            result.sent.append(data)
