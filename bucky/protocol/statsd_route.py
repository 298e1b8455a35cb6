"""Which StatsD aggregator owns a line, and forwarded lines packed into datagrams. Sans-I/O.

Worker routing (`statsd_workers` > 1): every line goes to the worker that owns its metric *name*
(sanitised as the parser sanitises it, tags left out). All lines of one aggregation key share
that name, so each key lives in exactly one worker whatever `statsd_tags` says; tags never need
parsing here. Owner = crc32(name) mod N (stable across restarts, unlike hash()). The raw text
before the first ":" is memoised, so a datagram of known names is split without a Python loop.
Lines without a usable name (bad lines, events, blank lines) go to worker 0, which counts them.

Forwarding (`statsd_forward`): lines are grouped per node and packed into datagrams of at most
`packet_size` bytes (a line longer than that travels alone, as proxy.js sends every line alone).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterable
from itertools import compress, repeat
from operator import eq, not_

from bucky.protocol.statsd import sanitize

_MEMO_SIZE = 1 << 17
_LINE_NAMES = re.compile(rb"^[^:\n]*", re.M)  # one match per line: the text before its ":"


def route_name(line: bytes) -> str:
    """The metric name the parser would aggregate `line` under ("" for bad lines and events)."""
    text = line.decode("utf-8", "surrogateescape").rstrip()  # as the parser: right side only
    if not text or text.startswith(("_e{", "_sc|")):
        return ""
    head = text.partition("|#")[0]
    raw_name, colon, _ = head.partition(":")
    if not colon:
        return ""
    return sanitize(raw_name.split(";")[0])


def owner_of(name: str, n: int) -> int:
    if n <= 1 or not name:
        return 0
    return zlib.crc32(name.encode("utf-8", "surrogateescape")) % n


class WorkerRouter:
    """Splits datagrams into one chunk of lines per owning worker."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._memo: dict[bytes, int] = {b"": 0}  # blank lines: worker 0 (the parser skips them)

    def owner_of_key(self, key: str) -> int:
        """Owner of an aggregation key (`name;k=v...` or plain name), e.g. for saved gauges."""
        return owner_of(key.partition(";")[0], self.workers)

    def _slow(self, raw: bytes, line: bytes) -> int:
        owner = owner_of(route_name(line), self.workers)
        # Only names the parser reads the same on its fast path are memoised (as its own memo).
        if b"|" not in raw and b":" in line:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
                self._memo[b""] = 0
            self._memo[raw] = owner
        return owner

    def split_lines(self, lines: list[bytes]) -> list[list[bytes]]:
        """Lines (no newlines) -> one list per worker."""
        return self._split(lines, [line[:line.find(b":")] if b":" in line else line
                                   for line in lines])

    def split(self, datagram: bytes) -> list[list[bytes]]:
        """A datagram -> one list of lines per worker. The loops run in C: the names come from
        one regex pass, owners from the memo through map(), the lines per owner from compress()."""
        return self._split(datagram.split(b"\n"), _LINE_NAMES.findall(datagram))

    def _split(self, lines: list[bytes], names: list[bytes]) -> list[list[bytes]]:
        n = self.workers
        if n == 1:
            return [lines]
        owners = list(map(self._memo.get, names))
        if None in owners:
            slow = self._slow
            for i, owner in enumerate(owners):
                if owner is None:
                    owners[i] = slow(names[i], lines[i])
        if n == 2:
            return [list(compress(lines, map(not_, owners))), list(compress(lines, owners))]
        return [list(compress(lines, map(eq, owners, repeat(j)))) for j in range(n)]


def pack_lines(lines: Iterable[bytes], packet_size: int) -> list[bytes]:
    """Lines -> newline-joined datagrams of at most packet_size bytes (a longer line alone)."""
    out: list[bytes] = []
    batch: list[bytes] = []
    size = 0
    for line in lines:
        extra = len(line) + (1 if batch else 0)
        if batch and size + extra > packet_size:
            out.append(b"\n".join(batch))
            batch, size, extra = [], 0, len(line)
        batch.append(line)
        size += extra
    if batch:
        out.append(b"\n".join(batch))
    return out


class ForwardRouter:
    """proxy.js's routing of lines to nodes, with a node lookup memoised per raw key."""

    def __init__(self, get_node: Callable[[str], str | None]) -> None:
        self._get = get_node
        self._memo: dict[bytes, str | None] = {}

    def reset(self) -> None:
        """The ring changed: forget the memo."""
        self._memo.clear()

    def split(self, datagram: bytes) -> tuple[dict[str, list[bytes]], int]:
        """-> ({node: lines}, lines with no node). Empty lines are skipped, as proxy.js does."""
        out: dict[str, list[bytes]] = {}
        unrouted = 0
        memo = self._memo
        for line in datagram.split(b"\n"):
            if not line:
                continue
            raw = line.partition(b":")[0]
            node = memo.get(raw)
            if node is None:
                node = self._get(raw.decode("utf-8", "replace"))
                if node is None:
                    unrouted += 1
                    continue
                if len(memo) >= _MEMO_SIZE:
                    memo.clear()
                memo[raw] = node
            lines = out.get(node)
            if lines is None:
                out[node] = [line]
            else:
                lines.append(line)
        return out, unrouted
