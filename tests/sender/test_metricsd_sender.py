"""MetricsD sender: packing into datagrams up to max_size, and delivery to a real UDP socket."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from bucky.errors import EncodeError
from bucky.protocol.decoded import Decoded
from bucky.protocol.metricsd import (
    Action,
    Kind,
    Record,
    decode,
    encode_header,
    encode_record,
)
from bucky.sender.metricsd import MetricsdClient, Packer


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5.0)  # a lost datagram fails the test instead of hanging it
    yield sock
    sock.close()


def receive_all(sock: socket.socket, count: int) -> list[bytes]:
    return [sock.recv(65535) for _ in range(count)]


def nothing_more(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        sock.recv(65535)
    except TimeoutError:
        return True
    return False


def test_packer_splits_at_max_size_and_keeps_order() -> None:
    packer = Packer("host.example", max_size=100)
    records = [Record(Kind.COUNTER, Action.UPDATE, f"metric.{i:03}", i) for i in range(50)]
    datagrams = [d for d in (packer.add(r) for r in records) if d is not None]
    datagrams.append(packer.take())
    assert packer.take() is None and len(packer) == 0
    assert all(len(d) <= 100 for d in datagrams)
    header, per_record = len(encode_header("host.example")), len(encode_record(records[0]))
    assert all(len(d) > 100 - per_record for d in datagrams[:-1])  # full: the next did not fit
    assert len(datagrams) == -(-50 // ((100 - header) // per_record))
    decoded = [decode(d) for d in datagrams]
    assert {d.host for d in decoded} == {"host.example"}
    assert [r for d in decoded for r in d.records] == records


def test_a_record_that_can_never_fit_raises() -> None:
    packer = Packer("h", max_size=40)
    with pytest.raises(ValueError, match="max_size"):
        packer.add(Record(Kind.GAUGE, Action.UPDATE, "x" * 40, 1))
    with pytest.raises(ValueError):
        Packer("h" * 50, max_size=40)


def test_client_sends_decodable_datagrams(receiver: socket.socket) -> None:
    port = receiver.getsockname()[1]
    client = MetricsdClient("127.0.0.1", port, hostname="app1.example", max_size=200)
    for i in range(20):
        client.counter("jobs.done")
        client.gauge("queue.depth", i)
        client.histogram("payload.bytes", 1000 + i)
        client.meter("requests", 3)
        client.timer("job.seconds", 0.125)
    client.clear("histogram", "payload.bytes")
    client.delete(Kind.GAUGE, "queue.depth")
    client.close()
    datagrams = receive_all(receiver, client.sent)
    assert client.dropped == 0 and client.sent > 1
    assert all(len(d) <= 200 for d in datagrams)
    decoded = [decode(d) for d in datagrams]
    assert all(d.errors == [] and d.host == "app1.example" for d in decoded)
    records = [r for d in decoded for r in d.records]
    assert len(records) == 102
    assert records[:5] == [
        Record(Kind.COUNTER, Action.UPDATE, "jobs.done", 1),
        Record(Kind.GAUGE, Action.UPDATE, "queue.depth", 0),
        Record(Kind.HISTOGRAM, Action.UPDATE, "payload.bytes", 1000),
        Record(Kind.METER, Action.UPDATE, "requests", 3),
        Record(Kind.TIMER, Action.UPDATE, "job.seconds", 0.125),
    ]
    assert records[-2:] == [
        Record(Kind.HISTOGRAM, Action.CLEAR, "payload.bytes"),
        Record(Kind.GAUGE, Action.DELETE, "queue.depth"),
    ]
    assert nothing_more(receiver)


def test_context_manager_flushes_on_exit(receiver: socket.socket) -> None:
    port = receiver.getsockname()[1]
    with MetricsdClient(port=port, hostname="") as client:
        client.counter("a", 2)
        assert nothing_more(receiver)  # buffered until flush/close
    assert decode(receiver.recv(65535)) == Decoded(
        [Record(Kind.COUNTER, Action.UPDATE, "a", 2)], [], host=None
    )


def test_default_hostname_is_this_host(receiver: socket.socket) -> None:
    with MetricsdClient(port=receiver.getsockname()[1]) as client:
        client.meter("m")
    assert decode(receiver.recv(65535)).host == socket.gethostname()


def test_flush_sends_what_is_buffered_and_the_client_can_be_reused(
    receiver: socket.socket,
) -> None:
    client = MetricsdClient(port=receiver.getsockname()[1], hostname="h")
    client.flush()  # nothing buffered: nothing sent
    assert client.sent == 0
    client.gauge("g", 1.5)
    client.flush()
    client.close()
    client.gauge("g", 2.5)  # reopens
    client.close()
    values = [decode(d).records[0].value for d in receive_all(receiver, 2)]
    assert values == [1.5, 2.5]


def test_send_failures_are_counted_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object, **kwargs: object) -> list:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    client = MetricsdClient("metrics.invalid", hostname="h")
    client.counter("c")
    client.close()
    assert (client.sent, client.dropped) == (0, 1)


def test_bad_calls_raise_at_the_call() -> None:
    client = MetricsdClient(hostname="h")
    with pytest.raises(ValueError):
        client.counter("has space")
    with pytest.raises(ValueError):
        client.gauge("g", float("nan"))
    with pytest.raises(EncodeError, match="int or float"):  # also a ValueError
        client.gauge("g", "1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown metric kind"):
        client.clear("sum", "x")
    assert len(client._packer) == 0
