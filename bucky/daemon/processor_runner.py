"""The processor process's loop: the user's processor(host, name, value, timestamp) on every batch.

Batches from every input are run through bucky.daemon.processor.Processor and written on, as one
BatchSink to every output (what arrived is passed on at once: batches stay as large as they came).
SELF_METRICS and NOTIFICATION messages (bucky.messages) are never processed; they follow the
samples that came before them, in order. Stopping: upstream has stopped, so everything it wrote
is read and passed on, then the sink is drained within the processor's share of the stage time.
"""

from __future__ import annotations

import logging
import time
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from bucky.daemon.processor import Processor
from bucky.daemon.runner_loop import (
    BATCH_MAX_AGE,
    BATCH_SIZE,
    LOOP_TIMEOUT,
    PROCESSOR_STOP_SHARE,
    Flags,
    Runner,
    queue_bytes,
    stop_deadline,
)
from bucky.daemon.selfmetrics import SelfMetrics
from bucky.daemon.sink import BatchSink
from bucky.messages import BATCH, NOTIFICATION, SELF_METRICS, self_metrics_gauges
from bucky.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from bucky.daemon.children import ChildSpec

log = logging.getLogger("bucky")


class ProcessorRunner(Runner):
    def __init__(self, spec: ChildSpec, flags: Flags) -> None:
        super().__init__(spec, flags)
        cfg = spec.cfg
        self.processor = Processor(cfg.processor, cfg.processor_drop_on_error,
                                   RateLimitedLog(log))
        self.readers = [ch.reader() for ch in spec.in_channels]
        qbytes = queue_bytes(cfg.max_sample_queue)
        self.sink = BatchSink([ch.writer(qbytes) for ch in spec.out_channels],
                              batch_size=BATCH_SIZE, max_age=BATCH_MAX_AGE)
        self.selfmetrics = SelfMetrics.from_config(spec.title, cfg, time.time)
        self.handlers = {BATCH: self._batch, SELF_METRICS: self._self_metrics,
                         NOTIFICATION: self._notification}

    def _batch(self, batch: list[tuple]) -> None:
        self.sink.extend(self.processor.process(batch))

    def _self_metrics(self, msg: tuple) -> None:
        self.sink.flush()  # keep order: what came before goes first
        self.sink.send_self_metrics(msg[1], self_metrics_gauges(msg))

    def _notification(self, msg: tuple) -> None:
        self.sink.flush()
        self.sink.notify(msg[1])

    def step(self) -> None:
        ready = wait(self.readers, LOOP_TIMEOUT)
        for reader in ready:
            self.dispatch(reader.read())  # type: ignore[union-attr]
        if ready:
            self.sink.flush()  # pass on at once what arrived
        mono = time.monotonic()
        self.sink.flush_if_due(mono)
        self.sink.pump()
        if self.selfmetrics.due(mono):
            self._send_self_metrics(mono)

    def finish(self) -> Any:
        self.read_rest()
        mono = time.monotonic()
        if self.spec.cfg.self_metrics_interval > 0:
            self._send_self_metrics(mono)
        stage_time = self.spec.cfg.process_join_timeout
        self.sink.drain(stop_deadline(stage_time, PROCESSOR_STOP_SHARE, mono))
        return None

    def _send_self_metrics(self, mono: float) -> None:
        samples = self.selfmetrics.collect(
            mono,
            [self.processor.counters, self.sink.counters,
             {"corrupt_frames": self.corrupt_frames()}],
            {"queue_bytes": self.sink.pending_bytes()},
        )
        self.sink.send_self_metrics(samples, self.selfmetrics.gauge_names)
