"""The status server's state: bounds, health rules, the Prometheus text and the output feed."""

from __future__ import annotations

from collections import Counter

from buckyproc import ROOT
from prometheus_client.parser import text_string_to_metric_families

from bucky.daemon.channels import Channel
from bucky.daemon.http_feed import TAP_BUDGET, HttpFeed, destination_status
from bucky.daemon.selfmetrics import SelfMetrics, expand_prefix, short_host
from bucky.http.state import (
    HISTORY_PLOTS,
    HISTORY_POINTS,
    LOSS_WINDOW,
    MAX_SELF_SERIES,
    Rate,
    RelayHistory,
    SeriesStore,
    StatusState,
)
from bucky.names import NameRules

PREFIX = "bucky.h1"


def new_state(**kw) -> StatusState:
    return StatusState(PREFIX, 600.0, NameRules().statname, **kw)


def procs(*entries: tuple[str, str, bool]) -> tuple:
    return ("procs", {"time": 0, "processes": [
        {"title": t, "role": r, "kind": t, "up": up, "restarts": 0} for t, r, up in entries]})


def status(title: str, state: str = "up", accepting: bool = True, sent: int = 0) -> tuple:
    return ("status", title, {"time": 0, "pending": 3, "counters": {"received": sent},
                              "destinations": [{"label": "c1", "address": "127.0.0.1:2003",
                                                "state": state, "accepting": accepting,
                                                "pending": 3, "counters": {"sent": sent}}]})


def test_series_store_is_bounded_and_evicts_least_recently_updated() -> None:
    store = SeriesStore(600.0, max_series=100, max_points=5)
    for i in range(1000):
        store.add(f"a.b{i % 250}", float(i), float(i), now=float(i))
    assert len(store) == 100
    assert store.evicted_series == 150 + 750  # every new name beyond 100 evicts one
    assert store.points("a.b0", now=1000.0) is None  # evicted
    for i in range(20):
        store.add("a.hot", float(i), 1000.0 + i, now=1000.0 + i)
        store.add(f"a.cold{i}", 0.0, 0.0, now=1000.0 + i)
    assert store.points("a.hot", now=1020.0) == [[1000.0 + i, float(i)] for i in range(15, 20)]


def test_series_store_forgets_what_the_history_window_left() -> None:
    store = SeriesStore(60.0)
    store.add("old.one", 1.0, 100.0, now=100.0)
    store.add("new.one", 2.0, 150.0, now=150.0)
    store.expire(now=170.0)
    assert store.points("old.one", 170.0) is None
    assert store.points("new.one", 170.0) == [[150.0, 2.0]]


def test_tree_lists_branches_and_leaves_with_last_values() -> None:
    store = SeriesStore(600.0)
    store.add("stats.gauges.a", 1.0, 10.0, 10.0)
    store.add("stats.gauges.a", 2.0, 20.0, 20.0)
    store.add("stats.gauges.b", 5.0, 20.0, 20.0)
    store.add("host.cpu.0", 7.0, 20.0, 20.0)
    top = store.tree("")
    assert [(n["name"], n["leaf"], n["series"]) for n in top] == [("host", False, 1),
                                                                  ("stats", False, 2)]
    leaves = store.tree("stats.gauges")
    assert [(n["path"], n["leaf"], n["last"]) for n in leaves] == [
        ("stats.gauges.a", True, 2.0), ("stats.gauges.b", True, 5.0)]


def test_tap_messages_become_series_under_graphite_names() -> None:
    state = new_state()
    state.handle(("tap", "graphite", [("web1.example.com", "cpu.idle", 97.0, 100),
                                      (None, "stats.x", 1, 100)]), now=101.0)
    assert state.series.points("com.example.web1.cpu.idle", 101.0) == [[100.0, 97.0]]
    assert state.series.points("stats.x", 101.0) == [[100.0, 1.0]]


