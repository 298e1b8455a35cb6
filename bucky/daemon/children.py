"""What runs inside each child process: inputs, the processor and the outputs.

A child gets a `ChildSpec` (built by the supervisor; nothing in it has touched the process yet),
constructs its handler or client, reports ("ready",) or ("error", message) on its control pipe,
then loops until told to stop. Signals only set flags; the loop acts on them:
SIGTERM = stop for good (final flush), SIGHUP = stop for a reload (hand state back), SIGINT is
ignored (the supervisor orders the shutdown). A child whose supervisor vanished stops by itself.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import selectors
import signal
import socket
import sys
import time
from collections import Counter
from multiprocessing.connection import Connection, wait
from typing import Any

from bucky.daemon.channels import Channel, ChannelReader
from bucky.daemon.memory import Trimmer
from bucky.daemon.processor import Processor
from bucky.daemon.selfmetrics import SelfMetrics, prefix_from_config
from bucky.daemon.sink import RECORDS, SELF_METRICS, BatchSink
from bucky.errors import BuckyError
from bucky.http.feed import MAX_PENDING_BYTES, HttpFeed
from bucky.inputs.base import InputHandler, Stream
from bucky.ratelog import RateLimitedLog
from bucky.sample import NOTIFICATION

log = logging.getLogger("bucky")

INPUT_HANDLERS = {
    "collectd": "bucky.inputs.collectd:CollectdInput",
    "statsd": "bucky.inputs.statsd_scale:make_statsd_input",
    "metricsd": "bucky.inputs.metricsd:MetricsdInput",
    "python_plugins": "bucky.inputs.python_plugins:PluginHostInput",
    "carbon": "bucky.inputs.carbon:CarbonInput",
}
_DEFAULT_QUEUE_SAMPLES = 1_000_000
_BYTES_PER_SAMPLE = 40  # encoded (None, name, value, ts) tuples average well under this
BATCH_SIZE = 5000
BATCH_MAX_AGE = 0.2
IDLE_GRACE = 0.001  # an input waits this long for more datagrams before sending a partial batch
IDLE_MAX_AGE = 0.005  # ... but never holds a partial batch longer than this while traffic trickles
_LOOP_TIMEOUT = 0.05
_UDP_BURST = 512  # datagrams read before the loop looks at timers again


@dataclasses.dataclass
class ChildSpec:
    role: str  # "input", "processor" or "output"
    kind: str  # input kind ("statsd", ...), "processor", or the output's name
    title: str  # process title suffix and self-metric process name, e.g. "collectd.1"
    cfg: Any
    index: int = 0  # which output, for role "output"
    udp: list[socket.socket] = dataclasses.field(default_factory=list)
    # TCP listeners, (stream kind, listener): an input's open_stream(kind), the http server's
    # "http" listener.
    streams: list[tuple[str, socket.socket]] = dataclasses.field(default_factory=list)
    in_channels: list[Channel] = dataclasses.field(default_factory=list)
    out_channels: list[Channel] = dataclasses.field(default_factory=list)  # outputs: to http
    record_channels: list[Channel] = dataclasses.field(default_factory=list)
    state: Any = None
    mesh: Any = None  # StatsD workers: channels to and from the other workers (statsd_scale)
    ctrl: Connection | None = None
    parent_pid: int = 0


def queue_bytes(cfg: Any) -> int:
    samples = cfg.max_sample_queue or _DEFAULT_QUEUE_SAMPLES
    return max(samples * _BYTES_PER_SAMPLE, 1 << 20)


class _Flags:
    def __init__(self) -> None:
        self.stop = False
        self.reload = False

    def install(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_term(self, signum: int, frame: object) -> None:
        self.stop = True

    def _on_hup(self, signum: int, frame: object) -> None:
        self.stop = True
        self.reload = True


def child_main(spec: ChildSpec) -> None:
    """Entry point of every child process."""
    flags = _Flags()
    flags.install()
    try:
        import setproctitle

        setproctitle.setproctitle(f"bucky: {spec.title}")
    except Exception:  # a title is a nicety; never a reason not to run
        pass
    ctrl = spec.ctrl
    assert ctrl is not None
    try:
        runner = RUNNERS[spec.role](spec, flags)
    except BuckyError as exc:
        ctrl.send(("error", str(exc)))
        os._exit(3)
    except Exception as exc:
        log.exception("%s failed to start", spec.title)
        ctrl.send(("error", f"{exc.__class__.__name__}: {exc}"))
        os._exit(3)
    ctrl.send(("ready",))
    try:
        state = runner.run()
        if flags.reload:
            ctrl.send(("state", state))
    except Exception:
        log.exception("%s crashed", spec.title)
        sys.stderr.flush()
        os._exit(4)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _parent_gone(spec: ChildSpec) -> bool:
    return os.getppid() != spec.parent_pid


class InputRunner:
    """Drives one input handler (the contract: bucky.inputs.base) from its sockets and channels."""

    def __init__(self, spec: ChildSpec, flags: _Flags) -> None:
        self.spec = spec
        self.flags = flags
        self.trimmer = Trimmer()
        cfg = spec.cfg
        qbytes = queue_bytes(cfg)
        self.sink = BatchSink(
            [ch.writer(qbytes) for ch in spec.out_channels],
            record_writers=[ch.writer(qbytes) for ch in spec.record_channels],
            batch_size=BATCH_SIZE,
            max_age=BATCH_MAX_AGE,
        )
        extra = {"mesh": spec.mesh} if spec.mesh is not None else {}
        self.handler: InputHandler = _load(INPUT_HANDLERS[spec.kind])(cfg, self.sink, spec.state,
                                                                      **extra)
        self.readers = [ch.reader() for ch in spec.in_channels]
        self.selfmetrics = SelfMetrics(spec.title, cfg.self_metrics_interval, time.time,
                                       prefix_from_config(cfg))
        self.counters: Counter[str] = Counter()
        self.ratelog = RateLimitedLog(log)
        self.tcp_conns: dict[socket.socket, Stream] = {}
        self.more_waiting = False  # a socket still had datagrams when its burst ended

    def run(self) -> Any:
        sel = selectors.DefaultSelector()
        for sock in self.spec.udp:
            sel.register(sock, selectors.EVENT_READ, self._read_udp)
        for kind, listener in self.spec.streams:
            sel.register(listener, selectors.EVENT_READ, self._acceptor(kind))
        for reader in self.readers:
            sel.register(reader.fileno(), selectors.EVENT_READ, self._make_reader_cb(reader))
        for fd, callback in self.handler.extra_fds():
            sel.register(fd, selectors.EVENT_READ, callback)
        self.sel = sel
        flags = self.flags
        last_parent_check = 0.0
        timeout = _LOOP_TIMEOUT
        while not flags.stop:
            self.more_waiting = False
            events = sel.select(timeout)
            for key, _ in events:
                key.data(key.fileobj)
            mono = time.monotonic()
            # Latency at low load, batches under load: a batch goes downstream as soon as the
            # sockets are empty and stay so for IDLE_GRACE (or it is IDLE_MAX_AGE old); while the
            # kernel still holds datagrams it keeps filling up to BATCH_SIZE.
            if self.more_waiting:
                timeout = 0.0
            elif events and self.sink.pending_samples() and self.sink.age(mono) < IDLE_MAX_AGE:
                timeout = IDLE_GRACE
            else:
                self.sink.flush()
                timeout = _LOOP_TIMEOUT
            self._tick(time.time(), mono)
            if mono - last_parent_check > 1.0:
                last_parent_check = mono
                self.trimmer.maybe_trim(time.monotonic())
            if _parent_gone(self.spec):
                    flags.stop = True
        return self._stop()

    def _tick(self, now: float, mono: float) -> None:
        try:
            self.handler.tick(now, mono)
        except Exception:
            self.counters["errors.tick"] += 1
            self.ratelog.error("tick", "%s: error in periodic work", self.spec.title, exc_info=True)
        self.sink.flush_if_due(mono)
        self.sink.pump()
        if self.selfmetrics.due(mono):
            self.sink.send_self_metrics(self._self_samples(mono), self.selfmetrics.gauge_names)

    def _self_samples(self, mono: float) -> list[tuple]:
        gauges = {"queue_bytes": self.sink.pending_bytes()}
        return self.selfmetrics.collect(
            mono, [self.handler.counters, self.sink.counters, self.counters], gauges
        )

    def _read_udp(self, sock: socket.socket, limit: int = _UDP_BURST) -> int:
        recv = sock.recvfrom
        handle = self.handler.handle
        now, mono = time.time(), time.monotonic()
        n = 0
        while n < limit:
            try:
                data, addr = recv(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. ECONNREFUSED echoes on some stacks: never fatal
                self.counters["errors.recv"] += 1
                self.ratelog.error("recv", "%s: receive error: %s", self.spec.title, exc)
                break
            n += 1
            try:
                handle(data, addr, now, mono)
            except Exception:
                self.counters["errors.handler"] += 1
                self.ratelog.error("handle", "%s: datagram from %s could not be handled",
                                   self.spec.title, addr, exc_info=True)
        else:
            self.more_waiting = True
        return n

    def _acceptor(self, kind: str):  # type: ignore[no-untyped-def]
        return lambda listener: self._accept(listener, kind)

    def _accept(self, listener: socket.socket, kind: str) -> None:
        try:
            conn, addr = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.counters["errors.accept"] += 1
            self.ratelog.error("accept", "%s: accept failed: %s", self.spec.title, exc)
            return
        if len(self.tcp_conns) >= self.handler.max_tcp_connections:
            self.counters["tcp.refused"] += 1
            self.ratelog.warning("tcp-limit", "%s: too many TCP clients, refusing one",
                                 self.spec.title)
            conn.close()
            return
        try:
            stream = self.handler.open_stream(kind, addr)
        except Exception:
            self.counters["errors.handler"] += 1
            self.ratelog.error("open", "%s: cannot open a stream", self.spec.title, exc_info=True)
            conn.close()
            return
        conn.setblocking(False)
        self.counters["tcp.connections"] += 1
        self.tcp_conns[conn] = stream
        self.sel.register(conn, selectors.EVENT_READ, self._read_tcp)

    def _read_tcp(self, conn: socket.socket) -> None:
        stream = self.tcp_conns[conn]
        try:
            data = conn.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        now = time.time()
        keep = False
        if data:
            try:
                keep = stream.feed(data, now, time.monotonic())
            except Exception:
                self.counters["errors.handler"] += 1
                self.ratelog.error("handle", "%s: TCP data could not be handled",
                                   self.spec.title, exc_info=True)
        if not keep:
            if data:
                self.counters["tcp.disconnected"] += 1
            try:
                stream.close(now)
            except Exception:
                self.counters["errors.handler"] += 1
            self.sel.unregister(conn)
            del self.tcp_conns[conn]
            conn.close()

    def _make_reader_cb(self, reader: ChannelReader):  # type: ignore[no-untyped-def]
        def on_readable(_fd: object) -> None:
            self._deliver(reader.read())

        return on_readable

    def _deliver(self, objs: list[object]) -> None:
        items: list = []
        for obj in objs:
            if type(obj) is tuple and obj and obj[0] in (RECORDS, NOTIFICATION):
                if obj[0] == RECORDS:
                    items.extend(obj[1])
                else:
                    items.append(obj[1])
        if items:
            try:
                self.handler.deliver(items, time.time(), time.monotonic())
            except Exception:
                self.counters["errors.deliver"] += 1
                self.ratelog.error("deliver", "%s: delivery failed", self.spec.title,
                                   exc_info=True)

    def _stop(self) -> Any:
        # What the kernel already accepted is read and handled before the final flush.
        deadline = time.monotonic() + max(self.spec.cfg.process_join_timeout * 0.4, 0.2)
        for sock in self.spec.udp:
            while time.monotonic() < deadline and self._read_udp(sock, 4096):
                pass
        for reader in self.readers:
            self._deliver(reader.read())
        state = None
        now = time.time()
        # The contract: on a reload carry_state() first (what the successor takes over), then
        # always close() (plugin shutdown callbacks run; what was handed over is not emitted).
        if self.flags.reload:
            try:
                state = self.handler.carry_state()
            except Exception:
                log.exception("%s: error while handing its state over", self.spec.title)
        try:
            self.handler.close(now, time.monotonic())
        except Exception:
            log.exception("%s: error while stopping", self.spec.title)
        mono = time.monotonic()
        if self.spec.cfg.self_metrics_interval > 0:
            self.sink.send_self_metrics(self._self_samples(mono), self.selfmetrics.gauge_names)
        self.sink.drain(mono + max(self.spec.cfg.process_join_timeout * 0.4, 0.2))
        return state


class ProcessorRunner:
    """Applies the user's processor(host, name, value, timestamp) -> tuple | None to samples."""

    def __init__(self, spec: ChildSpec, flags: _Flags) -> None:
        self.spec = spec
        self.flags = flags
        self.trimmer = Trimmer()
        cfg = spec.cfg
        self.processor = Processor(cfg.processor, cfg.processor_drop_on_error,
                                   RateLimitedLog(log))
        self.readers = [ch.reader() for ch in spec.in_channels]
        qbytes = queue_bytes(cfg)
        self.writers = [ch.writer(qbytes) for ch in spec.out_channels]
        self.sink = BatchSink(self.writers, batch_size=BATCH_SIZE, max_age=BATCH_MAX_AGE)
        self.selfmetrics = SelfMetrics(spec.title, cfg.self_metrics_interval, time.time,
                                       prefix_from_config(cfg))

    def _handle(self, objs: list[object]) -> None:
        for obj in objs:
            if type(obj) is list:
                self.sink.extend(self.processor.process(obj))
            elif type(obj) is tuple and obj and obj[0] == SELF_METRICS:
                self.sink.flush()  # keep order: what came before goes first
                self.sink.send_self_metrics(obj[1], obj[2] if len(obj) > 2 else ())
            elif type(obj) is tuple and obj and obj[0] == NOTIFICATION:
                self.sink.flush()
                self.sink.notify(obj[1])

    def run(self) -> Any:
        readers = self.readers
        while not self.flags.stop:
            ready = wait(readers, _LOOP_TIMEOUT)
            for reader in ready:
                self._handle(reader.read())  # type: ignore[union-attr]
            if ready:
                # Pass on at once what arrived; batches stay as large as what came in.
                self.sink.flush()
            mono = time.monotonic()
            self.sink.flush_if_due(mono)
            self.sink.pump()
            if self.selfmetrics.due(mono):
                self.sink.send_self_metrics(self._self_samples(mono), self.selfmetrics.gauge_names)
            self.trimmer.maybe_trim(time.monotonic())
            if _parent_gone(self.spec):
                break
        # Upstream has stopped: everything it wrote is in the pipes.
        for _ in range(1000):
            objs = [obj for reader in readers for obj in reader.read()]
            if not objs:
                break
            self._handle(objs)
        mono = time.monotonic()
        if self.spec.cfg.self_metrics_interval > 0:
            self.sink.send_self_metrics(self._self_samples(mono), self.selfmetrics.gauge_names)
        self.sink.drain(mono + max(self.spec.cfg.process_join_timeout * 0.4, 0.2))
        return None

    def _self_samples(self, mono: float) -> list[tuple]:
        corrupt = sum(r.corrupt_frames for r in self.readers)
        return self.selfmetrics.collect(
            mono,
            [self.processor.counters, self.sink.counters, {"corrupt_frames": corrupt}],
            {"queue_bytes": self.sink.pending_bytes()},
        )


