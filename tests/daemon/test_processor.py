"""The processor stage: Bucky 2's processor(host, name, value, timestamp) contract."""

import collections
import logging

import pytest

from bucky.daemon.processor import Processor
from bucky.ratelog import RateLimitedLog


def make_runner(fn, drop_on_error):
    return Processor(fn, drop_on_error, RateLimitedLog(logging.getLogger("test")))


CALLS = collections.Counter()


def user_processor(host, name, value, timestamp):
    CALLS[name] += 1
    if name.startswith("boom"):
        raise ValueError("boom")
    if name == "drop":
        return None
    if name == "list":
        return [host, name, value, timestamp]  # any 4-item sequence is accepted
    if name == "short":
        return (host, name)
    return host, name.upper(), value * 2, timestamp


BATCH = [(None, n, 1, 100) for n in ("boom0", "a", "boom", "drop", "list", "short", "b", "boom2")]


@pytest.mark.parametrize("drop_on_error", [False, True])
def test_every_sample_seen_once_and_errors_handled(drop_on_error):
    CALLS.clear()
    runner = make_runner(user_processor, drop_on_error)
    out = runner.process(list(BATCH))
    assert set(CALLS.values()) == {1} and len(CALLS) == len(BATCH)
    kept = [(None, "A", 2, 100), (None, "list", 1, 100), (None, "B", 2, 100)]
    errors = [(None, "boom0", 1, 100), (None, "boom", 1, 100), (None, "boom2", 1, 100)]
    if drop_on_error:
        assert out == kept
        assert runner.counters["dropped.error"] == 3
    else:
        assert sorted(out) == sorted(kept + errors)
    assert runner.counters["errors"] == 4  # three raised, one returned a 2-tuple
    assert runner.counters["dropped.bad_result"] == 1
    assert runner.counters["filtered"] == 1
    assert runner.counters["received"] == len(BATCH)


def test_fast_path_passes_results_through():
    runner = make_runner(lambda h, n, v, t: (h, n, v + 1, t), False)
    batch = [("h", f"m{i}", i, 1) for i in range(1000)]
    assert runner.process(batch) == [("h", f"m{i}", i + 1, 1) for i in range(1000)]
    assert runner.counters["errors"] == 0 and runner.counters["filtered"] == 0
