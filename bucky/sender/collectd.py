"""Send application statistics to collectd: a drop-in for the classic Python `collectd` module.

Programs written for Eli Courtwright's PyPI `collectd` module need one change,
`from bucky.sender import collectd`:

    collectd.start_threads()
    conn = collectd.Connection(collectd_host="metrics.example.org")
    conn.requests.record("GET", count=1, seconds=0.25)   # adds; also adds to the base count
    conn.queue.set_exact(size=17)                        # sets

Rules, as in the classic module:
- `conn.<category>` is a cached `Counter`; `Connection(...)` with identical arguments is one object.
- Every interval (10 s: `SEND_INTERVAL`, or `start_threads(interval)`) the sums are sent as GAUGE
  values (plugin `any` or `plugin_name`, plugin instance `plugin_inst`, type `gauge`, type
  instance `category[-specific]-stat`) and reset to 0. A stat, once used, keeps being sent (as 0
  when idle), like the classic module.
- Names are sanitized to ASCII alphanumerics joined by single underscores (`^@#@foo%$&&*` -> `foo`);
  names that sanitize to the same text are merged (summed).
- `record` and `set_exact` are thread-safe and never raise: errors go to the `collectd` logger,
  which has only a NullHandler unless the application configures logging.

Beyond the classic module: datagrams of at most `max_packet_size` (1452) bytes with high-resolution
time parts, optional signing (security level 1) or encryption (level 2) with `username`/`password`,
`flush()` and `close()`, and a final send at interpreter exit once `start_threads()` was called.
The wire format comes from `bucky.protocol.collectd`; this module only schedules and transports.
Tests inject `clock` (timestamps) and `transport` (a callable taking `(datagram, (host, port))`) by
building their own `Reporter`.
"""

from __future__ import annotations

import atexit
import logging
import numbers
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import NamedTuple

from bucky.protocol import collectd as codec
from bucky.protocol.collectd_records import GAUGE, ValueList
from bucky.reader import parse_security_level  # one spelling of 0/None, 1/Sign, 2/Encrypt

__all__ = [
    "Connection",
    "Counter",
    "Reporter",
    "UdpTransport",
    "close",
    "flush",
    "sanitize",
    "start_threads",
]

logger = logging.getLogger("collectd")
logger.addHandler(logging.NullHandler())  # a library must not print unless the program asks

SEND_INTERVAL = 10.0  # seconds; read by start_threads() when no interval is given, as classically
MAX_PACKET_SIZE = 1452  # collectd's default MaxPacketSize (1500 - 40 IPv6 - 8 UDP)
DEFAULT_PORT = 25826
PLUGIN_NAME = "any"
PLUGIN_TYPE = "gauge"  # types.db: "gauge value:GAUGE:U:U"
MAX_NAME_LENGTH = 127  # DATA_MAX_NAME_LEN (128) minus the NUL; collectd rejects longer fields
RESOLVE_TTL = 60.0  # seconds a resolved collectd address is reused, as collectd's ResolveInterval

Address = tuple[str, int]
Transport = Callable[[bytes, Address], None]
Clock = Callable[[], float]


def _log_error(message: str, *args: object) -> None:
    """Log the current exception; logging itself must not make a caller raise either."""
    try:
        logger.error(message, *args, exc_info=True)
    except Exception:  # a broken handler must not break the application
        pass


@lru_cache(maxsize=4096)
def sanitize(name: str) -> str:
    """Alphanumeric runs joined by single underscores: `^@#@foo%$&&*` -> `foo`."""
    return re.sub(r"[^a-zA-Z0-9]+", "_", name).strip("_")


def type_instance(category: str, specific: str, stat: str) -> str:
    """`category-stat` or `category-specific-stat` from sanitized parts; empty ones are left out."""
    name = "-".join(part for part in (category, specific, stat) if part)
    return name[:MAX_NAME_LENGTH]