def test_garbage_messages_are_counted_not_fatal() -> None:
    state = new_state()
    for msg in (None, (), ("tap",), ("tap", "x", [(1, 2)]), ("status", "x", 5), ("what", 1)):
        state.handle(msg, now=1.0)
    assert state.counters["unknown_messages"] == 6


def test_health_needs_every_input_and_output_up_and_each_destination_within_its_plan() -> None:
    state = new_state()
    ok, body = state.health(now=10.0)
    assert not ok and "no process list" in body["reasons"][0]
    state.handle(procs(("statsd", "input", True), ("graphite", "output", True),
                       ("http", "http", True)), now=10.0)
    ok, body = state.health(now=10.0)
    assert not ok and body["reasons"] == ["no status from output graphite yet"]
    state.handle(status("graphite"), now=10.0)
    assert state.health(now=10.0) == (True, state.health(now=10.0)[1])
    # down but still within its reconnect plan: healthy
    state.handle(status("graphite", state="connecting"), now=11.0)
    assert state.health(now=11.0)[0]
    # reconnects used up: unhealthy, with the reason
    state.handle(status("graphite", state="down", accepting=False), now=12.0)
    ok, body = state.health(now=12.0)
    assert not ok and "c1 (graphite) is down" in body["reasons"][0]
    state.handle(status("graphite"), now=13.0)
    assert state.health(now=13.0)[0]
    # a process down, and silence from an output, are reasons too
    state.handle(procs(("statsd", "input", False), ("graphite", "output", True)), now=14.0)
    ok, body = state.health(now=14.0)
    assert not ok and body["reasons"] == ["process statsd is down"]
    state.handle(procs(("statsd", "input", True), ("graphite", "output", True)), now=40.0)
    ok, body = state.health(now=40.0)
    assert not ok and "no status from output graphite for" in body["reasons"][0]


def test_prometheus_text_parses_with_counters_as_total_and_labels() -> None:
    state = new_state()
    state.handle(procs(("statsd", "input", True), ("graphite", "output", True)), now=1.0)
    state.handle(status("graphite", sent=42), now=1.0)
    sm = SelfMetrics("statsd", 1.0, lambda: 1000.0, PREFIX)
    state.handle(("self", sm.collect(1.0, [{"dropped.queue_full": 3, "datagrams": 10}],
                                     {"queue_bytes": 77}), sm.gauge_names), now=1.0)
    state.handle(("self", sm.collect(2.0, [{"dropped.queue_full": 5, "datagrams": 30}],
                                     {"queue_bytes": 9}), sm.gauge_names), now=2.0)
    text = state.prometheus(now=2.0)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in families.values() for s in f.samples}
    assert families["bucky_dropped_queue_full"].type == "counter"
    assert values[("bucky_dropped_queue_full_total", (("process", "statsd"),))] == 5
    assert values[("bucky_datagrams_total", (("process", "statsd"),))] == 30
    assert families["bucky_queue_bytes"].type == "gauge"
    assert values[("bucky_queue_bytes", (("process", "statsd"),))] == 9
    out = SelfMetrics("graphite", 1.0, lambda: 1000.0, PREFIX)
    state.handle(("self", out.collect(2.0, [{"c1.sent": 42, "sent": 42}])), now=2.0)
    text = state.prometheus(now=2.0)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in families.values() for s in f.samples}
    assert "bucky_c1_sent" not in families  # per destination: with a destination label instead
    assert values[("bucky_sent_total", (("process", "graphite"),))] == 42
    dest = (("destination", "c1"), ("process", "graphite"))
    assert values[("bucky_destination_sent_total", dest)] == 42
    assert values[("bucky_destination_up", dest)] == 1
    assert values[("bucky_process_up", (("process", "statsd"),))] == 1
    status_body = state.status(now=2.0)
    assert status_body["inputs"] == [{"process": "statsd", "rate_in": 20.0,
                                      "rate_out": 0.0}]
    assert status_body["rejects"][0]["counter"] == "dropped.queue_full"


