"""The Python plugin input: runs collectd Python plugins (collectd-python(5)) in their own process.

What this module is for: the glue between the daemon's process loop and the plugin host.
`PluginHostInput` reads `collectd_python_config` (a collectd.conf-style file with a
<Plugin python> block; its global Hostname, FQDNLookup, Interval and TypesDB are honoured, the
TypesDB files added to `collectd_types`), starts the plugins, and then:
- tick(): starts the read callbacks that are due, and sends what plugins dispatched through the
  same CollectdPipeline as network values (types.db check, rates, converters, names) into
  sink.extend(); dispatched notifications go to sink.notify();
- deliver(): the value lists and notifications the collectd input decoded go to the plugins'
  write and notification callbacks;
- close(): shutdown callbacks, then what is left goes to the sink.

Rules: a plugin that cannot be imported, a config callback that raises or a bad config file is a
ConfigError at construction (the daemon halts with it). After that nothing a plugin does stops
this input: tick/deliver/close never raise (problems are counted and logged). No socket.
Counters: read.calls, read.failures, errors.callback, values.dispatched, notifications.dispatched,
dropped.<why>, errors.tick, plus the pipeline's (rejected.<reason>, dropped.<why>, ...).
"""

from __future__ import annotations

import codecs
import importlib.machinery
import logging
import sys
from collections import Counter

from bucky.config import Config, option_error
from bucky.errors import ConfigError
from bucky.inputs.base import InputHandler, Sink
from bucky.inputs.collectd import CollectdPipeline, load_datasets
from bucky.plugin_host.host import DEFAULT_INTERVAL, PluginHost, PythonSetup

log = logging.getLogger(__name__)


class PluginHostInput(InputHandler):
    """The plugin host as a daemon input (the input contract: bucky.inputs.base)."""

    name = "python_plugins"

    def __init__(self, cfg: Config, sink: Sink, state: object = None) -> None:
        self.counters: Counter[str] = Counter()
        self._sink = sink
        path = cfg.collectd_python_config
        if not path:
            raise ConfigError("collectd_python_config: no collectd.conf-style file given")
        setup = PythonSetup.from_file(path)
        for warning in setup.warnings:
            log.warning("%s", warning)
        datasets = load_datasets(cfg.collectd_types, setup.types_db, relative_to=path)
        self.pipeline = CollectdPipeline(cfg, self.counters, datasets=datasets)
        if state is not None:
            self.pipeline.restore_state(state)
        self.host = PluginHost(
            datasets,
            hostname=setup.resolve_hostname(),
            default_interval=setup.interval or DEFAULT_INTERVAL,
            # close() must end within the supervisor's join timeout for this process
            shutdown_timeout=0.75 * cfg.process_join_timeout,
        )
        self.host.start(setup.statements)

    # -- the input contract (bucky.inputs.base) ------------------------------------------------
    def deliver(self, items: list, now: float, mono: float | None = None) -> None:
        try:
            self.host.deliver(items)
        except Exception:
            self.counters["errors.deliver"] += 1
            log.exception("delivering collectd records to the plugins failed")

    def tick(self, now: float, mono: float | None = None) -> None:
        if mono is not None:
            now = mono  # read schedules and series expiry run on the monotonic clock
        try:
            self.host.run_reads(now)
            self._forward(now)
            self.pipeline.tick(now)
        except Exception:
            self.counters["errors.tick"] += 1
            log.exception("python plugin host tick failed")

    def close(self, now: float, mono: float | None = None) -> None:
        if mono is not None:
            now = mono
        try:
            self.host.shutdown()
            self._forward(now)
        except Exception:
            self.counters["errors.tick"] += 1
            log.exception("stopping the python plugins failed")

    def carry_state(self) -> object:
        return self.pipeline.carry_state()

    # -- helpers -------------------------------------------------------------------------------
    def _forward(self, now: float) -> None:
        self.counters.update(self.host.take_counts())
        value_lists, notifications = self.host.collect()
        if value_lists:
            self.counters["values.dispatched"] += len(value_lists)
            samples = self.pipeline.process(value_lists, now)
            if samples:
                self._sink.extend(samples)
        for notification in notifications:
            self.counters["notifications.dispatched"] += 1
            self._sink.notify(notification)


def check(cfg: Config) -> None:
    """This input's own check (the preflight): the plugin config parsed, its TypesDB files
    loaded, its <Plugin python> statements checked, every Import found on sys.path plus its
    ModulePaths. Plugin modules are not imported: importing runs plugin code (threads, sockets,
    a slow start), which belongs in the plugin process; an import that raises is found there."""
    path = cfg.collectd_python_config
    if not path:
        return
    try:
        setup = PythonSetup.from_file(path)
        load_datasets(cfg.collectd_types, setup.types_db, path)
        paths: list[str] = []
        for node in setup.statements:
            key = node.key.lower()
            if key in ("modulepath", "import", "encoding") and (
                    len(node.values) != 1 or not isinstance(node.values[0], str)):
                raise ConfigError(f"{node.where}: {node.key} needs exactly one string argument")
            if key == "modulepath":
                paths.insert(0, node.values[0])
            elif key == "import":
                _find_module(node.values[0], paths, node.where)
            elif key == "encoding":
                try:
                    codecs.lookup(node.values[0])
                except LookupError:
                    raise ConfigError(f"{node.where}: unknown Encoding {node.values[0]!r}") \
                        from None
            elif key not in ("module", "logtraces", "interactive"):
                raise ConfigError(f"{node.where}: unknown option {node.key!r} in <Plugin python>")
    except ConfigError as exc:
        raise option_error(cfg, "collectd_python_config", exc) from None


def _find_module(name: str, paths: list[str], where: str) -> None:
    top = name.partition(".")[0]
    if top in sys.modules or importlib.machinery.BuiltinImporter.find_spec(top) is not None:
        return
    if importlib.machinery.PathFinder.find_spec(top, paths + sys.path) is None:
        raise ConfigError(f"{where}: cannot import plugin module {name!r}: no module named "
                          f"{top!r} on the ModulePath or sys.path")