class Counter:
    """Sums (or exact values) of the stats of one category; `conn.<category>` creates it."""

    def __init__(self, category: str) -> None:
        self.category = category
        self._prefix = sanitize(category)
        self._lock = threading.Lock()
        # (sanitized specific or "", sanitized stat) -> value since the last snapshot
        self._values: dict[tuple[str, str], float] = {}

    def record(self, *specific: str, **stats: float) -> None:
        """Add each stat to its base count and to the count of each specific identifier."""
        try:
            names = [name for name in map(_sanitized_identifier, specific) if name]
            # dict.fromkeys: an identifier given twice (or two that sanitize alike) counts once.
            specifics = ["", *dict.fromkeys(names)]
            increments = _sanitized_stats(stats)
            with self._lock:
                for spec in specifics:
                    for stat, value in increments:
                        key = (spec, stat)
                        self._values[key] = self._values.get(key, 0.0) + value
        except Exception:  # the documented contract: never raise
            _log_error("collectd: record(%r, %r) failed", specific, stats)

    def set_exact(self, **stats: float) -> None:
        """Set each stat's base value; the next snapshot sends it, then it resets to 0."""
        try:
            values = _sanitized_stats(stats)
            with self._lock:
                for stat, value in values:
                    self._values[("", stat)] = value
        except Exception:  # the documented contract: never raise
            _log_error("collectd: set_exact(%r) failed", stats)

    def snapshot(self) -> dict[str, float]:
        """Values by type instance since the last snapshot; every value is reset to 0."""
        with self._lock:
            taken = self._values
            # Keep the keys (classic behaviour: a stat once used is sent as 0 when idle).
            self._values = dict.fromkeys(taken, 0.0)
        totals: dict[str, float] = {}
        for (spec, stat), value in taken.items():
            name = type_instance(self._prefix, spec, stat)
            totals[name] = totals.get(name, 0.0) + value
        return totals

    def __repr__(self) -> str:
        return f"Counter({self.category!r})"


def _sanitized_identifier(specific: object) -> str:
    if not isinstance(specific, str):
        raise TypeError(f"specific identifiers must be str, not {type(specific).__name__}")
    return sanitize(specific)


def _sanitized_stats(stats: Mapping[str, object]) -> list[tuple[str, float]]:
    """Validate every value before anything changes, so a bad call records nothing at all."""
    result = []
    for stat, value in stats.items():
        if not isinstance(value, numbers.Real):
            raise TypeError(f"stat {stat!r} must be a number, not {type(value).__name__}")
        name = sanitize(stat)
        if not name:
            raise ValueError(f"stat name {stat!r} has no alphanumeric character")
        result.append((name, float(value)))
    return result


class _Key(NamedTuple):
    """Everything that makes two Connection(...) calls the same connection."""

    hostname: str
    collectd_host: str
    collectd_port: int
    plugin_inst: str
    plugin_name: str
    username: str | None
    password: str | bytes | None
    security_level: int
    max_packet_size: int
    transport: Transport | None


class _Snapshot(NamedTuple):
    connection: Connection
    when: float
    interval: float
    values: dict[str, float]


# Attributes of Connection itself; any other attribute name is a Counter category.
_CONNECTION_ATTRIBUTES = frozenset(
    {"_key", "_reporter", "_counters", "_lock", "_hostname", "_collectd_addr", "_plugin_inst"}
)  # set by Connection._setup


