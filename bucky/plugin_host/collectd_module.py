"""The `collectd` module that collectd Python plugins import (collectd-python(5)), backed by Bucky.

`build_module(runtime)` makes one module object for one plugin host, which installs it as
`sys.modules["collectd"]` before importing the plugins. Everything a plugin can reach is here;
everything that needs the daemon (types.db, dispatching, callbacks, logging) goes through the
`Runtime` the host passes in. Behaviour follows collectd 5.12's python plugin (python.c,
pyvalues.c, pyconfig.c) and was checked against it:

- `register_*(callback[, data][, name])` returns "python.<name>" or "python.<callback.__module__>";
  `data` is passed back to the callback only when it was given (None included). `register_read`
  takes `interval` second. `unregister_*` takes that identifier (as is) or the callback; an unknown
  one is a RuntimeError.
- Values/Notification string members take str or bytes (decoded with the Encoding option), end at
  a NUL and are cut to 127 bytes (a message to 255). `type` must name a types.db data set
  (TypeError). `dispatch` needs a type (RuntimeError), one value per data source (RuntimeError),
  each accepted by float() for a gauge or int() otherwise (range-checked: OverflowError). An empty
  plugin becomes "python"; an empty host, time 0 and interval <= 0 are filled by the host
  (hostname, now, the current read callback's or the default interval).
- `meta` is a dict with str keys; it is stored as collectd stores it (bool, float, Signed,
  Unsigned, str), which is what write and notification callbacks receive.
- Deviations: `Values.write`'s destination may be omitted (as documented; 5.12 requires it);
  `debug` logs at DEBUG level (compiled out of release collectd builds); Config's repr is
  readable; each value is converted by its own data source's type (5.12 uses the first one's).
"""

from __future__ import annotations

import numbers
import operator
import sys
import types
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from bucky.plugin_host.confparse import ConfNode
from bucky.protocol.collectd_records import (
    ABSOLUTE,
    COUNTER,
    DERIVE,
    DS_TYPE_NAMES,
    GAUGE,
    ValueList,
)
from bucky.protocol.collectd_records import (
    Notification as NotificationRecord,
)

LOG_ERROR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG = 3, 4, 5, 6, 7
NOTIF_FAILURE, NOTIF_WARNING, NOTIF_OKAY = 1, 2, 4
NAME_LIMIT = 127  # DATA_MAX_NAME_LEN - 1 bytes
MESSAGE_LIMIT = 255  # NOTIF_MAX_MSG_LEN - 1 bytes
CALLBACK_KINDS = ("config", "init", "read", "write", "flush", "log", "notification", "shutdown")


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NO_DATA: Any = _Marker("NO_DATA")  # register_*(data=...) not given: the callback gets no data
_UNSET: Any = _Marker("UNSET")  # an optional argument not given


class Runtime(Protocol):
    """What the module needs from the plugin host."""

    encoding: str

    def dataset(self, type_name: str) -> Any | None: ...  # a typesdb DataSet

    def dispatch_values(self, record: ValueList, meta: dict[str, object]) -> None: ...

    def write_values(self, record: ValueList, meta: dict[str, object],
                     destination: str) -> None: ...

    def dispatch_notification(self, record: NotificationRecord,
                              meta: dict[str, object]) -> None: ...

    def register(self, kind: str, callback: Callable[..., object], data: object, name: str,
                 interval: float) -> None: ...

    def unregister(self, kind: str, name: str) -> bool: ...

    def flush(self, plugin: str | None, timeout: int, identifier: str | None) -> None: ...

    def log(self, severity: int, message: str, module: str) -> None: ...


# --- plain types ----------------------------------------------------------------------------------


class CollectdError(Exception):
    """Basic exception for collectd Python scripts.

    Raising it logs a warning without a stack trace, even with LogTraces enabled."""

    __module__ = "collectd"


class Signed(int):
    """An int stored as a signed 64-bit integer in meta data."""

    __module__ = "collectd"


class Unsigned(int):
    """An int stored as an unsigned 64-bit integer in meta data."""

    __module__ = "collectd"


