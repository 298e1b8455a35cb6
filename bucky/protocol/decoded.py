"""The one result shape of Bucky's decoders. Sans-I/O.

Every decoder returns a `Decoded`, whatever the protocol and whatever the bytes:

- `collectd.decode(datagram)`: ValueList and Notification records;
- `metricsd.decode(datagram)`: Record commands, and the datagram's hostname in `host`;
- `statsd.parse(lines)`: StatsdMetric records, and StatsdEvent for DogStatsD events and service
  checks (recognised, never aggregated);
- `graphite.decode_plaintext(buffer)`, `decode_pickle_payload(payload)`,
  `decode_pickle_frames(buffer)`: datapoints, and for the stream decoders the incomplete tail.

Bad bytes never raise: each rejected part, line, record or frame is one ProtocolError in `errors`
(its `reason` a stable slug, used as a self-metric name), and decoding goes on past it wherever
the framing still allows. An input that cannot be trusted at all (a MetricsD header, a pickle that
is not a list, a collectd signature that does not verify) gives no records and its error.
A decoder raises only for the caller's misuse (a wrong argument type), never for the wire.
"""

from __future__ import annotations

from typing import Generic, NamedTuple, TypeVar

from bucky.errors import ProtocolError

R = TypeVar("R")


class Decoded(NamedTuple, Generic[R]):
    records: list[R]  # the good records, in wire order
    errors: list[ProtocolError]  # one per rejected piece, in wire order
    rest: bytes = b""  # stream decoders: bytes of an incomplete last line/frame, to read again
    host: str | None = None  # the sender's hostname when the protocol carries one per datagram


__all__ = ["Decoded"]