def test_self_metric_names_are_bounded() -> None:
    state = new_state()
    samples = [(None, f"{PREFIX}.p.c{i}", 1, 1) for i in range(MAX_SELF_SERIES + 10)]
    state.handle(("self", samples), now=1.0)
    assert len(state.selfm) == MAX_SELF_SERIES
    assert state.counters["dropped_self_metrics"] == 10


def test_short_host_and_prefix() -> None:
    assert short_host("web-1.example.com") == "web-1"
    assert short_host("weird name!.x") == "weird_name_"
    assert short_host("") == "localhost"
    assert expand_prefix("bucky.{host}", "db2.lan") == "bucky.db2"
    assert expand_prefix("relay.{host}.bucky.", "db2") == "relay.db2.bucky"
    sm = SelfMetrics("collectd.1", 1.0, lambda: 5.0, "bucky.db2")
    sm.collect(0.0, [{}])
    out = sm.collect(1.0, [{"datagrams": 2}], {"queue_bytes": 1})
    assert (None, "bucky.db2.collectd_1.datagrams", 2, 5) in out
    assert sm.gauge_names == ["bucky.db2.collectd_1.queue_bytes"]


class _Client:
    name = "graphite"

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter(sent=5)

    def pending(self) -> int:
        return 0


def test_feed_taps_whole_batches_under_budget_and_samples_above() -> None:
    ch = Channel("t")
    try:
        counters: Counter[str] = Counter()
        feed = HttpFeed(ch.writer(1 << 20), "graphite", tap=True, forward_self=True,
                        counters=counters)
        small = [(None, f"s.{i}", i, 1) for i in range(10)]
        feed.batch(small)
        big = [(None, f"b.{i}", i, 1) for i in range(50_000)]
        feed.batch(big)
        feed.batch(big)  # budget used up: nothing more this period
        feed.tick(100.0, _Client())
        msgs = ch.reader().read()
        tap = [m for m in msgs if m[0] == "tap"][0][2]
        assert tap[:10] == small
        assert TAP_BUDGET // 2 < len(tap) <= TAP_BUDGET
        stat = [m for m in msgs if m[0] == "status"][0]
        assert stat[1] == "graphite" and stat[2]["destinations"][0]["counters"] == {"sent": 5}
        feed.batch(small)
        feed.tick(100.1, _Client())  # not due yet
        assert ch.reader().read() == []
    finally:
        ch.close()


def test_destination_status_uses_status_and_connections_when_the_client_has_them() -> None:
    class Conn:
        label = "a"
        accepting = False

    class Multi(_Client):
        connections = [Conn()]

        def status(self) -> list[dict]:
            return [{"label": "a", "address": "x:1", "state": "down", "pending": 1,
                     "counters": {}}]

    (entry,) = destination_status(Multi())
    assert entry["accepting"] is False and entry["state"] == "down"
    (plain,) = destination_status(_Client())
    assert plain["label"] == "graphite" and plain["accepting"] is True


def test_a_full_store_stays_under_the_memory_the_readme_states() -> None:
    import tracemalloc

    from bucky.http.state import MAX_POINTS, MAX_SERIES

    tracemalloc.start()
    try:
        store = SeriesStore(600.0)
        before = tracemalloc.get_traced_memory()[0]
        for round_ in range(MAX_POINTS + 5):  # every point its own value and time objects
            for i in range(MAX_SERIES + 100):  # more names than the bound: evictions too
                store.add(f"host{i % 97}.plugin{i}.type.instance_{i}", i + round_ / 7,
                          1000.0 + round_, 1000.0 + round_)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(store) == MAX_SERIES
    readme = " ".join((ROOT / "README.rst").read_text().split())
    assert "about 32 MB at worst" in readme
    assert used < 32 * 1024 * 1024, used / 1e6


