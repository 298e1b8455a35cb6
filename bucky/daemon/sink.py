"""The batching sink an input (or the processor) writes samples into.

Samples collect in a list that is sent as one frame when it reaches `batch_size` or is older than
`max_age` seconds (checked by `flush_if_due` from the process loop). One frame per batch, the same
bytes written to every downstream channel (the message kinds: bucky.messages). A full channel
refuses the frame: the batch is dropped for that destination and counted; an input never blocks.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence

from bucky.daemon.channels import ChannelWriter, encode_frame
from bucky.messages import NOTIFICATION, RECORDS, self_metrics


class BatchSink:
    def __init__(
        self,
        writers: Sequence[ChannelWriter],
        *,
        batch_size: int = 1000,
        max_age: float = 0.2,
        record_writers: Sequence[ChannelWriter] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._writers = list(writers)
        self._record_writers = list(record_writers)
        self.wants_records = bool(self._record_writers)
        self._batch_size = batch_size
        self._max_age = max_age
        self._clock = clock
        self._buf: list[tuple] = []
        self._started = 0.0
        self.counters: Counter[str] = Counter()

    # -- what handlers call --------------------------------------------------------------------
    def extend(self, samples: list[tuple]) -> None:
        if not samples:
            return
        buf = self._buf
        if not buf:
            self._started = self._clock()
        buf.extend(samples)
        if len(buf) >= self._batch_size:
            self.flush()

    def append(self, sample: tuple) -> None:
        if not self._buf:
            self._started = self._clock()
        self._buf.append(sample)
        if len(self._buf) >= self._batch_size:
            self.flush()

    def notify(self, record: object) -> None:
        frame = encode_frame((NOTIFICATION, record))
        self._send(frame, 0, self._writers + self._record_writers)

    def records(self, value_lists: list) -> None:
        if self._record_writers and value_lists:
            self._send(encode_frame((RECORDS, value_lists)), 0, self._record_writers)

    # -- what the process loop calls -----------------------------------------------------------
    def send_self_metrics(self, samples: list[tuple], gauges: list[str] | tuple = ()) -> None:
        """`gauges`: the names among `samples` that are levels, not changes (for the status
        server; carbon gets the samples alone)."""
        if samples:
            self._send(encode_frame(self_metrics(samples, gauges)), len(samples), self._writers)

    def flush(self) -> None:
        batch = self._buf
        if not batch:
            return
        self._buf = []
        self._send(encode_frame(batch), len(batch), self._writers)

    def pending_samples(self) -> int:
        return len(self._buf)

    def age(self, now: float) -> float:
        """Seconds since the first sample of the current batch arrived (0 when empty)."""
        return now - self._started if self._buf else 0.0

    def flush_if_due(self, now: float) -> None:
        if self._buf and now - self._started >= self._max_age:
            self.flush()

    def pump(self) -> None:
        for w in self._writers:
            w.pump()
        for w in self._record_writers:
            w.pump()

    def drain(self, deadline: float) -> bool:
        self.flush()
        ok = True
        for w in self._writers + self._record_writers:
            ok = w.flush(deadline, self._clock) and ok
        return ok

    def pending_bytes(self) -> int:
        return sum(w.pending_bytes for w in self._writers + self._record_writers)

    def _send(self, frame: bytes, count: int, writers: list[ChannelWriter]) -> None:
        counters = self.counters
        for w in writers:
            if w.put_frame(frame):
                counters["queued"] += count
            else:
                counters["dropped.queue_full"] += count
                counters["dropped_batches.queue_full"] += 1
