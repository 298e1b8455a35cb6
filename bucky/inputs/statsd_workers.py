"""StatsD beyond one process: worker `index` of `statsd_workers`, each owning a share of the keys.

The first worker reads the UDP socket, every worker accepts TCP clients; each routes the lines it
reads to the worker owning their metric name (bucky.protocol.statsd_route) and aggregates its own
share with a StatsdInput. One reader per sender (and FIFO pipes) keeps the order of a sender's
lines for a key, which gauge deltas need. Lines for other workers travel in batches over the mesh
channels the supervisor creates (worker i -> j; bucky.daemon.plan.statsd_mesh), flushed every
loop turn and at once near a flush. Every worker flushes on the same grid. With one worker this
is a StatsdInput plus the management port.

Exactness with N workers:
- The reference's own statistics are merged by worker 0 (bucky.aggregate.statsd_merge): the
  others send theirs for each flush timestamp. A datagram counts as one packet, where it was read.
- `statsd_max_keys` is split evenly (ceil(max / N) per worker): the total is never exceeded.
- Saved gauges and reload state: bucky.inputs.statsd_handover.
- SIGTERM and reload: each worker drains the socket, sends what it routed plus an end marker to
  every peer, and waits (bounded) for theirs before its final flush or its state export.
- Management interface (`statsd_admin_port`): served by worker 0 (bucky.inputs.statsd_admin).

The mesh channels are given (duck-typed: `writer(max_bytes)`, `reader()`), never imported: this
package does not import bucky.daemon.
"""

from __future__ import annotations

import dataclasses
import math
import select
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from bucky.aggregate.statsd import StatsdSettings, own_stat_names
from bucky.aggregate.statsd_merge import StatsMerger
from bucky.config import Config
from bucky.inputs.base import InputHandler, Stream
from bucky.inputs.statsd import StatsdInput, tcp_stream
from bucky.inputs.statsd_admin import ADMIN_STREAM, AdminStream, WorkerAdmin
from bucky.inputs.statsd_handover import (
    adopt_states,
    gauge_file,
    predecessor_states,
    restore_all_gauges,
)
from bucky.protocol.statsd_route import WorkerRouter

_MAX_PENDING_LINES = 20_000  # routed lines held before they go on at once
_MESH_MAX_AGE = 0.05  # seconds routed lines may wait for more before going to their worker
_MESH_NEAR_FLUSH = 0.25  # this close to a flush, they go at once
_MESH_QUEUE_BYTES = 64 * 1024 * 1024


class MeshWriter(Protocol):
    def put(self, obj: object) -> bool: ...
    def pump(self) -> None: ...
    def flush(self, deadline: float) -> Any: ...


class MeshReader(Protocol):
    def fileno(self) -> int: ...
    def read(self) -> list[object]: ...


class MeshChannel(Protocol):
    """One direction between two workers (bucky.daemon.channels.Channel in the daemon)."""

    def writer(self, max_bytes: int) -> MeshWriter: ...
    def reader(self) -> MeshReader: ...


@dataclasses.dataclass
class StatsdMesh:
    """What worker `index` is given: channels to (out) and from (inp) every peer."""

    index: int
    workers: int
    out: list[MeshChannel | None]  # out[j]: index -> j (None for j == index)
    inp: list[MeshChannel]  # from every other worker


class _SplitSink:
    """Between the local StatsdInput and the real sink: takes the own statistics out of every
    flush (N > 1), so worker 0 can emit them once, merged."""

    def __init__(self, sink: Any, names: frozenset[str],
                 report: Callable[[int, dict[str, float]], None]) -> None:
        self._sink = sink
        self._names = names
        self._report = report

    def extend(self, samples: list[tuple]) -> None:
        if not samples:
            return
        names = self._names
        own = {s[1]: s[2] for s in samples if s[1] in names}
        user = [s for s in samples if s[1] not in names] if own else samples
        if user:
            self._sink.extend(user)
        if own:
            self._report(samples[0][3], own)

    def append(self, sample: tuple) -> None:
        self.extend([sample])


