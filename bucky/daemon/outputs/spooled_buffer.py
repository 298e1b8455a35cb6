"""A destination's memory buffer backed by its disk spool (graphite_spool_max_bytes > 0).

Order and placement of the data of one destination:

- Memory holds the newest chunks, up to `graphite_buffer_size` datapoints. When it is full, its
  oldest chunks move to the spool (instead of being dropped), so the spool always holds data older
  than memory: sending spool first, then memory, keeps the data oldest first.
- Once carbon has been unreachable for a sync interval (`graphite_spool_sync_interval`), memory
  is also moved to the spool on every sync tick, then fsynced: a SIGKILL loses at most about one
  to two sync intervals of datapoints held by this process (plus what the pipeline queues hold in
  front of it).
- At a stop (SIGTERM, or the stop of a reload) what memory still holds goes to the spool, so the
  next process for this destination, with whatever protocol it then uses, sends it.
- Spool records are `tag + chunk`: b"P" plaintext lines or b"K" pickle frames. A record of the
  other protocol (a reload switched it) is decoded with the protocol codecs and re-encoded.
- Self-metrics and a chunk to resend go out first, then the spool, then memory.
- A spool that cannot be written (ENOSPC, EIO) or opened leaves memory-only behaviour (oldest
  chunks dropped and counted in dropped.buffer_full) until the disk works again.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bucky.config import Config
from bucky.daemon import statedir
from bucky.daemon.outputs.buffer import COALESCE_BYTES, _ChunkBuffer
from bucky.daemon.outputs.spool_files import Spool, SpoolUnavailable, check_directory
from bucky.errors import ConfigError, DecodeError
from bucky.protocol.graphite import (
    BAD_PICKLE,
    decode_pickle_frames,
    decode_plaintext,
    encode_pickle_trusted,
    format_line,
    pickle_point,
)

log = logging.getLogger("bucky.daemon.outputs")

PLAINTEXT, PICKLE = b"P", b"K"
OPEN_RETRY = 1.0  # the spool cannot be opened: look again
HELD_RETRY = 0.05  # the process before a reload still holds it (it lets go once it stopped)
HELD_EXTRA = 1_000_000  # datapoints memory may hold beyond its bound while waiting for that


def decode_record(record: bytes) -> list[tuple[str, float, float]]:
    """A spool record's datapoints as (path, value, timestamp); DecodeError when unreadable."""
    tag, body = record[:1], record[1:]
    if tag == PLAINTEXT:
        decoded = decode_plaintext(body + b"\n" if body and not body.endswith(b"\n") else body)
        if decoded.errors:
            raise decoded.errors[0]
        return decoded.records
    if tag == PICKLE:
        framed = decode_pickle_frames(body)
        if framed.errors:
            raise framed.errors[0]
        if framed.rest:
            raise DecodeError(BAD_PICKLE, f"{len(framed.rest)} bytes of an incomplete frame")
        return [(path, value, ts) for path, (ts, value) in framed.records]
    raise DecodeError("bad-record", f"unknown spool record tag {tag!r}")


def encode_points(fmt: bytes, points: list[tuple[str, float, float]], per_frame: int) -> bytes:
    if fmt == PLAINTEXT:
        return "".join(line for path, value, ts in points
                       if (line := format_line(path, value, ts)) is not None).encode()
    frames = []
    for start in range(0, len(points), per_frame):
        part = [pickle_point(path, ts, value)
                for path, value, ts in points[start:start + per_frame]]
        frames.append(encode_pickle_trusted(part))
    return b"".join(frames)


