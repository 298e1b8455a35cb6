"""The reference StatsD proxy's ring (npm `hashring` 3.x as statsd's proxy.js builds it). Sans-I/O.

proxy.js: `new hashring({"host:port": 100, ...}, 'md5', {'replicas': 0, ...})`, then
`ring.get(key)` with key = the line's text before its first ":". What that amounts to, read from
hashring/index.js and connection-parse (checked against the real package by tests):

- every server gets `floor(weight / total * 40 * len(servers))` points (40 = the default vnode
  count; equal weights: 40 each), point i = the first 4 bytes of md5("host:port-i"), read
  little-endian as an unsigned 32-bit number (replicas 0 is raised to 1: one point per digest);
- points sorted by value, stably (ties keep server order: servers in configured order, a server
  that rejoins after a removal goes last, as `ring.add` appends it);
- a key's value is md5(UTF-8 key) read the same way; its node comes from hashring's own binary
  search (`find`), reproduced verbatim, quirks included (it answers index 0 when it gives up).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

VNODES = 40  # hashring's default 'vnode count'
WEIGHT = 100  # proxy.js gives every node this weight


def _value(text: str) -> int:
    return int.from_bytes(hashlib.md5(text.encode("utf-8")).digest()[:4], "little")


class HashRing:
    """`servers`: "host:port" strings, in the order proxy.js's `nodes` lists them."""

    def __init__(self, servers: Iterable[str] = ()) -> None:
        self.servers: list[str] = []
        for server in servers:
            if server not in self.servers:
                self.servers.append(server)
        self._values: list[int] = []
        self._nodes: list[str] = []
        self._cache: dict[str, str] = {}
        self._build()

    def _build(self) -> None:
        points: list[tuple[int, str]] = []
        n = len(self.servers)
        total = WEIGHT * n
        for server in self.servers:
            length = math.floor(WEIGHT / total * VNODES * n)
            points.extend((_value(f"{server}-{i}"), server) for i in range(length))
        points.sort(key=lambda p: p[0])  # stable, as V8's Array.prototype.sort
        self._values = [v for v, _ in points]
        self._nodes = [s for _, s in points]
        self._cache.clear()

    def add(self, server: str) -> None:
        if server not in self.servers:
            self.servers.append(server)
            self._build()

    def remove(self, server: str) -> None:
        if server in self.servers:
            self.servers.remove(server)
            self._build()

    def find(self, value: int) -> int:
        """hashring's HashRing.prototype.find, step for step."""
        ring = self._values
        size = len(ring)
        low, high = 0, size
        while True:
            mid = (low + high) >> 1
            if mid == size:
                return 0
            middle = ring[mid]
            prev = 0 if mid == 0 else ring[mid - 1]
            if middle >= value > prev:
                return mid
            if middle < value:
                low = mid + 1
            else:
                high = mid - 1
            if low > high:
                return 0

    def get(self, key: str) -> str | None:
        """The node owning `key`, or None when the ring is empty."""
        node = self._cache.get(key)
        if node is not None:
            return node
        if not self._nodes:
            return None
        node = self._nodes[self.find(_value(key))]
        if len(self._cache) >= 100_000:
            self._cache.clear()
        self._cache[key] = node
        return node


def proxy_key(line: bytes) -> str:
    """The key proxy.js hashes: the line (decoded as Node decodes UTF-8) before its first ":"."""
    return line.partition(b":")[0].decode("utf-8", "replace")
