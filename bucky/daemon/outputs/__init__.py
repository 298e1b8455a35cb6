"""Output clients: Graphite (plaintext or pickle over TCP), debug stdout, InfluxDB, custom classes.

`output_factories(cfg)` names the configured outputs and how to build each one: the supervisor
plans one output process per entry from the names alone, and each process calls its own factory.
Files: base (the client contract), paths (the Graphite path cache), resolver (non-blocking name
resolution), buffer (a destination's memory buffer), spooled_buffer and spool_files (the disk
spool behind it), connection (one carbon destination),
graphite (the Graphite client: paths, placement, encoding, fan-out; `graphite_router(cfg)` turns
the config into the pure router of bucky/protocol/placement/), debug, influxdb, custom, udp (UDP
destinations: non-blocking resolution and sending, for influxdb and statsd_forward),
statsd_forward and statsd_health (the StatsD forwarding proxy, which the StatsD input process
runs: bucky.daemon.statsd). Every
cache of computed answers here (paths, destination masks, InfluxDB prefixes) is
bucky.cache.TwoGenerationCache.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple, TextIO

from bucky.config import OPTION_BY_NAME, Config, option_error
from bucky.daemon.outputs.base import BUSY_POLL, IDLE_POLL, OutputClient
from bucky.daemon.outputs.buffer import _ChunkBuffer
from bucky.daemon.outputs.connection import GraphiteConnection
from bucky.daemon.outputs.custom import CustomClientAdapter
from bucky.daemon.outputs.debug import DebugClient
from bucky.daemon.outputs.graphite import GraphiteClient, GraphitePickleClient
from bucky.daemon.outputs.influxdb import InfluxDBClient, parse_host_port
from bucky.errors import ConfigError
from bucky.protocol.influxdb import influx_prefix, influx_timestamp_ns, pack_lines

__all__ = [
    "BUSY_POLL", "IDLE_POLL", "CustomClientAdapter", "DebugClient", "GraphiteClient",
    "GraphiteConnection", "GraphitePickleClient", "InfluxDBClient", "OutputClient",
    "OutputFactory", "_ChunkBuffer",
    "build_outputs", "influx_prefix", "influx_timestamp_ns", "output_factories", "pack_lines",
    "parse_host_port",
]


class OutputFactory(NamedTuple):
    """One output process: its name and how to build its client (called inside that process)."""

    name: str
    build: Callable[..., OutputClient]


def output_factories(cfg: Config) -> list[OutputFactory]:
    """The configured outputs, in a stable order, without building any client.

    `debug` replaces the Graphite output with DebugClient (stdout), as Bucky 2's --debug did,
    whether or not graphite_enabled is set; InfluxDB and custom clients are unaffected.
    """
    factories: list[OutputFactory] = []
    if cfg.debug:
        factories.append(OutputFactory(DebugClient.name, lambda **kw: DebugClient(cfg, **kw)))
    elif cfg.graphite_enabled:
        graphite = GraphitePickleClient if cfg.graphite_pickle_enabled else GraphiteClient
        factories.append(OutputFactory(graphite.name, lambda **kw: graphite(cfg, **kw)))
    if cfg.influxdb_enabled:
        for host in cfg.influxdb_hosts:  # fail here, in the supervisor, not in the child
            parse_host_port(host, 0)
        factories.append(OutputFactory(InfluxDBClient.name,
                                       lambda **kw: InfluxDBClient(cfg, **kw)))
    taken = {f.name for f in factories}
    for cls in cfg.custom_clients:
        name = f"custom_{cls.__name__}"
        suffix = 2
        while name in taken:
            name = f"custom_{cls.__name__}_{suffix}"
            suffix += 1
        taken.add(name)
        factories.append(OutputFactory(
            name, lambda cls=cls, name=name, **kw: CustomClientAdapter(cls, cfg, name=name, **kw)))
    return factories


def check(cfg: Config) -> None:
    """The outputs' own check (the preflight): every configured output can be named and its
    settings parse; no client is built. The spool has its own (`spooled_buffer.check`)."""
    try:
        output_factories(cfg)
    except ConfigError as exc:
        option = str(exc).partition(":")[0]
        if option in OPTION_BY_NAME:
            raise option_error(cfg, option, exc) from None
        raise ConfigError(f"{cfg.source}: {exc}") from None


def build_outputs(cfg: Config, *, clock: Callable[[], float] = time.monotonic,
                  stdout: TextIO | None = None) -> list[OutputClient]:
    """Every configured client, built (tests and tools; the daemon builds one per process)."""
    clients = []
    for factory in output_factories(cfg):
        kwargs: dict[str, Any] = {"clock": clock}
        if factory.name == DebugClient.name:
            kwargs["stdout"] = stdout
        clients.append(factory.build(**kwargs))
    return clients
