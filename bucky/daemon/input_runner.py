"""The input process's loop: drives one input handler (the contract: bucky.inputs.base).

It owns what the handler must not: the sockets (UDP sockets read in bursts; TCP listeners served
by bucky.daemon.tcp_streams), the clocks, and the BatchSink the handler writes to (one channel per
consumer: the processor or every output, and the plugin host for collectd records). Messages read
from its channels (the plugin host's: RECORDS and NOTIFICATION, bucky.messages) go to the handler's
deliver(). Every handler call is guarded: an exception is counted (`errors.<where>`) and logged
rate-limited, and the loop goes on.

Batches: latency at low load, size under load. A batch goes downstream as soon as the sockets are
empty and stay so for IDLE_GRACE (or it is IDLE_MAX_AGE old); while the kernel still holds
datagrams it keeps filling up to BATCH_SIZE.

Stopping: what the kernel already accepted is read and handled, then on a reload carry_state()
(what the successor takes over), then always close(), then the final self-metrics and the sink is
drained within the input's share of the stage time.
"""

from __future__ import annotations

import importlib
import logging
import selectors
import socket
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from bucky.daemon.runner_loop import (
    BATCH_MAX_AGE,
    BATCH_SIZE,
    INPUT_STOP_SHARE,
    LOOP_TIMEOUT,
    Flags,
    Runner,
    queue_bytes,
    stop_deadline,
)
from bucky.daemon.selfmetrics import SelfMetrics
from bucky.daemon.sink import BatchSink
from bucky.daemon.tcp_streams import StreamConnections
from bucky.inputs.base import InputHandler
from bucky.messages import NOTIFICATION, RECORDS
from bucky.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from bucky.daemon.children import ChildSpec

log = logging.getLogger("bucky")

INPUT_HANDLERS = {
    "collectd": "bucky.inputs.collectd:CollectdInput",
    "statsd": "bucky.daemon.statsd:make_statsd_input",
    "metricsd": "bucky.inputs.metricsd:MetricsdInput",
    "python_plugins": "bucky.inputs.python_plugins:PluginHostInput",
    "carbon": "bucky.inputs.carbon:CarbonInput",
}
IDLE_GRACE = 0.001  # an input waits this long for more datagrams before sending a partial batch
IDLE_MAX_AGE = 0.005  # ... but never holds a partial batch longer than this while traffic trickles
_UDP_BURST = 512  # datagrams read before the loop looks at timers again
_UDP_BURST_AT_STOP = 4096


def load_handler(kind: str) -> Any:
    """The class (or factory) of the input `kind` (INPUT_HANDLERS)."""
    module, _, attr = INPUT_HANDLERS[kind].partition(":")
    return getattr(importlib.import_module(module), attr)


