"""The StatsD input: what the socket loop calls with datagrams (UDP) or TCP connections.

TCP clients are streams of kind TCP_STREAM (bucky.daemon.plan puts the `statsd_tcp_port` listener
there): `open_stream` gives each a bucky.inputs.streams.LineStream bounded by
`statsd_max_line_length`, whose complete lines go to handle_lines().

Glue around bucky.aggregate.statsd: flushes on the interval grid, emits one list per flush to the
sink, logs bad input (rate-limited: one line per reason per minute), keeps cumulative counts in
`counters`, saves and restores gauges, and hands its state to a successor on reload.

Rules: no sockets, no threads. handle() never raises, whatever the bytes. Every call takes `now`
(the caller's wall-clock time, only for timestamps written) and `mono` (the caller's monotonic
reading, for every schedule: flushes, gauge saves, TTLs, log rate limits; defaults to `now`).
The only clock read here measures the flush's own duration (processing_time).

Saved gauges: JSON `{"format": "bucky-statsd-gauges", "version": 1, "gauges": {key: [value,
last_update]}}`, written atomically (temp file in the same directory, fsync, rename, fsync of the
directory) at every `statsd_gauges_save_interval` and at shutdown. Bucky 2's `{name: value}` and
`{name: [value, metadata]}` files are read too (metadata ignored: Bucky 2 never sent it to
Graphite). A file that cannot be read as either is moved aside (`<file>.corrupt[.N]`) and reported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from bucky.aggregate.statsd import StatsdAggregator, StatsdSettings
from bucky.config import Config
from bucky.errors import DecodeError
from bucky.inputs.base import InputHandler, Sink, Stream
from bucky.inputs.streams import LinesCallback, LineStream
from bucky.protocol.statsd import make_key, split_key
from bucky.ratelog import RateLimitedLog
from bucky.sample import Sample

log = logging.getLogger(__name__)

GAUGES_FORMAT = "bucky-statsd-gauges"
_LOG_PERIOD = 60.0
_LOGGED_LINE_CHARS = 200


# --- saved gauges: pure encode/decode ------------------------------------------------------------


def encode_gauges(gauges: Mapping[str, tuple[float, float]]) -> bytes:
    doc = {
        "format": GAUGES_FORMAT,
        "version": 1,
        "gauges": {key: [value, updated] for key, (value, updated) in sorted(gauges.items())},
    }
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("ascii")


def _finite_number(x: object) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    value = float(x)
    return value if math.isfinite(value) else None


def decode_gauges(data: bytes) -> tuple[dict[str, tuple[float, float | None]], int]:
    """Saved gauges (ours or Bucky 2's) -> ({key: (value, last update or None)}, entries skipped).

    Raises DecodeError if the file as a whole is not one of the known formats.
    """
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise DecodeError("corrupt-gauges-file", f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DecodeError("corrupt-gauges-file", "not a JSON object")
    ours = doc.get("format") == GAUGES_FORMAT
    if ours:
        if doc.get("version") != 1 or not isinstance(doc.get("gauges"), dict):
            raise DecodeError("corrupt-gauges-file", "unknown version or no gauges")
        entries = doc["gauges"]
    else:
        entries = doc  # Bucky 2: {name: value} or {name: [value, metadata]}
    out: dict[str, tuple[float, float | None]] = {}
    skipped = 0
    for raw_key, entry in entries.items():
        updated: float | None = None
        if ours:
            ok = isinstance(entry, list) and len(entry) == 2
            value = _finite_number(entry[0]) if ok else None
            updated = _finite_number(entry[1]) if ok else None
            if updated is None:
                value = None
        elif isinstance(entry, list) and entry:
            value = _finite_number(entry[0])
        else:
            value = _finite_number(entry)
        key = make_key(*split_key(raw_key)) if isinstance(raw_key, str) else None
        if value is None or key is None:
            skipped += 1
            continue
        out[key] = (value, updated)
    if not ours and entries and not out:
        raise DecodeError("corrupt-gauges-file", "no entry looks like a gauge")
    return out, skipped


def atomic_write(path: str, data: bytes) -> None:
    """Replace `path` with `data` so that a crash or a full disk leaves the old file or the new
    one, never a truncated one. Raises OSError (the temporary file is removed)."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # Make the rename itself durable; not every filesystem allows fsync on a directory.
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _move_aside(path: str) -> str:
    for n in range(1000):
        target = f"{path}.corrupt" + (f".{n}" if n else "")
        if not os.path.lexists(target):
            os.replace(path, target)
            return target
    raise OSError(f"too many {path}.corrupt.* files")


# --- the input -----------------------------------------------------------------------------------

TCP_STREAM = "lines"  # the stream kind of the StatsD TCP listener


def tcp_stream(kind: str, on_lines: LinesCallback, cfg: Config, counters: Counter[str]) -> Stream:
    """The stream for a StatsD TCP client (every StatsD handler's open_stream)."""
    if kind != TCP_STREAM:
        raise ValueError(f"statsd input: unknown stream kind {kind!r}")
    return LineStream(on_lines, int(cfg.statsd_max_line_length), counters)


class StatsdInput(InputHandler):
    """The StatsD input handler (the contract: bucky.inputs.base)."""

    name = "statsd"

    def __init__(self, cfg: Config, sink: Sink, state: object = None) -> None:
        self.counters: Counter[str] = Counter()
        self.max_tcp_connections = int(cfg.statsd_tcp_max_connections)
        self._cfg = cfg
        self._sink = sink
        self._log = RateLimitedLog(log, _LOG_PERIOD).log_at
        self._agg = StatsdAggregator(StatsdSettings.from_config(cfg), self._log_bad_line)
        self._persist = bool(cfg.statsd_persistent_gauges)
        self._gauges_path = os.path.join(cfg.directory, cfg.statsd_gauges_savefile)
        self._save_interval = float(cfg.statsd_gauges_save_interval)
        self._next_save = math.inf  # scheduled at the first call, which brings the first `now`
        self._last_saved: bytes | None = None
        self._restored: dict[str, tuple[float, float | None]] | None = None
        self._started = False
        self._closed = False
        self._handed_over = False
        if (state is None or not self._adopt(state)) and self._persist:
            self._restored = self._load_gauges()

    # --- the input contract (bucky.inputs.base) -----------------------------------------------

    def handle(self, data: bytes, addr: object, now: float, mono: float | None = None) -> None:
        if mono is None:
            mono = now
        try:
            agg = self._agg
            if mono >= agg.next_flush:
                self._due(now, mono)
            agg.ingest(data, now, mono)
        except Exception:  # a bug must not take the input down with it; the parser cannot raise
            self._internal_error(mono)

    def open_stream(self, kind: str, addr: Any) -> Stream:
        return tcp_stream(kind, self.handle_lines, self._cfg, self.counters)

    def handle_lines(self, lines: list[bytes], now: float, mono: float | None = None) -> None:
        """Complete lines from a TCP stream: one chunk, counted as one packet."""
        # Joining then splitting once is ~3x cheaper than decoding line by line.
        self.handle(b"\n".join(lines), None, now, mono)

    def tick(self, now: float, mono: float | None = None) -> None:
        if self._closed:
            return
        if mono is None:
            mono = now
        try:
            if mono >= self._agg.next_flush:
                self._due(now, mono)
            if mono >= self._next_save:
                self._next_save = mono + self._save_interval
                self._save_gauges(now, mono)
        except Exception:
            self._internal_error(mono)
        self._sync_counters()

    def close(self, now: float, mono: float | None = None) -> None:
        """Final flush of the partial interval, then the gauges are saved."""
        if self._closed:
            return
        self._closed = True
        if self._handed_over:
            return  # the successor owns the pending data
        if mono is None:
            mono = now
        try:
            self._start(now, mono)
            started = time.perf_counter()
            self._emit(self._agg.flush(now, mono), started)
            if self._persist:
                self._save_gauges(now, mono)
        except Exception:
            self._internal_error(mono)
        self._sync_counters()

    def carry_state(self) -> object:
        """Pending aggregates, gauges and counts for the next instance (config reload).
        After this, close() of this instance emits and saves nothing."""
        self._handed_over = True
        return {
            "version": 1,
            "aggregator": self._agg.export_state(),
            "restored": self._restored,
            "counters": dict(self.counters),
        }

    # --- what a StatsD worker (bucky.inputs.statsd_workers) builds on ---------------------------

    @property
    def aggregator(self) -> StatsdAggregator:
        """The aggregator, for the management interface's views and the own statistics' names."""
        return self._agg

    @property
    def next_flush(self) -> float:
        """When the next flush is due, on the monotonic clock."""
        return self._agg.next_flush

    def ingest(self, data: bytes, now: float, mono: float, packets: int) -> None:
        """Lines (one chunk) that count as `packets` datagrams: handle() for a worker, which
        counts a datagram where it was read, not where its lines are aggregated."""
        try:
            agg = self._agg
            if mono >= agg.next_flush:
                self._due(now, mono)
            agg.ingest(data, now, mono, packets)
        except Exception:
            self._internal_error(mono)

    def adopt_aggregates(self, state: dict) -> None:
        """Take over (a part of) a predecessor's aggregator state (its export_state()); raises
        KeyError, TypeError or ValueError if the state cannot be used."""
        self._agg.import_state(state)

    @property
    def restored_gauges(self) -> dict[str, tuple[float, float | None]] | None:
        """Saved gauges read at start, restored at the first call (then None)."""
        return self._restored

    @restored_gauges.setter
    def restored_gauges(self, gauges: dict[str, tuple[float, float | None]] | None) -> None:
        self._restored = gauges

    # --- internals -----------------------------------------------------------------------------

    def _adopt(self, state: object) -> bool:
        """Take over a predecessor's carry_state(); False (logged) if it cannot be used."""
        try:
            if not isinstance(state, dict) or state.get("version") != 1:
                raise ValueError("unknown state version")
            self._agg.import_state(state["aggregator"])
            self._restored = state.get("restored")
            self.counters.update(state.get("counters") or {})
            return True
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.error("StatsD: cannot adopt the previous state (%s); starting without", exc)
            self.counters["errors.state"] += 1
            return False

    def _start(self, now: float, mono: float) -> None:
        """First call: the first `now` is known; restore saved gauges, schedule saving."""
        if self._started:
            return
        self._started = True
        if self._persist:
            self._next_save = mono + self._save_interval
        if self._restored:
            taken = self._agg.restore_gauges(self._restored, now, mono)
            self.counters["gauges_restored"] += taken
        self._restored = None

    def _due(self, now: float, mono: float) -> None:
        self._start(now, mono)
        started = time.perf_counter()
        agg = self._agg
        steps = agg.clock_steps
        self._emit(agg.tick(now, mono), started)
        if agg.clock_steps != steps:
            self.counters["clock_steps"] += agg.clock_steps - steps
            self._log(logging.WARNING, "clock-step", mono,
                      "StatsD: the wall clock stepped; flushes stay on schedule, timestamps "
                      "follow the new time")

    def _emit(self, samples: list[Sample], started: float) -> None:
        if not samples:
            return
        agg = self._agg
        elapsed_ms = round((time.perf_counter() - started) * 1000.0, 3)
        timestamp = samples[0][3]  # every sample of a flush has the flush's timestamp
        samples.append(agg.self_sample("processing_time", elapsed_ms, timestamp))
        agg.totals["samples"] += 1
        self._sink.extend(samples)

    def _sync_counters(self) -> None:
        counters = self.counters
        for key, value in self._agg.counts().items():
            counters[key] = value

    def _log_bad_line(self, reason: str, line: str, now: float) -> None:
        self._log(
            logging.WARNING,
            "bad-line." + reason,
            now,
            "StatsD: bad line (%s): %a",
            reason,
            line[:_LOGGED_LINE_CHARS],
        )

    def _internal_error(self, now: float) -> None:
        self.counters["errors.internal"] += 1
        self._log(logging.ERROR, "internal", now, "StatsD: internal error", exc_info=True)

    def _load_gauges(self) -> dict[str, tuple[float, float | None]] | None:
        path = self._gauges_path
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("StatsD: cannot read saved gauges %s: %s", path, exc)
            self.counters["errors.gauges_load"] += 1
            return None
        try:
            gauges, skipped = decode_gauges(data)
        except DecodeError as exc:
            self.counters["errors.gauges_corrupt"] += 1
            try:
                moved = _move_aside(path)
            except OSError as move_exc:
                log.error(
                    "StatsD: saved gauges %s are unreadable (%s) and could not be moved aside "
                    "(%s); starting without them",
                    path,
                    exc.detail,
                    move_exc,
                )
            else:
                log.error(
                    "StatsD: saved gauges %s are unreadable (%s); moved to %s, starting without",
                    path,
                    exc.detail,
                    moved,
                )
            return None
        if skipped:
            self.counters["gauges_load_skipped"] += skipped
            log.warning("StatsD: skipped %d invalid entries in %s", skipped, path)
        log.info("StatsD: loaded %d saved gauges from %s", len(gauges), path)
        return gauges

    def _save_gauges(self, now: float, mono: float) -> None:
        if not self._persist:
            return
        path = self._gauges_path
        try:
            data = encode_gauges(self._agg.gauges_snapshot(now, mono))
            if data == self._last_saved:
                return  # unchanged since the last save: spare the disk
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            atomic_write(path, data)
        except (OSError, ValueError) as exc:
            self.counters["errors.gauges_save"] += 1
            self._log(logging.ERROR, "gauges-save", mono, "StatsD: cannot save gauges: %s", exc)
            return
        self._last_saved = data
        self.counters["gauges_saves"] += 1