class SpooledBuffer(_ChunkBuffer):
    durable = True

    def __init__(self, max_points: int, directory: str, *, max_bytes: int, sync_interval: float,
                 fmt: bytes, per_frame: int = 500, clock: Callable[[], float] = time.monotonic,
                 wallclock: Callable[[], float] = time.time) -> None:
        super().__init__(max_points)
        self.fmt = fmt
        self.per_frame = per_frame
        self.spool = Spool(directory, max_bytes, sync_interval=sync_interval, clock=clock,
                           wallclock=wallclock)
        self._clock = clock
        self.counters: Counter[str] = self.spool.counters
        self.name = "graphite"
        self._open_at = 0.0  # next attempt to open the spool
        self._from_spool = False  # the chunk last taken came from the spool (ack when written)
        self._next_spill = 0.0
        self._down_since: float | None = None  # not connected since (None: connected)
        self._stopping = False
        self._held = False  # another process (the one before a reload) holds the spool
        self._unavailable_logged = False

    # -- hooks of _ChunkBuffer

    def attach(self, counters: Any, name: str) -> None:
        counters.update(self.counters)
        self.counters = self.spool.counters = counters
        self.name = self.spool.name = name

    def __bool__(self) -> bool:
        return bool(self._urgent or self._normal) or bool(self.spool)

    @property  # type: ignore[override]
    def spooled(self) -> int:
        return self.spool.points

    def append(self, data: bytes, points: int, front: bool = False) -> int:
        if self._held and not self._ready():
            # A reload: the predecessor still owns the spool and hands it over within a moment.
            # Hold on (bounded) instead of dropping what it would have taken.
            limit = self.max_points + min(9 * self.max_points, HELD_EXTRA)
            if self.points + points <= limit:
                (self._urgent if front else self._normal).append((data, points))
                self.points += points
                return 0
        return super().append(data, points, front)

    def _overflow(self, data: bytes, points: int) -> bool:
        return self._ready() and self.spool.append(self.fmt + data, points)

    def take(self, max_bytes: int = COALESCE_BYTES) -> tuple[bytes, int] | None:
        if not self._urgent and self._ready():
            while (record := self.spool.peek()) is not None:
                data, points = record
                if data[:1] == self.fmt:
                    self._from_spool = True
                    return data[1:], points
                try:
                    converted = encode_points(self.fmt, decode_record(data), self.per_frame)
                except (DecodeError, ValueError) as exc:
                    self.counters["dropped.spool_corrupt"] += points
                    log.error("%s: a spool record cannot be decoded (%s); dropped %d datapoints",
                              self.name, exc, points)
                    self.spool.ack()
                    continue
                self.counters["spool_converted"] += points
                self._from_spool = True
                return converted, points
        self._from_spool = False
        if self._urgent and self.spool.is_open and self.spool:
            data, points = self._urgent.popleft()  # alone: newer memory stays behind the spool
            self.points -= points
            return data, points
        return super().take(max_bytes)

    def push_head(self, data: bytes, points: int) -> None:
        if self._from_spool:  # still the spool's head record: it is simply read again
            self._from_spool = False
            return
        super().push_head(data, points)

    def written(self) -> None:
        if self._from_spool:
            self._from_spool = False
            self.spool.ack()

    def tick(self, now: float, connected: bool) -> float:
        if not self._ready():
            return HELD_RETRY if self._held else OPEN_RETRY
        if connected:
            self._down_since = None
        elif self._down_since is None:
            self._down_since = now
        # memory goes to disk once carbon has been away for a sync interval, then every interval
        if self._stopping or (self._down_since is not None and now >= max(
                self._next_spill, self._down_since + self.spool.sync_interval)):
            self._next_spill = now + self.spool.sync_interval
            self._spill_all()
        return min(self.spool.tick(now), self.spool.sync_interval)

    def stopping(self) -> None:
        self._stopping = True
        if self._ready():
            self._spill_all()

    def persist(self) -> None:
        if self._ready() or self._ready(wait=True):
            self._spill_all()
        if self.spool.is_open:
            self.spool.close()

    def gauges(self) -> dict[str, float]:
        return self.spool.gauges()

    # -- internals

    def _spill_all(self) -> None:
        """Move every chunk in memory to the spool's tail, oldest first (while it takes them)."""
        for queue in (self._urgent, self._normal):
            while queue:
                data, points = queue[0]
                if not self.spool.append(self.fmt + data, points):
                    return
                queue.popleft()
                self.points -= points

    def _ready(self, wait: bool = False) -> bool:
        """Open the spool on first use (and retry while an older process still holds it)."""
        spool = self.spool
        if spool.is_open:
            return spool.available
        now = self._clock()
        if now < self._open_at and not wait:
            return False
        deadline = now + (2.0 if wait else 0.0)
        while True:
            try:
                if spool.open():
                    self._unavailable_logged = self._held = False
                    return spool.available
                reason = "held by another process"
                self._held = True
            except SpoolUnavailable as exc:
                reason = str(exc)
                self._held = False
            if self._clock() >= deadline:
                break
            time.sleep(0.05)
        self._open_at = now + (HELD_RETRY if self._held else OPEN_RETRY)
        if self._held:
            log.debug("%s: the spool in %s is still held by the previous process", self.name,
                      spool.directory)
            return False
        if not self._unavailable_logged:
            self._unavailable_logged = True
            self.counters["spool_errors"] += 1
            log.error("%s: the spool in %s cannot be opened (%s); memory only until it can",
                      self.name, spool.directory, reason)
        return False


