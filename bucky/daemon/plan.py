"""The daemon's plan: what the supervisor binds, starts and connects, as a plain value.

What this module is for: `plan_daemon(cfg)` turns a checked Config into a `DaemonPlan`, a plain
value (no socket bound, no process started) naming
- the sockets to bind (`SocketPlan`, by name: "statsd", "statsd_tcp", "collectd", ...),
- the children (`ChildPlan`, in start order: consumers before producers) with the stage that
  orders the shutdown,
- the channels between them (`ChannelPlan`: producer title -> consumer title),
- the output factories (name -> how the output process builds its client).

Rules: this module only plans; it checks nothing and touches nothing. The checks run before it,
in the preflight (bucky.daemon.preflight), which `bucky --check`, start-up and SIGHUP all call and
which returns this plan. Helpers that add children or sockets extend `socket_plan`,
`input_children` or `extra_children`; nothing else needs to change for the supervisor to run
them. (Not to be confused with placement's router plan: this is the process and socket layout.)
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from bucky.addresses import format_address
from bucky.config import Config
from bucky.errors import BuckyError
from bucky.inputs.statsd import TCP_STREAM
from bucky.inputs.statsd_admin import ADMIN_STREAM

if TYPE_CHECKING:
    from bucky.daemon.outputs import OutputFactory

# Shutdown order: inputs stop first (their last batches flow on), then the processor, then the
# outputs, then anything that only watches (e.g. a status server).
STAGE_INPUT, STAGE_PROCESSOR, STAGE_OUTPUT, STAGE_WATCHER = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class SocketPlan:
    name: str  # key in the plan, e.g. "statsd", "statsd_tcp"
    proto: str  # "udp" or "tcp"
    host: str
    port: int
    count: int = 1  # UDP: one socket per worker, sharing the port through SO_REUSEPORT
    purpose: str = ""  # what the bind error names
    optional: bool = False  # cannot be bound: a warning, and the children using it do not run

    @property
    def address(self) -> tuple[str, str, int, int]:
        """Two sockets with the same address are the same socket (kept across a reload)."""
        return (self.proto, self.host, self.port, self.count)


@dataclasses.dataclass(frozen=True)
class ChildPlan:
    role: str  # "input", "processor", "output" (or what a new child runner registers)
    kind: str  # input kind ("statsd", ...), "processor", the output's name, ...
    title: str  # process title suffix and self-metric process name, e.g. "collectd.1"
    stage: int
    udp: tuple[tuple[str, int], ...] = ()  # (socket name, index in that socket group)
    # (stream kind, TCP socket name): an input's open_stream(kind); the http server's listener
    streams: tuple[tuple[str, str], ...] = ()
    index: int = 0  # which output factory, for role "output"
    # Essential children (inputs, processor, outputs: the data path) halt the daemon when they
    # cannot start or keep dying; an auxiliary one (the status server) is given up on instead.
    essential: bool = True


@dataclasses.dataclass(frozen=True)
class ChannelPlan:
    name: str
    producer: str  # child title
    consumer: str  # child title
    records: bool = False  # decoded collectd records (to the plugin host), not samples
    mesh: bool = False  # between StatsD workers: routed lines (bucky.inputs.statsd_workers)


@dataclasses.dataclass(frozen=True)
class DaemonPlan:
    cfg: Config
    sockets: tuple[SocketPlan, ...]
    children: tuple[ChildPlan, ...]
    channels: tuple[ChannelPlan, ...]
    outputs: tuple[OutputFactory, ...]

    def socket(self, name: str) -> SocketPlan | None:
        for sock in self.sockets:
            if sock.name == name:
                return sock
        return None

    def titles(self, role: str | None = None) -> list[str]:
        return [c.title for c in self.children if role is None or c.role == role]

    def shape(self) -> tuple:
        """What the outputs see of the rest: who writes to them. Equal shapes let a reload keep
        the running output processes (and what they buffer)."""
        return tuple((c.producer, c.consumer) for c in self.channels
                     if c.consumer in self.titles("output"))

    def describe(self) -> list[str]:
        """One line per socket, child and channel (`bucky --check --verbose`)."""
        lines = []
        for s in self.sockets:
            workers = f" x{s.count}" if s.count > 1 else ""
            where = format_address(s.host, s.port)
            optional = " (optional: skipped with a warning if taken)" if s.optional else ""
            lines.append(f"socket {s.name}: {s.proto.upper()} {where}{workers}{optional}")
        for c in self.children:
            lines.append(f"process {c.title}: {c.role}" + ("" if c.essential else " (auxiliary)"))
        for ch in self.channels:
            lines.append(f"channel {ch.producer} -> {ch.consumer}"
                         + (" (collectd records)" if ch.records else ""))
        return lines


# --- the plan -------------------------------------------------------------------------------------


def socket_plan(cfg: Config) -> list[SocketPlan]:
    plan = []
    if cfg.collectd_enabled:
        plan.append(SocketPlan("collectd", "udp", cfg.collectd_ip, cfg.collectd_port,
                               cfg.collectd_workers, "collectd"))
    if cfg.statsd_enabled:
        plan.append(SocketPlan("statsd", "udp", cfg.statsd_ip, cfg.statsd_port, 1, "statsd"))
        if cfg.statsd_tcp_port:
            plan.append(SocketPlan("statsd_tcp", "tcp", cfg.statsd_ip, cfg.statsd_tcp_port, 1,
                                   "statsd"))
        if cfg.statsd_admin_port:  # served by the first StatsD process (open_stream "admin")
            plan.append(SocketPlan("statsd_admin", "tcp", cfg.statsd_admin_ip,
                                   cfg.statsd_admin_port, 1, "StatsD management"))
    if cfg.metricsd_enabled:
        plan.append(SocketPlan("metricsd", "udp", cfg.metricsd_ip, cfg.metricsd_port, 1,
                               "metricsd"))
    if cfg.carbon_enabled:  # one process: plaintext over UDP and TCP, pickle over TCP
        plan.append(SocketPlan("carbon", "udp", cfg.carbon_ip, cfg.carbon_line_port, 1, "carbon"))
        plan.append(SocketPlan("carbon_line", "tcp", cfg.carbon_ip, cfg.carbon_line_port, 1,
                               "carbon"))
        plan.append(SocketPlan("carbon_pickle", "tcp", cfg.carbon_ip, cfg.carbon_pickle_port, 1,
                               "carbon"))
    if cfg.http_enabled:
        # Two Bucky 2 configs (no http_* options) on one host both run: the default port taken
        # is a warning and a daemon without a status server; a port the operator set must bind.
        plan.append(SocketPlan("http", "tcp", cfg.http_ip, cfg.http_port, 1, "the status server",
                               optional="http_port" not in cfg.given))
    return plan


# The TCP listeners an input reads as streams (ChildSpec.streams): input -> (kind, socket name).
STREAM_LISTENERS = {"carbon": (("line", "carbon_line"), ("pickle", "carbon_pickle"))}


def input_children(cfg: Config, sockets: list[SocketPlan]) -> list[ChildPlan]:
    """One input process per UDP socket (collectd workers: one each); the StatsD input also
    takes the TCP listener, the carbon input its line and pickle listeners. The plugin host
    comes last (it reads collectd records)."""
    by_name = {s.name: s for s in sockets}
    children = []
    for sock in sockets:
        if sock.proto != "udp":
            continue
        if sock.name == "statsd":
            children += statsd_children(cfg, "statsd_tcp" if "statsd_tcp" in by_name else None,
                                        "statsd_admin" if "statsd_admin" in by_name else None)
            continue
        for i in range(sock.count):
            title = sock.name if sock.count == 1 else f"{sock.name}.{i + 1}"
            children.append(ChildPlan("input", sock.name, title, STAGE_INPUT,
                                      udp=((sock.name, i),),
                                      streams=STREAM_LISTENERS.get(sock.name, ())))
    if cfg.collectd_python_config:
        children.append(ChildPlan("input", "python_plugins", "python_plugins", STAGE_INPUT))
    return children


def statsd_workers(cfg: Config) -> int:
    return 1 if cfg.statsd_forward else int(cfg.statsd_workers)


def statsd_children(cfg: Config, tcp: str | None, admin: str | None = None) -> list[ChildPlan]:
    """`statsd_workers` processes; with one, the title stays "statsd". The first reads the UDP
    socket and routes every line to its owner (one reader keeps each sender's order, which a
    gauge's deltas need) and serves the management port; all accept TCP clients (a
    connection's lines stay in order)."""
    n = statsd_workers(cfg)
    titles = ["statsd"] if n == 1 else [f"statsd.{i + 1}" for i in range(n)]
    streams = ((TCP_STREAM, tcp),) if tcp else ()
    first = streams + ((ADMIN_STREAM, admin),) if admin else streams
    return [ChildPlan("input", "statsd", t, STAGE_INPUT, udp=(("statsd", 0),) if i == 0 else (),
                      streams=first if i == 0 else streams) for i, t in enumerate(titles)]


def statsd_mesh(children: list[ChildPlan]) -> list[ChannelPlan]:
    """A channel from every StatsD worker to every other: the lines each routes to its owner."""
    workers = [c.title for c in children if c.kind == "statsd"]
    if len(workers) < 2:
        return []
    return [ChannelPlan(f"{a}->{b}", a, b, mesh=True) for a in workers for b in workers if a != b]


def handover_state(kind: str, title: str, states: dict[str, Any]) -> Any:
    """What a new input takes over on a reload: its predecessor's state; a StatsD worker gets
    every old worker's (in worker order), so a change of statsd_workers loses nothing."""
    if kind != "statsd":
        return states.get(title)
    old = sorted((k for k in states if k == "statsd" or k.startswith("statsd.")),
                 key=lambda k: int(k.partition(".")[2] or 0))
    return {"statsd-workers": [states[k] for k in old]} if old else None


def extra_children(cfg: Config) -> list[ChildPlan]:
    """Children outside the data path: the status server (bucky/http), when enabled."""
    if cfg.http_enabled:
        return [ChildPlan("http", "http", "http", STAGE_WATCHER, streams=(("http", "http"),),
                          essential=False)]
    return []


def plan_daemon(cfg: Config) -> DaemonPlan:
    """Lay out sockets, children and channels (the preflight has checked `cfg`)."""
    from bucky.daemon.outputs import output_factories

    sockets = socket_plan(cfg)
    outputs = output_factories(cfg)
    out_children = [ChildPlan("output", f.name, f.name, STAGE_OUTPUT, index=i)
                    for i, f in enumerate(outputs)]
    inputs = input_children(cfg, sockets)
    channels: list[ChannelPlan] = []

    def connect(producer: str, consumer: str, records: bool = False) -> None:
        channels.append(ChannelPlan(f"{producer}->{consumer}", producer, consumer, records))

    host = [c for c in inputs if c.kind == "python_plugins"]
    if host:
        for child in inputs:
            if child.kind == "collectd":
                connect(child.title, host[0].title, records=True)
    processor: list[ChildPlan] = []
    if cfg.processor is not None:
        processor = [ChildPlan("processor", "processor", "processor", STAGE_PROCESSOR)]
        for child in inputs:
            connect(child.title, "processor")
        for out in out_children:
            connect("processor", out.title)
    else:
        for child in inputs:
            for out in out_children:
                connect(child.title, out.title)
    channels += statsd_mesh(inputs)
    extra = extra_children(cfg)
    if any(c.role == "http" for c in extra):
        # Each output sends the status server copies (status, a sampled tap, self-metrics).
        for out in out_children:
            connect(out.title, "http")
    # Consumers start before producers.
    children = extra + out_children + processor + inputs
    titles = [c.title for c in children]
    if len(set(titles)) != len(titles):  # a bug in a planning function, never the user's
        raise BuckyError(f"two processes would share a name: {titles}")
    return DaemonPlan(cfg, tuple(sockets), tuple(children), tuple(channels), tuple(outputs))
