"""How Bucky writes a network address in logs and messages: `host:port`, `[v6]:port`."""

from __future__ import annotations

from typing import Any


def format_address(host: Any, port: Any) -> str:
    """`host:port`, with an IPv6 host in brackets (`[::1]:2003`)."""
    host = str(host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_peer(address: Any) -> str:
    """A socket address as a peer: `host:port` for (host, port, ...) tuples, else as text."""
    if isinstance(address, tuple) and len(address) >= 2:
        return format_address(address[0], address[1])
    return "unknown" if address is None else str(address)
