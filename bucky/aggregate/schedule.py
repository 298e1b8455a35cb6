"""Flush schedules that run on the monotonic clock and stamp on the wall-clock grid.

What this module is for: StatsD and MetricsD flush every `interval` seconds. *When* a flush is due
is measured on a monotonic clock, so a step of the system clock (NTP, a resumed VM) neither stops
flushing nor bursts it. *What timestamp* a flush writes comes from the wall clock, aligned to the
grid of multiples of `interval` since the epoch, so Bucky's series line up with everything else
written from the same host.

Rules (sans-I/O: the caller passes both readings, `now` = wall-clock epoch seconds and `mono` =
a monotonic reading, e.g. time.time() and time.monotonic()):

- The first call anchors the schedule: the first flush is due when the wall clock reaches the next
  grid boundary (measured on `mono`).
- At a flush the stamp is the grid boundary that was due (the end of the interval that just
  ended), and the next flush is due at the grid boundary after the wall clock, again measured on
  `mono`. In steady operation this is exactly "flush just after each boundary, stamped with it";
  a flush that comes late (a stalled process) is stamped with the slot that was due and the
  missed slots are skipped.
- Two consecutive flushes never carry the same stamp: a wall clock that went back by less than
  one interval (or a monotonic clock running a hair faster than the wall clock) gives the flush
  the next slot after the previous stamp, and the interval after it is up to twice as long.
- A backward step of one interval or more is followed: the flush is stamped with the grid
  boundary at or before the new wall-clock time, and stamps go back with the wall clock, so the
  grid slots written in the stepped-over period are written again (in Graphite the later write of
  a slot wins). Stamping ahead of the wall clock instead would put every later point in the
  future for good. Flushes keep coming every interval throughout.
- A forward step is followed too: the next flush (still one interval after the previous one on
  the monotonic clock) is stamped on the new wall clock; the skipped slots get no points. If the
  realignment to the new grid would leave less than half an interval, that short interval is
  merged into the next one, so flushes never come in a burst.
- A step is detected as a difference of more than half an interval between how far the wall clock
  and the monotonic clock advanced since the previous flush; `steps` counts them.
"""

from __future__ import annotations

import math

_EPS = 1e-9


def grid_floor(now: float, interval: float) -> float:
    """The grid boundary at or before `now` (tolerant of float noise just below a boundary)."""
    return math.floor(now / interval + _EPS) * interval


def stamp(boundary: float) -> int:
    """A grid boundary as an integer Graphite timestamp."""
    nearest = round(boundary)
    return nearest if abs(boundary - nearest) < 1e-6 else math.floor(boundary)


class FlushGrid:
    """One flush schedule: `due(mono)` says whether a flush is due, `take(now, mono)` returns the
    grid slot (wall clock) to stamp it with and schedules the next one."""

    __slots__ = ("interval", "deadline", "last_slot", "_last_now", "_last_mono", "steps")

    def __init__(self, interval: float) -> None:
        if not interval > 0:
            raise ValueError("interval must be > 0")
        self.interval = interval
        self.deadline = -math.inf  # monotonic; -inf: not anchored yet (the next call anchors)
        self.last_slot: float | None = None
        self._last_now: float | None = None
        self._last_mono: float | None = None
        self.steps = 0

    @property
    def anchored(self) -> bool:
        return self.deadline != -math.inf

    def anchor(self, now: float, mono: float) -> None:
        """Start (or restart) the schedule: next flush at the next wall-clock grid boundary."""
        nxt = grid_floor(now, self.interval) + self.interval
        self.deadline = mono + (nxt - now)
        self.last_slot = nxt - self.interval
        self._last_now, self._last_mono = now, mono

    def due(self, mono: float) -> bool:
        return mono >= self.deadline

    def take(self, now: float, mono: float) -> float:
        """The slot (a wall-clock grid boundary) for the flush happening now; schedules the next."""
        interval = self.interval
        current = grid_floor(now, interval)
        last = self.last_slot
        stepped = False
        if self._last_now is not None and self._last_mono is not None:
            drift = (now - self._last_now) - (mono - self._last_mono)
            stepped = abs(drift) > interval / 2
            if stepped:
                self.steps += 1
        if last is None:
            slot = current
        elif not stepped:
            slot = last + interval  # the slot that was due (a late flush skips the ones missed)
        elif last - interval / 2 < current <= last:
            slot = last + interval  # same slot again: take the next one, never stamp twice
        else:
            slot = current  # a step: follow the wall clock, back or forward
        wait = max(current, slot) + interval - now
        if stepped and wait < interval / 2:
            wait += interval  # realigning after a step: no flush right after this one
        self.deadline = mono + wait
        self.last_slot = slot
        self._last_now, self._last_mono = now, mono
        return slot

    def final_slot(self, now: float) -> float:
        """The slot for a last, partial interval (shutdown): the end of the one in progress."""
        slot = grid_floor(now, self.interval) + self.interval
        last = self.last_slot
        if last is not None and last - self.interval / 2 < slot <= last:
            slot = last + self.interval
        return slot

    def export(self) -> dict[str, float | int | None]:
        return {"deadline": self.deadline, "last_slot": self.last_slot,
                "last_now": self._last_now, "last_mono": self._last_mono, "steps": self.steps}

    def adopt(self, state: dict[str, float | int | None]) -> None:
        deadline = state.get("deadline")
        self.deadline = -math.inf if deadline is None else float(deadline)
        self.last_slot = state.get("last_slot")  # type: ignore[assignment]
        self._last_now = state.get("last_now")  # type: ignore[assignment]
        self._last_mono = state.get("last_mono")  # type: ignore[assignment]
        self.steps = int(state.get("steps") or 0)