class Connection:
    """One destination and identity; `conn.<category>` returns that category's cached Counter.

    Connection(...) with identical arguments returns the same object (per Reporter).
    """

    def __new__(
        cls,
        hostname: str | None = None,
        collectd_host: str = "localhost",
        collectd_port: int = DEFAULT_PORT,
        plugin_inst: str = "",
        plugin_name: str = PLUGIN_NAME,
        *,
        username: str | None = None,
        password: str | bytes | None = None,
        security_level: int | str = 0,
        max_packet_size: int = MAX_PACKET_SIZE,
        transport: Transport | None = None,
        reporter: Reporter | None = None,
    ) -> Connection:
        level = parse_security_level(security_level)
        if level and (not username or password is None):
            raise ValueError("signing or encryption needs a username and a password")
        key = _Key(
            hostname if hostname is not None else socket.gethostname(),
            collectd_host,
            int(collectd_port),
            plugin_inst,
            plugin_name,
            username,
            password,
            level,
            int(max_packet_size),
            transport,
        )
        return (reporter or _default_reporter)._connection(cls, key)

    def __init__(self, *args: object, **kwargs: object) -> None:
        # Python calls __init__ on every Connection(...), also when __new__ returned the existing
        # object; all set-up happens once in _setup so counters survive (the classic module lost
        # them here).
        pass

    def _setup(self, key: _Key, reporter: Reporter) -> None:
        self._key = key
        self._reporter = reporter
        self._lock = threading.Lock()
        self._counters: dict[str, Counter] = {}
        # Classic attribute names, in case a program peeked at them.
        self._hostname = key.hostname
        self._collectd_addr = (key.collectd_host, key.collectd_port)
        self._plugin_inst = key.plugin_inst

    def __getattr__(self, name: str) -> Counter:
        # Only called when normal lookup fails. Dunder and internal names must stay real
        # AttributeErrors or copy, pickle and hasattr() would receive Counters.
        if name in _CONNECTION_ATTRIBUTES or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(name)
        with self._lock:
            counter = self._counters.get(name)
            if counter is None:
                counter = self._counters[name] = Counter(name)
            return counter

    def _check(self) -> None:
        """Raise ValueError now for what the codec would refuse at every send."""
        probe = _Snapshot(self, 1.0, 1.0, {"probe": 0.0})
        self._datagrams(probe)

    def _snapshot(self) -> dict[str, float]:
        with self._lock:
            counters = list(self._counters.values())
        totals: dict[str, float] = {}
        for counter in counters:
            for name, value in counter.snapshot().items():
                totals[name] = totals.get(name, 0.0) + value  # merged sanitized names add up
        return totals

    def _records(self, snapshot: _Snapshot) -> list[ValueList]:
        key = self._key
        return [
            ValueList(
                host=key.hostname,
                plugin=key.plugin_name,
                plugin_instance=key.plugin_inst,
                type=PLUGIN_TYPE,
                type_instance=name,
                time=snapshot.when,
                interval=snapshot.interval,
                values=((GAUGE, value),),
            )
            for name, value in sorted(snapshot.values.items())
        ]

    def _datagrams(self, snapshot: _Snapshot) -> list[bytes]:
        key = self._key
        return codec.encode(
            self._records(snapshot),
            max_size=key.max_packet_size,
            security_level=key.security_level,
            username=key.username,
            password=key.password,
        )

    def __repr__(self) -> str:
        key = self._key
        return (
            f"Connection(hostname={key.hostname!r}, collectd_host={key.collectd_host!r}, "
            f"collectd_port={key.collectd_port!r}, plugin_inst={key.plugin_inst!r}, "
            f"plugin_name={key.plugin_name!r})"
        )


