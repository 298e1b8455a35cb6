"""collectd value lists -> Graphite samples: types.db checks, per-second rates and names.

What this module is for: the state over time of the collectd input. It is shared by the network
input (after decoding) and the Python plugin host (for values its plugins dispatch).

Rules:
- No I/O, no logging, no clock: every call takes `now` (the receiver's clock, used only to expire
  state). What deserves a log line is appended to `events` as (key, message, exception) for the
  caller to log, rate-limited; everything is counted in `counters`.
- A value list is checked against its types.db dataset: unknown type, a different number of
  values or a different DS type rejects the whole value list ("rejected.<reason>"). With
  `counter_eq_derive` a COUNTER/DERIVE swap is accepted and the 64 bits are read as the types.db
  type says (uint64 for COUNTER, int64 for DERIVE), like Bucky 2 decoding by the types.db type.
- State is kept per series = identifier (host, plugin, plugin_instance, type, type_instance) and
  DS index; all DS of a value list share its time. Rates follow collectd's value_to_rate:
  GAUGE passes through; DERIVE = (v - v_prev) / dt, signed; ABSOLUTE = v / dt; COUNTER =
  increase / dt. The first value of a series only primes it. A time that does not increase
  re-primes the series with the new values (the late or repeated value list gives no rate, and
  the next one measures from it: correct for clock steps and for reordered datagrams alike).
- COUNTER wrap-or-reset rule. collectd itself takes every drop (v < v_prev) for a wrap, at 2^32
  when v_prev <= 2^32-1, else at 2^64 (counter_diff in src/utils/common/common.c), and leaves
  resets to the data source's max: "If a counter is reset to zero ... the wrap-around
  calculation may result in a huge rate. Thus setting a reasonable maximum value is essential
  when using COUNTER data sources" (collectd wiki, Data source; rrdtool treats a rate above the
  DS max as unknown). Bucky keeps that and adds a bound that needs no max. A drop is a wrap
  only when the wrapped increase (width - v_prev + v)
  (1) is at most half the width (2^31 resp. 2^63), i.e. the counter fell by at least half its
      width: a smaller drop is a restarted device or daemon, and
  (2) with a types.db max, gives a rate (increase / dt) not above that max;
  anything else is a reset: the series re-primes ("dropped.counter_reset") instead of emitting a
  spike. So 2^64-1 -> 1 is a wrap with increase 2 and 5,000,000,000 -> 12 is a reset. What is
  *not* caught: without a max (every COUNTER in collectd's stock types.db has max U), a 32-bit
  counter reset from v_prev >= 2^31 + v (resp. a 64-bit one from v_prev >= 2^63 + v) is taken
  for a wrap and emits one rate of (width - v_prev + v) / dt, at most 2^31/dt resp. 2^63/dt.
- types.db min/max bound what is emitted (the rate, or the gauge value): outside -> dropped,
  "dropped.out_of_range". NaN and infinities are never emitted ("dropped.not_finite").
- Names come from the converters (bucky.aggregate.collectd_names), run once per series and kept
  with its state, so the hot path is dictionary lookups. Timestamps are int(time), as Bucky 2.
- Series state expires `ttl_intervals` of its own interval after the last value list was
  received (intervals clamped to [_MIN_INTERVAL, _MAX_INTERVAL], 10 s when absent); `tick()`
  sweeps every few seconds, so memory follows the set of live series.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from bucky.aggregate.collectd_names import ConverterTable, run_converter
from bucky.protocol.collectd_records import ABSOLUTE, COUNTER, DERIVE, GAUGE
from bucky.sample import Sample

_INF = float("inf")
_UINT64_MASK = (1 << 64) - 1
_INT64_SIGN = 1 << 63
_WRAP32 = 1 << 32
_WRAP64 = 1 << 64

_DEFAULT_INTERVAL = 10.0  # collectd's default Interval, for value lists that carry none
_MIN_INTERVAL = 0.001
_MAX_INTERVAL = 86400.0  # a hostile interval must not pin state in memory for ever
_SWEEP_EVERY = 5.0  # seconds between expiry sweeps
_MAX_EVENTS = 100  # events kept for the caller between drains
_MAX_REPORTED_TYPES = 1024  # unknown types reported once each, up to this many

_DS_TYPE_BY_NAME = {"COUNTER": COUNTER, "GAUGE": GAUGE, "DERIVE": DERIVE, "ABSOLUTE": ABSOLUTE}

# Entry layout: a list, mutated in place on the hot path. _PREV is the previous value itself for
# a one-DS series (_STEP is then its only plan step), else a list with one value per DS.
_EXPIRES, _TIME, _PREV, _PLAN, _STEP = range(5)


class _TypeMismatch(Exception):
    """Internal: a value's wire DS type differs from the dataset's (cheap jump out of the loop)."""


def counter_increase(previous: int, current: int, limit: float = _INF) -> int | None:
    """How much a COUNTER grew from `previous` to `current`; None when it was reset instead.

    See the module rules: a drop is a wrap only when the wrapped increase is at most half the
    counter width (2^32 if previous <= 2^32-1, else 2^64) and at most `limit` (the types.db max
    times the time between the two values).
    """
    if current >= previous:
        return current - previous
    width = _WRAP32 if previous < _WRAP32 else _WRAP64
    increase = width - previous + current
    if increase > width >> 1 or increase > limit:
        return None
    return increase


def _coerce(value: Any, kind: int) -> Any:
    """Read a COUNTER/DERIVE value's 64 bits as the other type (counter_eq_derive)."""
    if kind == COUNTER:
        return value & _UINT64_MASK  # int64 -> uint64, two's complement
    return value - _WRAP64 if value >= _INT64_SIGN else value  # uint64 -> int64


