"""The contract between an output process's loop and one output client, and what clients share.

Each output runs in its own process, whose loop calls `send(batch, now)`, `poll(now)` (non-blocking
progress), `flush(deadline)` at shutdown and `close()`. Rules for every client:

- Clients are built inside their output process by the factory `build_outputs` names; the
  constructor does no I/O, sockets and threads appear on the first `poll`/`send`.
- `send` and `poll` never wait on the network: sockets are non-blocking, host names resolve in a
  daemon thread (numeric addresses at once), and a resolution failure counts as a failed attempt.
- Everything lost is counted in `counters` (cumulative; the process turns them into self-metrics).
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from operator import getitem, itemgetter
from typing import Any

from bucky.names import NameRules
from bucky.protocol.graphite import clean_path

IDLE_POLL = 1.0  # nothing to do until data arrives
BUSY_POLL = 0.01  # socket full or connect in progress: look again soon, cheaply
PATH_CACHE_LIMIT = 250_000  # new paths per generation; two generations are kept
PATH_CACHE_GENERATION = 60.0  # seconds

_HOST = itemgetter(0)
_NAME = itemgetter(1)


class OutputClient:
    """The contract between an output process's loop and one destination."""

    name: str = "output"

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()

    def send(self, samples: list[tuple], now: float, front: bool = False) -> None:
        """Take a batch; never blocks. `front`: self-metrics, to go ahead of queued data."""
        raise NotImplementedError

    def notify(self, notification: Any) -> None:
        """A collectd Notification record; only custom clients do something with it."""

    def poll(self, now: float) -> float:
        """Non-blocking progress; returns seconds until it wants to be polled again."""
        return IDLE_POLL

    def pending(self) -> int:
        """Datapoints held, not yet written."""
        return 0

    def flush(self, deadline: float) -> bool:
        """Block until everything is written or `deadline` (time.monotonic()) passes."""
        return True

    def close(self) -> None:
        """Release sockets; whatever is still pending is counted as dropped."""



class _PathCache:
    """(host, name) -> cleaned Graphite path + `suffix`, computed once per distinct pair.

    Two levels, host then name, both dicts filled by `__missing__`: looking up a whole batch
    is then three C-level `map`s with no tuple built per sample (the hot path of the relay).
    Two generations: every `generation` seconds (or when PATH_CACHE_LIMIT new paths were
    computed) the current tables become the previous ones and a miss looks there before
    computing. Names still in use carry over; names gone quiet are forgotten after two
    generations, so the cache (and the process) shrinks again after a burst of cardinality.
    """

    def __init__(self, rules: NameRules, suffix: str = "", *,
                 clock: Callable[[], float] = time.monotonic,
                 generation: float = PATH_CACHE_GENERATION) -> None:
        self._rules = rules
        self._suffix = suffix
        self._clock = clock
        self._generation = generation
        self._hosts = _HostPaths(self)
        self._previous: dict[str | None, dict[str, str]] = {}
        self._rotate_at = clock() + generation
        self.size = 0

    def path(self, host: str | None, name: str) -> str:
        return self._hosts[host][name]

    def for_batch(self, batch: Sequence[tuple]) -> list[str]:
        if self._clock() >= self._rotate_at:
            self._rotate()
        return list(map(getitem, map(self._hosts.__getitem__, map(_HOST, batch)),
                        map(_NAME, batch)))

    def _rotate(self) -> None:
        self._previous = self._hosts
        self._hosts = _HostPaths(self)
        self.size = 0
        self._rotate_at = self._clock() + self._generation

    def _compute(self, host: str | None, name: str) -> str:
        older = self._previous.get(host)
        if older is not None:
            path = older.get(name)
            if path is not None:
                return path
        self.size += 1
        if self.size > PATH_CACHE_LIMIT:  # names churn: stay bounded
            self._rotate()
        return clean_path(self._rules.statname(host, name)) + self._suffix


class _HostPaths(dict):
    def __init__(self, cache: _PathCache) -> None:
        super().__init__()
        self._cache = cache

    def __missing__(self, host: str | None) -> _NamePaths:
        names = self[host] = _NamePaths(self._cache, host)
        return names


class _NamePaths(dict):
    def __init__(self, cache: _PathCache, host: str | None) -> None:
        super().__init__()
        self._cache = cache
        self._host = host

    def __missing__(self, name: str) -> str:
        path = self[name] = self._cache._compute(self._host, name)
        return path


class _Resolver:
    """getaddrinfo without blocking the caller: numeric hosts at once, names in a daemon thread.

    A daemon thread (not an executor) so a hung DNS lookup can never hold up process exit. One
    lookup at a time; a caller that finds it still running simply asks again later.
    """

    def __init__(self, host: str, port: int, socktype: int) -> None:
        self.host = host
        self.port = port
        self._socktype = socktype
        self._thread: threading.Thread | None = None
        self._outcome: tuple[list, BaseException | None] | None = None

    def lookup(self) -> list | None:
        """Addresses, or None while a lookup runs; raises OSError when the name does not resolve."""
        if self._thread is not None:
            if self._thread.is_alive():
                return None
            self._thread = None
            outcome, self._outcome = self._outcome, None
            if outcome is not None:
                infos, error = outcome
                if error is not None:
                    raise error
                return infos
        try:
            return socket.getaddrinfo(self.host, self.port, 0, self._socktype, 0,
                                      socket.AI_NUMERICHOST)
        except (socket.gaierror, UnicodeError):
            pass
        self._thread = threading.Thread(target=self._run, name=f"resolve {self.host}", daemon=True)
        self._thread.start()
        return None

    def _run(self) -> None:
        try:
            infos = socket.getaddrinfo(self.host, self.port, 0, self._socktype)
            self._outcome = (infos, None)
        except (OSError, UnicodeError) as exc:
            self._outcome = ([], OSError(f"cannot resolve {self.host!r}: {exc}"))




def _wait_writable(sock: socket.socket, timeout: float) -> bool:
    """poll(2) rather than select(2): no FD_SETSIZE limit on the descriptor number."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLOUT)
    return bool(poller.poll(max(0, int(timeout * 1000))))


def format_address(address: tuple) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