class Config:
    """A piece of collectd's config file, as passed to config callbacks.

    `key` is the first word of a line, `values` a tuple of str, float and bool, `children` a
    tuple of Config for a block, `parent` None on the root node."""

    __module__ = "collectd"

    def __init__(self, key: str | bytes, parent: Config | None = None, values: Any = (),
                 children: Any = ()) -> None:
        if not isinstance(key, (str, bytes)):
            raise TypeError("argument 1 must be str")
        self.key = key
        self.parent = parent
        self.values = values
        self.children = children

    def __repr__(self) -> str:
        where = "root node" if self.parent is None else "node"
        return f"<collectd.Config {where} {self.key!r}>"

    @classmethod
    def from_node(cls, node: ConfNode, parent: Config | None = None) -> Config:
        """The Config tree collectd builds for a parsed statement (its root has no parent)."""
        config = cls(node.key, parent, tuple(node.values))
        config.children = tuple(cls.from_node(child, config) for child in node.children)
        return config


# --- helpers --------------------------------------------------------------------------------------


def _text(value: object, encoding: str, limit: int = NAME_LIMIT) -> str:
    """A string as collectd would keep it: str or bytes, up to the first NUL, `limit` bytes."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode(encoding, "replace")
    else:
        raise TypeError(f"expected str or bytes, {type(value).__name__} found")
    text = text.split("\0", 1)[0]
    raw = text.encode("utf-8", "surrogatepass")
    return raw[:limit].decode("utf-8", "ignore") if len(raw) > limit else text


def _real(value: object) -> float:
    if isinstance(value, (str, bytes)) or not hasattr(type(value), "__float__"):
        raise TypeError(f"must be real number, not {type(value).__name__}")
    return float(value)  # type: ignore[arg-type]


_INT_RANGES = {
    COUNTER: (0, 2**64 - 1),
    ABSOLUTE: (0, 2**64 - 1),
    DERIVE: (-(2**63), 2**63 - 1),
}


def _convert_value(ds_type: int, value: Any) -> int | float:
    if ds_type == GAUGE:
        return float(value)
    number = int(value)
    low, high = _INT_RANGES[ds_type]
    if number < low:
        raise OverflowError("can't convert negative int to unsigned")
    if number > high:
        raise OverflowError("int too big to convert")
    return number


def stored_meta(meta: object, encoding: str = "utf-8") -> dict[str, object]:
    """The meta data collectd keeps for a dict given by a plugin (what callbacks then see)."""
    if not isinstance(meta, dict):
        return {}
    stored: dict[str, object] = {}
    for key, value in meta.items():
        if isinstance(key, (bytes, bytearray)):
            key = bytes(key).decode(encoding, "replace")
        if not isinstance(key, str):
            continue
        if value is True or value is False:
            stored[key] = value
        elif isinstance(value, float):
            stored[key] = value
        elif isinstance(value, Signed):
            if -(2**63) <= value < 2**63:
                stored[key] = Signed(value)
        elif isinstance(value, Unsigned):
            if 0 <= value < 2**64:
                stored[key] = Unsigned(value)
        elif isinstance(value, numbers.Number):
            try:
                number = int(value)  # type: ignore[call-overload]
            except (TypeError, ValueError, OverflowError):
                continue
            if -(2**63) <= number < 2**63:
                stored[key] = Signed(number)
            elif 0 <= number < 2**64:
                stored[key] = Unsigned(number)
        elif isinstance(value, (bytes, bytearray)):
            stored[key] = bytes(value).decode(encoding, "replace")
        else:
            stored[key] = str(value)
    return stored


def _pick(given: object, current: object) -> Any:
    return current if given is _UNSET else given


# --- descriptors for the members of Values and Notification -------------------------------------


class _TextMember:
    """A str member: set from str or bytes, NUL-terminated, length-limited, never deleted."""

    def __init__(self, limit: int = NAME_LIMIT, names_dataset: bool = False) -> None:
        self._limit = limit
        self._names_dataset = names_dataset
        self._slot = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = "_" + name

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(obj, self._slot)

    def __set__(self, obj: PluginData, value: object) -> None:
        text = _text(value, obj._runtime.encoding, self._limit)
        if self._names_dataset and obj._runtime.dataset(text) is None:
            raise TypeError(f"Dataset {text} not found")
        setattr(obj, self._slot, text)

    def __delete__(self, obj: object) -> None:
        raise TypeError("Cannot delete this attribute")


class _RealMember:
    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = "_" + name

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        return self if obj is None else getattr(obj, self._slot)

    def __set__(self, obj: object, value: object) -> None:
        setattr(obj, self._slot, _real(value))

    def __delete__(self, obj: object) -> None:
        raise TypeError("Cannot delete this attribute")


class _IntMember(_RealMember):
    def __set__(self, obj: object, value: object) -> None:
        setattr(obj, self._slot, operator.index(value))  # type: ignore[arg-type]


# --- Values and Notification ---------------------------------------------------------------------


class PluginData:
    """Identifies the source of a value list or notification (not exported, as in collectd)."""

    __module__ = "collectd"
    _runtime: ClassVar[Runtime]  # set on the classes build_module() exports

    host = _TextMember()
    plugin = _TextMember()
    plugin_instance = _TextMember()
    type = _TextMember(names_dataset=True)
    type_instance = _TextMember()
    time = _RealMember()

    def _set_identity(self, type: Any, plugin_instance: Any, type_instance: Any, plugin: Any,
                      host: Any, time: Any) -> None:
        encoding = self._runtime.encoding
        type_name = _text(type, encoding)
        if type_name and self._runtime.dataset(type_name) is None:
            raise TypeError(f"Dataset {type_name} not found")
        self._type = type_name
        self.plugin_instance = plugin_instance
        self.type_instance = type_instance
        self.plugin = plugin
        self.host = host
        self.time = time

    def _dataset_for(self, type_name: str) -> Any:
        if not type_name:
            raise RuntimeError("type not set")
        dataset = self._runtime.dataset(type_name)
        if dataset is None:
            raise TypeError(f"Dataset {type_name} not found")
        return dataset

    def _repr_fields(self) -> list[str]:
        fields = [f"type={self.type!r}"]
        for name in ("type_instance", "plugin", "plugin_instance", "host"):
            if getattr(self, name):
                fields.append(f"{name}={getattr(self, name)!r}")
        if self.time != 0:
            fields.append(f"time={self.time!r}")
        return fields

    def _class_name(self) -> str:
        cls = type(self)
        return f"collectd.{cls.__name__}" if cls.__module__ == "collectd" else cls.__name__


class Values(PluginData):
    """A value list: dispatched by read callbacks, received by write callbacks."""

    __module__ = "collectd"
    interval = _RealMember()

    def __init__(self, type: Any = "", values: Any = _UNSET, plugin_instance: Any = "",
                 type_instance: Any = "", plugin: Any = "", host: Any = "", time: Any = 0.0,
                 interval: Any = 0.0, meta: Any = _UNSET) -> None:
        self._set_identity(type, plugin_instance, type_instance, plugin, host, time)
        self.interval = interval
        self.values = [] if values is _UNSET else values
        self.meta = {} if meta is _UNSET else meta

    def dispatch(self, type: Any = _UNSET, values: Any = _UNSET, plugin_instance: Any = _UNSET,
                 type_instance: Any = _UNSET, plugin: Any = _UNSET, host: Any = _UNSET,
                 time: Any = _UNSET, interval: Any = _UNSET, meta: Any = _UNSET) -> None:
        """Dispatch to Bucky (rates, names, outputs) and to every write callback; arguments
        override the members for this call only."""
        record, stored = self._record(type, values, plugin_instance, type_instance, plugin, host,
                                      time, interval, meta)
        self._runtime.dispatch_values(record, stored)

    def write(self, destination: Any = _UNSET, type: Any = _UNSET, values: Any = _UNSET,
              plugin_instance: Any = _UNSET, type_instance: Any = _UNSET, plugin: Any = _UNSET,
              host: Any = _UNSET, time: Any = _UNSET, interval: Any = _UNSET,
              meta: Any = _UNSET) -> None:
        """Like dispatch; with a destination ("python.<name>"), only to that write callback."""
        record, stored = self._record(type, values, plugin_instance, type_instance, plugin, host,
                                      time, interval, meta)
        if destination is _UNSET or destination is None:
            self._runtime.dispatch_values(record, stored)
        else:
            self._runtime.write_values(record, stored,
                                       _text(destination, self._runtime.encoding, 511))

    def _record(self, type: Any, values: Any, plugin_instance: Any, type_instance: Any,
                plugin: Any, host: Any, time: Any, interval: Any,
                meta: Any) -> tuple[ValueList, dict[str, object]]:
        encoding = self._runtime.encoding
        type_name = _text(_pick(type, self.type), encoding)
        dataset = self._dataset_for(type_name)
        values = _pick(values, getattr(self, "values", None))
        if not isinstance(values, (list, tuple)):
            raise TypeError("values must be list or tuple")
        meta = _pick(meta, getattr(self, "meta", None))
        if meta is not None and not isinstance(meta, dict):
            raise TypeError("meta must be a dict")
        sources = dataset.sources
        if len(values) != len(sources):
            raise RuntimeError(f"type {type_name} needs {len(sources)} values, got {len(values)}")
        converted = tuple((source.ds_type, _convert_value(source.ds_type, value))
                          for source, value in zip(sources, values, strict=True))
        record = ValueList(
            host=_text(_pick(host, self.host), encoding),
            plugin=_text(_pick(plugin, self.plugin), encoding) or "python",
            plugin_instance=_text(_pick(plugin_instance, self.plugin_instance), encoding),
            type=type_name,
            type_instance=_text(_pick(type_instance, self.type_instance), encoding),
            time=_real(_pick(time, self.time)),
            interval=_real(_pick(interval, self.interval)),
            values=converted,
        )
        return record, stored_meta(meta, encoding)

    @classmethod
    def from_record(cls, record: ValueList, meta: dict[str, object] | None = None) -> Values:
        """What a write callback receives for a value list (no types.db check: it passed one)."""
        values = cls.__new__(cls)
        values._type = record.type
        values._host, values._plugin = record.host, record.plugin
        values._plugin_instance = record.plugin_instance
        values._type_instance = record.type_instance
        values._time, values._interval = float(record.time), float(record.interval)
        values.values = [float(v) if t == GAUGE else int(v) for t, v in record.values]
        values.meta = dict(meta or {})
        return values

    def __repr__(self) -> str:
        fields = self._repr_fields()
        if self.interval != 0:
            fields.append(f"interval={self.interval!r}")
        values = getattr(self, "values", None)
        if values is not None and (not isinstance(values, list) or values):
            fields.append(f"values={values!r}")
        meta = getattr(self, "meta", None)
        if meta is not None and (not isinstance(meta, dict) or meta):
            fields.append(f"meta={meta!r}")
        return f"{self._class_name()}({','.join(fields)})"


class Notification(PluginData):
    """A status message about a data instance: severity NOTIF_FAILURE, _WARNING or _OKAY."""

    __module__ = "collectd"
    message = _TextMember(limit=MESSAGE_LIMIT)
    severity = _IntMember()

    def __init__(self, type: Any = "", message: Any = "", plugin_instance: Any = "",
                 type_instance: Any = "", plugin: Any = "", host: Any = "", time: Any = 0.0,
                 severity: Any = 0, meta: Any = _UNSET) -> None:
        self._set_identity(type, plugin_instance, type_instance, plugin, host, time)
        self.message = message
        self.severity = severity
        self.meta = {} if meta is _UNSET else meta

    def dispatch(self, type: Any = _UNSET, message: Any = _UNSET, plugin_instance: Any = _UNSET,
                 type_instance: Any = _UNSET, plugin: Any = _UNSET, host: Any = _UNSET,
                 time: Any = _UNSET, severity: Any = _UNSET, meta: Any = _UNSET) -> None:
        """Dispatch to Bucky's outputs and to every notification callback."""
        encoding = self._runtime.encoding
        type_name = _text(_pick(type, self.type), encoding)
        self._dataset_for(type_name)
        meta = _pick(meta, getattr(self, "meta", None))
        if meta is not None and not isinstance(meta, dict):
            raise TypeError("meta must be a dict")
        record = NotificationRecord(
            host=_text(_pick(host, self.host), encoding),
            plugin=_text(_pick(plugin, self.plugin), encoding) or "python",
            plugin_instance=_text(_pick(plugin_instance, self.plugin_instance), encoding),
            type=type_name,
            type_instance=_text(_pick(type_instance, self.type_instance), encoding),
            time=_real(_pick(time, self.time)),
            severity=operator.index(_pick(severity, self.severity)),
            message=_text(_pick(message, self.message), encoding, MESSAGE_LIMIT),
        )
        self._runtime.dispatch_notification(record, stored_meta(meta, encoding))

    @classmethod
    def from_record(cls, record: NotificationRecord,
                    meta: dict[str, object] | None = None) -> Notification:
        """What a notification callback receives."""
        notification = cls.__new__(cls)
        notification._type = record.type
        notification._host, notification._plugin = record.host, record.plugin
        notification._plugin_instance = record.plugin_instance
        notification._type_instance = record.type_instance
        notification._time = float(record.time)
        notification._message, notification._severity = record.message, int(record.severity)
        notification.meta = dict(meta or {})
        return notification

    def __repr__(self) -> str:
        fields = self._repr_fields()
        if self.severity != 0:
            fields.append(f"severity={self.severity!r}")
        if self.message:
            fields.append(f"message={self.message!r}")
        meta = getattr(self, "meta", None)
        if meta is not None and (not isinstance(meta, dict) or meta):
            fields.append(f"meta={meta!r}")
        return f"{self._class_name()}({','.join(fields)})"


