"""Backoff schedule, attempt budget and reset, on an injected clock (no sleeping)."""

from __future__ import annotations

import pytest

from bucky.daemon.backoff import Backoff


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _delays(backoff: Backoff, clock: FakeClock, failures: int) -> list[float]:
    """Fail `failures` times, each as soon as allowed; the waits imposed in between."""
    waits = []
    for _ in range(failures):
        assert backoff.ready()
        backoff.failure()
        wait = backoff.wait_time()
        waits.append(round(wait, 6))
        clock.advance(wait)
    return waits


def test_first_attempt_is_immediate(clock: FakeClock) -> None:
    backoff = Backoff(1.0, 1.5, 60.0, 60, clock)
    assert backoff.ready() and backoff.wait_time() == 0.0 and backoff.attempts == 0


def test_schedule_grows_by_factor_and_is_capped(clock: FakeClock) -> None:
    backoff = Backoff(1.0, 1.5, 5.0, -1, clock)
    assert _delays(backoff, clock, 7) == [1.0, 1.5, 2.25, 3.375, 5.0, 5.0, 5.0]


def test_not_ready_before_the_delay_has_passed(clock: FakeClock) -> None:
    backoff = Backoff(1.0, 2.0, 60.0, 10, clock)
    backoff.failure()
    clock.advance(0.999)
    assert not backoff.ready()
    assert backoff.wait_time() == pytest.approx(0.001)
    clock.advance(0.001)
    assert backoff.ready()
    assert backoff.ready(now=clock.now - 1) is False  # an explicit `now` wins over the clock


def test_max_attempts_exhausts_once_then_keeps_retrying_on_schedule(clock: FakeClock) -> None:
    backoff = Backoff(1.0, 2.0, 5.0, 2, clock)
    results, waits = [], []
    for _ in range(5):
        results.append(backoff.failure())
        waits.append(backoff.wait_time())
        clock.advance(backoff.wait_time())
    assert results == [False, True, False, False, False]
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]  # no jump to the maximum: recovery stays quick
    assert backoff.exhausted and backoff.attempts == 5


def test_zero_max_attempts_is_exhausted_from_the_start(clock: FakeClock) -> None:
    backoff = Backoff(1.0, 2.0, 3.0, 0, clock)
    assert backoff.exhausted
    assert backoff.failure() is False  # nothing left to use up: no second "just exhausted"


def test_negative_max_attempts_retries_forever(clock: FakeClock) -> None:
    backoff = Backoff(0.5, 10.0, 60.0, -1, clock)
    assert not any(backoff.failure() for _ in range(5000))  # factor ** 5000 overflows a float
    assert not backoff.exhausted
    assert backoff.current_delay() == 60.0


def test_reset_after_a_stable_connection(clock: FakeClock) -> None:
    backoff = Backoff(1.0, 1.5, 60.0, 5, clock, stable_after=2.0)
    _delays(backoff, clock, 3)
    backoff.connected()
    clock.advance(2.0)
    assert backoff.is_stable()
    assert backoff.disconnected() is False
    assert backoff.attempts == 0 and backoff.ready()  # reconnect at once, budget restored
    assert _delays(backoff, clock, 2) == [1.0, 1.5]


def test_short_lived_connection_counts_as_a_failed_attempt(clock: FakeClock) -> None:
    backoff = Backoff(1.0, 2.0, 60.0, 3, clock)  # stable_after defaults to max(1 s, delay)
    outcomes = []
    for _ in range(3):
        assert backoff.ready()
        backoff.connected()
        clock.advance(0.01)  # the peer resets at once
        outcomes.append(backoff.disconnected())
        clock.advance(backoff.wait_time())
    assert backoff.attempts == 3
    assert outcomes == [False, False, True]


def test_explicit_reset(clock: FakeClock) -> None:
    backoff = Backoff(1.0, 2.0, 60.0, 2, clock)
    backoff.failure()
    backoff.failure()
    assert backoff.exhausted
    backoff.reset()
    assert not backoff.exhausted and backoff.ready() and backoff.current_delay() == 0.0


def test_zero_delay_and_bad_values_are_clamped(clock: FakeClock) -> None:
    backoff = Backoff(0.0, 0.5, -1.0, -1, clock)
    backoff.failure()
    assert backoff.wait_time() == 0.0 and backoff.ready()
    assert backoff.factor == 1.0 and backoff.max_delay == 0.0
