"""The loop every child process runs, whatever its role: the skeleton the runners fill in.

A runner (bucky.daemon.input_runner, processor_runner, output_runner, http_runner) is built in the
child from its ChildSpec (bucky.daemon.children), then `run()`:

    until told to stop (a signal sets `Flags`) or the supervisor is gone:
        step()              wait for work (bounded by LOOP_TIMEOUT or less) and do it
        give unused memory back to the system (bucky.daemon.memory.Trimmer, rate-limited)
    return finish()         stop: pass on what is left, within the stage's share of the
                            shutdown time (`stop_deadline`); the result is the state handed to
                            the successor on a reload (inputs only)

Messages read from channels go through `dispatch`: bucky.messages.kind_of decodes each one and
the runner's `handlers` table (message kind -> method) says what to do with it; kinds a runner
has no handler for are ignored. `read_rest` reads what upstream left in the channels once it has
stopped (the processor and the outputs drain their inputs this way).

Signals only set flags; the loop acts on them: SIGTERM = stop for good (final flush), SIGHUP =
stop for a reload (hand state back), SIGINT is ignored (the supervisor orders the shutdown).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bucky.daemon.channels import ChannelReader
from bucky.daemon.memory import Trimmer
from bucky.messages import kind_of

if TYPE_CHECKING:
    from bucky.daemon.children import ChildSpec

_DEFAULT_QUEUE_SAMPLES = 1_000_000
_BYTES_PER_SAMPLE = 40  # encoded (None, name, value, ts) tuples average well under this
BATCH_SIZE = 5000
BATCH_MAX_AGE = 0.2
LOOP_TIMEOUT = 0.05  # the longest a loop waits before it looks at its timers and flags
_MIN_STOP_SECONDS = 0.2
_MAX_READ_ROUNDS = 1000  # read_rest: upstream has stopped, so this is never reached in practice

# Shares of process_join_timeout a stage uses to pass on what it holds once told to stop: an
# input and the processor leave the rest of the stage's time to the stages after them; an output
# is the last stage on the data path.
INPUT_STOP_SHARE = 0.4
PROCESSOR_STOP_SHARE = 0.4
OUTPUT_STOP_SHARE = 0.8


def queue_bytes(max_sample_queue: int) -> int:
    """How many encoded bytes a channel writer may hold (`max_sample_queue` samples; 0: the
    default)."""
    samples = max_sample_queue or _DEFAULT_QUEUE_SAMPLES
    return max(samples * _BYTES_PER_SAMPLE, 1 << 20)


def stop_deadline(stage_time: float, share: float, now: float) -> float:
    """The monotonic time by which a stopping stage is done with its `share` of the stage time
    (`process_join_timeout`)."""
    return now + max(stage_time * share, _MIN_STOP_SECONDS)


class Flags:
    """What the signal handlers record; the loop reads it."""

    def __init__(self) -> None:
        self.stop = False
        self.reload = False

    def install(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_term(self, signum: int, frame: object) -> None:
        self.stop = True

    def _on_hup(self, signum: int, frame: object) -> None:
        self.stop = True
        self.reload = True


class Runner:
    """The skeleton: subclasses set `readers` and `handlers` and implement step() and finish()."""

    readers: list[ChannelReader]
    handlers: dict[str, Callable[[Any], None]]

    def __init__(self, spec: ChildSpec, flags: Flags) -> None:
        self.spec = spec
        self.flags = flags
        self.trimmer = Trimmer()

    def run(self) -> Any:
        flags = self.flags
        while not flags.stop:
            self.step()
            self.trimmer.maybe_trim(time.monotonic())
            if self.parent_gone():
                break
        return self.finish()

    def step(self) -> None:
        raise NotImplementedError

    def finish(self) -> Any:
        raise NotImplementedError

    def parent_gone(self) -> bool:
        """The supervisor vanished (its children were re-parented): stop by ourselves."""
        return os.getppid() != self.spec.parent_pid

    def dispatch(self, msgs: list[object]) -> None:
        handlers = self.handlers
        for msg in msgs:
            handler = handlers.get(kind_of(msg))  # type: ignore[arg-type]
            if handler is not None:
                handler(msg)

    def read_rest(self, after_round: Callable[[], None] | None = None) -> None:
        """Upstream has stopped, so everything it wrote is in the channels: handle it all."""
        readers = self.readers
        for _ in range(_MAX_READ_ROUNDS):
            msgs = [msg for reader in readers for msg in reader.read()]
            if not msgs:
                break
            self.dispatch(msgs)
            if after_round is not None:
                after_round()

    def corrupt_frames(self) -> int:
        return sum(reader.corrupt_frames for reader in self.readers)