def _ds_kind(ds_type: object) -> int:
    if isinstance(ds_type, str):
        return _DS_TYPE_BY_NAME[ds_type.upper()]
    kind = int(ds_type)  # type: ignore[call-overload]
    if kind not in (COUNTER, GAUGE, DERIVE, ABSOLUTE):
        raise ValueError(f"unknown DS type {ds_type!r}")
    return kind


def _bound(value: object, default: float) -> float:
    return default if value is None else float(value)  # type: ignore[arg-type]


CompiledDataSet = tuple[tuple[int, str, float, float], ...]  # ((kind, ds name, min, max), ...)


def compile_datasets(datasets: Mapping[str, Any]) -> dict[str, CompiledDataSet]:
    """types.db DataSets -> {type: ((kind, ds_name, min, max), ...)} with +-inf for unbounded."""
    compiled = {}
    for type_name, dataset in datasets.items():
        compiled[type_name] = tuple(
            (_ds_kind(src.ds_type), src.name, _bound(src.min, -_INF), _bound(src.max, _INF))
            for src in dataset.sources
        )
    return compiled


def _ttl_interval(interval: Any) -> float:
    if not interval > 0.0:  # also NaN
        return _DEFAULT_INTERVAL
    if interval < _MIN_INTERVAL:
        return _MIN_INTERVAL
    return interval if interval < _MAX_INTERVAL else _MAX_INTERVAL