class InputRunner(Runner):
    def __init__(self, spec: ChildSpec, flags: Flags) -> None:
        super().__init__(spec, flags)
        cfg = spec.cfg
        qbytes = queue_bytes(cfg.max_sample_queue)
        self.sink = BatchSink(
            [ch.writer(qbytes) for ch in spec.out_channels],
            record_writers=[ch.writer(qbytes) for ch in spec.record_channels],
            batch_size=BATCH_SIZE,
            max_age=BATCH_MAX_AGE,
        )
        extra = {"mesh": spec.mesh} if spec.mesh is not None else {}
        self.handler: InputHandler = load_handler(spec.kind)(cfg, self.sink, spec.state, **extra)
        self.readers = [ch.reader() for ch in spec.in_channels]
        self.handlers = {RECORDS: self._records, NOTIFICATION: self._notification}
        self._delivered: list = []
        self.selfmetrics = SelfMetrics.from_config(spec.title, cfg, time.time)
        self.counters: Counter[str] = Counter()
        self.ratelog = RateLimitedLog(log)
        self.sel = selectors.DefaultSelector()
        self.tcp = StreamConnections(self.handler, self.sel, spec.title, self.counters,
                                     self.ratelog)
        for sock in spec.udp:
            self.sel.register(sock, selectors.EVENT_READ, self._read_udp)
        for kind, listener in spec.streams:
            self.tcp.listen(kind, listener)
        for reader in self.readers:
            self.sel.register(reader.fileno(), selectors.EVENT_READ, self._reader_callback(reader))
        self.more_waiting = False  # a socket still had datagrams when its burst ended
        self.timeout = LOOP_TIMEOUT

    def run(self) -> Any:
        # The handler's own descriptors (the StatsD workers' mesh): asked once it runs.
        for fd, callback in self.handler.extra_fds():
            self.sel.register(fd, selectors.EVENT_READ, callback)
        return super().run()

    def step(self) -> None:
        self.more_waiting = False
        events = self.sel.select(self.timeout)
        for key, _ in events:
            key.data(key.fileobj)
        mono = time.monotonic()
        sink = self.sink
        if self.more_waiting:
            self.timeout = 0.0
        elif events and sink.pending_samples() and sink.age(mono) < IDLE_MAX_AGE:
            self.timeout = IDLE_GRACE
        else:
            sink.flush()
            self.timeout = LOOP_TIMEOUT
        self._tick(time.time(), mono)
        if self.tcp.answering:
            self.tcp.write_answers()

    def _tick(self, now: float, mono: float) -> None:
        try:
            self.handler.tick(now, mono)
        except Exception:
            self.counters["errors.tick"] += 1
            self.ratelog.error("tick", "%s: error in periodic work", self.spec.title, exc_info=True)
        self.sink.flush_if_due(mono)
        self.sink.pump()
        self.tcp.close_idle(now, mono)
        if self.selfmetrics.due(mono):
            self._send_self_metrics(mono)

    def _send_self_metrics(self, mono: float) -> None:
        samples = self.selfmetrics.collect(
            mono, [self.handler.counters, self.sink.counters, self.counters],
            {"queue_bytes": self.sink.pending_bytes()},
        )
        self.sink.send_self_metrics(samples, self.selfmetrics.gauge_names)

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

    # -- what other inputs send this one (the plugin host: collectd records) -----------------
    def _reader_callback(self, reader: Any) -> Any:
        return lambda _fd: self._deliver(reader.read())

    def _records(self, msg: tuple) -> None:
        self._delivered.extend(msg[1])

    def _notification(self, msg: tuple) -> None:
        self._delivered.append(msg[1])

    def _deliver(self, msgs: list[object]) -> None:
        self.dispatch(msgs)
        items, self._delivered = self._delivered, []
        if items:
            try:
                self.handler.deliver(items, time.time(), time.monotonic())
            except Exception:
                self.counters["errors.deliver"] += 1
                self.ratelog.error("deliver", "%s: delivery failed", self.spec.title,
                                   exc_info=True)

    # -- stopping ------------------------------------------------------------------------------
    def finish(self) -> Any:
        cfg = self.spec.cfg
        deadline = stop_deadline(cfg.process_join_timeout, INPUT_STOP_SHARE, time.monotonic())
        for sock in self.spec.udp:
            while time.monotonic() < deadline and self._read_udp(sock, _UDP_BURST_AT_STOP):
                pass
        for reader in self.readers:
            self._deliver(reader.read())
        state = None
        # The contract: on a reload carry_state() first (what the successor takes over), then
        # always close() (plugin shutdown callbacks run; what was handed over is not emitted).
        if self.flags.reload:
            try:
                state = self.handler.carry_state()
            except Exception:
                log.exception("%s: error while handing its state over", self.spec.title)
        try:
            self.handler.close(time.time(), time.monotonic())
        except Exception:
            log.exception("%s: error while stopping", self.spec.title)
        mono = time.monotonic()
        if cfg.self_metrics_interval > 0:
            self._send_self_metrics(mono)
        self.sink.drain(stop_deadline(cfg.process_join_timeout, INPUT_STOP_SHARE, mono))
        return state
