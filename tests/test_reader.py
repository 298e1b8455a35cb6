"""Tests of bucky.reader: unicast on 127.0.0.1 and ::1, multicast joins on the loopback interface
(skipped with the kernel's reason when it refuses), the classic object API, security settings.

Datagrams come from the shared collectd captures (tests/data/dump/) or from the codec's encoder.
Nothing is ever sent off-box: multicast is sent with TTL 0 on the loopback interface only.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bucky.dump import read_pkts
from bucky.protocol import collectd as codec
from bucky.protocol.collectd_records import COUNTER, DERIVE, FAILURE, GAUGE, ValueList
from bucky.protocol.collectd_records import Notification as NotificationRecord
from bucky.reader import (
    DEFAULT_IPV4_GROUP,
    DEFAULT_IPV6_GROUP,
    Decoder,
    Notification,
    Reader,
    Values,
)

DATA = Path(__file__).resolve().parent / "data" / "dump"
TIMEOUT = 10.0  # seconds any receive may wait

SWAP = ValueList(
    "localhost", "swap", "", "swap", "used", 1237749608.0, 10.0, ((GAUGE, 48082944.0),)
)


def _pkts(name: str) -> list[bytes]:
    with open(DATA / f"{name}.pkts", "rb") as capture:
        return list(read_pkts(capture))


def _expected(name: str) -> dict:
    return json.loads((DATA / f"{name}.expected.json").read_text())


def _sender(family: int) -> socket.socket:
    return socket.socket(family, socket.SOCK_DGRAM)


@pytest.fixture
def reader_v4() -> Iterator[Reader]:
    with Reader("127.0.0.1", 0) as reader:
        yield reader


def test_str_reads_like_the_classic_reader():
    # As the classic reader: every non-empty part joined with "/"; `source` is collectd's
    # own identifier (host/plugin[-pi]/type[-ti]).
    assert str(Values(SWAP)) == "[1237749608] localhost/swap/swap/used [(1, 48082944.0)]"
    assert Values(SWAP).source == "localhost/swap/swap-used"
    with_instances = SWAP._replace(plugin_instance="0", type_instance="", time=1.9)
    assert str(Values(with_instances)) == "[1] localhost/swap/0/swap [(1, 48082944.0)]"
    note = NotificationRecord("web", "disk", "sda", "disk", "", 1700000000.5, FAILURE, "broken")
    assert str(Notification(note)) == "[1700000000] web/disk/sda/disk [failure] broken"


def test_values_attributes_and_classic_aliases():
    record = ValueList(
        "web", "interface", "eth0", "if_octets", "", 5.5, 10.0, ((DERIVE, 1), (DERIVE, 2))
    )
    values = Values(record)
    assert values == [(DERIVE, 1), (DERIVE, 2)]  # a list of (ds_type, value), as classically
    assert (values.host, values.plugin, values.type, values.time, values.interval) == (
        "web",
        "interface",
        "if_octets",
        5.5,
        10.0,
    )
    assert values.plugin_instance == values.plugininstance == "eth0"
    assert values.type_instance == values.typeinstance == ""
    assert values.dstypes == [DERIVE, DERIVE]
    assert values.dstype_names == ["derive", "derive"]
    assert values.values == [1, 2]
    assert values.source == "web/interface-eth0/if_octets"
    assert values.security == "none"


def _encode(*records) -> bytes:
    (datagram,) = codec.encode(records)
    return datagram


def test_unicast_ipv4_receive_decode_interpret(reader_v4):
    counter = ValueList("h", "p", "", "counter", "c", 100.0, 1.0, ((COUNTER, 2**64 - 1),))
    with _sender(socket.AF_INET) as sender:
        sender.sendto(_encode(SWAP, counter), ("127.0.0.1", reader_v4.port))
        items = list(reader_v4.interpret())  # receives first
    assert [str(item) for item in items] == [
        "[1237749608] localhost/swap/swap/used [(1, 48082944.0)]",
        "[100] h/p/counter/c [(0, 18446744073709551615)]",
    ]
    assert reader_v4.errors == []
    assert reader_v4.last_address[0] == "127.0.0.1"


def test_unicast_ipv6():
    try:
        reader = Reader("::1", 0)
    except OSError as err:
        pytest.skip(f"no IPv6 loopback here: {err}")
    with reader, _sender(socket.AF_INET6) as sender:
        sender.sendto(_encode(SWAP), ("::1", reader.port))
        decoded = reader.decode(reader.receive(timeout=TIMEOUT))
    assert decoded.records == [SWAP]


def test_receive_times_out(reader_v4):
    with pytest.raises(TimeoutError):
        reader_v4.receive(timeout=0.05)


def test_a_64_kib_datagram_arrives_whole(reader_v4):
    # collectd senders may use MaxPacketSize up to 65535; one part holds at most 7281 values.
    big = ValueList(
        "h", "p", "", "gauge", "", 1.0, 1.0, tuple((GAUGE, float(i)) for i in range(7000))
    )
    (datagram,) = codec.encode([big], max_size=65507)
    assert len(datagram) > 60000
    with _sender(socket.AF_INET) as sender:
        sender.sendto(datagram, ("127.0.0.1", reader_v4.port))
        (values,) = reader_v4.interpret(reader_v4.receive(timeout=TIMEOUT))
    assert len(values) == 7000 and values[-1] == (GAUGE, 6999.0)


def test_captured_notifications_and_values():
    decoder = Decoder()
    items = [item for datagram in _pkts("notifications") for item in decoder.interpret(datagram)]
    expected = _expected("notifications")["decoded"]
    assert len(items) == len(expected) == 7
    for item, want in zip(items, expected, strict=True):
        assert item.host == want["host"]
        assert (item.plugin, item.plugininstance) == (want["plugin"], want["plugin_instance"])
        assert (item.type, item.typeinstance) == (want["type"], want["type_instance"])
        assert item.time == want["time"]
        if want["kind"] == "notification":
            assert isinstance(item, Notification)
            assert (item.severity_name, item.message) == (want["severity"], want["message"])
        else:
            assert isinstance(item, Values)
            assert item.values == want["values"]


@pytest.mark.parametrize(
    ("name", "level"), [("alltypes-signed", "Sign"), ("alltypes-encrypted", 2)]
)
def test_signed_and_encrypted_captures_with_an_auth_file(name, level):
    decoder = Decoder(level, DATA / f"{name}.auth")
    expected = _expected(name)
    items = [item for datagram in _pkts(name) for item in decoder.interpret(datagram)]
    assert len(items) == len(expected["decoded"])
    assert {(item.security, item.username) for item in items} == {
        (expected["decoded"][0]["security"], expected["username"])
    }


def test_security_levels_reject_what_they_must():
    plain = _pkts("alltypes")[0]
    signed = _pkts("alltypes-signed")[0]
    sign_only = Decoder("sign", DATA / "alltypes-signed.auth")
    assert list(sign_only.interpret(plain)) == []
    assert [e.reason for e in sign_only.errors] == ["unsigned-data-ignored"]
    encrypt_only = Decoder("encrypt", DATA / "alltypes-signed.auth")
    assert list(encrypt_only.interpret(signed)) == []
    assert encrypt_only.errors
    wrong = Decoder("sign", credentials={"vecsigner": b"not the password"})
    assert list(wrong.interpret(signed)) == [] and wrong.errors
    with pytest.raises(ValueError, match="auth file"):
        Decoder("sign")
    with pytest.raises(ValueError):
        Decoder("paranoid")


def test_the_auth_file_is_read_again_when_it_changes(tmp_path):
    auth = tmp_path / "auth"
    auth.write_text("vecsigner: wrong\n")
    decoder = Decoder(1, auth)
    signed = _pkts("alltypes-signed")[0]
    assert list(decoder.interpret(signed)) == []
    auth.write_text((DATA / "alltypes-signed.auth").read_text())
    os.utime(auth, ns=(1, 1))  # a different mtime even on a coarse-grained file system
    assert len(list(decoder.interpret(signed))) > 0
    auth.unlink()  # gone for a moment (being replaced): the last credentials stay
    assert len(list(decoder.interpret(signed))) > 0


def test_a_reader_decodes_with_its_security_settings():
    with Reader("127.0.0.1", 0, security_level=1, auth_file=DATA / "alltypes-signed.auth") as r:
        assert r.security_level == 1
        with _sender(socket.AF_INET) as sender:
            sender.sendto(_pkts("alltypes-signed")[0], ("127.0.0.1", r.port))
            sender.sendto(_pkts("alltypes")[0], ("127.0.0.1", r.port))
            assert {i.security for i in r.interpret(r.receive(timeout=TIMEOUT))} == {"sign"}
            assert list(r.interpret(r.receive(timeout=TIMEOUT))) == []
            assert r.errors


# -- multicast: joined on the loopback interface, sent with TTL 0 so nothing leaves the box -----


def _kernel_joins(group: str, interface: str | None) -> None:
    """Skip unless the kernel lets a plain socket join `group` (a fact about this machine).

    Only then is Bucky's own Reader() asked to: an error from it is Bucky's and fails the test."""
    family = socket.AF_INET6 if ":" in group else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.bind(("", 0))
        if family == socket.AF_INET:
            local = "127.0.0.1" if interface == "lo" else "0.0.0.0"
            mreq = socket.inet_aton(group) + socket.inet_aton(local)
            probe.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        else:
            index = socket.if_nametoindex(interface) if interface else 0
            mreq = socket.inet_pton(family, group) + index.to_bytes(4, "little")
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
    except OSError as err:
        pytest.skip(f"the kernel refuses to join {group} on {interface or 'any interface'}: {err}")
    finally:
        probe.close()


def _join_or_skip(group: str, interface: str | None) -> Reader:
    _kernel_joins(group, interface)
    return Reader(group, 0, interface=interface)


def test_ipv4_multicast_on_loopback():
    with _join_or_skip(DEFAULT_IPV4_GROUP, "lo") as reader, _sender(socket.AF_INET) as sender:
        assert reader.multicast
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        try:
            sender.sendto(_encode(SWAP), (DEFAULT_IPV4_GROUP, reader.port))
        except OSError as err:
            pytest.skip(f"cannot send IPv4 multicast over lo here: {err}")
        assert reader.decode(reader.receive(timeout=TIMEOUT)).records == [SWAP]


def test_default_reader_joins_the_ipv4_group():
    """Reader() joins 239.192.74.66 where the kernel picks the interface (needs a route)."""
    _kernel_joins(DEFAULT_IPV4_GROUP, None)
    with Reader(port=0) as reader:
        assert (reader.host, reader.multicast, reader.interface) == (DEFAULT_IPV4_GROUP, True, None)


def test_ipv6_multicast_join_on_loopback():
    if not socket.has_ipv6:
        pytest.skip("Python was built without IPv6")
    with _join_or_skip(DEFAULT_IPV6_GROUP, "lo") as reader, _sender(socket.AF_INET6) as sender:
        assert reader.multicast and reader.socket.family == socket.AF_INET6
        lo = socket.if_nametoindex("lo")
        sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, lo)
        sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 0)
        sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
        try:
            sender.sendto(_encode(SWAP), (DEFAULT_IPV6_GROUP, reader.port, 0, lo))
        except OSError as err:
            # Linux's lo has no MULTICAST flag; IPv4 still loops back, IPv6 routing refuses.
            pytest.skip(f"joined, but cannot send IPv6 multicast over lo here: {err}")
        assert reader.decode(reader.receive(timeout=TIMEOUT)).records == [SWAP]


def test_a_multicast_join_failure_says_what_failed(monkeypatch):
    def refuse(self, level, option, value):
        if option in (socket.IP_ADD_MEMBERSHIP, socket.IPV6_JOIN_GROUP):
            raise OSError(19, "No such device")
        return real(self, level, option, value)

    real = socket.socket.setsockopt
    monkeypatch.setattr(socket.socket, "setsockopt", refuse)
    with pytest.raises(OSError, match="cannot join multicast group 239.192.74.66"):
        Reader(DEFAULT_IPV4_GROUP, 0)


def test_multicast_false_binds_without_joining():
    with Reader("127.0.0.1", 0, multicast=False) as reader:
        assert not reader.multicast