class OutputRunner:
    def __init__(self, spec: ChildSpec, flags: _Flags) -> None:
        from bucky.daemon.outputs import output_factories

        self.spec = spec
        self.flags = flags
        self.trimmer = Trimmer()
        self.client = output_factories(spec.cfg)[spec.index].build()
        self.readers = [ch.reader() for ch in spec.in_channels]
        self.selfmetrics = SelfMetrics(spec.title, spec.cfg.self_metrics_interval, time.time,
                                       prefix_from_config(spec.cfg))
        self.counters: Counter[str] = Counter()
        self.feed = None
        if spec.out_channels:  # an output's only way out of the process: the status server
            self.feed = HttpFeed(spec.out_channels[0].writer(MAX_PENDING_BYTES), spec.title,
                                 tap=spec.index == 0, forward_self=spec.index == 0,
                                 counters=self.counters)

    def _handle(self, objs: list[object], now: float) -> None:
        client, feed = self.client, self.feed
        for obj in objs:
            if type(obj) is list:
                self.counters["received"] += len(obj)
                client.send(obj, now)
                if feed is not None:
                    feed.batch(obj)
            elif type(obj) is tuple and obj and obj[0] == SELF_METRICS:
                client.send(obj[1], now, front=True)
                if feed is not None:
                    feed.self_metrics(obj)
            elif type(obj) is tuple and obj and obj[0] == NOTIFICATION:
                client.notify(obj[1])

    def run(self) -> Any:
        client, readers = self.client, self.readers
        now = time.monotonic()
        while not self.flags.stop:
            timeout = min(max(client.poll(now), 0.0), _LOOP_TIMEOUT)
            ready = wait(readers, timeout)
            now = time.monotonic()
            for reader in ready:
                self._handle(reader.read(), now)  # type: ignore[union-attr]
            if self.selfmetrics.due(now):
                client.send(self._self_samples(now), now, front=True)
            client.poll(now)
            if self.feed is not None:
                self.feed.tick(now, client)
            self.trimmer.maybe_trim(time.monotonic())
            if _parent_gone(self.spec):
                break
        for _ in range(1000):
            now = time.monotonic()
            objs = [obj for reader in readers for obj in reader.read()]
            if not objs:
                break
            self._handle(objs, now)
            client.poll(now)
        now = time.monotonic()
        if self.spec.cfg.self_metrics_interval > 0:
            client.send(self._self_samples(now), now, front=True)
        deadline = now + max(self.spec.cfg.process_join_timeout * 0.8, 0.2)
        if not client.flush(deadline):
            log.error("%s: %d datapoints could not be delivered before the shutdown deadline",
                      self.spec.title, client.pending())
        client.close()
        return None

    def _self_samples(self, now: float) -> list[tuple]:
        corrupt = sum(r.corrupt_frames for r in self.readers)
        samples = self.selfmetrics.collect(
            now, [self.client.counters, self.counters, {"corrupt_frames": corrupt}],
            self.client.gauges(),
        )
        if self.feed is not None:
            self.feed.self_metrics((SELF_METRICS, samples, self.selfmetrics.gauge_names), own=True)
        return samples


def _http_runner(spec: ChildSpec, flags: _Flags) -> Any:
    from bucky.http.server import HttpRunner

    return HttpRunner(spec, flags)


RUNNERS = {"input": InputRunner, "processor": ProcessorRunner, "output": OutputRunner,
           "http": _http_runner}