class StatsdWorker(InputHandler):
    """One StatsD aggregator process (worker `index` of `workers`)."""

    name = "statsd"

    def __init__(self, cfg: Config, sink: Any, state: object = None, mesh: StatsdMesh | None = None,
                 clock: Callable[[], float] = time.time,
                 mono_clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        # The clocks read for what arrives over the mesh (tests inject their own).
        self._clock = clock
        self._mono = mono_clock
        self.workers = n = mesh.workers if mesh is not None else 1
        self.index = i = mesh.index if mesh is not None else 0
        self.router = WorkerRouter(n)
        self._sink = sink
        max_keys = int(cfg.statsd_max_keys or 0)
        local_cfg = dataclasses.replace(
            cfg,
            statsd_max_keys=math.ceil(max_keys / n) if max_keys else 0,
            statsd_gauges_savefile=gauge_file(cfg.statsd_gauges_savefile, i, n),
        )
        states = predecessor_states(state)
        own_names = own_stat_names(StatsdSettings.from_config(local_cfg))
        target = _SplitSink(sink, own_names.all, self._report) if n > 1 else sink
        self.local_input = StatsdInput(local_cfg, target, None)
        self.counters: Counter[str] = self.local_input.counters
        if states:  # the predecessors' gauges are newer than any file
            self.local_input.restored_gauges = None
            adopt_states(self.local_input, states, i, n, self._owned)
        elif cfg.statsd_persistent_gauges:
            restore_all_gauges(self.local_input, cfg, i, n, self._owned)
        # Lines routed per worker (this worker's own too, until the burst ends), control messages.
        self._out: list[list[bytes]] = [[] for _ in range(n)]
        self._out_control: list[list[tuple]] = [[] for _ in range(n)]
        self._pending_now = 0.0
        self._pending_mono = 0.0
        self._pending_packets = 0
        self._last_send = 0.0
        self._writers: list[MeshWriter | None] = [None] * n
        self._readers: list[MeshReader] = []
        if mesh is not None and n > 1:
            self._writers = [ch.writer(_MESH_QUEUE_BYTES) if ch is not None else None
                             for ch in mesh.out]
            self._readers = [ch.reader() for ch in mesh.inp]
        self._eof: set[int] = set()
        self._final: set[int] = set()
        self._handed_over = False
        self._merger: StatsMerger | None = None
        if n > 1 and i == 0:
            wait = min(float(cfg.statsd_flush_time) / 2, 2.0)
            self._merger = StatsMerger(own_names, float(cfg.statsd_flush_time), n, wait,
                                       sink.extend, self.counters)
        self._started = clock()
        self._last_msg = self._started
        self.admin = WorkerAdmin(cfg, n, lambda: self.local_input.aggregator,
                                 lambda: self._last_msg, self._started, self._ask_others,
                                 self.counters, self.router.first_seen)
        self._admin_streams: set[AdminStream] = set()
        if n == 1:
            self.handle = self._handle_one  # type: ignore[method-assign]

    # --- the handler contract ------------------------------------------------------------------

    def handle(self, data: bytes, addr: object, now: float, mono: float | None = None) -> None:
        """Route only: this worker's lines wait in _out[index] until the end of the burst (the
        next tick, or a datagram read at another time), then go to the aggregator in one call."""
        if now != self._pending_now:
            self._ingest_pending()
            self._pending_now = now
            self._pending_mono = now if mono is None else mono
            self._last_msg = now
        self._pending_packets += 1
        out = self._out
        for j, lines in enumerate(self.router.split(data)):
            if lines:
                out[j].extend(lines)
        if len(out[self.index]) >= _MAX_PENDING_LINES:
            self._ingest_pending()

    def _flush_near(self) -> bool:
        return self._pending_mono >= self.local_input.next_flush - _MESH_NEAR_FLUSH

    def _ingest_pending(self) -> None:
        packets = self._pending_packets
        own = self._out[self.index]
        if not packets and not own:
            return
        self._out[self.index] = []
        self._pending_packets = 0
        # a datagram is counted once, where it was read
        self.local_input.ingest(b"\n".join(own), self._pending_now, self._pending_mono, packets)
        for j in range(self.workers):
            if j != self.index and len(self._out[j]) >= _MAX_PENDING_LINES:
                self._send(j)
        if self._flush_near():
            self._send_all()

    def _handle_one(self, data: bytes, addr: object, now: float, mono: float | None = None
                    ) -> None:
        self._last_msg = now
        self.local_input.handle(data, addr, now, mono)

    def handle_lines(self, lines: list[bytes], now: float, mono: float | None = None) -> None:
        self._last_msg = now
        if self.workers == 1:
            self.local_input.handle_lines(lines, now, mono)
            return
        self._ingest_pending()
        parts = self.router.split_lines(lines)
        me = self.index
        self.local_input.handle_lines(parts[me], now, mono)
        for j, part in enumerate(parts):
            if part and j != me:
                self._out[j].extend(part)

    def tick(self, now: float, mono: float | None = None) -> None:
        if mono is None:
            mono = now
        self._ingest_pending()
        self.local_input.tick(now, mono)
        if self.workers > 1:
            # Routed lines travel in batches (one pipe write and one wake-up of the peer per
            # batch, not per datagram), at once when a flush is near so they land in it.
            if (mono - self._last_send >= _MESH_MAX_AGE
                    or mono >= self.local_input.next_flush - _MESH_NEAR_FLUSH):
                self._last_send = mono
                self._send_all()
            else:
                for w in self._writers:
                    if w is not None:
                        w.pump()
            if self._merger is not None:
                self._merger.poll(now)
        self.admin.expire(now)

    def extra_fds(self) -> list[tuple[int, Callable[[Any], None]]]:
        """Descriptors the process loop should watch, with what to call when readable."""
        return [(r.fileno(), self._make_cb(r)) for r in self._readers]

    def open_stream(self, kind: str, addr: Any) -> Stream:
        """A TCP client (lines, every worker) or a management connection (worker 0)."""
        if kind == ADMIN_STREAM:
            return AdminStream(self.admin.answer, self.counters, self._flush_if_due,
                               self._admin_streams)
        return tcp_stream(kind, self.handle_lines, self.cfg, self.counters)

    def close(self, now: float, mono: float | None = None) -> None:
        if self._handed_over:  # a reload: the successor has everything
            return
        self._ingest_pending()
        self._exchange_eof(now)
        self.local_input.close(now, self._mono() if mono is None else mono)
        if self.workers > 1:
            self._send_all()
            if self.index != 0:
                self._queue_control(0, ("final", self.index))
                self._send_all()
            else:
                self._wait(lambda: len(self._final) >= self.workers - 1)
                assert self._merger is not None
                self._merger.poll(self._clock(), force=True)
        self.admin.expire(self._clock(), force=True)
        for w in self._writers:
            if w is not None:
                w.flush(time.monotonic() + self._budget())

    def carry_state(self) -> object:
        self._ingest_pending()
        self._exchange_eof(self._clock())
        self._handed_over = True
        return self.local_input.carry_state()

    # --- mesh ----------------------------------------------------------------------------------

    def _make_cb(self, reader: MeshReader) -> Callable[[Any], None]:
        def on_readable(_fd: object) -> None:
            self._receive(reader.read(), self._clock(), self._mono())

        return on_readable

    def _receive(self, objs: list[object], now: float, mono: float) -> None:
        self._ingest_pending()
        chunks: list[bytes] = []
        controls: list[tuple] = []
        for obj in objs:
            if type(obj) is not list:
                self.counters["mesh.bad_frames"] += 1
                continue
            for item in obj:
                if type(item) is bytes:
                    chunks.append(item)
                elif type(item) is tuple and item:
                    controls.append(item)
        if chunks:  # one aggregator call for everything that arrived
            # counted as no datagram: a datagram is counted where it was read, not here
            self.local_input.ingest(b"\n".join(chunks), now, mono, 0)
            self.counters["mesh.chunks_in"] += len(chunks)
        for item in controls:
            self._control(item, now)

    def _control(self, item: tuple, now: float) -> None:
        kind = item[0]
        if kind == "eof":
            self._eof.add(item[1])
        elif kind == "final":
            self._final.add(item[1])
        elif kind == "stats" and self._merger is not None:
            self._merger.add(item[1], item[2], item[3], now)
        elif kind == "q":
            _, qid, cmd, params = item
            self._queue_control(0, ("a", qid, self.index, self.admin.local_answer(cmd, params)))
            self._send_all()
        elif kind == "a":
            self.admin.part(item[1], item[3], now)

    def _queue_control(self, j: int, item: tuple) -> None:
        self._out_control[j].append(item)
        self._send(j)

    def _send(self, j: int) -> None:
        writer = self._writers[j]
        if writer is None or j == self.index:
            return
        lines, controls = self._out[j], self._out_control[j]
        if not lines and not controls:
            return
        items: list[Any] = [b"\n".join(lines)] if lines else []
        items.extend(controls)
        self._out[j], self._out_control[j] = [], []
        if not writer.put(items):
            self.counters["mesh.dropped_batches"] += 1
            self.counters["mesh.dropped_lines"] += len(lines)
        else:
            self.counters["mesh.batches_out"] += 1

    def _send_all(self) -> None:
        for j in range(self.workers):
            if j != self.index and (self._out[j] or self._out_control[j]):
                self._send(j)
            w = self._writers[j]
            if w is not None:
                w.pump()

    def _ask_others(self, qid: int, cmd: str, params: list[str]) -> None:
        for j in range(1, self.workers):
            self._queue_control(j, ("q", qid, cmd, params))

    def _flush_if_due(self) -> None:
        """Before each management command: a due flush goes first, whatever the client asks."""
        mono = self._mono()
        if mono >= self.local_input.next_flush:
            self.tick(self._clock(), mono)

    def _owned(self, key: str) -> bool:
        return self.router.owner_of_key(key) == self.index

    def _budget(self) -> float:
        return max(float(self.cfg.process_join_timeout) * 0.2, 0.3)

    def _wait(self, done: Callable[[], bool]) -> bool:
        """Read the mesh until done() or the budget is spent (shutdown only)."""
        deadline = time.monotonic() + self._budget()
        fds = {r.fileno(): r for r in self._readers}
        while not done():
            self._send_all()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.counters["mesh.shutdown_timeouts"] += 1
                return False
            ready, _, _ = select.select(list(fds), [], [], min(remaining, 0.05))
            for fd in ready:
                self._receive(fds[fd].read(), self._clock(), self._mono())
        return True

    def _exchange_eof(self, now: float) -> None:
        if self.workers <= 1:
            return
        for j in range(self.workers):
            if j != self.index:
                self._queue_control(j, ("eof", self.index))
        self._send_all()
        self._wait(lambda: len(self._eof) >= self.workers - 1)

    def _report(self, ts: int, values: dict[str, float]) -> None:
        if self._merger is not None:
            self._merger.add(self.index, ts, values, self._clock())
        else:
            self._queue_control(0, ("stats", self.index, ts, values))
