"""StatsD beyond one process: N workers that each own a share of the keys, and a forwarding proxy.

`make_statsd_input` is the StatsD input the daemon runs (children.INPUT_HANDLERS["statsd"]):

- `statsd_forward` set: StatsdProxyInput. Nothing is aggregated; every line goes to the node that
  proxy.js's ring (bucky.protocol.statsd_ring) gives its key, packed into datagrams of at most
  `statsd_forward_packet_size` bytes. Nodes with an adminport are health checked as proxy.js
  does and leave / rejoin the ring.
- otherwise StatsdWorker, worker `index` of `statsd_workers` (1 = one process, as before). The
  first worker reads the UDP socket, every worker accepts TCP clients; each routes the lines it
  reads to the worker owning their metric name (bucky.protocol.statsd_route) and aggregates its
  own share with a StatsdInput. One reader per sender (and FIFO pipes) keeps the order of a
  sender's lines for a key, which gauge deltas need.
  Lines for other workers travel in batches over the mesh channels the supervisor creates
  (worker i -> j), flushed every loop turn. Every worker flushes on the same grid.

Exactness with N workers:
- The reference's own statistics (bad_lines_seen, packets_received, metrics_received, numStats,
  timestamp_lag, processing_time) are merged by worker 0: the others send theirs for each flush
  timestamp; worker 0 emits once per timestamp when all have reported (or after
  min(flush_time / 2, 2 s)): counters and numStats summed (the own counters counted once),
  timestamp_lag and processing_time the largest. A datagram counts as one packet, where it was read.
- `statsd_max_keys` is split evenly (ceil(max / N) per worker): the total is never exceeded.
- Saved gauges: worker i of N > 1 writes `<statsd_gauges_savefile>.w<i+1>`, N = 1 the file itself;
  at start every worker reads the file and every `.w<k>` file, keeps the keys it owns, the newest
  update winning, so no gauge is lost when statsd_workers changes.
- SIGTERM and reload: each worker drains the socket, sends what it routed plus an end marker to
  every peer, and waits (bounded) for theirs before its final flush or its state export. A reload
  hands every worker the states of all old workers; each takes the keys it owns.
- Management interface (`statsd_admin_port`): served by worker 0; `counters`, `timers`, `gauges`,
  `del*` and `stats` are asked of every worker over the mesh and answered merged.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bucky.aggregate.statsd import StatsdAggregator, StatsdSettings
from bucky.daemon.channels import Channel, ChannelReader, ChannelWriter
from bucky.daemon.statsd_net import AdminServer, HealthChecker
from bucky.errors import BuckyError, DecodeError
from bucky.inputs.base import InputHandler, Stream
from bucky.inputs.statsd import StatsdInput, decode_gauges, tcp_stream
from bucky.protocol import statsd_admin as admin
from bucky.protocol.statsd_ring import HashRing
from bucky.protocol.statsd_route import ForwardRouter, WorkerRouter, pack_lines

log = logging.getLogger(__name__)

_MAX_PENDING_LINES = 20_000  # routed lines held before they go on at once
_MESH_MAX_AGE = 0.05  # seconds routed lines may wait for more before going to their worker
_MESH_NEAR_FLUSH = 0.25  # this close to a flush, they go at once
_MESH_QUEUE_BYTES = 64 * 1024 * 1024
_ADMIN_TIMEOUT = 1.0  # seconds worker 0 waits for the other workers' part of an answer
_MAX_GAUGE_FILES = 64


@dataclasses.dataclass
class StatsdMesh:
    """What the supervisor gives worker `index`: channels to (out) and from (in) every peer."""

    index: int
    workers: int
    out: list[Channel | None]  # out[j]: index -> j (None for j == index)
    inp: list[Channel]  # from every other worker


def mesh_from_spec(cfg: Any, mesh: dict) -> StatsdMesh:
    """The supervisor's {"title": t, "out": {title: Channel}, "in": {title: Channel}} (see
    bucky.daemon.plan.statsd_mesh) -> this worker's StatsdMesh."""
    n = int(cfg.statsd_workers)
    titles = [f"statsd.{i + 1}" for i in range(n)]
    index = titles.index(mesh["title"])
    out = [mesh["out"].get(t) if i != index else None for i, t in enumerate(titles)]
    inp = [mesh["in"][t] for i, t in enumerate(titles) if i != index]
    return StatsdMesh(index, n, out, inp)


