"""Load and validate Bucky's configuration once, into one frozen value passed to every process.

A config file is Python (as in Bucky 2): its module-level names override the defaults below. Every
option is validated here, at start, and a problem becomes one ConfigError line naming the file, the
option, the expected form and the value given. A name one typo away from an option is an error
(`near_miss`); other unknown names are the file's own and draw a warning with the closest option.
Class `Config` declares every option's field with its checker's type. Nothing here is
module-level mutable state: `load()` returns a new `Config` each time (SIGHUP re-reads the file
through the same path). Checks that need more than the values (files, folders, the user to run
as) belong to the components and run in the preflight (bucky.daemon.preflight).
"""

import dataclasses
import difflib
import grp
import importlib
import ipaddress
import math
import os
import pwd
import re
import sys
import traceback
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from bucky.errors import ConfigError
from bucky.protocol import placement
from bucky.protocol.collectd_security import parse_security_level

_T = TypeVar("_T")


class Invalid(Exception):
    """Raised by a checker: str(exc) says what was expected."""


class FrozenDict(dict):
    """A read-only, picklable dict (MappingProxyType does not pickle)."""

    def _readonly(self, *args: object, **kwargs: object) -> None:
        raise TypeError("configuration mappings are read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly  # type: ignore

    def __reduce__(self) -> tuple:
        return (FrozenDict, (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items(), key=repr)))


# --- checkers: raw value -> normalised value, or Invalid("expected ...") -------------------------


def field_type(check: Callable[[Any], Any]) -> Any:
    """A checker's return annotation: the type of the Config field it fills."""
    return typing.get_type_hints(check).get("return", Any)


