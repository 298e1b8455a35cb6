"""The StatsD management port (stats.js's mgmt_server, proxy.js's for the proxy): one `AdminStream`
per connection, and `WorkerAdmin`, the answers of the StatsD workers.

The listener is in the socket plan (bound by the supervisor before privileges drop); the input
loop accepts connections and asks the handler's `open_stream("admin", addr)` for an AdminStream,
feeds it what the client writes and writes back what `outgoing()` gives (the answering-stream
contract, bucky.inputs.base.AnsweringStream).

Bounds, so that no client can hold up the flushes or the memory of the StatsD input:
- a line longer than MAX_LINE without a newline, more than MAX_COMMANDS_PER_READ commands in one
  read, or more than MAX_OUTPUT bytes of answers the client has not read: the connection is
  closed and counted (`admin.disconnected.<reason>`);
- at most MAX_CLIENTS connections at once (more are closed at once, `admin.refused`);
- before each command the handler's flush runs if it is due (the `before` hook), so answering,
  however long, never moves a flush.
Answers are queued as chunks (no quadratic concatenation) and written as the socket takes them.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from bucky.config import Config
from bucky.protocol import statsd_admin as admin
from bucky.protocol.statsd_route import in_first_seen_order

ADMIN_STREAM = "admin"  # the stream kind of the management listener (bucky.daemon.plan)
MAX_CLIENTS = 32
MAX_LINE = 64 * 1024
MAX_COMMANDS_PER_READ = 16
MAX_OUTPUT = 16 * 1024 * 1024
ANSWER_TIMEOUT = 1.0  # seconds worker 0 waits for the other workers' part of an answer

# (stream, command line, now) -> the answer now, or None when it comes later via stream.reply()
Answer = Callable[["AdminStream", str, float], "str | None"]


class AdminStream:
    """One management connection: lines in, answers out, bounded (see the module docstring)."""

    def __init__(self, answer: Answer, counters: Counter[str], before: Callable[[], None],
                 streams: set[AdminStream]) -> None:
        self._answer = answer
        self._counters = counters
        self._before = before
        self._streams = streams  # the open ones, shared by the handler's streams
        self._inbuf = b""
        self._out: deque[bytes] = deque()
        self._out_bytes = 0
        self._offset = 0  # of the first chunk, already written
        self.waiting = 0  # answers still to come through reply()
        self.completed = 0  # commands read (the stream contract)
        self._quit = False
        self._broken = False
        if len(streams) >= MAX_CLIENTS:
            self._break("refused")
        else:
            streams.add(self)

    # --- the stream contract (bucky.inputs.base) --------------------------------------------------

    def feed(self, data: bytes, now: float, mono: float | None = None) -> bool:
        if self._broken:
            return False
        if self._quit:
            return True  # after `quit` the rest is ignored, as the reference closes
        # The reference treats each received chunk as one command; a line is the same for
        # every client that writes `command\n` (telnet, nc, proxy.js) and is safer for others.
        *lines, self._inbuf = (self._inbuf + data).split(b"\n")
        if len(self._inbuf) > MAX_LINE:
            return self._break("long_line")
        commands = [raw for raw in lines if raw.strip()]
        if len(commands) > MAX_COMMANDS_PER_READ:
            return self._break("too_many_commands")
        for raw in commands:
            self.completed += 1
            line = raw.decode("ascii", "replace")
            if line.strip().split(" ")[0] == "quit":
                self._quit = True
                break
            self._before()
            try:
                text = self._answer(self, line, now)
            except Exception:
                self._counters["admin.errors"] += 1
                text = "ERROR\n"
            if text is None:
                self.waiting += 1
            else:
                self._queue(text)
            if self._broken:
                return False
        return True

    def close(self, now: float) -> None:
        self._streams.discard(self)
        self._out.clear()
        self._out_bytes = 0

    # --- answering (bucky.inputs.base.AnsweringStream) -------------------------------------------

    def outgoing(self) -> tuple[bytes, bool]:
        """What to write now, and whether to close once it is written."""
        if self._broken:
            return b"", True
        data = self._out[0][self._offset:] if self._out else b""
        return data, self._quit and not self.waiting and not data

    def sent(self, n: int) -> None:
        while n and self._out:
            left = len(self._out[0]) - self._offset
            if n < left:
                self._offset += n
                self._out_bytes -= n
                return
            self._out.popleft()
            self._offset = 0
            self._out_bytes -= left
            n -= left

    def reply(self, text: str) -> None:
        """An answer that came later (asked of the other workers)."""
        self.waiting = max(0, self.waiting - 1)
        if self in self._streams:
            self._queue(text)

    def _queue(self, text: str) -> None:
        data = text.encode("ascii", "replace")
        if self._out_bytes + len(data) > MAX_OUTPUT:
            self._break("output_unread")
            return
        self._out.append(data)
        self._out_bytes += len(data)

    def _break(self, reason: str) -> bool:
        self._broken = True
        self._counters["admin.refused" if reason == "refused"
                       else f"admin.disconnected.{reason}"] += 1
        self._streams.discard(self)
        self._out.clear()
        self._out_bytes = 0
        return False


def statsd_options(cfg: Config) -> dict[str, Any]:
    """What `config` prints: the StatsD options in effect."""
    names = sorted(f.name for f in dataclasses.fields(cfg) if f.name.startswith("statsd_"))
    return {name: getattr(cfg, name) for name in names}


@dataclasses.dataclass
class _Query:
    stream: AdminStream
    cmd: str
    params: list[str]
    parts: list[Any]
    deadline: float


class WorkerAdmin:
    """stats.js's commands, answered by worker 0 of `workers`: `counters`, `timers`, `gauges`,
    `del*` and `stats` are asked of every worker (`ask_others(qid, cmd, params)`; their parts come
    back through `part()`) and answered merged, the keys in the order one process would list
    them (the order their names were first routed, `first_seen`)."""

    def __init__(self, cfg: Config, workers: int, view: Callable[[], Any],
                 last_msg: Callable[[], float], started: float,
                 ask_others: Callable[[int, str, list[str]], None],
                 counters: Counter[str], first_seen: dict[str, int]) -> None:
        self.cfg = cfg
        self._first_seen = first_seen  # name -> rank (WorkerRouter.first_seen of worker 0)
        self.workers = workers
        self._view = view  # -> the StatsdAggregator (bucky.aggregate.statsd) of this worker
        self._last_msg = last_msg
        self._started = started
        self._ask_others = ask_others
        self._counters = counters
        self.health = "up"
        self._queries: dict[int, _Query] = {}
        self._query_id = 0

    def answer(self, stream: AdminStream, line: str, now: float) -> str | None:
        cmd, params = admin.parse_command(line)
        if cmd == "help":
            return admin.HELP
        if cmd == "health":
            self.health = admin.health_command(self.health, params)
            return admin.health_answer(self.health)
        if cmd == "config":
            return admin.config_answer(statsd_options(self.cfg))
        if cmd not in ("stats", "counters", "timers", "gauges",
                       "delcounters", "deltimers", "delgauges"):
            return "ERROR\n"
        parts = [self.local_answer(cmd, params)]
        if self.workers == 1:
            return self._combine(cmd, params, parts, now)
        self._query_id += 1
        qid = self._query_id
        self._queries[qid] = _Query(stream, cmd, params, parts, now + ANSWER_TIMEOUT)
        self._ask_others(qid, cmd, params)
        return None

    def part(self, qid: int, part: Any, now: float) -> None:
        """Another worker's part of the answer to query `qid`."""
        query = self._queries.get(qid)
        if query is None:
            return
        query.parts.append(part)
        if len(query.parts) >= self.workers:
            self._finish(qid, now)

    def expire(self, now: float, force: bool = False) -> None:
        """Answer with what came in the queries whose other parts are late (all when `force`)."""
        for qid, query in list(self._queries.items()):
            if force or now >= query.deadline:
                self._counters["admin.incomplete_answers"] += 1
                self._finish(qid, now)

    def _finish(self, qid: int, now: float) -> None:
        query = self._queries.pop(qid)
        query.stream.reply(self._combine(query.cmd, query.params, query.parts, now))

    def local_answer(self, cmd: str, params: list[str]) -> Any:
        """This worker's part of an answer (also what the other workers send worker 0)."""
        agg = self._view()
        if cmd == "stats":
            return {"last_msg_seen": self._last_msg(),
                    "bad_lines_seen": agg.counts().get("bad_lines", 0)}
        if cmd == "counters":
            return [agg.own_counts(), agg.counter_values()]
        if cmd == "timers":
            return agg.timer_values()
        if cmd == "gauges":
            return agg.gauge_values()
        kind = cmd[3:]  # delcounters -> counters
        existing = agg.stat_keys(kind)
        deleted: dict[str, list[str]] = {}
        for bucket in params:
            names = admin.existing_stats(existing, bucket)
            deleted[bucket] = names
            agg.delete(kind, names)
            existing = [n for n in existing if n not in set(names)]
        return deleted

    def _combine(self, cmd: str, params: list[str], parts: list[Any], now: float) -> str:
        if cmd == "stats":
            last = max(p["last_msg_seen"] for p in parts)
            bad = sum(p["bad_lines_seen"] for p in parts)
            uptime = round(now) - round(self._started)
            return admin.stats_answer(
                uptime, {"messages": {"last_msg_seen": round(last), "bad_lines_seen": bad}},
                round(now))
        if cmd == "counters":
            own: dict[str, float] = {}
            for mine, _ in parts:
                for k, v in mine.items():
                    own[k] = own.get(k, 0) + v
            users = in_first_seen_order([theirs for _, theirs in parts], self._first_seen)
            return admin.dump_answer({**own, **users})
        if cmd in ("timers", "gauges"):
            return admin.dump_answer(in_first_seen_order(parts, self._first_seen))
        deleted: dict[str, list[str]] = {}
        for p in parts:
            for bucket, names in p.items():
                deleted.setdefault(bucket, []).extend(names)
        return admin.delete_answer(deleted, params)
