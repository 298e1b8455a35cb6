"""N StatsD workers in one test process, wired by real channels as the supervisor wires them.

Datagrams go to the first worker (it owns the UDP socket); TCP lines to any worker; `pump()`
moves what the workers route to each other until nothing is left in flight.
"""

from __future__ import annotations

import select
from typing import Any

from bucky.daemon.channels import Channel
from bucky.inputs.statsd_workers import StatsdMesh, StatsdWorker


class ListSink:
    def __init__(self) -> None:
        self.batches: list[list[tuple]] = []

    def extend(self, samples: list[tuple]) -> None:
        self.batches.append(list(samples))

    def append(self, sample: tuple) -> None:
        self.batches.append([sample])

    def samples(self) -> list[tuple]:
        return [s for batch in self.batches for s in batch]


class Workers:
    def __init__(self, cfg: Any, n: int, states: list | None = None) -> None:
        self.n = n
        self.now = 0.0  # the clock every worker reads; set by handle/pump/tick
        titles = [f"w{i}" for i in range(n)]
        self.channels = [[Channel(f"{a}->{b}") if a != b else None for b in titles]
                         for a in titles]
        self.sinks = [ListSink() for _ in range(n)]
        state = {"statsd-workers": states} if states else None
        self.workers = []
        for i in range(n):
            mesh = None
            if n > 1:
                inp = [self.channels[j][i] for j in range(n) if j != i]
                mesh = StatsdMesh(i, n, self.channels[i], inp)  # type: ignore[arg-type]
            self.workers.append(StatsdWorker(cfg, self.sinks[i], state, mesh,
                                             clock=lambda: self.now, mono_clock=lambda: self.now))
        self._turn = 0

    def handle(self, datagram: bytes, now: float) -> None:
        """A datagram, read by the first worker (the one that owns the UDP socket)."""
        self.now = now
        self.workers[0].handle(datagram, ("127.0.0.1", 40000), now)

    def handle_tcp(self, lines: list[bytes], now: float) -> None:
        """Lines of a TCP connection, dealt to the workers in turn (each accepts clients)."""
        self.now = now
        self.workers[self._turn % self.n].handle_lines(lines, now)
        self._turn += 1

    def pump(self, now: float, rounds: int = 20) -> None:
        self.now = now
        for _ in range(rounds):
            moved = False
            for w in self.workers:
                w._send_all()
            for w in self.workers:
                fds = dict(w.extra_fds())
                if not fds:
                    continue
                ready, _, _ = select.select(list(fds), [], [], 0.01)
                for fd in ready:
                    fds[fd](fd)
                    moved = True
            if not moved:
                return

    def tick(self, now: float) -> None:
        self.now = now
        for w in self.workers:
            w.tick(now)
        self.pump(now)
        for w in self.workers:
            w.tick(now)  # worker 0 emits the merged own statistics once all reported

    def samples(self) -> list[tuple]:
        return [s for sink in self.sinks for s in sink.samples()]

    def close(self) -> None:
        for row in self.channels:
            for ch in row:
                if ch is not None:
                    ch.close()
