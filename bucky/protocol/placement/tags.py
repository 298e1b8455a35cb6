"""Graphite 1.1 tagged names as carbon-relay routes them: ``normalize_path``.

carbon-relay's ``TAG_RELAY_NORMALIZED`` routes (and sends) ``TaggedSeries.parse(name).path``
(``carbon.util``); this re-implements that parse bit for bit, both the ``name;k=v`` form and the
OpenMetrics ``name{k="v"}`` form. A name carbon cannot parse is relayed unchanged, so it is here.
"""

from __future__ import annotations

import re

_OPENMETRICS_TAG = re.compile(r'([^=]+)="((?:[\\]["\\]|[^"\\])+)"(:?,|$)')  # carbon's, verbatim


def _valid_tag(tag: str, value: str) -> bool:
    return (bool(tag) and bool(value) and not any(c in tag for c in ";!^=")
            and ";" not in value and value[0] != "~")


def _format_tags(metric: str, tags: dict[str, str]) -> str | None:
    name = metric.lstrip("~")
    if not name:
        return None
    tags["name"] = name
    return name + "".join(sorted(f";{k}={v}" for k, v in tags.items() if k != "name"))


def _parse_carbon(path: str) -> str | None:
    segments = path.split(";")
    if not segments[0]:
        return None
    tags: dict[str, str] = {}
    for segment in segments[1:]:
        tag = segment.split("=", 1)
        if len(tag) != 2 or not tag[0] or not _valid_tag(tag[0], tag[1]):
            return None
        tags[tag[0]] = tag[1]
    return _format_tags(segments[0], tags)


def _parse_openmetrics(path: str) -> str | None:
    parts = path[:-1].split("{", 2)
    if len(parts) != 2 or not parts[0]:
        return None
    metric, rawtags = parts
    tags: dict[str, str] = {}
    while rawtags:
        m = _OPENMETRICS_TAG.match(rawtags)
        if not m:
            return None
        tag, value = m.group(1), m.group(2).replace(r"\"", '"').replace("\\\\", "\\")
        if not _valid_tag(tag, value):
            return None
        tags[tag] = value
        rawtags = rawtags[len(m.group(0)):]
    return _format_tags(metric, tags)


def normalize_path(path: str) -> str:
    """carbon-relay's TAG_RELAY_NORMALIZED: ``TaggedSeries.parse(path).path``, or `path` itself
    when carbon cannot parse it (carbon logs and relays the name unchanged).

    ``name;b=2;a=1`` -> ``name;a=1;b=2`` (the ``;k=v`` strings sorted); ``m{a="1"}`` ->
    ``m;a=1``; leading ``~`` are stripped from the name; a name without tags is unchanged."""
    if ";" not in path and path[:1] != "~" and path[-2:] != '"}':
        return path
    if path[-2:] == '"}' and "{" in path:
        normal = _parse_openmetrics(path)
    else:
        normal = _parse_carbon(path)
    return path if normal is None else normal
