"""The Graphite output: a path per sample, a destination per path, encoded once per destination.

One output process feeds every carbon destination. For each batch the client

1. computes each sample's Graphite path once per distinct (host, name) (PathCache; a Graphite 1.1
   tagged name is normalized as carbon-relay does, and sent in that form);
2. routes it (with several destinations: the placement router, cached per path as a bit mask of
   destinations; with one destination, or `broadcast`, there is nothing to route);
3. encodes each destination's share once (plaintext lines, or pickle frames of at most
   graphite_pickle_buffer_size points) and hands the bytes to that destination's
   GraphiteConnection (connection.py), which buffers, connects, backs off and writes on its own.

Self-metrics of the output process are routed like any other metric (carbon-relay does the same
with its own metrics), so they land on the instance graphite-web's CARBONLINK_HOSTS ring looks at.
Counters: the process-level names (`sent`, `dropped.buffer_full`, ...) are totals over all
destinations, so they mean the same with one carbon or many; when `graphite_destinations` is set,
each destination's counters are also reported one level deeper, `<label>.<counter>`, where the
label is `host_port_instance` with dots written as "_".
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections import Counter
from collections.abc import Callable, Mapping
from itertools import compress
from typing import Any

from bucky.addresses import format_address
from bucky.daemon.outputs import spooled
from bucky.daemon.outputs.base import IDLE_POLL, OutputClient
from bucky.daemon.outputs.connection import CONNECT_TIMEOUT, GraphiteConnection
from bucky.daemon.outputs.paths import PATH_CACHE_LIMIT, PathCache
from bucky.daemon.outputs.spooled import (
    PICKLE,
    PLAINTEXT,
    SpooledBuffer,
    decode_record,
    spool_directory,
)
from bucky.daemon.spool import Spool, SpoolUnavailable
from bucky.errors import DecodeError
from bucky.names import NameRules
from bucky.protocol.graphite import encode_pickle_trusted, format_plaintext_batch, pickle_point
from bucky.ratelog import RateLimitedLog

log = logging.getLogger("bucky.daemon.outputs")

PICKLE_MAX_AGE = 1.0  # a partial pickle message waits at most this long for more points
ORPHAN_RECORDS_PER_POLL = 8


def _remove_spool_dir(path: str) -> None:
    for name in ("cursor", "lock"):
        try:
            os.unlink(os.path.join(path, name))
        except OSError:
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass


class GraphiteClient(OutputClient):
    """Plaintext TCP to every carbon destination; GraphitePickleClient changes only the encoding.

    Destinations are grouped by what they receive: one group per destination when a router
    places paths, a single group holding every destination otherwise (one destination, or
    broadcast), so identical data is encoded once.
    """

    name = "graphite"
    path_suffix = " "  # plaintext: the cached path already carries the separator before the value

    def __init__(
        self,
        cfg: Any,
        *,
        clock: Callable[[], float] = time.monotonic,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        super().__init__()
        self._clock = clock
        self._ratelog = RateLimitedLog(log, 60.0, clock)
        targets, labelled = _destinations(cfg)
        self._labelled = labelled
        self._spool_on = int(getattr(cfg, "graphite_spool_max_bytes", 0) or 0) > 0
        self.connections = [
            GraphiteConnection(cfg, host, port, label=label, clock=clock,
                               connect_timeout=connect_timeout,
                               name=f"{self.name} {display}" if labelled else self.name,
                               buffer=self._buffer_for(cfg, label, clock))
            for host, port, label, display in targets
        ]
        self._orphans: list[Spool] | None = None if self._spool_on else []
        self._spool_root = spooled.spool_root(cfg) if self._spool_on else ""
        self._spool_max = int(getattr(cfg, "graphite_spool_max_bytes", 0) or 0)
        self._router = None  # placement: set when paths must be placed on several destinations
        self._groups: list[list[GraphiteConnection]] = [self.connections]
        self._masks = _Masks(self._router, len(self.path_suffix))
        self._bits: list[int] = [1]
        self._paths = PathCache(NameRules.from_config(cfg), self.path_suffix)

    def _buffer_for(self, cfg: Any, label: str, clock: Callable[[], float]) -> Any:
        """The destination's buffer: memory only, or memory backed by its disk spool."""
        if not self._spool_on:
            return None
        return SpooledBuffer(
            cfg.graphite_buffer_size, spool_directory(cfg, label),
            max_bytes=int(cfg.graphite_spool_max_bytes),
            sync_interval=float(cfg.graphite_spool_sync_interval),
            fmt=PICKLE if self.path_suffix == "" else PLAINTEXT,
            per_frame=int(cfg.graphite_pickle_buffer_size), clock=clock)

    # -- the OutputClient contract

    def send(self, samples: list[tuple], now: float, front: bool = False) -> None:
        if not samples:
            return
        try:
            paths = self._paths.for_batch(samples)
        except Exception:  # a sample whose host or name is not text: isolate it
            samples, paths = self._paths_one_by_one(samples)
        self._route(samples, paths, now, front)

    def _route(self, samples: list[tuple], paths: list[str], now: float, front: bool) -> None:
        if self._router is None:
            self._deliver(0, samples, paths, now, front)
            return
        masks = list(map(self._masks.__getitem__, paths))
        for group, bit in enumerate(self._bits):
            selected = list(map(bit.__and__, masks))
            if any(selected):
                self._deliver(group, list(compress(samples, selected)),
                              list(compress(paths, selected)), now, front)

    def poll(self, now: float) -> float:
        wait = self._frame_due(now)
        if self._orphans != []:
            wait = min(wait, self._reroute_orphans(now))
        for conn in self.connections:
            wait = min(wait, conn.poll(now))
        return wait

    def pending(self) -> int:
        return sum(conn.pending() for conn in self.connections) + self._unframed_points()

    @property  # type: ignore[override]
    def counters(self) -> Counter[str]:
        """Totals over all destinations, plus `<label>.<counter>` per destination when labelled."""
        total = Counter(self._own)
        for conn in self.connections:
            total.update(conn.counters)
            if self._labelled:
                label = conn.label
                for key, value in conn.counters.items():
                    total[f"{label}.{key}"] = value
        return total

    @counters.setter
    def counters(self, value: Counter[str]) -> None:
        self._own = value

    def gauges(self) -> Mapping[str, float]:
        gauges: dict[str, float] = {"pending": self.pending()}
        spools = [(conn.label, conn._buffer.gauges()) for conn in self.connections
                  if isinstance(conn._buffer, SpooledBuffer)]
        for label, values in spools:
            for key, value in values.items():
                if key == "spool_oldest_age":
                    gauges[key] = max(gauges.get(key, 0.0), value)
                else:
                    gauges[key] = gauges.get(key, 0) + value
                if self._labelled:
                    gauges[f"{label}.{key}"] = value
        if self._labelled:
            for group, conns in enumerate(self._groups):
                unframed = self._unframed_points(group)
                for conn in conns:
                    gauges[f"{conn.label}.pending"] = conn.pending() + unframed
        return gauges

    def status(self) -> list[dict[str, Any]]:
        out = []
        for group, conns in enumerate(self._groups):
            unframed = self._unframed_points(group)
            for conn in conns:
                entry = conn.status()
                entry["pending"] += unframed
                out.append(entry)
        return out

    def flush(self, deadline: float) -> bool:
        self._frame_all()
        for conn in self.connections:  # with a spool: memory goes to disk now, not at the deadline
            conn.stopping()
        while True:
            self.poll(self._clock())
            if sum(conn.volatile() for conn in self.connections) + self._unframed_points() == 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._wait(min(remaining, max(self.poll(self._clock()), 0.001)))

    def close(self) -> None:
        self._frame_all()
        for conn in self.connections:
            conn.close()
        for spool in self._orphans or []:
            spool.close()

    # -- spools of destinations that are no longer configured

    def _reroute_orphans(self, now: float) -> float:
        """Send what a removed destination's spool holds through the current placement.

        Found on the first poll: every directory under the spool root that is not a current
        destination's and holds segments. A few records per poll, so the live path keeps going;
        a drained directory is removed."""
        if self._orphans is None:
            self._orphans = self._find_orphans()
        budget = ORPHAN_RECORDS_PER_POLL
        while self._orphans and budget > 0:
            spool = self._orphans[0]
            record = spool.peek()
            if record is None:
                spool.close()
                self._orphans.pop(0)
                _remove_spool_dir(spool.directory)
                log.info("%s: re-routed the spool of removed destination %s", self.name,
                         os.path.basename(spool.directory))
                continue
            budget -= 1
            data, points = record
            try:
                decoded = decode_record(data)
            except (DecodeError, ValueError) as exc:
                self._own["dropped.spool_corrupt"] += points
                log.error("%s: a record in %s cannot be decoded (%s); dropped %d datapoints",
                          self.name, spool.directory, exc, points)
                spool.ack()
                continue
            suffix = self.path_suffix
            samples = [(None, path, value, ts) for path, value, ts in decoded]
            self._route(samples, [path + suffix for path, _, _ in decoded], now, False)
            self._own["rerouted"] += len(decoded)
            spool.ack()
        return 0.0 if self._orphans else IDLE_POLL

    def _find_orphans(self) -> list[Spool]:
        current = {conn.label for conn in self.connections}
        try:
            entries = sorted(os.listdir(self._spool_root))
        except OSError:
            return []
        found = []
        for entry in entries:
            path = os.path.join(self._spool_root, entry)
            if entry in current or not os.path.isdir(path):
                continue
            if not any(name.endswith(".seg") for name in os.listdir(path)):
                continue
            spool = Spool(path, max(self._spool_max, 1 << 20), clock=self._clock,
                          name=f"{self.name} (removed destination {entry})")
            spool.counters = self._own
            try:
                if not spool.open():
                    continue
            except SpoolUnavailable as exc:
                log.error("%s: cannot re-route the spool in %s: %s", self.name, path, exc)
                continue
            log.warning("%s: %s is the spool of a destination no longer configured: re-routing "
                        "its %d datapoints through the current destinations", self.name, path,
                        spool.points)
            found.append(spool)
        return found

    # -- samples to paths

    def _paths_one_by_one(self, samples: list[tuple]) -> tuple[list[tuple], list[str]]:
        kept, paths = [], []
        for sample in samples:
            try:
                paths.append(self._paths.path(sample[0], sample[1]))
            except Exception:
                continue
            kept.append(sample)
        self._invalid(len(samples) - len(kept))
        return kept, paths

    def _invalid(self, count: int) -> None:
        if count:
            self._own["dropped.invalid"] += count
            self._ratelog.warning("invalid", "%s: dropped %d samples with a name, value or "
                                  "timestamp that cannot be written", self.name, count)

    # -- encoding (the pickle client overrides these)

    def _deliver(self, group: int, samples: list[tuple], paths: list[str], now: float,
                 front: bool) -> None:
        """Encode one group's share of a batch and queue it on each of the group's connections."""
        conns = self._groups[group]
        if not any(conn.accepting for conn in conns):
            for conn in conns:
                conn.refuse(len(samples))
            return
        try:
            text, skipped = format_plaintext_batch(samples, paths)
        except Exception:  # a value whose conversion raises: isolate it
            text, skipped = self._format_one_by_one(samples, paths)
        self._invalid(skipped)
        count = len(samples) - skipped
        if count:
            data = text.encode()
            for conn in conns:
                conn.add(data, count, front)

    def _format_one_by_one(self, samples: list[tuple], paths: list[str]) -> tuple[str, int]:
        parts, skipped = [], 0
        for sample, path in zip(samples, paths, strict=True):
            try:
                text, bad = format_plaintext_batch([sample], [path])
            except Exception:
                text, bad = "", 1
            parts.append(text)
            skipped += bad
        return "".join(parts), skipped

    def _frame_due(self, now: float) -> float:
        """Pickle: frame partial messages old enough; returns seconds until the next is due."""
        return IDLE_POLL

    def _frame_all(self) -> None:
        """Pickle: frame the partial messages now (shutdown)."""

    def _unframed_points(self, group: int | None = None) -> int:
        return 0

    def _wait(self, timeout: float) -> None:
        """flush(): sleep until a socket with data can take more, or `timeout`."""
        poller = select.poll()
        fds = [fd for conn in self.connections if (fd := conn.writable_fd()) is not None]
        if not fds:
            time.sleep(timeout)
            return
        for fd in fds:
            poller.register(fd, select.POLLOUT)
        poller.poll(max(0, int(timeout * 1000)))


