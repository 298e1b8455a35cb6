"""InfluxDB line protocol: `measurement,tag=v,... value=<float> <ns>` lines packed into datagrams.

Sans-I/O: text in, bytes out. A Graphite 1.1 tag suffix (`name;k=v`) becomes InfluxDB tags.
"""

from __future__ import annotations

from collections.abc import Iterable

from bucky.sample import GRAPHITE_PATH


def _escape_measurement(text: str) -> str:
    return (text.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")
            .replace("\n", "_").replace("\r", "_"))


def _escape_tag(text: str) -> str:
    return _escape_measurement(text).replace("=", "\\=")


def influx_prefix(host: str | None, name: str) -> str:
    """`measurement,tag=v,... value=` for a sample; a Graphite tag suffix becomes tags."""
    measurement, *tag_parts = name.split(";")
    tags: dict[str, str] = {}
    for part in tag_parts:
        key, sep, value = part.partition("=")
        if sep and key and value:
            tags[key] = value
    if host and host is not GRAPHITE_PATH:
        tags["host"] = host
    out = [_escape_measurement(measurement)]
    out.extend(f"{_escape_tag(k)}={_escape_tag(v)}" for k, v in sorted(tags.items()) if v)
    return ",".join(out) + " value="


def influx_timestamp_ns(timestamp: object) -> int:
    if type(timestamp) is int:
        return timestamp * 1_000_000_000
    return int(round(float(timestamp) * 1e9))  # type: ignore[arg-type]


def pack_lines(lines: Iterable[str], max_bytes: int) -> list[bytes]:
    """Join lines into datagrams of at most `max_bytes` (a longer line travels alone)."""
    datagrams: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        data = line.encode()
        if current and size + 1 + len(data) > max_bytes:
            datagrams.append(b"\n".join(current))
            current, size = [], 0
        size += len(data) + (1 if current else 0)
        current.append(data)
    if current:
        datagrams.append(b"\n".join(current))
    return datagrams


