"""The input contract: what an input process's loop calls on its handler, and the sink it writes to.

Every input (bucky/inputs/*.py) is an `InputHandler`; the loop that drives it is
bucky.daemon.input_runner.InputRunner, which owns the sockets, the clock and the sink.

Life of a handler, all in one process and one thread:

1. ``Handler(cfg, sink, state)``: builds itself from the config. `state` is None, or what the
   predecessor's `carry_state()` returned (a config reload). Problems with the config raise
   ConfigError (the daemon halts with its message); no socket is opened here.
2. Then, in any order, as often as the loop wants:
   - ``handle(data, addr, now)``: one UDP datagram from `addr`;
   - for every TCP listener of the input (ChildSpec.streams, `(kind, listener)` pairs), the loop
     asks ``open_stream(kind, addr)`` for a `Stream` per accepted connection and feeds it the
     bytes as they come; the stream decides its framing and bounds, and tells the loop to
     disconnect a client that breaks the protocol. The loop only accepts, reads, feeds and
     disconnects (bucky.inputs.streams.LineStream: StatsD lines; bucky.inputs.carbon: Graphite
     lines and pickle frames); a stream that answers (an `AnsweringStream`: the StatsD
     management port, bucky.inputs.statsd_admin) also says what to write back, which the loop
     writes without blocking, and when to close the connection;
   - ``deliver(items, now)``: records other inputs sent to this one (the plugin host gets the
     collectd value lists and notifications this way);
   - ``tick(now)``: periodic work (flushes, expiry, file reloads), several times a second.
3. On a reload: ``carry_state()`` (what the successor needs: pending aggregates, counters), then
   ``close(now)``. On a stop: ``close(now)`` only. **close() is always called**, exactly once, so
   shutdown work (plugin shutdown callbacks, saving files) runs on reloads too; after
   carry_state() it must not emit what it handed over (the successor owns that).

Rules for every handler: `now` is wall-clock epoch seconds from the caller, used only for the
timestamps written; `mono` (time.monotonic() from the caller, None in tests that drive a handler
with one clock) is what every schedule runs on (flushes, expiry, rate limits), so a step of the
system clock never stops or bursts them. No handler reads a clock for timestamps; no sockets
and no threads of its own; no method raises, whatever the bytes (bad input is counted in
`counters` by reason and logged rate-limited; the loop still guards each call and counts
`errors.handler` if one does). `counters` is cumulative; the loop turns it into self-metrics.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Sink(Protocol):
    """Where a handler writes: bucky.daemon.sink.BatchSink in the daemon, a list-like in tests.

    Samples are plain tuples (host, name, value, timestamp); see bucky.sample. Nothing here
    blocks or raises: a full downstream queue drops and counts.
    """

    #: True when someone downstream wants decoded collectd records (`records`).
    wants_records: bool

    def extend(self, samples: list[tuple]) -> None:
        """Queue samples for the processor/outputs."""
        ...

    def append(self, sample: tuple) -> None:
        """Queue one sample."""
        ...

    def notify(self, record: object) -> None:
        """A collectd Notification: to the outputs' notify() and record consumers."""
        ...

    def records(self, value_lists: list) -> None:
        """Decoded collectd value lists, for the plugin host's write callbacks."""
        ...


class Stream(Protocol):
    """One TCP connection's decoder, made by `InputHandler.open_stream`. Holds at most a bounded
    amount of unframed bytes."""

    #: Complete lines or frames read so far (good or bad). Read by the loop only when the input
    #: has an `idle_timeout`: a connection where it does not move for that long is closed.
    completed: int

    def feed(self, data: bytes, now: float, mono: float | None = None) -> bool:
        """Bytes read from the connection; False: disconnect this client (counted by reason)."""
        ...

    def close(self, now: float) -> None:
        """The connection ended (either side); a partial line or frame is dropped and counted."""
        ...


@runtime_checkable
class AnsweringStream(Stream, Protocol):
    """A stream that writes back to its client (the StatsD management port). The loop asks
    `outgoing()` after each read and every loop turn, so answers that come later go out too."""

    def outgoing(self) -> tuple[bytes, bool]:
        """What to write to the client now (b"": nothing), and whether to close the connection
        once that is written (after `quit`; at once, with nothing to write, when the client broke
        a bound: the stream counted why)."""
        ...

    def sent(self, n: int) -> None:
        """The first `n` bytes of what outgoing() gave were written."""
        ...


class InputHandler(Protocol):
    """The contract above. Inputs subclass it explicitly: the methods an input has no use for
    keep these defaults (do nothing; no TCP listener)."""

    name: str
    counters: Counter[str]
    #: TCP connections the loop keeps open at once, over all listeners; more are refused.
    max_tcp_connections: int = 1024
    #: ... and per listener, so that one port cannot starve another; None: no bound of its own.
    max_tcp_connections_per_listener: int | None = None
    #: Seconds a TCP connection may go without completing a line or frame before the loop closes
    #: it (bucky.daemon.tcp_limits); None: never.
    idle_timeout: float | None = None

    def handle(self, data: bytes, addr: Any, now: float, mono: float | None = None) -> None:
        """One datagram. Never raises."""

    def extra_fds(self) -> list[tuple[int, Any]]:
        """(file descriptor, callback(fd)) pairs the loop also watches for reading (e.g. the
        StatsD workers' mesh channels)."""
        return []

    def open_stream(self, kind: str, addr: Any) -> Stream:
        """A decoder for a new connection on the listener of `kind` (ChildSpec.streams)."""
        raise NotImplementedError(f"{self.name} has no {kind!r} TCP listener")

    def deliver(self, items: list, now: float, mono: float | None = None) -> None:
        """Records other inputs sent to this one. Never raises."""

    def tick(self, now: float, mono: float | None = None) -> None:
        """Periodic work. Never raises."""

    def carry_state(self) -> object:
        """State for the successor on a reload (picklable); close() follows."""
        return None

    def close(self, now: float, mono: float | None = None) -> None:
        """Final work: flush what is pending (unless handed over by carry_state), run shutdown
        hooks, save files. Always called once, on a stop and on a reload."""
