"""`statsd_forward`: a proxy.js-compatible StatsD proxy. Lines are not aggregated here; every
line goes to the node that proxy.js's ring (bucky.protocol.statsd_ring) gives its key.

The output side of the StatsD input process: the input loop hands it datagrams and TCP lines
(the input contract, bucky.inputs.base), it sends them on. Lines are packed into datagrams of at
most `statsd_forward_packet_size` bytes and sent through the shared UDP mechanism
(bucky.daemon.outputs.udp: names resolved without blocking, re-resolved every
FORWARD_RESOLVE_EVERY seconds; lines for a node whose name is still resolving wait, bounded).
Nodes with an adminport are health checked as proxy.js does (bucky.daemon.outputs.statsd_health)
and leave / rejoin the ring. The proxy's own management port (`statsd_admin_port`: `config`,
`health`, `status`) is served through the input's "admin" stream (bucky.inputs.statsd_admin).

Self-metrics per node (`forward.<host_port>.`): lines, datagrams, dropped_lines, failed_checks,
removed, rejoined; `forward.unrouted_lines` (no node in the ring), `forward.resolve_failures`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bucky.config import Config
from bucky.daemon.outputs.statsd_health import HealthChecker
from bucky.daemon.outputs.udp import Delivery, UdpDestination, UdpSender
from bucky.inputs.base import InputHandler, Stream
from bucky.inputs.statsd import tcp_stream
from bucky.inputs.statsd_admin import ADMIN_STREAM, AdminStream, statsd_options
from bucky.protocol import statsd_admin as admin
from bucky.protocol.statsd_ring import HashRing
from bucky.protocol.statsd_route import ForwardRouter, pack_lines
from bucky.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

FORWARD_RESOLVE_EVERY = 180.0  # as the InfluxDB output
FORWARD_UNRESOLVED_QUEUE = 1024  # datagrams held per node while its name resolves


def node_label(node: str) -> str:
    """A node as a self-metric path part: 10.0.0.1:8125 -> 10_0_0_1_8125."""
    return node.replace(".", "_").replace(":", "_")


class StatsdProxyInput(InputHandler):
    """`statsd_forward`: a proxy.js-compatible StatsD proxy (lines are not aggregated here)."""

    name = "statsd"

    def __init__(self, cfg: Config, sink: Any, state: object = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.counters: Counter[str] = Counter()
        self._clock = clock
        self.nodes = [f"{host}:{port}" for host, port, _ in cfg.statsd_forward]
        self.ring = HashRing(self.nodes)
        self.router = ForwardRouter(self.ring.get)
        self.packet_size = int(cfg.statsd_forward_packet_size)
        self._udp = UdpSender()
        self._dest: dict[str, UdpDestination] = {}
        admin_ports: dict[str, int] = {}
        for host, port, adminport in cfg.statsd_forward:
            node = f"{host}:{port}"
            self._dest[node] = UdpDestination(host, port, FORWARD_RESOLVE_EVERY,
                                              FORWARD_UNRESOLVED_QUEUE)
            if adminport is not None:
                admin_ports[node] = adminport
        self._pending: dict[str, list[bytes]] = {}
        self._pending_bytes: dict[str, int] = {}
        self._down: dict[str, int] = {}  # proxy.js's node_status: failed checks in a row
        self.health = HealthChecker(admin_ports, self._address,
                                    float(cfg.statsd_forward_check_interval),
                                    self._health_result) if admin_ports else None
        self._health_status = "up"
        self._closed = False
        self._started = time.time()
        self._admin_streams: set[AdminStream] = set()
        self._ratelog = RateLimitedLog(log, 60.0, clock)
        for node in self._dest:  # numeric addresses at once, names start resolving
            self._count(node, self._udp.poll(self._dest[node], clock()))

    def handle(self, data: bytes, addr: object, now: float, mono: float | None = None) -> None:
        self.counters["datagrams"] += 1
        groups, unrouted = self.router.split(data)
        if unrouted:
            self.counters["forward.unrouted_lines"] += unrouted
        pending, sizes = self._pending, self._pending_bytes
        for node, lines in groups.items():
            buf = pending.get(node)
            if buf is None:
                pending[node] = buf = []
                sizes[node] = 0
            buf.extend(lines)
            sizes[node] += sum(map(len, lines)) + len(lines)
            if sizes[node] >= 16 * self.packet_size:
                self._flush(node)

    def handle_lines(self, lines: list[bytes], now: float, mono: float | None = None) -> None:
        self.handle(b"\n".join(lines), None, now)

    def open_stream(self, kind: str, addr: Any) -> Stream:
        """A TCP client (lines to forward) or a connection to the proxy's management port."""
        if kind == ADMIN_STREAM:
            return AdminStream(self._answer, self.counters, lambda: None, self._admin_streams)
        return tcp_stream(kind, self.handle_lines, self.cfg, self.counters)

    def tick(self, now: float, mono: float | None = None) -> None:
        for node in list(self._pending):
            self._flush(node)
        mono = self._clock()
        for node, dest in self._dest.items():
            if dest.waiting or dest.address is None:
                self._count(node, self._udp.poll(dest, mono))
        if self.health is not None:
            self.health.poll(mono)

    def close(self, now: float, mono: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self.tick(now)
        for node, dest in self._dest.items():  # a name that never resolved: its lines are lost
            if dest.waiting:
                self._count(node, Delivery(dropped=list(dest.waiting)))
                dest.waiting.clear()
        if self.health is not None:
            self.health.close()
        self._udp.close()

    def carry_state(self) -> object:
        self.close(time.time())
        return None

    def _address(self, node: str) -> str | None:
        address = self._dest[node].address
        return None if address is None else address[0]

    def _flush(self, node: str) -> None:
        lines = self._pending.pop(node, None)
        self._pending_bytes.pop(node, None)
        if lines:
            datagrams = pack_lines(lines, self.packet_size)
            self._count(node, self._udp.send(self._dest[node], datagrams, self._clock()))

    def _count(self, node: str, result: Delivery) -> None:
        counters = self.counters
        label = node_label(node)
        if result.sent:
            counters[f"forward.{label}.lines"] += sum(d.count(b"\n") + 1 for d in result.sent)
            counters[f"forward.{label}.datagrams"] += len(result.sent)
        if result.dropped:  # full buffer, ICMP refusal echoed by the kernel, no address yet
            counters[f"forward.{label}.dropped_lines"] += sum(
                d.count(b"\n") + 1 for d in result.dropped)
        if result.resolve_error is not None:
            counters["forward.resolve_failures"] += 1
            self._ratelog.warning("resolve:" + node, "StatsD proxy: %s", result.resolve_error)

    def _health_result(self, node: str, healthy: bool) -> None:
        """proxy.js's markNodeAsHealthy / markNodeAsUnhealthy."""
        label = node_label(node)
        if healthy:
            if self._down.get(node, 0) > 0:
                log.warning("StatsD proxy: node %s is healthy again; adding it to the ring", node)
                self.ring.add(node)
                self.router.reset()
                self.counters[f"forward.{label}.rejoined"] += 1
            self._down[node] = 0
        else:
            self._down[node] = self._down.get(node, 0) + 1
            self.counters[f"forward.{label}.failed_checks"] += 1
            if self._down[node] < 2:
                log.warning("StatsD proxy: node %s failed its health check; removing it", node)
                self.ring.remove(node)
                self.router.reset()
                self.counters[f"forward.{label}.removed"] += 1

    def _answer(self, stream: AdminStream, line: str, now: float) -> str | None:
        """proxy.js's management commands."""
        cmd, params = admin.parse_command(line)
        if cmd == "help":
            return "Commands: config, health, status, quit\n\n"
        if cmd == "health":
            self._health_status = admin.health_command(self._health_status, params)
            return admin.health_answer(self._health_status)
        if cmd == "status":
            uptime = round(now) - round(self._started)
            return f"uptime: {uptime}\nnodes: " + "".join(f"{s} " for s in self.ring.servers) + "\n"
        if cmd == "config":
            return admin.config_answer(statsd_options(self.cfg))
        return "ERROR\n"