class CollectdAggregator:
    """Value lists in, (host, name, value, timestamp) tuples out; keeps the rate state."""

    def __init__(
        self,
        datasets: Mapping[str, Any],
        converters: ConverterTable,
        *,
        counter_eq_derive: bool = False,
        ttl_intervals: float = 4,
        counters: Counter[str] | None = None,
    ) -> None:
        self._datasets = compile_datasets(datasets)
        self._converters = converters
        self._counter_eq_derive = bool(counter_eq_derive)
        self._ttl_intervals = float(ttl_intervals)
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self.events: list[tuple[str, str, BaseException | None]] = []
        self._series: dict[tuple[str, ...], list[Any]] = {}
        self._series_peak = 0  # most series seen at a sweep since the table was last rebuilt
        self._carried: dict[tuple[str, ...], tuple[float, float, tuple[Any, ...]]] = {}
        self._reported_types: set[str] = set()
        self._next_sweep: float | None = None

    def __len__(self) -> int:
        """Number of series (identifiers) with live state."""
        return len(self._series)

    # -- the hot path --------------------------------------------------------------------------
    def process(self, value_lists: Iterable[Any], now: float) -> list[Sample]:
        out: list[Sample] = []
        append = out.append
        series = self._series
        counters = self.counters
        eq_derive = self._counter_eq_derive
        ttl_intervals = self._ttl_intervals
        n_values = 0
        for vl in value_lists:
            try:
                values = vl[7]
                n = len(values)
                n_values += n
                key = vl[:5]
                entry = series.get(key)
                if entry is None:
                    entry = self._admit(key, vl, now)
                    if entry is None:
                        continue
                step = entry[_STEP]
                t = vl[5]
                ts = int(t)
                interval = vl[6]
                if not _MIN_INTERVAL <= interval <= _MAX_INTERVAL:  # absent, NaN or absurd
                    interval = _ttl_interval(interval)
                last_t = entry[_TIME]
                dt = t - last_t if last_t is not None else 0.0
                if n == 1 and step is not None:
                    # Fast path for the one-DS types (most of collectd's): the same rules as
                    # the general loop below, without its per-list allocations. The tests feed
                    # both paths the same data and compare
                    # (test_collectd_rates.py: test_one_ds_fast_path_equals_the_general_loop).
                    ((wtype, v),) = values
                    kind, name, host, lo, hi, why = step
                    if wtype != kind:
                        if eq_derive and wtype + kind == COUNTER + DERIVE:
                            v = _coerce(v, kind)
                        else:
                            raise _TypeMismatch
                    r = None
                    if name is None:
                        counters[why] += 1
                    elif kind == GAUGE:
                        r = v
                    elif not dt > 0.0:  # first value, or time did not move on: (re-)prime
                        if v - v:  # a primed NaN/inf (or, via TypeError, a non-number) would
                            raise ValueError("not a finite number")  # poison later rates
                        counters["primed" if last_t is None else "dropped.time_not_increasing"] += 1
                    elif kind == DERIVE:
                        r = (v - entry[_PREV]) / dt
                    elif kind == COUNTER:
                        p = entry[_PREV]
                        if v >= p:
                            r = (v - p) / dt
                        else:
                            increase = counter_increase(p, v, hi * dt)
                            if increase is None:
                                counters["dropped.counter_reset"] += 1
                            else:
                                r = increase / dt
                    else:  # ABSOLUTE: the value is the count since the previous one
                        r = v / dt
                    if r is not None:
                        if r - r:  # NaN or +-inf: x - x is 0 only for finite x
                            counters["dropped.not_finite"] += 1
                        elif r < lo or r > hi:
                            counters["dropped.out_of_range"] += 1
                        else:
                            append((host, name, r, ts))
                    entry[_PREV] = v
                else:
                    plan = entry[_PLAN]
                    if n != len(plan):
                        self._reject("ds_count_mismatch", vl,
                                     f"{n} values, types.db has {len(plan)}")
                        continue
                    entry[_PREV] = self._multi(values, plan, entry[_PREV], last_t, dt, ts, out)
            except _TypeMismatch:
                self._reject("ds_type_mismatch", vl, "value types differ from types.db")
                continue
            except Exception as exc:  # e.g. a plugin dispatching a non-number: that list only
                self._reject("invalid_value", vl, f"{type(exc).__name__}: {exc}")
                continue
            entry[_TIME] = t
            entry[_EXPIRES] = now + ttl_intervals * interval
        counters["values"] += n_values
        counters["samples"] += len(out)
        return out

    def _multi(self, values: Any, plan: tuple[Any, ...], prev: Any, last_t: float | None,
               dt: float, ts: int, out: list[Sample]) -> list[Any]:
        """Several data sources sharing one time: the new previous values; on any error the
        samples appended so far are taken back and the exception propagates (state untouched).
        """
        counters = self.counters
        append = out.append
        mark = len(out)
        priming = not dt > 0.0
        new_prev: list[Any] = []
        push = new_prev.append
        try:
            for (wtype, v), (kind, name, host, lo, hi, why), p in zip(
                values, plan, prev, strict=False  # lengths checked by the caller
            ):
                if wtype != kind:
                    if self._counter_eq_derive and wtype + kind == COUNTER + DERIVE:
                        v = _coerce(v, kind)
                    else:
                        raise _TypeMismatch
                push(v)
                if name is None:
                    counters[why] += 1
                    continue
                if kind == GAUGE:
                    r = v
                elif priming:
                    if v - v:
                        raise ValueError("not a finite number")
                    counters["primed" if last_t is None else "dropped.time_not_increasing"] += 1
                    continue
                elif kind == DERIVE:
                    r = (v - p) / dt
                elif kind == COUNTER:
                    if v >= p:
                        r = (v - p) / dt
                    else:
                        increase = counter_increase(p, v, hi * dt)
                        if increase is None:
                            counters["dropped.counter_reset"] += 1
                            continue
                        r = increase / dt
                else:
                    r = v / dt
                if r - r:
                    counters["dropped.not_finite"] += 1
                    continue
                if r < lo or r > hi:
                    counters["dropped.out_of_range"] += 1
                    continue
                append((host, name, r, ts))
        except BaseException:
            del out[mark:]
            raise
        return new_prev

    # -- the slow path: first value list of a series -------------------------------------------
    def _admit(self, key: tuple[str, ...], vl: Any, now: float) -> list[Any] | None:
        host, plugin, plugin_instance, type_name, type_instance, t, interval, values = vl[:8]
        kinds = self._datasets.get(type_name)
        if kinds is None:
            self.counters["rejected.unknown_type"] += 1
            reported = self._reported_types
            if type_name not in reported and len(reported) < _MAX_REPORTED_TYPES:
                reported.add(type_name)
                self._event("unknown_type:" + type_name,
                            f"collectd type {type_name!r} is not in types.db; its value lists "
                            f"are dropped (first from {_identifier(vl)})")
            return None
        if len(values) != len(kinds):
            self._reject("ds_count_mismatch", vl, f"{len(values)} values, types.db has "
                         f"{len(kinds)}")
            return None
        eq_derive = self._counter_eq_derive
        plan = []
        for (wtype, value), (kind, ds_name, lo, hi) in zip(values, kinds, strict=True):
            if wtype != kind:
                if not (eq_derive and wtype + kind == COUNTER + DERIVE):
                    self._reject("ds_type_mismatch", vl, "value types differ from types.db")
                    return None
                value = _coerce(value, kind)
            sample = {
                "host": host,
                "plugin": plugin,
                "plugin_instance": plugin_instance,
                "type": type_name,
                "type_instance": type_instance,
                "time": t,
                "interval": interval,
                "value": value,
                "value_name": ds_name,
                "value_type": kind,
            }
            name, out_host, why, error = run_converter(self._converters, sample)
            if why is not None:
                why = "dropped." + why
                if error is not None:
                    self._event("converter_error:" + plugin,
                                f"collectd converter for plugin {plugin!r} failed on "
                                f"{_identifier(vl)}/{ds_name}; its values are dropped", error)
            plan.append((kind, name, out_host, lo, hi, why))
        single = len(plan) == 1
        entry = [now, None, None if single else (None,) * len(plan), tuple(plan),
                 plan[0] if single else None]
        carried = self._carried.pop(key, None)
        if carried is not None and len(carried[2]) == len(plan):
            entry[_TIME] = carried[1]
            entry[_PREV] = carried[2][0] if single else list(carried[2])
        self._series[key] = entry
        return entry

    def _reject(self, reason: str, vl: Any, detail: str) -> None:
        self.counters["rejected." + reason] += 1
        self._event(reason, f"collectd value list {_identifier(vl)} rejected: {detail}")

    def _event(self, key: str, message: str, error: BaseException | None = None) -> None:
        if len(self.events) < _MAX_EVENTS:
            self.events.append((key, message, error))

    # -- housekeeping --------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Sweep expired series every few seconds."""
        if self._next_sweep is None:
            self._next_sweep = now + _SWEEP_EVERY
        elif now >= self._next_sweep:
            self.sweep(now)
            self._next_sweep = now + _SWEEP_EVERY

    def sweep(self, now: float) -> int:
        """Forget every series not heard of for its TTL; the number forgotten."""
        dropped = 0
        self._series_peak = max(self._series_peak, len(self._series))
        for table in (self._series, self._carried):
            expired = [k for k, e in table.items() if e[0] <= now]
            for k in expired:
                del table[k]
            dropped += len(expired)
        if dropped:
            self.counters["series_expired"] += dropped
            if len(self._series) < self._series_peak // 4:
                # A dict keeps its largest table after deletions: copy it, so the memory of a
                # burst of series is given back once they expire.
                self._series = dict(self._series)
                self._series_peak = len(self._series)
        return dropped

    def export_state(self) -> dict[tuple[str, ...], tuple[float, float, tuple[Any, ...]]]:
        """Picklable rate state {identifier: (expires, time, previous values)}.

        Only series that need it (a primed non-GAUGE DS) are exported; names are not, so a new
        converter configuration takes effect at once.
        """
        state = dict(self._carried)
        for key, entry in self._series.items():
            if entry[_TIME] is not None and any(step[0] != GAUGE for step in entry[_PLAN]):
                prev = (entry[_PREV],) if entry[_STEP] is not None else tuple(entry[_PREV])
                state[key] = (entry[_EXPIRES], entry[_TIME], prev)
        return state

    def import_state(self, state: object) -> None:
        """Take over rate state exported by a previous instance (ignored if malformed)."""
        if not isinstance(state, dict):
            return
        number = (int, float)
        for key, item in state.items():
            if (isinstance(key, tuple) and len(key) == 5 and isinstance(item, tuple)
                    and len(item) == 3 and isinstance(item[0], number)
                    and isinstance(item[1], number) and isinstance(item[2], tuple)):
                self._carried[key] = item


def _identifier(vl: Any) -> str:
    """collectd's spelling host/plugin[-pi]/type[-ti], for log lines (repr keeps them one line)."""
    try:
        host, plugin, plugin_instance, type_name, type_instance = (str(f) for f in vl[:5])
    except Exception:  # whatever a plugin handed us, describing it must not fail
        return "<malformed value list>"
    plugin += "-" + plugin_instance if plugin_instance else ""
    type_name += "-" + type_instance if type_instance else ""
    return repr(f"{host}/{plugin}/{type_name}")
