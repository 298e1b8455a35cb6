"""Bucky 2's InfluxDB output: line protocol over UDP to every configured host."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bucky.cache import TwoGenerationCache
from bucky.daemon.outputs.base import BUSY_POLL, IDLE_POLL, OutputClient
from bucky.daemon.outputs.udp import Delivery, UdpDestination, UdpSender
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
            UdpDestination(*parse_host_port(h, INFLUX_DEFAULT_PORT), INFLUX_RESOLVE_EVERY,
                           INFLUX_UNRESOLVED_QUEUE) for h in cfg.influxdb_hosts
        ]
        self._prefixes: TwoGenerationCache[tuple, str] = TwoGenerationCache(_prefix_of)
        self._udp = UdpSender()
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
            self._count(dest, self._udp.send(dest, datagrams, now))
        self.counters["sent"] += len(lines)

    def poll(self, now: float) -> float:
        for dest in self._destinations:
            self._count(dest, self._udp.poll(dest, now))
        if any(d.address is None for d in self._destinations):
            return BUSY_POLL * 10
        return IDLE_POLL

    def pending(self) -> int:
        return 0  # datagrams are not counted in datapoints; UDP keeps no backlog worth waiting on

    def _count(self, dest: UdpDestination, result: Delivery) -> None:
        counters = self.counters
        if result.resolve_error is not None:
            counters["resolve_failures"] += 1
            self._ratelog.warning("resolve:" + dest.host, "%s", result.resolve_error)
        if result.sent:
            counters["bytes_sent"] += sum(map(len, result.sent))
        if result.displaced:
            counters["dropped.unresolved_datagrams"] += result.displaced
        if result.full:
            counters["dropped.socket_full"] += result.full
        if result.failed:
            counters["errors"] += result.failed
            if result.no_socket:
                self._ratelog.error("socket", "cannot open a UDP socket: %s", result.error)
            else:
                self._ratelog.warning("send:" + dest.host, "sending to %s:%d: %s",
                                      dest.host, dest.port, result.error)

    def close(self) -> None:
        self._udp.close()


