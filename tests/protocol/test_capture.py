"""bucky.protocol.capture: pcap files built here byte by byte (every link type, both byte orders,
IPv4 and IPv6) and `.pkts` framing."""

from __future__ import annotations

import struct

import pytest
from pcapbuild import ethernet, ipv4, ipv6, pcap, udp

from bucky.protocol.capture import (
    CaptureError,
    Pcap,
    UdpPacket,
    is_pcap,
    pkts_record,
    split_pkts,
)


def payloads(data: bytes) -> list[tuple[int, bytes]]:
    return [(p.destination[1], p.payload) for p in Pcap(data).udp()]


STATSD = udp(40000, 8125, b"app.hits:1|c")
COLLECTD = udp(40001, 25826, b"\x00\x00\x00\x05x")


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nanoseconds", [False, True])
def test_ethernet_ipv4_both_byte_orders_and_timestamp_units(order: str, nanoseconds: bool):
    frames = [ethernet(ipv4(STATSD), 0x0800), ethernet(ipv4(COLLECTD), 0x0800, vlan=True)]
    data = pcap(frames, 1, order, nanoseconds)
    assert is_pcap(data)
    first, second = Pcap(data).udp()
    assert first == UdpPacket(1_700_000_000.25, ("127.0.0.1", 40000), ("127.0.0.1", 8125),
                              b"app.hits:1|c")
    assert second.payload == b"\x00\x00\x00\x05x" and second.destination[1] == 25826
    assert first.sender == "127.0.0.1:40000"


def test_linux_cooked_v1_and_v2_raw_ip_and_bsd_loopback():
    sll = bytes(14) + struct.pack(">H", 0x0800) + ipv4(STATSD)
    sll2 = struct.pack(">H", 0x86DD) + bytes(18) + ipv6(COLLECTD)
    assert payloads(pcap([sll], 113)) == [(8125, b"app.hits:1|c")]
    assert payloads(pcap([sll2], 276)) == [(25826, b"\x00\x00\x00\x05x")]
    for link_type in (101, 12, 228):
        assert payloads(pcap([ipv4(STATSD)], link_type)) == [(8125, b"app.hits:1|c")]
    assert payloads(pcap([ipv6(STATSD)], 229)) == [(8125, b"app.hits:1|c")]
    assert payloads(pcap([struct.pack("<I", 30) + ipv6(STATSD)], 0)) == [
        (8125, b"app.hits:1|c")]


def test_ipv6_extension_headers_are_walked_and_addresses_read():
    hop_by_hop = bytes([17, 0]) + bytes(6)  # next header UDP, 8 bytes long
    (packet,) = Pcap(pcap([ethernet(ipv6(STATSD, 0, hop_by_hop), 0x86DD)], 1)).udp()
    assert packet.source == ("::1", 40000) and packet.payload == b"app.hits:1|c"
    assert packet.sender == "[::1]:40000"


def test_what_is_not_a_whole_udp_datagram_is_counted_and_skipped():
    frames = [
        ethernet(ipv4(b"tcp segment", protocol=6), 0x0800),
        ethernet(b"arp", 0x0806),
        ethernet(ipv4(STATSD, fragment=0x2000), 0x0800),  # more fragments follow
        ethernet(ipv4(STATSD, fragment=3), 0x0800),  # a later fragment
        ethernet(ipv6(STATSD, 44, bytes([17, 0]) + bytes(6)), 0x86DD),
        ethernet(ipv4(udp(1, 2, b"x" * 100)), 0x0800),
        ethernet(ipv4(STATSD), 0x0800),
    ]
    capture = Pcap(pcap(frames[:5] + frames[6:], 1))
    assert [p.payload for p in capture.udp()] == [b"app.hits:1|c"]
    assert capture.skipped == {"not-udp": 1, "not-ip": 1, "fragment": 3}
    assert capture.packets == 6
    snapped = Pcap(pcap([frames[5], frames[6]], 1, snap=60))
    assert [p.payload for p in snapped.udp()] == [b"app.hits:1|c"]
    assert snapped.skipped == {"snapped": 1}


def test_damaged_files_raise_one_exception_family_after_what_came_before():
    data = pcap([ethernet(ipv4(STATSD), 0x0800)] * 2, 1)
    packets = Pcap(data[:-3]).udp()
    assert next(packets).payload == b"app.hits:1|c"
    with pytest.raises(CaptureError, match="truncated packet"):
        next(packets)
    with pytest.raises(CaptureError, match="truncated record header"):
        list(Pcap(data[:len(data) - len(ethernet(ipv4(STATSD), 0x0800)) - 3]).udp())
    with pytest.raises(CaptureError, match="pcapng"):
        Pcap(b"\x0a\x0d\x0d\x0a" + bytes(40))
    with pytest.raises(CaptureError, match="link type 147"):
        Pcap(pcap([], 147))
    with pytest.raises(CaptureError, match="header"):
        Pcap(data[:10])
    with pytest.raises(CaptureError):
        Pcap(b"hello world, not a capture at all")


def test_pkts_round_trip_and_truncation():
    datagrams = [b"", b"a", b"\x00" * 70000]
    data = b"".join(pkts_record(d) for d in datagrams)
    assert not is_pcap(data)
    assert list(split_pkts(data)) == datagrams
    with pytest.raises(CaptureError, match="truncated datagram"):
        list(split_pkts(data[:-1]))
    with pytest.raises(CaptureError, match="truncated length"):
        list(split_pkts(data + b"\x00"))
