import os
import time

from bucky.daemon.channels import MAGIC, Channel, encode_frame
from bucky.daemon.selfmetrics import SelfMetrics
from bucky.daemon.sink import BatchSink
from bucky.messages import SELF_METRICS


def test_round_trip_objects():
    ch = Channel("t")
    w, r = ch.writer(1 << 20), ch.reader()
    batches = [[(None, f"m{i}", i, 100)] for i in range(50)]
    for b in batches:
        assert w.put(b)
    got = []
    deadline = time.monotonic() + 5
    while len(got) < 50 and time.monotonic() < deadline:
        got += r.read()
    assert got == batches
    ch.close()


def test_full_pipe_refuses_instead_of_blocking():
    ch = Channel("t")
    w = ch.writer(max_pending_bytes=64 * 1024)
    big = [(None, f"name{i}" + "x" * 50, float(i), 1) for i in range(2000)]
    results = [w.put(big) for _ in range(200)]  # far more than pipe + pending can hold
    assert False in results
    assert w.dropped_frames == results.count(False)
    assert w.pending_bytes <= 64 * 1024 + len(encode_frame(big))
    ch.close()


def test_reader_resynchronises_after_a_torn_frame():
    ch = Channel("t")
    r = ch.reader()
    frame = encode_frame(["first"])
    os.write(ch.write_fd, frame[: len(frame) // 2])  # a writer killed mid-frame
    os.write(ch.write_fd, b"garbage" + encode_frame(["second"]) + encode_frame(["third"]))
    got = []
    for _ in range(10):
        got += r.read()
    assert got[-2:] == [["second"], ["third"]]
    assert r.corrupt_frames >= 1
    ch.close()


def test_frames_start_with_magic():
    assert encode_frame([1]).startswith(MAGIC)


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_sink_batches_by_size_and_age():
    ch = Channel("t")
    clock = FakeClock()
    sink = BatchSink([ch.writer(1 << 20)], batch_size=3, max_age=0.2, clock=clock)
    r = ch.reader()
    sink.extend([(None, "a", 1, 1), (None, "b", 2, 1)])
    assert r.read() == []
    sink.append((None, "c", 3, 1))  # size reached: one frame of three
    assert r.read() == [[(None, "a", 1, 1), (None, "b", 2, 1), (None, "c", 3, 1)]]
    sink.append((None, "d", 4, 1))
    clock.t = 0.1
    sink.flush_if_due(clock.t)
    assert r.read() == []
    clock.t = 0.25
    sink.flush_if_due(clock.t)
    assert r.read() == [[(None, "d", 4, 1)]]
    assert sink.counters["queued"] == 4
    sink.send_self_metrics([(None, "bucky.x", 1, 1)])
    assert r.read() == [(SELF_METRICS, [(None, "bucky.x", 1, 1)])]
    ch.close()


def test_sink_counts_drops_when_downstream_is_full():
    ch = Channel("t")
    sink = BatchSink([ch.writer(1024)], batch_size=1000)
    for _ in range(300):
        sink.extend([(None, f"name.of.a.metric{i}", 1.5, i) for i in range(1000)])
    assert sink.counters["dropped.queue_full"] > 0
    assert sink.counters["dropped.queue_full"] % 1000 == 0
    ch.close()


def test_self_metrics_are_deltas_with_gauges():
    clock = FakeClock()
    mono = [0.0]
    sm = SelfMetrics("statsd", 10.0, lambda: 1699999990.5 + mono[0])  # wall = mono + offset
    assert not sm.due(0.0)
    mono[0] = 9.4
    assert not sm.due(9.4)
    mono[0] = 9.6
    assert sm.due(9.6)  # the wall clock passed 1700000000: on the grid
    counters = {"datagrams": 5}
    first = sm.collect(9.6, [counters], {"queue_bytes": 7})
    assert (None, "bucky.statsd.datagrams", 5, 1700000000) in first
    assert (None, "bucky.statsd.queue_bytes", 7, 1700000000) in first
    counters["datagrams"] = 8
    mono[0] = 12.0
    second = sm.collect(12.0, [counters])  # at shutdown: the slot of the interval in progress
    assert second == [(None, "bucky.statsd.datagrams", 3, 1700000010)]
    assert not SelfMetrics("x", 0, clock).due(1e9)


def test_self_metrics_keep_their_schedule_across_clock_steps():
    mono = [0.0]
    offset = [1_700_000_000.0]
    sm = SelfMetrics("statsd", 10.0, lambda: offset[0] + mono[0])
    stamps, reports = [], []
    for i in range(1, 1000):
        mono[0] = i * 0.1
        if i == 300:
            offset[0] -= 3600.0
        if i == 600:
            offset[0] += 7200.0
        if sm.due(mono[0]):
            reports.append(mono[0])
            stamps.append(sm.collect(mono[0], [{"x": i}])[0][3])
    gaps = [b - a for a, b in zip(reports, reports[1:], strict=False)]
    assert len(reports) >= 9 and all(5.0 <= g <= 20.1 for g in gaps), gaps
    assert all(s % 10 == 0 for s in stamps)
    assert all(a != b for a, b in zip(stamps, stamps[1:], strict=False))


def test_self_metrics_from_config_take_interval_and_prefix_from_the_config():
    from bucky.config import make_config

    cfg = make_config(self_metrics_interval=10.0, self_metrics_prefix="relay.eu")
    sm = SelfMetrics.from_config("collectd.1", cfg, lambda: 1700000000.0)
    assert sm.collect(0.0, [{"datagrams": 2}]) == [
        (None, "relay.eu.collectd_1.datagrams", 2, 1700000000)]
    off = make_config(self_metrics_interval=0)
    assert not SelfMetrics.from_config("x", off, time.time).due(1e9)