def test_the_tap_survives_numbers_beyond_float() -> None:
    """Issue 19: `crash.http 1<400 zeros> <now>` reached the tap as an int; float() raised
    OverflowError, which killed the http process. Such samples are skipped, the rest kept."""
    state = new_state()
    state.handle(("tap", "graphite", [(None, "crash.http", 10 ** 400, 100),
                                      (None, "crash.when", 1, 10 ** 400),
                                      (None, "crash.inf_time", 1, float("inf")),
                                      (None, "fine", 3, 100)]), now=101.0)
    assert state.counters["unknown_messages"] == 0
    assert state.series.points("crash.http", 101.0) is None
    assert state.series.points("crash.when", 101.0) is None
    assert state.series.points("fine", 101.0) == [[100.0, 3.0]]
    state.handle(("self", [(None, PREFIX + ".carbon.points", 10 ** 400, 100)]), now=101.0)
    assert state.counters["unknown_messages"] == 1  # counted, not raised


def dest_status(title: str, state: str = "up", accepting: bool = True, spool=None,
                exhausted: bool = False, **counters: int) -> tuple:
    return ("status", title, {"time": 0, "pending": 0, "counters": {},
                              "destinations": [{"label": "c1", "address": "127.0.0.1:2003",
                                                "state": state, "accepting": accepting,
                                                "pending": 0, "spool": spool,
                                                "reconnects_exhausted": exhausted,
                                                "counters": {"sent": 1, **counters}}]})


def running(state: StatusState, now: float, **extra) -> None:
    state.handle(("procs", {"time": 0, "processes": [
        {"title": "statsd", "role": "input", "kind": "statsd", "up": True, "restarts": 0,
         "essential": True},
        {"title": "graphite", "role": "output", "kind": "graphite", "up": True, "restarts": 0,
         "essential": True},
        {"title": "http", "role": "http", "kind": "http", "essential": False, "restarts": 0,
         **{"up": True, **extra}}]}), now)


def test_health_has_three_states_ok_degraded_failing() -> None:
    """Issue 19, section 3: degraded while nothing is lost but an operator is needed (200),
    failing while data is lost or an essential process is down (503)."""
    state = new_state()
    running(state, 10.0)
    state.handle(dest_status("graphite"), now=10.0)
    assert state.health(10.0) == (True, state.health(10.0)[1])
    assert state.health(10.0)[1]["status"] == "ok"
    # unreachable, within its plan: degraded, still 200
    state.handle(dest_status("graphite", state="connecting"), now=11.0)
    ok, body = state.health(11.0)
    assert ok and body["status"] == "degraded"
    assert body["reasons"] == ["destination c1 (graphite) is connecting"]
    # the spool holds data (even once reconnected): degraded
    state.handle(dest_status("graphite", state="down", spool=500, exhausted=True), now=12.0)
    ok, body = state.health(12.0)
    assert ok and body["status"] == "degraded" and len(body["reasons"]) == 2
    assert "the disk spool keeps the data" in body["reasons"][0]
    assert "500 datapoints wait in the disk spool" in body["reasons"][1]
    # out of its plan without a spool: failing, 503
    state.handle(dest_status("graphite", state="down", accepting=False,
                             **{"dropped.reconnects_exhausted": 7}), now=13.0)
    ok, body = state.health(13.0)
    assert not ok and body["status"] == "failing"
    assert "reconnect plan is used up: new data is dropped" in body["reasons"][0]
    # connected again, but it dropped data a moment ago: still failing, until LOSS_WINDOW passed
    state.handle(dest_status("graphite", **{"dropped.reconnects_exhausted": 9}), now=14.0)
    ok, body = state.health(14.0)
    assert not ok and body["status"] == "failing" and "is dropping datapoints" in body["reasons"][0]
    running(state, 14.0 + LOSS_WINDOW + 1)
    state.handle(dest_status("graphite", **{"dropped.reconnects_exhausted": 9}),
                 now=14.0 + LOSS_WINDOW + 1)
    assert state.health(14.0 + LOSS_WINDOW + 1)[1]["status"] == "ok"


