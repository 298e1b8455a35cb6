"""carbon's destinations: ``host:port[:instance]``, parsed strictly, and the effective list.

Rules: a destination is a plain value (host, port, instance); two with the same ``(host,
instance)`` are one ring node to carbon and are refused, as carbon refuses them. Everything here
takes plain values: no config object, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NamedTuple

from bucky.addresses import format_address

DESTINATION_FORM = "host:port[:instance] (IPv6 as [::1]:2004:a)"

_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


class Destination(NamedTuple):
    """One carbon: where to connect, and the instance name that places it on the ring."""

    host: str
    port: int
    instance: str | None = None

    @property
    def label(self) -> str:
        """The self-metric form: ``host_port_instance`` (``host_port`` without instance).

        Dots, colons and anything else that is not a letter, digit, '-' or '_' become '_', so the
        label is one Graphite path component (``127_0_0_1_2004_a``, ``__1_2004`` for ``[::1]``)."""
        parts = [self.host, str(self.port)] + ([self.instance] if self.instance is not None else [])
        return "_".join(_LABEL_UNSAFE.sub("_", p) for p in parts)

    def __str__(self) -> str:
        address = format_address(self.host, self.port)
        return address + (f":{self.instance}" if self.instance is not None else "")

    @property
    def node(self) -> tuple[str, str | None]:
        """carbon's ring node: ``(server, instance)``; the port is not part of it."""
        return (self.host, self.instance)


def _bad(text: Any, why: str) -> ValueError:
    return ValueError(f"expected {DESTINATION_FORM}: {text!r} {why}")


def parse_destination(text: str, default_port: int | None = None) -> Destination:
    """carbon's DESTINATIONS syntax (``carbon.util.parseDestination``), strictly.

    ``host:port``, ``host:port:instance``, ``[v6addr]:port[:instance]``; everything after the port's
    colon is the instance (as in carbon, it may itself hold colons). Where carbon would accept
    nonsense (no host, an empty instance, a port int() happens to read such as "+2_004"), this
    raises ValueError. With `default_port`, a bare ``host`` / ``[v6addr]`` is accepted too."""
    if not isinstance(text, str):
        raise _bad(text, "is not a string")
    s = text.strip()
    if not s:
        raise _bad(text, "is empty")
    if s.startswith("["):
        end = s.rfind("]:")
        if end < 0:
            if s.endswith("]") and default_port is not None:
                host, rest = s[1:-1], str(default_port)
            else:
                raise _bad(text, "has no ']:port' after the IPv6 address")
        else:
            host, rest = s[1:end], s[end + 2:]
    elif ":" in s:
        colon = s.find(":")
        host, rest = s[:colon], s[colon + 1:]
    elif default_port is not None:
        host, rest = s, str(default_port)
    else:
        raise _bad(text, "has no port")
    port_text, sep, instance_text = rest.partition(":")
    instance = instance_text if sep else None
    if not host and not s.startswith("[") and s.count(":") >= 2:
        raise _bad(text, "needs brackets around the IPv6 address")
    if not host or any(c.isspace() for c in host) or "[" in host or "]" in host:
        raise _bad(text, "has no valid host")
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        if ":" in host or (not s.startswith("[") and rest.count(":") >= 2):
            raise _bad(text, "needs brackets around the IPv6 address")
        raise _bad(text, "has no port number 1-65535")
    if instance is not None and (not instance or any(c.isspace() for c in instance)):
        raise _bad(text, "has an empty instance or whitespace in it")
    return Destination(host, int(port_text), instance)


def parse_destinations(items: Iterable[str] | str, default_port: int | None = None,
                       ) -> tuple[Destination, ...]:
    """Several destinations (a list, or one comma-separated string as in carbon.conf).

    Two destinations with the same ``(host, instance)`` are one ring node to carbon, which refuses
    them ("destination instance ... already configured"); so does this (ValueError)."""
    if isinstance(items, str):
        items = [p for p in items.split(",") if p.strip()]
    out: list[Destination] = []
    seen: dict[tuple[str, str | None], Destination] = {}
    for item in items:
        dest = parse_destination(item, default_port)
        if dest.node in seen:
            raise ValueError(
                f"expected each (host, instance) once: {str(seen[dest.node])!r} and {str(dest)!r} "
                f"are both node {dest.node!r} of carbon's ring; give them different instances")
        seen[dest.node] = dest
        out.append(dest)
    return tuple(out)


def effective_destinations(destinations: Iterable[Destination], host: str, port: int,
                           ) -> tuple[Destination, ...]:
    """The carbons the Graphite output sends to: `destinations` (``graphite_destinations``), or
    when there are none the one destination `host`:`port` (``graphite_ip``, ``graphite_port``:
    Bucky's single carbon from before clusters; an IPv6 host may be given in brackets)."""
    return tuple(destinations) or (Destination(str(host).strip("[]"), int(port), None),)
