"""Graphite names for collectd values: Bucky 2's converters, their lookup, and sanitizing.

What this module is for: turning one collectd data source (host, plugin, plugin_instance, type,
type_instance, ds name) into the metric name Bucky 2 produced, so an existing Graphite tree stays
the same, and so the converters users wrote for Bucky 2 keep working unchanged.

Rules:
- A converter is any callable taking Bucky 2's sample dict {host, plugin, plugin_instance, type,
  type_instance, time, interval, value, value_name, value_type} and returning a list of name parts
  (joined with ".") or None to drop the value. It is chosen by plugin name, "_default" otherwise.
- Built-ins have PRIORITY -1. Sources are added in the order built-ins, `collectd_converters`,
  entry points (group "bucky.collectd.converters", entry-point name = plugin name); on a clash the
  newcomer wins only with a strictly larger PRIORITY attribute (default 0), as in Bucky 2.
- The caller runs a converter once per series and caches the result, so a converter must depend
  only on the identifier fields (host, plugin, instances, type, ds name), which is what names are.
- Nothing that came over the wire may break a Graphite line: whitespace, control characters (C0,
  DEL, C1) and ";" (Graphite's tag separator; collectd has no tags) become "_" in the final name
  and in the host. Dots are kept: as in Bucky 2, a dot in an instance adds a path level.
- No I/O and no logging: what deserves a log line is returned as `notes` for the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bucky.protocol.graphite import WHITESPACE

Converter = Callable[[dict[str, Any]], Any]

ENTRY_POINT_GROUP = "bucky.collectd.converters"
DEFAULT_KEY = "_default"

# Characters that must never reach a Graphite path: the C0 controls (NUL, TAB, LF, CR, ...), DEL,
# the C1 controls, every character str.isspace() accepts, and ";" (tag separator).
_UNSAFE = {*map(chr, range(0x00, 0x20)), "\x7f", *map(chr, range(0x80, 0xA0)), *WHITESPACE, ";"}
_SANITISE_TABLE = str.maketrans(dict.fromkeys(_UNSAFE, "_"))


def sanitize(text: str) -> str:
    """Replace whitespace, control characters and ";" with "_" (names and hosts from the wire)."""
    return text.translate(_SANITISE_TABLE)


class CPUConverter:
    """cpu.<plugin_instance>.<type_instance>"""

    PRIORITY = -1

    def __call__(self, sample: dict[str, Any]) -> list[str]:
        return ["cpu", sample["plugin_instance"], sample["type_instance"]]


class InterfaceConverter:
    """interface.<plugin_instance>.<type_instance>.<type>.<ds name>, empty parts left out."""

    PRIORITY = -1

    def __call__(self, sample: dict[str, Any]) -> list[str]:
        parts = [
            "interface",
            sample.get("plugin_instance", ""),
            sample.get("type_instance", ""),
            sample["type"],
            sample["value_name"],
        ]
        return [p for p in parts if p]


class MemoryConverter:
    """memory.<type_instance>"""

    PRIORITY = -1

    def __call__(self, sample: dict[str, Any]) -> list[str]:
        return ["memory", sample["type_instance"]]


class DefaultConverter:
    """plugin[.plugin_instance][.type unless "value"][.type_instance][.ds name unless "value"]"""

    PRIORITY = -1

    def __call__(self, sample: dict[str, Any]) -> list[str]:
        parts = [sample["plugin"].strip()]
        if sample.get("plugin_instance"):
            parts.append(sample["plugin_instance"].strip())
        stype = sample.get("type", "").strip()
        if stype and stype != "value":
            parts.append(stype)
        stypei = sample.get("type_instance", "").strip()
        if stypei:
            parts.append(stypei)
        vname = sample.get("value_name", "").strip()
        if vname and vname != "value":
            parts.append(vname)
        return parts


def builtin_converters() -> dict[str, Converter]:
    return {
        "cpu": CPUConverter(),
        "interface": InterfaceConverter(),
        "memory": MemoryConverter(),
        DEFAULT_KEY: DefaultConverter(),
    }


def priority_of(converter: object) -> Any:
    return getattr(converter, "PRIORITY", 0)


class ConverterTable:
    """Plugin name -> converter, assembled once at start-up with Bucky 2's priority rule.

    `notes` collects one human-readable line per decision (added, replaced, ignored) for the
    caller to log at INFO, as Bucky 2 did.
    """

    def __init__(self) -> None:
        self._converters: dict[str, Converter] = builtin_converters()
        self.sources: dict[str, str] = dict.fromkeys(self._converters, "built-in")
        self.notes: list[str] = []

    def add(self, plugin: str, converter: Converter, source: str) -> bool:
        """Add `converter` for `plugin`; False when an existing one keeps the place."""
        if not callable(converter):
            raise TypeError(f"collectd converter for {plugin!r} from {source} is not callable")
        current = self._converters.get(plugin)
        if current is not None:
            new_priority, old_priority = priority_of(converter), priority_of(current)
            if not new_priority > old_priority:
                self.notes.append(
                    f"collectd converter {plugin!r} from {source} ignored: priority "
                    f"{new_priority!r} does not beat {old_priority!r} from {self.sources[plugin]}"
                )
                return False
            self.notes.append(
                f"collectd converter {plugin!r} from {source} replaces the one from "
                f"{self.sources[plugin]} (priority {new_priority!r} > {old_priority!r})"
            )
        else:
            self.notes.append(f"collectd converter {plugin!r} from {source}")
        self._converters[plugin] = converter
        self.sources[plugin] = source
        return True

    def get(self, plugin: str) -> Converter:
        converter = self._converters.get(plugin)
        return converter if converter is not None else self._converters[DEFAULT_KEY]

    def __contains__(self, plugin: object) -> bool:
        return plugin in self._converters

    def plugins(self) -> list[str]:
        return sorted(self._converters)


def _configured_items(configured: object) -> Iterable[tuple[str, Converter]]:
    """(plugin, converter) pairs from `collectd_converters`: a mapping, or callables that name
    their plugin(s) in a PLUGIN attribute (a string or a sequence of strings)."""
    if not configured:
        return []
    if isinstance(configured, Mapping):
        return [(str(plugin), conv) for plugin, conv in configured.items()]
    if isinstance(configured, str):
        raise TypeError("collectd_converters must be a mapping or a sequence of converters")
    items: list[tuple[str, Converter]] = []
    for conv in configured:  # type: ignore[attr-defined]
        plugins = getattr(conv, "PLUGIN", None)
        if isinstance(plugins, str):
            plugins = (plugins,)
        if not plugins:
            raise TypeError(
                f"collectd converter {conv!r} in a sequence needs a PLUGIN attribute naming its "
                "plugin (or use a mapping plugin -> converter)"
            )
        items.extend((str(p), conv) for p in plugins)
    return items


def entry_point_converters(group: str = ENTRY_POINT_GROUP) -> list[tuple[str, Converter, str]]:
    """(plugin, converter, source) for every installed entry point of `group`, loaded."""
    from importlib.metadata import entry_points

    found = []
    for ep in sorted(entry_points(group=group), key=lambda e: (e.name, e.value)):
        try:
            converter = ep.load()
        except Exception as exc:  # a broken plugin package is a start-up error, said clearly
            raise ImportError(
                f"collectd converter entry point {ep.name!r} ({ep.value}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        found.append((ep.name, converter, f"entry point {ep.value}"))
    return found


def build_converter_table(
    configured: object = None,
    use_entry_points: bool = True,
    *,
    load_entry_points: Callable[[], Iterable[tuple[str, Converter, str]]] = (
        entry_point_converters
    ),
) -> ConverterTable:
    """Built-ins, then `collectd_converters`, then (optionally) entry points, by priority.

    Raises TypeError for a malformed `collectd_converters` and ImportError for an entry point
    that cannot be loaded: both are start-up errors the caller reports as configuration errors.
    """
    table = ConverterTable()
    for plugin, converter in _configured_items(configured):
        table.add(plugin, converter, "config")
    if use_entry_points:
        for plugin, converter, source in load_entry_points():
            table.add(plugin, converter, source)
    return table


# Why a value gets no name: the suffix of its "dropped.<why>" counter.
DROP_CONVERTER_NONE = "converter_none"
DROP_CONVERTER_ERROR = "converter_error"
DROP_EMPTY_NAME = "empty_name"


def run_converter(
    table: ConverterTable, sample: dict[str, Any]
) -> tuple[str | None, str, str | None, BaseException | None]:
    """Name one data source: (name, host, drop_reason, error).

    `name` is None when the value must be dropped; `drop_reason` then says why and `error` holds
    the converter's exception, if any. The host is read back from the sample after the call, as
    Bucky 2 did, so a converter that rewrites sample["host"] moves the series to that host.
    """
    converter = table.get(sample["plugin"])
    try:
        parts = converter(sample)
        if parts is None:
            return None, "", DROP_CONVERTER_NONE, None
        name = ".".join(parts)
        host = sample.get("host") or ""
        if not isinstance(host, str):
            raise TypeError(f"sample['host'] became {type(host).__name__}")
    except Exception as exc:  # user code: any failure drops the value, the caller counts/logs
        return None, "", DROP_CONVERTER_ERROR, exc
    if not name.strip():
        return None, "", DROP_EMPTY_NAME, None
    return sanitize(name), sanitize(host), None, None