def boolean(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    word = v.strip().lower() if isinstance(v, str) else None
    if word in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return word in ("true", "yes", "on", "1")
    raise Invalid("expected True or False")


def _number(v: Any, kind: type, what: str) -> Any:
    if isinstance(v, bool):
        raise Invalid(f"expected {what}")
    if isinstance(v, str):
        try:
            v = kind(v.strip())
        except ValueError:
            raise Invalid(f"expected {what}") from None
    if kind is int and isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
        raise Invalid(f"expected {what}")
    if isinstance(v, float) and not math.isfinite(v):
        raise Invalid(f"expected {what}")
    return kind(v)


def int_range(lo: int | None, hi: int | None, what: str | None = None) -> Callable[[Any], int]:
    desc = what or (
        f"an integer {lo}-{hi}" if lo is not None and hi is not None
        else f"an integer >= {lo}" if lo is not None else "an integer"
    )

    def check(v: Any) -> int:
        n = _number(v, int, desc)
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            raise Invalid(f"expected {desc}")
        return n

    return check


def float_min(lo: float, inclusive: bool = True, what: str | None = None) -> Callable[[Any], float]:
    desc = what or (f"a number >= {lo:g}" if inclusive else f"a number > {lo:g}")

    def check(v: Any) -> float:
        x = _number(v, float, desc)
        if x < lo or (not inclusive and x == lo):
            raise Invalid(f"expected {desc}")
        return x

    return check


port = int_range(1, 65535, "a port number 1-65535")


def optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def opt(v: Any) -> Any:
        return None if v is None else check(v)

    opt.__annotations__ = {"v": Any, "return": field_type(check) | None}  # the Config field type
    return opt


def text(v: Any) -> str:
    if not isinstance(v, str):
        raise Invalid("expected a string")
    return v


def nonempty_text(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise Invalid("expected a non-empty string")
    return v.strip()


_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
                        r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?")


def address(v: Any) -> str:
    """An IPv4 or IPv6 address ([::1] too) or a host name; a port is its own option."""
    if not isinstance(v, str) or not v.strip() or any(c.isspace() for c in v.strip()):
        raise Invalid("expected an IP address or host name")
    host = v.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_NAME.fullmatch(host) or len(host) > 253:
            port = ", without ':port' (the port has its own option)" if ":" in host else ""
            raise Invalid(f"expected an IP address or host name{port}") from None
    return host


def text_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        return (v,)
    if not isinstance(v, Iterable) or isinstance(v, Mapping):
        raise Invalid("expected a list of strings")
    items = tuple(v)
    if not all(isinstance(i, str) for i in items):
        raise Invalid("expected a list of strings")
    return items


def optional_text_list(v: Any) -> tuple[str, ...] | None:
    return None if v is None else text_list(v)


def log_level(v: Any) -> str:
    names = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    if isinstance(v, str) and v.strip().upper() in names + ("WARN", "FATAL"):
        name = v.strip().upper()
        return {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(name, name)
    raise Invalid("expected one of " + ", ".join(names))


def resolve_object(v: Any) -> Any:
    """'package.module:attr' (or 'package.module.attr') -> the object; objects pass through."""
    if not isinstance(v, str):
        return v
    mod_name, sep, attr = v.partition(":")
    if not sep:
        mod_name, _, attr = v.rpartition(".")
    if not mod_name or not attr:
        raise Invalid("expected 'module:attribute'")
    try:
        obj: Any = importlib.import_module(mod_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # ImportError, AttributeError, or anything the module raises
        reason = f"{exc.__class__.__name__}: {exc}"
        raise Invalid(f"expected an importable 'module:attribute' ({reason})") from None
    return obj


def optional_callable(v: Any) -> Callable | None:
    if v is None:
        return None
    obj = resolve_object(v)
    if not callable(obj):
        raise Invalid("expected a function (or 'module:function')")
    return obj


def class_list(v: Any) -> tuple[type, ...]:
    if v is None:
        return ()
    if isinstance(v, (str, type)):
        v = [v]
    if not isinstance(v, Iterable):
        raise Invalid("expected a list of classes")
    out = []
    for item in v:
        cls = resolve_object(item)
        if not isinstance(cls, type):
            raise Invalid("expected a list of classes (or 'module:Class')")
        out.append(cls)
    return tuple(out)


def converters(v: Any) -> FrozenDict | tuple[Callable, ...]:
    if v is None:
        return FrozenDict()
    if isinstance(v, Mapping):
        out = {}
        for plugin, fn in v.items():
            fn = resolve_object(fn)
            if not isinstance(plugin, str) or not callable(fn):
                raise Invalid("expected a mapping of plugin name to function")
            out[plugin] = fn
        return FrozenDict(out)
    if isinstance(v, Iterable) and not isinstance(v, str):
        fns = tuple(resolve_object(fn) for fn in v)
        if not all(callable(fn) for fn in fns):
            raise Invalid("expected a list of converter functions or a plugin->function mapping")
        return fns
    raise Invalid("expected a mapping of plugin name to function")


def security_level(v: Any) -> int:
    try:
        return parse_security_level(v)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def readable_file(v: Any) -> str:
    path = nonempty_text(v)
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise Invalid("expected a readable file")
    return path


def readable_files(v: Any) -> tuple[str, ...]:
    return tuple(readable_file(p) for p in text_list(v))


def str_mapping(v: Any) -> FrozenDict:
    if v is None:
        return FrozenDict()
    if not isinstance(v, Mapping) or not all(isinstance(k, str) for k in v):
        raise Invalid("expected a dict of tag names to values")
    return FrozenDict({k: (None if val is None else str(val)) for k, val in v.items()})


def metricsd_handlers(v: Any) -> tuple[tuple[re.Pattern, float, int], ...]:
    out = []
    form = "expected a list of (regex, interval[, priority])"
    if not isinstance(v, Iterable) or isinstance(v, (str, Mapping)):
        raise Invalid(form)
    for entry in v:
        if not isinstance(entry, (tuple, list)) or len(entry) not in (2, 3):
            raise Invalid(form)
        pattern, interval = entry[0], entry[1]
        priority = entry[2] if len(entry) == 3 else 0
        try:
            regex = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise Invalid(f"{form} with a valid regex ({exc})") from None
        out.append((regex, float_min(0, False)(interval), int_range(None, None)(priority)))
    return tuple(out)


def percentiles(v: Any) -> tuple[float, ...]:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = [v]
    if not isinstance(v, Iterable) or isinstance(v, (str, Mapping)):
        raise Invalid("expected a list of percentiles in -100..100, not 0")
    out = []
    for p in v:
        x = _number(p, float, "a list of percentiles in -100..100, not 0")
        if x == 0 or not -100 <= x <= 100:
            raise Invalid("expected a list of percentiles in -100..100, not 0")
        out.append(int(x) if x.is_integer() else x)
    return tuple(out)


def histogram_bins(v: Any) -> tuple[tuple[str, tuple[float, ...]], ...]:
    form = "expected a list of {'metric': str, 'bins': [numbers or 'inf']}"
    if not isinstance(v, Iterable) or isinstance(v, (str, Mapping)):
        raise Invalid(form)
    out = []
    for entry in v:
        if isinstance(entry, Mapping):
            metric, bins = entry.get("metric", ""), entry.get("bins")
        elif isinstance(entry, (tuple, list)) and len(entry) == 2:
            metric, bins = entry
        else:
            raise Invalid(form)
        # An empty bin list excludes the metric (the reference's first-match-wins rule).
        if not isinstance(metric, str) or not isinstance(bins, (list, tuple)):
            raise Invalid(form)
        try:
            parsed = tuple(math.inf if str(b).lower() == "inf" else float(b) for b in bins)
        except (TypeError, ValueError):
            raise Invalid(form) from None
        out.append((metric, parsed))
    return tuple(out)


def _account(lookup: Callable[[str], int], expected: str) -> Callable[[Any], int | None]:
    """A user or group given by name or number -> its numeric id."""

    def check(v: Any) -> int | None:
        if v is None:
            return None
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, str) and v.strip().isdigit():
            return int(v)
        if isinstance(v, str):
            try:
                return lookup(v.strip())
            except KeyError:
                pass
        raise Invalid(expected)

    return check


user = _account(lambda name: pwd.getpwnam(name).pw_uid, "expected an existing user name or a uid")
group = _account(lambda name: grp.getgrnam(name).gr_gid,
                 "expected an existing group name or a gid")


def auto_boolean(v: Any) -> str | bool:
    """"auto" (or None), or a boolean that forces the choice."""
    if v is None or (isinstance(v, str) and v.strip().lower() == "auto"):
        return "auto"
    try:
        return boolean(v)
    except Invalid:
        raise Invalid('expected "auto", True or False') from None


def one_of(*choices: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if isinstance(v, str) and v.strip().lower() in choices:
            return v.strip().lower()
        raise Invalid("expected one of " + ", ".join(repr(c) for c in choices))

    return check


def int_choice(*choices: int) -> Callable[[Any], int]:
    desc = " or ".join(str(c) for c in choices)

    def check(v: Any) -> int:
        n = _number(v, int, desc)
        if n not in choices:
            raise Invalid(f"expected {desc}")
        return n

    return check


def self_metrics_prefix(v: Any) -> str:
    """A dotted prefix where `{host}` stands for the short host name."""
    form = "expected a dotted name, '{host}' standing for the short host name (e.g. 'bucky.{host}')"
    if not isinstance(v, str) or any(c.isspace() for c in v):
        raise Invalid(form)
    rest = v.replace("{host}", "")
    if "{" in rest or "}" in rest or ".." in v:
        raise Invalid(form)
    return v.strip(".")


def destinations(v: Any) -> tuple[placement.Destination, ...]:
    """carbon's DESTINATIONS: a list of "host:port[:instance]" (or one comma-separated string)."""
    if v is None:
        return ()
    if not isinstance(v, str) and (not isinstance(v, Iterable) or isinstance(v, Mapping)):
        raise Invalid(f"expected a list of {placement.DESTINATION_FORM}")
    try:
        return placement.parse_destinations(v)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def anything(v: Any) -> Any:
    return v


def statsd_nodes(v: Any) -> tuple[tuple[str, int, int | None], ...]:
    """statsd_forward: ["host:port[:adminport]", ...] -> ((host, port, adminport or None), ...)."""
    expected = 'expected a list of "host:port[:adminport]" strings'
    if isinstance(v, str) or not isinstance(v, Iterable) or isinstance(v, Mapping):
        raise Invalid(expected)
    nodes: list[tuple[str, int, int | None]] = []
    for item in v:
        parts = item.split(":") if isinstance(item, str) else []
        if len(parts) not in (2, 3) or not parts[0].strip() or any(c.isspace() for c in item):
            raise Invalid(expected)
        try:
            numbers = [int(p) for p in parts[1:]]
        except ValueError:
            raise Invalid(expected) from None
        if not all(0 < n < 65536 for n in numbers):
            raise Invalid(expected + " (ports 1-65535)")
        node = (parts[0], numbers[0], numbers[1] if len(numbers) == 2 else None)
        if any(n[:2] == node[:2] for n in nodes):
            raise Invalid(expected + f" (each host:port once; {parts[0]}:{numbers[0]} twice)")
        nodes.append(node)
    return tuple(nodes)


# --- the options table ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    default: Any
    check: Callable[[Any], Any]
    doc: str


OPTIONS: tuple[Option, ...] = (
    # general
    Option("debug", False, boolean,
        "write 'name value timestamp' lines to stdout instead of Graphite"),
    Option("log_level", "INFO", log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    Option("log_timestamps", "auto", auto_boolean,
       "log lines carry their own time; auto = not when JOURNAL_STREAM is set (journald)"),
    Option("nice", None, optional(int_range(-20, 19)), "adjust the process priority by this"),
    Option("uid", None, user, "user (name or number) to run as after binding sockets"),
    Option("gid", None, group, "group (name or number) to run as after binding sockets"),
    Option("directory", "/var/lib/bucky", nonempty_text, "state directory (saved gauges); created"),
    Option("process_join_timeout", 2.0, float_min(0, False), "seconds each stage gets to stop"),
    Option("max_sample_queue", 0, int_range(0, None),
       "samples a queue between processes may hold; 0 = the default bound (1,000,000)"),
    Option("full_trace", False, boolean, "show tracebacks of config file errors"),
    Option("custom_clients", (), class_list, "classes with send(host, name, value, timestamp)"),
    Option("processor", None, optional_callable,
       "function(host, name, value, timestamp) -> tuple or None, run in its own process"),
    Option("processor_drop_on_error", False, boolean, "drop a sample when the processor raises"),
    Option("self_metrics_interval", 10.0, float_min(0),
       "seconds between Bucky's own metrics (<self_metrics_prefix>.<process>.<counter>); 0 = off"),
    Option("self_metrics_prefix", "bucky.{host}", self_metrics_prefix,
       "prefix of Bucky's own metrics; {host} = the short host name"),
    # http status server
    Option("http_enabled", True, boolean,
        "run the HTTP status server (/, /health, /metrics, /api/)"),
    Option("http_ip", "127.0.0.1", address, "HTTP status server listen address"),
    Option("http_port", 8127, port, "HTTP status server TCP port"),
    Option("http_history_seconds", 600.0, float_min(0, False),
       "how long the status page keeps the series it saw"),
    Option("http_degraded_status", 200, int_choice(200, 503),
           "what /health answers while degraded (a destination unreachable, the spool in use): "
           "200 or 503"),
    # sentry (Bucky 2; needs the sentry-sdk package when enabled)
    Option("sentry_enabled", False, boolean, "report errors to Sentry (needs sentry-sdk)"),
    Option("sentry_dsn", None, optional(text), "Sentry DSN"),
    Option("sentry_log_level", "WARNING", log_level, "lowest log level sent to Sentry"),
    Option("sentry_auto_log_stacks", False, boolean, "attach stacks to Sentry log events"),
    # names
    Option("name_prefix", None, optional(text), "first path component of every metric"),
    Option("name_prefix_parts", None, optional_text_list, "path components after name_prefix"),
    Option("name_postfix", None, optional(text), "last path component of every metric"),
    Option("name_postfix_parts", None, optional_text_list, "path components before name_postfix"),
    Option("name_replace_char", "_", optional(text), "replaces '.' inside a path component"),
    Option("name_strip_duplicates", True, boolean,
        "collapse repeated components (cpu.cpu.0 -> cpu.0)"),
    Option("name_host_trim", (), text_list, "host name suffixes to remove (e.g. 'example.com')"),
    # metricsd
    Option("metricsd_ip", "127.0.0.1", address, "MetricsD UDP listen address"),
    Option("metricsd_port", 23632, port, "MetricsD UDP port"),
    Option("metricsd_enabled", True, boolean, "run the MetricsD input"),
    Option("metricsd_default_interval", 10.0, float_min(0, False), "MetricsD flush interval (s)"),
    Option("metricsd_handlers", (), metricsd_handlers,
        "(regex, interval[, priority]) per metric name"),
    Option("metricsd_max_metrics", 10000, int_range(1, None),
       "cap on live MetricsD metrics; new ones beyond it are dropped and counted"),
    Option("metricsd_expire_intervals", 360, float_min(0, False),
       "forget a MetricsD metric after this many idle flush intervals"),
    # collectd
    Option("collectd_ip", "127.0.0.1", address, "collectd UDP listen address (multicast joins)"),
    Option("collectd_port", 25826, port, "collectd UDP port"),
    Option("collectd_enabled", True, boolean, "run the collectd input"),
    Option("collectd_types", (), readable_files, "types.db files (default: the system's)"),
    Option("collectd_converters", FrozenDict(), converters, "plugin name -> converter function"),
    Option("collectd_use_entry_points", True, boolean, "load converters from entry points"),
    Option("collectd_counter_eq_derive", False, boolean, "accept COUNTER for DERIVE and back"),
    Option("collectd_workers", 1, int_range(1, 64), "collectd receiver processes (SO_REUSEPORT)"),
    Option("collectd_security_level", 0, security_level, "0/None, 1/Sign, 2/Encrypt"),
    Option("collectd_auth_file", None, optional(readable_file), "'user: password' lines"),
    Option("collectd_series_ttl_intervals", 4, int_range(1, None),
       "forget a series' rate state after this many missed intervals"),
    Option("collectd_python_config", None, optional(readable_file),
       "collectd.conf-style file with a <Plugin python> block: run collectd Python plugins"),
    # statsd
    Option("statsd_ip", "127.0.0.1", address, "StatsD UDP (and TCP) listen address"),
    Option("statsd_port", 8125, port, "StatsD UDP port"),
    Option("statsd_enabled", True, boolean, "run the StatsD input"),
    Option("statsd_flush_time", 10.0, float_min(0, False), "StatsD flush interval (s)"),
    Option("statsd_metadata", FrozenDict(), str_mapping, "tags added to every StatsD metric"),
    Option("statsd_legacy_namespace", True, boolean, "stats.<k> / stats_counts.<k> names"),
    Option("statsd_global_prefix", "stats", optional(text), "prefix of StatsD metrics"),
    Option("statsd_prefix_counter", "counters", optional(text), "counter prefix (new namespace)"),
    Option("statsd_prefix_timer", "timers", optional(text), "timer prefix"),
    Option("statsd_prefix_set", "sets", optional(text), "set prefix"),
    Option("statsd_prefix_gauge", "gauges", optional(text), "gauge prefix"),
    Option("statsd_prefix_stats", "statsd", optional(text), "prefix of StatsD's own statistics"),
    Option("statsd_persistent_gauges", False, boolean, "save gauges across restarts"),
    Option("statsd_gauges_savefile", "gauges.save", nonempty_text,
        "file in `directory` for gauges"),
    Option("statsd_gauges_save_interval", 60.0, float_min(0, False), "seconds between gauge saves"),
    Option("statsd_delete_idlestats", False, boolean, "do not send stats that saw no update"),
    Option("statsd_delete_counters", True, boolean, "with delete_idlestats: idle counters"),
    Option("statsd_delete_timers", True, boolean, "with delete_idlestats: idle timers"),
    Option("statsd_delete_sets", True, boolean, "with delete_idlestats: idle sets"),
    Option("statsd_onlychanged_gauges", True, boolean,
        "with delete_idlestats: only updated gauges"),
    Option("statsd_gauges_max_ttl", 0.0, float_min(0),
        "forget gauges idle this long (s); 0 = never"),
    Option("statsd_max_keys", 500000, int_range(0, None), "cap on live StatsD keys; 0 = no cap"),
    Option("statsd_percentile_thresholds", (90,), percentiles,
        "timer percentiles (negative = top)"),
    Option("statsd_timer_mean", True, boolean, "emit timer mean"),
    Option("statsd_timer_upper", True, boolean, "emit timer upper"),
    Option("statsd_timer_lower", True, boolean, "emit timer lower"),
    Option("statsd_timer_count", True, boolean, "emit timer count"),
    Option("statsd_timer_count_ps", True, boolean, "emit timer count_ps"),
    Option("statsd_timer_sum", True, boolean, "emit timer sum"),
    Option("statsd_timer_sum_squares", True, boolean, "emit timer sum_squares"),
    Option("statsd_timer_median", True, boolean, "emit timer median"),
    Option("statsd_timer_std", True, boolean, "emit timer std"),
    Option("statsd_histogram", (), histogram_bins,
        "histogram bins, as the reference's `histogram`"),
    Option("statsd_tags", "drop", one_of("graphite", "drop"),
       "drop: tags left out, a name's tag sets summed (Bucky 2); graphite: name;k=v series"),
    Option("statsd_tcp_port", None, optional(port), "StatsD TCP port (off when None)"),
    Option("statsd_tcp_max_connections", 250, int_range(1, 100000), "concurrent TCP clients"),
    Option("statsd_max_line_length", 65536, int_range(64, 16 * 1024 * 1024), "longest TCP line"),
    Option("statsd_workers", 1, int_range(1, 64), "StatsD aggregator processes"),
    Option("statsd_forward", (), statsd_nodes,
       'proxy mode: forward lines to these "host:port[:adminport]" nodes, not aggregate'),
    Option("statsd_forward_packet_size", 1432, int_range(64, 65507), "largest forwarded datagram"),
    Option("statsd_forward_check_interval", 10.0, float_min(0, False),
       "seconds between health checks of forward nodes with an adminport"),
    Option("statsd_admin_port", None, optional(port), "StatsD management TCP port (off when None)"),
    Option("statsd_admin_ip", "127.0.0.1", address, "StatsD management listen address"),
    # carbon input (Graphite plaintext and pickle, as carbon-relay receives them)
    Option("carbon_enabled", False, boolean, "run the carbon input (Graphite lines and pickle)"),
    Option("carbon_ip", "127.0.0.1", address, "carbon input listen address"),
    Option("carbon_line_port", 2013, port, "carbon input plaintext port, TCP and UDP"),
    Option("carbon_pickle_port", 2014, port, "carbon input pickle port, TCP"),
    Option("carbon_idle_timeout", 120.0, optional(float_min(0, False)),
           "close a carbon TCP client that completes no line or frame for this long (s); "
           "None: never"),
    # graphite
    Option("graphite_enabled", True, boolean, "send to Graphite"),
    Option("graphite_ip", "127.0.0.1", address, "carbon host (name, IPv4 or IPv6)"),
    Option("graphite_port", 2003, port, "carbon port (2004 for pickle)"),
    Option("graphite_max_reconnects", 60, int_range(None, None),
       "connection attempts per outage before buffered points are dropped; negative = forever"),
    Option("graphite_reconnect_delay", 1.0, float_min(0), "first reconnect delay (s)"),
    Option("graphite_backoff_factor", 1.5, float_min(1), "delay multiplier per failed attempt"),
    Option("graphite_backoff_max", 60.0, float_min(0), "longest reconnect delay (s)"),
    Option("graphite_pickle_enabled", False, boolean, "use the pickle protocol"),
    Option("graphite_pickle_buffer_size", 500, int_range(1, 100000), "points per pickle message"),
    Option("graphite_buffer_size", 1000000, int_range(1, None),
       "datapoints kept while carbon is unreachable; oldest dropped beyond"),
    Option("graphite_destinations", (), destinations,
       "carbons as 'host:port[:instance]' ([::1]:2004:a); empty = graphite_ip:graphite_port"),
    Option("graphite_relay_method", "consistent-hashing", one_of(*placement.METHODS),
       "which destination(s) get a metric: consistent-hashing, fast-hashing, jump-hashing, "
       "broadcast"),
    Option("graphite_hash_type", None, optional(one_of(*placement.ALL_HASH_TYPES)),
       "carbon_ch, fnv1a_ch, mmh3_ch or jump_fnv1a_ch; None = the method's default"),
    Option("graphite_replication_factor", 1, int_range(1, None),
       "destinations per metric (carbon's REPLICATION_FACTOR)"),
    Option("graphite_diverse_replicas", False, boolean,
       "replicas on different hosts only (carbon's DIVERSE_REPLICAS)"),
    Option("graphite_spool_dir", None, optional(nonempty_text),
       "disk spool root, one subdirectory per destination (None: <directory>/spool)"),
    Option("graphite_spool_max_bytes", 1 << 30, int_range(0, None),
       "disk spool bound per destination in bytes; 0 = no spool (memory only)"),
    Option("graphite_spool_sync_interval", 1.0, float_min(0.01),
       "seconds between fsyncs of the spool (the most a crash can lose)"),
    # influxdb (Bucky 2)
    Option("influxdb_enabled", False, boolean, "send InfluxDB line protocol over UDP"),
    Option("influxdb_hosts", ("127.0.0.1:8089",), text_list, "host:port destinations"),
)
OPTION_BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}


@typing.dataclass_transform()
def _option_fields(cls: type[_T]) -> type[_T]:
    """A frozen dataclass whose defaults come from OPTIONS; each field's declared type must be
    its checker's return type, so the class and the table cannot drift apart. Fields that are
    not options (where the value came from) follow them and carry their own defaults."""
    hints = typing.get_type_hints(cls)
    declared = [name for name in hints if not hasattr(cls, name)]  # fields beyond: a default
    if declared != [o.name for o in OPTIONS]:
        missing = [f"{o.name}: {field_type(o.check)}" for o in OPTIONS if o.name not in hints]
        extra = [name for name in declared if name not in OPTION_BY_NAME]
        raise TypeError(f"class Config must declare every option, without a default, in the "
                        f"table's order; missing {missing}, not options {extra}")
    for opt in OPTIONS:
        if hints[opt.name] != field_type(opt.check):
            raise TypeError(f"Config.{opt.name} is declared {hints[opt.name]}, its checker "
                            f"returns {field_type(opt.check)}")
        setattr(cls, opt.name, opt.default)
    return dataclasses.dataclass(frozen=True)(cls)


@_option_fields
class Config:
    """The validated configuration: one attribute per option (the table above gives each one's
    default and checker), immutable, picklable. Add a field here with each new option."""

    # general
    debug: bool
    log_level: str
    log_timestamps: str | bool
    nice: int | None
    uid: int | None
    gid: int | None
    directory: str
    process_join_timeout: float
    max_sample_queue: int
    full_trace: bool
    custom_clients: tuple[type, ...]
    processor: Callable | None
    processor_drop_on_error: bool
    self_metrics_interval: float
    self_metrics_prefix: str
    # http status server
    http_enabled: bool
    http_ip: str
    http_port: int
    http_history_seconds: float
    http_degraded_status: int
    # sentry
    sentry_enabled: bool
    sentry_dsn: str | None
    sentry_log_level: str
    sentry_auto_log_stacks: bool
    # names
    name_prefix: str | None
    name_prefix_parts: tuple[str, ...] | None
    name_postfix: str | None
    name_postfix_parts: tuple[str, ...] | None
    name_replace_char: str | None
    name_strip_duplicates: bool
    name_host_trim: tuple[str, ...]
    # metricsd
    metricsd_ip: str
    metricsd_port: int
    metricsd_enabled: bool
    metricsd_default_interval: float
    metricsd_handlers: tuple[tuple[re.Pattern, float, int], ...]
    metricsd_max_metrics: int
    metricsd_expire_intervals: float
    # collectd
    collectd_ip: str
    collectd_port: int
    collectd_enabled: bool
    collectd_types: tuple[str, ...]
    collectd_converters: FrozenDict | tuple[Callable, ...]
    collectd_use_entry_points: bool
    collectd_counter_eq_derive: bool
    collectd_workers: int
    collectd_security_level: int
    collectd_auth_file: str | None
    collectd_series_ttl_intervals: int
    collectd_python_config: str | None
    # statsd
    statsd_ip: str
    statsd_port: int
    statsd_enabled: bool
    statsd_flush_time: float
    statsd_metadata: FrozenDict
    statsd_legacy_namespace: bool
    statsd_global_prefix: str | None
    statsd_prefix_counter: str | None
    statsd_prefix_timer: str | None
    statsd_prefix_set: str | None
    statsd_prefix_gauge: str | None
    statsd_prefix_stats: str | None
    statsd_persistent_gauges: bool
    statsd_gauges_savefile: str
    statsd_gauges_save_interval: float
    statsd_delete_idlestats: bool
    statsd_delete_counters: bool
    statsd_delete_timers: bool
    statsd_delete_sets: bool
    statsd_onlychanged_gauges: bool
    statsd_gauges_max_ttl: float
    statsd_max_keys: int
    statsd_percentile_thresholds: tuple[float, ...]
    statsd_timer_mean: bool
    statsd_timer_upper: bool
    statsd_timer_lower: bool
    statsd_timer_count: bool
    statsd_timer_count_ps: bool
    statsd_timer_sum: bool
    statsd_timer_sum_squares: bool
    statsd_timer_median: bool
    statsd_timer_std: bool
    statsd_histogram: tuple[tuple[str, tuple[float, ...]], ...]
    statsd_tags: str
    statsd_tcp_port: int | None
    statsd_tcp_max_connections: int
    statsd_max_line_length: int
    statsd_workers: int
    statsd_forward: tuple[tuple[str, int, int | None], ...]
    statsd_forward_packet_size: int
    statsd_forward_check_interval: float
    statsd_admin_port: int | None
    statsd_admin_ip: str
    # carbon input
    carbon_enabled: bool
    carbon_ip: str
    carbon_line_port: int
    carbon_pickle_port: int
    carbon_idle_timeout: float | None
    # graphite
    graphite_enabled: bool
    graphite_ip: str
    graphite_port: int
    graphite_max_reconnects: int
    graphite_reconnect_delay: float
    graphite_backoff_factor: float
    graphite_backoff_max: float
    graphite_pickle_enabled: bool
    graphite_pickle_buffer_size: int
    graphite_buffer_size: int
    graphite_destinations: tuple[placement.Destination, ...]
    graphite_relay_method: str
    graphite_hash_type: str | None
    graphite_replication_factor: int
    graphite_diverse_replicas: bool
    graphite_spool_dir: str | None
    graphite_spool_max_bytes: int
    graphite_spool_sync_interval: float
    # influxdb
    influxdb_enabled: bool
    influxdb_hosts: tuple[str, ...]
    source: str = "<defaults>"  # the config file (or "<defaults>", "<overrides>")
    # the options the config file or the command line set (a default port that is taken is only
    # a warning for the status server; one the operator chose is an error)
    given: frozenset[str] = frozenset()


def _cross_checks(values: dict[str, Any]) -> list[tuple[str, str]]:
    """Rules between options: (option, message) pairs."""
    problems = []
    if values["collectd_enabled"] and values["collectd_security_level"] > 0 and not values[
        "collectd_auth_file"
    ]:
        problems.append(("collectd_security_level",
                         "Sign/Encrypt needs collectd_auth_file to be set"))
    if values["carbon_enabled"] and values["carbon_line_port"] == values["carbon_pickle_port"]:
        problems.append(("carbon_pickle_port", "expected a port other than carbon_line_port"))
    if values["graphite_backoff_max"] < values["graphite_reconnect_delay"]:
        problems.append(("graphite_backoff_max",
                         "expected a number >= graphite_reconnect_delay"))
    if values["graphite_enabled"]:
        # graphite_destinations' own checker already refused bad strings and duplicates
        effective = placement.effective_destinations(
            values["graphite_destinations"], values["graphite_ip"], values["graphite_port"])
        problems += placement.check_plan(
            effective, values["graphite_relay_method"], values["graphite_hash_type"],
            values["graphite_replication_factor"], values["graphite_diverse_replicas"])
    if values["sentry_enabled"]:
        try:
            importlib.import_module("sentry_sdk")
        except ImportError:
            problems.append(("sentry_enabled", "needs the sentry-sdk package"))
        if not values["sentry_dsn"]:
            problems.append(("sentry_dsn", "expected a DSN when sentry_enabled is True"))
    return problems


def option_error(cfg: Config, option: str, exc: BaseException | str) -> ConfigError:
    """A component check's finding as the one line every config error is:
    "<config file>: <option>: <what is wrong>"."""
    message = str(exc)
    for lead in (f"{option}: ", f"{option} "):  # messages that already name the option
        if message.startswith(lead):
            message = message[len(lead):]
    return ConfigError(f"{cfg.source}: {option}: {message}")


def _short_repr(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def validate(raw: Mapping[str, Any], source: str = "<defaults>", *,
             origins: Mapping[str, str] | None = None) -> Config:
    """Check every option; returns a Config or raises ConfigError for the first problem.

    `origins` maps an option name to where its value came from (a file or "command line")."""
    origins = origins or {}
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        given = raw.get(opt.name, opt.default)
        try:
            values[opt.name] = opt.check(given)
        except Invalid as exc:
            where = origins.get(opt.name, source)
            raise ConfigError(f"{where}: {opt.name}: {exc}, got {_short_repr(given)}") from None
    for name, message in _cross_checks(values):
        raise ConfigError(f"{origins.get(name, source)}: {name}: {message}")
    return Config(source=source, given=frozenset(n for n in raw if n in OPTION_BY_NAME),
                  **values)


def make_config(**overrides: Any) -> Config:
    """A validated Config from the defaults and keyword overrides (tests, embedding)."""
    unknown = set(overrides) - set(OPTION_BY_NAME)
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
    return validate(overrides, "<overrides>")


def read_file(path: str, full_trace: bool = False) -> tuple[dict[str, Any], list[str]]:
    """Execute a Python config file; returns (its option values, warnings)."""
    try:
        with open(path, "rb") as fh:
            source_bytes = fh.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    module = types.ModuleType("bucky_userconfig")
    module.__file__ = path
    # Registered so functions defined in the file (processor, converters) can be pickled by name.
    sys.modules["bucky_userconfig"] = module
    try:
        code = compile(source_bytes, path, "exec")
        exec(code, module.__dict__)
    except SyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: {exc.msg}") from None
    except BaseException as exc:  # the file is arbitrary code: anything can happen
        if isinstance(exc, KeyboardInterrupt):
            raise
        line = "?"
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename == path:
                line = str(frame.lineno)
        message = f"{path}:{line}: {exc.__class__.__name__}: {exc}"
        if full_trace:
            message += "\n" + "".join(traceback.format_exception(exc)).rstrip()
        raise ConfigError(message) from None
    values, warnings = {}, []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if name in OPTION_BY_NAME:
            values[name] = value
        elif not isinstance(value, (types.ModuleType, types.FunctionType, type)):
            meant = near_miss(name)
            if meant:
                raise ConfigError(f"{path}: {name}: unknown option (did you mean {meant!r}? "
                                  f"a name of your own must start with '_')")
            close = difflib.get_close_matches(name, OPTION_BY_NAME, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            warnings.append(f"{path}: unknown option {name!r} ignored{hint}")
    return values, warnings


def near_miss(name: str) -> str | None:
    """The option `name` is a typo of, or None. A typo is at most one edit (a letter missing,
    added, changed, or two swapped) from an option of 4-7 letters, two from a longer one: close
    enough that the operator surely meant that option, which would otherwise silently keep its
    default. Other unknown names are the config file's own variables (it is Python)."""
    best: tuple[int, str] | None = None
    for option in OPTION_BY_NAME:
        allowed = 2 if len(option) >= 8 else 1 if len(option) >= 4 else 0
        if allowed and abs(len(option) - len(name)) <= allowed:
            distance = _edit_distance(name, option, allowed)
            if distance <= allowed and (best is None or distance < best[0]):
                best = (distance, option)
    return best[1] if best else None


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (Levenshtein plus swaps of neighbours), or limit + 1
    once it is surely above `limit`."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], previous2[j - 2] + 1)
        if min(row) > limit:
            return limit + 1
        previous2, previous = previous, row
    return previous[-1]


def load(path: str | None, cli_overrides: Mapping[str, Any] | None = None,
         full_trace: bool = False) -> tuple[Config, list[str]]:
    """defaults < config file < command line; returns (Config, warnings)."""
    raw: dict[str, Any] = {}
    origins: dict[str, str] = {}
    warnings: list[str] = []
    if path is not None:
        file_values, warnings = read_file(path, full_trace=full_trace)
        raw.update(file_values)
        origins.update({k: path for k in file_values})
    for name, value in (cli_overrides or {}).items():
        raw[name] = value
        origins[name] = "command line"
    return validate(raw, path or "<defaults>", origins=origins), warnings