def make_statsd_input(cfg: Any, sink: Any, state: object = None,
                      mesh: StatsdMesh | dict | None = None) -> Any:
    if cfg.statsd_forward:
        return StatsdProxyInput(cfg, sink, state)
    if isinstance(mesh, dict):
        mesh = mesh_from_spec(cfg, mesh)
    return StatsdWorker(cfg, sink, state, mesh)


def gauge_file(cfg: Any, index: int, workers: int) -> str:
    base = cfg.statsd_gauges_savefile
    return base if workers <= 1 else f"{base}.w{index + 1}"


def own_stat_names(cfg: Any) -> tuple[set[str], dict[str, str]]:
    """The names of the reference's own statistics under this configuration, and which rate
    belongs to which count, read from the output of a probe aggregator that saw one bad line
    (so they follow the aggregator's naming, whatever it is)."""
    settings = dataclasses.replace(StatsdSettings.from_config(cfg), flush_time=4.0)
    agg = StatsdAggregator(settings)
    agg.tick(40.0)
    agg.tick(44.0)
    agg.ingest(b"x", 45.0)  # one packet, one line, one bad line
    flush = agg.tick(48.0)
    names = {s[1] for s in flush}
    names.add(agg.self_sample("processing_time", 0.0, 0)[1])
    rates = [s[1] for s in flush if s[2] == 0.25]
    counts = [s[1] for s in flush if s[2] == 1 and "numStats" not in s[1]]
    return names, dict(zip(rates, counts, strict=False))


class _StatsMerger:
    """Worker 0's merge of the own statistics of every worker, per flush timestamp."""

    def __init__(self, names: set[str], rates: dict[str, str], flush_time: float, workers: int,
                 wait: float, emit: Callable[[list[tuple]], None], counters: Counter[str]
                 ) -> None:
        self.workers = workers
        self._rates = rates  # rate name -> its count's name: rate = merged count / flush_time
        self._flush_time = flush_time
        self.wait = wait
        self._emit = emit
        self.counters = counters
        self._max = {n for n in names if "timestamp_lag" in n or "processing_time" in n}
        self._num = {n for n in names if "numStats" in n}
        self._pending: dict[int, tuple[float, set[int], list[dict[str, float]]]] = {}

    def add(self, worker: int, ts: int, values: dict[str, float], now: float) -> None:
        first, seen, parts = self._pending.setdefault(ts, (now, set(), []))
        seen.add(worker)
        parts.append(values)
        if len(seen) >= self.workers:
            self._out(ts)

    def poll(self, now: float, force: bool = False) -> None:
        for ts, (first, seen, _) in sorted(self._pending.items()):
            if force or now - first >= self.wait:
                if len(seen) < self.workers:
                    self.counters["stats_merge_incomplete"] += 1
                self._out(ts)

    def _out(self, ts: int) -> None:
        _, _, parts = self._pending.pop(ts)
        merged: dict[str, float] = {}
        own_counters: set[str] = set()
        lag = False
        users = 0.0
        for values in parts:
            counted = 0
            lag_here = False
            for name, value in values.items():
                if name in self._num:
                    continue
                if name in self._max:
                    merged[name] = max(merged.get(name, value), value)
                    if "timestamp_lag" in name:
                        lag_here = True
                else:
                    merged[name] = merged.get(name, 0.0) + value
                    own_counters.add(name)
                    counted += 1
            lag = lag or lag_here
            for name in self._num & values.keys():
                users += values[name] - counted / 2 - (1 if lag_here else 0)
        for rate, count in self._rates.items():
            if rate in merged and count in merged:
                merged[rate] = merged[count] / self._flush_time
        samples = [(None, name, value, ts) for name, value in merged.items()]
        for name in sorted(self._num & {n for v in parts for n in v}):
            total = users + len(own_counters) / 2 + (1 if lag else 0)
            samples.append((None, name, int(total) if total.is_integer() else total, ts))
        self._emit(samples)


