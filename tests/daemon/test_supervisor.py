"""Supervisor restart policy, with the process calls replaced (no real children)."""

import pytest

from bucky.config import make_config
from bucky.daemon import supervisor as sup
from bucky.daemon.children import ChildSpec
from bucky.messages import SELF_METRICS


class DeadProcess:
    exitcode = 9
    pid = 0
    sentinel = -1

    def is_alive(self):
        return False

    def join(self, timeout=None):
        pass


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def harness(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(sup.time, "monotonic", clock)
    s = sup.Supervisor(make_config())
    s.started = True
    slot = sup.Slot(ChildSpec("input", "statsd", "statsd", s.cfg), stage=0, process=DeadProcess())
    s.slots = [slot]
    spawned = []

    def fake_spawn(slot):
        spawned.append(clock.t)
        slot.process = DeadProcess()  # it dies again at once
        slot.restart_at = None

    monkeypatch.setattr(s, "_spawn", fake_spawn)
    return s, slot, clock, spawned


def test_dead_child_is_restarted_with_growing_backoff(harness):
    s, slot, clock, spawned = harness
    delays = []
    for _ in range(4):
        s._reap_and_restart()  # notices the death, schedules the restart
        delays.append(slot.restart_at - clock.t)
        clock.t = slot.restart_at
        s._reap_and_restart()  # restarts it
    assert delays == [0.5, 1.0, 2.0, 4.0]
    assert len(spawned) == 4


def test_a_child_that_keeps_dying_halts_the_daemon(harness):
    s, slot, clock, spawned = harness
    with pytest.raises(sup.HaltError, match="statsd keeps dying .* last exit code 9"):
        for _ in range(20):
            s._reap_and_restart()
            clock.t = slot.restart_at if slot.restart_at else clock.t + 0.1
    assert len(spawned) == sup.MAX_RESTARTS


def test_deaths_far_apart_do_not_halt(harness):
    s, slot, clock, spawned = harness
    for _ in range(3 * sup.MAX_RESTARTS):
        s._reap_and_restart()
        clock.t = slot.restart_at + sup.RESTART_WINDOW  # a long healthy run between deaths
        s._reap_and_restart()
    assert len(spawned) == 3 * sup.MAX_RESTARTS


def test_delays_start_afresh_after_a_healthy_run(harness):
    s, slot, clock, spawned = harness
    for _ in range(3):
        s._reap_and_restart()
        clock.t = slot.restart_at
        s._reap_and_restart()
    assert slot.backoff.current_delay() == 2.0
    slot.backoff.connected(clock.t)  # it booted ...
    clock.t += sup.STABLE_AFTER  # ... and ran healthy for a while
    s._reap_and_restart()
    assert slot.restart_at - clock.t == sup.RESTART_DELAY


class CrashReport:
    """A control pipe holding what a crashed child said (bucky.daemon.children)."""

    def __init__(self, *msgs):
        self.msgs = list(msgs)

    def poll(self):
        return bool(self.msgs)

    def recv(self):
        return self.msgs.pop(0)


def test_an_auxiliary_child_that_keeps_dying_is_given_up_on_not_the_daemon(harness, caplog):
    """Issue 19: the status server dying six times in 60 s stopped every process. An auxiliary
    child is given up on instead (one ERROR line with the cause, a self-metric, a long pause),
    then tried again; relaying goes on."""
    s, slot, clock, spawned = harness
    slot.spec = ChildSpec("http", "http", "http", s.cfg)
    slot.essential = False
    slot.ctrl = CrashReport(("crashed", "OverflowError: int too large to convert to float"))
    caplog.set_level("ERROR", logger="bucky")
    for _ in range(20):
        s._reap_and_restart()  # never raises HaltError
        if slot.give_ups:
            break
        clock.t = slot.restart_at if slot.restart_at else clock.t + 0.1
    assert slot.give_ups == 1 and len(spawned) == sup.MAX_RESTARTS
    assert s.counters["given_up"] == 1
    assert slot.restart_at - clock.t == pytest.approx(sup.AUX_RETRY_DELAY)
    given_up = [r.getMessage() for r in caplog.records if "giving up" in r.getMessage()]
    assert len(given_up) == 1
    assert "http keeps dying (6 times in 60 s" in given_up[0]
    assert "OverflowError: int too large to convert to float" in given_up[0]
    # /health learns of it once the status server runs again
    s._http_writer = Recorder()
    s._report_to_http(force=True)
    (proc,) = s._http_writer.msgs[-1][1]["processes"]
    assert proc["essential"] is False and proc["given_up_at"] is not None
    assert "OverflowError" in proc["given_up_cause"]
    # tried again later, with a longer pause when it is given up on again
    clock.t = slot.restart_at
    for _ in range(20):
        s._reap_and_restart()
        if slot.give_ups == 2:
            break
        clock.t = slot.restart_at if slot.restart_at else clock.t + 0.1
    assert slot.give_ups == 2
    assert slot.restart_at - clock.t == pytest.approx(2 * sup.AUX_RETRY_DELAY)


def test_an_auxiliary_child_that_cannot_boot_at_start_does_not_halt(harness):
    s, slot, clock, spawned = harness
    s.started = False
    slot.spec = ChildSpec("http", "http", "http", s.cfg)
    slot.essential = False
    s._boot_failed(slot, "no such socket", clock.t)
    assert slot.restart_at == clock.t + sup.RESTART_DELAY
    slot.essential = True
    with pytest.raises(sup.HaltError, match="failed to start"):
        s._boot_failed(slot, "no such socket", clock.t)


class Recorder:
    def __init__(self):
        self.msgs = []

    def put(self, msg):
        self.msgs.append(msg)
        return True

    def pump(self):
        pass


def test_the_supervisor_sends_its_own_self_metrics_to_every_output(harness):
    s, slot, clock, spawned = harness
    s._selfmetrics = sup.SelfMetrics("supervisor", 1.0, lambda: 5000.0, "bucky.h")
    recorder = Recorder()
    s._self_channels = {slot: (None, recorder)}
    s.counters["given_up"] += 2
    s._send_self_metrics()  # anchors the schedule
    clock.t += 1.0
    s._send_self_metrics()
    ((kind, samples),) = recorder.msgs  # no gauges
    assert kind == SELF_METRICS
    values = {name: value for _, name, value, _ in samples}
    assert values["bucky.h.supervisor.given_up"] == 2
    assert values["bucky.h.supervisor.restarts"] == 0
