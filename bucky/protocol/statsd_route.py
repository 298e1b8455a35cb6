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

from bucky.protocol.statsd import make_key, sanitize, split_key

_MEMO_SIZE = 1 << 17
_FIRST_SEEN_SIZE = 1 << 19
_NAME = "\x00"  # first_seen: a name's own rank, whatever the tags of the line that brought it
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
    """Splits datagrams into one chunk of lines per owning worker.

    It also remembers the order in which metric names (and Graphite-tagged keys) were first
    routed (`first_seen`: name -> rank, at most _FIRST_SEEN_SIZE, then it starts again), so that
    the management port can list the keys of N workers in the order one process would have met
    them (stats.js prints its objects in insertion order). This costs nothing on the fast path:
    only raw names new to the memo are looked at. Keys that rank alike (DogStatsD tags of one
    name) live in one worker, which keeps their order. A name first met in a line of another
    type, or a bad one, ranks from that line: the order can differ from one process's there.
    """

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._memo: dict[bytes, int] = {b"": 0}  # blank lines: worker 0 (the parser skips them)
        self.first_seen: dict[str, int] = {}

    def owner_of_key(self, key: str) -> int:
        """Owner of an aggregation key (`name;k=v...` or plain name), e.g. for saved gauges."""
        return owner_of(key.partition(";")[0], self.workers)

    def _slow(self, raw: bytes, line: bytes) -> int:
        name = route_name(line)
        owner = owner_of(name, self.workers)
        if b";" in raw:  # a Graphite-tagged key (`name;k=v`) ranks on its own
            self._seen(make_key(*split_key(raw.decode("utf-8", "surrogateescape").strip())))
        else:
            self._seen(name)
        self._seen(_NAME + name)  # the rank of keys known by their name only (tags dropped)
        # Only names the parser reads the same on its fast path are memoised (as its own memo).
        if b"|" not in raw and b":" in line:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
                self._memo[b""] = 0
            self._memo[raw] = owner
        return owner

    def _seen(self, key: str | None) -> None:
        first_seen = self.first_seen
        if key is not None and key not in first_seen:
            if len(first_seen) >= _FIRST_SEEN_SIZE:
                first_seen.clear()
            first_seen[key] = len(first_seen)

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


def in_first_seen_order(parts: list[dict], first_seen: dict[str, int]) -> dict:
    """The {key: value} parts of N workers (each in its own insertion order) as one dict, in the
    order the keys (else their names) were first routed; names never routed here (e.g. TCP lines
    another worker read) after those, by worker, then in their worker's order."""
    unseen = len(first_seen)
    get = first_seen.get
    ordered = sorted(
        ((get(key, get(_NAME + key.partition(";")[0], unseen)), worker, position, key, value)
         for worker, part in enumerate(parts)
         for position, (key, value) in enumerate(part.items())),
        key=lambda entry: entry[:3])
    return {key: value for _, _, _, key, value in ordered}


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
