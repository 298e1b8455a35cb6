"""What the status server knows, and the answers it gives: sans-I/O (times are passed in).

Fed by the http process's loop with the messages below (see bucky/daemon/http_feed.py for who
sends them; their kinds: bucky.messages); read by the request handlers. Every structure is
bounded whatever the cardinality:

- series seen by the tap: at most `max_series` (default 2,000) paths, least recently updated
  evicted first (counted in `evicted_series`), at most `max_points` (default 120) points each,
  and nothing older than `history_seconds`: 240,000 points of ~120 bytes (a tuple of two
  floats in a deque), under 32 MB at worst (tests/http/test_state.py measures it).
- self-metrics: at most MAX_SELF_SERIES (process, counter) pairs, further ones are ignored and
  counted in `dropped_self_metrics`.
- destinations: what the output processes report (one entry per configured destination).
- rates: over the last RATE_WINDOW seconds, at most RATE_POINTS totals per rate.
- the relay's own history (RelayHistory): one point every `history_seconds / HISTORY_POINTS`
  seconds (at least HISTORY_MIN_STEP) per line, at most HISTORY_POINTS points, at most
  MAX_HISTORY_LINES lines (further ones are counted in `dropped_history_lines`).

Self-metrics also go into the series store under their Graphite names, so the relay's own
counters are in the series tree like any tapped series.

Messages (all plain tuples, sent over a Channel; unknown ones are counted and ignored):

- ("procs", {"time": wall s, "processes": [{"title", "role", "kind", "up", "restarts"}],
             "about": {"version", "host", "config_file", "started": wall s}})
  from the supervisor: which processes run, and what runs them ("about" is optional).
- ("status", output_title, snapshot) from each output process, about once a second. A snapshot is
  {"time": wall s, "pending": int, "counters": {name: cumulative count},
   "destinations": [{"label": str, "address": str, "state": "up" | "connecting" | "down",
                     "accepting": bool, "pending": int, "counters": {name: cumulative count},
                     "reconnects_exhausted": bool, "spool": datapoints on disk or None,
                     "spool_age": s since the oldest spooled datapoint was written or None,
                     "placement": how the output places metrics (optional)}]}.
  `accepting` is False once a destination has used up its reconnect plan
  (graphite_max_reconnects failed attempts) and drops new data until it connects again;
  with a disk spool it keeps accepting (nothing is dropped) and `reconnects_exhausted` says
  the plan is used up. Either makes the destination unhealthy until it connects again.
- ("tap", output_title, [(host, name, value, timestamp), ...]): a sample of what an output sent.
- ("self", samples[, gauge_names]): self-metrics of any process, as on the data channels.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any

from bucky.messages import PROCS, SELF_METRICS, STATUS, TAP, kind_of, self_metrics_gauges

MAX_SERIES = 2000
MAX_POINTS = 120
MAX_SELF_SERIES = 5000
RATE_WINDOW = 10.0  # seconds a rate is averaged over: snapshots come every 0.5 s
RATE_POINTS = 64  # totals kept per rate (21 at one snapshot each 0.5 s)
HISTORY_POINTS = 300  # points per line of the relay's own history
HISTORY_MIN_STEP = 1.0  # seconds between two points of that history, at least
MAX_HISTORY_LINES = 200
# The plots of the relay's own history: key -> title (the page draws them in this order)
HISTORY_PLOTS = {"in": "samples in /s per input", "out": "points out /s per destination",
                 "drops": "drops and rejects /s per process",
                 "backlog": "backlog per destination (datapoints)",
                 "spool": "spool per destination (datapoints)"}
STATUS_STALE = 10.0  # seconds without a status snapshot before an output counts as silent
PROCS_STALE = 10.0
HEALTH_STATES = ("ok", "degraded", "failing")
ESSENTIAL_ROLES = ("input", "processor", "output")  # when the supervisor does not say
GIVEN_UP_MEMORY = 3600.0  # seconds /health mentions an auxiliary process that was given up on
# Drops within this many seconds make /health "failing": two default reporting intervals, so
# loss that recurs with every StatsD flush or self-metric report reads as lasting.
LOSS_WINDOW = 20.0
LOSS_COUNTERS = frozenset({"dropped.queue_full", "dropped_batches.queue_full"})
NOT_LOSS = frozenset({"dropped.invalid"})  # refused as unsendable: not lost to an outage
REJECT_KINDS = ("dropped", "rejected", "bad_datagrams", "bad_lines", "errors")
_PROM_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


class Series:
    __slots__ = ("points", "seen")

    def __init__(self, max_points: int) -> None:
        self.points: deque[tuple[float, float]] = deque(maxlen=max_points)
        self.seen = 0.0


class SeriesStore:
    """The recent points of the series the tap saw, bounded (see the module doc)."""

    def __init__(self, history_seconds: float, max_series: int = MAX_SERIES,
                 max_points: int = MAX_POINTS) -> None:
        self.history = history_seconds
        self.max_series = max_series
        self.max_points = max_points
        self._series: OrderedDict[str, Series] = OrderedDict()
        self.evicted_series = 0
        self.points_added = 0

    def __len__(self) -> int:
        return len(self._series)

    def add(self, path: str, value: float, ts: float, now: float) -> None:
        series = self._series.get(path)
        if series is None:
            series = self._series[path] = Series(self.max_points)
            if len(self._series) > self.max_series:
                self._series.popitem(last=False)
                self.evicted_series += 1
        else:
            self._series.move_to_end(path)
        series.seen = now
        series.points.append((ts, value))
        self.points_added += 1

    def expire(self, now: float) -> None:
        """Forget series not seen for `history` seconds (the least recently seen come first)."""
        cutoff = now - self.history
        while self._series:
            path, series = next(iter(self._series.items()))
            if series.seen >= cutoff:
                break
            del self._series[path]

    def points(self, path: str, now: float) -> list[list[float]] | None:
        series = self._series.get(path)
        if series is None:
            return None
        cutoff = now - self.history
        # JSON has no inf/nan: such a point is sent as null, and the plot skips it
        return [[ts, _json_number(value)] for ts, value in series.points if ts >= cutoff]

    def tree(self, prefix: str) -> list[dict[str, Any]]:
        """The children of `prefix` ("" = the top): name, path, leaf, series below, last value."""
        base = prefix + "." if prefix else ""
        nodes: dict[str, dict[str, Any]] = {}
        for path, series in self._series.items():
            if not path.startswith(base) or path == prefix:
                continue
            rest = path[len(base):]
            head, dot, _ = rest.partition(".")
            node = nodes.get(head)
            if node is None:
                node = nodes[head] = {"name": head, "path": base + head, "leaf": False,
                                      "series": 0}
            node["series"] += 1
            if not dot:
                node["leaf"] = True
                last = series.points[-1] if series.points else None
                node["last"] = None if last is None else _json_number(last[1])
                node["last_time"] = None if last is None else last[0]
        return sorted(nodes.values(), key=lambda n: n["name"])


def _json_number(value: float) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


class Rate:
    """Events per second from successive cumulative totals, over the last `window` seconds.

    The oldest total kept is the last one at or before `now - window`, so the rate spans a whole
    window once there is one. A total lower than the one before (a restarted process) starts
    over."""

    __slots__ = ("points", "window")

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self.window = window
        self.points: deque[tuple[float, float]] = deque(maxlen=RATE_POINTS)

    def update(self, total: float, now: float) -> None:
        points = self.points
        if points and (total < points[-1][1] or now < points[-1][0]):
            points.clear()
        if points and now == points[-1][0]:
            points[-1] = (now, total)
        else:
            points.append((now, total))
        cutoff = now - self.window
        while len(points) > 2 and points[1][0] <= cutoff:
            points.popleft()

    @property
    def rate(self) -> float:
        if len(self.points) < 2:
            return 0.0
        (t0, v0), (t1, v1) = self.points[0], self.points[-1]
        return (v1 - v0) / (t1 - t0)


class RelayHistory:
    """The relay's own figures over the last `history_seconds`, as lines of (time, value) points
    grouped in plots (HISTORY_PLOTS). Bounded: see the module doc."""

    def __init__(self, history_seconds: float, max_points: int = HISTORY_POINTS,
                 max_lines: int = MAX_HISTORY_LINES) -> None:
        self.history = history_seconds
        self.step = max(HISTORY_MIN_STEP, history_seconds / max_points)
        self.max_points = max_points
        self.max_lines = max_lines
        self.lines: dict[tuple[str, str], deque[tuple[float, float]]] = {}
        self.next_time = -math.inf
        self.dropped_lines = 0

    def due(self, now: float) -> bool:
        return now >= self.next_time

    def record(self, now: float, values: Iterable[tuple[str, str, float]]) -> None:
        """One point per (plot, label, value); lines not in `values` get none this time."""
        self.next_time = now + self.step
        for plot, label, value in values:
            line = self.lines.get((plot, label))
            if line is None:
                if len(self.lines) >= self.max_lines:
                    self.dropped_lines += 1
                    continue
                line = self.lines[(plot, label)] = deque(maxlen=self.max_points)
            line.append((now, value))
        cutoff = now - self.history
        for key, line in list(self.lines.items()):
            while line and line[0][0] < cutoff:
                line.popleft()
            if not line:
                del self.lines[key]

    def plots(self) -> list[dict[str, Any]]:
        """[{"key", "title", "lines": {label: [[time, value], ...]}}] in HISTORY_PLOTS order."""
        out = []
        for key, title in HISTORY_PLOTS.items():
            lines = {label: [[t, _json_number(v)] for t, v in points]
                     for (plot, label), points in sorted(self.lines.items()) if plot == key}
            out.append({"key": key, "title": title, "lines": lines})
        return out


class StatusState:
    def __init__(self, self_prefix: str, history_seconds: float,
                 statname: Callable[[str | None, str], str], *,
                 max_series: int = MAX_SERIES, max_points: int = MAX_POINTS,
                 degraded_status: int = 200) -> None:
        self.self_prefix = self_prefix + "." if self_prefix else ""
        self.series = SeriesStore(history_seconds, max_series, max_points)
        self.relay_history = RelayHistory(history_seconds)
        self._statname = statname
        self.procs: dict[str, Any] | None = None
        self.procs_seen = 0.0
        self.outputs: dict[str, dict[str, Any]] = {}
        self.outputs_seen: dict[str, float] = {}
        self.dest_rates: dict[tuple[str, str], Rate] = {}
        # (output, label) -> [datapoints dropped in all, when that last grew]
        self.dest_losses: dict[tuple[str, str], list[float]] = {}
        self.degraded_status = degraded_status
        # (process, counter) -> [kind, total, last delta, last report time]
        self.selfm: dict[tuple[str, str], list] = {}
        self.self_rates: dict[tuple[str, str], Rate] = {}
        self.self_reported: dict[str, float] = {}  # process -> when its last report came
        self.counters: dict[str, float] = {"messages": 0, "unknown_messages": 0,
                                           "dropped_self_metrics": 0, "tap_samples": 0,
                                           "requests": 0, "refused": 0, "slow_clients": 0}

    # -- feeding ---------------------------------------------------------------------------------
    def handle(self, msg: object, now: float) -> None:
        """One message from a channel; `now` is wall-clock seconds."""
        self.counters["messages"] += 1
        try:
            kind = kind_of(msg)
            if kind == PROCS:
                self.procs = dict(msg[1])  # type: ignore[index]
                self.procs_seen = now
            elif kind == STATUS:
                self._status(str(msg[1]), dict(msg[2]), now)  # type: ignore[index]
            elif kind == TAP:
                self._tap(msg[2], now)  # type: ignore[index]
            elif kind == SELF_METRICS:
                gauges = self_metrics_gauges(msg)  # type: ignore[arg-type]
                self._self(msg[1], set(gauges), now)  # type: ignore[index]
            else:
                self.counters["unknown_messages"] += 1
        except Exception:  # whatever a message holds, it is counted, never fatal
            self.counters["unknown_messages"] += 1

    def expire(self, now: float) -> None:
        self.series.expire(now)

    def tick(self, now: float) -> None:
        """Called often (each loop of the http process): a point of the relay's history when
        one is due."""
        if self.relay_history.due(now):
            self.relay_history.record(now, self._history_values())

    def _history_values(self) -> list[tuple[str, str, float]]:
        values: list[tuple[str, str, float]] = []
        roles = {process_key(p.get("title", "")): p.get("role")
                 for p in (self.procs or {}).get("processes") or ()}
        drops: dict[str, float] = {}
        for (process, counter), (kind, _total, _last, _seen) in self.selfm.items():
            if kind != "counter":
                continue
            if counter == "queued" and roles.get(process) == "input":
                values.append(("in", process, self.self_rates[(process, counter)].rate))
            elif counter.split(".", 1)[0] in REJECT_KINDS:
                drops[process] = drops.get(process, 0.0) + self.self_rates[(process, counter)].rate
        values.extend(("drops", process, rate) for process, rate in drops.items())
        for title, snap in self.outputs.items():
            for dest in snap.get("destinations") or ():
                label = str(dest.get("label"))
                name = label if len(self.outputs) == 1 else f"{title}:{label}"
                rate = self.dest_rates.get((title, label))
                values.append(("out", name, rate.rate if rate else 0.0))
                values.append(("backlog", name, float(dest.get("pending") or 0)))
                if isinstance(dest.get("spool"), (int, float)):
                    values.append(("spool", name, float(dest["spool"])))
        return values

    def _status(self, title: str, snap: dict[str, Any], now: float) -> None:
        self.outputs[title] = snap
        self.outputs_seen[title] = now
        for dest in snap.get("destinations") or ():
            key = (title, str(dest.get("label")))
            counters = dest.get("counters") or {}
            self.dest_rates.setdefault(key, Rate()).update(float(counters.get("sent", 0)), now)
            lost = sum(float(v) for k, v in counters.items()
                       if k.startswith("dropped.") and k not in NOT_LOSS)
            loss = self.dest_losses.get(key)
            if loss is None:  # a new (or restarted) output: what it counted is recent enough
                self.dest_losses[key] = [lost, now if lost > 0 else -math.inf]
            elif lost != loss[0]:
                loss[:] = [lost, now if lost > loss[0] else loss[1]]

    def _tap(self, samples: Iterable[tuple], now: float) -> None:
        add, statname = self.series.add, self._statname
        n = 0
        for host, name, value, ts in samples:
            try:
                # float() of a huge int raises OverflowError; a time that is not finite has no
                # place on a plot (a value that is not finite is kept, and sent as null)
                timestamp = float(ts)
                if not math.isfinite(timestamp):
                    continue
                add(statname(host, name), float(value), timestamp, now)
            except Exception:  # one odd sample is skipped; the status server never dies of it
                continue
            n += 1
        self.counters["tap_samples"] += n

    def _self(self, samples: Iterable[tuple], gauges: set, now: float) -> None:
        prefix = self.self_prefix
        statname, add = self._statname, self.series.add
        reported: dict[str, float] = {}
        for host, name, value, ts in samples:
            if not name.startswith(prefix):
                continue
            process, _, counter = name[len(prefix):].partition(".")
            if not counter:
                continue
            try:  # the relay's own series, in the tree like any other
                timestamp = float(ts)
                if math.isfinite(timestamp):
                    add(statname(host, name), float(value), timestamp, now)
            except Exception:
                pass
            key = (process, counter)
            entry = self.selfm.get(key)
            if entry is None:
                if len(self.selfm) >= MAX_SELF_SERIES:
                    self.counters["dropped_self_metrics"] += 1
                    continue
                entry = self.selfm[key] = ["gauge" if name in gauges else "counter", 0.0, 0.0, 0]
                rate = self.self_rates[key] = Rate()
                before = self.self_reported.get(process)
                if before is not None and before < now:
                    # A counter new in this report counted from 0 since the process's report
                    # before: it gets a rate at once, like the counters reported all along.
                    rate.update(0.0, before)
            if entry[0] == "gauge":
                entry[1] = float(value)
            else:
                entry[1] += float(value)
                self.self_rates[key].update(entry[1], now)
            entry[2], entry[3] = float(value), now
            reported[process] = now
        self.self_reported.update(reported)

    # -- answers ---------------------------------------------------------------------------------
    def health(self, now: float) -> tuple[bool, dict[str, Any]]:
        """(whether /health answers 200, its body). The body's "status" is one of HEALTH_STATES:
        "failing" (data is being lost, or an essential process is down: always 503),
        "degraded" (nothing is lost, but an operator is needed: 200, or 503 with
        `http_degraded_status = 503`), "ok"; "reasons" says why, the worst first."""
        failing: list[str] = []
        degraded: list[str] = []
        processes = []
        if self.procs is None:
            failing.append("no process list from the supervisor yet")
        else:
            if now - self.procs_seen > PROCS_STALE:
                failing.append(f"no process list from the supervisor for "
                               f"{now - self.procs_seen:.0f} s")
            for proc in self.procs.get("processes") or ():
                processes.append(proc)
                essential = proc.get("essential", proc.get("role") in ESSENTIAL_ROLES)
                if not proc.get("up"):
                    (failing if essential else degraded).append(
                        f"process {proc.get('title')} is down")
                given_up = proc.get("given_up_at")
                if given_up is not None and now - float(given_up) < GIVEN_UP_MEMORY:
                    degraded.append(f"process {proc.get('title')} kept dying and was given up "
                                    f"on {now - float(given_up):.0f} s ago "
                                    f"({proc.get('given_up_cause')})")
        for (process, counter), (kind, _total, last, seen) in self.selfm.items():
            if (kind == "counter" and last > 0 and now - seen <= LOSS_WINDOW
                    and counter in LOSS_COUNTERS):
                failing.append(f"process {process} dropped {last:.0f} ({counter}) in its last "
                               "report")
        outputs = [p.get("title") for p in processes if p.get("role") == "output"]
        destinations = []
        for title in outputs:
            seen = self.outputs_seen.get(title)
            if seen is None:
                failing.append(f"no status from output {title} yet")
                continue
            if now - seen > STATUS_STALE:
                failing.append(f"no status from output {title} for {now - seen:.0f} s")
            for dest in self.outputs[title].get("destinations") or ():
                destinations.append(self._destination_health(title, dest, now, failing,
                                                             degraded))
        status = "failing" if failing else "degraded" if degraded else "ok"
        body = {"status": status, "reasons": failing + degraded,
                "processes": processes, "destinations": destinations}
        answers_200 = status == "ok" or (status == "degraded" and self.degraded_status == 200)
        return answers_200, body

    def _destination_health(self, title: str, dest: dict[str, Any], now: float,
                            failing: list[str], degraded: list[str]) -> dict[str, Any]:
        label, state = dest.get("label"), dest.get("state")
        accepting = dest.get("accepting", True)
        where = f"destination {label} ({title})"
        health = "ok"
        loss = self.dest_losses.get((title, str(label)))
        lost = loss is not None and now - loss[1] <= LOSS_WINDOW
        if not accepting:
            failing.append(f"{where} is {state} and its reconnect plan is used up: new data "
                           "is dropped")
            health = "failing"
        elif lost:
            failing.append(f"{where} is dropping datapoints ({loss[0]:.0f} since its "  # type: ignore[index]
                           f"output started, the last within {LOSS_WINDOW:.0f} s)")
            health = "failing"
        if health == "ok" and state != "up":
            if dest.get("reconnects_exhausted"):
                degraded.append(f"{where} is {state} and its reconnect plan is used up; "
                                "the disk spool keeps the data")
            else:
                degraded.append(f"{where} is {state}")
            health = "degraded"
        spooled = dest.get("spool")
        if isinstance(spooled, (int, float)) and spooled > 0:
            degraded.append(f"{where}: {spooled:.0f} datapoints wait in the disk spool")
            health = "degraded" if health == "ok" else health
        return {"output": title, "label": label, "state": state, "accepting": accepting,
                "ok": health == "ok", "health": health}

    def status(self, now: float) -> dict[str, Any]:
        """Everything the page shows apart from the series tree."""
        procs = {}
        for proc in (self.procs or {}).get("processes") or ():
            procs[process_key(proc.get("title", ""))] = proc
        counters: dict[str, list[dict[str, Any]]] = {}
        rejects = []
        for (process, counter), (kind, total, _last, _seen) in sorted(self.selfm.items()):
            rate = self.self_rates[(process, counter)].rate if kind == "counter" else None
            row = {"counter": counter, "kind": kind, "value": _json_number(total),
                   "rate": _json_number(rate) if rate is not None else None}
            counters.setdefault(process, []).append(row)
            if kind == "counter" and counter.split(".", 1)[0] in REJECT_KINDS and total:
                rejects.append({"process": process, **row})
        destinations = []
        for title, snap in sorted(self.outputs.items()):
            for dest in snap.get("destinations") or ():
                rate = self.dest_rates.get((title, str(dest.get("label"))))
                dcounters = dest.get("counters") or {}
                destinations.append({
                    "output": title, "label": dest.get("label"),
                    "address": dest.get("address"), "state": dest.get("state"),
                    "accepting": dest.get("accepting", True), "pending": dest.get("pending", 0),
                    "spool": dest.get("spool"), "spool_age": dest.get("spool_age"),
                    "placement": dest.get("placement"), "sent": dcounters.get("sent", 0),
                    "rate_out": _json_number(rate.rate) if rate else 0.0,
                    "dropped": sum(v for k, v in dcounters.items() if k.startswith("dropped")),
                })
        inputs = []
        for process, rows in sorted(counters.items()):
            role = (procs.get(process) or {}).get("role")
            if role != "input":
                continue
            by_name = {r["counter"]: r for r in rows}
            rate_in = next(((by_name[c]["rate"] or 0.0) for c in _IN_COUNTERS if c in by_name),
                           0.0)
            rate_out = (by_name.get("queued") or {}).get("rate") or 0.0
            inputs.append({"process": process, "rate_in": rate_in, "rate_out": rate_out})
        about = dict((self.procs or {}).get("about") or {})
        started = about.get("started")
        about["uptime"] = (now - float(started)) if isinstance(started, (int, float)) else None
        return {"time": now, "about": about, "processes": list(procs.values()),
                "inputs": inputs,
                "destinations": destinations, "rejects": rejects, "counters": counters,
                "series": len(self.series), "history_seconds": self.series.history,
                "http": dict(self.counters, evicted_series=self.series.evicted_series,
                             dropped_history_lines=self.relay_history.dropped_lines)}

    def history(self, now: float) -> dict[str, Any]:
        """The relay's own history: the plots of /api/history."""
        return {"time": now, "history_seconds": self.relay_history.history,
                "step": self.relay_history.step, "plots": self.relay_history.plots()}

    def prometheus(self, now: float) -> str:
        """Every self-metric and destination figure in the Prometheus text format."""
        families: dict[str, tuple[str, str, list[str]]] = {}

        def add(name: str, kind: str, help_text: str, labels: dict[str, str],
                value: float) -> None:
            fam = families.get(name)
            if fam is None:
                fam = families[name] = (kind, help_text, [])
            elif fam[0] != kind:
                return
            label_text = ",".join(f'{k}="{_prom_escape(v)}"' for k, v in labels.items())
            fam[2].append(f"{name}{{{label_text}}} {_prom_value(value)}")

        for proc in (self.procs or {}).get("processes") or ():
            add("bucky_process_up", "gauge", "1 when the process runs",
                {"process": process_key(proc.get("title", ""))}, 1.0 if proc.get("up") else 0.0)
            add("bucky_process_restarts_total", "counter", "times the process was restarted",
                {"process": process_key(proc.get("title", ""))}, float(proc.get("restarts", 0)))
        # An output's per-destination self-metrics (<label>.<counter>) are exported below with a
        # destination label, from the status snapshots: not twice.
        labelled = {(process_key(title), str(dest.get("label")))
                    for title, snap in self.outputs.items()
                    for dest in snap.get("destinations") or ()}
        for (process, counter), (kind, total, _last, _seen) in sorted(self.selfm.items()):
            if "." in counter and (process, counter.split(".", 1)[0]) in labelled:
                continue
            base = "bucky_" + _PROM_UNSAFE.sub("_", counter)
            if kind == "counter":
                add(base + "_total", "counter", f"Bucky self-metric {counter}",
                    {"process": process}, total)
            else:
                add(base, "gauge", f"Bucky self-metric {counter}", {"process": process}, total)
        for title, snap in sorted(self.outputs.items()):
            process = process_key(title)
            for dest in snap.get("destinations") or ():
                labels = {"process": process, "destination": str(dest.get("label"))}
                add("bucky_destination_up", "gauge", "1 when connected to the destination",
                    labels, 1.0 if dest.get("state") == "up" else 0.0)
                add("bucky_destination_pending", "gauge", "datapoints held for the destination",
                    labels, float(dest.get("pending") or 0))
                for counter, value in sorted((dest.get("counters") or {}).items()):
                    add("bucky_destination_" + _PROM_UNSAFE.sub("_", counter) + "_total",
                        "counter", f"destination counter {counter}", labels, float(value))
        _, health = self.health(now)
        for state in HEALTH_STATES:
            add("bucky_health", "gauge", "1 for the state /health reports (ok, degraded, failing)",
                {"state": state}, 1.0 if health["status"] == state else 0.0)
        for counter, value in sorted(self.counters.items()):
            add("bucky_http_" + counter + "_total", "counter", f"status server {counter}",
                {"process": "http"}, float(value))
        add("bucky_http_series", "gauge", "series kept for the status page",
            {"process": "http"}, float(len(self.series)))
        add("bucky_http_evicted_series_total", "counter", "series evicted to keep the bound",
            {"process": "http"}, float(self.series.evicted_series))
        add("bucky_http_dropped_history_lines_total", "counter",
            "lines of the relay's history not kept (beyond the bound)",
            {"process": "http"}, float(self.relay_history.dropped_lines))
        lines = []
        for name, (kind, help_text, samples) in families.items():
            family = name[: -len("_total")] if kind == "counter" else name
            lines.append(f"# HELP {family} {help_text}")
            lines.append(f"# TYPE {family} {kind}")
            lines.extend(samples)
        return "\n".join(lines) + "\n"


_IN_COUNTERS = ("datagrams", "values.dispatched")  # what an input counts as arriving, first found


def process_key(title: str) -> str:
    """A process title as it appears in self-metric names and labels ("collectd.1" ->
    "collectd_1")."""
    return str(title).replace(".", "_")


def _prom_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _prom_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