# --- module functions -----------------------------------------------------------------------------


def callback_name(callback: object, name: object = None, encoding: str = "utf-8") -> str:
    """collectd's identifier for a callback: python.<name>, else python.<its __module__>."""
    if name is not None:
        return "python." + _text(name, encoding, 500)
    module = getattr(callback, "__module__", None)
    if isinstance(module, str):
        return "python." + module
    return f"python.{id(callback):#x}"


def _caller_module(depth: int = 2) -> str:
    try:
        return str(sys._getframe(depth).f_globals.get("__name__", "?"))
    except ValueError:
        return "?"


class _Api:
    """The module-level functions, bound to one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def _register(self, kind: str, callback: Any, data: Any, name: Any,
                  interval: float = 0.0) -> str:
        if not callable(callback):
            raise TypeError("callback needs a be a callable object.")
        full_name = callback_name(callback, name, self._runtime.encoding)
        self._runtime.register(kind, callback, data, full_name, interval)
        return full_name

    def _unregister(self, kind: str, identifier: Any) -> None:
        if isinstance(identifier, (str, bytes, bytearray)):
            name = _text(identifier, self._runtime.encoding, 511)
        elif callable(identifier):
            name = callback_name(identifier)
        else:
            raise TypeError("This function needs a string or a callable object as its only "
                            "parameter.")
        if not self._runtime.unregister(kind, name):
            raise RuntimeError(f"Unable to unregister {kind} callback '{name}'.")

    def register_config(self, callback: Any, data: Any = NO_DATA, name: Any = None) -> str:
        """register_config(callback[, data][, name]) -> identifier: gets each matching
        <Module> block as a Config."""
        return self._register("config", callback, data, name)

    def register_init(self, callback: Any, data: Any = NO_DATA, name: Any = None) -> str:
        """register_init(callback[, data][, name]) -> identifier: called once after config."""
        return self._register("init", callback, data, name)

    def register_read(self, callback: Any, interval: Any = 0.0, data: Any = NO_DATA,
                      name: Any = None) -> str:
        """register_read(callback[, interval][, data][, name]) -> identifier: called every
        `interval` seconds (default: the Interval option), skipped longer after each failure."""
        return self._register("read", callback, data, name, _real(interval))

    def register_write(self, callback: Any, data: Any = NO_DATA, name: Any = None) -> str:
        """register_write(callback[, data][, name]) -> identifier: gets every value list."""
        return self._register("write", callback, data, name)

    def register_flush(self, callback: Any, data: Any = NO_DATA, name: Any = None) -> str:
        """register_flush(callback[, data][, name]) -> identifier: callback(timeout, id)."""
        return self._register("flush", callback, data, name)

    def register_log(self, callback: Any, data: Any = NO_DATA, name: Any = None) -> str:
        """register_log(callback[, data][, name]) -> identifier: callback(severity, message)."""
        return self._register("log", callback, data, name)

    def register_notification(self, callback: Any, data: Any = NO_DATA, name: Any = None) -> str:
        """register_notification(callback[, data][, name]) -> identifier: gets every
        notification."""
        return self._register("notification", callback, data, name)

    def register_shutdown(self, callback: Any, data: Any = NO_DATA, name: Any = None) -> str:
        """register_shutdown(callback[, data][, name]) -> identifier: called once at exit."""
        return self._register("shutdown", callback, data, name)

    def unregister_config(self, identifier: Any) -> None:
        self._unregister("config", identifier)

    def unregister_init(self, identifier: Any) -> None:
        self._unregister("init", identifier)

    def unregister_read(self, identifier: Any) -> None:
        self._unregister("read", identifier)

    def unregister_write(self, identifier: Any) -> None:
        self._unregister("write", identifier)

    def unregister_flush(self, identifier: Any) -> None:
        self._unregister("flush", identifier)

    def unregister_log(self, identifier: Any) -> None:
        self._unregister("log", identifier)

    def unregister_notification(self, identifier: Any) -> None:
        self._unregister("notification", identifier)

    def unregister_shutdown(self, identifier: Any) -> None:
        self._unregister("shutdown", identifier)

    def flush(self, plugin: Any = None, timeout: Any = -1, identifier: Any = None) -> None:
        """flush([plugin][, timeout][, identifier]): run the flush callbacks (of one plugin)."""
        encoding = self._runtime.encoding
        self._runtime.flush(
            None if plugin is None else _text(plugin, encoding, 511),
            operator.index(timeout),
            None if identifier is None else _text(identifier, encoding, 511),
        )

    def get_dataset(self, name: Any) -> list[tuple[str, str, float | None, float | None]]:
        """get_dataset(name) -> [(source name, DS_TYPE_*, min or None, max or None), ...]."""
        type_name = _text(name, self._runtime.encoding)
        dataset = self._runtime.dataset(type_name)
        if dataset is None:
            raise TypeError(f"Dataset {type_name} not found")
        return [(source.name, DS_TYPE_NAMES[source.ds_type], _bound(source.min),
                 _bound(source.max)) for source in dataset.sources]

    def _log(self, severity: int, message: Any) -> None:
        if not isinstance(message, (str, bytes, bytearray)):
            raise TypeError("argument 1 must be str, bytes or bytearray, "
                            f"not {type(message).__name__}")
        text = _text(message, self._runtime.encoding, 1 << 20)
        self._runtime.log(severity, text, _caller_module(3))

    def error(self, message: Any) -> None:
        """Log a message at LOG_ERROR."""
        self._log(LOG_ERROR, message)

    def warning(self, message: Any) -> None:
        """Log a message at LOG_WARNING."""
        self._log(LOG_WARNING, message)

    def notice(self, message: Any) -> None:
        """Log a message at LOG_NOTICE."""
        self._log(LOG_NOTICE, message)

    def info(self, message: Any) -> None:
        """Log a message at LOG_INFO."""
        self._log(LOG_INFO, message)

    def debug(self, message: Any) -> None:
        """Log a message at LOG_DEBUG."""
        self._log(LOG_DEBUG, message)


def _bound(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if number != number else number


def _bound_class(base: type, runtime: Runtime) -> type:
    return type(base.__name__, (base,), {"_runtime": runtime, "__module__": "collectd",
                                         "__qualname__": base.__name__, "__doc__": base.__doc__})


def build_module(runtime: Runtime) -> types.ModuleType:
    """A fresh `collectd` module whose functions and classes talk to `runtime`."""
    module = types.ModuleType("collectd", "The python interface to collectd")
    api = _Api(runtime)
    for kind in CALLBACK_KINDS:
        setattr(module, f"register_{kind}", getattr(api, f"register_{kind}"))
        setattr(module, f"unregister_{kind}", getattr(api, f"unregister_{kind}"))
    for name in ("flush", "get_dataset", "error", "warning", "notice", "info", "debug"):
        setattr(module, name, getattr(api, name))
    module.Values = _bound_class(Values, runtime)  # type: ignore[attr-defined]
    module.Notification = _bound_class(Notification, runtime)  # type: ignore[attr-defined]
    module.Config = Config  # type: ignore[attr-defined]
    module.Signed = Signed  # type: ignore[attr-defined]
    module.Unsigned = Unsigned  # type: ignore[attr-defined]
    module.CollectdError = CollectdError  # type: ignore[attr-defined]
    constants = {
        "LOG_DEBUG": LOG_DEBUG, "LOG_INFO": LOG_INFO, "LOG_NOTICE": LOG_NOTICE,
        "LOG_WARNING": LOG_WARNING, "LOG_ERROR": LOG_ERROR,
        "NOTIF_FAILURE": NOTIF_FAILURE, "NOTIF_WARNING": NOTIF_WARNING, "NOTIF_OKAY": NOTIF_OKAY,
        "DS_TYPE_COUNTER": DS_TYPE_NAMES[COUNTER], "DS_TYPE_GAUGE": DS_TYPE_NAMES[GAUGE],
        "DS_TYPE_DERIVE": DS_TYPE_NAMES[DERIVE], "DS_TYPE_ABSOLUTE": DS_TYPE_NAMES[ABSOLUTE],
    }
    for name, value in constants.items():
        setattr(module, name, value)
    return module
