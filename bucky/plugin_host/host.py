"""Runs collectd Python plugins in Bucky: loading, the callback registry, scheduling and threads.

`PluginHost` plays collectd's part behind the `collectd` module (it is that module's Runtime).
`PythonSetup.from_file()` reads what it needs from a collectd.conf-style file.

Rules (collectd 5.12's python plugin and daemon, checked against the real one):
- `start()` walks the <Plugin python> statements in order, in the calling thread (collectd's
  main thread: signal.signal works there): ModulePath is put first on sys.path, Import imports,
  <Module name> calls the config callback named python.<name> (case-insensitive) with its Config
  tree, LogTraces/Encoding/Interactive set options. An import that fails, a config callback that
  raises or an unknown option is a ConfigError naming file:line. Then the init callbacks run.
- Config, init and shutdown callbacks run most recently registered first, as in collectd.
  Registering a read callback under a name already taken is refused (logged); a write, flush,
  log or notification callback replaces the one of the same name (logged).
- Each read callback has its own worker thread: `run_reads(now)` starts the due ones, so one that
  hangs blocks only itself and is not started again while it runs. After a failure (any
  exception, SystemExit included) its interval doubles, up to 86400 s; a success restores it.
  Calls are due every interval from the first one (missed ones are skipped, not caught up).
- Write, notification, flush and log callbacks each have a worker thread with a bounded queue: a
  slow or hung callback loses (and counts) its own jobs, it never blocks the caller.
- Values and notifications dispatched from any thread wait in an outbox (a lock) until
  `collect()` takes them; it also hands them to the write and notification callbacks.
- Defaults at dispatch: empty host -> the host name, time 0 -> now, interval <= 0 -> the
  interval of the read callback running in this thread, else the default interval.
- Plugin logging goes to the logger "bucky.plugins.<module>"; every record of the "bucky" logger
  tree (plugins' and Bucky's own) is passed to the log callbacks, except what a log callback
  itself logs. An exception a callback raises is logged there too (at most once a minute per
  callback, with a count of the others): a CollectdError as a warning without trace, others as
  errors with the trace when LogTraces is on.
- `shutdown()` stops the reads, calls the flush callbacks (timeout 0), lets the write queues
  drain, runs the shutdown callbacks, stops the workers (all within `shutdown_timeout`; what
  hangs is abandoned and named in the log) and restores sys.modules["collectd"] and sys.path,
  forgetting the plugin modules it imported.
"""

from __future__ import annotations

import codecs
import importlib
import logging
import os
import socket
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from bucky.errors import ConfigError
from bucky.plugin_host import collectd_module as api
from bucky.plugin_host.confparse import ConfNode, ConfValue, read_config_file
from bucky.protocol.collectd_records import Notification as NotificationRecord
from bucky.protocol.collectd_records import ValueList
from bucky.ratelog import RateLimitedLog

log = logging.getLogger("bucky.plugins")

DEFAULT_INTERVAL = 10.0  # collectd's default Interval
MAX_READ_INTERVAL = 86400.0  # collectd's MaxReadInterval default
REPORT_PERIOD = 60.0  # seconds: a callback's errors are logged at most once per period
_SEVERITY_LEVELS = {api.LOG_ERROR: logging.ERROR, api.LOG_WARNING: logging.WARNING,
                    api.LOG_NOTICE: logging.INFO, api.LOG_INFO: logging.INFO,
                    api.LOG_DEBUG: logging.DEBUG}
_QUEUED_KINDS = ("write", "notification", "flush", "log")


