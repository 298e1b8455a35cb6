"""Supervisor restart policy, with the process calls replaced (no real children)."""

import pytest

from bucky.config import make_config
from bucky.daemon import supervisor as sup
from bucky.daemon.children import ChildSpec


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
