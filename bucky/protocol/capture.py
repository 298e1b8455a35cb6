"""Capture files of datagrams, sans-I/O: Bucky's `.pkts` format and classic pcap (`tcpdump -w`).

`.pkts` is what `bucky-dump --write` records: each datagram as a 4-byte big-endian length, then
that many bytes. pcap is the classic libpcap file tcpdump writes by default: both byte orders,
microsecond and nanosecond timestamps; link types Ethernet (with 802.1Q/802.1ad tags), Linux
cooked v1 and v2 (`tcpdump -i any`), raw IP, IPv4, IPv6 and BSD loopback; IPv4 and IPv6 (walking
hop-by-hop, routing and destination-options headers); the UDP payloads are what it yields.

Rules:
- Bytes in, records out: `split_pkts(data)` yields datagrams, `Pcap(data).udp()` yields
  `UdpPacket`s. Nothing is opened, nothing is logged.
- One exception family: `CaptureError` (a DecodeError) for a file that is not a capture or ends
  inside a record. Everything read before the damage has been yielded by then, as a reader of
  a capture cut short by a kill expects.
- Packets that carry no whole UDP datagram are skipped and counted by reason in
  `Pcap.skipped`: "not-ip", "not-udp", "fragment" (reassembly is not attempted), "snapped"
  (cut by the capture's snap length), "bad-header".
- `is_pcap(head)` tells the formats apart from the first 4 bytes (a `.pkts` length never
  reaches the magic numbers: datagrams are at most 64 KiB).
"""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from bucky.addresses import format_address
from bucky.errors import DecodeError

PKTS_LENGTH = struct.Struct(">I")

_MAGIC = {  # the first 4 bytes -> (byte order, timestamp units per second)
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
_PCAPNG = b"\x0a\x0d\x0d\x0a"
_GLOBAL_HEADER_SIZE = 24
_RECORD_HEADER_SIZE = 16

LINKTYPE_NULL = 0  # BSD loopback: a 4-byte address family in the capturing host's order
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # and 12, 14: raw IP, as some systems number it
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
LINK_TYPES = {
    LINKTYPE_NULL: "BSD loopback", LINKTYPE_ETHERNET: "Ethernet", 12: "raw IP", 14: "raw IP",
    LINKTYPE_RAW: "raw IP", LINKTYPE_LINUX_SLL: "Linux cooked", LINKTYPE_IPV4: "IPv4",
    LINKTYPE_IPV6: "IPv6", LINKTYPE_LINUX_SLL2: "Linux cooked v2",
}  # fmt: skip

_ETHERTYPE_IPV4, _ETHERTYPE_IPV6 = 0x0800, 0x86DD
_VLAN_TAGS = {0x8100, 0x88A8, 0x9100}
_IPPROTO_UDP = 17
_IPV6_SKIPPABLE = {0, 43, 60}  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44


class CaptureError(DecodeError):
    """Not a capture file, or a capture that ends inside a record."""

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True, slots=True)
class UdpPacket:
    """One UDP datagram of a pcap capture."""

    time: float
    source: tuple[str, int]
    destination: tuple[str, int]
    payload: bytes

    @property
    def sender(self) -> str:
        return format_address(*self.source)


# -- .pkts ----------------------------------------------------------------------------------------


def pkts_record(datagram: bytes) -> bytes:
    """One datagram as `.pkts` stores it."""
    return PKTS_LENGTH.pack(len(datagram)) + datagram


def split_pkts(data: bytes) -> Iterator[bytes]:
    """The datagrams of a `.pkts` capture."""
    offset, end = 0, len(data)
    while offset < end:
        if end - offset < PKTS_LENGTH.size:
            raise CaptureError("truncated", "truncated length field at the end of the capture")
        (size,) = PKTS_LENGTH.unpack_from(data, offset)
        offset += PKTS_LENGTH.size
        if end - offset < size:
            raise CaptureError("truncated",
                               f"truncated datagram: {end - offset} of {size} bytes")
        yield data[offset:offset + size]
        offset += size


# -- pcap -----------------------------------------------------------------------------------------


def is_pcap(head: bytes) -> bool:
    return head[:4] in _MAGIC