def _is_true(value: ConfValue) -> bool | None:
    """A boolean option as cf_util_get_boolean reads it (bools, or the strings true/false...)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.lower()
        if word in ("true", "yes", "on"):
            return True
        if word in ("false", "no", "off"):
            return False
    return None


def _one_value(node: ConfNode, kind: type) -> Any:
    if len(node.values) != 1 or not isinstance(node.values[0], kind) or (
            kind is float and isinstance(node.values[0], bool)):
        what = {str: "string", float: "number"}[kind]
        raise ConfigError(f"{node.where}: {node.key} needs exactly one {what} argument")
    return node.values[0]


def _one_bool(node: ConfNode) -> bool:
    flag = _is_true(node.values[0]) if len(node.values) == 1 else None
    if flag is None:
        raise ConfigError(f"{node.where}: {node.key} needs exactly one boolean argument")
    return flag


@dataclass(frozen=True)
class PythonSetup:
    """What a collectd.conf-style file says for the Python plugins."""

    statements: tuple[ConfNode, ...]  # the children of every <Plugin python> block, in order
    hostname: str | None = None  # global Hostname
    fqdn_lookup: bool = True  # global FQDNLookup
    interval: float | None = None  # <LoadPlugin python> Interval, else the global Interval
    types_db: tuple[str, ...] = ()  # global TypesDB files
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_file(cls, path: str) -> PythonSetup:
        warnings: list[str] = []
        return cls.from_tree(read_config_file(path, warnings), path, warnings)

    @classmethod
    def from_tree(cls, root: ConfNode, path: str = "<string>",
                  warnings: Sequence[str] = ()) -> PythonSetup:
        statements: list[ConfNode] = []
        hostname, fqdn, interval, plugin_interval = None, True, None, None
        types_db: list[str] = []
        for node in root.children:
            key = node.key.lower()
            names_python = bool(node.values) and str(node.values[0]).lower() == "python"
            if key == "plugin" and names_python:
                statements.extend(node.children)
            elif key == "loadplugin" and names_python:
                for child in node.children:
                    if child.key.lower() == "interval":
                        plugin_interval = _one_value(child, float)
            elif key == "hostname":
                hostname = _one_value(node, str)
            elif key == "fqdnlookup":
                fqdn = _one_bool(node)
            elif key == "interval":
                interval = _one_value(node, float)
            elif key == "typesdb":
                for value in node.values:
                    if not isinstance(value, str):
                        raise ConfigError(f"{node.where}: TypesDB takes file names")
                    types_db.append(value)
        if not any(n.key.lower() == "plugin" and n.values and str(n.values[0]).lower() ==
                   "python" for n in root.children):
            raise ConfigError(f"{path}: no <Plugin python> block")
        chosen = plugin_interval if plugin_interval is not None else interval
        if chosen is not None and chosen <= 0:
            raise ConfigError(f"{path}: Interval must be positive")
        return cls(tuple(statements), hostname, fqdn, chosen, tuple(types_db), tuple(warnings))

    def resolve_hostname(self) -> str:
        """Hostname, else this machine's name (its canonical name with FQDNLookup), as collectd."""
        if self.hostname:
            return self.hostname
        name = socket.gethostname()
        if self.fqdn_lookup:
            try:
                for info in socket.getaddrinfo(name, None, flags=socket.AI_CANONNAME):
                    if info[3]:
                        return info[3]
            except OSError:
                pass
        return name


# --- callbacks and workers ------------------------------------------------------------------------


@dataclass
class Callback:
    kind: str
    name: str  # "python.<something>"
    function: Callable[..., object]
    data: object = api.NO_DATA

    @property
    def module(self) -> str:
        return self.name.split(".", 1)[1] if "." in self.name else self.name

    def call(self, *args: object) -> object:
        if self.data is api.NO_DATA:
            return self.function(*args)
        return self.function(*args, self.data)


class Worker:
    """A daemon thread running the jobs given to it one at a time, in order.

    At most `capacity` jobs wait; `submit` refuses more (never blocks). A job must not raise."""

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self._capacity = capacity
        self._jobs: list[Callable[[], None] | None] = []
        self._pending = 0  # queued + running
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"plugin {name}", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> bool:
        with self._cond:
            if len(self._jobs) >= self._capacity:
                return False
            self._jobs.append(job)
            self._pending += 1
            self._cond.notify_all()
            return True

    def stop(self) -> None:
        """Finish the queued jobs, then end the thread."""
        with self._cond:
            self._jobs.append(None)
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, max(0.0, timeout))

    def join(self, timeout: float) -> bool:
        self._thread.join(max(0.0, timeout))
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._jobs))
                job = self._jobs.pop(0)
            if job is None:
                return
            try:
                job()
            except BaseException:  # the host wraps jobs; this is a last resort for the thread
                traceback.print_exc()
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()


@dataclass
class ReadTask:
    callback: Callback
    interval: float
    worker: Worker
    effective_interval: float = 0.0
    next_due: float | None = None  # None: due at the next run_reads()
    running: bool = False
    succeeded: bool | None = None  # the outcome of the last call, until run_reads() sees it

    def __post_init__(self) -> None:
        self.effective_interval = self.interval


@dataclass
class _Outbox:
    values: list[tuple[ValueList, dict[str, object]]] = field(default_factory=list)
    notifications: list[tuple[NotificationRecord, dict[str, object]]] = field(
        default_factory=list)