def test_health_auxiliary_processes_degrade_essential_ones_fail() -> None:
    state = new_state()
    running(state, 10.0, up=False)
    state.handle(dest_status("graphite"), now=10.0)
    ok, body = state.health(10.0)
    assert ok and body["status"] == "degraded" and body["reasons"] == ["process http is down"]
    running(state, 20.0, given_up_at=15.0, given_up_cause="exit code 4")
    state.handle(dest_status("graphite"), now=20.0)
    ok, body = state.health(20.0)
    assert ok and body["status"] == "degraded"
    assert body["reasons"] == ["process http kept dying and was given up on 5 s ago (exit code 4)"]
    state.handle(procs(("statsd", "input", False), ("graphite", "output", True)), now=21.0)
    ok, body = state.health(21.0)
    assert not ok and body["status"] == "failing"


def test_health_fails_while_an_input_drops_for_a_full_queue() -> None:
    state = new_state()
    running(state, 10.0)
    state.handle(dest_status("graphite"), now=10.0)
    sm = SelfMetrics("statsd", 1.0, lambda: 1000.0, PREFIX)
    state.handle(("self", sm.collect(1.0, [{"dropped.queue_full": 40}])), now=10.0)
    ok, body = state.health(10.0)
    assert not ok and body["reasons"] == [
        "process statsd dropped 40 (dropped.queue_full) in its last report"]
    state.handle(("self", sm.collect(2.0, [{"dropped.queue_full": 40}])), now=11.0)
    assert state.health(11.0)[0]


def test_degraded_answers_503_when_configured() -> None:
    state = new_state(degraded_status=503)
    running(state, 10.0)
    state.handle(dest_status("graphite", state="connecting"), now=10.0)
    ok, body = state.health(10.0)
    assert not ok and body["status"] == "degraded"


def test_metrics_carry_the_health_state() -> None:
    state = new_state()
    running(state, 10.0)
    state.handle(dest_status("graphite", state="connecting"), now=10.0)
    families = {f.name: f for f in text_string_to_metric_families(state.prometheus(10.0))}
    values = {s.labels["state"]: s.value for s in families["bucky_health"].samples}
    assert values == {"ok": 0.0, "degraded": 1.0, "failing": 0.0}