class Pcap:
    """A classic pcap capture: its header checked at once, its UDP datagrams by `udp()`."""

    def __init__(self, data: bytes) -> None:
        head = data[:4]
        if head == _PCAPNG:
            raise CaptureError("pcapng", "a pcapng file: write classic pcap (tcpdump -w does by "
                               "default) or convert it: editcap -F pcap IN OUT")
        if head not in _MAGIC:
            raise CaptureError("not-a-capture", "neither pcap nor .pkts")
        if len(data) < _GLOBAL_HEADER_SIZE:
            raise CaptureError("truncated", "truncated pcap file header")
        self.byte_order, self._units = _MAGIC[head]
        network = struct.unpack_from(self.byte_order + "I", data, 20)[0]
        self.link_type = network & 0xFFFF  # the upper bits may describe a frame check sequence
        if self.link_type not in LINK_TYPES:
            raise CaptureError("link-type", f"unsupported link type {self.link_type}")
        self._data = data
        self._record = struct.Struct(self.byte_order + "IIII")
        self.packets = 0
        self.skipped: Counter[str] = Counter()

    def udp(self) -> Iterator[UdpPacket]:
        """Every whole UDP datagram in capture order; other packets are counted in `skipped`."""
        data, offset, end = self._data, _GLOBAL_HEADER_SIZE, len(self._data)
        while offset < end:
            if end - offset < _RECORD_HEADER_SIZE:
                raise CaptureError("truncated", "truncated record header at the end")
            seconds, fraction, captured, original = self._record.unpack_from(data, offset)
            offset += _RECORD_HEADER_SIZE
            if end - offset < captured:
                raise CaptureError("truncated",
                                   f"truncated packet: {end - offset} of {captured} bytes")
            frame = memoryview(data)[offset:offset + captured]
            offset += captured
            self.packets += 1
            found = self._udp(frame, seconds + fraction / self._units, captured < original)
            if isinstance(found, str):
                self.skipped[found] += 1
            else:
                yield found

    def _udp(self, frame: memoryview, when: float, snapped: bool) -> UdpPacket | str:
        """The packet, or the reason it is skipped."""
        ip = _network_layer(frame, self.link_type)
        if ip is None:
            return "not-ip"
        try:
            return _ip_udp(ip, when, snapped)
        except (IndexError, ValueError, struct.error):  # a header cut short
            return "snapped" if snapped else "bad-header"


def _network_layer(frame: memoryview, link_type: int) -> memoryview | None:
    """The IP packet in a link-layer frame, or None when it carries something else."""
    if link_type == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return None
        ethertype, offset = int.from_bytes(frame[12:14], "big"), 14
        while ethertype in _VLAN_TAGS and len(frame) >= offset + 4:
            ethertype, offset = int.from_bytes(frame[offset + 2:offset + 4], "big"), offset + 4
    elif link_type == LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            return None
        ethertype, offset = int.from_bytes(frame[14:16], "big"), 16
    elif link_type == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            return None
        ethertype, offset = int.from_bytes(frame[0:2], "big"), 20
    else:  # raw IP, IPv4, IPv6, BSD loopback: the IP version says which
        offset = 4 if link_type == LINKTYPE_NULL else 0
        if len(frame) <= offset:
            return None
        version = frame[offset] >> 4
        ethertype = {4: _ETHERTYPE_IPV4, 6: _ETHERTYPE_IPV6}.get(version, 0)
    if ethertype not in (_ETHERTYPE_IPV4, _ETHERTYPE_IPV6):
        return None
    return frame[offset:]


def _ip_udp(ip: memoryview, when: float, snapped: bool) -> UdpPacket | str:
    version = ip[0] >> 4
    if version == 4:
        header = (ip[0] & 0x0F) * 4
        total = int.from_bytes(ip[2:4], "big") or len(ip)  # 0: segmentation offload
        if int.from_bytes(ip[6:8], "big") & 0x3FFF:  # more fragments, or not the first
            return "fragment"
        if ip[9] != _IPPROTO_UDP:
            return "not-udp"
        source = str(ipaddress.IPv4Address(bytes(ip[12:16])))
        destination = str(ipaddress.IPv4Address(bytes(ip[16:20])))
        segment = ip[header:total]
    elif version == 6:
        next_header, offset = ip[6], 40
        end = 40 + int.from_bytes(ip[4:6], "big")
        while next_header in _IPV6_SKIPPABLE:
            next_header, offset = ip[offset], offset + (ip[offset + 1] + 1) * 8
        if next_header == _IPV6_FRAGMENT:
            return "fragment"
        if next_header != _IPPROTO_UDP:
            return "not-udp"
        source = str(ipaddress.IPv6Address(bytes(ip[8:24])))
        destination = str(ipaddress.IPv6Address(bytes(ip[24:40])))
        segment = ip[offset:end]
    else:
        return "not-ip"
    if len(segment) < 8:
        return "snapped" if snapped else "bad-header"
    source_port, destination_port, length = struct.unpack_from(">HHH", segment)
    if length < 8:
        return "bad-header"
    if length > len(segment):
        return "snapped" if snapped else "bad-header"
    return UdpPacket(when, (source, source_port), (destination, destination_port),
                     bytes(segment[8:length]))