class UdpTransport:
    """Sends datagrams over UDP; names resolve at most every RESOLVE_TTL seconds.

    IPv4 addresses are preferred, as in the classic module (IPv4 only): "localhost" often resolves
    to ::1 first, and a datagram sent there to a collectd listening on 127.0.0.1 is silently lost.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: dict[int, socket.socket] = {}
        self._resolved: dict[Address, tuple[float, int, tuple]] = {}

    def __call__(self, datagram: bytes, address: Address) -> None:
        family, sockaddr = self._resolve(address)
        with self._lock:
            sock = self._sockets.get(family)
            if sock is None:
                sock = self._sockets[family] = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.sendto(datagram, sockaddr)
        except OSError:
            self._resolved.pop(address, None)  # resolve again next time: the address may move
            raise

    def _resolve(self, address: Address) -> tuple[int, tuple]:
        now = time.monotonic()
        cached = self._resolved.get(address)
        if cached is not None and now - cached[0] < RESOLVE_TTL:
            return cached[1], cached[2]
        infos = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_DGRAM)
        infos.sort(key=lambda info: info[0] != socket.AF_INET)  # stable: IPv4 first
        family, _, _, _, sockaddr = infos[0]
        self._resolved[address] = (now, family, sockaddr)
        return family, sockaddr

    def close(self) -> None:
        with self._lock:
            sockets, self._sockets = list(self._sockets.values()), {}
        for sock in sockets:
            sock.close()


class Reporter:
    """Owns connections, the snapshot and sending threads, and the send queue.

    The module-level functions use one default Reporter; tests build their own with a fake clock
    and transport and call `flush()` instead of waiting for the threads.
    """

    def __init__(
        self,
        interval: float | None = None,
        clock: Clock = time.time,
        transport: Transport | None = None,
    ) -> None:
        self.interval = interval  # None: the module's SEND_INTERVAL when the threads start
        self.clock = clock
        self.transport: Transport = transport if transport is not None else UdpTransport()
        self._registry_lock = threading.Lock()
        self._connections: dict[_Key, Connection] = {}
        self._pending: deque[_Snapshot] = deque()
        self._pending_lock = threading.Lock()
        # Held while draining *and* sending, so snapshots go out in the order they were taken:
        # collectd drops a value older than the last one it saw for the same identifier.
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._closed = False

    def _connection(self, cls: type[Connection], key: _Key) -> Connection:
        with self._registry_lock:
            conn = self._connections.get(key)
            if conn is None:
                conn = object.__new__(cls)
                conn._setup(key, self)
                conn._check()  # a bad hostname or credential raises here, not at every send
                self._connections[key] = conn
            return conn

    @property
    def connections(self) -> list[Connection]:
        with self._registry_lock:
            return list(self._connections.values())

    def _interval(self) -> float:
        return float(self.interval if self.interval is not None else SEND_INTERVAL)

    def take_snapshots(self) -> int:
        """Queue the current values of every connection that has any; returns how many."""
        when = self.clock()
        interval = self._interval()
        taken = 0
        for conn in self.connections:
            values = conn._snapshot()
            if values:
                with self._pending_lock:
                    self._pending.append(_Snapshot(conn, when, interval, values))
                taken += 1
        if taken:
            self._wake.set()
        return taken

    def send_pending(self) -> int:
        """Encode and send every queued snapshot in order; returns the number of datagrams."""
        sent = 0
        with self._send_lock:
            while True:
                with self._pending_lock:
                    if not self._pending:
                        return sent
                    snapshot = self._pending.popleft()
                sent += self._send(snapshot)

    def _send(self, snapshot: _Snapshot) -> int:
        conn = snapshot.connection
        try:
            datagrams = conn._datagrams(snapshot)
        except Exception:  # e.g. a hostname too long for the protocol
            _log_error("collectd: cannot encode the values of %r", conn)
            return 0
        transport = conn._key.transport or self.transport
        sent = 0
        for datagram in datagrams:
            try:
                transport(datagram, conn._collectd_addr)
                sent += 1
            except Exception:  # a lost datagram must not stop the others
                _log_error("collectd: cannot send to %s:%s", *conn._collectd_addr)
        return sent

    def flush(self) -> int:
        """Snapshot every connection now and send; returns the number of datagrams sent."""
        try:
            self.take_snapshots()
            return self.send_pending()
        except Exception:  # flush runs at exit too; it must not raise
            _log_error("collectd: flush failed")
            return 0

    def start_threads(self) -> None:
        """Start the snapshot and sending daemon threads; a second call raises RuntimeError."""
        with self._registry_lock:
            if self._started:
                raise RuntimeError("collectd.start_threads() was already called")
            self._started = True
        self._threads = [
            threading.Thread(target=self._snapshot_loop, name="collectd-snapshot", daemon=True),
            threading.Thread(target=self._send_loop, name="collectd-send", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _snapshot_loop(self) -> None:
        interval = self._interval()
        due = time.monotonic() + interval
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            try:
                self.take_snapshots()
            except Exception:  # the thread must survive anything
                _log_error("collectd: snapshot failed")
            # Fixed cadence without drift; after a stall skip the missed ticks instead of bursting.
            due += interval
            now = time.monotonic()
            if due <= now:
                due = now + interval

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            try:
                self.send_pending()
            except Exception:  # the thread must survive anything
                _log_error("collectd: sending failed")

    def close(self, timeout: float = 5.0) -> None:
        """Stop the threads, send what was recorded since the last snapshot, close sockets."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self.flush()
        close_transport = getattr(self.transport, "close", None)
        if close_transport is not None:
            try:
                close_transport()
            except Exception:  # nothing useful to do about it at exit
                _log_error("collectd: closing the transport failed")


_default_reporter = Reporter()


def start_threads(interval: float | None = None) -> None:
    """Start sending every `interval` (default SEND_INTERVAL) seconds, and the rest at exit.

    Raises RuntimeError when called a second time, as the classic module did.
    """
    if interval is not None:
        _default_reporter.interval = interval
    _default_reporter.start_threads()
    atexit.register(_default_reporter.close)


def flush() -> int:
    """Send everything recorded so far now; returns the number of datagrams sent."""
    return _default_reporter.flush()


def close() -> None:
    """Stop the threads and send what is left; called at exit after start_threads()."""
    _default_reporter.close()