class _LogForwarder(logging.Handler):
    """Hands every record of the "bucky" logger tree to the log callbacks."""

    def __init__(self, host: PluginHost) -> None:
        super().__init__(logging.DEBUG)
        self._host = host

    def emit(self, record: logging.LogRecord) -> None:
        try:
            severity = getattr(record, "collectd_severity", None)
            if severity is None:
                severity = (api.LOG_ERROR if record.levelno >= logging.ERROR else
                            api.LOG_WARNING if record.levelno >= logging.WARNING else
                            api.LOG_INFO if record.levelno >= logging.INFO else api.LOG_DEBUG)
            self._host._forward_log(int(severity), record.getMessage().rstrip("\n"))
        except Exception:
            self.handleError(record)


# --- the host -------------------------------------------------------------------------------------


class PluginHost:
    """collectd's side of the `collectd` module; see the module rules."""

    def __init__(
        self,
        datasets: Mapping[str, Any],
        *,
        hostname: str,
        default_interval: float = DEFAULT_INTERVAL,
        wall_clock: Callable[[], float] = time.time,
        queue_capacity: int = 10_000,
        outbox_capacity: int = 100_000,
        shutdown_timeout: float = 1.5,
    ) -> None:
        self.encoding = "utf-8"
        self.log_traces = False
        self.counters: Counter[str] = Counter()  # cumulative; change it only through _count
        self._new_counts: Counter[str] = Counter()
        self._datasets = datasets
        self._hostname = hostname
        self._default_interval = default_interval
        self._wall_clock = wall_clock
        self._queue_capacity = queue_capacity
        self._outbox_capacity = outbox_capacity
        self._shutdown_timeout = shutdown_timeout
        self._lock = threading.RLock()
        self._context = threading.local()
        self._ordered: dict[str, list[Callback]] = {"config": [], "init": [], "shutdown": []}
        self._queued: dict[str, dict[str, tuple[Callback, Worker]]] = {k: {} for k in
                                                                        _QUEUED_KINDS}
        self._reads: dict[str, ReadTask] = {}
        self._log_callbacks: tuple[tuple[Callback, Worker], ...] = ()
        self._retired: list[Worker] = []
        # A callback's errors are logged at most once a minute per callback and context.
        self._reports = RateLimitedLog(log, REPORT_PERIOD)
        self._outbox = _Outbox()
        self._stopping = False
        self._installed = False
        self._previous_module: ModuleType | None = None
        self._added_paths: list[str] = []
        self._imported: list[str] = []
        self._modules_before: set[str] = set()
        self._forwarder = _LogForwarder(self)
        self.module = api.build_module(self)

    # -- loading -------------------------------------------------------------------------------
    def start(self, statements: Sequence[ConfNode]) -> None:
        """Install the module, process the <Plugin python> statements, run the init callbacks.

        On ConfigError everything is undone (no shutdown callbacks run, as in collectd)."""
        self._install()
        try:
            for node in statements:
                self._configure_one(node)
        except BaseException:
            self._stop_workers(0.5)
            self._uninstall()
            raise
        for callback in list(self._ordered["init"]):
            self._invoke(callback, (), "init callback")

    def _configure_one(self, node: ConfNode) -> None:
        key = node.key.lower()
        if key == "modulepath":
            path = _one_value(node, str)
            sys.path.insert(0, path)
            self._added_paths.append(path)
        elif key == "import":
            self._import(_one_value(node, str), node)
        elif key == "module":
            self._configure_module(_one_value(node, str), node)
        elif key == "logtraces":
            self.log_traces = _one_bool(node)
        elif key == "encoding":
            name = _one_value(node, str)
            try:
                self.encoding = codecs.lookup(name).name
            except LookupError:
                raise ConfigError(f"{node.where}: unknown Encoding {name!r}") from None
        elif key == "interactive":
            if _one_bool(node):
                log.warning("%s: Interactive is not supported by Bucky's plugin host; ignored",
                            node.where)
        else:
            raise ConfigError(f"{node.where}: unknown option {node.key!r} in <Plugin python>")

    def _import(self, name: str, node: ConfNode) -> None:
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as exc:
            if self.log_traces:
                log.error("importing %r failed:\n%s", name,
                          "".join(traceback.format_exception(exc)).rstrip())
            raise ConfigError(f"{node.where}: cannot import plugin module {name!r}: "
                              f"{type(exc).__name__}: {exc}") from None
        self._imported.append(name)

    def _configure_module(self, name: str, node: ConfNode) -> None:
        wanted = name.lower()
        with self._lock:
            matches = [c for c in self._ordered["config"] if c.module.lower() == wanted]
        if not matches:
            log.warning("%s: found a configuration for the %r plugin, but the plugin isn't "
                        "loaded or didn't register a configuration callback", node.where, name)
            return
        callback = matches[0]
        try:
            callback.call(api.Config.from_node(node))
        except (Exception, SystemExit) as exc:
            self._report(callback, exc, "config callback")
            raise ConfigError(f"{node.where}: configuration of {callback.name} failed: "
                              f"{type(exc).__name__}: {exc}") from None

    def _install(self) -> None:
        self._modules_before = set(sys.modules)
        self._previous_module = sys.modules.get("collectd")
        sys.modules["collectd"] = self.module
        logging.getLogger("bucky").addHandler(self._forwarder)
        self._installed = True

    def _uninstall(self) -> None:
        if not self._installed:
            return
        self._installed = False
        logging.getLogger("bucky").removeHandler(self._forwarder)
        if sys.modules.get("collectd") is self.module:
            if self._previous_module is None:
                del sys.modules["collectd"]
            else:
                sys.modules["collectd"] = self._previous_module
        for path in self._added_paths:
            if path in sys.path:
                sys.path.remove(path)
        roots = [os.path.abspath(p) + os.sep for p in self._added_paths]
        for name in set(sys.modules) - self._modules_before:
            module = sys.modules.get(name)
            origin = os.path.abspath(getattr(module, "__file__", None) or "/nonexistent/")
            if any(name == i or name.startswith(i + ".") for i in self._imported) or any(
                    origin.startswith(root) for root in roots):
                sys.modules.pop(name, None)

    # -- the Runtime of the collectd module ----------------------------------------------------
    def dataset(self, type_name: str) -> Any | None:
        return self._datasets.get(type_name)

    def register(self, kind: str, function: Callable[..., object], data: object, name: str,
                 interval: float) -> None:
        callback = Callback(kind, name, function, data)
        problem = ""
        with self._lock:
            if kind in self._ordered:
                self._ordered[kind].insert(0, callback)
            elif kind == "read":
                if name in self._reads:
                    problem = f"a read callback named {name!r} is already registered: ignored"
                else:
                    every = interval if interval > 0 else self._default_interval
                    self._reads[name] = ReadTask(callback, every, Worker(name, 1))
            else:
                registered = self._queued[kind]
                if name in registered:
                    problem = f"a {kind} callback named {name!r} already exists: replaced"
                    registered[name] = (callback, registered[name][1])
                else:
                    registered[name] = (callback, Worker(f"{kind} {name}", self._queue_capacity))
                self._log_callbacks = tuple(self._queued["log"].values())
        if problem:  # logged outside the lock: log handlers may call back into the host
            log.warning("%s", problem)

    def unregister(self, kind: str, name: str) -> bool:
        with self._lock:
            if kind in self._ordered:
                for callback in self._ordered[kind]:
                    if callback.name == name:
                        self._ordered[kind].remove(callback)
                        return True
                return False
            if kind == "read":
                task = self._reads.pop(name, None)
                worker = task.worker if task else None
            else:
                entry = self._queued[kind].pop(name, None)
                worker = entry[1] if entry else None
                self._log_callbacks = tuple(self._queued["log"].values())
            if worker is None:
                return False
            worker.stop()
            self._retired.append(worker)
            return True

    def dispatch_values(self, record: ValueList, meta: dict[str, object]) -> None:
        record = self._complete_values(record)
        with self._lock:
            if len(self._outbox.values) >= self._outbox_capacity:
                self._count("dropped.outbox_full")
                return
            self._outbox.values.append((record, meta))

    def write_values(self, record: ValueList, meta: dict[str, object], destination: str) -> None:
        with self._lock:
            entry = self._queued["write"].get(destination)
        if entry is None:
            log.error("Values.write: no write callback named %r", destination)
            raise RuntimeError("error dispatching values, read the logs")
        self._queue_call(entry, self._values_job(entry[0], self._complete_values(record), meta))

    def dispatch_notification(self, record: NotificationRecord,
                              meta: dict[str, object]) -> None:
        changes: dict[str, Any] = {}
        if not record.host:
            changes["host"] = self._hostname
        if record.time == 0:
            changes["time"] = self._wall_clock()
        if changes:
            record = record._replace(**changes)
        with self._lock:
            if len(self._outbox.notifications) >= self._outbox_capacity:
                self._count("dropped.outbox_full")
                return
            self._outbox.notifications.append((record, meta))

    def flush(self, plugin: str | None, timeout: int, identifier: str | None) -> None:
        with self._lock:
            entries = [e for n, e in self._queued["flush"].items() if plugin in (None, n)]
        for entry in entries:
            self._queue_call(entry, lambda c=entry[0]: self._invoke(c, (timeout, identifier),
                                                                    "flush callback"))

    def log(self, severity: int, message: str, module: str) -> None:
        logging.getLogger(f"bucky.plugins.{module}").log(
            _SEVERITY_LEVELS.get(severity, logging.ERROR), "%s", message,
            extra={"collectd_severity": severity})

    # -- what the input calls ------------------------------------------------------------------
    def run_reads(self, now: float) -> None:
        """Start the read callbacks that are due and not running (call often: >= 10 times/s)."""
        suspended: list[tuple[str, float]] = []
        with self._lock:
            if self._stopping:
                return
            for task in self._reads.values():
                if task.running:
                    continue
                if task.succeeded is not None:
                    if not task.succeeded:
                        suspended.append((task.callback.name,
                                          min(task.effective_interval * 2, MAX_READ_INTERVAL)))
                    self._reschedule(task, now)
                if task.next_due is None:
                    task.next_due = now
                if now >= task.next_due:
                    if now - task.next_due >= task.effective_interval:
                        task.next_due = now  # missed whole intervals: skip them, no drift else
                    task.running = True
                    task.worker.submit(lambda t=task: self._read_job(t))
        for name, seconds in suspended:
            log.info("read-function of plugin %r failed. Will suspend it for %.3f seconds.",
                     name, seconds)

    def collect(self) -> tuple[list[ValueList], list[NotificationRecord]]:
        """Take the dispatched values and notifications, and pass them to the write and
        notification callbacks."""
        with self._lock:
            outbox, self._outbox = self._outbox, _Outbox()
        if not self._installed:  # after shutdown: the callbacks are gone
            return [r for r, _ in outbox.values], [n for n, _ in outbox.notifications]
        for record, meta in outbox.values:
            self._fan_out_values(record, meta)
        for note, meta in outbox.notifications:
            self._fan_out_notification(note, meta)
        return [r for r, _ in outbox.values], [n for n, _ in outbox.notifications]

    def deliver(self, items: Sequence[object]) -> None:
        """Value lists and notifications Bucky decoded: to the write / notification callbacks."""
        for item in items:
            if isinstance(item, ValueList):
                self._fan_out_values(item, {})
            elif isinstance(item, NotificationRecord):
                self._fan_out_notification(item, {})
            else:
                self._count("deliver.ignored")

    def shutdown(self) -> None:
        """Flush, drain, run the shutdown callbacks, stop the threads, undo the installation,
        all within `shutdown_timeout` seconds (a hung callback is abandoned, and logged)."""
        if not self._installed:
            return
        deadline = time.monotonic() + self._shutdown_timeout

        def remaining() -> float:
            return max(0.0, deadline - time.monotonic())

        with self._lock:
            self._stopping = True
        self.flush(None, 0, None)
        with self._lock:
            busy = [w for kind in ("write", "notification", "flush")
                    for _, w in self._queued[kind].values()]
        for worker in busy:
            worker.wait_idle(remaining())
        for callback in list(self._ordered["shutdown"]):
            self._call_with_timeout(callback, max(0.1, remaining()))
        self._uninstall()
        self._stop_workers(remaining())

    # -- internals -----------------------------------------------------------------------------
    def _complete_values(self, record: ValueList) -> ValueList:
        changes: dict[str, Any] = {}
        if not record.host:
            changes["host"] = self._hostname
        if record.time == 0:
            changes["time"] = self._wall_clock()
        if record.interval <= 0:
            changes["interval"] = getattr(self._context, "read_interval", None) or \
                self._default_interval
        return record._replace(**changes) if changes else record

    def _reschedule(self, task: ReadTask, now: float) -> None:
        if task.succeeded:
            task.effective_interval = task.interval
        else:
            task.effective_interval = min(task.effective_interval * 2, MAX_READ_INTERVAL)
        task.succeeded = None
        due = (task.next_due if task.next_due is not None else now) + task.effective_interval
        task.next_due = max(due, now)

    def _read_job(self, task: ReadTask) -> None:
        self._context.read_interval = task.interval
        try:
            ok = self._invoke(task.callback, (), "read callback")
        finally:
            self._context.read_interval = None
        with self._lock:
            self._count("read.calls")
            if not ok:
                self._count("read.failures")
            task.running = False
            task.succeeded = ok

    def _values_job(self, callback: Callback, record: ValueList,
                    meta: dict[str, object]) -> Callable[[], None]:
        def job() -> None:
            values = self.module.Values.from_record(record, meta)
            self._invoke(callback, (values,), "write callback")
        return job

    def _fan_out_values(self, record: ValueList, meta: dict[str, object]) -> None:
        with self._lock:
            entries = list(self._queued["write"].values())
        for entry in entries:
            self._queue_call(entry, self._values_job(entry[0], record, meta))

    def _fan_out_notification(self, record: NotificationRecord,
                              meta: dict[str, object]) -> None:
        with self._lock:
            entries = list(self._queued["notification"].values())
        for entry in entries:
            callback = entry[0]

            def job(c: Callback = callback) -> None:
                notification = self.module.Notification.from_record(record, meta)
                self._invoke(c, (notification,), "notification callback")
            self._queue_call(entry, job)

    def _queue_call(self, entry: tuple[Callback, Worker], job: Callable[[], None]) -> None:
        if not entry[1].submit(job):
            self._count(f"dropped.{entry[0].kind}_queue_full")

    def _forward_log(self, severity: int, message: str) -> None:
        if getattr(self._context, "in_log_callback", False):
            return
        for callback, worker in self._log_callbacks:  # a snapshot: no lock in a log handler
            def job(c: Callback = callback) -> None:
                self._context.in_log_callback = True
                try:
                    c.call(severity, message)
                except (Exception, SystemExit):  # as collectd: printed, never logged
                    self._count("errors.log_callback")
                    traceback.print_exc()
                finally:
                    self._context.in_log_callback = False
            if not worker.submit(job):
                self._count("dropped.log_queue_full")

    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] += 1
            self._new_counts[key] += 1

    def take_counts(self) -> Counter[str]:
        """The counts added since the last call (for a caller that keeps its own Counter in
        one thread: workers never touch it)."""
        with self._lock:
            counts, self._new_counts = self._new_counts, Counter()
        return counts

    def _invoke(self, callback: Callback, args: tuple[object, ...], context: str) -> bool:
        try:
            callback.call(*args)
            return True
        except (Exception, SystemExit) as exc:
            self._count("errors.callback")
            self._report(callback, exc, context)
            return False

    def _report(self, callback: Callback, exc: BaseException, context: str) -> None:
        """Log what a callback raised: at most once a minute per callback and context."""
        held = self._reports.admit(f"{context} {callback.name}")
        if held is None:
            return
        more = f" ({held} more since the last report)" if held else ""
        logger = logging.getLogger(f"bucky.plugins.{callback.module}")
        if isinstance(exc, api.CollectdError):
            logger.warning("%s in %s %s: %s%s", type(exc).__name__, context, callback.name, exc,
                           more)
            return
        logger.error("Unhandled python exception in %s %s: %s: %s%s", context, callback.name,
                     type(exc).__name__, exc, more)
        if self.log_traces:
            for line in traceback.format_exception(exc):
                logger.error("%s", line.rstrip("\n"))

    def _call_with_timeout(self, callback: Callback, timeout: float) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                self._invoke(callback, (), "shutdown callback")
            finally:
                done.set()
        threading.Thread(target=run, name=f"plugin shutdown {callback.name}", daemon=True).start()
        if not done.wait(timeout):
            log.error("shutdown callback %s did not return within %.1f s; abandoned",
                      callback.name, timeout)

    def _stop_workers(self, timeout: float) -> None:
        """Ask every worker to stop; wait up to `timeout` for the queued callbacks' workers.
        A read still running cannot be stopped: it is named and left to die with the process."""
        with self._lock:
            hung_reads = [t.callback.name for t in self._reads.values() if t.running]
            readers = [t.worker for t in self._reads.values()]
            queued = [w for kind in _QUEUED_KINDS for _, w in self._queued[kind].values()]
            retired = list(self._retired)
        for worker in readers + queued + retired:
            worker.stop()
        deadline = time.monotonic() + timeout
        for worker in queued:
            if not worker.join(deadline - time.monotonic()):
                log.error("plugin callback %s is still running at shutdown; abandoned",
                          worker.name)
        for name in hung_reads:
            log.error("read callback %s is still running at shutdown; abandoned", name)
