"""Bucky 2's InfluxDB output: line protocol over UDP to every configured host."""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from bucky.cache import TwoGenerationCache
from bucky.daemon.outputs.base import BUSY_POLL, IDLE_POLL, OutputClient
from bucky.daemon.outputs.resolver import Resolver
from bucky.errors import ConfigError
from bucky.protocol.influxdb import influx_prefix, influx_timestamp_ns, pack_lines
from bucky.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from bucky.config import Config

log = logging.getLogger("bucky.daemon.outputs")

INFLUX_DEFAULT_PORT = 8089
INFLUX_MAX_DATAGRAM = 1400  # fits an Ethernet MTU: no IP fragmentation
INFLUX_RESOLVE_EVERY = 180.0  # Bucky 2's interval
INFLUX_UNRESOLVED_QUEUE = 256  # datagrams held per destination while its name resolves


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """"host", "host:port", "1.2.3.4:port", "[v6]:port" or a bare IPv6 address."""
    text = text.strip()
    try:
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else default_port
            if rest and not rest.startswith(":"):
                raise ValueError(text)
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
            port = int(port_text)
        else:
            host, port = text, default_port  # a name, an IPv4 address or a bare IPv6 address
    except ValueError:
        raise ConfigError(f"influxdb_hosts: expected host:port, got {text!r}") from None
    if not host or not 0 < port < 65536:
        raise ConfigError(f"influxdb_hosts: expected host:port, got {text!r}")
    return host, port



def _prefix_of(key: tuple) -> str:
    """The line-protocol prefix of a (host, name) pair (cached per pair by the client)."""
    return influx_prefix(*key)


class _UdpDestination:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.resolver = Resolver(host, port, socket.SOCK_DGRAM)
        self.address: tuple | None = None
        self.family = socket.AF_INET
        self.resolved_at = float("-inf")
        self.waiting: deque[bytes] = deque(maxlen=INFLUX_UNRESOLVED_QUEUE)


class InfluxDBClient(OutputClient):
    """Bucky 2's InfluxDB output: UDP line protocol `name,host=h value=v ts_ns` to every host.

    Values are always written as floats (`value=5.0`): InfluxDB refuses a field that changes
    type, and a metric may be an int once and a float the next time. NaN and infinities, which
    the line protocol cannot carry, are dropped and counted. Each configured destination gets
    every datagram (its first resolved address; names re-resolved every 180 s).
    """

    name = "influxdb"

    def __init__(self, cfg: Config, *, clock: Callable[[], float] = time.monotonic,
                 max_datagram: int = INFLUX_MAX_DATAGRAM) -> None:
        super().__init__()
        self._clock = clock
        self._max_datagram = max_datagram
        self._destinations = [
            _UdpDestination(*parse_host_port(h, INFLUX_DEFAULT_PORT)) for h in cfg.influxdb_hosts
        ]
        self._prefixes: TwoGenerationCache[tuple, str] = TwoGenerationCache(_prefix_of)
        self._sockets: dict[int, socket.socket] = {}
        self._ratelog = RateLimitedLog(log, 60.0, clock)

    def _lines(self, samples: list[tuple]) -> list[str]:
        prefixes = self._prefixes
        lines = []
        invalid = 0
        for sample in samples:
            try:
                host, name, value, timestamp = sample
                number = float(value)
                if number != number or number in (float("inf"), float("-inf")):
                    invalid += 1
                    continue
                prefix = prefixes[(host, name)]
                lines.append(f"{prefix}{number!r} {influx_timestamp_ns(timestamp)}")
            except Exception:
                invalid += 1
        if invalid:
            self.counters["dropped.invalid"] += invalid
        return lines

    def send(self, samples: list[tuple], now: float, front: bool = False) -> None:
        lines = self._lines(samples)
        if not lines:
            return
        datagrams = pack_lines(lines, self._max_datagram)
        for dest in self._destinations:
            self._refresh(dest, now)
            if dest.address is None:
                dropped = max(0, len(dest.waiting) + len(datagrams) - INFLUX_UNRESOLVED_QUEUE)
                self.counters["dropped.unresolved_datagrams"] += dropped
                dest.waiting.extend(datagrams)
                continue
            self._transmit(dest, datagrams)
        self.counters["sent"] += len(lines)

    def poll(self, now: float) -> float:
        for dest in self._destinations:
            self._refresh(dest, now)
            if dest.address is not None and dest.waiting:
                waiting = list(dest.waiting)
                dest.waiting.clear()
                self._transmit(dest, waiting)
        if any(d.address is None for d in self._destinations):
            return BUSY_POLL * 10
        return IDLE_POLL

    def pending(self) -> int:
        return 0  # datagrams are not counted in datapoints; UDP keeps no backlog worth waiting on

    def _refresh(self, dest: _UdpDestination, now: float) -> None:
        if dest.address is not None and now - dest.resolved_at < INFLUX_RESOLVE_EVERY:
            return
        try:
            infos = dest.resolver.lookup()
        except OSError as exc:
            self.counters["resolve_failures"] += 1
            self._ratelog.warning("resolve:" + dest.host, "influxdb: %s", exc)
            dest.resolved_at = now  # keep the old address (if any) until the next interval
            return
        if infos:
            family, _, _, _, address = infos[0]
            dest.family, dest.address, dest.resolved_at = family, address, now

    def _socket(self, family: int) -> socket.socket:
        sock = self._sockets.get(family)
        if sock is None:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self._sockets[family] = sock
        return sock

    def _transmit(self, dest: _UdpDestination, datagrams: Sequence[bytes]) -> None:
        try:
            sock = self._socket(dest.family)
        except OSError as exc:
            self.counters["errors"] += len(datagrams)
            self._ratelog.error("socket", "influxdb: cannot open a UDP socket: %s", exc)
            return
        for data in datagrams:
            try:
                sock.sendto(data, dest.address)
                self.counters["bytes_sent"] += len(data)
            except (BlockingIOError, InterruptedError):
                self.counters["dropped.socket_full"] += 1
            except OSError as exc:
                self.counters["errors"] += 1
                self._ratelog.warning("send:" + dest.host, "influxdb: sending to %s:%d: %s",
                                      dest.host, dest.port, exc)

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()


