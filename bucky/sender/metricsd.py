"""MetricsD sender for applications: counters, gauges, histograms, meters and timers over UDP.

    with MetricsdClient("metrics.example.net") as m:
        m.counter("jobs.done")
        m.timer("jobs.duration", 0.25)

Formatting is separate from transport: `Packer` turns records into datagrams of at most
`max_size` bytes with bucky.protocol.metricsd's encoder; `MetricsdClient` only owns the socket.
Records are buffered and sent when the next one would not fit, on `flush()`, and on `close()`
(or leaving the `with` block): call `flush()` after a burst, or values wait in the buffer.
Sending never raises (metrics must not break the application); datagrams that could not be sent
are counted in `dropped`. Bad names or values do raise (ValueError/TypeError) at the call.
Not thread-safe: use one client per thread.
"""

from __future__ import annotations

import socket
from types import TracebackType

from bucky.protocol.metricsd import Action, Kind, Record, encode_header, encode_record

DEFAULT_PORT = 23632
DEFAULT_MAX_SIZE = 1452  # 1500-byte Ethernet MTU less IPv6 (40) and UDP (8) headers


class Packer:
    """Packs records into datagrams of at most `max_size` bytes, each with the same header."""

    def __init__(self, hostname: str | None, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self._header = encode_header(hostname)
        self.max_size = max_size
        if len(self._header) >= max_size:
            raise ValueError(f"hostname header alone is {len(self._header)} bytes; max {max_size}")
        self._parts: list[bytes] = []
        self._size = len(self._header)

    def __len__(self) -> int:
        """Number of records waiting for the next datagram."""
        return len(self._parts)

    def add(self, record: Record) -> bytes | None:
        """Buffer a record; returns the finished datagram when this record did not fit in it."""
        blob = encode_record(record)
        if len(self._header) + len(blob) > self.max_size:
            raise ValueError(
                f"record for {record.name!r} needs {len(self._header) + len(blob)} bytes "
                f"with the header; max_size is {self.max_size}"
            )
        full = self.take() if self._size + len(blob) > self.max_size else None
        self._parts.append(blob)
        self._size += len(blob)
        return full

    def take(self) -> bytes | None:
        """The datagram of the buffered records (None if there are none); empties the buffer."""
        if not self._parts:
            return None
        datagram = self._header + b"".join(self._parts)
        self._parts = []
        self._size = len(self._header)
        return datagram


def _kind(kind: Kind | str) -> Kind:
    if isinstance(kind, str):
        try:
            return Kind[kind.upper()]
        except KeyError:
            names = ", ".join(k.name.lower() for k in Kind)
            raise ValueError(f"unknown metric kind {kind!r}; one of {names}") from None
    return Kind(kind)


class MetricsdClient:
    """Sends MetricsD records to `host`:`port`.

    `hostname` is sent in every datagram (Bucky prefixes names with it, reversed); None means
    `socket.gethostname()`, "" sends no hostname (names are used as they are).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        hostname: str | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self._packer = Packer(socket.gethostname() if hostname is None else hostname, max_size)
        self._destination = (host, port)
        self._sock: socket.socket | None = None
        self._address: tuple | None = None  # resolved on first send, retried after a failure
        self.dropped = 0  # datagrams that could not be sent
        self.sent = 0  # datagrams sent

    # -- the metric calls -----------------------------------------------------------------------

    def counter(self, name: str, value: int | float = 1) -> None:
        """Add `value` (may be negative) to the counter `name`."""
        self._add(Record(Kind.COUNTER, Action.UPDATE, name, value))

    def gauge(self, name: str, value: int | float) -> None:
        """Set gauge `name` to `value`."""
        self._add(Record(Kind.GAUGE, Action.UPDATE, name, value))

    def histogram(self, name: str, value: int | float) -> None:
        """Record one value in histogram `name`."""
        self._add(Record(Kind.HISTOGRAM, Action.UPDATE, name, value))

    def meter(self, name: str, value: int | float = 1) -> None:
        """Mark `value` events on meter `name`."""
        self._add(Record(Kind.METER, Action.UPDATE, name, value))

    def timer(self, name: str, seconds: int | float) -> None:
        """Record one call of `name` that took `seconds`."""
        self._add(Record(Kind.TIMER, Action.UPDATE, name, seconds))

    def clear(self, kind: Kind | str, name: str) -> None:
        """Reset metric `name` of `kind` ("counter", "gauge", ... or a Kind) to its empty state."""
        self._add(Record(_kind(kind), Action.CLEAR, name))

    def delete(self, kind: Kind | str, name: str) -> None:
        """Remove metric `name` of `kind`: Bucky stops sending it."""
        self._add(Record(_kind(kind), Action.DELETE, name))

    # -- transport ------------------------------------------------------------------------------

    def flush(self) -> None:
        """Send what is buffered."""
        datagram = self._packer.take()
        if datagram is not None:
            self._send(datagram)

    def close(self) -> None:
        """Flush, then close the socket. The client may be used again (it reopens)."""
        self.flush()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> MetricsdClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _add(self, record: Record) -> None:
        full = self._packer.add(record)
        if full is not None:
            self._send(full)

    def _send(self, datagram: bytes) -> None:
        try:
            if self._sock is None or self._address is None:
                host, port = self._destination
                family, _, _, _, address = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0]
                self._sock = socket.socket(family, socket.SOCK_DGRAM)
                self._address = address
            self._sock.sendto(datagram, self._address)
        except OSError:  # unresolvable, unreachable, buffer full: the metric is lost, not the app
            self.dropped += 1
            return
        self.sent += 1