class GraphitePickleClient(GraphiteClient):
    """Carbon's pickle protocol: frames of at most graphite_pickle_buffer_size points.

    Points wait in a partial message per group until it is full or PICKLE_MAX_AGE old;
    self-metrics are framed at once so they are not held behind user data.
    """

    name = "graphite_pickle"
    path_suffix = ""

    def __init__(self, cfg: Any, *, clock: Callable[[], float] = time.monotonic,
                 connect_timeout: float = CONNECT_TIMEOUT,
                 max_age: float = PICKLE_MAX_AGE) -> None:
        super().__init__(cfg, clock=clock, connect_timeout=connect_timeout)
        self._per_message = max(1, int(cfg.graphite_pickle_buffer_size))
        self._max_age = max_age
        self._partial: list[list[tuple]] = [[] for _ in self._groups]
        self._partial_since = [0.0] * len(self._groups)

    def _deliver(self, group: int, samples: list[tuple], paths: list[str], now: float,
                 front: bool) -> None:
        conns = self._groups[group]
        if not any(conn.accepting for conn in conns):
            for conn in conns:
                conn.refuse(len(samples))
            return
        points, skipped = self._points(samples, paths)
        self._invalid(skipped)
        if front:
            self._frame(group, points, front=True)
            return
        partial = self._partial[group]
        if not partial:
            self._partial_since[group] = now
        partial.extend(points)
        size = self._per_message
        if len(partial) >= size:
            whole = len(partial) - len(partial) % size
            self._frame(group, partial[:whole])
            del partial[:whole]
            self._partial_since[group] = now

    def _points(self, samples: list[tuple], paths: list[str]) -> tuple[list[tuple], int]:
        try:
            if set(map(type, [s[2] for s in samples])) <= {int, float}:
                return [(path, (int(s[3]), s[2]))
                        for path, s in zip(paths, samples, strict=True)], 0
        except Exception:  # an odd timestamp: sort it out sample by sample
            pass
        points, skipped = [], 0
        for path, sample in zip(paths, samples, strict=True):
            try:
                points.append(pickle_point(path, int(sample[3]), sample[2]))
            except Exception:
                skipped += 1
        return points, skipped

    def _frame(self, group: int, points: list[tuple], front: bool = False) -> None:
        size = self._per_message
        conns = self._groups[group]
        for start in range(0, len(points), size):
            part = points[start : start + size]
            data = encode_pickle_trusted(part)
            for conn in conns:
                conn.add(data, len(part), front)

    def _frame_due(self, now: float) -> float:
        wait = IDLE_POLL
        for group, partial in enumerate(self._partial):
            if partial:
                due = self._partial_since[group] + self._max_age
                if now >= due:
                    self._frame(group, partial)
                    self._partial[group] = []
                else:
                    wait = min(wait, due - now)
        return wait

    def _frame_all(self) -> None:
        for group, partial in enumerate(self._partial):
            if partial:
                self._frame(group, partial)
                self._partial[group] = []

    def _unframed_points(self, group: int | None = None) -> int:
        if group is None:
            return sum(map(len, self._partial))
        return len(self._partial[group])


class _Masks(dict):
    """Path (with the encoder's suffix) -> bit mask of the groups the router places it on."""

    def __init__(self, router: Any, suffix_len: int) -> None:
        super().__init__()
        self._router = router
        self._cut = -suffix_len if suffix_len else None

    def __missing__(self, path: str) -> int:
        if len(self) >= PATH_CACHE_LIMIT:
            self.clear()
        mask = 0
        for index in self._router.route(path[: self._cut]):
            mask |= 1 << index
        self[path] = mask
        return mask


def _destinations(cfg: Any) -> tuple[list[tuple[str, int, str, str]], bool]:
    """(host, port, label, display) per destination, and whether metrics name each one."""
    host, port = str(cfg.graphite_ip).strip("[]"), int(cfg.graphite_port)
    label = f"{host}_{port}".replace(".", "_")
    return [(host, port, label, format_address(host, port))], False