class _SplitSink:
    """Between the inner StatsdInput and the real sink: takes the own statistics out of every
    flush (N > 1), so worker 0 can emit them once, merged."""

    def __init__(self, sink: Any, names: set[str], report: Callable[[int, dict[str, float]], None]
                 ) -> None:
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


def _states(state: object) -> list[dict]:
    """A predecessor's state: one StatsdInput state, or the states of every old worker."""
    if isinstance(state, dict) and "statsd-workers" in state:
        return [s for s in state["statsd-workers"] if isinstance(s, dict)]
    if isinstance(state, dict):
        return [state]
    return []


class StatsdWorker(InputHandler):
    """One StatsD aggregator process (worker `index` of `workers`)."""

    name = "statsd"

    def __init__(self, cfg: Any, sink: Any, state: object = None, mesh: StatsdMesh | None = None,
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
        inner_cfg = dataclasses.replace(
            cfg,
            statsd_max_keys=math.ceil(max_keys / n) if max_keys else 0,
            statsd_gauges_savefile=gauge_file(cfg, i, n),
        )
        self._names, rates = own_stat_names(cfg) if n > 1 else (set(), {})
        target = _SplitSink(sink, self._names, self._report) if n > 1 else sink
        states = _states(state)
        self.inner = StatsdInput(inner_cfg, target, None)
        self.counters: Counter[str] = self.inner.counters
        if states:  # the predecessors' gauges are newer than any file
            self.inner._restored = None
            self._adopt_all(states)
        elif cfg.statsd_persistent_gauges:
            self._restore_all_gauges()
        self._agg = self.inner._agg
        # Lines routed per worker (this worker's own too, until the burst ends), control messages.
        self._out: list[list[bytes]] = [[] for _ in range(n)]
        self._out_ctl: list[list[tuple]] = [[] for _ in range(n)]
        self._pending_now = 0.0
        self._pending_mono = 0.0
        self._pending_packets = 0
        self._last_send = 0.0
        self._writers: list[ChannelWriter | None] = [None] * n
        self._readers: list[ChannelReader] = []
        if mesh is not None and n > 1:
            self._writers = [ch.writer(_MESH_QUEUE_BYTES) if ch is not None else None
                             for ch in mesh.out]
            self._readers = [ch.reader() for ch in mesh.inp]
        self._eof: set[int] = set()
        self._final: set[int] = set()
        self._handed_over = False
        self._merger = None
        if n > 1 and i == 0:
            wait = min(float(cfg.statsd_flush_time) / 2, 2.0)
            self._merger = _StatsMerger(self._names, rates, float(cfg.statsd_flush_time), n,
                                        wait, sink.extend, self.counters)
        self._started = clock()
        self._last_msg = self._started
        self._health = "up"
        self._queries: dict[int, tuple[int, str, list[str], list[Any], float]] = {}
        self._query_id = 0
        self.admin: AdminServer | None = None
        if cfg.statsd_admin_port and i == 0:
            self.admin = AdminServer(cfg.statsd_admin_ip, cfg.statsd_admin_port, self._admin)
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
        return self._pending_mono >= self._agg.next_flush - _MESH_NEAR_FLUSH

    def _ingest_pending(self) -> None:
        packets = self._pending_packets
        own = self._out[self.index]
        if not packets and not own:
            return
        self._out[self.index] = []
        self._pending_packets = 0
        # counts one packet
        self.inner.handle(b"\n".join(own), None, self._pending_now, self._pending_mono)
        self._agg._packets += packets - 1  # a packet is counted once, where it was read
        for j in range(self.workers):
            if j != self.index and len(self._out[j]) >= _MAX_PENDING_LINES:
                self._send(j)
        if self._flush_near():
            self._send_all()

    def _handle_one(self, data: bytes, addr: object, now: float, mono: float | None = None
                    ) -> None:
        self._last_msg = now
        self.inner.handle(data, addr, now, mono)

    def open_stream(self, kind: str, addr: Any) -> Stream:
        return tcp_stream(kind, self.handle_lines, self.cfg, self.counters)

    def handle_lines(self, lines: list[bytes], now: float, mono: float | None = None) -> None:
        self._last_msg = now
        if self.workers == 1:
            self.inner.handle_lines(lines, now, mono)
            return
        self._ingest_pending()
        parts = self.router.split_lines(lines)
        me = self.index
        self.inner.handle_lines(parts[me], now, mono)
        for j, part in enumerate(parts):
            if part and j != me:
                self._out[j].extend(part)

    def tick(self, now: float, mono: float | None = None) -> None:
        if mono is None:
            mono = now
        self._ingest_pending()
        self.inner.tick(now, mono)
        if self.workers > 1:
            # Routed lines travel in batches (one pipe write and one wake-up of the peer per
            # batch, not per datagram), at once when a flush is near so they land in it.
            if (mono - self._last_send >= _MESH_MAX_AGE
                    or mono >= self._agg.next_flush - _MESH_NEAR_FLUSH):
                self._last_send = mono
                self._send_all()
            else:
                for w in self._writers:
                    if w is not None:
                        w.pump()
            if self._merger is not None:
                self._merger.poll(now)
        if self.admin is not None:
            self.admin.poll(now)
        self._expire_queries(now, force=False)

    def extra_fds(self) -> list[tuple[int, Callable[[Any], None]]]:
        """Descriptors the process loop should watch, with what to call when readable."""
        return [(r.fileno(), self._make_cb(r)) for r in self._readers]

    def close(self, now: float, mono: float | None = None) -> None:
        if self._handed_over:  # a reload: the successor has everything
            if self.admin is not None:
                self.admin.close()
                self.admin = None
            return
        self._ingest_pending()
        self._exchange_eof(now)
        self.inner.close(now, self._mono() if mono is None else mono)
        if self.workers > 1:
            self._send_all()
            if self.index != 0:
                self._ctl(0, ("final", self.index))
                self._send_all()
            else:
                self._wait(lambda: len(self._final) >= self.workers - 1)
                assert self._merger is not None
                self._merger.poll(self._clock(), force=True)
        if self.admin is not None:
            self.admin.close()
            self.admin = None
        for w in self._writers:
            if w is not None:
                w.flush(time.monotonic() + self._budget())

    def carry_state(self) -> object:
        self._ingest_pending()
        self._exchange_eof(self._clock())
        if self.admin is not None:
            self.admin.close()
            self.admin = None
        self._handed_over = True
        return self.inner.carry_state()

    # --- mesh ----------------------------------------------------------------------------------

    def _make_cb(self, reader: ChannelReader) -> Callable[[Any], None]:
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
            self.inner.handle(b"\n".join(chunks), None, now, mono)
            self._agg._packets -= 1  # a packet is counted where it was read, not here
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
            self._ctl(0, ("a", qid, self.index, self._local_answer(cmd, params)))
            self._send_all()
        elif kind == "a":
            self._query_part(item[1], item[3], now)

    def _ctl(self, j: int, item: tuple) -> None:
        self._out_ctl[j].append(item)
        self._send(j)

    def _send(self, j: int) -> None:
        writer = self._writers[j]
        if writer is None or j == self.index:
            return
        lines, controls = self._out[j], self._out_ctl[j]
        if not lines and not controls:
            return
        items: list[Any] = [b"\n".join(lines)] if lines else []
        items.extend(controls)
        self._out[j], self._out_ctl[j] = [], []
        if not writer.put(items):
            self.counters["mesh.dropped_batches"] += 1
            self.counters["mesh.dropped_lines"] += len(lines)
        else:
            self.counters["mesh.batches_out"] += 1

    def _send_all(self) -> None:
        for j in range(self.workers):
            if j != self.index and (self._out[j] or self._out_ctl[j]):
                self._send(j)
            w = self._writers[j]
            if w is not None:
                w.pump()

    def _budget(self) -> float:
        return max(float(self.cfg.process_join_timeout) * 0.2, 0.3)

    def _wait(self, done: Callable[[], bool]) -> bool:
        """Read the mesh until done() or the budget is spent (shutdown only)."""
        import select

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
                self._ctl(j, ("eof", self.index))
        self._send_all()
        self._wait(lambda: len(self._eof) >= self.workers - 1)

    def _report(self, ts: int, values: dict[str, float]) -> None:
        if self._merger is not None:
            self._merger.add(self.index, ts, values, self._clock())
        else:
            self._ctl(0, ("stats", self.index, ts, values))

    # --- state ---------------------------------------------------------------------------------

    def _owned(self, key: str) -> bool:
        return self.router.owner_of_key(key) == self.index

    def _adopt_all(self, states: list[dict]) -> None:
        agg = self.inner._agg
        for k, state in enumerate(states):
            try:
                old = state["aggregator"]
                mine = self._filter_state(old, take_own=(k == self.index)
                                          or (self.index == 0 and k >= self.workers))
                agg.import_state(mine)
                if k == self.index:
                    self.counters.update(state.get("counters") or {})
                    restored = state.get("restored")
                    if restored:
                        self.inner._restored = {key: v for key, v in restored.items()
                                                if self._owned(key)}
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                log.error("StatsD: cannot adopt a previous state (%s); going on without it", exc)
                self.counters["errors.state"] += 1

    def _filter_state(self, old: dict, take_own: bool) -> dict:
        owned = self._owned
        new = dict(old)
        for field in ("counters", "timers", "timer_extra", "gauges", "gauge_updated", "sets"):
            new[field] = {k: v for k, v in old[field].items() if owned(k)}
        new["gauges_unsent"] = [k for k in old["gauges_unsent"] if owned(k)]
        if not take_own:
            new["own"] = (0, 0, 0)
            new["totals"] = {}
        return new

    def _restore_all_gauges(self) -> None:
        """Every gauge file (N = 1's and every worker's), newest update winning, owned keys."""
        directory = self.cfg.directory
        base = self.cfg.statsd_gauges_savefile
        names = [base] + [f"{base}.w{k}" for k in range(1, _MAX_GAUGE_FILES + 1)]
        merged: dict[str, tuple[float, float | None]] = dict(self.inner._restored or {})
        for name in names:
            path = os.path.join(directory, name)
            if name == gauge_file(self.cfg, self.index, self.workers) or not os.path.exists(path):
                continue  # the inner input read (or moved aside) its own file
            try:
                with open(path, "rb") as f:
                    gauges, _ = decode_gauges(f.read())
            except (OSError, DecodeError) as exc:
                log.warning("StatsD: cannot read saved gauges %s: %s", path, exc)
                self.counters["errors.gauges_load"] += 1
                continue
            for key, (value, updated) in gauges.items():
                old = merged.get(key)
                if old is None or (updated or 0.0) > (old[1] or 0.0):
                    merged[key] = (value, updated)
        self.inner._restored = {k: v for k, v in merged.items() if self._owned(k)} or None

    # --- management interface ------------------------------------------------------------------

    def _admin(self, cid: int, line: str, now: float) -> str | None:
        cmd, params = admin.parse_command(line)
        if cmd == "help":
            return admin.HELP
        if cmd == "health":
            self._health = admin.health_command(self._health, params)
            return admin.health_answer(self._health)
        if cmd == "config":
            return admin.config_answer(_statsd_options(self.cfg))
        if cmd not in ("stats", "counters", "timers", "gauges",
                       "delcounters", "deltimers", "delgauges"):
            return "ERROR\n"
        parts = [self._local_answer(cmd, params)]
        if self.workers == 1:
            return self._combine(cmd, params, parts, now)
        self._query_id += 1
        qid = self._query_id
        self._queries[qid] = (cid, cmd, params, parts, now + _ADMIN_TIMEOUT)
        for j in range(1, self.workers):
            self._ctl(j, ("q", qid, cmd, params))
        return None

    def _query_part(self, qid: int, part: Any, now: float) -> None:
        query = self._queries.get(qid)
        if query is None:
            return
        query[3].append(part)
        if len(query[3]) >= self.workers:
            self._answer_query(qid, now)

    def _expire_queries(self, now: float, force: bool) -> None:
        for qid, query in list(self._queries.items()):
            if force or now >= query[4]:
                self.counters["admin.incomplete_answers"] += 1
                self._answer_query(qid, now)

    def _answer_query(self, qid: int, now: float) -> None:
        cid, cmd, params, parts, _ = self._queries.pop(qid)
        if self.admin is not None:
            self.admin.reply(cid, self._combine(cmd, params, parts, now))

    def _local_answer(self, cmd: str, params: list[str]) -> Any:
        agg = self._agg
        if cmd == "stats":
            return {"last_msg_seen": self._last_msg,
                    "bad_lines_seen": agg.counts().get("bad_lines", 0)}
        if cmd == "counters":
            own = {}
            stats = self.cfg.statsd_prefix_stats
            for field, value in (("bad_lines_seen", agg._bad_lines),
                                 ("packets_received", agg._packets),
                                 ("metrics_received", agg._lines)):
                own[f"{stats}.{field}" if stats else field] = value
            return [own, dict(agg._counters)]
        if cmd == "timers":
            return dict((k, list(v)) for k, v in agg._timers.items())
        if cmd == "gauges":
            return dict(agg._gauges)
        table: dict = {"delcounters": agg._counters, "deltimers": agg._timers,
                       "delgauges": agg._gauges}[cmd]
        deleted: dict[str, list[str]] = {}
        for bucket in params:
            names = admin.existing_stats(list(table), bucket)
            deleted[bucket] = names
            for name in names:
                table.pop(name, None)
                if cmd == "deltimers":
                    agg._timer_extra.pop(name, None)
                elif cmd == "delgauges":
                    agg._gauge_updated.pop(name, None)
                    agg._gauges_unsent.discard(name)
        return deleted

    def _combine(self, cmd: str, params: list[str], parts: list[Any], now: float) -> str:
        if cmd == "stats":
            last = max(p["last_msg_seen"] for p in parts)
            bad = sum(p["bad_lines_seen"] for p in parts)
            uptime = round(now) - round(self._started)
            return admin.stats_answer(
                uptime, {"messages": {"last_msg_seen": round(last), "bad_lines_seen": bad}},
                round(now))
        if cmd == "counters":
            own: dict[str, float] = {}
            rest: dict[str, float] = {}
            for mine, theirs in parts:
                for k, v in mine.items():
                    own[k] = own.get(k, 0) + v
                rest.update(theirs)
            return admin.dump_answer({**own, **rest})
        if cmd in ("timers", "gauges"):
            merged: dict = {}
            for p in parts:
                merged.update(p)
            return admin.dump_answer(merged)
        deleted: dict[str, list[str]] = {}
        for p in parts:
            for bucket, names in p.items():
                deleted.setdefault(bucket, []).extend(names)
        return admin.delete_answer(deleted, params)


def _statsd_options(cfg: Any) -> dict[str, Any]:
    """What `config` prints: the StatsD options in effect."""
    names = sorted(f.name for f in dataclasses.fields(cfg) if f.name.startswith("statsd_"))
    return {name: getattr(cfg, name) for name in names}


# --- forwarding ---------------------------------------------------------------------------------


def _label(node: str) -> str:
    """A node as a self-metric path part: 10.0.0.1:8125 -> 10_0_0_1_8125."""
    return node.replace(".", "_").replace(":", "_")


class StatsdProxyInput(InputHandler):
    """`statsd_forward`: a proxy.js-compatible StatsD proxy (lines are not aggregated here)."""

    name = "statsd"

    def __init__(self, cfg: Any, sink: Any, state: object = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.counters: Counter[str] = Counter()
        self._clock = clock
        self.nodes = [f"{host}:{port}" for host, port, _ in cfg.statsd_forward]
        self.ring = HashRing(self.nodes)
        self.router = ForwardRouter(self.ring.get)
        self.packet_size = int(cfg.statsd_forward_packet_size)
        self._addr: dict[str, tuple] = {}
        self._sock: dict[int, socket.socket] = {}
        admin_nodes: dict[str, tuple[str, int]] = {}
        for host, port, adminport in cfg.statsd_forward:
            node = f"{host}:{port}"
            try:
                family, _, _, _, sockaddr = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0]
            except OSError as exc:
                raise BuckyError(f"statsd_forward: cannot resolve {host}: {exc}") from None
            self._addr[node] = (family, sockaddr)
            if family not in self._sock:
                sock = socket.socket(family, socket.SOCK_DGRAM)
                sock.setblocking(False)
                self._sock[family] = sock
            if adminport is not None:
                admin_nodes[node] = (sockaddr[0], adminport)
        self._pending: dict[str, list[bytes]] = {}
        self._pending_bytes: dict[str, int] = {}
        self._down: dict[str, int] = {}  # proxy.js's node_status: failed checks in a row
        self.health = HealthChecker(admin_nodes, float(cfg.statsd_forward_check_interval),
                                    self._health_result) if admin_nodes else None
        self._health_status = "up"
        self._closed = False
        self._started = time.time()
        self.admin: AdminServer | None = None
        if cfg.statsd_admin_port:
            self.admin = AdminServer(cfg.statsd_admin_ip, cfg.statsd_admin_port, self._admin)

    def handle(self, data: bytes, addr: object, now: float, mono: float | None = None) -> None:
        self.counters["datagrams"] += 1
        groups, unrouted = self.router.split(data)
        if unrouted:
            self.counters["forward.unrouted_lines"] += unrouted
        pending, sizes = self._pending, self._pending_bytes
        for node, lines in groups.items():
            buf = pending.get(node)
            if buf is None:
                pending[node] = buf = []
                sizes[node] = 0
            buf.extend(lines)
            sizes[node] += sum(map(len, lines)) + len(lines)
            if sizes[node] >= 16 * self.packet_size:
                self._flush(node)

    def open_stream(self, kind: str, addr: Any) -> Stream:
        return tcp_stream(kind, self.handle_lines, self.cfg, self.counters)

    def handle_lines(self, lines: list[bytes], now: float, mono: float | None = None) -> None:
        self.handle(b"\n".join(lines), None, now)

    def tick(self, now: float, mono: float | None = None) -> None:
        for node in list(self._pending):
            self._flush(node)
        if self.health is not None:
            self.health.poll(self._clock())
        if self.admin is not None:
            self.admin.poll(now)

    def close(self, now: float, mono: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self.tick(now)
        if self.health is not None:
            self.health.close()
        if self.admin is not None:
            self.admin.close()
        for sock in self._sock.values():
            sock.close()

    def carry_state(self) -> object:
        self.close(time.time())
        return None

    def _flush(self, node: str) -> None:
        lines = self._pending.pop(node, None)
        self._pending_bytes.pop(node, None)
        if not lines:
            return
        family, sockaddr = self._addr[node]
        sock = self._sock[family]
        label = _label(node)
        counters = self.counters
        for datagram in pack_lines(lines, self.packet_size):
            n = datagram.count(b"\n") + 1
            try:
                sock.sendto(datagram, sockaddr)
            except OSError:  # full buffer, ICMP refusal echoed by the kernel, ...
                counters[f"forward.{label}.dropped_lines"] += n
                continue
            counters[f"forward.{label}.lines"] += n
            counters[f"forward.{label}.datagrams"] += 1

    def _health_result(self, node: str, healthy: bool) -> None:
        """proxy.js's markNodeAsHealthy / markNodeAsUnhealthy."""
        label = _label(node)
        if healthy:
            if self._down.get(node, 0) > 0:
                log.warning("StatsD proxy: node %s is healthy again; adding it to the ring", node)
                self.ring.add(node)
                self.router.reset()
                self.counters[f"forward.{label}.rejoined"] += 1
            self._down[node] = 0
        else:
            self._down[node] = self._down.get(node, 0) + 1
            self.counters[f"forward.{label}.failed_checks"] += 1
            if self._down[node] < 2:
                log.warning("StatsD proxy: node %s failed its health check; removing it", node)
                self.ring.remove(node)
                self.router.reset()
                self.counters[f"forward.{label}.removed"] += 1

    def _admin(self, cid: int, line: str, now: float) -> str | None:
        """proxy.js's management commands."""
        cmd, params = admin.parse_command(line)
        if cmd == "help":
            return "Commands: config, health, status, quit\n\n"
        if cmd == "health":
            self._health_status = admin.health_command(self._health_status, params)
            return admin.health_answer(self._health_status)
        if cmd == "status":
            uptime = round(now) - round(self._started)
            return f"uptime: {uptime}\nnodes: " + "".join(f"{s} " for s in self.ring.servers) + "\n"
        if cmd == "config":
            return admin.config_answer(_statsd_options(self.cfg))
        return "ERROR\n"


# What the factory may build: every one of them keeps the input contract (tests check it).
make_statsd_input.handler_classes = (StatsdWorker, StatsdProxyInput)  # type: ignore[attr-defined]
