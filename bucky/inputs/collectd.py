"""The collectd input: datagrams in, Graphite samples and notifications out, in its own process.

What this module is for: the glue between the daemon's socket loop and the collectd codec and
aggregator. `CollectdInput` is the handler that loop calls (handle/tick/close/
carry_state); `CollectdPipeline` is the part after decoding (types.db check, rates, names) that
the Python plugin host reuses for the values its plugins dispatch.

Rules:
- Never raises out of handle() or tick(): every problem is counted by reason and logged at most
  once a minute per reason (bucky.ratelog, driven by the caller's clock).
- Time: the handler methods take `now` (wall clock) and `mono` (monotonic); only `mono` is used
  (series expiry, the auth-file check, log rate limits), so a step of the system clock neither
  expires every series at once nor keeps dead ones for the length of the step. Without `mono`,
  `now` is used.
- No sockets, no threads. Files read: types.db (once, at construction) and the auth file (at
  construction, then re-read from tick() when its mtime/size/inode change, checked at most once
  a second; a file that vanishes or cannot be read keeps the last good credentials).
- One sink.extend() per datagram; notifications go to sink.notify() only, never as datapoints;
  decoded value lists go to sink.records() when the sink says `wants_records`.
- Counters (cumulative): datagrams, bad_datagrams.<reason> (one per decode error), value_lists,
  values, samples, notifications, notifications.<severity>, rejected.<reason> (whole value
  lists: unknown_type, ds_count_mismatch, ds_type_mismatch, invalid_value), dropped.<why> (single
  values: converter_none, converter_error, empty_name, out_of_range, not_finite, counter_reset,
  time_not_increasing), primed, series_expired, auth_file.reloads, errors.auth_file, errors.tick.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from bucky.aggregate.collectd import CollectdAggregator
from bucky.aggregate.collectd_names import ConverterTable, build_converter_table
from bucky.authfile import AuthFile
from bucky.config import Config, option_error
from bucky.errors import ConfigError
from bucky.inputs.base import InputHandler, Sink
from bucky.protocol.collectd import decode
from bucky.protocol.collectd_records import (
    FAILURE,
    OKAY,
    SEVERITY_NAMES,
    WARNING,
    Notification,
    ValueList,
)
from bucky.protocol.decoded import Decoded
from bucky.protocol.typesdb import load_types_db
from bucky.ratelog import RateLimitedLog
from bucky.sample import Sample

log = logging.getLogger(__name__)

_LOG_PERIOD = 60.0  # seconds: at most one line per reason per period
_SKIPPED_PART_REASONS = frozenset({"unknown-part", "empty-values"})
_AUTH_CHECK_EVERY = 1.0  # seconds between stat() calls on the auth file
_SEVERITY_LEVELS = {FAILURE: logging.ERROR, WARNING: logging.WARNING, OKAY: logging.INFO}


def load_datasets(paths: Iterable[str], more: Iterable[str] = (),
                  relative_to: str | None = None) -> Mapping[str, Any]:
    """types.db files (none: the system's, else built-in) -> {type name: DataSet}; then the
    files in `more` (relative ones from the directory of the file `relative_to`; the plugin
    host's TypesDB lines), later definitions winning.

    Raises ConfigError naming the file that cannot be read or parsed."""
    datasets = load_types_db(tuple(paths))
    more = tuple(more)
    if more:
        here = os.path.dirname(os.path.abspath(relative_to or "."))
        datasets = {**datasets, **load_types_db(tuple(os.path.join(here, p) for p in more))}
    return datasets


class CollectdPipeline:
    """Value lists -> samples: the types.db check, rates and names, with logging of problems.

    `process(value_lists, now)` returns (host, name, value, timestamp) tuples; `tick(now)`
    expires idle series. `datasets` and `converters` may be given (tests, plugin host) instead
    of being loaded from `cfg.collectd_types` / `cfg.collectd_converters` + entry points.
    """

    def __init__(
        self,
        cfg: Config,
        counters: Counter[str] | None = None,
        *,
        datasets: Mapping[str, Any] | None = None,
        converters: ConverterTable | None = None,
        logger: logging.Logger = log,
    ) -> None:
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self._log = RateLimitedLog(logger, _LOG_PERIOD).log_at
        if converters is None:
            try:
                converters = build_converter_table(
                    cfg.collectd_converters, cfg.collectd_use_entry_points
                )
            except (TypeError, ImportError) as exc:
                raise ConfigError(f"collectd_converters: {exc}") from exc
            for note in converters.notes:
                logger.info("%s", note)
        if datasets is None:
            datasets = load_datasets(cfg.collectd_types)
        self.converters = converters
        self.aggregator = CollectdAggregator(
            datasets,
            converters,
            counter_eq_derive=cfg.collectd_counter_eq_derive,
            ttl_intervals=cfg.collectd_series_ttl_intervals,
            counters=self.counters,
        )

    def process(self, value_lists: Iterable[Any], now: float) -> list[Sample]:
        aggregator = self.aggregator
        samples = aggregator.process(value_lists, now)
        if aggregator.events:
            self._log_events(now)
        return samples

    def tick(self, now: float) -> None:
        self.aggregator.tick(now)

    def carry_state(self) -> object:
        return self.aggregator.export_state()

    def restore_state(self, state: object) -> None:
        self.aggregator.import_state(state)

    def _log_events(self, now: float) -> None:
        events, self.aggregator.events = self.aggregator.events, []
        for key, message, error in events:  # an exception here is a user converter's bug
            level = logging.WARNING if error is None else logging.ERROR
            self._log(level, key, now, "%s", message, exc_info=error)


class CollectdInput(InputHandler):
    """The collectd network input handler (the input contract: bucky.inputs.base)."""

    name = "collectd"

    def __init__(self, cfg: Config, sink: Sink, state: object = None) -> None:
        self.counters: Counter[str] = Counter()
        self._sink = sink
        self._wants_records = bool(getattr(sink, "wants_records", False))
        self._log = RateLimitedLog(log, _LOG_PERIOD).log_at
        self._security_level = int(cfg.collectd_security_level)
        self._auth: AuthFile | None = None
        self._credentials: dict[str, bytes] | None = None
        if self._security_level and not cfg.collectd_auth_file:
            raise ConfigError("collectd_security_level Sign/Encrypt needs collectd_auth_file")
        if cfg.collectd_auth_file:
            self._auth = load_auth_file(cfg.collectd_auth_file, self._security_level)
            self._credentials = self._auth.credentials
        self.pipeline = CollectdPipeline(cfg, self.counters)
        if state is not None:
            self.pipeline.restore_state(state)

    # -- the input contract (bucky.inputs.base) ------------------------------------------------
    def handle(self, data: bytes, addr: Any, now: float, mono: float | None = None) -> None:
        # collectd data carries its own timestamps: only the monotonic clock is used here
        # (series expiry, log rate limits); `now` serves when no `mono` is given.
        if mono is not None:
            now = mono
        counters = self.counters
        counters["datagrams"] += 1
        try:
            decoded = self.decode(data)
            records, errors = decoded.records, decoded.errors
            if errors:
                self._count_errors(errors, addr, now)
            value_lists = records
            if Notification in map(type, records):  # rare: keep the common case one C loop
                value_lists = [r for r in records if type(r) is ValueList]
                for record in records:
                    if type(record) is Notification:
                        self._notify(record, now)
            if not value_lists:
                return
            counters["value_lists"] += len(value_lists)
            samples = self.pipeline.process(value_lists, now)
            if samples:
                self._sink.extend(samples)
            if self._wants_records:
                self._sink.records(value_lists)
        except Exception as exc:  # a bug, never the datagram's fault: count, log, carry on
            counters["errors.internal"] += 1
            self._log(logging.ERROR, "internal_error", now,
                      "collectd datagram from %s could not be handled", addr, exc_info=exc)

    def decode(self, data: bytes) -> Decoded[ValueList | Notification]:
        """One datagram decoded under the configured security level and users."""
        return decode(data, self._security_level, self._credentials)

    def tick(self, now: float, mono: float | None = None) -> None:
        if mono is not None:
            now = mono
        try:
            self.pipeline.tick(now)
            if self._auth is not None:
                self._check_auth_file(now)
        except Exception as exc:
            self.counters["errors.tick"] += 1
            self._log(logging.ERROR, "tick_error", now, "collectd tick failed", exc_info=exc)

    def close(self, now: float, mono: float | None = None) -> None:
        """Nothing is held back: rates are emitted as soon as they can be computed."""

    def carry_state(self) -> object:
        return self.pipeline.carry_state()

    # -- helpers -------------------------------------------------------------------------------
    def _count_errors(self, errors: list[Any], addr: Any, now: float) -> None:
        counters = self.counters
        for error in errors:
            reason = getattr(error, "reason", "unknown")
            if reason in _SKIPPED_PART_REASONS:
                # A part collectd itself skips (a newer part type, an empty values part): the
                # rest of the datagram was used, so this is not a bad datagram.
                counters["skipped_parts." + reason] += 1
                continue
            counters["bad_datagrams." + reason] += 1
            self._log(logging.WARNING, "bad_datagram:" + reason, now,
                      "collectd datagram from %s: %s", addr, error)

    def _notify(self, record: Notification, now: float) -> None:
        severity = SEVERITY_NAMES.get(record.severity, str(record.severity))
        self.counters["notifications"] += 1
        self.counters["notifications." + severity] += 1
        self._log(_SEVERITY_LEVELS.get(record.severity, logging.WARNING),
                  "notification:" + severity, now,
                  "collectd notification %s from %r (%s/%s/%s/%s): %r", severity.upper(),
                  record.host, record.plugin, record.plugin_instance, record.type,
                  record.type_instance, record.message)
        self._sink.notify(record)

    def _check_auth_file(self, now: float) -> None:
        auth = self._auth
        assert auth is not None
        try:
            if not auth.refresh(now):
                return
        except (OSError, ValueError) as exc:
            self.counters["errors.auth_file"] += 1
            self._log(logging.ERROR, "auth_file", now,
                      "collectd_auth_file %r cannot be read (%s); keeping the %d users loaded "
                      "before", auth.path, exc, len(auth.credentials))
            return
        self._credentials = auth.credentials
        self.counters["auth_file.reloads"] += 1
        log.info("collectd_auth_file %r reloaded: %d users", auth.path, len(auth.credentials))
        if self._security_level and not auth.credentials:
            log.warning("collectd_auth_file %r has no users: all collectd data is refused",
                        auth.path)


def check(cfg: Config) -> None:
    """This input's own check (the preflight): the types.db files, the converters (entry points
    loaded) and the auth file, as the collectd input and the plugin host load them at start."""
    if not (cfg.collectd_enabled or cfg.collectd_python_config):
        return
    try:
        load_datasets(cfg.collectd_types)
    except ConfigError as exc:
        raise option_error(cfg, "collectd_types", exc) from None
    try:
        build_converter_table(cfg.collectd_converters, cfg.collectd_use_entry_points)
    except Exception as exc:  # a broken entry point raises anything its module raises
        option = "collectd_converters"
        if cfg.collectd_use_entry_points and "entry point" in str(exc):
            option = "collectd_use_entry_points"
        raise option_error(cfg, option, exc) from None
    if cfg.collectd_enabled and cfg.collectd_auth_file:
        try:
            load_auth_file(cfg.collectd_auth_file, cfg.collectd_security_level)
        except ConfigError as exc:
            raise option_error(cfg, "collectd_auth_file", exc) from None


def load_auth_file(path: str, security_level: int) -> AuthFile:
    """The collectd auth file, read and checked now (start-up, and the supervisor's checks)."""
    try:
        auth = AuthFile(path, check_every=_AUTH_CHECK_EVERY)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"collectd_auth_file {path!r}: {exc}") from exc
    if security_level and not auth.credentials:
        raise ConfigError(f"collectd_auth_file {path!r} has no 'user: password' line; nobody "
                          "could send")
    return auth
