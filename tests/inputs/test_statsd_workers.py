"""statsd_workers = N: the keys split over N workers, the results those of one process.

The recorded input of the reference comparison (tests/data/statsd/) goes through 1, 2 and 4
workers wired by real channels (statsd_workers_harness); the union of their flushes must be the
reference StatsD's flush (names and values) and the single process's, every series once.
Also: own statistics merged, key cap split, gauges saved per worker and found again after the
worker count changes, reload state handed over to a different number of workers.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import inputs.test_statsd_reference as ref
import pytest
from inputs.test_statsd_reference import (  # noqa: F401  (fixtures)
    HISTOGRAM,
    PERCENTILES,
    REFERENCE_ONLY,
    T0,
    VALUE_NOT_COMPARED,
    bucky_flush,
    recorded_datagrams,
    reference_flush,
)
from statsd_workers_harness import Workers

from bucky.config import make_config
from bucky.protocol.statsd_route import WorkerRouter

# The reference StatsD fixtures, shared with the single-process comparison.
reference = ref.reference
reference_package = ref.reference_package


def config(directory: Path, legacy: bool = True, **extra: Any) -> Any:
    extra.setdefault("statsd_tags", "graphite")  # as the reference comparison
    return make_config(
        directory=str(directory),
        statsd_flush_time=1.0,
        statsd_legacy_namespace=legacy,
        statsd_percentile_thresholds=PERCENTILES,
        statsd_histogram=[(h["metric"], h["bins"]) for h in HISTOGRAM],
        **extra,
    )


def workers_flush(n: int, legacy: bool, directory: Path, tags: str = "graphite"
                  ) -> tuple[dict[str, float], Workers]:
    ws = Workers(config(directory, legacy, statsd_tags=tags), n)
    ws.tick(T0)
    ws.tick(T0 + 1)  # an empty flush first, as the reference had
    for datagram in recorded_datagrams():
        ws.handle(datagram, T0 + 1.5)
    ws.pump(T0 + 1.5)
    ws.tick(T0 + 2)
    last = [s for s in ws.samples() if s[3] == int(T0 + 2)]
    counts = Counter(s[1] for s in last)
    assert [name for name, c in counts.items() if c > 1] == []  # every series once
    return {s[1]: s[2] for s in last}, ws


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "new-namespace"])
@pytest.mark.parametrize("n", [1, 2, 4])
def test_n_workers_same_as_one_process(n: int, legacy: bool, tmp_path: Path) -> None:
    one = bucky_flush(legacy, recorded_datagrams(), tmp_path)
    ours, ws = workers_flush(n, legacy, tmp_path)
    try:
        differ = {k: (ours.get(k), one.get(k)) for k in set(ours) | set(one)
                  if "processing_time" not in k and "timestamp_lag" not in k
                  and ours.get(k) != one.get(k)}
        assert differ == {}
        if n > 1:  # the keys really are spread, and the own statistics come from worker 0 only
            assert all(sink.batches for sink in ws.sinks)
            for sink in ws.sinks[1:]:
                assert not any("numStats" in s[1] or "metrics_received" in s[1]
                               for s in sink.samples())
    finally:
        ws.close()


@pytest.mark.integration
@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "new-namespace"])
@pytest.mark.parametrize("n", [1, 2, 4])
def test_n_workers_same_as_the_reference(
    reference: Any, n: int, legacy: bool, tmp_path: Path
) -> None:
    theirs = reference_flush(reference, legacy, recorded_datagrams())
    ours, ws = workers_flush(n, legacy, tmp_path)
    ws.close()
    theirs = {k: v for k, v in theirs.items() if not any(x in k for x in REFERENCE_ONLY)}
    assert sorted(set(theirs) ^ set(ours)) == []
    differ = {
        name: (ours[name], theirs[name])
        for name in theirs
        if not any(x in name for x in VALUE_NOT_COMPARED)
        and not math.isclose(ours[name], theirs[name], rel_tol=1e-9, abs_tol=1e-9)
    }
    assert differ == {}


@pytest.mark.parametrize("n", [2, 4])
def test_n_workers_same_as_one_process_with_tags_dropped(n: int, tmp_path: Path) -> None:
    """statsd_tags = "drop" (the default): tagged series merge by name, in one worker."""
    one, ws1 = workers_flush(1, True, tmp_path, tags="drop")
    ours, ws = workers_flush(n, True, tmp_path, tags="drop")
    ws1.close()
    ws.close()
    assert "stats_counts.app.tagged" in ours and not any(";" in k for k in ours)
    assert {k: v for k, v in ours.items() if "processing_time" not in k} == {
        k: v for k, v in one.items() if "processing_time" not in k}


def test_router_keeps_every_key_of_a_name_together() -> None:
    router = WorkerRouter(4)
    lines = [b"a.b:1|c", b"a.b;x=1:2|c", b"a.b:3|ms|#k:v", b"a b:1|c", b"a_b:1|c", b"",
             b"bare", b"_e{1,1}:t|x", b"a.b|#k:v:1|c", b"  \r"]
    parts = router.split_lines(lines)
    where = {line: i for i, part in enumerate(parts) for line in part}
    assert where[b"a.b:1|c"] == where[b"a.b;x=1:2|c"] == where[b"a.b:3|ms|#k:v"]
    assert where[b"a b:1|c"] == where[b"a_b:1|c"]  # sanitised alike, aggregated alike
    assert where[b"bare"] == where[b"_e{1,1}:t|x"] == 0
    assert where[b""] == 0 and sum(map(len, parts)) == len(lines)
    assert router.split_lines(lines) == parts  # memoised answers are the same
    assert router.split(b"\n".join(lines)) == parts  # the regex pass finds the same names
    assert router.split(b"a.b:1|c\n") == router.split_lines([b"a.b:1|c", b""])


def test_key_cap_stays_a_total(tmp_path: Path) -> None:
    cfg = config(tmp_path, statsd_max_keys=10)
    ws = Workers(cfg, 2)
    ws.tick(T0)
    for i in range(100):
        ws.handle(f"k{i}:1|c".encode(), T0 + 0.5)
    ws.pump(T0 + 0.5)
    live = sum(w.inner.aggregator.live_keys() for w in ws.workers)
    assert 0 < live <= 10
    ws.close()


def test_gauges_survive_a_change_of_worker_count(tmp_path: Path) -> None:
    cfg2 = config(tmp_path, statsd_persistent_gauges=True)
    ws = Workers(cfg2, 2)
    ws.tick(T0)
    for i in range(40):
        ws.handle(f"g{i}:{i}|g".encode(), T0 + 0.5)
    ws.pump(T0 + 0.5)
    for w in ws.workers:
        w.close(T0 + 0.6)
    ws.close()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("gauges")) == [
        "gauges.save.w1", "gauges.save.w2"]
    for n in (1, 3):
        again = Workers(config(tmp_path, statsd_persistent_gauges=True), n)
        again.tick(T0 + 1)
        again.tick(T0 + 2)
        got = {s[1]: s[2] for s in again.samples() if s[1].startswith("stats.gauges.g")}
        assert got == {f"stats.gauges.g{i}": float(i) for i in range(40)}
        again.close()


def test_reload_hands_state_to_another_worker_count(tmp_path: Path) -> None:
    ws = Workers(config(tmp_path), 2)
    ws.tick(T0)
    for i in range(30):
        ws.handle(f"c{i}:{i}|c\nt{i}:{i}|ms".encode(), T0 + 0.5)
    ws.tick(T0 + 0.5)  # the burst ends: ingested here, routed there
    states = []
    for w in ws.workers:  # carry_state exchanges end markers: pump what is in flight first
        ws.pump(T0 + 0.5)
        states.append(w.inner.carry_state())
    ws.close()
    new = Workers(config(tmp_path), 3, states=states)
    new.tick(T0 + 0.7)
    new.tick(T0 + 1)
    got = {s[1]: s[2] for s in new.samples()}
    assert all(got[f"stats_counts.c{i}"] == i for i in range(30))
    assert all(got[f"stats.timers.t{i}.upper"] == i for i in range(30))
    assert got["stats_counts.statsd.metrics_received"] == 60
    new.close()


def test_management_config_and_unknown_commands(tmp_path: Path) -> None:
    ws = Workers(config(tmp_path, statsd_workers=2), 1)
    worker = ws.workers[0]
    stream = worker.open_stream("admin", ("127.0.0.1", 1))
    text = worker.admin.answer(stream, "config", 0.0)
    assert text is not None and text.startswith("\n") and "statsd_workers: 2\n" in text
    assert worker.admin.answer(stream, "nonsense", 0.0) == "ERROR\n"
    ws.close()


def test_management_lists_keys_in_arrival_order_across_workers(tmp_path: Path) -> None:
    """stats.js prints its objects in insertion order; two workers answer in that order too."""
    ws = Workers(config(tmp_path, statsd_workers=2), 2)
    ws.tick(T0)
    names = ["z.first", "m.second", "b.third", "q.fourth;k=v", "q.fourth", "a.b", "foo"]
    assert len({ws.workers[0].router.owner_of_key(n) for n in names}) == 2  # really spread
    ws.handle("\n".join(f"{n}:1|c" for n in names).encode(), T0 + 0.1)
    ws.handle(b"t.z:1|ms\nt.a:2|ms\nt.m:3|ms\ng;k=v:4|g\ng:3|g\ng.a:1|g", T0 + 0.2)
    ws.pump(T0 + 0.2)
    stream = ws.workers[0].open_stream("admin", ("127.0.0.1", 1))
    for command in (b"counters\n", b"timers\n", b"gauges\n"):
        stream.feed(command, T0 + 0.3)
        ws.pump(T0 + 0.3)
    text = ""
    while (chunk := stream.outgoing()[0]):
        text += chunk.decode()
        stream.sent(len(chunk))
    counters = text[text.index("'z.first'"):]
    assert [counters.index(f"'{n}'" if not n.isidentifier() else n) for n in names] == sorted(
        counters.index(f"'{n}'" if not n.isidentifier() else n) for n in names)
    assert "{ 't.z': [ 1 ], 't.a': [ 2 ], 't.m': [ 3 ] }" in text
    assert "{ 'g;k=v': 4, g: 3, 'g.a': 1 }" in text
    ws.close()
