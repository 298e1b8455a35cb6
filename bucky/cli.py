"""`bucky [OPTIONS] [CONFIG_FILE]`: parse the command line, load the config, run the supervisor.

Every Bucky 2 option is kept; command-line values override the config file. Errors the operator
must fix (config, bind, privileges) print one line and exit non-zero without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

import bucky
from bucky import config as config_mod
from bucky.addresses import format_address
from bucky.config import Config
from bucky.errors import BuckyError, ConfigError

log = logging.getLogger("bucky")

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bucky",
        usage="%(prog)s [OPTIONS] [CONFIG_FILE]",
        description="Relay collectd, StatsD and MetricsD metrics to Graphite.",
    )
    S = argparse.SUPPRESS  # unset options do not override the config file
    p.add_argument("config_file", nargs="?", metavar="CONFIG_FILE", help="Python config file")
    p.add_argument("--version", action="version", version=f"bucky {bucky.__version__}")
    p.add_argument("--explain", action="store_true", default=S,
                   help="read StatsD lines from stdin and print what Bucky would send where; "
                        "nothing is opened or sent")
    p.add_argument("--graphite", action="store_true", default=S,
                   help="with --explain: stdin holds Graphite plaintext lines")
    p.add_argument("--pkts", metavar="FILE", default=S,
                   help="with --explain: datagrams from FILE: collectd in .pkts (bucky-dump "
                        "--write), or a pcap (tcpdump -w): collectd, StatsD, MetricsD by port")
    p.add_argument("--check", dest="check", action="store_true",
                   help="check the configuration (everything start-up checks, binding nothing), "
                        "print 'CONFIG: OK' and exit 0, or the error and exit 2")
    p.add_argument("--verbose", "-v", dest="verbose", action="store_true",
                   help="with --check: print the effective configuration and the plan")
    p.add_argument("--print-systemd-unit", dest="print_systemd_unit", action="store_true",
                   help="print a systemd unit that runs this bucky with CONFIG_FILE (and may "
                        "write the folders it names) and exit")
    p.add_argument("--print-man-page", dest="print_man_page", action="store_true",
                   help="print the bucky(1) man page (roff) and exit")
    p.add_argument("--debug", dest="debug", action="store_true", default=S,
                   help="print 'name value timestamp' lines to stdout instead of sending to "
                        "Graphite; DEBUG logging")
    p.add_argument("--metricsd-ip", dest="metricsd_ip", metavar="IP", default=S,
                   help="MetricsD UDP listen address [127.0.0.1]")
    p.add_argument("--metricsd-port", dest="metricsd_port", metavar="INT", default=S,
                   help="MetricsD UDP port [23632]")
    p.add_argument("--disable-metricsd", dest="metricsd_enabled", action="store_false",
                   default=S, help="disable the MetricsD input")
    p.add_argument("--collectd-ip", dest="collectd_ip", metavar="IP", default=S,
                   help="collectd UDP listen address (a multicast group is joined) [127.0.0.1]")
    p.add_argument("--collectd-port", dest="collectd_port", metavar="INT", default=S,
                   help="collectd UDP port [25826]")
    p.add_argument("--collectd-types", dest="collectd_types", metavar="FILE", action="append",
                   default=S, help="collectd types.db file; repeat for several")
    p.add_argument("--disable-collectd", dest="collectd_enabled", action="store_false",
                   default=S, help="disable the collectd input")
    p.add_argument("--statsd-ip", dest="statsd_ip", metavar="IP", default=S,
                   help="StatsD listen address [127.0.0.1]")
    p.add_argument("--statsd-port", dest="statsd_port", metavar="INT", default=S,
                   help="StatsD UDP port [8125]")
    p.add_argument("--disable-statsd", dest="statsd_enabled", action="store_false", default=S,
                   help="disable the StatsD input")
    p.add_argument("--graphite-ip", dest="graphite_ip", metavar="IP", default=S,
                   help="carbon host name or address [127.0.0.1]")
    p.add_argument("--graphite-port", dest="graphite_port", metavar="INT", default=S,
                   help="carbon port [2003]")
    p.add_argument("--disable-graphite", dest="graphite_enabled", action="store_false",
                   default=S, help="do not send to Graphite")
    p.add_argument("--enable-influxdb", dest="influxdb_enabled", action="store_true", default=S,
                   help="also send InfluxDB line protocol over UDP (influxdb_hosts)")
    p.add_argument("--http-ip", dest="http_ip", metavar="IP", default=S,
                   help="status server listen address [127.0.0.1]")
    p.add_argument("--http-port", dest="http_port", metavar="INT", default=S,
                   help="status server TCP port; unlike the default, one that is taken stops "
                        "the start [8127]")
    p.add_argument("--disable-http", dest="http_enabled", action="store_false", default=S,
                   help="do not run the status server (/, /health, /metrics)")
    p.add_argument("--full-trace", dest="full_trace", action="store_true", default=S,
                   help="show the traceback when the config file fails to load")
    p.add_argument("--log-level", dest="log_level", metavar="NAME", default=S,
                   help="DEBUG, INFO, WARNING, ERROR or CRITICAL [INFO]")
    p.add_argument("--nice", dest="nice", metavar="INT", default=S,
                   help="change the process priority by this amount")
    p.add_argument("--uid", dest="uid", metavar="USER", default=S,
                   help="user name or id to run as once the sockets are bound")
    p.add_argument("--gid", dest="gid", metavar="GROUP", default=S,
                   help="group name or id to run as once the sockets are bound")
    return p


def wants_timestamps(setting: str | bool = "auto",
                     environ: Mapping[str, str] | None = None) -> bool:
    """`log_timestamps`: True/False force; "auto" = off when stderr goes to the journal
    (JOURNAL_STREAM is set), which stamps every line itself, else on."""
    if setting != "auto":
        return bool(setting)
    env = os.environ if environ is None else environ
    return not env.get("JOURNAL_STREAM")


def setup_logging(level: str, timestamps: bool | None = None) -> None:
    if timestamps is None:
        timestamps = wants_timestamps()
    handler = logging.StreamHandler(sys.stderr)
    fmt = "[%(levelname)s] %(processName)s: %(message)s"
    handler.setFormatter(logging.Formatter("%(asctime)s " + fmt if timestamps else fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def preload_modules(cfg: Config) -> None:
    """Import what the children need while the interpreter's files are surely readable.

    After the switch to `uid`, a Python installed under a private home directory could no longer
    import modules lazily."""
    import importlib

    from bucky.daemon.input_runner import INPUT_HANDLERS

    wanted = ["bucky.daemon.outputs", "multiprocessing.popen_fork", "multiprocessing.connection",
              "multiprocessing.reduction", "json", "tempfile", "hmac", "hashlib", "random",
              "importlib.metadata", "selectors", "pickle", "encodings.idna", "ipaddress",
              "concurrent.futures", "queue", "threading", "traceback", "setproctitle",
              # what a reload's preflight imports (bucky.daemon.preflight), whatever it enables
              "bucky.inputs.collectd", "bucky.aggregate.collectd_names",
              "bucky.plugin_host.host", "codecs", "bucky.daemon.preflight",
              "bucky.daemon.outputs.spooled_buffer", "bucky.inputs.python_plugins"]
    for kind, enabled in (("collectd", cfg.collectd_enabled), ("statsd", cfg.statsd_enabled),
                          ("metricsd", cfg.metricsd_enabled), ("carbon", cfg.carbon_enabled),
                          ("python_plugins", cfg.collectd_python_config)):
        if enabled:
            wanted.append(INPUT_HANDLERS[kind].partition(":")[0])
    if cfg.statsd_enabled:
        wanted.append("bucky.protocol.statsd")
    for module in wanted:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise BuckyError(f"cannot import {module}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.print_man_page:
        from bucky.manpage import render

        sys.stdout.write(render())
        return 0
    explain = {k: vars(args).pop(k) for k in ("explain", "graphite", "pkts") if k in vars(args)}
    overrides: dict[str, Any] = {k: v for k, v in vars(args).items()
                                 if k not in ("config_file", "check", "verbose",
                                              "print_systemd_unit", "print_man_page")}
    setup_logging("INFO")
    if args.verbose and not args.check:
        print("bucky: --verbose goes with --check", file=sys.stderr)
        return EXIT_CONFIG
    full_trace = bool(overrides.pop("full_trace", False))
    try:
        if "collectd_types" in overrides and args.config_file:
            file_values, _ = config_mod.read_file(args.config_file)
            file_types = file_values.get("collectd_types") or []
            if isinstance(file_types, str):
                file_types = [file_types]
            overrides["collectd_types"] = list(file_types) + overrides["collectd_types"]
        cfg, warnings = config_mod.load(args.config_file, overrides, full_trace=full_trace)
        from bucky.daemon.preflight import preflight

        plan = preflight(cfg)  # the same checks as --check and a reload, before anything is bound
    except ConfigError as exc:
        print(f"bucky: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging("DEBUG" if cfg.debug and "log_level" not in overrides else cfg.log_level,
                  wants_timestamps(cfg.log_timestamps))
    for warning in warnings:
        log.warning("%s", warning)
    if args.print_systemd_unit:
        from bucky.systemd_unit import render, running_bucky

        print(render(cfg, args.config_file, running_bucky()), end="")
        return 0
    if args.check:
        if args.verbose:
            for line in effective_config(cfg) + [f"# {line}" for line in plan.describe()]:
                print(line)
        print(f"{args.config_file or '<defaults>'}: OK")
        return 0
    if explain:
        return _explain(cfg, explain)
    from bucky.daemon.notify import Notifier
    from bucky.daemon.sockets import BindError
    from bucky.daemon.statedir import prepare_directory, switch_user
    from bucky.daemon.supervisor import Supervisor

    try:
        _init_sentry(cfg)
        if cfg.nice:
            os.nice(cfg.nice)
        supervisor = Supervisor(cfg, args.config_file, overrides, plan=plan,
                                notifier=Notifier.from_env())
        supervisor.bind()
        prepare_directory(cfg)
        preload_modules(cfg)
        switch_user(cfg)
    except (BindError, BuckyError) as exc:
        print(f"bucky: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except OSError as exc:
        print(f"bucky: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    from bucky.daemon.outputs.spooled_buffer import spool_problem

    problem = spool_problem(cfg)  # makes the spool root, as the user the daemon runs as
    if problem:  # the preflight found none, so the disk changed since: still the config's
        print(f"bucky: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        import setproctitle

        setproctitle.setproctitle("bucky: supervisor")
    except ImportError:
        pass
    try:
        return supervisor.run()
    except BuckyError as exc:  # e.g. an output that cannot be built from this config
        print(f"bucky: {exc}", file=sys.stderr)
        return EXIT_RUNTIME


def _explain(cfg: Config, flags: dict[str, Any]) -> int:
    import time

    from bucky import explain

    if not flags.get("explain"):
        print("bucky: --graphite and --pkts go with --explain", file=sys.stderr)
        return EXIT_CONFIG
    logging.getLogger("bucky").setLevel(logging.ERROR)  # the input's problems are printed
    mode = "collectd" if flags.get("pkts") else "graphite" if flags.get("graphite") else "statsd"
    try:
        return explain.run(cfg, mode, sys.stdin.buffer, sys.stdout, time.time(),
                           flags.get("pkts"))
    except ConfigError as exc:
        print(f"bucky: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (BuckyError, OSError) as exc:
        print(f"bucky: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
def _show(value: Any, option: str = "") -> str:
    """An option value in the README's notation, as it could be written in the config file:
    lists as lists, destinations and forward nodes as "host:port[:...]" strings, histogram bins
    as dicts, functions and classes by their import path."""
    from bucky.protocol.placement import Destination

    if isinstance(value, Destination):
        return repr(str(value))
    if option == "statsd_forward":
        return _show([format_address(host, port) + (f":{admin}" if admin else "")
                      for host, port, admin in value])
    if option == "statsd_histogram":
        return _show([{"metric": metric, "bins": [b if math.isfinite(b) else "inf" for b in bins]}
                      for metric, bins in value])
    if option == "metricsd_handlers":  # README: (regex, interval[, priority]) entries
        return "[" + ", ".join("(" + ", ".join(_show(part) for part in entry) + ")"
                               for entry in value) + "]"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_show(v)}" for k, v in value.items()) + "}"
    if callable(value) and hasattr(value, "__qualname__"):
        return repr(f"{value.__module__}:{value.__qualname__}")
    if isinstance(value, re.Pattern):
        return repr(value.pattern)
    return repr(value)


def effective_config(cfg: Config) -> list[str]:
    """`name = value` per option; options that differ from the defaults are marked."""
    defaults = config_mod.validate({})
    lines = []
    for opt in config_mod.OPTIONS:
        value, default = getattr(cfg, opt.name), getattr(defaults, opt.name)
        shown, default_shown = _show(value, opt.name), _show(default, opt.name)
        if shown != default_shown:
            shown += f"  # changed, default {default_shown}"
        lines.append(f"{opt.name} = {shown}")
    return lines


def _init_sentry(cfg: Config) -> None:
    if not cfg.sentry_enabled:
        return
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_sdk.init(
        dsn=cfg.sentry_dsn,
        attach_stacktrace=cfg.sentry_auto_log_stacks,  # Bucky 2's auto_log_stacks
        integrations=[LoggingIntegration(event_level=getattr(logging, cfg.sentry_log_level))],
    )


if __name__ == "__main__":
    sys.exit(main())
