"""The loop every child runs (bucky.daemon.runner_loop): stop, supervisor gone, dispatch, drain."""

from __future__ import annotations

import os
import types
from typing import Any

from bucky.daemon.runner_loop import (
    INPUT_STOP_SHARE,
    OUTPUT_STOP_SHARE,
    Flags,
    Runner,
    stop_deadline,
)
from bucky.messages import BATCH, NOTIFICATION, SELF_METRICS


class FakeReader:
    def __init__(self, rounds: list[list[object]]) -> None:
        self.rounds = rounds
        self.corrupt_frames = 2

    def read(self) -> list[object]:
        return self.rounds.pop(0) if self.rounds else []


class Recording(Runner):
    def __init__(self, steps_before_stop: int, parent_pid: int | None = None) -> None:
        spec = types.SimpleNamespace(parent_pid=os.getppid() if parent_pid is None else parent_pid,
                                     cfg=types.SimpleNamespace(process_join_timeout=2.0))
        super().__init__(spec, Flags())  # type: ignore[arg-type]
        self.steps_before_stop = steps_before_stop
        self.steps = 0
        self.seen: list[tuple[str, object]] = []
        self.readers = []
        self.handlers = {BATCH: lambda m: self.seen.append(("batch", m)),
                         SELF_METRICS: lambda m: self.seen.append(("self", m))}

    def step(self) -> None:
        self.steps += 1
        if self.steps >= self.steps_before_stop:
            self.flags.stop = True

    def finish(self) -> Any:
        return ("finished", self.steps)


def test_run_steps_until_stopped_then_finishes() -> None:
    runner = Recording(steps_before_stop=3)
    assert runner.run() == ("finished", 3)


def test_run_stops_by_itself_when_the_supervisor_is_gone() -> None:
    runner = Recording(steps_before_stop=1000, parent_pid=-1)
    assert runner.run() == ("finished", 1)


def test_dispatch_goes_by_kind_and_ignores_what_it_has_no_handler_for() -> None:
    runner = Recording(1)
    batch = [(None, "a", 1, 2)]
    runner.dispatch([batch, (NOTIFICATION, "n"), (SELF_METRICS, []), "junk", (), None])
    assert runner.seen == [("batch", batch), ("self", (SELF_METRICS, []))]


def test_read_rest_reads_until_the_channels_are_empty() -> None:
    runner = Recording(1)
    rounds: list[int] = []
    runner.readers = [FakeReader([[[1]], [[2], [3]]]), FakeReader([[[4]]])]  # type: ignore[list-item]
    runner.read_rest(lambda: rounds.append(len(runner.seen)))
    assert [m for _, m in runner.seen] == [[1], [4], [2], [3]]
    assert rounds == [2, 4]
    assert runner.corrupt_frames() == 4


def test_stop_deadline_is_a_share_of_the_stage_time_with_a_floor() -> None:
    assert stop_deadline(10.0, INPUT_STOP_SHARE, 100.0) == 104.0
    assert stop_deadline(10.0, OUTPUT_STOP_SHARE, 100.0) == 108.0
    assert stop_deadline(0.0, 0.4, 5.0) == 5.2
