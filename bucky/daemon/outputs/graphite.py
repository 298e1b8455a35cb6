"""The Graphite output: a path per sample, a destination per path, encoded once per destination.

One output process feeds every carbon destination. For each batch the client

1. computes each sample's Graphite path once per distinct (host, name) (PathCache; when a hash
   places paths, a Graphite 1.1 tagged name is normalized as carbon-relay's TAG_RELAY_NORMALIZED
   does, and sent in that form);
2. routes it (with several destinations: the placement router of bucky/protocol/placement/,
   cached per path as a bit mask of destinations in a bucky.cache.TwoGenerationCache; with one
   destination, or `broadcast`, there is nothing to route and nothing is rewritten: the names go
   out exactly as before clusters);
3. splits the batch by the set of destinations each sample goes to, encodes each part once
   (plaintext lines, or pickle frames of at most graphite_pickle_buffer_size points) and hands
   the same bytes to each of those destinations' GraphiteConnection (connection.py), which
   buffers, connects, backs off and writes on its own. With replication, the copies share one
   encoding; with broadcast, the whole batch is encoded once for everyone.

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
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from bucky.cache import CACHE_GENERATION, CACHE_LIMIT, TwoGenerationCache
from bucky.daemon.outputs import spooled_buffer
from bucky.daemon.outputs.base import IDLE_POLL, OutputClient
from bucky.daemon.outputs.connection import CONNECT_TIMEOUT, GraphiteConnection
from bucky.daemon.outputs.paths import PathCache
from bucky.daemon.outputs.spool_files import Spool, SpoolUnavailable
from bucky.daemon.outputs.spooled_buffer import (
    PICKLE,
    PLAINTEXT,
    SpooledBuffer,
    decode_record,
    spool_directory,
)
from bucky.errors import DecodeError
from bucky.names import NameRules
from bucky.protocol.graphite import encode_pickle_trusted, format_plaintext_batch, pickle_point
from bucky.protocol.placement import (
    Indexes,
    Router,
    effective_destinations,
    make_router,
    normalize_path,
)
from bucky.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from bucky.config import Config

log = logging.getLogger("bucky.daemon.outputs")

PICKLE_MAX_AGE = 1.0  # a partial pickle message waits at most this long for more points
ORPHAN_RECORDS_PER_POLL = 8
ORPHAN_RETRY = 0.2  # seconds between attempts on a removed destination's spool still locked


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


def graphite_router(cfg: Config) -> Router:
    """The placement of a validated Config's Graphite output (its ``destinations`` are the
    effective ones: ``graphite_destinations``, or ``graphite_ip:graphite_port``); ValueError
    when the combination is not one carbon / carbon-c-relay offers."""
    destinations = effective_destinations(cfg.graphite_destinations, cfg.graphite_ip,
                                          cfg.graphite_port)
    return make_router(destinations, cfg.graphite_relay_method, cfg.graphite_hash_type,
                       cfg.graphite_replication_factor, cfg.graphite_diverse_replicas)


class GraphiteClient(OutputClient):
    """Plaintext TCP to every carbon destination; GraphitePickleClient changes only the encoding.

    A part of a batch is addressed by a bit mask of destinations (bit i: `connections[i]`);
    `_groups[mask]` is the list of connections it names.
    """

    name = "graphite"
    path_suffix = " "  # plaintext: the cached path already carries the separator before the value

    def __init__(
        self,
        cfg: Config,
        *,
        clock: Callable[[], float] = time.monotonic,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        super().__init__()
        self._clock = clock
        self._ratelog = RateLimitedLog(log, 60.0, clock)
        router = graphite_router(cfg)
        self._placement = router.describe()  # for the status page
        self._labelled = bool(cfg.graphite_destinations)
        self._spool_on = int(getattr(cfg, "graphite_spool_max_bytes", 0) or 0) > 0
        self.connections = [
            GraphiteConnection(cfg, dest.host, dest.port, label=dest.label, clock=clock,
                               connect_timeout=connect_timeout,
                               name=str(dest),
                               buffer=self._buffer_for(cfg, dest.label, clock))
            for dest in router.destinations
        ]
        self._orphans: list[Spool] | None = None if self._spool_on else []
        self._orphans_held: list[str] = []  # removed destinations' spools another process holds
        self._orphans_retry_at = 0.0
        self._orphans_done = not self._spool_on
        self._spool_root = spooled_buffer.spool_root(cfg) if self._spool_on else ""
        self._spool_max = int(getattr(cfg, "graphite_spool_max_bytes", 0) or 0)
        self._groups = _Groups(self.connections)
        self._everyone = (1 << len(self.connections)) - 1
        normalize: Callable[[str], str] | None = None
        self._router: Router | None = None
        if router.constant is None:  # placed by a hash
            self._router = router
            normalize = normalize_path  # the routing key is the name carbon-relay would send
        # else one destination, or broadcast: everyone gets everything, names as they are
        # PathCache has normalized the name already: the masks place it with `select` as it is
        self._masks = _masks(router.select, len(self.path_suffix), clock())
        self._paths = PathCache(NameRules.from_config(cfg), self.path_suffix, normalize,
                                clock=clock)

    def _buffer_for(self, cfg: Config, label: str, clock: Callable[[], float]) -> Any:
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
            self._deliver(self._everyone, samples, paths, now, front)
            return
        self._masks.expire(now)
        parts: defaultdict[int, list[int]] = defaultdict(list)
        for index, mask in enumerate(map(self._masks.__getitem__, paths)):
            parts[mask].append(index)
        if len(parts) == 1:
            self._deliver(next(iter(parts)), samples, paths, now, front)
            return
        for mask, indexes in parts.items():
            if len(indexes) == 1:
                self._deliver(mask, [samples[indexes[0]]], [paths[indexes[0]]], now, front)
            else:
                take = itemgetter(*indexes)
                self._deliver(mask, take(samples), take(paths), now, front)

    def poll(self, now: float) -> float:
        wait = self._frame_due(now)
        if not self._orphans_done:
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
        for conn in self.connections:
            buffer = conn._buffer
            if not isinstance(buffer, SpooledBuffer):
                continue
            for key, value in buffer.gauges().items():
                if key == "spool_oldest_age":
                    gauges[key] = max(gauges.get(key, 0.0), value)
                else:
                    gauges[key] = gauges.get(key, 0) + value
                if self._labelled:
                    gauges[f"{conn.label}.{key}"] = value
        if self._labelled:
            for index, conn in enumerate(self.connections):
                gauges[f"{conn.label}.pending"] = conn.pending() + self._unframed_points(index)
        return gauges

    def status(self) -> list[dict[str, Any]]:
        out = []
        for index, conn in enumerate(self.connections):
            entry = conn.status()
            entry["pending"] += self._unframed_points(index)
            entry["placement"] = self._placement
            buffer = conn._buffer
            if isinstance(buffer, SpooledBuffer):
                entry["spool_age"] = buffer.gauges()["spool_oldest_age"]
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

        Every directory under the spool root that is not a current destination's is a
        candidate, looked for on the first poll; one still locked (during a reload the old
        output process runs until the new one is up) is tried again every ORPHAN_RETRY
        seconds. A few records per poll, so the live path keeps going; a drained directory is
        removed."""
        if self._orphans is None:
            self._orphans = []
            self._orphans_held = self._orphan_candidates()
        if self._orphans_held and now >= self._orphans_retry_at:
            self._orphans_retry_at = now + ORPHAN_RETRY
            self._orphans_held = [path for path in self._orphans_held if not self._adopt(path)]
        budget = ORPHAN_RECORDS_PER_POLL
        while self._orphans and budget > 0:
            spool = self._orphans[0]
            record = spool.peek()
            if record is None:
                spool.close()
                self._orphans.pop(0)
                _remove_spool_dir(spool.directory)
                log.info("re-routed the spool of removed destination %s",
                         os.path.basename(spool.directory))
                continue
            budget -= 1
            data, points = record
            try:
                decoded = decode_record(data)
            except (DecodeError, ValueError) as exc:
                self._own["dropped.spool_corrupt"] += points
                log.error("a record in %s cannot be decoded (%s); dropped %d datapoints",
                          spool.directory, exc, points)
                spool.ack()
                continue
            suffix = self.path_suffix
            samples = [(None, path, value, ts) for path, value, ts in decoded]
            self._route(samples, [path + suffix for path, _, _ in decoded], now, False)
            self._own["rerouted"] += len(decoded)
            spool.ack()
        if self._orphans:
            return 0.0
        if self._orphans_held:
            return max(0.0, self._orphans_retry_at - now)
        self._orphans_done = True
        return IDLE_POLL

    def _orphan_candidates(self) -> list[str]:
        current = {conn.label for conn in self.connections}
        try:
            entries = sorted(os.listdir(self._spool_root))
        except OSError:
            return []
        return [os.path.join(self._spool_root, entry) for entry in entries
                if entry not in current and os.path.isdir(os.path.join(self._spool_root, entry))]

    def _adopt(self, path: str) -> bool:
        """Open a removed destination's spool for re-routing; False while another holds it."""
        entry = os.path.basename(path)
        spool = Spool(path, max(self._spool_max, 1 << 20), clock=self._clock,
                      name=f"removed destination {entry}")
        spool.counters = self._own
        try:
            if not spool.open():
                return False
        except SpoolUnavailable as exc:
            log.error("cannot re-route the spool in %s: %s", path, exc)
            return True
        if spool.points:
            log.warning("%s is the spool of a destination no longer configured: re-routing "
                        "its %d datapoints through the current destinations", path, spool.points)
        self._orphans.append(spool)  # type: ignore[union-attr]
        return True

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
            self._ratelog.warning("invalid", "dropped %d samples with a name, value or "
                                  "timestamp that cannot be written", count)

    def _refused(self, conns: list[GraphiteConnection], count: int) -> bool:
        """True (and counted) when none of `conns` takes data: no point encoding it."""
        for conn in conns:
            if conn.accepting:
                return False
        for conn in conns:
            conn.refuse(count)
        return True

    # -- encoding (the pickle client overrides these)

    def _deliver(self, mask: int, samples: Sequence[tuple], paths: Sequence[str], now: float,
                 front: bool) -> None:
        """Encode one part of a batch once and queue it on each connection `mask` names."""
        conns = self._groups[mask]
        if self._refused(conns, len(samples)):
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

    def _format_one_by_one(self, samples: Sequence[tuple], paths: Sequence[str]
                           ) -> tuple[str, int]:
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

    def _unframed_points(self, index: int | None = None) -> int:
        """Pickle: points not yet framed (for connection `index`, or all)."""
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

    Points wait in a partial message (one per destination mask) until it is full or
    PICKLE_MAX_AGE old; self-metrics are framed at once so they are not held behind user data.
    """

    name = "graphite_pickle"
    path_suffix = ""

    def __init__(self, cfg: Config, *, clock: Callable[[], float] = time.monotonic,
                 connect_timeout: float = CONNECT_TIMEOUT,
                 max_age: float = PICKLE_MAX_AGE) -> None:
        super().__init__(cfg, clock=clock, connect_timeout=connect_timeout)
        self._per_message = max(1, int(cfg.graphite_pickle_buffer_size))
        self._max_age = max_age
        self._partial: dict[int, list[tuple]] = {}  # mask -> points waiting for a frame
        self._partial_since: dict[int, float] = {}

    def _deliver(self, mask: int, samples: Sequence[tuple], paths: Sequence[str], now: float,
                 front: bool) -> None:
        if self._refused(self._groups[mask], len(samples)):
            return
        points, skipped = self._points(samples, paths)
        self._invalid(skipped)
        if front:
            self._frame(mask, points, front=True)
            return
        partial = self._partial.get(mask)
        if partial is None:
            partial = self._partial[mask] = []
            self._partial_since[mask] = now
        partial.extend(points)
        size = self._per_message
        if len(partial) >= size:
            whole = len(partial) - len(partial) % size
            self._frame(mask, partial[:whole])
            del partial[:whole]
            self._partial_since[mask] = now
            if not partial:
                del self._partial[mask]

    def _points(self, samples: Sequence[tuple], paths: Sequence[str]) -> tuple[list[tuple], int]:
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

    def _frame(self, mask: int, points: list[tuple], front: bool = False) -> None:
        size = self._per_message
        conns = self._groups[mask]
        for start in range(0, len(points), size):
            part = points[start : start + size]
            data = encode_pickle_trusted(part)
            for conn in conns:
                conn.add(data, len(part), front)

    def _frame_due(self, now: float) -> float:
        wait = IDLE_POLL
        for mask in list(self._partial):
            due = self._partial_since[mask] + self._max_age
            if now >= due:
                self._frame(mask, self._partial.pop(mask))
            else:
                wait = min(wait, due - now)
        return wait

    def _frame_all(self) -> None:
        for mask in list(self._partial):
            self._frame(mask, self._partial.pop(mask))

    def _unframed_points(self, index: int | None = None) -> int:
        if index is None:
            return sum(map(len, self._partial.values()))
        bit = 1 << index
        return sum(len(points) for mask, points in self._partial.items() if mask & bit)


class _Groups(dict):
    """Destination mask -> the connections it names, built on first use."""

    def __init__(self, connections: list[GraphiteConnection]) -> None:
        super().__init__()
        self._connections = connections

    def __missing__(self, mask: int) -> list[GraphiteConnection]:
        conns = self[mask] = [c for i, c in enumerate(self._connections) if mask >> i & 1]
        return conns


def _masks(select: Callable[[str], Indexes], suffix_len: int, now: float
           ) -> TwoGenerationCache[str, int]:
    """Path (with the encoder's suffix) -> bit mask of the destinations `select` places it on.

    Kept like PathCache: two generations, rotated every CACHE_GENERATION seconds or after
    CACHE_LIMIT paths, so names gone quiet are forgotten and memory comes back.
    """
    cut = -suffix_len if suffix_len else None

    def mask_of(path: str) -> int:
        mask = 0
        for index in select(path[:cut]):
            mask |= 1 << index
        return mask

    return TwoGenerationCache(mask_of, CACHE_LIMIT, period=CACHE_GENERATION, now=now)