def test_rates_span_a_sliding_window_so_bursts_do_not_read_as_zero() -> None:
    rate = Rate()
    seen = []
    for tick in range(80):  # a snapshot every 0.5 s; the total grows by 100 every 2 s
        now = 100.0 + tick * 0.5
        rate.update(float(100 * (tick // 4)), now)
        if now >= 112.0:  # once a whole window is there
            seen.append(rate.rate)
    assert all(40.0 <= r <= 60.0 for r in seen), seen  # 50 /s, never 0 between bursts
    assert len(rate.points) <= 22  # bounded by the window
    rate.update(5.0, 200.0)  # a restarted process counts from 0 again: no negative rate
    assert rate.rate == 0.0
    rate.update(25.0, 202.0)
    assert rate.rate == 10.0


def test_a_destinations_sent_rate_is_steady_between_polls() -> None:
    state = new_state()
    state.handle(procs(("graphite", "output", True)), now=0.0)
    rates = []
    for tick in range(60):
        now = 100.0 + tick * 0.5
        state.handle(status("graphite", sent=1000 * (tick // 3)), now=now)  # a flush every 1.5 s
        if now >= 111.0:
            rates.append(state.status(now)["destinations"][0]["rate_out"])
    assert rates and all(550 <= r <= 800 for r in rates), rates  # 667 /s, never 0


def test_a_reject_reason_that_just_appeared_has_a_rate_at_once() -> None:
    state = new_state()
    state.handle(procs(("statsd", "input", True)), now=0.0)
    sm = SelfMetrics("statsd", 10.0, lambda: 1000.0, PREFIX)
    state.handle(("self", sm.collect(10.0, [{"errors": 2}])), now=10.0)
    state.handle(("self", sm.collect(20.0, [{"errors": 7, "errors.handler": 5}])), now=20.0)
    rejects = {r["counter"]: r for r in state.status(20.0)["rejects"]}
    assert rejects["errors"]["rate"] == 0.5
    assert rejects["errors.handler"]["rate"] == 0.5  # 5 since the report 10 s before


def test_self_metrics_are_in_the_series_tree() -> None:
    state = new_state()
    sm = SelfMetrics("statsd", 1.0, lambda: 1000.0, PREFIX)
    state.handle(("self", sm.collect(1.0, [{"datagrams": 10}], {"queue_bytes": 77}),
                  sm.gauge_names), now=1000.0)
    assert [n["path"] for n in state.series.tree("")] == ["bucky"]
    leaves = {n["path"]: n["last"] for n in state.series.tree(f"{PREFIX}.statsd")}
    assert leaves == {f"{PREFIX}.statsd.datagrams": 10.0, f"{PREFIX}.statsd.queue_bytes": 77.0}


def spooled_status(title: str, sent: int, pending: int, spool: int) -> tuple:
    return ("status", title, {"time": 0, "pending": pending, "counters": {},
                              "destinations": [{"label": "c1", "address": "127.0.0.1:2003",
                                                "state": "down", "pending": pending,
                                                "counters": {"sent": sent}, "spool": spool,
                                                "spool_age": 12.5,
                                                "placement": "consistent-hashing"}]})


def test_the_relay_history_has_a_line_per_input_destination_and_process() -> None:
    state = new_state()
    state.handle(procs(("statsd", "input", True), ("graphite", "output", True)), now=0.0)
    sm = SelfMetrics("statsd", 1.0, lambda: 1000.0, PREFIX)
    for second in range(1, 31):
        now = 1000.0 + second
        state.handle(("self", sm.collect(now, [{"queued": 50 * second,
                                                "bad_lines": 2 * second}])), now=now)
        state.handle(spooled_status("graphite", 40 * second, 7, 100 + second), now=now)
        state.tick(now)
    plots = {p["key"]: p for p in state.history(1030.0)["plots"]}
    assert list(plots) == list(HISTORY_PLOTS)
    assert plots["in"]["lines"]["statsd"][-1][1] == 50.0
    assert plots["out"]["lines"]["c1"][-1][1] == 40.0
    assert plots["drops"]["lines"]["statsd"][-1][1] == 2.0
    assert plots["backlog"]["lines"]["c1"][-1] == [1029.0, 7.0]  # a point every 2 s
    assert plots["spool"]["lines"]["c1"][-1] == [1029.0, 129.0]
    assert state.history(1030.0)["history_seconds"] == 600.0


def test_the_relay_history_is_bounded_by_its_window_points_and_lines() -> None:
    history = RelayHistory(60.0, max_points=30, max_lines=5)
    assert history.step == 2.0
    for tick in range(2000):
        now = tick * 0.2
        if history.due(now):
            history.record(now, [("out", f"d{i}", float(tick)) for i in range(8)])
    assert len(history.lines) == 5 and history.dropped_lines > 0
    for line in history.lines.values():
        assert len(line) <= 30 and line[0][0] >= 399.8 - 60.0
    history.record(1000.0, [])
    assert history.lines == {}  # nothing in the window any more
    assert RelayHistory(600.0).step == 600.0 / HISTORY_POINTS


def test_status_says_what_runs_and_where_each_destination_stands() -> None:
    state = new_state()
    about = {"version": "9.9", "host": "relay1", "config_file": "/etc/bucky.conf",
             "started": 1000.0}
    state.handle(("procs", {"time": 0, "processes": [], "about": about}), now=1000.0)
    state.handle(spooled_status("graphite", 10, 3, 40), now=1060.0)
    body = state.status(1075.0)
    assert body["about"] == dict(about, uptime=75.0)
    dest = body["destinations"][0]
    assert (dest["placement"], dest["spool"], dest["spool_age"]) == ("consistent-hashing", 40,
                                                                      12.5)
    assert new_state().status(1.0)["about"] == {"uptime": None}