def spool_directory(cfg: Config, label: str) -> str:
    return os.path.join(spool_root(cfg), label)


def spool_root(cfg: Config) -> str:
    return cfg.graphite_spool_dir or os.path.join(cfg.directory, "spool")


def check(cfg: Config) -> None:
    """The spool's own check (the preflight: --check, start-up, reload): `spool_problem` as the
    user the daemon runs as, leaving nothing behind; ConfigError when it finds one. Run inside
    the preflight's trial of `directory` (bucky.daemon.statedir), as start-up makes it first."""
    handed_over = statedir.handed_over(cfg)
    problem = statedir.as_daemon_user(
        cfg, lambda: spool_problem(cfg, trial=True, handed_over=handed_over))
    if problem:
        raise ConfigError(problem)


def spool_problem(cfg: Config, *, trial: bool = False, handed_over: bool = False) -> str | None:
    """Why the configured spool root cannot be used by this process (a config error), or None.

    `graphite_spool_dir`, when set, must be an existing folder; the default, <directory>/spool,
    is created. Nothing is checked when the spool is off or Graphite is not an output. With
    `trial` what it creates is removed again; `handed_over`: start-up will give `directory` to
    the daemon user, so being refused a folder right inside it now is no problem."""
    if cfg.debug or not cfg.graphite_enabled or not cfg.graphite_spool_max_bytes:
        return None
    root = spool_root(cfg)
    if cfg.graphite_spool_dir and not os.path.isdir(root):
        what = "a regular file, not a folder" if os.path.isfile(root) else (
            "not a folder" if os.path.lexists(root) else "missing")
        return (f"{cfg.source}: graphite_spool_dir: expected an existing writable directory "
                f"(or graphite_spool_max_bytes = 0), got {root!r}: {what}")
    try:
        with statedir.trial_directories(root) if trial else contextlib.nullcontext():
            check_directory(root, private=False)  # the destinations' folders inside are private
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # a full disk is not a wrong setting
            log.error("the spool in %s cannot be written now (%s): memory only until it can",
                      root, exc.strerror)
            return None
        if handed_over and exc.errno in (errno.EACCES, errno.EPERM) and not cfg.graphite_spool_dir:
            return None
        given = repr(root) if cfg.graphite_spool_dir else f"{root!r} (<directory>/spool)"
        user = f" (as {statedir.user_name(os.geteuid())})" if statedir.daemon_identity(cfg) else ""
        reason = exc.strerror or str(exc)
        if isinstance(exc, SpoolUnavailable) and reason.startswith(f"{root}: "):
            reason = reason[len(root) + 2:]
        return (f"{cfg.source}: graphite_spool_dir: expected a writable directory "
                f"(or graphite_spool_max_bytes = 0), got {given}: {reason}{user}")
    return None
