"""The output process's loop: one output client (bucky.daemon.outputs) fed from its channel.

Batches go to `client.send`; SELF_METRICS (bucky.messages) go to the front of the client's buffer
(an overloaded relay still says it is overloaded); NOTIFICATION to `client.notify`. The loop waits
no longer than the client's own `poll()` asks, so reconnects and flushes run on time.

With a status server, the output also feeds it (bucky.daemon.http_feed.HttpFeed: status snapshots,
a sampled tap, self-metrics), without ever waiting for it.

Stopping: upstream has stopped, so everything it wrote is read and sent, then the client gets the
output's share of the stage time to deliver what it holds; what is left is reported and closed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from bucky.daemon.http_feed import MAX_PENDING_BYTES, HttpFeed
from bucky.daemon.runner_loop import LOOP_TIMEOUT, OUTPUT_STOP_SHARE, Flags, Runner, stop_deadline
from bucky.daemon.selfmetrics import SelfMetrics
from bucky.messages import BATCH, NOTIFICATION, SELF_METRICS, self_metrics

if TYPE_CHECKING:
    from bucky.daemon.children import ChildSpec

log = logging.getLogger("bucky")


class OutputRunner(Runner):
    def __init__(self, spec: ChildSpec, flags: Flags) -> None:
        from bucky.daemon.outputs import output_factories

        super().__init__(spec, flags)
        self.client = output_factories(spec.cfg)[spec.index].build()
        self.readers = [ch.reader() for ch in spec.in_channels]
        self.selfmetrics = SelfMetrics.from_config(spec.title, spec.cfg, time.time)
        self.counters: Counter[str] = Counter()
        self.feed: HttpFeed | None = None
        if spec.out_channels:  # an output's only way out of the process: the status server
            self.feed = HttpFeed(spec.out_channels[0].writer(MAX_PENDING_BYTES), spec.title,
                                 tap=spec.index == 0, forward_self=spec.index == 0,
                                 counters=self.counters)
        self.handlers = {BATCH: self._batch, SELF_METRICS: self._self_metrics,
                         NOTIFICATION: self._notification}
        self.now = time.monotonic()  # when the messages being dispatched were read

    def _batch(self, batch: list[tuple]) -> None:
        self.counters["received"] += len(batch)
        self.client.send(batch, self.now)
        if self.feed is not None:
            self.feed.batch(batch)

    def _self_metrics(self, msg: tuple) -> None:
        self.client.send(msg[1], self.now, front=True)
        if self.feed is not None:
            self.feed.self_metrics(msg)

    def _notification(self, msg: tuple) -> None:
        self.client.notify(msg[1])

    def run(self) -> Any:
        self.now = time.monotonic()
        return super().run()

    def step(self) -> None:
        client = self.client
        timeout = min(max(client.poll(self.now), 0.0), LOOP_TIMEOUT)
        ready = wait(self.readers, timeout)
        self.now = now = time.monotonic()
        for reader in ready:
            self.dispatch(reader.read())  # type: ignore[union-attr]
        if self.selfmetrics.due(now):
            client.send(self._self_samples(now), now, front=True)
        client.poll(now)
        if self.feed is not None:
            self.feed.tick(now, client)

    def finish(self) -> Any:
        client = self.client

        def sent_a_round() -> None:
            client.poll(self.now)
            self.now = time.monotonic()

        self.now = time.monotonic()
        self.read_rest(sent_a_round)
        now = time.monotonic()
        if self.spec.cfg.self_metrics_interval > 0:
            client.send(self._self_samples(now), now, front=True)
        deadline = stop_deadline(self.spec.cfg.process_join_timeout, OUTPUT_STOP_SHARE, now)
        if not client.flush(deadline):
            log.error("%s: %d datapoints could not be delivered before the shutdown deadline",
                      self.spec.title, client.pending())
        client.close()
        return None

    def _self_samples(self, now: float) -> list[tuple]:
        samples = self.selfmetrics.collect(
            now, [self.client.counters, self.counters, {"corrupt_frames": self.corrupt_frames()}],
            self.client.gauges(),
        )
        if self.feed is not None:
            self.feed.self_metrics(self_metrics(samples, self.selfmetrics.gauge_names), own=True)
        return samples
